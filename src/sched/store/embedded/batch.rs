//! Writing to redb: a [`Batch`] of operations committed in one transaction.
//!
//! The tables must always agree (a header, its status-index row, its
//! finished-index row, the module's reference count, the key row). Each
//! operation checks what it expects to find and refuses the whole batch, as
//! `Corrupt`, when it does not: a batch that would make them disagree is
//! never committed.

use redb::{Durability, ReadableTable, Table, WriteTransaction};

use super::layout::{
    BY_STATUS, FINISHED, FINISHED_COUNT, IDEMPOTENCY, META, MODULES, MODULE_REFS, RUNS, TASKS,
};
use super::{boxed, write_err, RedbStore};
use crate::sched::id::TaskId;
use crate::sched::store::{
    Batch, BatchReport, DeletedTask, Op, PurgeOutcome, StoreError, MODULE_BYTES_MAX,
};
use crate::sched::types::{Run, TaskHeader};

/// The open tables of one write transaction.
struct Tables<'t> {
    tasks: Table<'t, &'static str, &'static [u8]>,
    runs: Table<'t, (&'static str, u32), &'static [u8]>,
    modules: Table<'t, &'static [u8], &'static [u8]>,
    refs: Table<'t, &'static [u8], (u64, u64)>,
    keys: Table<'t, &'static str, &'static str>,
    by_status: Table<'t, (u8, &'static str), ()>,
    finished: Table<'t, (u64, &'static str), ()>,
    meta: Table<'t, &'static str, u64>,
}

/// A failed step inside the transaction: a redb error, or a disagreement
/// between the tables (which aborts the batch).
enum Step {
    Redb(Box<redb::Error>),
    Refused(StoreError),
}

impl<E: Into<redb::Error>> From<E> for Step {
    fn from(e: E) -> Self {
        Step::Redb(boxed(e))
    }
}

fn corrupt(what: impl Into<String>, reason: impl Into<String>) -> Step {
    Step::Refused(StoreError::Corrupt {
        what: what.into(),
        reason: reason.into(),
    })
}

fn encode<T: serde::Serialize>(id: &TaskId, what: &str, value: &T) -> Result<Vec<u8>, Step> {
    serde_json::to_vec(value).map_err(|e| {
        Step::Refused(StoreError::Encode {
            id: id.clone(),
            reason: format!("{what}: {e}"),
        })
    })
}

impl<'t> Tables<'t> {
    fn open(txn: &'t WriteTransaction) -> Result<Self, Step> {
        Ok(Tables {
            tasks: txn.open_table(TASKS)?,
            runs: txn.open_table(RUNS)?,
            modules: txn.open_table(MODULES)?,
            refs: txn.open_table(MODULE_REFS)?,
            keys: txn.open_table(IDEMPOTENCY)?,
            by_status: txn.open_table(BY_STATUS)?,
            finished: txn.open_table(FINISHED)?,
            meta: txn.open_table(META)?,
        })
    }

    fn header(&self, id: &str) -> Result<Option<TaskHeader>, Step> {
        let Some(bytes) = self.tasks.get(id)? else {
            return Ok(None);
        };
        serde_json::from_slice(bytes.value())
            .map(Some)
            .map_err(|e| corrupt(format!("task {id}"), e.to_string()))
    }

    fn finished_count(&self) -> Result<u64, Step> {
        Ok(self.meta.get(FINISHED_COUNT)?.map_or(0, |v| v.value()))
    }

    fn add_finished(&mut self, delta: i64) -> Result<(), Step> {
        let count = self.finished_count()?;
        let next = count
            .checked_add_signed(delta)
            .ok_or_else(|| corrupt("finished count", format!("{count} {delta:+}")))?;
        self.meta.insert(FINISHED_COUNT, next)?;
        Ok(())
    }

