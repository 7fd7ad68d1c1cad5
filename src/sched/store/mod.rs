//! Durable storage of tasks, runs, modules and idempotency keys, behind one
//! interface ([`TaskStore`]) with two engines:
//!
//! - `embedded` (the default): redb, one file beside the gateway, nothing to
//!   run or configure;
//! - `pg`: PostgreSQL, a server that several gateways can share;
//! - `memory`: a shared store in memory with PostgreSQL's sharing rules and
//!   the embedded engine's tables, for simulations and tests (nothing
//!   survives the process).
//!
//! Both commit every change as a [`Batch`] of operations in one transaction
//! (a submission's task, module and idempotency key are written together or
//! not at all), check that the batch keeps their tables in agreement (a batch
//! that would not is refused whole), and answer reads from committed state
//! only. What differs is said in docs/ARCHITECTURE.md ("The task store").

mod batch;
mod embedded;
mod memory;
mod pg;
mod shared;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::StorageBackend;

pub use batch::{Batch, BatchReport, DeletedTask, Op, PurgeOutcome, TakenCause, TakenTask};
pub use embedded::{RedbStore, STORE_VERSION};
pub use memory::{MemoryStore, StoreClock, GATEWAY_FORGET_MS};
pub use pg::{PgOptions, PgStore, PG_SCHEMA_VERSION};
pub use shared::{Lease, SharedStore};

use super::id::TaskId;
use super::types::{Run, Task, TaskHeader, TaskStatus};

/// Largest module accepted, in bytes (the original's upload limit).
pub const MODULE_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Pages redb keeps in memory, in bytes. redb's default (1 GiB) would let the
/// cache grow with the file; the gateway's memory must not grow with history.
pub const CACHE_BYTES: usize = 32 * 1024 * 1024;

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
    /// A stored record does not decode, or the tables disagree.
    #[error("stored {what} is corrupt ({reason}); nothing written")]
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
    /// A PostgreSQL statement or connection failed; the transaction it was
    /// part of is rolled back (if the connection broke during COMMIT, the
    /// server decided; nothing was acknowledged either way).
    #[error("{what}: PostgreSQL: {source}")]
    Postgres {
        /// What was being read or written.
        what: String,
        /// Why.
        source: Box<postgres::Error>,
    },
    /// The connection broke while COMMIT was under way: the server decided,
    /// and whether the transaction committed is unknown here. Nothing was
    /// acknowledged; it is not retried (a retry could write twice).
    #[error("{what}: the transaction's outcome is unknown ({detail}); nothing was acknowledged")]
    CommitUnknown {
        /// What was being written.
        what: String,
        /// Why: the connection broke during COMMIT, or no answer came in time.
        detail: String,
    },
    /// The PostgreSQL store's connections are all busy or broken past the wait.
    #[error("{what}: no PostgreSQL connection within {waited_ms} ms")]
    Unavailable {
        /// What was to be done.
        what: String,
        /// How long it waited.
        waited_ms: u64,
    },
    /// This gateway's lease on a shared store expired or was replaced: it may
    /// no longer write or run tasks; nothing of the operation was written.
    #[error(
        "{what}: the lease of gateway {gateway} (epoch {epoch}) is no longer live; nothing written"
    )]
    LeaseLost {
        /// What was to be done.
        what: String,
        /// The gateway.
        gateway: String,
        /// Its epoch.
        epoch: u64,
    },
    /// A write of a task another gateway (or epoch) owns; nothing written.
    #[error("task {id} is owned by {owner}, not by this gateway; nothing written")]
    NotOwner {
        /// The task.
        id: TaskId,
        /// Its owner as stored (`gateway/epoch`, or `nobody`).
        owner: String,
    },
    /// The file was written by another layout version.
    #[error("database layout version {found}, expected at most {expected}; not opened")]
    Version {
        /// The version found.
        found: u64,
        /// The newest this build knows.
        expected: u64,
    },
}

