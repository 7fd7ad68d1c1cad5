//! Writing one task and its runs: in one statement when it is new or this
//! writer's own unfinished task, else after checking the stored copy (whose
//! it is, whether it is final, whether the write would change its spec).

use super::{corrupt, encode, ms, owner_of, Owner, Step, Writer};
use crate::sched::store::pg::queries::*;
use crate::sched::store::{StoreError, TakenCause, TakenTask};
use crate::sched::types::{Run, TaskHeader};

/// A task's row and its runs' rows, as `put_task` writes them.
struct TaskRow {
    status: i16,
    finished_ms: Option<i64>,
    json: String,
    indexes: Vec<i64>,
    bodies: Vec<String>,
}

impl TaskRow {
    /// Encodes `header` and `runs`; a final task without a finish time, or a
    /// run beyond those created, is corrupt.
    fn of(header: &TaskHeader, runs: &[Run]) -> Result<TaskRow, Step> {
        let id = &header.spec.id;
        let finished_ms = if header.status.is_final() {
            let at = header
                .finished_ms
                .ok_or_else(|| corrupt(format!("task {id}"), "final without a finish time"))?;
            Some(ms(at, "finish time")?)
        } else {
            None
        };
        let json = encode(id, "header", header)?;
        let mut indexes = Vec::with_capacity(runs.len());
        let mut bodies = Vec::with_capacity(runs.len());
        for run in runs {
            if run.index >= header.runs_created {
                return Err(corrupt(
                    format!("run {id}/{}", run.index),
                    format!("beyond the {} runs created", header.runs_created),
                ));
            }
            indexes.push(i64::from(run.index));
            bodies.push(encode(id, &format!("run {}", run.index), run)?);
        }
        Ok(TaskRow {
            status: i16::from(header.status.code()),
            finished_ms,
            json,
            indexes,
            bodies,
        })
    }
}

impl Writer<'_, '_> {
    /// Writes a task and the listed runs; a new task someone else stored
    /// first (a shared store) is not written and comes back as taken. A task
    /// the writer believes `new` is first inserted whole in one statement; if
    /// its id or key is taken, the checks below decide as for any other.
    pub(super) fn put_task(
        &mut self,
        header: &TaskHeader,
        runs: &[Run],
        new: bool,
    ) -> Result<Option<TakenTask>, Step> {
        let row = TaskRow::of(header, runs)?;
        let fast = if new {
            self.insert_new(header, &row)?
        } else {
            self.update_own(header, &row)?
        };
        if let Some(outcome) = fast {
            return Ok(outcome);
        }
        let id = &header.spec.id;
        let me = owner_of(self.lease);
        let previous = self.header_for_update(id.as_str())?;
        if let Some(taken) = self.check_previous(header, previous.as_ref(), &me)? {
            return Ok(Some(taken));
        }
        if previous.is_some() {
            let st = self.st(UPDATE_TASK).clone();
            let (status, finished_ms) = (row.status, row.finished_ms);
            self.txn
                .execute(&st, &[&id.as_str(), &status, &finished_ms, &row.json])?;
        } else if let Some(outcome) = self.insert_task(header, &row, me)? {
            return Ok(outcome);
        }
        if row.finished_ms.is_some() {
            self.finished_delta += 1;
            let st = self.st(DELETE_CANCEL).clone();
            self.txn.execute(&st, &[&id.as_str()])?;
        }
        if runs.is_empty() {
            return Ok(None);
        }
        let st = self.st(UPSERT_RUNS).clone();
        self.txn
            .execute(&st, &[&id.as_str(), &row.indexes, &row.bodies])?;
        Ok(None)
    }

    /// A new task inserted whole in one statement: `Some` with the outcome if
    /// it was, `None` if its id or key is taken (the checks decide then).
    fn insert_new(
        &mut self,
        header: &TaskHeader,
        row: &TaskRow,
    ) -> Result<Option<Option<TakenTask>>, Step> {
        let id = &header.spec.id;
        let (gateway, epoch) = owner_of(self.lease).unzip();
        let st = self.st(INSERT_NEW_TASK).clone();
        let db_row = self.txn.query_one(
            &st,
            &[
                &id.as_str(),
                &row.status,
                &row.finished_ms,
                &header.spec.idempotency_key.as_deref(),
                &header.spec.module_hash.as_slice(),
                &row.json,
                &gateway,
                &epoch,
                &row.indexes,
                &row.bodies,
            ],
        )?;
        let (inserted, referred): (i64, i64) = (db_row.get(0), db_row.get(1));
        if inserted != 1 {
            return Ok(None);
        }
        if referred != 1 {
            return self.module_gone(id, &header.spec.module_hash).map(Some);
        }
        if row.finished_ms.is_some() {
            // New: no cancel request can name it yet.
            self.finished_delta += 1;
        }
        Ok(Some(None))
    }

