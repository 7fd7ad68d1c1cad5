//! The store's reference semantics: every operation of the lease protocol as
//! one atomic step on a linearizable state, at the store's own clock.
//!
//! The simulation runs this as its store; the PostgreSQL implementation mirrors
//! it operation for operation (one transaction each, `now()` as `now_ms`), and
//! its tests compare the two.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Epoch, GatewayId, RunOutcome, RunRef, TaskId};

/// A gateway's row: its current epoch and when its lease ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayRow {
    /// Bumped by every registration.
    pub epoch: Epoch,
    /// The lease is valid while the store's clock is before this.
    pub expires_ms: u64,
}

/// Who owns a task: a gateway under one epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Owner {
    /// The gateway.
    pub gateway: GatewayId,
    /// Its epoch when it took the task.
    pub epoch: Epoch,
}

/// A run's state at the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunStatus {
    /// Not started yet (attempt 0), or started by an owner that lost the task.
    Pending,
    /// Started (committed) under its attempt.
    Running,
    /// Final: succeeded.
    Succeeded,
    /// Final: failed.
    Failed,
    /// Final: its task was cancelled first.
    Cancelled,
}

impl RunStatus {
    /// Whether the run has its final record.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

/// A run's row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRow {
    /// The latest attempt started (0: never).
    pub attempt: u32,
    /// Its state.
    pub status: RunStatus,
}

/// A task's single terminal record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TaskStatus {
    /// Every run succeeded.
    Succeeded,
    /// Every run is final and at least one failed.
    Failed,
    /// Cancelled before every run was final.
    Cancelled,
}

/// A task's row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskRow {
    /// Its owner.
    pub owner: Owner,
    /// Whether a cancel was committed.
    pub cancelled: bool,
    /// Its terminal record, once it has one (never changed after).
    pub terminal: Option<TaskStatus>,
    /// Its runs by index.
    pub runs: BTreeMap<u32, RunRow>,
}

/// A request to the store, with the `(gateway, epoch)` it is made under.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    /// A new epoch and a fresh lease, if the row's epoch is still `seen`
    /// (compare-and-set: a registration delayed in the network must not
    /// fence the epoch a later one gave the gateway).
    Register {
        /// The gateway.
        gateway: GatewayId,
        /// The latest epoch the gateway knows of its row (0: none).
        seen: Epoch,
    },
    /// Extends the lease if it is still valid.
    Renew {
        /// The gateway.
        gateway: GatewayId,
        /// Its epoch.
        epoch: Epoch,
    },
    /// Inserts a task owned by the caller, with `runs` pending runs.
    Submit {
        /// The gateway.
        gateway: GatewayId,
        /// Its epoch.
        epoch: Epoch,
        /// The new task.
        task: TaskId,
        /// How many runs it has.
        runs: u32,
    },
    /// Takes up to `max` open tasks whose owner's lease ended or epoch is
    /// stale, and returns too every open task the caller owns under this
    /// epoch but does not list in `known` (a reply it lost, reconciled).
    Claim {
        /// The gateway.
        gateway: GatewayId,
        /// Its epoch.
        epoch: Epoch,
        /// At most this many orphaned tasks.
        max: usize,
        /// The tasks the caller holds, or is submitting.
        known: Vec<TaskId>,
    },
    /// Marks runs Running under their attempts; per run, only if the caller
    /// owns the open, uncancelled task under a valid lease.
    StartRuns {
        /// The gateway.
        gateway: GatewayId,
        /// Its epoch.
        epoch: Epoch,
        /// The runs, each with its new attempt.
        runs: Vec<RunRef>,
    },
    /// Records a run's outcome (fenced by owner, lease and attempt).
    FinishRun {
        /// The gateway.
        gateway: GatewayId,
        /// Its epoch.
        epoch: Epoch,
        /// The run and the attempt that produced the outcome.
        run: RunRef,
        /// The outcome.
        outcome: RunOutcome,
    },
    /// Cancels a task, whoever owns it, unless it is already terminal.
    Cancel {
        /// The gateway the client asked.
        gateway: GatewayId,
        /// Its epoch.
        epoch: Epoch,
        /// The task.
        task: TaskId,
    },
    /// Which of `tasks` are cancelled (the owner stops their runs).
    PollCancelled {
        /// The gateway.
        gateway: GatewayId,
        /// Its epoch.
        epoch: Epoch,
        /// The tasks it holds.
        tasks: Vec<TaskId>,
    },
}

