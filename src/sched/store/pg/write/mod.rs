//! Writing to PostgreSQL: a [`Batch`] in one transaction, with the same checks
//! as the embedded store (a batch that would make the tables disagree is
//! refused whole, as `Corrupt`).

mod task;

use std::collections::HashMap;

use postgres::{Statement, Transaction};

use super::queries::*;
use super::{decode, pg_err, Conn};
use crate::sched::id::TaskId;
use crate::sched::store::{
    Batch, BatchReport, DeletedTask, Lease, Op, PurgeOutcome, StoreError, TakenCause, TakenTask,
    MODULE_BYTES_MAX,
};
use crate::sched::types::{hex32, TaskHeader};

/// A failed step: a PostgreSQL error, or a disagreement that aborts the batch.
enum Step {
    Pg(postgres::Error),
    Refused(StoreError),
}

impl From<postgres::Error> for Step {
    fn from(e: postgres::Error) -> Self {
        Step::Pg(e)
    }
}

fn corrupt(what: impl Into<String>, reason: impl Into<String>) -> Step {
    Step::Refused(StoreError::Corrupt {
        what: what.into(),
        reason: reason.into(),
    })
}

fn encode<T: serde::Serialize>(id: &TaskId, what: &str, value: &T) -> Result<String, Step> {
    serde_json::to_string(value).map_err(|e| {
        Step::Refused(StoreError::Encode {
            id: id.clone(),
            reason: format!("{what}: {e}"),
        })
    })
}

/// Milliseconds as PostgreSQL's bigint (times far past year 292 million are corrupt).
fn ms(value: u64, what: &str) -> Result<i64, Step> {
    i64::try_from(value).map_err(|_| corrupt(what.to_string(), format!("time {value} ms")))
}

/// One batch's transaction and the statements it runs.
struct Writer<'c, 't> {
    txn: &'t mut Transaction<'c>,
    sql: &'t HashMap<&'static str, Statement>,
    /// Change of the finished count, applied once at the end (a hot row).
    finished_delta: i64,
    /// Whose writes these are, on a shared store: new tasks are theirs, and
    /// only their tasks may be written.
    lease: Option<&'t Lease>,
}

/// The stored owner of a task, as `(gateway, epoch)`.
type Owner = Option<(String, i64)>;

fn owner_of(lease: Option<&Lease>) -> Owner {
    lease.map(|l| {
        (
            l.gateway.clone(),
            i64::try_from(l.epoch).unwrap_or(i64::MAX),
        )
    })
}

impl Writer<'_, '_> {
    fn st(&self, sql: &'static str) -> &Statement {
        self.sql
            .get(sql)
            .expect("every statement is prepared on connect")
    }

    fn header_for_update(&mut self, id: &str) -> Result<Option<(TaskHeader, Owner)>, Step> {
        let st = self.st(HEADER_FOR_UPDATE).clone();
        let Some(row) = self.txn.query_opt(&st, &[&id])? else {
            return Ok(None);
        };
        let header = decode(format!("task {id}"), row.get::<_, &str>(0)).map_err(Step::Refused)?;
        let owner: Option<String> = row.get(1);
        let epoch: Option<i64> = row.get(2);
        Ok(Some((header, owner.zip(epoch))))
    }

    /// A new task just inserted names a module that is not stored: another
    /// gateway deleted it, unused, after this one last saw it. On a shared
    /// store the task goes, its insert undone (its runs with it); alone, the
    /// tables disagree.
    fn module_gone(&mut self, id: &TaskId, hash: &[u8; 32]) -> Result<Option<TakenTask>, Step> {
        if self.lease.is_some() {
            let st = self.st(DELETE_TASK).clone();
            self.txn.execute(&st, &[&id.as_str()])?;
            return Ok(Some(TakenTask {
                id: id.clone(),
                cause: TakenCause::ModuleGone(*hash),
            }));
        }
        Err(corrupt(
            format!("task {id}"),
            format!(
                "refers to module {} which is not stored",
                hex32::encode(hash)
            ),
        ))
    }

