//! What the core is told: requests from the API, and the results of the
//! effects it asked the driver to carry out (commits, store reads, runs),
//! pool changes and the passing of time. The driver owns every reply
//! channel, so an input names a request by its [`RequestId`] only: the core
//! holds no tokio type and can be driven by a test as well as by the driver.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::NewTask;
use crate::sched::{
    BatchReport, ModuleRefs, RunOutcome, StoreError, Task, TaskHeader, TaskId, WorkerId,
};

/// Names a request whose reply the driver holds; answered by
/// [`super::Effect::Answer`] with the same id, exactly once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId(pub u64);

/// Names a store read the core asked for ([`super::Effect::ReadStore`]);
/// its result comes back as [`Input::ReadDone`] with the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReadId(pub u64);

/// One attempt at a run: the task, the run's index, the attempt.
pub type RunKey = (TaskId, u32, u32);

/// What an API request asks of the core (its reply stays with the driver).
pub enum Request {
    /// Submit a task; answered once it is committed.
    Submit {
        /// The submission.
        task: NewTask,
        /// Makes a retried submission return the same task.
        idempotency_key: Option<String>,
    },
    /// Cancel a task; answered with the task as committed after the cancel.
    Cancel {
        /// Which.
        id: TaskId,
    },
    /// Delete a finished task now.
    Purge {
        /// Which.
        id: TaskId,
    },
    /// Store a module; answered with its hash once committed.
    PutModule {
        /// The module.
        bytes: Vec<u8>,
    },
    /// The worker pool and each worker's load.
    Workers,
    /// The core's health (`/healthz`).
    Health,
    /// The levels a metrics scrape shows.
    Metrics,
}

impl Request {
    /// Whether answering it acknowledges a change (held until a commit).
    pub fn acknowledges(&self) -> bool {
        matches!(
            self,
            Request::Submit { .. }
                | Request::Cancel { .. }
                | Request::Purge { .. }
                | Request::PutModule { .. }
        )
    }
}

/// What a store read found; which variant comes back follows from the
/// [`super::Read`] asked for.
#[derive(Debug)]
pub enum ReadResult {
    /// A task's header (`Read::Header`, `Read::Keyed`, `Read::AwaitFinal`).
    Header(Result<Option<TaskHeader>, StoreError>),
    /// A module's bytes (`Read::Module`).
    Module(Result<Option<Arc<Vec<u8>>>, StoreError>),
    /// How many finished tasks the store keeps (`Read::FinishedCount`).
    FinishedCount(Result<u64, StoreError>),
    /// Every module's use (`Read::ModuleRefs`).
    ModuleRefs(Result<BTreeMap<[u8; 32], ModuleRefs>, StoreError>),
    /// The tasks owned but not held that could be read (`Read::OwnedTasks`):
    /// the driver skips corrupt ones and stops at the first other error.
    OwnedTasks(Vec<Task>),
    /// Whether a cancel was asked of the task's owner (`Read::RequestCancel`):
    /// `false` when the task is final or unknown.
    CancelRequested(Result<bool, StoreError>),
}

/// Everything the core is told. `Core::handle` takes one at a time, with the
/// scheduler's clock at that moment.
pub enum Input {
    /// An API request; the driver keeps its reply under `id`.
    Request {
        /// Names the reply.
        id: RequestId,
        /// What is asked.
        request: Request,
    },
    /// Batch `seq` committed, or failed (after the driver's retries).
    Committed {
        /// The batch's number, from [`super::Effect::Commit`].
        seq: u64,
        /// What the store reported, or why it failed.
        result: Result<BatchReport, StoreError>,
    },
    /// A store read the core asked for came back.
    ReadDone {
        /// Which read.
        id: ReadId,
        /// What it found.
        result: ReadResult,
    },
    /// An attempt at a run ended (or could not start).
    RunDone {
        /// Which attempt.
        run: RunKey,
        /// How it ended.
        outcome: RunOutcome,
    },
    /// A worker joined the pool (or registered again).
    WorkerJoined {
        /// Its id (peer id text).
        worker: WorkerId,
        /// Runs it takes at once.
        slots: u32,
    },
    /// A worker left the pool; its runs are retried elsewhere.
    WorkerLeft {
        /// Its id.
        worker: WorkerId,
        /// Why.
        reason: String,
    },
    /// Tasks claimed from a shared store: run them from their stored state on.
    Adopt {
        /// The tasks, whole, as stored.
        tasks: Vec<Task>,
    },
    /// The unfinished tasks a shared store says this gateway owns: any it
    /// does not hold (a claim whose answer was lost) it reads and takes up.
    Owned {
        /// Their ids.
        ids: Vec<TaskId>,
    },
    /// Another gateway asked to cancel this gateway's task (a shared store).
    CancelAsked {
        /// Which.
        id: TaskId,
    },
    /// Whether the store answers: `false` while a commit is being retried
    /// because the store is out of reach (nothing new is acknowledged then).
    StoreReachable(bool),
    /// The gateway's health switch was tripped outside the core (a handler's
    /// failed read, the lease keeper, the lease window): stop as after a
    /// failed commit.
    Tripped {
        /// Why.
        cause: String,
    },
    /// The time the core asked to be woken at ([`super::Effect::WakeAt`]) came.
    Tick,
    /// The driver has handed over everything waiting this turn: the runs
    /// started meanwhile go out together and the next batch forms.
    TurnEnd,
}