impl Request {
    /// The gateway making the request.
    pub fn gateway(&self) -> GatewayId {
        match self {
            Request::Register { gateway, .. }
            | Request::Renew { gateway, .. }
            | Request::Submit { gateway, .. }
            | Request::Claim { gateway, .. }
            | Request::StartRuns { gateway, .. }
            | Request::FinishRun { gateway, .. }
            | Request::Cancel { gateway, .. }
            | Request::PollCancelled { gateway, .. } => *gateway,
        }
    }
}

/// A claimed task as the store had it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimedTask {
    /// The task.
    pub task: TaskId,
    /// Its runs (a Running one is to be run again under a new attempt).
    pub runs: BTreeMap<u32, RunRow>,
}

/// Why the store refused a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Refusal {
    /// The caller's lease is not valid (stale epoch or expired): it must
    /// re-register.
    #[error("lease lost")]
    LeaseLost,
    /// The caller does not own the task (any more).
    #[error("not the owner")]
    NotOwner,
    /// No such task.
    #[error("unknown task")]
    UnknownTask,
    /// The task exists already (under another owner or epoch).
    #[error("duplicate task")]
    Duplicate,
    /// The task was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The task is terminal.
    #[error("terminal")]
    Terminal,
    /// The run's attempt is not the current one, or not newer for a start.
    #[error("stale attempt")]
    StaleAttempt,
    /// The run already has its final record.
    #[error("run already final")]
    RunFinal,
}

/// The store's answer to a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// Registered under this epoch.
    Registered {
        /// The new epoch.
        epoch: Epoch,
    },
    /// Not registered: the row's epoch is not the one the caller saw.
    EpochMoved {
        /// The row's epoch.
        current: Epoch,
    },
    /// The lease was extended.
    Renewed,
    /// Committed (submit, cancel).
    Done,
    /// Refused, and why.
    Refused(Refusal),
    /// The tasks now owned by the caller.
    Claimed(Vec<ClaimedTask>),
    /// Per run, whether it started (or why not).
    Started(Vec<(RunRef, Result<(), Refusal>)>),
    /// The outcome was recorded; the task's terminal record if this made it.
    Finished {
        /// The terminal record this outcome completed, if any.
        terminal: Option<TaskStatus>,
    },
    /// The tasks among those asked about that are cancelled.
    CancelledTasks(Vec<TaskId>),
}

/// The reference store.
#[derive(Clone, Debug, Default)]
pub struct Store {
    lease_ms: u64,
    gateways: BTreeMap<GatewayId, GatewayRow>,
    tasks: BTreeMap<TaskId, TaskRow>,
}

impl Store {
    /// An empty store whose leases last `lease_ms`.
    pub fn new(lease_ms: u64) -> Store {
        Store {
            lease_ms,
            ..Store::default()
        }
    }

    /// A gateway's row.
    pub fn gateway(&self, gateway: GatewayId) -> Option<GatewayRow> {
        self.gateways.get(&gateway).copied()
    }

    /// A task's row.
    pub fn task(&self, task: &str) -> Option<&TaskRow> {
        self.tasks.get(task)
    }

    /// Every task, by id.
    pub fn tasks(&self) -> &BTreeMap<TaskId, TaskRow> {
        &self.tasks
    }

    /// Whether `(gateway, epoch)` holds a valid lease at `now_ms`.
    pub fn lease_valid(&self, gateway: GatewayId, epoch: Epoch, now_ms: u64) -> bool {
        self.gateways
            .get(&gateway)
            .is_some_and(|row| row.epoch == epoch && row.expires_ms > now_ms)
    }

