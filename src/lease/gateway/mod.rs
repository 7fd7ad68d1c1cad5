//! A gateway's tasks under its lease, sans-IO: the caller feeds it time (the
//! gateway's own clock, in ms), client requests, store replies and worker
//! results, and drains [`Output`]s: requests to send to the store, runs to
//! dispatch or stop, acknowledgements to give.
//!
//! Everything it decides rests on committed store operations: a submission is
//! acknowledged after its insert, a run dispatched after its start, and only
//! while the [`LeaseKeeper`] says the lease holds. A start answered later than
//! `dispatch_window_ms` after it was sent is not dispatched, and a canceller
//! waits as long after its cancel committed before acknowledging: so no run
//! reaches a worker after its task's cancel was acknowledged.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

mod replies;
#[cfg(test)]
mod tests;

use super::keeper::{LeaseKeeper, LeaseRequest};
use super::model::{Request, RunStatus};
use super::{Epoch, GatewayId, LeaseConfig, RunOutcome, RunRef, TaskId};

/// A gateway claims orphaned tasks while it holds fewer than this many tasks
/// per slot.
const CLAIM_BACKLOG_SLOTS: usize = 4;

/// Identifies a request to the store, to match its reply.
pub type RequestId = u64;

/// Something the gateway decided; the caller carries it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send `request` to the store; hand its reply back with `id`.
    Send {
        /// Matches the reply.
        id: RequestId,
        /// The request.
        request: Request,
    },
    /// Run this attempt on a worker (its start is committed).
    Dispatch {
        /// The epoch it was started under.
        epoch: Epoch,
        /// The run.
        run: RunRef,
    },
    /// Stop this run on its worker (cancelled, or the task was lost).
    Stop {
        /// The run.
        run: RunRef,
    },
    /// Tell the client its submission is stored.
    SubmitAcked {
        /// The task.
        task: TaskId,
        /// The epoch it was stored under.
        epoch: Epoch,
    },
    /// Tell the client its submission failed or its outcome is unknown.
    SubmitFailed {
        /// The task.
        task: TaskId,
    },
    /// Tell the client its task is cancelled.
    CancelAcked {
        /// The task.
        task: TaskId,
        /// The epoch the gateway acknowledged under.
        epoch: Epoch,
    },
    /// Tell the client its cancel failed (already final, unknown task, or
    /// unknown outcome).
    CancelFailed {
        /// The task.
        task: TaskId,
    },
    /// The gateway holds a new epoch.
    Registered {
        /// The epoch.
        epoch: Epoch,
    },
    /// The gateway lost its lease and dropped every task.
    LeaseLost,
}

/// A run as this gateway holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunState {
    /// To be started under this attempt.
    Waiting { attempt: u32 },
    /// Its start is in flight.
    Starting { attempt: u32 },
    /// On a worker.
    Running { attempt: u32 },
    /// Its outcome is being recorded.
    Finishing { attempt: u32, outcome: RunOutcome },
    /// Final at the store.
    Done,
}

/// What a request in flight was, to handle its reply or its loss.
#[derive(Clone, Debug)]
enum Pending {
    Lease(LeaseRequest),
    Submit { task: TaskId, runs: u32 },
    Claim,
    Start(Vec<RunRef>),
    Finish(RunRef, RunOutcome),
    Cancel(TaskId),
    Poll,
}

/// One gateway's lease and tasks.
#[derive(Debug)]
pub struct LeaseGateway {
    id: GatewayId,
    config: LeaseConfig,
    keeper: LeaseKeeper,
    next_id: RequestId,
    /// Requests in flight: what, under which epoch, sent when.
    pending: BTreeMap<RequestId, (Pending, Option<Epoch>, u64)>,
    tasks: BTreeMap<TaskId, BTreeMap<u32, RunState>>,
    /// Held tasks this gateway claimed (started before the rest).
    claimed: BTreeSet<TaskId>,
    /// Cancels committed, acknowledged at the time given.
    cancel_acks: Vec<(u64, TaskId)>,
    next_poll_ms: u64,
    outputs: VecDeque<Output>,
}