impl StoreError {
    /// Whether the operation failed without touching the database because it
    /// could not be reached (a refused or broken connection, a server shutting
    /// down or starting): retrying it later is safe and may succeed. Disk
    /// errors, refusals and corruption never are.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Unavailable { .. } => true,
            StoreError::Postgres { source, .. } => match source.code() {
                // Not from the server: transient if the connection failed (a
                // socket error or timeout, anywhere in the chain of causes,
                // or a closed connection); a row that does not convert, a
                // bad parameter or a refused configuration is not.
                None => source.is_closed() || caused_by_io(source.as_ref()),
                // Told apart by code (pg/sqlstate.rs): rolled back whole and
                // may succeed again.
                Some(code) => pg::transient_code(code),
            },
            _ => false,
        }
    }

    /// The operating system's error code behind this failure, if any (EIO is
    /// 5, ENOSPC 28): operators need it to tell a full disk from a broken one.
    pub fn os_error(&self) -> Option<i32> {
        let source: &(dyn std::error::Error + 'static) = match self {
            StoreError::Open { source, .. }
            | StoreError::Write { source, .. }
            | StoreError::Read { source, .. } => source.as_ref(),
            StoreError::Postgres { source, .. } => source.as_ref(),
            _ => return None,
        };
        let mut cause = Some(source);
        while let Some(error) = cause {
            if let Some(io) = error.downcast_ref::<std::io::Error>() {
                return io.raw_os_error();
            }
            cause = error.source();
        }
        None
    }
}

/// Whether an I/O error is among `error`'s causes (a refused, reset or
/// timed-out socket): the client's own kind of error, not its message.
fn caused_by_io(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<std::io::Error>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// What the store holds of a module's use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModuleRefs {
    /// Stored tasks that refer to it.
    pub tasks: u64,
    /// Since when no task has (meaningful when `tasks` is 0).
    pub unused_since_ms: u64,
}

/// What the gateway needs of a task store. Every method is one transaction
/// (or one consistent read) and may block: the gateway calls them off its
/// async threads, except for single-row reads.
pub trait TaskStore: Send + Sync + std::fmt::Debug {
    /// The engine's name (`redb`, `postgres`), for logs and metrics.
    fn engine(&self) -> &'static str;

    /// Commits `batch` in one transaction: all of it or, on any error, none.
    /// The commit waits for the disk before it becomes visible, so what a
    /// reader sees survives a crash.
    fn commit(&self, batch: &Batch) -> Result<BatchReport, StoreError>;

    /// The task's header, if stored.
    fn header(&self, id: &TaskId) -> Result<Option<TaskHeader>, StoreError>;

    /// Up to `limit` runs of the task from index `offset`, in index order.
    fn runs(&self, id: &TaskId, offset: u32, limit: usize) -> Result<Vec<Run>, StoreError>;

    /// The task's header with up to `limit` of its runs from index `offset`,
    /// both from one commit.
    fn task_page(
        &self,
        id: &TaskId,
        offset: u32,
        limit: usize,
    ) -> Result<Option<(TaskHeader, Vec<Run>)>, StoreError>;