    /// Applies `request` atomically at the store's time `now_ms`.
    pub fn apply(&mut self, now_ms: u64, request: &Request) -> Reply {
        match request {
            Request::Register { gateway, seen } => self.register(now_ms, *gateway, *seen),
            Request::Renew { gateway, epoch } => self.renew(now_ms, *gateway, *epoch),
            Request::Submit {
                gateway,
                epoch,
                task,
                runs,
            } => self.submit(now_ms, *gateway, *epoch, task, *runs),
            Request::Claim {
                gateway,
                epoch,
                max,
                known,
            } => self.claim(
                now_ms,
                Owner {
                    gateway: *gateway,
                    epoch: *epoch,
                },
                *max,
                known,
            ),
            Request::StartRuns {
                gateway,
                epoch,
                runs,
            } => {
                let owner = Owner {
                    gateway: *gateway,
                    epoch: *epoch,
                };
                let valid = self.lease_valid(*gateway, *epoch, now_ms);
                let started = runs
                    .iter()
                    .map(|run| (run.clone(), self.start(owner, valid, run)))
                    .collect();
                Reply::Started(started)
            }
            Request::FinishRun {
                gateway,
                epoch,
                run,
                outcome,
            } => {
                let owner = Owner {
                    gateway: *gateway,
                    epoch: *epoch,
                };
                let valid = self.lease_valid(*gateway, *epoch, now_ms);
                match self.finish(owner, valid, run, *outcome) {
                    Ok(terminal) => Reply::Finished { terminal },
                    Err(refusal) => Reply::Refused(refusal),
                }
            }
            Request::Cancel {
                gateway,
                epoch,
                task,
            } => self.cancel(now_ms, *gateway, *epoch, task),
            Request::PollCancelled {
                gateway,
                epoch,
                tasks,
            } => {
                if !self.lease_valid(*gateway, *epoch, now_ms) {
                    return Reply::Refused(Refusal::LeaseLost);
                }
                let cancelled = tasks
                    .iter()
                    .filter(|t| self.tasks.get(*t).is_some_and(|row| row.cancelled))
                    .cloned()
                    .collect();
                Reply::CancelledTasks(cancelled)
            }
        }
    }

    fn register(&mut self, now_ms: u64, gateway: GatewayId, seen: Epoch) -> Reply {
        let row = self.gateways.entry(gateway).or_insert(GatewayRow {
            epoch: 0,
            expires_ms: 0,
        });
        if row.epoch != seen {
            return Reply::EpochMoved { current: row.epoch };
        }
        row.epoch += 1;
        row.expires_ms = now_ms + self.lease_ms;
        Reply::Registered { epoch: row.epoch }
    }

    fn renew(&mut self, now_ms: u64, gateway: GatewayId, epoch: Epoch) -> Reply {
        if !self.lease_valid(gateway, epoch, now_ms) {
            return Reply::Refused(Refusal::LeaseLost);
        }
        let lease_ms = self.lease_ms;
        if let Some(row) = self.gateways.get_mut(&gateway) {
            row.expires_ms = now_ms + lease_ms;
        }
        Reply::Renewed
    }

    fn cancel(&mut self, now_ms: u64, gateway: GatewayId, epoch: Epoch, task: &TaskId) -> Reply {
        if !self.lease_valid(gateway, epoch, now_ms) {
            return Reply::Refused(Refusal::LeaseLost);
        }
        let Some(row) = self.tasks.get_mut(task) else {
            return Reply::Refused(Refusal::UnknownTask);
        };
        match row.terminal {
            // A retried cancel that was committed the first time.
            Some(TaskStatus::Cancelled) => Reply::Done,
            Some(_) => Reply::Refused(Refusal::Terminal),
            None => {
                row.cancelled = true;
                row.terminal = Some(TaskStatus::Cancelled);
                for run in row.runs.values_mut() {
                    if !run.status.is_final() {
                        run.status = RunStatus::Cancelled;
                    }
                }
                Reply::Done
            }
        }
    }

    fn submit(
        &mut self,
        now_ms: u64,
        gateway: GatewayId,
        epoch: Epoch,
        task: &TaskId,
        runs: u32,
    ) -> Reply {
        if !self.lease_valid(gateway, epoch, now_ms) {
            return Reply::Refused(Refusal::LeaseLost);
        }
        let owner = Owner { gateway, epoch };
        if let Some(row) = self.tasks.get(task) {
            // A retried submission the first try committed is the same task.
            return if row.owner == owner {
                Reply::Done
            } else {
                Reply::Refused(Refusal::Duplicate)
            };
        }
        let pending = RunRow {
            attempt: 0,
            status: RunStatus::Pending,
        };
        self.tasks.insert(
            task.clone(),
            TaskRow {
                owner,
                cancelled: false,
                terminal: None,
                runs: (0..runs).map(|i| (i, pending)).collect(),
            },
        );
        Reply::Done
    }

