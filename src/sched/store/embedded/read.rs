//! Reading redb: headers, pages of runs, lists by status, the unfinished tasks a
//! restart resumes, modules and keys. Every read is one read transaction, so
//! it sees one commit whole.

use std::collections::BTreeMap;

use redb::{ReadTransaction, ReadableTable};

use super::layout::{
    BY_STATUS, FINISHED_COUNT, IDEMPOTENCY, META, MODULES, MODULE_REFS, RUNS, TASKS,
};
use super::{boxed, read_err, RedbStore};
use crate::sched::id::TaskId;
use crate::sched::store::{ModuleRefs, StoreError};
use crate::sched::types::{Run, Task, TaskHeader, TaskStatus};

fn decode<T: serde::de::DeserializeOwned>(what: String, bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what,
        reason: e.to_string(),
    })
}

fn header_in(txn: &ReadTransaction, id: &TaskId) -> Result<Option<TaskHeader>, StoreError> {
    let err = || read_err(format!("task {id}"));
    let table = txn.open_table(TASKS).map_err(|e| err()(boxed(e)))?;
    let value = table.get(id.as_str()).map_err(|e| err()(boxed(e)))?;
    value
        .map(|v| decode(format!("task {id}"), v.value()))
        .transpose()
}

fn runs_in(
    txn: &ReadTransaction,
    id: &TaskId,
    offset: u32,
    limit: usize,
) -> Result<Vec<Run>, StoreError> {
    let err = || read_err(format!("runs of task {id}"));
    let table = txn.open_table(RUNS).map_err(|e| err()(boxed(e)))?;
    let mut runs = Vec::new();
    let range = table
        .range((id.as_str(), offset)..=(id.as_str(), u32::MAX))
        .map_err(|e| err()(boxed(e)))?;
    for entry in range.take(limit) {
        let (key, value) = entry.map_err(|e| err()(boxed(e)))?;
        let (_, index) = key.value();
        let run: Run = decode(format!("run {id}/{index}"), value.value())?;
        if run.index != index {
            return Err(StoreError::Corrupt {
                what: format!("run {id}/{index}"),
                reason: format!("holds index {}", run.index),
            });
        }
        runs.push(run);
    }
    Ok(runs)
}

impl RedbStore {
    fn read(&self, what: &str) -> Result<ReadTransaction, StoreError> {
        self.db.begin_read().map_err(|e| read_err(what)(boxed(e)))
    }

    /// The task's header, if stored.
    pub(super) fn header(&self, id: &TaskId) -> Result<Option<TaskHeader>, StoreError> {
        let txn = self.read("task")?;
        header_in(&txn, id)
    }

    /// Up to `limit` runs of the task from index `offset`, in index order.
    pub(super) fn runs(
        &self,
        id: &TaskId,
        offset: u32,
        limit: usize,
    ) -> Result<Vec<Run>, StoreError> {
        let txn = self.read("runs")?;
        runs_in(&txn, id, offset, limit)
    }

    /// The task's header with up to `limit` of its runs from index `offset`,
    /// both from one commit.
    pub(super) fn task_page(
        &self,
        id: &TaskId,
        offset: u32,
        limit: usize,
    ) -> Result<Option<(TaskHeader, Vec<Run>)>, StoreError> {
        let txn = self.read("task")?;
        let Some(header) = header_in(&txn, id)? else {
            return Ok(None);
        };
        Ok(Some((header, runs_in(&txn, id, offset, limit)?)))
    }

