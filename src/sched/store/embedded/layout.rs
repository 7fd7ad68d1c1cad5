//! The tables of layout 3, and the migrations from layouts 1 and 2, which run
//! inside the opening transaction: a migration commits whole or not at all.

use std::collections::BTreeMap;

use redb::{Database, Durability, ReadableTable, TableDefinition, WriteTransaction};

use super::{boxed, write_err};
use crate::sched::store::StoreError;
use crate::sched::types::{Run, Task};

/// Layout version written at creation; 1 (whole tasks) and 2 (no indexes) are
/// migrated on open, any other version is refused.
pub const STORE_VERSION: u64 = 3;

/// Task headers as JSON (`TaskHeader`; version 1 kept whole tasks here).
pub(super) const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
/// Runs as JSON, by (task id, run index).
pub(super) const RUNS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("runs");
/// Module bytes by SHA-256.
pub(super) const MODULES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("modules");
/// Per module: (tasks that refer to it, ms since which none has).
pub(super) const MODULE_REFS: TableDefinition<&[u8], (u64, u64)> =
    TableDefinition::new("module_refs");
/// Idempotency key to the task it created (the key lives as long as the task).
pub(super) const IDEMPOTENCY: TableDefinition<&str, &str> = TableDefinition::new("idempotency");
/// (status code, id) of every task.
pub(super) const BY_STATUS: TableDefinition<(u8, &str), ()> = TableDefinition::new("by_status");
/// (finished ms, id) of every finished task: retention takes the oldest first.
pub(super) const FINISHED: TableDefinition<(u64, &str), ()> = TableDefinition::new("finished");
/// `version`, and `finished` (the number of finished tasks).
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// The META key counting finished tasks.
pub(super) const FINISHED_COUNT: &str = "finished";

/// Creates the tables so that reads never meet a missing one, checks the
/// version and migrates an older layout, in one durable transaction.
pub(super) fn init(db: &Database) -> Result<(), StoreError> {
    let err = || write_err("table layout");
    let mut txn = db.begin_write().map_err(|e| err()(boxed(e)))?;
    txn.set_durability(Durability::Immediate);
    let found = {
        txn.open_table(TASKS).map_err(|e| err()(boxed(e)))?;
        txn.open_table(RUNS).map_err(|e| err()(boxed(e)))?;
        txn.open_table(MODULES).map_err(|e| err()(boxed(e)))?;
        txn.open_table(MODULE_REFS).map_err(|e| err()(boxed(e)))?;
        txn.open_table(IDEMPOTENCY).map_err(|e| err()(boxed(e)))?;
        txn.open_table(BY_STATUS).map_err(|e| err()(boxed(e)))?;
        txn.open_table(FINISHED).map_err(|e| err()(boxed(e)))?;
        let mut meta = txn.open_table(META).map_err(|e| err()(boxed(e)))?;
        let found = meta
            .get("version")
            .map_err(|e| err()(boxed(e)))?
            .map(|v| v.value());
        if found.is_none() {
            meta.insert("version", STORE_VERSION)
                .map_err(|e| err()(boxed(e)))?;
        }
        found
    };
    match found {
        None | Some(STORE_VERSION) => {}
        Some(1) => {
            migrate_whole_tasks(&txn)?;
            add_indexes(&txn)?;
        }
        Some(2) => add_indexes(&txn)?,
        Some(found) => {
            return Err(StoreError::Version {
                found,
                expected: STORE_VERSION,
            })
        }
    }
    txn.commit().map_err(|e| err()(boxed(e)))
}

/// A header (or, in layout 1, a whole task) as JSON.
fn decode_whole(id: &str, bytes: &[u8]) -> Result<Task, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what: format!("task {id}"),
        reason: e.to_string(),
    })
}

fn encode<T: serde::Serialize>(what: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
        what: what.to_string(),
        reason: format!("does not encode: {e}"),
    })
}

/// Layout 1 to 2: every whole task (runs inside) becomes a header and its runs.
fn migrate_whole_tasks(txn: &WriteTransaction) -> Result<(), StoreError> {
    let err = || write_err("migration to layout 2");
    let mut tasks = Vec::new();
    {
        let table = txn.open_table(TASKS).map_err(|e| err()(boxed(e)))?;
        for entry in table.iter().map_err(|e| err()(boxed(e)))? {
            let (key, value) = entry.map_err(|e| err()(boxed(e)))?;
            tasks.push(decode_whole(key.value(), value.value())?);
        }
    }
    let mut headers = txn.open_table(TASKS).map_err(|e| err()(boxed(e)))?;
    let mut runs = txn.open_table(RUNS).map_err(|e| err()(boxed(e)))?;
    for mut task in tasks {
        let id = task.spec.id.to_string();
        for run in std::mem::take(&mut task.runs) {
            let bytes = encode(&format!("run {id}/{}", run.index), &run)?;
            runs.insert((id.as_str(), run.index), bytes.as_slice())
                .map_err(|e| err()(boxed(e)))?;
        }
        let bytes = encode(&format!("task {id}"), &task)?;
        headers
            .insert(id.as_str(), bytes.as_slice())
            .map_err(|e| err()(boxed(e)))?;
    }
    tracing::info!("task store migrated to layout 2");
    Ok(())
}

