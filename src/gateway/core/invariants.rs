//! What must hold between any two inputs, checked after each in debug builds
//! (and by the model test): a breach is a bug in the core, found at the input
//! that made it rather than at the answer it later spoils.

use std::collections::BTreeSet;

use super::reads::Pending;
use super::Core;
use crate::sched::RunStatus;

/// Above this many held tasks the full scan is skipped: it is linear in the
/// tasks and runs, and runs after every input.
const SCANNED_TASKS_MAX: usize = 2_000;

impl Core {
    /// Checks the core's own invariants and the scheduler's; the first
    /// breach, named.
    #[doc(hidden)]
    pub fn check_invariants(&self) -> Result<(), String> {
        self.check_fail_stop()?;
        self.check_reads()?;
        self.check_answers()?;
        if self.sched.tasks_held() > SCANNED_TASKS_MAX {
            return Ok(());
        }
        self.check_starts()?;
        self.sched.check_invariants()
    }

    /// After a fail-stop nothing waits to be acknowledged or started.
    fn check_fail_stop(&self) -> Result<(), String> {
        let failed = self.plan.failure().is_some();
        if failed {
            if !self.submissions.is_empty() || !self.count_waiters.is_empty() {
                return Err("requests wait after a fail-stop".into());
            }
            if !self.starts.is_empty() || !self.module_waits.is_empty() {
                return Err("runs wait to start after a fail-stop".into());
            }
            if self.plan.in_flight().is_some() {
                return Err("a batch in flight after a fail-stop".into());
            }
        }
        Ok(())
    }

    /// One read per concern: the first submission waits for at most one, the
    /// finished count is read once for all its waiters, and every wait has
    /// its read.
    fn check_reads(&self) -> Result<(), String> {
        let counting = self
            .reads
            .values()
            .filter(|p| matches!(p, Pending::FinishedCount))
            .count();
        if counting > 1 || (counting == 0) != self.count_waiters.is_empty() {
            return Err(format!(
                "{counting} finished-count reads for {} waiters",
                self.count_waiters.len()
            ));
        }
        let submission_reads = self
            .reads
            .values()
            .filter(|p| matches!(p, Pending::Submission))
            .count();
        if submission_reads > 1 || (submission_reads == 1) == self.submissions.is_empty() {
            return Err(format!(
                "{submission_reads} submission reads for {} waiting submissions",
                self.submissions.len()
            ));
        }
        for hash in self.module_waits.keys() {
            if !self
                .reads
                .values()
                .any(|p| matches!(p, Pending::Module(h) if h == hash))
            {
                return Err("runs wait for a module nobody reads".into());
            }
        }
        let cancel_waits = self
            .reads
            .values()
            .filter(|p| {
                matches!(
                    p,
                    Pending::CancelFinal { .. }
                        | Pending::Refused {
                            cancel_waiting: true
                        }
                )
            })
            .count();
        if cancel_waits != self.cancels_waiting {
            return Err(format!(
                "{} cancels counted waiting, {cancel_waits} reading",
                self.cancels_waiting
            ));
        }
        Ok(())
    }

    /// An answer is held for one batch: never for one in flight when it came
    /// (the planner's rule), and an answer is in one place only; keys name
    /// held tasks with that key.
    fn check_answers(&self) -> Result<(), String> {
        let mut requests = BTreeSet::new();
        let rendering = self.reads.values().filter_map(|p| match p {
            Pending::Render(held) => Some(held.request()),
            Pending::CancelHeader { request, .. }
            | Pending::CancelRequested { request, .. }
            | Pending::CancelFinal { request, .. }
            | Pending::TakenKey { request, .. } => Some(*request),
            _ => None,
        });
        let waiting = self.submissions.iter().map(|s| s.request());
        let counting = self.count_waiters.iter().map(|(r, _)| *r);
        for request in rendering.chain(waiting).chain(counting) {
            if !requests.insert(request) {
                return Err(format!("request {request:?} waits twice"));
            }
        }
        // Keys name held tasks with that key.
        for (key, id) in &self.keys {
            let held = self.sched.task(id);
            if held.is_none_or(|t| t.spec.idempotency_key.as_deref() != Some(key.as_str())) {
                return Err(format!("key {key:?} names {id}, not held with it"));
            }
        }
        Ok(())
    }

    /// A run waiting to start is running on the scheduler, once.
    fn check_starts(&self) -> Result<(), String> {
        let mut starting = BTreeSet::new();
        for start in self
            .starts
            .iter()
            .chain(self.module_waits.values().flatten())
        {
            if !starting.insert(start.run.clone()) {
                return Err(format!("run {:?} started twice", start.run));
            }
            let (task, index, attempt) = &start.run;
            let run = self
                .sched
                .task(task)
                .and_then(|t| t.runs.get(*index as usize));
            if !run.is_some_and(|r| {
                r.status == RunStatus::Running
                    && r.attempt == *attempt
                    && r.worker.as_ref() == Some(&start.worker)
            }) {
                return Err(format!("run {:?} waits to start but is {run:?}", start.run));
            }
        }
        Ok(())
    }
}
