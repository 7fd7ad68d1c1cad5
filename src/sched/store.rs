//! Durable storage of tasks, modules and idempotency keys.
//!
//! Backed by redb: pure Rust (no C toolchain, unlike SQLite), one file, ACID
//! transactions with copy-on-write B-trees, and a commit that fsyncs before it returns,
//! so a task acknowledged after `put_task` survives a crash. A task's header (spec,
//! status, counters) is JSON under its id, and each run is JSON under (id, index):
//! a task may hold `REPEATS_MAX` runs with up to 64 KiB of stdout each, so a change
//! writes the header and the runs that changed, never the whole task.

use std::path::{Path, PathBuf};

use redb::{Builder, Database, Durability, ReadableTable, StorageBackend, TableDefinition};
use sha2::{Digest, Sha256};

use super::types::{Run, Task, TaskId};

/// Largest module accepted, in bytes (the original's upload limit).
pub const MODULE_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Longest idempotency key, in bytes.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 256;
/// Layout version written at creation; version 1 (whole tasks) is migrated on
/// open, any other version is refused.
pub const STORE_VERSION: u64 = 2;

/// Task headers: the task as JSON with `runs` empty (version 1 kept the runs here).
const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
/// Runs as JSON, by (task id, run index).
const RUNS: TableDefinition<(&str, u32), &[u8]> = TableDefinition::new("runs");
const MODULES: TableDefinition<&[u8], &[u8]> = TableDefinition::new("modules");
const IDEMPOTENCY: TableDefinition<&str, &str> = TableDefinition::new("idempotency");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// A store operation that failed; the database is unchanged by it.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// The file could not be opened or created.
    #[error("database {path} not opened: {source}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: Box<redb::Error>,
    },
    /// A write transaction failed; nothing of it was committed.
    #[error("{what} not written: {source}")]
    Write {
        /// What was being written.
        what: String,
        /// Why.
        source: Box<redb::Error>,
    },
    /// A read failed.
    #[error("{what} not read: {source}")]
    Read {
        /// What was being read.
        what: String,
        /// Why.
        source: Box<redb::Error>,
    },
    /// A stored record does not decode.
    #[error("stored {what} is corrupt ({reason}); nothing loaded")]
    Corrupt {
        /// The record.
        what: String,
        /// Why.
        reason: String,
    },
    /// A task does not encode.
    #[error("task {id} not encoded ({reason}); not written")]
    Encode {
        /// The task.
        id: TaskId,
        /// Why.
        reason: String,
    },
    /// The module exceeds `MODULE_BYTES_MAX`.
    #[error("module of {bytes} bytes exceeds {MODULE_BYTES_MAX}; not stored")]
    ModuleTooLarge {
        /// Its size.
        bytes: usize,
    },
    /// The idempotency key is empty or too long.
    #[error(
        "idempotency key of {bytes} bytes rejected (1..={IDEMPOTENCY_KEY_BYTES_MAX}); not stored"
    )]
    BadKey {
        /// Its length.
        bytes: usize,
    },
    /// The file was written by another layout version.
    #[error("database layout version {found}, expected 1 or {STORE_VERSION}; not opened")]
    Version {
        /// The version found.
        found: u64,
    },
}

/// The gateway's database.
#[derive(Debug)]
pub struct Store {
    db: Database,
}

/// What to write of one task: its header and these of its runs.
pub struct TaskWrite<'a> {
    /// The task (its `runs` are not written unless listed in `runs`).
    pub task: &'a Task,
    /// The runs to write.
    pub runs: Vec<&'a Run>,
}

impl<'a> TaskWrite<'a> {
    /// The header and every run.
    pub fn whole(task: &'a Task) -> Self {
        TaskWrite {
            task,
            runs: task.runs.iter().collect(),
        }
    }
}

/// A task as its header row holds it: everything but the runs.
fn encode_header(task: &Task) -> Result<Vec<u8>, StoreError> {
    #[derive(serde::Serialize)]
    struct Header<'a> {
        spec: &'a super::types::TaskSpec,
        status: super::types::TaskStatus,
        completions: u64,
        submitted_ms: u64,
        runs: [(); 0],
    }
    serde_json::to_vec(&Header {
        spec: &task.spec,
        status: task.status,
        completions: task.completions,
        submitted_ms: task.submitted_ms,
        runs: [],
    })
    .map_err(|e| StoreError::Encode {
        id: task.spec.id.clone(),
        reason: e.to_string(),
    })
}

