//! Scheduling of WASM tasks: tasks, runs, timing, placement, retries and the store.
//!
//! The core (`Scheduler`) is sans-IO: commands and the current time in, effects out.
//! It knows workers only by their ids (`WorkerId`, a peer id) and modules only
//! by SHA-256; the gateway drives it, calls workers and persists each changed
//! task through `Store`.

mod engine;
pub mod error;
pub mod id;
mod invariants;
mod restore;
pub mod scheduler;
pub mod store;
mod tally;
pub mod types;

pub use error::SchedError;
pub use id::{TaskId, TaskIdError, WorkerId, WorkerIdError, TASK_ID_PATTERN};
pub use redb::StorageBackend;
pub use scheduler::{
    Effect, RunOutcome, SchedConfig, Scheduler, OPEN_TASKS_MAX_DEFAULT, SLOTS_MAX,
};
pub use store::{
    Batch, BatchReport, DeletedTask, Lease, MemoryStore, ModuleRefs, Op, PgOptions, PgStore,
    PurgeOutcome, RedbStore, SharedStore, Store, StoreClock, StoreError, TakenCause, TakenTask,
    TaskStore, MODULE_BYTES_MAX, PG_SCHEMA_VERSION,
};
pub use types::{
    Run, RunErrorKind, RunId, RunStatus, Schedule, Task, TaskHeader, TaskSpec, TaskStatus,
    WorkerLoad, IDEMPOTENCY_KEY_BYTES_MAX, RESULTS_MAX,
};
