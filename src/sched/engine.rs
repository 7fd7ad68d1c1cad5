//! The scheduler's mechanics: due runs, placement, timeouts, retries and task status.

use rand_chacha::rand_core::Rng;

use super::scheduler::{Effect, Out, RunKey, RunOutcome, Scheduler};
use super::tally::{derived_status, RunTally, TALLY_CHECKED_RUNS_MAX};
use super::types::{
    truncated, Run, RunErrorKind, RunStatus, TaskId, TaskStatus, WorkerId, ERROR_BYTES_MAX,
    RESULTS_MAX, STDOUT_BYTES_MAX,
};
use ww::exec::ErrorKind;

impl Scheduler {
    /// Brings the state up to `now_ms`: creates due runs, times out overdue ones, places.
    pub(super) fn advance(&mut self, now_ms: u64, out: &mut Out) {
        self.create_due(now_ms, out);
        self.expire(now_ms, out);
        self.place(now_ms, out);
        // Every command that changes the scheduler ends here (`forget` checks
        // for itself): its indexes must agree with its tasks and workers. A
        // scan, so debug builds only, and up to a size.
        debug_assert_eq!(
            self.check_after_command(),
            Ok(()),
            "after a command at {now_ms} ms"
        );
    }

    /// Creates every run whose due time has come, in due order.
    fn create_due(&mut self, now_ms: u64, out: &mut Out) {
        while let Some((due_ms, id)) = self.upcoming.first().cloned() {
            if due_ms > now_ms {
                break;
            }
            self.upcoming.pop_first();
            let Some(task) = self.tasks.get_mut(&id) else {
                continue;
            };
            let Ok(index) = u32::try_from(task.runs.len()) else {
                continue;
            };
            if index >= task.spec.schedule.repeats {
                continue;
            }
            // Due time, not now: a late tick does not shift the schedule.
            task.runs.push(Run::due(index, due_ms));
            self.tallies.entry(id.clone()).or_default().open += 1;
            if index + 1 < task.spec.schedule.repeats {
                self.upcoming.insert((task.due_ms(index + 1), id.clone()));
            }
            self.waiting.insert((due_ms, id.clone(), index));
            self.ready_at.insert((id.clone(), index), due_ms);
            out.run_changed(&id, index);
        }
    }

    /// Stops every running attempt past its deadline and marks the run TimedOut.
    fn expire(&mut self, now_ms: u64, out: &mut Out) {
        while let Some((deadline_ms, id, index)) = self.deadlines.first().cloned() {
            if deadline_ms > now_ms {
                break;
            }
            let Some((worker, attempt)) = self.take_in_flight(&id, index) else {
                self.deadlines.pop_first();
                continue;
            };
            out.effects.push(Effect::StopRun {
                task: id.clone(),
                index,
                attempt,
                worker,
            });
            let limit_ms = self.tasks.get(&id).map_or(0, |t| t.spec.duration_ms);
            if let Some(run) = self.run_mut(&id, index) {
                run.status = RunStatus::TimedOut;
                run.finished_ms = Some(now_ms);
                run.error_kind = Some(RunErrorKind::Timeout);
                run.error = Some(format!("run exceeded duration_ms = {limit_ms}; stopped"));
            }
            self.settle(now_ms, &id, index, out);
        }
    }

    /// Places waiting runs whose time has come, oldest first, while any slot is free.
    fn place(&mut self, now_ms: u64, out: &mut Out) {
        while let Some((ready_ms, id, index)) = self.waiting.first().cloned() {
            if ready_ms > now_ms {
                break;
            }
            // A retry prefers another worker than the one that failed it.
            let avoid = self
                .run(&id, index)
                .filter(|r| r.status == RunStatus::Retrying)
                .and_then(|r| r.worker.clone());
            let Some(worker) = self.choose_worker(avoid.as_ref()) else {
                break;
            };
            self.waiting.pop_first();
            self.ready_at.remove(&(id.clone(), index));
            self.dispatch(now_ms, &id, index, worker, out);
        }
    }

    /// Least in-flight runs relative to slots among workers with a free slot; ties
    /// broken by the seeded RNG. `avoid` is skipped if any other worker is free.
    fn choose_worker(&mut self, avoid: Option<&WorkerId>) -> Option<WorkerId> {
        let free: Vec<(&WorkerId, u64, u64)> = self
            .workers
            .iter()
            .filter(|(_, w)| w.has_free_slot())
            .map(|(name, w)| (name, w.in_flight.len() as u64, u64::from(w.slots)))
            .collect();
        let others = free.iter().any(|(name, _, _)| Some(*name) != avoid);
        let pool: Vec<&(&WorkerId, u64, u64)> = free
            .iter()
            .filter(|(name, _, _)| !others || Some(*name) != avoid)
            .collect();
        // Compare in_flight/slots by cross-multiplying: exact, no floats.
        let best = pool.iter().min_by(|a, b| (a.1 * b.2).cmp(&(b.1 * a.2)))?;
        let ties: Vec<&WorkerId> = pool
            .iter()
            .filter(|c| c.1 * best.2 == best.1 * c.2)
            .map(|c| c.0)
            .collect();
        let pick = match ties.len() {
            1 => 0,
            n => (self.rng.next_u64() % n as u64) as usize,
        };
        ties.get(pick).map(|name| (*name).clone())
    }

