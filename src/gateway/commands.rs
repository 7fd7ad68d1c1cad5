//! What the REST handlers (and the lease keeper) ask of the gateway core's
//! driver, and the answers they wait for. Reads of tasks do not come here:
//! handlers read the store directly, which holds only committed state.

use serde::Serialize;
use tokio::sync::oneshot;

use super::ApiError;
use crate::sched::{Schedule, Task, TaskHeader, TaskId};

/// Where a submission's module comes from.
pub enum ModuleInput {
    /// The module itself.
    Bytes(Vec<u8>),
    /// The SHA-256 of a module uploaded earlier.
    Hash([u8; 32]),
}

/// A validated submission, before it has an id and a module hash.
pub struct NewTask {
    /// The caller's id, or `None` for a generated one.
    pub id: Option<TaskId>,
    /// Free text.
    pub description: String,
    /// The module.
    pub module: ModuleInput,
    /// The export to call.
    pub export: String,
    /// Its integer arguments.
    pub args: Vec<i64>,
    /// Fuel per run (0: the worker's maximum).
    pub fuel_max: u64,
    /// Memory pages per run (0: the worker's maximum).
    pub memory_pages_max: u32,
    /// Time limit per run.
    pub duration_ms: u64,
    /// When runs are due.
    pub schedule: Schedule,
    /// Completions already counted.
    pub completions_initial: u64,
}

/// An acknowledged submission: the task as committed, and whether this request
/// created it (a retry with the same idempotency key did not).
pub type Acked = (TaskHeader, bool);

/// How the gateway stands, as `/healthz` says it (`status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// The core answers and the store works (200).
    Ok,
    /// The store cannot be reached for now (a database restarting): nothing
    /// is acknowledged meanwhile, but the gateway keeps running (503).
    Unavailable,
    /// A store error stopped acknowledgements for good (503; the process
    /// exits).
    Failed,
}

/// The core's view of its own health, as `/healthz` shows it.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct HealthReport {
    /// `ok`, `unavailable` while the store cannot be reached, or `failed`
    /// once a store error stopped acknowledgements.
    pub status: HealthStatus,
    /// Why the store failed or cannot be reached, if so.
    pub store_error: Option<String>,
    /// How long the batch being committed has been in flight, if one is.
    pub commit_in_flight_ms: Option<u64>,
    /// Batches committed since start.
    pub commits: u64,
    /// Unfinished tasks held.
    pub open_tasks: usize,
    /// Modules stored (or about to be).
    pub modules: usize,
    /// Finished tasks kept in the store (as last read).
    pub finished_tasks: u64,
    /// Workers in the pool.
    pub workers: usize,
}

/// What an HTTP handler asks of the core.
pub enum Command {
    /// Submit a task; answered once it is committed.
    Submit {
        /// The submission.
        task: NewTask,
        /// Makes a retried submission return the same task.
        idempotency_key: Option<String>,
        /// The answer.
        reply: oneshot::Sender<Result<Acked, ApiError>>,
    },
    /// Cancel a task; answered with the task as committed after the cancel.
    Cancel {
        /// Which.
        id: TaskId,
        /// The answer.
        reply: oneshot::Sender<Result<TaskHeader, ApiError>>,
    },
    /// Delete a finished task now.
    Purge {
        /// Which.
        id: TaskId,
        /// The answer.
        reply: oneshot::Sender<Result<(), ApiError>>,
    },
    /// Store a module; answers its hash once committed.
    PutModule {
        /// The module.
        bytes: Vec<u8>,
        /// The answer.
        reply: oneshot::Sender<Result<[u8; 32], ApiError>>,
    },
    /// The worker pool and each worker's load.
    Workers {
        /// The answer.
        reply: oneshot::Sender<Vec<super::views::WorkerRow>>,
    },
    /// The membership view.
    Cluster {
        /// The answer.
        reply: oneshot::Sender<Vec<super::views::MemberRow>>,
    },
    /// The core's health: answering at all shows that the core runs.
    Health {
        /// The answer.
        reply: oneshot::Sender<HealthReport>,
    },
    /// The levels a metrics scrape shows (tasks, workers, slots, membership).
    Metrics {
        /// Where the snapshot goes (503 while the store cannot be reached).
        reply: oneshot::Sender<Result<super::metrics::MetricsSnapshot, ApiError>>,
    },
    /// Tasks this gateway claimed from a shared store (their owner's lease
    /// expired): run them from their stored state on.
    Adopt {
        /// The tasks, whole, as stored.
        tasks: Vec<Task>,
    },
    /// Another gateway asked to cancel this gateway's task (a shared store).
    CancelAsked {
        /// Which.
        id: TaskId,
    },
    /// The unfinished tasks a shared store says this gateway owns: any it
    /// does not hold (a claim whose answer was lost) it takes up.
    Owned {
        /// Their ids.
        ids: Vec<TaskId>,
    },
}
