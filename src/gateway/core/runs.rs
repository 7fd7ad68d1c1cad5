//! The core's side of runs: scheduler effects carried out, attempts started on
//! workers and their ends taken back, pool changes.

use std::sync::Arc;

use super::{Core, RunDone};
use crate::gateway::events::Event;
use crate::gateway::pool::PoolEvent;
use crate::gateway::runner::run_on_worker;
use crate::sched::{Effect, RunOutcome, StoreError, TaskId, TaskSpec};

impl Core {
    pub(super) fn run_done(&mut self, done: RunDone) {
        self.running
            .remove(&(done.task.clone(), done.index, done.attempt));
        let effects = self.sched.run_finished(
            (self.clock)(),
            &done.task,
            done.index,
            done.attempt,
            done.outcome,
        );
        self.apply(effects);
    }

    pub(super) fn pool_event(&mut self, event: PoolEvent) {
        let now = (self.clock)();
        let effects = match event {
            PoolEvent::Joined { worker, slots } => {
                tracing::info!(%worker, slots, "worker joined the pool");
                self.joined.insert(worker.clone(), now);
                self.events.publish(Event::WorkerJoined {
                    peer: worker.clone(),
                    slots,
                });
                self.sched.worker_joined(now, &worker, slots)
            }
            PoolEvent::Left { worker, reason } => {
                tracing::info!(%worker, %reason, "worker left the pool");
                let effects = self.sched.worker_lost(now, &worker);
                self.worker_left(worker, reason);
                effects
            }
        };
        self.apply(effects);
    }

    /// Forgets when `worker` joined and announces that it left.
    pub(super) fn worker_left(&mut self, worker: String, reason: String) {
        self.joined.remove(&worker);
        self.events.publish(Event::WorkerLeft {
            peer: worker,
            reason,
        });
    }

    /// Carries out scheduler effects.
    pub(super) fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::TaskChanged { task, runs } => self.plan.changed(task, runs),
                Effect::StartRun {
                    task,
                    index,
                    attempt,
                    worker,
                    spec,
                } => {
                    if let Some(run) = self
                        .sched
                        .task(&task)
                        .and_then(|t| t.runs.get(index as usize))
                    {
                        let started = run.started_ms.unwrap_or(run.scheduled_ms);
                        self.metrics
                            .run_dispatched(attempt, run.scheduled_ms, started);
                    }
                    self.start_run(task, index, attempt, worker, *spec)
                }
                Effect::StopRun {
                    task,
                    index,
                    attempt,
                    worker,
                } => {
                    // Dropping the call cancels it on the worker, which stops the run.
                    if let Some(handle) = self.running.remove(&(task.clone(), index, attempt)) {
                        handle.abort();
                        tracing::debug!(%task, index, attempt, %worker, "run stopped");
                    }
                }
            }
        }
    }

    pub(super) fn start_run(
        &mut self,
        task: TaskId,
        index: u32,
        attempt: u32,
        worker: String,
        spec: TaskSpec,
    ) {
        // Failing before any call is reported like any other end of an
        // attempt, after this command: the scheduler hears every end once.
        let ready = match self.pool.client(&worker) {
            None => Err(RunOutcome::TransportFailed {
                message: format!("worker {worker} is not in the pool"),
            }),
            Some(client) => match self.module_bytes(&spec.module_hash) {
                Ok(Some(module)) => Ok((client, module)),
                Ok(None) => Err(RunOutcome::TaskFailed {
                    kind: "unknown_module".into(),
                    message: "module missing from the store".into(),
                    stdout: String::new(),
                    fuel_used: 0,
                }),
                Err(e) => {
                    // The disk failed: stop; the run is retried after the restart.
                    self.fail(format!("store read failed: {e}"));
                    Err(RunOutcome::TransportFailed {
                        message: format!("module not read: {e}"),
                    })
                }
            },
        };
        let (client, module) = match ready {
            Ok(ready) => ready,
            Err(outcome) => {
                self.failed_at_start.push_back(RunDone {
                    task,
                    index,
                    attempt,
                    outcome,
                });
                return;
            }
        };
        let key = (task.clone(), index, attempt);
        let done = self.done_sender.clone();
        tracing::debug!(%task, index, attempt, %worker, "run started");
        let handle = tokio::task::spawn_local(async move {
            let outcome = run_on_worker(&client, &spec, module).await;
            log_attempt_end(&task, index, attempt, &worker, &outcome);
            // The core outlives its runs; if it is gone, nobody needs the result.
            let _ = done.send(RunDone {
                task,
                index,
                attempt,
                outcome,
            });
        });
        self.running.insert(key, handle);
    }

    /// The module's bytes, from memory or the store (`None`: not stored).
    pub(super) fn module_bytes(
        &mut self,
        hash: &[u8; 32],
    ) -> Result<Option<Arc<Vec<u8>>>, StoreError> {
        if let Some(bytes) = self.modules.bytes(hash) {
            return Ok(Some(bytes));
        }
        let Some(bytes) = self.store.module(hash)? else {
            return Ok(None);
        };
        let bytes = Arc::new(bytes);
        self.modules.cache_insert(*hash, bytes.clone());
        Ok(Some(bytes))
    }
}

/// One event per attempt that came back, with the task, run index, attempt and
/// worker as fields: successes at debug (a task may have thousands), failures
/// at info.
fn log_attempt_end(task: &TaskId, index: u32, attempt: u32, worker: &str, outcome: &RunOutcome) {
    match outcome {
        RunOutcome::Succeeded { fuel_used, .. } => {
            tracing::debug!(%task, index, attempt, worker, fuel_used, "run succeeded");
        }
        RunOutcome::TaskFailed {
            kind,
            message,
            fuel_used,
            ..
        } => {
            tracing::info!(%task, index, attempt, worker, kind = %kind, error = %message, fuel_used, "run failed");
        }
        RunOutcome::TransportFailed { message } => {
            tracing::info!(%task, index, attempt, worker, error = %message, "run attempt lost; it may be retried");
        }
    }
}
