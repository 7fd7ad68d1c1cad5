//! A [`Batch`] of operations committed in one transaction, whatever the engine.

use std::sync::Arc;

use crate::sched::id::TaskId;
use crate::sched::types::{Run, TaskHeader};

/// One change to the store.
#[derive(Clone, Debug)]
pub enum Op {
    /// Creates a task or updates an unfinished one: its header and these runs.
    /// A new task's module must be stored (earlier, or earlier in the batch);
    /// its idempotency key, if any, is recorded with it.
    PutTask {
        /// The task as it is now (boxed: most operations are small).
        header: Box<TaskHeader>,
        /// The runs that changed.
        runs: Vec<Run>,
        /// The writer believes the task was never stored: an engine may try
        /// the insert first (one round trip), falling back to the full
        /// checks if the id is taken. Never needed for correctness.
        new: bool,
    },
    /// Stores module bytes under `hash` unless present. If no task refers to
    /// the module, its grace period restarts at `now_ms`.
    PutModule {
        /// SHA-256 of `bytes`.
        hash: [u8; 32],
        /// The module.
        bytes: Arc<Vec<u8>>,
        /// The time of the upload.
        now_ms: u64,
    },
    /// Deletes a finished task, its runs and its key.
    Purge {
        /// The task.
        id: TaskId,
        /// The time of the purge (a module left without tasks is unused from then).
        now_ms: u64,
    },
    /// Deletes finished tasks, oldest first, that finished at or before
    /// `now_ms - retain_ms`, or while more than `finished_max` are kept; at
    /// most `delete_max` of them, so one transaction stays short.
    Expire {
        /// The time now.
        now_ms: u64,
        /// How long a finished task is kept (`None`: for ever).
        retain_ms: Option<u64>,
        /// Most finished tasks kept.
        finished_max: u64,
        /// Most tasks deleted by this operation.
        delete_max: usize,
    },
    /// Deletes these modules if no task refers to them.
    DeleteModules {
        /// Their hashes.
        hashes: Vec<[u8; 32]>,
    },
}

/// Operations committed together, in order, in one transaction.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    /// The operations.
    pub ops: Vec<Op>,
}

/// What a purge found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PurgeOutcome {
    /// The task and its runs are gone.
    Purged,
    /// No such task.
    NotFound,
    /// The task is not finished; it was kept.
    NotFinished,
}

/// A task deleted by a purge or by retention.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeletedTask {
    /// The task.
    pub id: TaskId,
    /// Its module, which has one reference fewer.
    pub module_hash: [u8; 32],
}

/// What a committed batch did beyond writing what it was given.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Each purge's outcome, in order.
    pub purged: Vec<(TaskId, PurgeOutcome)>,
    /// Every task deleted (by purge or retention).
    pub deleted: Vec<DeletedTask>,
    /// Modules deleted.
    pub modules_deleted: Vec<[u8; 32]>,
    /// Modules asked to be deleted but kept because a task refers to them.
    pub modules_kept: Vec<[u8; 32]>,
    /// Retention stopped at `delete_max` with more to delete.
    pub expire_more: bool,
    /// New tasks not written because of another gateway sharing the store
    /// (a shared store only): it stored a task under the same id or key
    /// first, or deleted the module the task names.
    pub taken: Vec<TakenTask>,
}

/// A new task that was not written because of another gateway's commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TakenTask {
    /// The task that was not written.
    pub id: TaskId,
    /// What the other gateway did.
    pub cause: TakenCause,
}

/// Why a new task was dropped from a batch on a shared store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TakenCause {
    /// Another task is stored under its id.
    Id,
    /// Its idempotency key names this stored task.
    Key(TaskId),
    /// Its module is no longer stored: another gateway deleted it unused.
    ModuleGone([u8; 32]),
}

impl Batch {
    /// What the batch holds, for error messages.
    pub(super) fn describe(&self) -> String {
        let tasks = self
            .ops
            .iter()
            .filter(|op| matches!(op, Op::PutTask { .. }))
            .count();
        let runs: usize = self
            .ops
            .iter()
            .map(|op| match op {
                Op::PutTask { runs, .. } => runs.len(),
                _ => 0,
            })
            .sum();
        format!(
            "batch of {} operations ({tasks} tasks, {runs} runs)",
            self.ops.len()
        )
    }
}