impl LeaseGateway {
    /// A gateway starting (or restarting, with no memory) at `now_ms`.
    pub fn new(id: GatewayId, config: LeaseConfig, now_ms: u64) -> LeaseGateway {
        LeaseGateway {
            id,
            config,
            keeper: LeaseKeeper::new(config),
            next_id: 1,
            pending: BTreeMap::new(),
            tasks: BTreeMap::new(),
            claimed: BTreeSet::new(),
            cancel_acks: Vec::new(),
            next_poll_ms: now_ms,
            outputs: VecDeque::new(),
        }
    }

    /// The gateway's identity.
    pub fn id(&self) -> GatewayId {
        self.id
    }

    /// The gateway's lease.
    pub fn keeper(&self) -> &LeaseKeeper {
        &self.keeper
    }

    /// The tasks it holds.
    pub fn held_tasks(&self) -> impl Iterator<Item = &TaskId> {
        self.tasks.keys()
    }

    /// The next decision to carry out.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`LeaseGateway::handle_timeout`] is next due (local clock).
    pub fn poll_timeout(&self) -> u64 {
        let requests = self
            .pending
            .values()
            .map(|(what, _, sent)| sent + self.timeout_ms(what));
        let acks = self.cancel_acks.iter().map(|(at, _)| *at);
        requests
            .chain(acks)
            .chain([self.keeper.next_wakeup_ms(), self.next_poll_ms])
            .min()
            .unwrap_or(self.next_poll_ms)
    }

