//! Durable storage of tasks, modules and idempotency keys.
//!
//! Backed by redb: pure Rust (no C toolchain, unlike SQLite), one file, ACID
//! transactions with copy-on-write B-trees, and a commit that fsyncs before it returns,
//! so a task acknowledged after `put_task` survives a crash. Tasks are stored whole as
//! JSON under their id: the scheduler reports a changed task, not a diff, and a task is
//! small and bounded (`REPEATS_MAX` runs, bounded stdout).

use std::path::{Path, PathBuf};

use redb::{Builder, Database, Durability, ReadableTable, StorageBackend, TableDefinition};
use sha2::{Digest, Sha256};

use super::types::{Task, TaskId};

/// Largest module accepted, in bytes (the original's upload limit).
pub const MODULE_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Longest idempotency key, in bytes.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 256;
/// Layout version written at creation; another version is refused.
pub const STORE_VERSION: u64 = 1;

const TASKS: TableDefinition<&str, &[u8]> = TableDefinition::new("tasks");
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
    #[error("database layout version {found}, expected {STORE_VERSION}; not opened")]
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
        if let Some(found) = found.filter(|v| *v != STORE_VERSION) {
            return Err(StoreError::Version { found });
        }
        let err = write_err("table layout");
        txn.commit().map_err(|e| err(boxed(e)))
    }

    /// Writes the whole task under its id in one transaction, durable on return.
    pub fn put_task(&self, task: &Task) -> Result<(), StoreError> {
        let id = &task.spec.id;
        let bytes = serde_json::to_vec(task).map_err(|e| StoreError::Encode {
            id: id.clone(),
            reason: e.to_string(),
        })?;
        self.write(format!("task {id}"), |txn| {
            txn.open_table(TASKS)
                .map_err(boxed)?
                .insert(id.as_str(), bytes.as_slice())
                .map_err(boxed)?;
            Ok(())
        })
    }

    /// Writes several whole tasks in one transaction: one commit for a batch of
    /// changes. `durable` waits for the fsync; otherwise the write reaches the disk
    /// with the next durable commit (see [`Store::sync`]) and may be lost in a
    /// crash before it (run results, which are at-least-once anyway, are written
    /// that way).
    pub fn put_tasks(&self, tasks: &[&Task], durable: bool) -> Result<(), StoreError> {
        let mut encoded = Vec::with_capacity(tasks.len());
        for task in tasks {
            let id = &task.spec.id;
            let bytes = serde_json::to_vec(task).map_err(|e| StoreError::Encode {
                id: id.clone(),
                reason: e.to_string(),
            })?;
            encoded.push((id.as_str(), bytes));
        }
        let durability = if durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        self.write_with(format!("{} tasks", tasks.len()), durability, |txn| {
            let mut table = txn.open_table(TASKS).map_err(boxed)?;
            for (id, bytes) in &encoded {
                table.insert(*id, bytes.as_slice()).map_err(boxed)?;
            }
            Ok(())
        })
    }

    /// Makes every earlier non-durable write durable (an empty durable commit).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.write("sync", |_| Ok(()))
    }

    /// Deletes a task; deleting a missing one is a no-op.
    pub fn delete_task(&self, id: &TaskId) -> Result<(), StoreError> {
        self.write(format!("deletion of task {id}"), |txn| {
            txn.open_table(TASKS)
                .map_err(boxed)?
                .remove(id.as_str())
                .map_err(boxed)?;
            Ok(())
        })
    }

    /// Every stored task, ordered by id.
    pub fn tasks(&self) -> Result<Vec<Task>, StoreError> {
        let err = || read_err("tasks");
        let txn = self.db.begin_read().map_err(|e| err()(boxed(e)))?;
        let table = txn.open_table(TASKS).map_err(|e| err()(boxed(e)))?;
        let mut tasks = Vec::new();
        for entry in table.iter().map_err(|e| err()(boxed(e)))? {
            let (key, value) = entry.map_err(|e| err()(boxed(e)))?;
            let task: Task =
                serde_json::from_slice(value.value()).map_err(|e| StoreError::Corrupt {
                    what: format!("task {}", key.value()),
                    reason: e.to_string(),
                })?;
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