    fn put_task(&mut self, header: &TaskHeader, runs: &[Run]) -> Result<(), Step> {
        let id = &header.spec.id;
        let previous = self.header(id.as_str())?;
        match &previous {
            Some(old) if old.status.is_final() => {
                return Err(corrupt(
                    format!("task {id}"),
                    format!(
                        "is stored {:?}, final; it is never written again",
                        old.status
                    ),
                ))
            }
            Some(old) if old.spec != header.spec || old.submitted_ms != header.submitted_ms => {
                return Err(corrupt(
                    format!("task {id}"),
                    "a write would change its spec: another task with its id",
                ))
            }
            Some(old) => {
                if self
                    .by_status
                    .remove((old.status.code(), id.as_str()))?
                    .is_none()
                {
                    return Err(corrupt(
                        format!("task {id}"),
                        format!("missing from the {:?} index", old.status),
                    ));
                }
            }
            None => self.refer(id, &header.spec.module_hash)?,
        }
        if previous.is_none() {
            if let Some(key) = &header.spec.idempotency_key {
                if let Some(other) = self.keys.insert(key.as_str(), id.as_str())? {
                    return Err(corrupt(
                        format!("idempotency key {key:?}"),
                        format!("names task {} already", other.value()),
                    ));
                }
            }
        }
        self.by_status
            .insert((header.status.code(), id.as_str()), ())?;
        if header.status.is_final() {
            let at = header
                .finished_ms
                .ok_or_else(|| corrupt(format!("task {id}"), "final without a finish time"))?;
            self.finished.insert((at, id.as_str()), ())?;
            self.add_finished(1)?;
        }
        let bytes = encode(id, "header", header)?;
        self.tasks.insert(id.as_str(), bytes.as_slice())?;
        for run in runs {
            if run.index >= header.runs_created {
                return Err(corrupt(
                    format!("run {id}/{}", run.index),
                    format!("beyond the {} runs created", header.runs_created),
                ));
            }
            let bytes = encode(id, &format!("run {}", run.index), run)?;
            self.runs
                .insert((id.as_str(), run.index), bytes.as_slice())?;
        }
        Ok(())
    }

    /// One more task refers to the module, which must be stored.
    fn refer(&mut self, id: &TaskId, hash: &[u8; 32]) -> Result<(), Step> {
        let count = self.refs.get(hash.as_slice())?.map(|v| v.value().0);
        let Some(count) = count else {
            return Err(corrupt(
                format!("task {id}"),
                format!(
                    "refers to module {} which is not stored",
                    crate::sched::types::hex32::encode(hash)
                ),
            ));
        };
        self.refs.insert(hash.as_slice(), (count + 1, 0))?;
        Ok(())
    }

    fn put_module(&mut self, hash: &[u8; 32], bytes: &[u8], now_ms: u64) -> Result<(), Step> {
        if bytes.len() > MODULE_BYTES_MAX {
            return Err(Step::Refused(StoreError::ModuleTooLarge {
                bytes: bytes.len(),
            }));
        }
        let refs = self.refs.get(hash.as_slice())?.map(|v| v.value());
        match refs {
            Some((0, _)) | None => {
                self.refs.insert(hash.as_slice(), (0, now_ms))?;
            }
            Some(_) => {}
        }
        if self.modules.get(hash.as_slice())?.is_none() {
            self.modules.insert(hash.as_slice(), bytes)?;
        }
        Ok(())
    }

    /// Deletes a finished task and everything that goes with it.
    fn delete_task(&mut self, header: &TaskHeader, now_ms: u64) -> Result<DeletedTask, Step> {
        let id = &header.spec.id;
        let at = header
            .finished_ms
            .ok_or_else(|| corrupt(format!("task {id}"), "final without a finish time"))?;
        self.tasks.remove(id.as_str())?;
        self.runs
            .retain_in((id.as_str(), 0)..=(id.as_str(), u32::MAX), |_, _| false)?;
        if self
            .by_status
            .remove((header.status.code(), id.as_str()))?
            .is_none()
        {
            return Err(corrupt(
                format!("task {id}"),
                "missing from its status index",
            ));
        }
        if self.finished.remove((at, id.as_str()))?.is_none() {
            return Err(corrupt(
                format!("task {id}"),
                "missing from the finished index",
            ));
        }
        self.add_finished(-1)?;
        if let Some(key) = &header.spec.idempotency_key {
            let names_this = self
                .keys
                .get(key.as_str())?
                .is_some_and(|v| v.value() == id.as_str());
            if names_this {
                self.keys.remove(key.as_str())?;
            }
        }
        let hash = header.spec.module_hash;
        let count = self.refs.get(hash.as_slice())?.map(|v| v.value().0);
        match count {
            Some(n) if n > 0 => {
                let since = if n == 1 { now_ms } else { 0 };
                self.refs.insert(hash.as_slice(), (n - 1, since))?;
            }
            _ => {
                return Err(corrupt(
                    format!("task {id}"),
                    "its module has no reference to release",
                ))
            }
        }
        Ok(DeletedTask {
            id: id.clone(),
            module_hash: hash,
        })
    }