    /// Up to `limit` task headers ordered by id (bytewise), after `after` (if
    /// given) and then skipping `offset`, with `status` only (if given).
    fn list(
        &self,
        status: Option<TaskStatus>,
        after: Option<&TaskId>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<TaskHeader>, StoreError>;

    /// Every unfinished task with its runs, ordered by id: what a restart resumes.
    fn open_tasks(&self) -> Result<Vec<Task>, StoreError>;

    /// The module with this SHA-256, if stored.
    fn module(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every stored module's use, by hash.
    fn module_refs(&self) -> Result<BTreeMap<[u8; 32], ModuleRefs>, StoreError>;

    /// The task a request with idempotency `key` created, while that task is kept.
    fn idempotency(&self, key: &str) -> Result<Option<TaskId>, StoreError>;

    /// How many finished tasks are kept.
    fn finished_count(&self) -> Result<u64, StoreError>;

    /// The store's leases and claims, if several gateways can share it.
    fn shared(&self) -> Option<&dyn SharedStore> {
        None
    }

    /// One run of the task.
    fn run(&self, id: &TaskId, index: u32) -> Result<Option<Run>, StoreError> {
        Ok(self
            .runs(id, index, 1)?
            .into_iter()
            .find(|r| r.index == index))
    }

    /// Writes the whole task (header and every run) in one transaction.
    fn put_task(&self, task: &Task) -> Result<(), StoreError> {
        self.put_tasks(&[task])
    }

    /// Writes several whole tasks in one transaction (see [`TaskStore::commit`]).
    fn put_tasks(&self, tasks: &[&Task]) -> Result<(), StoreError> {
        let ops = tasks
            .iter()
            .map(|task| Op::PutTask {
                header: Box::new(task.header()),
                runs: task.runs.clone(),
                new: false,
            })
            .collect();
        self.commit(&Batch { ops }).map(drop)
    }

    /// Stores module bytes under their SHA-256 and returns it; storing twice
    /// is a no-op.
    fn put_module(&self, bytes: &[u8], now_ms: u64) -> Result<[u8; 32], StoreError> {
        let hash = ww::exec::ModuleHash::of(bytes).0;
        let op = Op::PutModule {
            hash,
            bytes: std::sync::Arc::new(bytes.to_vec()),
            now_ms,
        };
        self.commit(&Batch { ops: vec![op] })?;
        Ok(hash)
    }

    /// Every stored task with its runs, ordered by id (for tests and tools:
    /// the gateway never loads finished tasks whole).
    fn tasks(&self) -> Result<Vec<Task>, StoreError> {
        let mut tasks = Vec::new();
        let mut after: Option<TaskId> = None;
        loop {
            let page = self.list(None, after.as_ref(), 0, 1024)?;
            let Some(last) = page.last() else {
                return Ok(tasks);
            };
            after = Some(last.spec.id.clone());
            for header in page {
                tasks.push(whole_task(self, &header.spec.id)?);
            }
        }
    }
}

/// A task id read back from the store (`place`: where it was found): parsed
/// like any input, and one that does not pass is corruption, never an id.
fn stored_id(place: &str, text: impl Into<String>) -> Result<TaskId, StoreError> {
    TaskId::try_from(text.into()).map_err(|e| StoreError::Corrupt {
        what: format!("task id in {place}"),
        reason: e.to_string(),
    })
}

/// A task with all its runs; a gap or excess in the runs is corrupt.
fn whole_task(store: &(impl TaskStore + ?Sized), id: &TaskId) -> Result<Task, StoreError> {
    let header = store.header(id)?.ok_or_else(|| StoreError::Corrupt {
        what: format!("task {id}"),
        reason: "indexed but not stored".into(),
    })?;
    let runs = store.runs(id, 0, usize::MAX)?;
    assemble(id, header, runs)
}

/// The task of `header` with `runs`, which must be all of its runs in order.
fn assemble(id: &TaskId, header: TaskHeader, runs: Vec<Run>) -> Result<Task, StoreError> {
    if header.spec.id != *id {
        // A header copied under another id would make whoever reads it act
        // on a task it did not read (and on a shared store, did not lock).
        return Err(StoreError::Corrupt {
            what: format!("task {id}"),
            reason: format!("its header names task {}", header.spec.id),
        });
    }
    let indexes_ok = runs
        .iter()
        .enumerate()
        .all(|(i, r)| usize::try_from(r.index).ok() == Some(i));
    if !indexes_ok || runs.len() != header.runs_created as usize {
        let found: Vec<u32> = runs.iter().map(|r| r.index).take(16).collect();
        return Err(StoreError::Corrupt {
            what: format!("runs of task {id}"),
            reason: format!(
                "{} runs created but indexes {found:?}{} stored",
                header.runs_created,
                if runs.len() > 16 { "..." } else { "" }
            ),
        });
    }
    Ok(Task {
        spec: header.spec,
        status: header.status,
        completions: header.completions,
        submitted_ms: header.submitted_ms,
        finished_ms: header.finished_ms,
        runs,
    })
}

/// The gateway's task store, whichever engine keeps it. Reads run on any
/// thread while commits go on (each engine shows readers only commits).
#[derive(Debug)]
pub struct Store {
    engine: Box<dyn TaskStore>,
}

impl std::ops::Deref for Store {
    type Target = dyn TaskStore;

    fn deref(&self) -> &Self::Target {
        self.engine.as_ref()
    }
}

impl Store {
    /// Opens the embedded database at `path`, creating it (and its tables) if
    /// missing, and migrating an older layout in the opening transaction.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Store::on(RedbStore::open(path)?))
    }

    /// Opens the embedded database kept by `backend` (the simulation's
    /// crashable disk), creating its tables if missing; `label` names it in errors.
    pub fn open_on(backend: impl StorageBackend, label: &str) -> Result<Self, StoreError> {
        Ok(Store::on(RedbStore::open_on(backend, label)?))
    }

    /// Connects to the PostgreSQL database at `url` (`postgres://USER@HOST:PORT/DB`),
    /// creating or migrating its schema.
    pub fn postgres(url: &str, options: PgOptions) -> Result<Self, StoreError> {
        Ok(Store::on(PgStore::connect(url, options)?))
    }

    /// The store kept by `engine`.
    pub fn on(engine: impl TaskStore + 'static) -> Self {
        Store {
            engine: Box::new(engine),
        }
    }
}