    /// The common update in one round trip: only an unfinished task this
    /// writer owns, with the same spec, is written (`Some`); anything else
    /// (`None`) goes through the checks, which say what is wrong.
    fn update_own(
        &mut self,
        header: &TaskHeader,
        row: &TaskRow,
    ) -> Result<Option<Option<TakenTask>>, Step> {
        let id = &header.spec.id;
        let (gateway, epoch) = owner_of(self.lease).unzip();
        let spec = encode(id, "spec", &header.spec)?;
        let spec_prefix = format!("{{\"spec\":{spec},\"status\":");
        let submitted = format!(",\"submitted_ms\":{},\"finished_ms\":", header.submitted_ms);
        debug_assert!(
            row.json.starts_with(&spec_prefix) && row.json.contains(&submitted),
            "the header's fields moved: the update's guard would never match"
        );
        let st = self.st(UPDATE_OWN_TASK).clone();
        let updated: i64 = self
            .txn
            .query_one(
                &st,
                &[
                    &id.as_str(),
                    &row.status,
                    &row.finished_ms,
                    &row.json,
                    &gateway,
                    &epoch,
                    &row.indexes,
                    &row.bodies,
                    &spec_prefix,
                    &submitted,
                ],
            )?
            .get(0);
        if updated != 1 {
            return Ok(None);
        }
        if row.finished_ms.is_some() {
            self.finished_delta += 1;
        }
        Ok(Some(None))
    }

    /// Checks a write of `header` against the stored copy, if any: `Some` if
    /// another gateway's task holds its id (this one is dropped, the batch
    /// stands); refused if it is another's unfinished task, is final, or the
    /// write would change its spec.
    fn check_previous(
        &mut self,
        header: &TaskHeader,
        previous: Option<&(TaskHeader, Owner)>,
        me: &Owner,
    ) -> Result<Option<TakenTask>, Step> {
        let id = &header.spec.id;
        let Some((old, owner)) = previous else {
            return Ok(None);
        };
        // Another task under this id, stored by another gateway since this
        // one accepted its own: this one's is dropped, the batch stands.
        let same_task = old.spec == header.spec && old.submitted_ms == header.submitted_ms;
        if !same_task && self.lease.is_some() && owner != me {
            let key = header.spec.idempotency_key.as_deref();
            return Ok(Some(self.insert_conflict(id, key)?));
        }
        // Final tasks have no owner left to check: the next check refuses them.
        if !old.status.is_final() && owner != me {
            return Err(Step::Refused(StoreError::NotOwner {
                id: id.clone(),
                owner: owner
                    .as_ref()
                    .map_or("nobody".into(), |(g, e)| format!("{g}/{e}")),
            }));
        }
        if old.status.is_final() {
            return Err(corrupt(
                format!("task {id}"),
                format!(
                    "is stored {:?}, final; it is never written again",
                    old.status
                ),
            ));
        }
        if !same_task {
            return Err(corrupt(
                format!("task {id}"),
                "a write would change its spec: another task with its id",
            ));
        }
        Ok(None)
    }

    /// Inserts a task not stored yet: `Some` with the outcome if it was not
    /// (taken by another writer, or its module is gone), `None` once inserted.
    fn insert_task(
        &mut self,
        header: &TaskHeader,
        row: &TaskRow,
        me: Owner,
    ) -> Result<Option<Option<TakenTask>>, Step> {
        let id = &header.spec.id;
        let key = header.spec.idempotency_key.as_deref();
        let hash = header.spec.module_hash.as_slice();
        let st = self.st(INSERT_TASK).clone();
        let (gateway, epoch) = me.unzip();
        let inserted = self.txn.execute(
            &st,
            &[
                &id.as_str(),
                &row.status,
                &row.finished_ms,
                &key,
                &hash,
                &row.json,
                &gateway,
                &epoch,
            ],
        )?;
        if inserted == 0 {
            let taken = self.insert_conflict(id, key)?;
            // Among several gateways another one stored it first:
            // this one drops its copy; the rest of the batch stands.
            if self.lease.is_some() {
                return Ok(Some(Some(taken)));
            }
            return Err(corrupt(
                format!("task {id}"),
                match &taken.cause {
                    TakenCause::Key(other) => format!(
                        "idempotency key {:?} names task {other} already",
                        key.unwrap_or_default()
                    ),
                    _ => "stored by another writer during this batch".into(),
                },
            ));
        }
        let hash = &header.spec.module_hash;
        if !self.refer(hash)? {
            return self.module_gone(id, hash).map(Some);
        }
        Ok(None)
    }
}