fn encode_run(id: &TaskId, run: &Run) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(run).map_err(|e| StoreError::Encode {
        id: id.clone(),
        reason: format!("run {}: {e}", run.index),
    })
}

/// A task's rows, encoded before the transaction opens.
struct EncodedTask<'a> {
    id: &'a str,
    header: Vec<u8>,
    runs: Vec<(u32, Vec<u8>)>,
}

impl<'a> EncodedTask<'a> {
    fn new(task: &'a Task, runs: &[&Run]) -> Result<Self, StoreError> {
        let id = &task.spec.id;
        let runs = runs
            .iter()
            .map(|run| Ok((run.index, encode_run(id, run)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(EncodedTask {
            id: id.as_str(),
            header: encode_header(task)?,
            runs,
        })
    }
}

/// Writes encoded headers and runs in `txn`.
fn write_rows(
    txn: &redb::WriteTransaction,
    rows: &[EncodedTask<'_>],
) -> Result<(), Box<redb::Error>> {
    let mut tasks = txn.open_table(TASKS).map_err(boxed)?;
    let mut runs = txn.open_table(RUNS).map_err(boxed)?;
    for row in rows {
        tasks.insert(row.id, row.header.as_slice()).map_err(boxed)?;
        for (index, run) in &row.runs {
            runs.insert((row.id, *index), run.as_slice())
                .map_err(boxed)?;
        }
    }
    Ok(())
}

/// A header (or, in layout version 1, a whole task) as stored under `id`.
fn decode_task(id: &str, bytes: &[u8]) -> Result<Task, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        what: format!("task {id}"),
        reason: e.to_string(),
    })
}

/// Rewrites every layout-1 task (runs inside the task) as a header and its runs,
/// inside the opening transaction: the migration commits whole or not at all.
fn migrate_whole_tasks(txn: &redb::WriteTransaction) -> Result<(), StoreError> {
    let err = || write_err("migration to layout 2");
    let mut tasks = Vec::new();
    {
        let table = txn.open_table(TASKS).map_err(|e| err()(boxed(e)))?;
        for entry in table.iter().map_err(|e| err()(boxed(e)))? {
            let (key, value) = entry.map_err(|e| err()(boxed(e)))?;
            tasks.push(decode_task(key.value(), value.value())?);
        }
    }
    let rows = tasks
        .iter()
        .map(|task| EncodedTask::new(task, &task.runs.iter().collect::<Vec<_>>()))
        .collect::<Result<Vec<_>, StoreError>>()?;
    write_rows(txn, &rows).map_err(err())?;
    let mut meta = txn.open_table(META).map_err(|e| err()(boxed(e)))?;
    meta.insert("version", STORE_VERSION)
        .map_err(|e| err()(boxed(e)))?;
    tracing::info!(tasks = tasks.len(), "task store migrated to layout 2");
    Ok(())
}

/// Any redb error, boxed: redb's errors are large and travel inside `Result`s.
fn boxed(e: impl Into<redb::Error>) -> Box<redb::Error> {
    Box::new(e.into())
}

fn write_err(what: impl Into<String>) -> impl FnOnce(Box<redb::Error>) -> StoreError {
    let what = what.into();
    move |source| StoreError::Write { what, source }
}

fn read_err(what: impl Into<String>) -> impl FnOnce(Box<redb::Error>) -> StoreError {
    let what = what.into();
    move |source| StoreError::Read { what, source }
}

impl Store {
    /// Opens the database at `path`, creating it (and its tables) if missing.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path).map_err(|e| StoreError::Open {
            path: path.to_owned(),
            source: boxed(e),
        })?;
        let store = Store { db };
        store.init()?;
        Ok(store)
    }

    /// Opens the database kept by `backend` (the simulation's crashable disk),
    /// creating its tables if missing; `label` names it in errors.
    pub fn open_on(backend: impl StorageBackend, label: &str) -> Result<Self, StoreError> {
        let db = Builder::new()
            .create_with_backend(backend)
            .map_err(|e| StoreError::Open {
                path: PathBuf::from(label),
                source: boxed(e),
            })?;
        let store = Store { db };
        store.init()?;
        Ok(store)
    }

    /// Creates the tables so that reads never meet a missing one, and checks the version.
    fn init(&self) -> Result<(), StoreError> {
        let err = write_err("table layout");
        let mut txn = self.db.begin_write().map_err(|e| err(boxed(e)))?;
        txn.set_durability(Durability::Immediate);
        let found = {
            let err = write_err("table layout");
            txn.open_table(TASKS).map_err(|e| err(boxed(e)))?;
            let err = write_err("table layout");
            txn.open_table(MODULES).map_err(|e| err(boxed(e)))?;
            let err = write_err("table layout");
            txn.open_table(IDEMPOTENCY).map_err(|e| err(boxed(e)))?;
            let err = write_err("table layout");
            txn.open_table(RUNS).map_err(|e| err(boxed(e)))?;
            let err = write_err("table layout");
            let mut meta = txn.open_table(META).map_err(|e| err(boxed(e)))?;
            let err = read_err("layout version");
            let found = meta
                .get("version")
                .map_err(|e| err(boxed(e)))?
                .map(|v| v.value());
            if found.is_none() {
                let err = write_err("layout version");
                meta.insert("version", STORE_VERSION)
                    .map_err(|e| err(boxed(e)))?;
            }
            found
        };
        match found {
            None | Some(STORE_VERSION) => {}
            Some(1) => migrate_whole_tasks(&txn)?,
            Some(found) => return Err(StoreError::Version { found }),
        }
        let err = write_err("table layout");
        txn.commit().map_err(|e| err(boxed(e)))
    }

    /// Writes the whole task in one transaction, durable on return.
    pub fn put_task(&self, task: &Task) -> Result<(), StoreError> {
        self.put_changes(&[TaskWrite::whole(task)], true)
    }

    /// Writes several whole tasks in one transaction (see [`Store::put_changes`]).
    pub fn put_tasks(&self, tasks: &[&Task], durable: bool) -> Result<(), StoreError> {
        let writes: Vec<TaskWrite<'_>> = tasks.iter().map(|t| TaskWrite::whole(t)).collect();
        self.put_changes(&writes, durable)
    }

    /// Writes each task's header and the listed runs in one transaction: one
    /// commit for a batch of changes. `durable` waits for the fsync; otherwise
    /// the write reaches the disk with the next durable commit (see
    /// [`Store::sync`]) and may be lost in a crash before it.
    pub fn put_changes(&self, writes: &[TaskWrite<'_>], durable: bool) -> Result<(), StoreError> {
        let rows = writes
            .iter()
            .map(|w| EncodedTask::new(w.task, &w.runs))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let runs_written: usize = rows.iter().map(|r| r.runs.len()).sum();
        let durability = if durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        let what = format!("{} tasks ({runs_written} runs)", writes.len());
        self.write_with(what, durability, |txn| write_rows(txn, &rows))
    }

    /// Makes every earlier non-durable write durable (an empty durable commit).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.write("sync", |_| Ok(()))
    }

    /// Deletes a task and its runs; deleting a missing one is a no-op.
    pub fn delete_task(&self, id: &TaskId) -> Result<(), StoreError> {
        self.write(format!("deletion of task {id}"), |txn| {
            txn.open_table(TASKS)
                .map_err(boxed)?
                .remove(id.as_str())
                .map_err(boxed)?;
            txn.open_table(RUNS)
                .map_err(boxed)?
                .retain_in((id.as_str(), 0)..=(id.as_str(), u32::MAX), |_, _| false)
                .map_err(boxed)?;
            Ok(())
        })
    }

    /// Every stored task with its runs, ordered by id.
    pub fn tasks(&self) -> Result<Vec<Task>, StoreError> {
        let err = || read_err("tasks");
        let txn = self.db.begin_read().map_err(|e| err()(boxed(e)))?;
        let headers = txn.open_table(TASKS).map_err(|e| err()(boxed(e)))?;
        let runs = txn.open_table(RUNS).map_err(|e| err()(boxed(e)))?;
        let mut tasks = Vec::new();
        for entry in headers.iter().map_err(|e| err()(boxed(e)))? {
            let (key, value) = entry.map_err(|e| err()(boxed(e)))?;
            let id = key.value();
            let mut task = decode_task(id, value.value())?;
            for entry in runs
                .range((id, 0)..=(id, u32::MAX))
                .map_err(|e| err()(boxed(e)))?
            {
                let (key, value) = entry.map_err(|e| err()(boxed(e)))?;
                let (_, index) = key.value();
                let run: Run =
                    serde_json::from_slice(value.value()).map_err(|e| StoreError::Corrupt {
                        what: format!("run {id}/{index}"),
                        reason: e.to_string(),
                    })?;
                if run.index != index || usize::try_from(index).ok() != Some(task.runs.len()) {
                    return Err(StoreError::Corrupt {
                        what: format!("run {id}/{index}"),
                        reason: format!(
                            "holds index {} where index {} was expected",
                            run.index,
                            task.runs.len()
                        ),
                    });
                }
                task.runs.push(run);
            }
            tasks.push(task);
        }
        Ok(tasks)
    }

    /// Stores module bytes under their SHA-256 and returns it; storing twice is a no-op.
    pub fn put_module(&self, bytes: &[u8]) -> Result<[u8; 32], StoreError> {
        if bytes.len() > MODULE_BYTES_MAX {
            return Err(StoreError::ModuleTooLarge { bytes: bytes.len() });
        }
        let hash: [u8; 32] = Sha256::digest(bytes).into();
        if self.module(&hash)?.is_some() {
            return Ok(hash);
        }
        self.write("module", |txn| {
            txn.open_table(MODULES)
                .map_err(boxed)?
                .insert(hash.as_slice(), bytes)
                .map_err(boxed)?;
            Ok(())
        })?;
        Ok(hash)
    }

    /// The module with this SHA-256, if stored.
    pub fn module(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        let err = || read_err("module");
        let txn = self.db.begin_read().map_err(|e| err()(boxed(e)))?;
        let table = txn.open_table(MODULES).map_err(|e| err()(boxed(e)))?;
        let value = table.get(hash.as_slice()).map_err(|e| err()(boxed(e)))?;
        Ok(value.map(|v| v.value().to_vec()))
    }

    /// Remembers that a request with idempotency `key` created `task`.
    pub fn put_idempotency(&self, key: &str, task: &TaskId) -> Result<(), StoreError> {
        if key.is_empty() || key.len() > IDEMPOTENCY_KEY_BYTES_MAX {
            return Err(StoreError::BadKey { bytes: key.len() });
        }
        self.write("idempotency key", |txn| {
            txn.open_table(IDEMPOTENCY)
                .map_err(boxed)?
                .insert(key, task.as_str())
                .map_err(boxed)?;
            Ok(())
        })
    }

    /// The task a request with idempotency `key` created, if any.
    pub fn idempotency(&self, key: &str) -> Result<Option<TaskId>, StoreError> {
        let err = || read_err("idempotency key");
        let txn = self.db.begin_read().map_err(|e| err()(boxed(e)))?;
        let table = txn.open_table(IDEMPOTENCY).map_err(|e| err()(boxed(e)))?;
        let value = table.get(key).map_err(|e| err()(boxed(e)))?;
        Ok(value.map(|v| TaskId(v.value().to_owned())))
    }

    /// Runs `body` in one write transaction and commits it durably; on error nothing
    /// of it is written.
    fn write(
        &self,
        what: impl Into<String>,
        body: impl FnOnce(&redb::WriteTransaction) -> Result<(), Box<redb::Error>>,
    ) -> Result<(), StoreError> {
        self.write_with(what, Durability::Immediate, body)
    }

    /// [`Store::write`] with a chosen durability.
    fn write_with(
        &self,
        what: impl Into<String>,
        durability: Durability,
        body: impl FnOnce(&redb::WriteTransaction) -> Result<(), Box<redb::Error>>,
    ) -> Result<(), StoreError> {
        let what = what.into();
        let mut txn = self
            .db
            .begin_write()
            .map_err(|e| write_err(what.clone())(boxed(e)))?;
        txn.set_durability(durability);
        // Dropping an uncommitted transaction aborts it.
        body(&txn).map_err(write_err(what.clone()))?;
        txn.commit().map_err(|e| write_err(what)(boxed(e)))
    }
}
