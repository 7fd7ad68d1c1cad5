//! What the REST handlers ask of the gateway core, and the answers they wait for.

use tokio::sync::oneshot;

use super::ApiError;
use crate::sched::{Schedule, Task, TaskId, TaskStatus};

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

/// What an HTTP handler asks of the core.
pub enum Command {
    /// Submit a task; answers the task and whether it was created now.
    Submit {
        /// The submission.
        task: NewTask,
        /// Makes a retried submission return the same task.
        idempotency_key: Option<String>,
        /// The answer.
        reply: oneshot::Sender<Result<(Task, bool), ApiError>>,
    },
    /// A page of tasks, ordered by id.
    List {
        /// Only tasks with this status.
        status: Option<TaskStatus>,
        /// Tasks to skip.
        offset: usize,
        /// Tasks at most.
        limit: usize,
        /// The answer.
        reply: oneshot::Sender<Vec<Task>>,
    },
    /// One task.
    Get {
        /// Which.
        id: TaskId,
        /// The answer.
        reply: oneshot::Sender<Option<Task>>,
    },
    /// Cancel a task.
    Cancel {
        /// Which.
        id: TaskId,
        /// The task after the cancel.
        reply: oneshot::Sender<Result<Task, ApiError>>,
    },
    /// Store a module; answers its hash.
    PutModule {
        /// The module.
        bytes: Vec<u8>,
        /// The answer.
        reply: oneshot::Sender<Result<[u8; 32], ApiError>>,
    },
    /// The worker pool and each worker's load.
    Workers {
        /// The answer.
        reply: oneshot::Sender<Vec<serde_json::Value>>,
    },
    /// The membership view.
    Cluster {
        /// The answer.
        reply: oneshot::Sender<Vec<serde_json::Value>>,
    },
}