    /// Up to `limit` task headers ordered by id, after `after` (if given) and
    /// then skipping `offset`, with `status` only (if given).
    pub(super) fn list(
        &self,
        status: Option<TaskStatus>,
        after: Option<&TaskId>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<TaskHeader>, StoreError> {
        let err = || read_err("task list");
        let txn = self.read("task list")?;
        let tasks = txn.open_table(TASKS).map_err(|e| err()(boxed(e)))?;
        let after = after.map(TaskId::as_str);
        let mut headers = Vec::new();
        match status {
            None => {
                let range = match after {
                    Some(after) => tasks.range::<&str>((
                        std::ops::Bound::Excluded(after),
                        std::ops::Bound::Unbounded,
                    )),
                    None => tasks.range::<&str>(..),
                }
                .map_err(|e| err()(boxed(e)))?;
                for entry in range.skip(offset).take(limit) {
                    let (key, value) = entry.map_err(|e| err()(boxed(e)))?;
                    headers.push(decode(format!("task {}", key.value()), value.value())?);
                }
            }
            Some(status) => {
                let index = txn.open_table(BY_STATUS).map_err(|e| err()(boxed(e)))?;
                let code = status.code();
                let start = match after {
                    Some(after) => std::ops::Bound::Excluded((code, after)),
                    None => std::ops::Bound::Included((code, "")),
                };
                let range = index
                    .range::<(u8, &str)>((start, std::ops::Bound::Unbounded))
                    .map_err(|e| err()(boxed(e)))?;
                for entry in range.skip(offset) {
                    if headers.len() == limit {
                        break;
                    }
                    let (key, _) = entry.map_err(|e| err()(boxed(e)))?;
                    let (found, id) = key.value();
                    if found != code {
                        break;
                    }
                    let value = tasks.get(id).map_err(|e| err()(boxed(e)))?;
                    let Some(value) = value else {
                        return Err(StoreError::Corrupt {
                            what: format!("task {id}"),
                            reason: "in the status index but not stored".into(),
                        });
                    };
                    headers.push(decode(format!("task {id}"), value.value())?);
                }
            }
        }
        Ok(headers)
    }

    /// Every unfinished task with its runs, ordered by id: what a restart resumes.
    pub(super) fn open_tasks(&self) -> Result<Vec<Task>, StoreError> {
        let mut ids = Vec::new();
        {
            let err = || read_err("unfinished tasks");
            let txn = self.read("unfinished tasks")?;
            let index = txn.open_table(BY_STATUS).map_err(|e| err()(boxed(e)))?;
            for status in TaskStatus::ALL.into_iter().filter(|s| !s.is_final()) {
                let code = status.code();
                let range = index.range((code, "")..).map_err(|e| err()(boxed(e)))?;
                for entry in range {
                    let (key, _) = entry.map_err(|e| err()(boxed(e)))?;
                    let (found, id) = key.value();
                    if found != code {
                        break;
                    }
                    ids.push(super::super::stored_id("the status index", id)?);
                }
            }
        }
        ids.sort();
        ids.iter()
            .map(|id| super::super::whole_task(self, id))
            .collect()
    }

    /// The module with this SHA-256, if stored.
    pub(super) fn module(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        let err = || read_err("module");
        let txn = self.read("module")?;
        let table = txn.open_table(MODULES).map_err(|e| err()(boxed(e)))?;
        let value = table.get(hash.as_slice()).map_err(|e| err()(boxed(e)))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Every stored module's use, by hash.
    pub(super) fn module_refs(&self) -> Result<BTreeMap<[u8; 32], ModuleRefs>, StoreError> {
        let err = || read_err("module references");
        let txn = self.read("module references")?;
        let table = txn.open_table(MODULE_REFS).map_err(|e| err()(boxed(e)))?;
        let mut refs = BTreeMap::new();
        for entry in table.iter().map_err(|e| err()(boxed(e)))? {
            let (hash, value) = entry.map_err(|e| err()(boxed(e)))?;
            let hash: [u8; 32] = hash.value().try_into().map_err(|_| StoreError::Corrupt {
                what: "module reference".into(),
                reason: format!("a key of {} bytes", hash.value().len()),
            })?;
            let (tasks, unused_since_ms) = value.value();
            refs.insert(
                hash,
                ModuleRefs {
                    tasks,
                    unused_since_ms,
                },
            );
        }
        Ok(refs)
    }

    /// The task a request with idempotency `key` created, while that task is kept.
    pub(super) fn idempotency(&self, key: &str) -> Result<Option<TaskId>, StoreError> {
        let err = || read_err("idempotency key");
        let txn = self.read("idempotency key")?;
        let table = txn.open_table(IDEMPOTENCY).map_err(|e| err()(boxed(e)))?;
        let value = table.get(key).map_err(|e| err()(boxed(e)))?;
        value
            .map(|v| super::super::stored_id("the idempotency table", v.value()))
            .transpose()
    }

    /// How many finished tasks are kept.
    pub(super) fn finished_count(&self) -> Result<u64, StoreError> {
        let err = || read_err("finished count");
        let txn = self.read("finished count")?;
        let table = txn.open_table(META).map_err(|e| err()(boxed(e)))?;
        let value = table.get(FINISHED_COUNT).map_err(|e| err()(boxed(e)))?;
        Ok(value.map_or(0, |v| v.value()))
    }
}
