//! A task's runs counted by what its status depends on, and the status they
//! imply: kept apart from the scheduler's mechanics (`engine.rs`) and state
//! (`scheduler.rs`), which both use it.

use super::types::{RunStatus, Task, TaskStatus};

/// A task's status as its runs imply it (Cancelled is kept).
pub(super) fn derived_status(task: &Task, tally: RunTally) -> TaskStatus {
    if task.status == TaskStatus::Cancelled {
        return TaskStatus::Cancelled;
    }
    let to_come = task.runs.len() < task.spec.schedule.repeats as usize;
    if to_come || tally.open > 0 {
        return if tally.started {
            TaskStatus::Running
        } else {
            TaskStatus::Pending
        };
    }
    if tally.unsuccessful == 0 {
        TaskStatus::Succeeded
    } else {
        TaskStatus::Failed
    }
}

/// Tasks up to this many runs have their tally checked against a scan in
/// debug builds (beyond, the scan would make tests quadratic).
pub(super) const TALLY_CHECKED_RUNS_MAX: usize = 4096;

/// A task's runs counted by what its status depends on, kept up to date as
/// runs are created, started and settled, so that settling a run costs
/// O(log n) rather than a scan of every run of its task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct RunTally {
    /// Runs not in a final state.
    pub(super) open: u32,
    /// Final runs that did not succeed.
    pub(super) unsuccessful: u32,
    /// Whether any run has been handed to a worker.
    pub(super) started: bool,
}

impl RunTally {
    /// Counts `task`'s runs (a scan: at restore, and in debug checks).
    pub(super) fn of(task: &Task) -> RunTally {
        let mut tally = RunTally::default();
        for run in &task.runs {
            if !run.status.is_final() {
                tally.open += 1;
            } else if run.status != RunStatus::Succeeded {
                tally.unsuccessful += 1;
            }
            tally.started |= run.started_ms.is_some();
        }
        tally
    }

    /// A run of the task settled in `status`.
    pub(super) fn settled(&mut self, status: RunStatus) {
        if status.is_final() {
            debug_assert!(self.open > 0, "a run settled that was not open");
            self.open = self.open.saturating_sub(1);
            if status != RunStatus::Succeeded {
                self.unsuccessful += 1;
            }
        }
    }
}