    /// Why a new task's row was not inserted: its key names another task, or
    /// a task with its id exists (stored by another writer).
    fn insert_conflict(&mut self, id: &TaskId, key: Option<&str>) -> Result<TakenTask, Step> {
        let mut cause = TakenCause::Id;
        if let Some(key) = key {
            let st = self.st(TASK_OF_KEY).clone();
            if let Some(row) = self.txn.query_opt(&st, &[&key])? {
                let text: String = row.get(0);
                cause = TakenCause::Key(
                    crate::sched::store::stored_id("ww_tasks by idempotency key", text)
                        .map_err(Step::Refused)?,
                );
            }
        }
        Ok(TakenTask {
            id: id.clone(),
            cause,
        })
    }

    /// One more task refers to the module; false if it is not stored. The
    /// row lock this takes orders the reference against a concurrent
    /// deletion, which counts references under the same lock.
    fn refer(&mut self, hash: &[u8; 32]) -> Result<bool, Step> {
        let st = self.st(REFER_MODULE).clone();
        Ok(self.txn.execute(&st, &[&hash.as_slice()])? == 1)
    }

    fn put_module(&mut self, hash: &[u8; 32], bytes: &[u8], now_ms: u64) -> Result<(), Step> {
        if bytes.len() > MODULE_BYTES_MAX {
            return Err(Step::Refused(StoreError::ModuleTooLarge {
                bytes: bytes.len(),
            }));
        }
        let now_ms = ms(now_ms, "upload time")?;
        let st = self.st(INSERT_MODULE).clone();
        if self
            .txn
            .execute(&st, &[&hash.as_slice(), &bytes, &now_ms])?
            == 0
        {
            let st = self.st(TOUCH_MODULE).clone();
            self.txn.execute(&st, &[&hash.as_slice(), &now_ms])?;
        }
        Ok(())
    }

    /// Deletes a finished task and everything that goes with it.
    fn delete_task(&mut self, header: &TaskHeader, now_ms: u64) -> Result<DeletedTask, Step> {
        let id = &header.spec.id;
        if header.finished_ms.is_none() {
            return Err(corrupt(format!("task {id}"), "final without a finish time"));
        }
        let st = self.st(DELETE_TASK).clone();
        if self.txn.execute(&st, &[&id.as_str()])? != 1 {
            return Err(corrupt(format!("task {id}"), "vanished while locked"));
        }
        self.finished_delta -= 1;
        let hash = header.spec.module_hash;
        let st = self.st(RELEASE_MODULE).clone();
        let now_ms = ms(now_ms, "purge time")?;
        if self.txn.execute(&st, &[&hash.as_slice(), &now_ms])? != 1 {
            return Err(corrupt(
                format!("task {id}"),
                "its module has no reference to release",
            ));
        }
        Ok(DeletedTask {
            id: id.clone(),
            module_hash: hash,
        })
    }

    fn purge(&mut self, id: &TaskId, now_ms: u64, report: &mut BatchReport) -> Result<(), Step> {
        let outcome = match self.header_for_update(id.as_str())? {
            None => PurgeOutcome::NotFound,
            Some((header, _)) if !header.status.is_final() => PurgeOutcome::NotFinished,
            Some((header, _)) => {
                report.deleted.push(self.delete_task(&header, now_ms)?);
                PurgeOutcome::Purged
            }
        };
        report.purged.push((id.clone(), outcome));
        Ok(())
    }

    fn expire(
        &mut self,
        now_ms: u64,
        retain_ms: Option<u64>,
        finished_max: u64,
        delete_max: usize,
        report: &mut BatchReport,
    ) -> Result<(), Step> {
        let cutoff_ms = retain_ms.map(|r| now_ms.saturating_sub(r));
        let st = self.st(FINISHED_FOR_UPDATE).clone();
        let stored: i64 = self.txn.query_one(&st, &[])?.get(0);
        let mut count = u64::try_from(stored + self.finished_delta)
            .map_err(|_| corrupt("finished count", format!("{stored} stored")))?;
        // One more than may be deleted: seeing it tells whether more remain.
        let want = i64::try_from(delete_max.saturating_add(1)).unwrap_or(i64::MAX);
        let st = self.st(OLDEST_FINISHED).clone();
        let oldest = self.txn.query(&st, &[&want])?;
        for (deleted, row) in oldest.into_iter().enumerate() {
            let id: &str = row.get(0);
            let header: TaskHeader =
                decode(format!("task {id}"), row.get(1)).map_err(Step::Refused)?;
            let at = header.finished_ms.unwrap_or(0);
            let expired = cutoff_ms.is_some_and(|cutoff| at <= cutoff);
            if !expired && count <= finished_max {
                break;
            }
            if deleted == delete_max {
                report.expire_more = true;
                break;
            }
            report.deleted.push(self.delete_task(&header, now_ms)?);
            count -= 1;
        }
        Ok(())
    }

