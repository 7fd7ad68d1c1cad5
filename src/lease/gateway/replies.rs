//! How a gateway handles the store's replies, and requests left unanswered.

use super::{LeaseGateway, Output, Pending, RequestId, RunState};
use crate::lease::keeper::LeaseRequest;
use crate::lease::model::{Refusal, Reply, Request, RunStatus};
use crate::lease::{Epoch, RunRef};

impl LeaseGateway {
    /// The store answered request `id` (sent at a local time the gateway
    /// remembers) with `reply`.
    pub fn handle_reply(&mut self, now_ms: u64, id: RequestId, reply: Reply) {
        let Some((pending, epoch, sent_ms)) = self.pending.remove(&id) else {
            return;
        };
        match pending {
            Pending::Lease(LeaseRequest::Register { .. }) => match reply {
                // Adopted (the keeper decides): forget the old epoch's tasks.
                Reply::Registered { epoch } if self.keeper.on_registered(sent_ms, epoch) => {
                    self.lose_everything();
                    self.outputs.push_back(Output::Registered { epoch });
                    self.next_poll_ms = now_ms;
                }
                Reply::EpochMoved { current } => self.keeper.on_epoch_moved(current),
                _ => {}
            },
            Pending::Lease(LeaseRequest::Renew { epoch }) => match reply {
                Reply::Renewed => self.keeper.on_renewed(sent_ms, epoch),
                _ => self.lost(epoch),
            },
            Pending::Submit { task, runs } => {
                let current = self.keeper.may_act(now_ms);
                match reply {
                    Reply::Done if current.is_some() && current == epoch => {
                        // A claim may have found it first (its reply was late).
                        if !self.tasks.contains_key(&task) {
                            self.hold(task.clone(), (0..runs).map(|_| 0));
                        }
                        self.outputs.push_back(Output::SubmitAcked {
                            task,
                            epoch: current.unwrap_or_default(),
                        });
                    }
                    Reply::Refused(Refusal::LeaseLost) => {
                        self.outputs.push_back(Output::SubmitFailed { task });
                        self.lost_opt(epoch);
                    }
                    _ => self.outputs.push_back(Output::SubmitFailed { task }),
                }
            }
            Pending::Claim => match reply {
                Reply::Claimed(claimed) if epoch == self.keeper.epoch() => {
                    for task in claimed {
                        if self.tasks.contains_key(&task.task) {
                            continue;
                        }
                        let attempts: Vec<(u32, u32, RunStatus)> = task
                            .runs
                            .iter()
                            .map(|(i, r)| (*i, r.attempt, r.status))
                            .collect();
                        self.hold_claimed(task.task, attempts);
                    }
                }
                Reply::Refused(Refusal::LeaseLost) => self.lost_opt(epoch),
                _ => {}
            },
            Pending::Start(runs) => self.started(now_ms, sent_ms, epoch, runs, reply),
            Pending::Finish(run, _) => match reply {
                Reply::Finished { terminal } => {
                    self.set_run(&run, RunState::Done);
                    if terminal.is_some() {
                        self.drop_task(&run.task);
                    }
                }
                Reply::Refused(Refusal::LeaseLost) => self.lost_opt(epoch),
                Reply::Refused(Refusal::RunFinal) => self.set_run(&run, RunState::Done),
                Reply::Refused(Refusal::StaleAttempt) => {}
                _ => self.drop_task(&run.task),
            },
            Pending::Cancel(task) => match reply {
                Reply::Done => {
                    self.drop_task(&task);
                    self.cancel_acks
                        .push((now_ms + self.config.dispatch_window_ms, task));
                }
                Reply::Refused(Refusal::LeaseLost) => {
                    self.outputs.push_back(Output::CancelFailed { task });
                    self.lost_opt(epoch);
                }
                _ => self.outputs.push_back(Output::CancelFailed { task }),
            },
            Pending::Poll => match reply {
                Reply::CancelledTasks(cancelled) => {
                    for task in cancelled {
                        self.drop_task(&task);
                    }
                }
                Reply::Refused(Refusal::LeaseLost) => self.lost_opt(epoch),
                _ => {}
            },
        }
        self.start_runs(now_ms);
    }

    fn started(
        &mut self,
        now_ms: u64,
        sent_ms: u64,
        epoch: Option<Epoch>,
        runs: Vec<RunRef>,
        reply: Reply,
    ) {
        let Reply::Started(results) = reply else {
            // Not an answer to a start: try the runs again.
            for run in runs {
                self.retry_run(&run);
            }
            return;
        };
        let in_window = now_ms <= sent_ms + self.config.dispatch_window_ms;
        let acting = self.keeper.may_act(now_ms).filter(|e| Some(*e) == epoch);
        for (run, result) in results {
            let starting = RunState::Starting {
                attempt: run.attempt,
            };
            if self.run_state(&run) != Some(starting) {
                continue;
            }
            match result {
                Ok(()) => match acting {
                    Some(epoch) if in_window => {
                        self.set_run(
                            &run,
                            RunState::Running {
                                attempt: run.attempt,
                            },
                        );
                        self.outputs.push_back(Output::Dispatch { epoch, run });
                    }
                    // Committed, but too late to dispatch safely: a new attempt.
                    _ => self.retry_run(&run),
                },
                Err(Refusal::LeaseLost) => self.lost_opt(epoch),
                Err(Refusal::StaleAttempt) => self.retry_run(&run),
                Err(Refusal::RunFinal) => self.set_run(&run, RunState::Done),
                Err(_) => self.drop_task(&run.task),
            }
        }
    }

    /// A request went unanswered for `request_timeout_ms`.
    pub(super) fn given_up(&mut self, now_ms: u64, pending: Pending, epoch: Option<Epoch>) {
        let current = self.keeper.may_act(now_ms);
        match pending {
            // The keeper retries on its own schedule.
            Pending::Lease(_) | Pending::Poll => {}
            Pending::Submit { task, runs } => match current {
                // It may have committed: retry until answered, or the task
                // (owned by a stale epoch) is claimed by someone.
                Some(now_epoch) if Some(now_epoch) == epoch => {
                    let request = Request::Submit {
                        gateway: self.id,
                        epoch: now_epoch,
                        task: task.clone(),
                        runs,
                    };
                    self.send(now_ms, Pending::Submit { task, runs }, request);
                }
                _ => self.outputs.push_back(Output::SubmitFailed { task }),
            },
            // A claim that committed gave the gateway tasks it does not know
            // of: the next claim returns them (they are not in `known`).
            Pending::Claim => {}
            Pending::Start(runs) => {
                for run in runs {
                    if self.run_state(&run)
                        == Some(RunState::Starting {
                            attempt: run.attempt,
                        })
                    {
                        self.retry_run(&run);
                    }
                }
            }
            Pending::Finish(run, outcome) => {
                let finishing = RunState::Finishing {
                    attempt: run.attempt,
                    outcome,
                };
                if self.run_state(&run) == Some(finishing) {
                    self.send_finish(now_ms, run, outcome);
                }
            }
            Pending::Cancel(task) => match current {
                Some(now_epoch) => {
                    let request = Request::Cancel {
                        gateway: self.id,
                        epoch: now_epoch,
                        task: task.clone(),
                    };
                    self.send(now_ms, Pending::Cancel(task), request);
                }
                None => self.outputs.push_back(Output::CancelFailed { task }),
            },
        }
    }
}
