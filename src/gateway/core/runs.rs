//! The core's side of runs: scheduler effects carried out, attempts handed to
//! the driver for workers and their ends taken back, pool changes. A run
//! whose module's bytes are not in memory waits for a store read of them,
//! off the core's thread; the rest go out when the turn ends.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::reads::Pending;
use super::{Core, Effect, Read, RunKey, RunStart, Start};
use crate::gateway::events::Event;
use crate::sched::{Effect as SchedEffect, RunOutcome, StoreError, WorkerId};
use crate::worker::wire::RUN_MANY_MAX;

impl Core {
    /// An attempt ended (or could not start): the scheduler hears it once.
    pub(super) fn run_done(&mut self, (task, index, attempt): RunKey, outcome: RunOutcome) {
        let effects = self
            .sched
            .run_finished(self.now_ms, &task, index, attempt, outcome);
        self.apply(effects);
    }

    /// A worker joined the pool (or registered again).
    pub(super) fn worker_joined(&mut self, worker: WorkerId, slots: u32) {
        tracing::info!(%worker, slots, "worker joined the pool");
        let now = self.now_ms;
        self.joined.insert(worker.clone(), now);
        self.out.push(Effect::Publish(Event::WorkerJoined {
            peer: worker.clone(),
            slots,
        }));
        let effects = self.sched.worker_joined(now, &worker, slots);
        self.apply(effects);
    }

    /// A worker left the pool: its runs are retried elsewhere.
    pub(super) fn worker_left(&mut self, worker: WorkerId, reason: String) {
        tracing::info!(%worker, %reason, "worker left the pool");
        let effects = self.sched.worker_lost(self.now_ms, &worker);
        // Its attempts not sent yet never will be: the scheduler has counted
        // them lost with the worker.
        self.starts.retain(|s| s.worker != worker);
        for waiting in self.module_waits.values_mut() {
            waiting.retain(|s| s.worker != worker);
        }
        self.joined.remove(&worker);
        self.out.push(Effect::Publish(Event::WorkerLeft {
            peer: worker,
            reason,
        }));
        self.apply(effects);
    }

    /// Carries out scheduler effects.
    pub(super) fn apply(&mut self, effects: Vec<SchedEffect>) {
        for effect in effects {
            match effect {
                SchedEffect::TaskChanged { task, runs } => self.plan.changed(task, runs),
                SchedEffect::StartRun {
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
                    // A gateway that fail-stopped starts nothing.
                    if self.plan.failure().is_some() {
                        continue;
                    }
                    // Sent when the turn ends, with the other runs started
                    // on the same worker in this turn.
                    self.starts.push(Start {
                        run: (task, index, attempt),
                        worker,
                        spec: *spec,
                    });
                }
                SchedEffect::StopRun {
                    task,
                    index,
                    attempt,
                    worker,
                } => {
                    let run = (task, index, attempt);
                    // Not sent yet: it never will be.
                    self.starts.retain(|s| s.run != run);
                    for waiting in self.module_waits.values_mut() {
                        waiting.retain(|s| s.run != run);
                    }
                    tracing::debug!(task = %run.0, index, attempt, %worker, "run stopped");
                    self.out.push(Effect::StopRun { run });
                }
            }
        }
    }

    /// Sends the runs started this turn: those on one worker go together
    /// in calls of at most [`RUN_MANY_MAX`] (whatever their tasks), so a
    /// worker with many slots gets one message for many runs. A run whose
    /// module is not in memory waits for it to be read.
    pub(super) fn send_starts(&mut self) {
        // A gateway that fail-stopped starts nothing: it may no longer own
        // the tasks (a shared store) and could not record the results.
        if self.plan.failure().is_some() {
            self.starts.clear();
        }
        if self.starts.is_empty() {
            return;
        }
        // Ordered by worker, then as started: the same every time.
        let mut groups: BTreeMap<WorkerId, Vec<RunStart>> = BTreeMap::new();
        for start in std::mem::take(&mut self.starts) {
            let hash = start.spec.module_hash;
            match self.modules.bytes(&hash) {
                Some(module) => groups.entry(start.worker).or_default().push(RunStart {
                    run: start.run,
                    spec: start.spec,
                    module,
                }),
                None => {
                    let waiting = self.module_waits.entry(hash).or_default();
                    waiting.push(start);
                    if waiting.len() == 1 {
                        self.read(Read::Module(hash), Pending::Module(hash));
                    }
                }
            }
        }
        for (worker, mut group) in groups {
            while !group.is_empty() {
                let rest = group.split_off(group.len().min(RUN_MANY_MAX as usize));
                let runs = std::mem::replace(&mut group, rest);
                self.out.push(Effect::StartRuns {
                    worker: worker.clone(),
                    runs,
                });
            }
        }
    }

    /// The bytes of a module runs wait for came back: they start at the end
    /// of this turn, or end as attempts that could not start.
    pub(super) fn module_read(
        &mut self,
        hash: [u8; 32],
        result: Result<Option<Arc<Vec<u8>>>, StoreError>,
    ) {
        let waiting = self.module_waits.remove(&hash).unwrap_or_default();
        let outcome = match result {
            Ok(Some(bytes)) => {
                self.modules.cache_insert(hash, bytes);
                // Only attempts still current: one retried meanwhile (its
                // worker lost) is not sent under its old number.
                let sched = &self.sched;
                self.starts.extend(waiting.into_iter().filter(|s| {
                    let (task, index, attempt) = &s.run;
                    sched
                        .task(task)
                        .and_then(|t| t.runs.get(*index as usize))
                        .is_some_and(|r| {
                            r.attempt == *attempt && r.status == crate::sched::RunStatus::Running
                        })
                }));
                return;
            }
            Ok(None) => RunOutcome::TaskFailed {
                kind: ww::exec::ErrorKind::UnknownModule,
                message: "module missing from the store".into(),
                stdout: String::new(),
                fuel_used: 0,
            },
            Err(e) if e.is_transient() => {
                // The database is out of reach for now: the run is retried
                // (another attempt) once it answers again.
                tracing::warn!(error = %e, "module not read; the run is retried");
                RunOutcome::TransportFailed {
                    message: format!("module not read: {e}"),
                }
            }
            Err(e) => {
                // The disk failed: stop; the run is retried after the restart.
                return self.fail(format!("store read failed: {e}"));
            }
        };
        for start in waiting {
            self.run_done(start.run, outcome.clone());
        }
    }
}
