//! Taking stored tasks back after a restart (at-least-once for in-flight runs).

use super::scheduler::{Out, Scheduler};
use super::tally::{derived_status, RunTally};
use super::types::{RunStatus, Task, TaskStatus};

impl Scheduler {
    /// Takes in stored tasks while running (tasks claimed from a gateway that
    /// stopped): as at a restart, their runs that were in flight run again.
    pub fn take_over(
        &mut self,
        now_ms: u64,
        tasks: Vec<super::types::Task>,
    ) -> Vec<super::scheduler::Effect> {
        let mut out = Out::default();
        for task in tasks {
            self.adopt(now_ms, task, &mut out);
        }
        self.advance(now_ms, &mut out);
        out.into_effects()
    }

    /// Takes in one stored task during `restore` or `take_over`.
    pub(super) fn adopt(&mut self, now_ms: u64, mut task: Task, out: &mut Out) {
        let id = task.spec.id.clone();
        if self.tasks.contains_key(&id) {
            tracing::warn!(task = %id, "duplicate stored task ignored");
            return;
        }
        // The store is ours, but a bad record must not break the indexes.
        task.runs.truncate(task.spec.schedule.repeats as usize);
        for (i, run) in task.runs.iter_mut().enumerate() {
            run.index = u32::try_from(i).unwrap_or(u32::MAX);
        }
        let cancelled = task.status == TaskStatus::Cancelled;
        let mut requeue = Vec::new();
        for run in task.runs.iter_mut().filter(|r| !r.status.is_final()) {
            out.run_changed(&id, run.index);
            if cancelled {
                run.status = RunStatus::Cancelled;
                run.finished_ms = Some(now_ms);
            } else {
                run.status = RunStatus::Retrying;
                requeue.push(run.index);
            }
        }
        let next = u32::try_from(task.runs.len()).unwrap_or(u32::MAX);
        if !task.status.is_final() && next < task.spec.schedule.repeats {
            self.upcoming.insert((task.due_ms(next), id.clone()));
        }
        let tally = RunTally::of(&task);
        self.tallies.insert(id.clone(), tally);
        if !cancelled {
            let status = derived_status(&task, tally);
            if status != task.status {
                task.status = status;
                out.task_changed(&id);
            }
            if status.is_final() {
                task.finished_ms.get_or_insert(now_ms);
            }
        }
        self.tasks.insert(id.clone(), task);
        for index in requeue {
            self.wait(&id, index, now_ms);
        }
    }
}