    /// Hands a run to `worker` as its next attempt.
    fn dispatch(&mut self, now_ms: u64, id: &TaskId, index: u32, worker: WorkerId, out: &mut Out) {
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        let deadline_ms = now_ms.saturating_add(task.spec.duration_ms);
        let spec = Box::new(task.spec.clone());
        task.status = TaskStatus::Running;
        let Some(run) = task.runs.get_mut(index as usize) else {
            return;
        };
        run.attempt = run.attempt.saturating_add(1);
        run.worker = Some(worker.clone());
        run.started_ms = Some(now_ms);
        run.status = RunStatus::Running;
        let attempt = run.attempt;
        self.tallies.entry(id.clone()).or_default().started = true;
        if let Some(w) = self.workers.get_mut(&worker) {
            w.in_flight.insert((id.clone(), index));
        }
        self.deadlines.insert((deadline_ms, id.clone(), index));
        tracing::debug!(task = %id, index, attempt, %worker, "run placed");
        out.effects.push(Effect::StartRun {
            task: id.clone(),
            index,
            attempt,
            worker,
            spec,
        });
        out.run_changed(id, index);
    }

    /// Removes a Running run from its worker and the deadline index.
    /// Returns its worker and attempt, or `None` if it was not running.
    fn take_in_flight(&mut self, id: &TaskId, index: u32) -> Option<(WorkerId, u32)> {
        let task = self.tasks.get(id)?;
        let run = task.runs.get(index as usize)?;
        if run.status != RunStatus::Running {
            return None;
        }
        let worker = run.worker.clone()?;
        let started_ms = run.started_ms.unwrap_or(0);
        let deadline_ms = started_ms.saturating_add(task.spec.duration_ms);
        let attempt = run.attempt;
        self.deadlines.remove(&(deadline_ms, id.clone(), index));
        if let Some(w) = self.workers.get_mut(&worker) {
            w.in_flight.remove(&(id.clone(), index));
        }
        Some((worker, attempt))
    }

    /// A Running attempt failed in transport: retry after backoff, or fail the run
    /// once `attempts_max` attempts are used.
    pub(super) fn transport_failed(
        &mut self,
        now_ms: u64,
        id: &TaskId,
        index: u32,
        message: &str,
        out: &mut Out,
    ) {
        let Some((_, attempt)) = self.take_in_flight(id, index) else {
            return;
        };
        let attempts_max = self.config.attempts_max;
        let backoff_ms = self.backoff_ms(attempt);
        let Some(run) = self.run_mut(id, index) else {
            return;
        };
        run.error_kind = Some(RunErrorKind::Transport);
        if attempt >= attempts_max {
            run.status = RunStatus::Failed;
            run.finished_ms = Some(now_ms);
            run.error = Some(truncated(
                &format!("attempt {attempt} of {attempts_max} failed in transport; run failed: {message}"),
                ERROR_BYTES_MAX,
            ));
        } else {
            let ready_ms = now_ms.saturating_add(backoff_ms);
            run.status = RunStatus::Retrying;
            run.error = Some(truncated(
                &format!(
                    "attempt {attempt} failed in transport; retry in {backoff_ms} ms: {message}"
                ),
                ERROR_BYTES_MAX,
            ));
            self.wait(id, index, ready_ms);
        }
        self.settle(now_ms, id, index, out);
    }

    /// Backoff after failed attempt `attempt` (1-based): `min(max, base * 2^(attempt-1))`,
    /// jittered uniformly into `[half, full]`.
    fn backoff_ms(&mut self, attempt: u32) -> u64 {
        let factor = 1u64
            .checked_shl(attempt.saturating_sub(1))
            .unwrap_or(u64::MAX);
        let full_ms = self
            .config
            .retry_base_ms
            .saturating_mul(factor)
            .min(self.config.retry_max_ms);
        let half_ms = full_ms / 2;
        let span = full_ms - half_ms + 1;
        half_ms + self.rng.next_u64() % span
    }

    /// Queues a run for placement at `ready_ms`.
    pub(super) fn wait(&mut self, id: &TaskId, index: u32, ready_ms: u64) {
        let key: RunKey = (id.clone(), index);
        if let Some(old_ms) = self.ready_at.insert(key, ready_ms) {
            self.waiting.remove(&(old_ms, id.clone(), index));
        }
        self.waiting.insert((ready_ms, id.clone(), index));
    }