    /// Advances the gateway to `now_ms`: lease upkeep, retries, polls, claims
    /// and starts.
    pub fn handle_timeout(&mut self, now_ms: u64) {
        if self.keeper.check_deadline(now_ms) {
            self.lose_everything();
        }
        if let Some(request) = self.keeper.poll_request(now_ms) {
            let request_to_send = match request {
                LeaseRequest::Register { seen } => Request::Register {
                    gateway: self.id,
                    seen,
                },
                LeaseRequest::Renew { epoch } => Request::Renew {
                    gateway: self.id,
                    epoch,
                },
            };
            self.send(now_ms, Pending::Lease(request), request_to_send);
        }
        let expired: Vec<RequestId> = self
            .pending
            .iter()
            .filter(|(_, (what, _, sent))| now_ms >= sent + self.timeout_ms(what))
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some((pending, epoch, _)) = self.pending.remove(&id) {
                self.given_up(now_ms, pending, epoch);
            }
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.cancel_acks)
            .into_iter()
            .partition(|(at, _)| *at <= now_ms);
        self.cancel_acks = later;
        for (_, task) in due {
            self.outputs.push_back(match self.keeper.may_act(now_ms) {
                Some(epoch) => Output::CancelAcked { task, epoch },
                None => Output::CancelFailed { task },
            });
        }
        if now_ms >= self.next_poll_ms {
            self.next_poll_ms = now_ms + self.config.poll_ms;
            self.poll_and_claim(now_ms);
        }
        self.start_runs(now_ms);
    }

    /// A client submits `task` with `runs` runs.
    pub fn submit(&mut self, now_ms: u64, task: TaskId, runs: u32) {
        let Some(epoch) = self.keeper.may_act(now_ms) else {
            self.outputs.push_back(Output::SubmitFailed { task });
            return;
        };
        let request = Request::Submit {
            gateway: self.id,
            epoch,
            task: task.clone(),
            runs,
        };
        self.send(now_ms, Pending::Submit { task, runs }, request);
    }

    /// A client cancels `task` (whoever owns it).
    pub fn cancel(&mut self, now_ms: u64, task: TaskId) {
        let Some(epoch) = self.keeper.may_act(now_ms) else {
            self.outputs.push_back(Output::CancelFailed { task });
            return;
        };
        let request = Request::Cancel {
            gateway: self.id,
            epoch,
            task: task.clone(),
        };
        self.send(now_ms, Pending::Cancel(task), request);
    }

    /// A worker finished `run` (a result of an attempt no longer current is
    /// ignored: the store would refuse it anyway).
    pub fn run_finished(&mut self, now_ms: u64, run: RunRef, outcome: RunOutcome) {
        let Some(state) = self
            .tasks
            .get_mut(&run.task)
            .and_then(|runs| runs.get_mut(&run.index))
        else {
            return;
        };
        if *state
            != (RunState::Running {
                attempt: run.attempt,
            })
        {
            return;
        }
        *state = RunState::Finishing {
            attempt: run.attempt,
            outcome,
        };
        self.send_finish(now_ms, run, outcome);
    }

    fn poll_and_claim(&mut self, now_ms: u64) {
        let Some(epoch) = self.keeper.may_act(now_ms) else {
            return;
        };
        if !self.tasks.is_empty() {
            let request = Request::PollCancelled {
                gateway: self.id,
                epoch,
                tasks: self.tasks.keys().cloned().collect(),
            };
            self.send(now_ms, Pending::Poll, request);
        }
        let claiming = self
            .pending
            .values()
            .any(|(p, _, _)| matches!(p, Pending::Claim));
        // Claim while holding little backlog, so orphans are taken promptly
        // but not hoarded by one busy gateway.
        if !claiming && self.tasks.len() < CLAIM_BACKLOG_SLOTS * self.config.slots {
            let submitting = self.pending.values().filter_map(|(p, _, _)| match p {
                Pending::Submit { task, .. } => Some(task),
                _ => None,
            });
            let request = Request::Claim {
                gateway: self.id,
                epoch,
                max: self.config.claim_max,
                known: self.tasks.keys().chain(submitting).cloned().collect(),
            };
            self.send(now_ms, Pending::Claim, request);
        }
    }

    fn start_runs(&mut self, now_ms: u64) {
        let Some(epoch) = self.keeper.may_act(now_ms) else {
            return;
        };
        let free = self.config.slots.saturating_sub(self.in_flight());
        // Claimed tasks first: they are older than anything submitted here.
        let order: Vec<TaskId> = self
            .claimed
            .iter()
            .filter(|t| self.tasks.contains_key(*t))
            .chain(self.tasks.keys().filter(|t| !self.claimed.contains(*t)))
            .cloned()
            .collect();
        let mut runs = Vec::new();
        'tasks: for task in order {
            let Some(states) = self.tasks.get_mut(&task) else {
                continue;
            };
            for (index, state) in states.iter_mut() {
                if runs.len() >= free {
                    break 'tasks;
                }
                if let RunState::Waiting { attempt } = *state {
                    *state = RunState::Starting { attempt };
                    runs.push(RunRef {
                        task: task.clone(),
                        index: *index,
                        attempt,
                    });
                }
            }
        }
        if runs.is_empty() {
            return;
        }
        let request = Request::StartRuns {
            gateway: self.id,
            epoch,
            runs: runs.clone(),
        };
        self.send(now_ms, Pending::Start(runs), request);
    }

    fn send_finish(&mut self, now_ms: u64, run: RunRef, outcome: RunOutcome) {
        // A write under a lapsed lease is refused by the store anyway; send it
        // under the epoch that started the run.
        let Some(epoch) = self.keeper.epoch() else {
            return;
        };
        let request = Request::FinishRun {
            gateway: self.id,
            epoch,
            run: run.clone(),
            outcome,
        };
        self.send(now_ms, Pending::Finish(run, outcome), request);
    }

    fn send(&mut self, now_ms: u64, pending: Pending, request: Request) {
        let id = self.next_id;
        self.next_id += 1;
        self.pending
            .insert(id, (pending, self.keeper.epoch(), now_ms));
        self.outputs.push_back(Output::Send { id, request });
    }

    /// How long a request is waited for. A lease reply is useful as long as
    /// the deadline it gives (its send + lease - margin) is ahead, so slow
    /// links keep the lease; anything else is retried after the timeout.
    fn timeout_ms(&self, pending: &Pending) -> u64 {
        match pending {
            Pending::Lease(_) => self.config.lease_ms - self.config.margin_ms,
            _ => self.config.request_timeout_ms,
        }
    }

    fn in_flight(&self) -> usize {
        self.tasks
            .values()
            .flat_map(|runs| runs.values())
            .filter(|s| matches!(s, RunState::Starting { .. } | RunState::Running { .. }))
            .count()
    }

    fn hold(&mut self, task: TaskId, attempts: impl Iterator<Item = u32>) {
        // Callers check first: holding a task twice would reset runs in flight.
        debug_assert!(!self.tasks.contains_key(&task), "{task} held twice");
        let runs = attempts
            .enumerate()
            .map(|(i, last)| (i as u32, RunState::Waiting { attempt: last + 1 }))
            .collect();
        self.tasks.insert(task, runs);
    }

    fn hold_claimed(&mut self, task: TaskId, runs: Vec<(u32, u32, RunStatus)>) {
        debug_assert!(!self.tasks.contains_key(&task), "{task} held twice");
        let states = runs
            .into_iter()
            .map(|(index, attempt, status)| {
                let state = if status.is_final() {
                    RunState::Done
                } else {
                    RunState::Waiting {
                        attempt: attempt + 1,
                    }
                };
                (index, state)
            })
            .collect();
        self.claimed.insert(task.clone());
        self.tasks.insert(task, states);
    }

    fn run_state(&self, run: &RunRef) -> Option<RunState> {
        self.tasks.get(&run.task)?.get(&run.index).copied()
    }

    fn set_run(&mut self, run: &RunRef, state: RunState) {
        if let Some(slot) = self
            .tasks
            .get_mut(&run.task)
            .and_then(|runs| runs.get_mut(&run.index))
        {
            *slot = state;
        }
    }

    fn retry_run(&mut self, run: &RunRef) {
        self.set_run(
            run,
            RunState::Waiting {
                attempt: run.attempt + 1,
            },
        );
    }

    /// Forgets `task`, stopping its runs on workers.
    fn drop_task(&mut self, task: &TaskId) {
        self.claimed.remove(task);
        let Some(runs) = self.tasks.remove(task) else {
            return;
        };
        for (index, state) in runs {
            if let RunState::Running { attempt } = state {
                self.outputs.push_back(Output::Stop {
                    run: RunRef {
                        task: task.clone(),
                        index,
                        attempt,
                    },
                });
            }
        }
    }

    fn lost_opt(&mut self, epoch: Option<Epoch>) {
        if let Some(epoch) = epoch {
            self.lost(epoch);
        }
    }

    fn lost(&mut self, epoch: Epoch) {
        if self.keeper.on_lost(epoch) {
            self.lose_everything();
        }
    }

    /// Drops every task and request of the lapsed epoch (the lease requests
    /// stay: a registration in flight is still wanted).
    fn lose_everything(&mut self) {
        let tasks: Vec<TaskId> = self.tasks.keys().cloned().collect();
        let had_any = !tasks.is_empty() || !self.pending.is_empty();
        for task in tasks {
            self.drop_task(&task);
        }
        let pending = std::mem::take(&mut self.pending);
        for (id, (what, epoch, sent)) in pending {
            match what {
                Pending::Lease(LeaseRequest::Register { .. }) => {
                    self.pending.insert(id, (what, epoch, sent));
                }
                Pending::Submit { task, .. } => {
                    self.outputs.push_back(Output::SubmitFailed { task })
                }
                Pending::Cancel(task) => self.outputs.push_back(Output::CancelFailed { task }),
                _ => {}
            }
        }
        for (_, task) in std::mem::take(&mut self.cancel_acks) {
            self.outputs.push_back(Output::CancelFailed { task });
        }
        if had_any {
            self.outputs.push_back(Output::LeaseLost);
        }
    }
}
