//! The core's side of runs: scheduler effects carried out, attempts started on
//! workers and their ends taken back, pool changes.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use super::{Core, RunDone};
use crate::gateway::events::Event;
use crate::gateway::pool::PoolEvent;
use crate::gateway::runner::{run_many_on_worker, run_on_worker, RemoteWorkerHandle};
use crate::sched::{Effect, RunOutcome, StoreError, TaskId, TaskSpec, WorkerId};
use crate::worker::wire::RUN_MANY_MAX;

/// A run the scheduler started this turn, sent when the turn ends.
pub(super) struct Start {
    task: TaskId,
    index: u32,
    attempt: u32,
    worker: WorkerId,
    spec: TaskSpec,
}

/// The call carrying one or more runs; shared by the runs of a `runMany`.
/// Dropped with its last run (or with the core), it is aborted: dropping the
/// call cancels it on the worker, which stops the run.
pub(super) struct RunCall(pub(super) tokio::task::JoinHandle<()>);

impl Drop for RunCall {
    fn drop(&mut self) {
        self.0.abort();
    }
}

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
    pub(super) fn worker_left(&mut self, worker: WorkerId, reason: String) {
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
                    // Sent when the turn ends, with the task's other runs
                    // started on the same worker in this turn.
                    self.starts.push(Start {
                        task,
                        index,
                        attempt,
                        worker,
                        spec: *spec,
                    });
                }
                Effect::StopRun {
                    task,
                    index,
                    attempt,
                    worker,
                } => {
                    // Not sent yet: it never will be.
                    self.starts
                        .retain(|s| (&s.task, s.index, s.attempt) != (&task, index, attempt));
                    // Dropping the call cancels it on the worker, which stops
                    // the run; a call carrying other runs goes on for them and
                    // is dropped with the last one stopped.
                    if let Some(call) = self.running.remove(&(task.clone(), index, attempt)) {
                        if Rc::strong_count(&call) == 1 {
                            call.0.abort();
                        }
                        tracing::debug!(%task, index, attempt, %worker, "run stopped");
                    }
                }
            }
        }
    }

    /// Sends the runs started this turn: those on one worker go together
    /// in `runMany` calls of at most [`RUN_MANY_MAX`] (whatever their tasks),
    /// so a worker with many slots gets one message for many runs.
    pub(super) fn send_starts(&mut self) {
        // A gateway that fail-stopped starts nothing: it may no longer own
        // the tasks (a shared store) and could not record the results.
        if self.plan.failure().is_some() {
            self.starts.clear();
        }
        if self.starts.is_empty() {
            return;
        }
        if let Some(until) = &self.act_until {
            if tokio::time::Instant::now() >= until.get() {
                // The keeper has not renewed in time (or could not run): past
                // the window another gateway may soon own these tasks.
                self.fail("lease window passed before runs could start: stopping".into());
                return;
            }
        }
        // Ordered by worker, then as started: the same every time.
        let mut groups: BTreeMap<WorkerId, Vec<Start>> = BTreeMap::new();
        for start in self.starts.drain(..) {
            groups.entry(start.worker.clone()).or_default().push(start);
        }
        for (worker, mut group) in groups {
            while !group.is_empty() {
                let rest = group.split_off(group.len().min(RUN_MANY_MAX as usize));
                self.start_runs(&worker, std::mem::replace(&mut group, rest));
            }
        }
    }

    /// The worker's capability and the module for a run on it, or the
    /// outcome of an attempt that cannot start.
    fn ready(
        &mut self,
        worker: &WorkerId,
        spec: &TaskSpec,
    ) -> Result<(RemoteWorkerHandle, Arc<Vec<u8>>), RunOutcome> {
        match self.pool.client(worker) {
            None => Err(RunOutcome::TransportFailed {
                message: format!("worker {worker} is not in the pool"),
            }),
            Some(client) => match self.module_bytes(&spec.module_hash) {
                Ok(Some(module)) => Ok((client, module)),
                Ok(None) => Err(RunOutcome::TaskFailed {
                    kind: ww::exec::ErrorKind::UnknownModule,
                    message: "module missing from the store".into(),
                    stdout: String::new(),
                    fuel_used: 0,
                }),
                Err(e) if e.is_transient() => {
                    // The database is out of reach for now: the run is
                    // retried (another attempt) once it answers again.
                    tracing::warn!(error = %e, "module not read; the run is retried");
                    Err(RunOutcome::TransportFailed {
                        message: format!("module not read: {e}"),
                    })
                }
                Err(e) => {
                    // The disk failed: stop; the run is retried after the restart.
                    self.fail(format!("store read failed: {e}"));
                    Err(RunOutcome::TransportFailed {
                        message: format!("module not read: {e}"),
                    })
                }
            },
        }
    }

    /// Starts runs on one worker: `run` for one, `runMany` for more.
    fn start_runs(&mut self, worker: &WorkerId, starts: Vec<Start>) {
        let mut client = None;
        let mut runs = Vec::with_capacity(starts.len());
        for start in starts {
            match self.ready(worker, &start.spec) {
                Ok((ready, module)) => {
                    client = Some(ready);
                    tracing::debug!(task = %start.task, index = start.index, attempt = start.attempt, %worker, "run started");
                    runs.push(((start.task, start.index, start.attempt), start.spec, module));
                }
                // Failing before any call is reported like any other end of
                // an attempt, after this command: the scheduler hears every
                // end once.
                Err(outcome) => self.failed_at_start.push_back(RunDone {
                    task: start.task,
                    index: start.index,
                    attempt: start.attempt,
                    outcome,
                }),
            }
        }
        let Some(client) = client else {
            return;
        };
        let done = self.done_sender.clone();
        let keys: Vec<(TaskId, u32, u32)> = runs.iter().map(|(key, _, _)| key.clone()).collect();
        let worker = worker.clone();
        let handle = tokio::task::spawn_local(async move {
            if let [(key, spec, module)] = &runs[..] {
                let outcome = run_on_worker(&client, spec, module.clone()).await;
                report_end(&done, &worker, key.clone(), outcome);
                return;
            }
            let (keys, specs): (Vec<_>, Vec<_>) = runs
                .into_iter()
                .map(|(key, spec, module)| (key, (spec, module)))
                .unzip();
            let outcomes = run_many_on_worker(&client, &specs).await;
            for (key, outcome) in keys.into_iter().zip(outcomes) {
                report_end(&done, &worker, key, outcome);
            }
        });
        let call = Rc::new(RunCall(handle));
        for key in keys {
            self.running.insert(key, call.clone());
        }
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

/// Logs an attempt's end and hands it to the core.
fn report_end(
    done: &tokio::sync::mpsc::UnboundedSender<RunDone>,
    worker: &WorkerId,
    (task, index, attempt): (TaskId, u32, u32),
    outcome: RunOutcome,
) {
    log_attempt_end(&task, index, attempt, worker, &outcome);
    // The core outlives its runs; if it is gone, nobody needs the result.
    let _ = done.send(RunDone {
        task,
        index,
        attempt,
        outcome,
    });
}

/// One event per attempt that came back, with the task, run index, attempt and
/// worker as fields: successes at debug (a task may have thousands), failures
/// at info.
fn log_attempt_end(
    task: &TaskId,
    index: u32,
    attempt: u32,
    worker: &WorkerId,
    outcome: &RunOutcome,
) {
    match outcome {
        RunOutcome::Succeeded { fuel_used, .. } => {
            tracing::debug!(%task, index, attempt, %worker, fuel_used, "run succeeded");
        }
        RunOutcome::TaskFailed {
            kind,
            message,
            fuel_used,
            ..
        } => {
            tracing::info!(%task, index, attempt, %worker, kind = %kind, error = %message, fuel_used, "run failed");
        }
        RunOutcome::TransportFailed { message } => {
            tracing::info!(%task, index, attempt, %worker, error = %message, "run attempt lost; it may be retried");
        }
    }
}
