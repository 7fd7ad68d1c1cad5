//! A consistency check of the scheduler's indexes, for tests and simulations.

use std::collections::BTreeSet;

use super::scheduler::Scheduler;
use super::tally::{RunTally, TALLY_CHECKED_RUNS_MAX};
use super::types::RunStatus;

/// Above this many tasks held, the check after every command (debug builds)
/// is skipped: it scans every task and run, so it would make long runs quadratic.
const SCANNED_TASKS_MAX: usize = 2_000;

impl Scheduler {
    /// [`check_invariants`](Self::check_invariants) after a command, for a
    /// scheduler small enough to scan (debug builds); `Ok` beyond.
    pub(super) fn check_after_command(&self) -> Result<(), String> {
        if self.tasks.len() > SCANNED_TASKS_MAX {
            return Ok(());
        }
        self.check_invariants()
    }

    /// Checks that the indexes agree with the tasks and workers; for tests.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut in_flight = BTreeSet::new();
        for (name, w) in &self.workers {
            for key in &w.in_flight {
                if !in_flight.insert(key.clone()) {
                    return Err(format!("{key:?} in flight on two workers"));
                }
                let run = self.run(&key.0, key.1).ok_or(format!("{key:?} unknown"))?;
                if run.status != RunStatus::Running || run.worker.as_ref() != Some(name) {
                    return Err(format!("{key:?} on {name} but run is {run:?}"));
                }
            }
        }
        if self.tallies.len() != self.tasks.len() {
            return Err("tallies and tasks disagree".into());
        }
        for (id, task) in &self.tasks {
            let tally = self.tallies.get(id).ok_or(format!("{id}: no tally"))?;
            // A scan of the task's runs: bounded, like the check in `settle`.
            if task.runs.len() <= TALLY_CHECKED_RUNS_MAX && *tally != RunTally::of(task) {
                let scanned = RunTally::of(task);
                return Err(format!("{id}: tally {tally:?}, its runs {scanned:?}"));
            }
            for run in &task.runs {
                let key = (id.clone(), run.index);
                let waits = self.ready_at.contains_key(&key);
                match run.status {
                    RunStatus::Scheduled | RunStatus::Retrying if !waits => {
                        return Err(format!("{key:?} waiting but not indexed"))
                    }
                    RunStatus::Running if !in_flight.contains(&key) => {
                        return Err(format!("{key:?} running but not on its worker"))
                    }
                    s if s.is_final() && (waits || in_flight.contains(&key)) => {
                        return Err(format!("{key:?} final but still indexed"))
                    }
                    _ => {}
                }
            }
        }
        if self.deadlines.len() != in_flight.len() {
            return Err("deadlines and in-flight runs disagree".into());
        }
        if self.waiting.len() != self.ready_at.len() {
            return Err("waiting and ready_at disagree".into());
        }
        Ok(())
    }
}