    fn claim(&mut self, now_ms: u64, caller: Owner, max: usize, known: &[TaskId]) -> Reply {
        if !self.lease_valid(caller.gateway, caller.epoch, now_ms) {
            return Reply::Refused(Refusal::LeaseLost);
        }
        let known: std::collections::BTreeSet<&TaskId> = known.iter().collect();
        let gateways = &self.gateways;
        let orphaned = |owner: &Owner| {
            gateways
                .get(&owner.gateway)
                .is_none_or(|row| row.epoch != owner.epoch || row.expires_ms <= now_ms)
        };
        let mut claimed = Vec::new();
        let mut orphans = 0;
        for (id, row) in self.tasks.iter_mut() {
            if row.terminal.is_some() {
                continue;
            }
            if row.owner == caller {
                if !known.contains(id) {
                    claimed.push(ClaimedTask {
                        task: id.clone(),
                        runs: row.runs.clone(),
                    });
                }
                continue;
            }
            if orphans >= max || !orphaned(&row.owner) {
                continue;
            }
            orphans += 1;
            row.owner = caller;
            for run in row.runs.values_mut() {
                // Started by the old owner, never finished: run again.
                if run.status == RunStatus::Running {
                    run.status = RunStatus::Pending;
                }
            }
            claimed.push(ClaimedTask {
                task: id.clone(),
                runs: row.runs.clone(),
            });
        }
        Reply::Claimed(claimed)
    }

    fn start(&mut self, owner: Owner, lease_valid: bool, run: &RunRef) -> Result<(), Refusal> {
        if !lease_valid {
            return Err(Refusal::LeaseLost);
        }
        let row = self.tasks.get_mut(&run.task).ok_or(Refusal::UnknownTask)?;
        if row.owner != owner {
            return Err(Refusal::NotOwner);
        }
        if row.cancelled {
            return Err(Refusal::Cancelled);
        }
        if row.terminal.is_some() {
            return Err(Refusal::Terminal);
        }
        let slot = row.runs.get_mut(&run.index).ok_or(Refusal::UnknownTask)?;
        if slot.status.is_final() {
            return Err(Refusal::RunFinal);
        }
        if run.attempt <= slot.attempt {
            return Err(Refusal::StaleAttempt);
        }
        slot.attempt = run.attempt;
        slot.status = RunStatus::Running;
        Ok(())
    }

    fn finish(
        &mut self,
        owner: Owner,
        lease_valid: bool,
        run: &RunRef,
        outcome: RunOutcome,
    ) -> Result<Option<TaskStatus>, Refusal> {
        if !lease_valid {
            return Err(Refusal::LeaseLost);
        }
        let row = self.tasks.get_mut(&run.task).ok_or(Refusal::UnknownTask)?;
        if row.owner != owner {
            return Err(Refusal::NotOwner);
        }
        if row.terminal.is_some() {
            return Err(if row.cancelled {
                Refusal::Cancelled
            } else {
                Refusal::Terminal
            });
        }
        let slot = row.runs.get_mut(&run.index).ok_or(Refusal::UnknownTask)?;
        if slot.status.is_final() {
            return Err(Refusal::RunFinal);
        }
        if slot.attempt != run.attempt || slot.status != RunStatus::Running {
            return Err(Refusal::StaleAttempt);
        }
        slot.status = match outcome {
            RunOutcome::Succeeded => RunStatus::Succeeded,
            RunOutcome::Failed => RunStatus::Failed,
        };
        if !row.runs.values().all(|r| r.status.is_final()) {
            return Ok(None);
        }
        let status = if row.runs.values().all(|r| r.status == RunStatus::Succeeded) {
            TaskStatus::Succeeded
        } else {
            TaskStatus::Failed
        };
        debug_assert!(row.terminal.is_none(), "a second terminal record");
        row.terminal = Some(status);
        Ok(Some(status))
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
