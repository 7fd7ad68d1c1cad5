//! What the core asks the driver to do. The core decides; the driver carries
//! out: it commits, reads the store, calls workers, answers requests, sets
//! the timer, and feeds every result back as an [`super::Input`].

use std::sync::Arc;

use super::input::{ReadId, RequestId, RunKey};
use super::{Acked, HealthReport};
use crate::gateway::events::Event;
use crate::gateway::metrics::MetricsSnapshot;
use crate::gateway::views::WorkerRow;
use crate::gateway::ApiError;
use crate::sched::{Batch, TaskHeader, TaskId, TaskSpec, WorkerId};

/// A store read the core needs and must not wait for on its own thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Read {
    /// The task's header, if stored.
    Header(TaskId),
    /// The header of the task an idempotency key names, if kept.
    Keyed(String),
    /// A module's bytes, if stored.
    Module([u8; 32]),
    /// How many finished tasks the store keeps.
    FinishedCount,
    /// Every stored module's use (the mirror disagreed with the store).
    ModuleRefs,
    /// Tasks a shared store says this gateway owns and it does not hold,
    /// each read whole in one snapshot of its ownership.
    OwnedTasks(Vec<TaskId>),
    /// Asks the owner of another gateway's unfinished task to cancel it (a
    /// write of a request row, not of the task).
    RequestCancel {
        /// The task.
        id: TaskId,
        /// When asked, on the core's clock.
        now_ms: u64,
    },
    /// The task's header once the store shows it final, read again every
    /// 100 ms for up to `wait_ms` (then the header as it is).
    AwaitFinal {
        /// The task.
        id: TaskId,
        /// The longest wait.
        wait_ms: u64,
    },
}

/// One attempt to send to a worker.
#[derive(Clone, Debug)]
pub struct RunStart {
    /// Which attempt.
    pub run: RunKey,
    /// What to run.
    pub spec: TaskSpec,
    /// The module's bytes (sent only if the worker lacks them).
    pub module: Arc<Vec<u8>>,
}

/// The answer to one request, of the kind the request asked for.
#[derive(Debug)]
pub enum Answer {
    /// To a submission: the task as committed, and whether it was created now.
    Submit(Result<Acked, ApiError>),
    /// To a cancel: the task as committed after it.
    Cancel(Result<TaskHeader, ApiError>),
    /// To a purge.
    Purge(Result<(), ApiError>),
    /// To an upload: the module's hash.
    Module(Result<[u8; 32], ApiError>),
    /// The pool.
    Workers(Vec<WorkerRow>),
    /// The core's health.
    Health(HealthReport),
    /// The levels of a scrape (the membership's are the driver's to add).
    Metrics(Result<MetricsSnapshot, ApiError>),
}

/// Everything the core asks of its driver, in the order it must happen.
#[derive(Debug)]
pub enum Effect {
    /// Answer request `request` (once; its reply is dropped after).
    Answer {
        /// Which request.
        request: RequestId,
        /// The answer (boxed: a task's header is large, the other effects
        /// small).
        answer: Box<Answer>,
    },
    /// Commit batch `seq` in one transaction and report it as
    /// [`super::Input::Committed`]; one batch is in flight at a time.
    Commit {
        /// Its number.
        seq: u64,
        /// What to write.
        batch: Batch,
    },
    /// Read the store off the core's thread and report it as
    /// [`super::Input::ReadDone`].
    ReadStore {
        /// Names the result.
        id: ReadId,
        /// What to read.
        read: Read,
    },
    /// Call `worker` with these attempts (one call: `run` for one, `runMany`
    /// for more); each end comes back as [`super::Input::RunDone`].
    StartRuns {
        /// The worker.
        worker: WorkerId,
        /// The attempts, at most `RUN_MANY_MAX`.
        runs: Vec<RunStart>,
    },
    /// Stop this attempt: drop its call (cancelling it on the worker) once
    /// no other attempt shares it. Its end, if it comes, is ignored.
    StopRun {
        /// Which attempt.
        run: RunKey,
    },
    /// Stop every call in flight: the gateway fail-stopped, and on a shared
    /// store another gateway may soon run these tasks.
    StopAllRuns,
    /// Announce a committed change or a pool change on the event bus.
    Publish(Event),
    /// Trip the gateway's health switch: nothing is acknowledged again.
    FailStop {
        /// Why.
        cause: String,
    },
    /// Send [`super::Input::Tick`] at this time of the core's clock (replaces
    /// any earlier wake-up).
    WakeAt {
        /// When.
        at_ms: u64,
    },
    /// How many more tasks the gateway may take over on a shared store (its
    /// `open_tasks_max` less those held), for the lease keeper's claims.
    ClaimRoom {
        /// The room.
        room: usize,
    },
}