    fn delete_modules(
        &mut self,
        hashes: &[[u8; 32]],
        report: &mut BatchReport,
    ) -> Result<(), Step> {
        for hash in hashes {
            let st = self.st(MODULE_TASKS_FOR_UPDATE).clone();
            let tasks: i64 = self
                .txn
                .query_opt(&st, &[&hash.as_slice()])?
                .map_or(0, |row| row.get(0));
            if tasks > 0 {
                report.modules_kept.push(*hash);
                continue;
            }
            let st = self.st(DELETE_MODULE).clone();
            self.txn.execute(&st, &[&hash.as_slice()])?;
            report.modules_deleted.push(*hash);
        }
        Ok(())
    }

    fn apply(&mut self, batch: &Batch, report: &mut BatchReport) -> Result<(), Step> {
        if let Some(lease) = self.lease {
            let st = self.st(LEASE_LIVE).clone();
            let epoch = i64::try_from(lease.epoch).unwrap_or(i64::MAX);
            if self
                .txn
                .query_opt(&st, &[&lease.gateway, &epoch])?
                .is_none()
            {
                return Err(Step::Refused(StoreError::LeaseLost {
                    what: batch.describe(),
                    gateway: lease.gateway.clone(),
                    epoch: lease.epoch,
                }));
            }
        }
        for op in &batch.ops {
            match op {
                Op::PutTask { header, runs, new } => {
                    if let Some(taken) = self.put_task(header, runs, *new)? {
                        report.taken.push(taken);
                    }
                }
                Op::PutModule {
                    hash,
                    bytes,
                    now_ms,
                } => self.put_module(hash, bytes, *now_ms)?,
                Op::Purge { id, now_ms } => self.purge(id, *now_ms, report)?,
                Op::Expire {
                    now_ms,
                    retain_ms,
                    finished_max,
                    delete_max,
                } => self.expire(*now_ms, *retain_ms, *finished_max, *delete_max, report)?,
                Op::DeleteModules { hashes } => self.delete_modules(hashes, report)?,
            }
        }
        if self.finished_delta != 0 {
            let st = self.st(ADD_FINISHED).clone();
            let now: i64 = self.txn.query_one(&st, &[&self.finished_delta])?.get(0);
            if now < 0 {
                return Err(corrupt(
                    "finished count",
                    format!("{now} after {:+}", self.finished_delta),
                ));
            }
        }
        Ok(())
    }
}

/// Commits `batch` in one transaction on `conn`, waiting for the server's
/// WAL flush (`synchronous_commit`, the server's default), as every
/// acknowledgement needs.
pub(super) fn commit(
    conn: &mut Conn,
    batch: &Batch,
    lease: Option<&Lease>,
) -> Result<BatchReport, StoreError> {
    let what = batch.describe();
    let (client, sql) = conn.open()?;
    let mut txn = client.transaction().map_err(pg_err(what.clone()))?;
    let mut report = BatchReport::default();
    let applied = Writer {
        txn: &mut txn,
        sql,
        finished_delta: 0,
        lease,
    }
    .apply(batch, &mut report);
    match applied {
        // Dropping the transaction rolls it back.
        Err(Step::Pg(source)) => Err(pg_err(what)(source)),
        Err(Step::Refused(error)) => Err(error),
        Ok(()) => {
            txn.commit().map_err(|source| StoreError::CommitUnknown {
                what,
                detail: format!("the connection broke during COMMIT: {source}"),
            })?;
            Ok(report)
        }
    }
}
