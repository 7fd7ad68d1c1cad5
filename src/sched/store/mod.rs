//! Durable storage of tasks, runs, modules and idempotency keys.
//!
//! Backed by redb: pure Rust (no C toolchain, unlike SQLite), one file, ACID
//! transactions with copy-on-write B-trees, and a durable commit fsyncs before
//! readers see it, so what a reader sees survives a crash. Every change is a
//! [`Batch`] of operations committed in one transaction: a submission's task,
//! module and idempotency key are written together or not at all.
//!
//! Layout 3 (the tables are in `layout.rs`): a task's header (spec, status,
//! counters, no runs) is JSON under its id and each run is JSON under (id,
//! index), so a change writes the header and the runs that changed, and a list
//! reads headers only. Two indexes serve the gateway without scans: tasks by
//! status (a restart loads only the unfinished ones) and finished tasks by the
//! time they finished (retention deletes the oldest first). Modules carry a
//! count of the tasks that refer to them and since when none has.

mod batch;
mod layout;
mod read;

use std::path::{Path, PathBuf};

use redb::{Builder, Database, StorageBackend};

pub use batch::{Batch, BatchReport, DeletedTask, Op, PurgeOutcome};
pub use layout::STORE_VERSION;
pub use read::ModuleRefs;

use super::id::TaskId;

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
    /// The file was written by another layout version.
    #[error("database layout version {found}, expected 1 to {STORE_VERSION}; not opened")]
    Version {
        /// The version found.
        found: u64,
    },
}

impl StoreError {
    /// The operating system's error code behind this failure, if any (EIO is
    /// 5, ENOSPC 28): operators need it to tell a full disk from a broken one.
    pub fn os_error(&self) -> Option<i32> {
        let source = match self {
            StoreError::Open { source, .. }
            | StoreError::Write { source, .. }
            | StoreError::Read { source, .. } => source,
            _ => return None,
        };
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
        while let Some(error) = cause {
            if let Some(io) = error.downcast_ref::<std::io::Error>() {
                return io.raw_os_error();
            }
            cause = error.source();
        }
        None
    }
}

/// The gateway's database. `Sync`: reads run on any thread while one thread
/// commits (redb readers see the last commit, never one in progress).
#[derive(Debug)]
pub struct Store {
    db: Database,
}

/// Any redb error, boxed: redb's errors are large and travel inside `Result`s.
pub(super) fn boxed(e: impl Into<redb::Error>) -> Box<redb::Error> {
    Box::new(e.into())
}

pub(super) fn write_err(what: impl Into<String>) -> impl FnOnce(Box<redb::Error>) -> StoreError {
    let what = what.into();
    move |source| StoreError::Write { what, source }
}

pub(super) fn read_err(what: impl Into<String>) -> impl FnOnce(Box<redb::Error>) -> StoreError {
    let what = what.into();
    move |source| StoreError::Read { what, source }
}

impl Store {
    /// Opens the database at `path`, creating it (and its tables) if missing,
    /// and migrating an older layout in the opening transaction.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| StoreError::Open {
                path: path.to_owned(),
                source: boxed(e),
            })?;
        let store = Store { db };
        layout::init(&store.db)?;
        Ok(store)
    }

    /// Opens the database kept by `backend` (the simulation's crashable disk),
    /// creating its tables if missing; `label` names it in errors.
    pub fn open_on(backend: impl StorageBackend, label: &str) -> Result<Self, StoreError> {
        let db = Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create_with_backend(backend)
            .map_err(|e| StoreError::Open {
                path: PathBuf::from(label),
                source: boxed(e),
            })?;
        let store = Store { db };
        layout::init(&store.db)?;
        Ok(store)
    }
}