    fn purge(&mut self, id: &TaskId, now_ms: u64, report: &mut BatchReport) -> Result<(), Step> {
        let outcome = match self.header(id.as_str())? {
            None => PurgeOutcome::NotFound,
            Some(header) if !header.status.is_final() => PurgeOutcome::NotFinished,
            Some(header) => {
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
        let mut count = self.finished_count()?;
        let mut deleted = 0usize;
        loop {
            let oldest = self.finished.first()?.map(|(key, _)| {
                let (at, id) = key.value();
                (at, id.to_string())
            });
            let Some((at, id)) = oldest else {
                break;
            };
            let expired = cutoff_ms.is_some_and(|cutoff| at <= cutoff);
            if !expired && count <= finished_max {
                break;
            }
            if deleted == delete_max {
                report.expire_more = true;
                break;
            }
            let header = self.header(&id)?.ok_or_else(|| {
                corrupt(format!("task {id}"), "in the finished index but not stored")
            })?;
            report.deleted.push(self.delete_task(&header, now_ms)?);
            count -= 1;
            deleted += 1;
        }
        Ok(())
    }

    fn delete_modules(
        &mut self,
        hashes: &[[u8; 32]],
        report: &mut BatchReport,
    ) -> Result<(), Step> {
        for hash in hashes {
            let count = self.refs.get(hash.as_slice())?.map(|v| v.value().0);
            if count.unwrap_or(0) > 0 {
                report.modules_kept.push(*hash);
                continue;
            }
            self.refs.remove(hash.as_slice())?;
            self.modules.remove(hash.as_slice())?;
            report.modules_deleted.push(*hash);
        }
        Ok(())
    }
}

impl RedbStore {
    /// Commits `batch` in one transaction: all of it or, on any error, none.
    /// The commit waits for the fsync before it becomes visible, so what a
    /// reader sees survives a crash.
    pub(super) fn commit_batch(&self, batch: &Batch) -> Result<BatchReport, StoreError> {
        let what = batch.describe();
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| write_err(what.clone())(boxed(e)))?;
        txn.set_durability(Durability::Immediate);
        let mut report = BatchReport::default();
        let applied = (|| -> Result<(), Step> {
            let mut tables = Tables::open(&txn)?;
            for op in &batch.ops {
                match op {
                    Op::PutTask { header, runs, .. } => tables.put_task(header, runs)?,
                    Op::PutModule {
                        hash,
                        bytes,
                        now_ms,
                    } => tables.put_module(hash, bytes, *now_ms)?,
                    Op::Purge { id, now_ms } => tables.purge(id, *now_ms, &mut report)?,
                    Op::Expire {
                        now_ms,
                        retain_ms,
                        finished_max,
                        delete_max,
                    } => tables.expire(
                        *now_ms,
                        *retain_ms,
                        *finished_max,
                        *delete_max,
                        &mut report,
                    )?,
                    Op::DeleteModules { hashes } => tables.delete_modules(hashes, &mut report)?,
                }
            }
            Ok(())
        })();
        match applied {
            // Dropping the uncommitted transaction aborts it.
            Err(Step::Redb(source)) => Err(StoreError::Write { what, source }),
            Err(Step::Refused(error)) => Err(error),
            Ok(()) => {
                txn.commit().map_err(|e| write_err(what)(boxed(e)))?;
                Ok(report)
            }
        }
    }
}