/// Layout 2 to 3: headers become [`TaskHeader`]s (with the run count, the
/// finish time and the idempotency key), and the status, finished and
/// module-reference tables are built.
fn add_indexes(txn: &WriteTransaction) -> Result<(), StoreError> {
    let err = || write_err("migration to layout 3");
    let mut keys_by_task: BTreeMap<String, String> = BTreeMap::new();
    {
        let table = txn.open_table(IDEMPOTENCY).map_err(|e| err()(boxed(e)))?;
        for entry in table.iter().map_err(|e| err()(boxed(e)))? {
            let (key, task) = entry.map_err(|e| err()(boxed(e)))?;
            keys_by_task.insert(task.value().to_string(), key.value().to_string());
        }
    }
    let mut headers = Vec::new();
    {
        let tasks = txn.open_table(TASKS).map_err(|e| err()(boxed(e)))?;
        let runs = txn.open_table(RUNS).map_err(|e| err()(boxed(e)))?;
        for entry in tasks.iter().map_err(|e| err()(boxed(e)))? {
            let (key, value) = entry.map_err(|e| err()(boxed(e)))?;
            let id = key.value();
            let mut task = decode_whole(id, value.value())?;
            let mut runs_created = 0u32;
            for entry in runs
                .range((id, 0)..=(id, u32::MAX))
                .map_err(|e| err()(boxed(e)))?
            {
                let (_, value) = entry.map_err(|e| err()(boxed(e)))?;
                let run: Run =
                    serde_json::from_slice(value.value()).map_err(|e| StoreError::Corrupt {
                        what: format!("run of task {id}"),
                        reason: e.to_string(),
                    })?;
                runs_created += 1;
                if task.status.is_final() {
                    let at = run.finished_ms.unwrap_or(task.submitted_ms);
                    task.finished_ms = Some(task.finished_ms.map_or(at, |f| f.max(at)));
                }
            }
            if task.status.is_final() {
                task.finished_ms.get_or_insert(task.submitted_ms);
            }
            task.spec.idempotency_key = keys_by_task.get(id).cloned();
            let mut header = task.header();
            header.runs_created = runs_created;
            headers.push(header);
        }
    }
    let latest_ms = headers
        .iter()
        .map(|h| h.finished_ms.unwrap_or(h.submitted_ms).max(h.submitted_ms))
        .max()
        .unwrap_or(0);
    let mut refs: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
    {
        let modules = txn.open_table(MODULES).map_err(|e| err()(boxed(e)))?;
        for entry in modules.iter().map_err(|e| err()(boxed(e)))? {
            let (hash, _) = entry.map_err(|e| err()(boxed(e)))?;
            refs.insert(hash.value().to_vec(), 0);
        }
    }
    let mut finished = 0u64;
    {
        let mut tasks = txn.open_table(TASKS).map_err(|e| err()(boxed(e)))?;
        let mut by_status = txn.open_table(BY_STATUS).map_err(|e| err()(boxed(e)))?;
        let mut finished_index = txn.open_table(FINISHED).map_err(|e| err()(boxed(e)))?;
        for header in &headers {
            let id = header.spec.id.as_str();
            let bytes = encode(&format!("task {id}"), header)?;
            tasks
                .insert(id, bytes.as_slice())
                .map_err(|e| err()(boxed(e)))?;
            by_status
                .insert((header.status.code(), id), ())
                .map_err(|e| err()(boxed(e)))?;
            if let (true, Some(at)) = (header.status.is_final(), header.finished_ms) {
                finished_index
                    .insert((at, id), ())
                    .map_err(|e| err()(boxed(e)))?;
                finished += 1;
            }
            *refs.entry(header.spec.module_hash.to_vec()).or_default() += 1;
        }
    }
    {
        // A module no task refers to starts its grace period at the migration
        // (as far as the file can tell the time: its latest timestamp).
        let mut table = txn.open_table(MODULE_REFS).map_err(|e| err()(boxed(e)))?;
        for (hash, count) in &refs {
            table
                .insert(hash.as_slice(), (*count, latest_ms))
                .map_err(|e| err()(boxed(e)))?;
        }
        let mut meta = txn.open_table(META).map_err(|e| err()(boxed(e)))?;
        meta.insert(FINISHED_COUNT, finished)
            .map_err(|e| err()(boxed(e)))?;
        meta.insert("version", STORE_VERSION)
            .map_err(|e| err()(boxed(e)))?;
    }
    tracing::info!(
        tasks = headers.len(),
        finished,
        modules = refs.len(),
        "task store migrated to layout 3"
    );
    Ok(())
}
