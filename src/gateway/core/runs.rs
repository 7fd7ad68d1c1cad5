//! The core's side of runs: scheduler effects carried out, attempts started on
//! workers and their ends taken back, pool changes.

use std::sync::Arc;

use super::{Core, RunDone};
use crate::gateway::pool::PoolEvent;
use crate::gateway::runner::run_on_worker;
use crate::sched::{Effect, RunOutcome, TaskId, TaskSpec};

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
                self.sched.worker_joined(now, &worker, slots)
            }
            PoolEvent::Left { worker, reason } => {
                tracing::info!(%worker, %reason, "worker left the pool");
                self.sched.worker_lost(now, &worker)
            }
        };
        self.apply(effects);
    }

    /// Carries out scheduler effects.
    pub(super) fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::TaskChanged(id) => self.plan.changed(id),
                Effect::StartRun {
                    task,
                    index,
                    attempt,
                    worker,
                    spec,
                } => self.start_run(task, index, attempt, worker, *spec),
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
        let mut fail_now = |outcome: RunOutcome| {
            self.failed_at_start.push_back(RunDone {
                task: task.clone(),
                index,
                attempt,
                outcome,
            });
        };
        let Some(client) = self.pool.client(&worker) else {
            fail_now(RunOutcome::TransportFailed {
                message: format!("worker {worker} is not in the pool"),
            });
            return;
        };
        let module = match self.module_bytes(&spec.module_hash) {
            Ok(bytes) => bytes,
            Err(reason) => {
                self.failed_at_start.push_back(RunDone {
                    task,
                    index,
                    attempt,
                    outcome: RunOutcome::TaskFailed {
                        kind: "unknown_module".into(),
                        message: format!("module missing: {reason}"),
                        stdout: String::new(),
                        fuel_used: 0,
                    },
                });
                return;
            }
        };
        let key = (task.clone(), index, attempt);
        let done = self.done_sender.clone();
        let handle = tokio::task::spawn_local(async move {
            let outcome = run_on_worker(&client, &spec, module).await;
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

    /// The module's bytes, from memory or the store.
    pub(super) fn module_bytes(&mut self, hash: &[u8; 32]) -> Result<Arc<Vec<u8>>, String> {
        if let Some(bytes) = self.modules.bytes(hash) {
            return Ok(bytes);
        }
        match self.store.module(hash) {
            Ok(Some(bytes)) => {
                let bytes = Arc::new(bytes);
                self.modules.cache_insert(*hash, bytes.clone());
                Ok(bytes)
            }
            Ok(None) => Err("not in the store".into()),
            Err(e) => Err(e.to_string()),
        }
    }
}