    /// Records a Running attempt's outcome.
    pub(super) fn finish(
        &mut self,
        now_ms: u64,
        id: &TaskId,
        index: u32,
        outcome: RunOutcome,
        out: &mut Out,
    ) {
        if let RunOutcome::TransportFailed { message } = &outcome {
            self.transport_failed(now_ms, id, index, message, out);
            return;
        }
        if self.take_in_flight(id, index).is_none() {
            return;
        }
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        let Some(run) = task.runs.get_mut(index as usize) else {
            return;
        };
        run.finished_ms = Some(now_ms);
        match outcome {
            RunOutcome::Succeeded {
                mut results,
                stdout,
                fuel_used,
            } => {
                results.truncate(RESULTS_MAX);
                run.status = RunStatus::Succeeded;
                run.results = results;
                run.stdout = truncated(&stdout, STDOUT_BYTES_MAX);
                run.fuel_used = fuel_used;
                run.error_kind = None;
                run.error = None;
                task.completions = task.completions.saturating_add(1);
            }
            RunOutcome::TaskFailed {
                kind,
                message,
                stdout,
                fuel_used,
            } => {
                // The worker's wall clock and the gateway's deadline timer race to
                // end a run past its limit; either way it is the same event.
                run.status = if kind == ErrorKind::Deadline {
                    RunStatus::TimedOut
                } else {
                    RunStatus::Failed
                };
                run.stdout = truncated(&stdout, STDOUT_BYTES_MAX);
                run.fuel_used = fuel_used;
                run.error_kind = Some(RunErrorKind::from(kind));
                run.error = Some(truncated(&message, ERROR_BYTES_MAX));
            }
            RunOutcome::TransportFailed { .. } => {}
        }
        self.settle(now_ms, id, index, out);
    }

    /// Marks a task Cancelled: stops its running attempts, drops its waiting runs and
    /// creates no more.
    pub(super) fn cancel_task(&mut self, now_ms: u64, id: &TaskId, out: &mut Out) {
        let Some(task) = self.tasks.get(id) else {
            return;
        };
        let next = u32::try_from(task.runs.len()).unwrap_or(u32::MAX);
        if next < task.spec.schedule.repeats {
            self.upcoming.remove(&(task.due_ms(next), id.clone()));
        }
        let open: Vec<(u32, RunStatus)> = task
            .runs
            .iter()
            .filter(|r| !r.status.is_final())
            .map(|r| (r.index, r.status))
            .collect();
        for (index, status) in open {
            if status == RunStatus::Running {
                if let Some((worker, attempt)) = self.take_in_flight(id, index) {
                    out.effects.push(Effect::StopRun {
                        task: id.clone(),
                        index,
                        attempt,
                        worker,
                    });
                }
            } else if let Some(ready_ms) = self.ready_at.remove(&(id.clone(), index)) {
                self.waiting.remove(&(ready_ms, id.clone(), index));
            }
            if let Some(run) = self.run_mut(id, index) {
                run.status = RunStatus::Cancelled;
                run.finished_ms = Some(now_ms);
            }
            // The task's status stays Cancelled whatever its tally says, but
            // the tally is an index like any other: it follows its runs.
            if let Some(tally) = self.tallies.get_mut(id) {
                tally.settled(RunStatus::Cancelled);
            }
            out.run_changed(id, index);
        }
        if let Some(task) = self.tasks.get_mut(id) {
            task.status = TaskStatus::Cancelled;
            task.finished_ms.get_or_insert(now_ms);
        }
        tracing::debug!(task = %id, "task cancelled");
        out.task_changed(id);
    }

    /// Recomputes a task's status after its run `index` changed and reports
    /// both; a task that became final is stamped with `now_ms`.
    pub(super) fn settle(&mut self, now_ms: u64, id: &TaskId, index: u32, out: &mut Out) {
        out.run_changed(id, index);
        let Some(task) = self.tasks.get_mut(id) else {
            return;
        };
        let tally = self.tallies.entry(id.clone()).or_default();
        if let Some(run) = task.runs.get(index as usize) {
            tally.settled(run.status);
        }
        debug_assert!(
            task.runs.len() > TALLY_CHECKED_RUNS_MAX || *tally == RunTally::of(task),
            "task {id}: the tally {tally:?} disagrees with its runs {:?}",
            RunTally::of(task)
        );
        task.status = derived_status(task, *tally);
        if task.status.is_final() {
            task.finished_ms.get_or_insert(now_ms);
        }
    }

    /// The run, if it exists.
    pub(super) fn run(&self, id: &TaskId, index: u32) -> Option<&Run> {
        self.tasks.get(id)?.runs.get(index as usize)
    }

    pub(super) fn run_mut(&mut self, id: &TaskId, index: u32) -> Option<&mut Run> {
        self.tasks.get_mut(id)?.runs.get_mut(index as usize)
    }

    /// The attempt number of a Running run, `None` otherwise.
    pub(super) fn running_attempt(&self, id: &TaskId, index: u32) -> Option<u32> {
        self.run(id, index)
            .filter(|r| r.status == RunStatus::Running)
            .map(|r| r.attempt)
    }
}
