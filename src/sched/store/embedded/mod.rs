//! The embedded store: redb, one file, no server.
//!
//! Pure Rust (no C toolchain, unlike SQLite), ACID transactions with
//! copy-on-write B-trees, and a durable commit fsyncs before readers see it, so
//! what a reader sees survives a crash.
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

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::{Builder, Database, StorageBackend};

pub use layout::STORE_VERSION;

use super::{Batch, BatchReport, ModuleRefs, StoreError, TaskStore, CACHE_BYTES};
use crate::sched::id::TaskId;
use crate::sched::types::{Run, Task, TaskHeader, TaskStatus};

/// The gateway's embedded database. `Sync`: reads run on any thread while one
/// thread commits (redb readers see the last commit, never one in progress).
#[derive(Debug)]
pub struct RedbStore {
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

impl RedbStore {
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
        let store = RedbStore { db };
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
        let store = RedbStore { db };
        layout::init(&store.db)?;
        Ok(store)
    }
}

impl TaskStore for RedbStore {
    fn engine(&self) -> &'static str {
        "redb"
    }

    fn commit(&self, batch: &Batch) -> Result<BatchReport, StoreError> {
        self.commit_batch(batch)
    }

    fn header(&self, id: &TaskId) -> Result<Option<TaskHeader>, StoreError> {
        RedbStore::header(self, id)
    }

    fn runs(&self, id: &TaskId, offset: u32, limit: usize) -> Result<Vec<Run>, StoreError> {
        RedbStore::runs(self, id, offset, limit)
    }

    fn task_page(
        &self,
        id: &TaskId,
        offset: u32,
        limit: usize,
    ) -> Result<Option<(TaskHeader, Vec<Run>)>, StoreError> {
        RedbStore::task_page(self, id, offset, limit)
    }

    fn list(
        &self,
        status: Option<TaskStatus>,
        after: Option<&TaskId>,
        offset: usize,
        limit: usize,
    ) -> Result<Vec<TaskHeader>, StoreError> {
        RedbStore::list(self, status, after, offset, limit)
    }

    fn open_tasks(&self) -> Result<Vec<Task>, StoreError> {
        RedbStore::open_tasks(self)
    }

    fn module(&self, hash: &[u8; 32]) -> Result<Option<Vec<u8>>, StoreError> {
        RedbStore::module(self, hash)
    }

    fn module_refs(&self) -> Result<BTreeMap<[u8; 32], ModuleRefs>, StoreError> {
        RedbStore::module_refs(self)
    }

    fn idempotency(&self, key: &str) -> Result<Option<TaskId>, StoreError> {
        RedbStore::idempotency(self, key)
    }

    fn finished_count(&self) -> Result<u64, StoreError> {
        RedbStore::finished_count(self)
    }
}
