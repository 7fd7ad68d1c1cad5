//! The scheduler's public face: configuration, commands, effects and queries.
//!
//! Sans-IO: every command takes the driver's current time and returns the effects the
//! driver must carry out. There is no clock, no I/O and no async here, and the only
//! randomness is a `ChaCha8Rng` seeded from the config, so the same seed and the same
//! commands give the same effects.

use std::collections::{BTreeMap, BTreeSet};

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::error::SchedError;
use super::id::WorkerId;
use super::tally::RunTally;
use super::types::{Task, TaskId, TaskSpec, TaskStatus, WorkerLoad};
/// Most slots one worker may announce; more are clamped.
pub const SLOTS_MAX: u32 = 1024;
/// Default of [`SchedConfig::open_tasks_max`].
pub const OPEN_TASKS_MAX_DEFAULT: usize = 100_000;

/// Limits and tuning of the scheduler.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct SchedConfig {
    /// Seed of the RNG that breaks placement ties and jitters backoff.
    pub seed: u64,
    /// Attempts per run before a transport failure fails it (at least 1).
    pub attempts_max: u32,
    /// Backoff after the first failed attempt.
    pub retry_base_ms: u64,
    /// Backoff never exceeds this.
    pub retry_max_ms: u64,
    /// Most unfinished tasks held at once; a submission beyond it is `Busy`.
    /// Finished tasks are forgotten by the driver once stored, so they do not
    /// count (but for those whose final state is still being written).
    pub open_tasks_max: usize,
    /// Most workers known at once.
    pub workers_max: usize,
}

impl Default for SchedConfig {
    fn default() -> Self {
        SchedConfig {
            seed: 0,
            attempts_max: 5,
            retry_base_ms: 500,
            retry_max_ms: 30_000,
            open_tasks_max: OPEN_TASKS_MAX_DEFAULT,
            workers_max: 1024,
        }
    }
}

/// How a worker's attempt at a run ended.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// The export returned.
    Succeeded {
        /// Its results.
        results: Vec<i64>,
        /// Captured stdout.
        stdout: String,
        /// Fuel consumed.
        fuel_used: u64,
    },
    /// The task itself failed (trap, fuel, memory, bad module): not retried.
    TaskFailed {
        /// The sandbox's kind of error (`trap`, `fuel_exhausted`, ...).
        #[serde(with = "super::types::exec_kind")]
        kind: ww::exec::ErrorKind,
        /// Error text.
        message: String,
        /// Captured stdout.
        stdout: String,
        /// Fuel consumed.
        fuel_used: u64,
    },
    /// The worker was lost or the call failed in transport: retried elsewhere.
    TransportFailed {
        /// Error text.
        message: String,
    },
}

/// What the driver must do after a command.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Call `worker` to run attempt `attempt` of run `index`; it now counts as in flight.
    StartRun {
        /// The task.
        task: TaskId,
        /// The run's index.
        index: u32,
        /// The attempt, to hand back in `run_finished`.
        attempt: u32,
        /// The chosen worker.
        worker: WorkerId,
        /// What to run (boxed: the other effects are small).
        spec: Box<TaskSpec>,
    },
    /// Ask `worker` to stop this attempt (timeout or cancel); its result will be ignored.
    StopRun {
        /// The task.
        task: TaskId,
        /// The run's index.
        index: u32,
        /// The attempt to stop.
        attempt: u32,
        /// The worker running it.
        worker: WorkerId,
    },
    /// The task changed: persist it (`Scheduler::task`) before any answer
    /// that shows the change. `runs` lists the indexes of the runs that
    /// changed (ascending; empty when only the task's own fields did), so
    /// that persisting costs what changed, not the task's size.
    TaskChanged {
        /// The task.
        task: TaskId,
        /// Its runs that changed.
        runs: Vec<u32>,
    },
}

/// One run, as a key of the indexes.
pub(super) type RunKey = (TaskId, u32);

/// A worker's capacity and the runs it holds.
#[derive(Debug, Clone)]
pub(super) struct WorkerState {
    pub(super) slots: u32,
    pub(super) in_flight: BTreeSet<RunKey>,
}

/// The scheduler: tasks, runs, workers and the indexes that make each command cheap.
#[derive(Debug, Clone)]
pub struct Scheduler {
    pub(super) config: SchedConfig,
    pub(super) rng: ChaCha8Rng,
    pub(super) tasks: BTreeMap<TaskId, Task>,
    pub(super) workers: BTreeMap<WorkerId, WorkerState>,
    /// The next run to create of each task that has runs to come, by due time.
    pub(super) upcoming: BTreeSet<(u64, TaskId)>,
    /// Scheduled and Retrying runs, by the time they may be placed.
    pub(super) waiting: BTreeSet<(u64, TaskId, u32)>,
    /// Mirror of `waiting`, to find an entry by run.
    pub(super) ready_at: BTreeMap<RunKey, u64>,
    /// Running runs, by the time they exceed `duration_ms`.
    pub(super) deadlines: BTreeSet<(u64, TaskId, u32)>,
    /// Each held task's runs counted for its status (one entry per task).
    pub(super) tallies: BTreeMap<TaskId, RunTally>,
}

impl Scheduler {
    /// An empty scheduler.
    pub fn new(mut config: SchedConfig) -> Self {
        config.attempts_max = config.attempts_max.max(1);
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        Scheduler {
            config,
            rng,
            tasks: BTreeMap::new(),
            workers: BTreeMap::new(),
            upcoming: BTreeSet::new(),
            waiting: BTreeSet::new(),
            ready_at: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            tallies: BTreeMap::new(),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &SchedConfig {
        &self.config
    }

    /// Accepts a task; its runs fall due from `now_ms`. A duplicate id is `Exists`.
    pub fn submit(&mut self, now_ms: u64, spec: TaskSpec) -> Result<Vec<Effect>, SchedError> {
        spec.validate()?;
        if self.tasks.contains_key(&spec.id) {
            return Err(SchedError::Exists { id: spec.id });
        }
        if self.tasks.len() >= self.config.open_tasks_max {
            return Err(SchedError::Busy {
                open_tasks_max: self.config.open_tasks_max,
            });
        }
        let id = spec.id.clone();
        let task = Task {
            completions: spec.completions_initial,
            spec,
            status: TaskStatus::Pending,
            submitted_ms: now_ms,
            finished_ms: None,
            runs: Vec::new(),
        };
        self.upcoming.insert((task.due_ms(0), id.clone()));
        self.tasks.insert(id.clone(), task);
        self.tallies.insert(id.clone(), RunTally::default());
        let mut out = Out::default();
        out.task_changed(&id);
        self.advance(now_ms, &mut out);
        Ok(out.into_effects())
    }

    /// Cancels a task: no new run starts and running ones are asked to stop.
    /// Cancelling a finished task changes nothing.
    pub fn cancel(&mut self, now_ms: u64, id: &TaskId) -> Result<Vec<Effect>, SchedError> {
        let Some(task) = self.tasks.get(id) else {
            return Err(SchedError::NotFound { id: id.clone() });
        };
        if task.status.is_final() {
            return Ok(Vec::new());
        }
        let mut out = Out::default();
        self.cancel_task(now_ms, id, &mut out);
        self.advance(now_ms, &mut out);
        Ok(out.into_effects())
    }

    /// A worker offers `slots` runs at once; a known worker's slots are updated.
    pub fn worker_joined(&mut self, now_ms: u64, worker: &WorkerId, slots: u32) -> Vec<Effect> {
        let slots = slots.min(SLOTS_MAX);
        if let Some(state) = self.workers.get_mut(worker) {
            state.slots = slots;
        } else if self.workers.len() >= self.config.workers_max {
            tracing::warn!(
                %worker,
                workers_max = self.config.workers_max,
                "worker table full; worker not added"
            );
        } else {
            let in_flight = BTreeSet::new();
            self.workers
                .insert(worker.clone(), WorkerState { slots, in_flight });
            tracing::debug!(%worker, slots, "worker joined");
        }
        let mut out = Out::default();
        self.advance(now_ms, &mut out);
        out.into_effects()
    }

    /// A worker left; its in-flight runs are retried on others.
    pub fn worker_lost(&mut self, now_ms: u64, worker: &WorkerId) -> Vec<Effect> {
        let mut out = Out::default();
        if let Some(state) = self.workers.remove(worker) {
            tracing::debug!(%worker, in_flight = state.in_flight.len(), "worker lost");
            for (task, index) in state.in_flight {
                self.transport_failed(now_ms, &task, index, "worker lost", &mut out);
            }
        }
        self.advance(now_ms, &mut out);
        out.into_effects()
    }

    /// Optional acknowledgement that a worker began an attempt; `StartRun` already
    /// counts it as in flight, so this only advances time.
    pub fn run_started(
        &mut self,
        now_ms: u64,
        task: &TaskId,
        index: u32,
        attempt: u32,
    ) -> Vec<Effect> {
        if self.running_attempt(task, index) != Some(attempt) {
            tracing::debug!(%task, index, attempt, "stale start acknowledgement ignored");
        }
        let mut out = Out::default();
        self.advance(now_ms, &mut out);
        out.into_effects()
    }

    /// A worker's attempt ended; results for an attempt no longer running are ignored.
    pub fn run_finished(
        &mut self,
        now_ms: u64,
        task: &TaskId,
        index: u32,
        attempt: u32,
        outcome: RunOutcome,
    ) -> Vec<Effect> {
        let mut out = Out::default();
        if self.running_attempt(task, index) == Some(attempt) {
            self.finish(now_ms, task, index, outcome, &mut out);
        } else {
            tracing::debug!(%task, index, attempt, "stale run result ignored");
        }
        self.advance(now_ms, &mut out);
        out.into_effects()
    }

    /// Creates due runs, stops runs past their deadline and places what can be placed.
    pub fn tick(&mut self, now_ms: u64) -> Vec<Effect> {
        let mut out = Out::default();
        self.advance(now_ms, &mut out);
        out.into_effects()
    }

    /// When `tick` next has work; `None` when nothing can progress until a command.
    pub fn next_wakeup_ms(&self) -> Option<u64> {
        let due = self.upcoming.first().map(|(t, _)| *t);
        let deadline = self.deadlines.first().map(|(t, _, _)| *t);
        // A waiting run only wakes us if some worker could take it.
        let free = self.workers.values().any(|w| w.has_free_slot());
        let ready = self.waiting.first().map(|(t, _, _)| *t).filter(|_| free);
        [due, deadline, ready].into_iter().flatten().min()
    }

    /// The task with this id.
    pub fn task(&self, id: &TaskId) -> Option<&Task> {
        self.tasks.get(id)
    }

    /// All tasks, ordered by id.
    pub fn tasks(&self) -> impl Iterator<Item = &Task> {
        self.tasks.values()
    }

    /// Every known worker's load, ordered by worker id.
    pub fn workers(&self) -> Vec<WorkerLoad> {
        self.workers
            .iter()
            .map(|(worker, s)| WorkerLoad {
                worker: worker.clone(),
                slots: s.slots,
                in_flight: u32::try_from(s.in_flight.len()).unwrap_or(u32::MAX),
            })
            .collect()
    }

    /// Unfinished tasks held (and finished ones not yet forgotten).
    pub fn tasks_held(&self) -> usize {
        self.tasks.len()
    }

    /// Drops a finished task from memory once the driver has stored its final state.
    pub fn forget(&mut self, id: &TaskId) -> Result<Task, SchedError> {
        match self.tasks.get(id) {
            None => Err(SchedError::NotFound { id: id.clone() }),
            Some(t) if !t.status.is_final() => Err(SchedError::NotFinished { id: id.clone() }),
            Some(_) => {
                self.tallies.remove(id);
                let task = self
                    .tasks
                    .remove(id)
                    .ok_or_else(|| SchedError::NotFound { id: id.clone() });
                debug_assert_eq!(self.check_after_command(), Ok(()), "after forgetting {id}");
                task
            }
        }
    }

    /// Rebuilds a scheduler from stored tasks after a restart. Runs that were
    /// Scheduled, Running or Retrying become Retrying and are placed as soon as a
    /// worker has a slot: a run in flight at the crash may run twice (at-least-once).
    /// Every stored task is kept, even beyond `open_tasks_max`, so none is lost.
    pub fn restore(config: SchedConfig, now_ms: u64, tasks: Vec<Task>) -> (Self, Vec<Effect>) {
        let mut sched = Scheduler::new(config);
        let mut out = Out::default();
        for task in tasks {
            sched.adopt(now_ms, task, &mut out);
        }
        if sched.tasks.len() > sched.config.open_tasks_max {
            tracing::warn!(
                tasks = sched.tasks.len(),
                open_tasks_max = sched.config.open_tasks_max,
                "restored more unfinished tasks than open_tasks_max; submissions wait until some finish"
            );
        }
        sched.advance(now_ms, &mut out);
        (sched, out.into_effects())
    }
}

impl WorkerState {
    /// True when the worker can take one more run.
    pub(super) fn has_free_slot(&self) -> bool {
        self.in_flight.len() < self.slots as usize
    }
}

/// Effects gathered during one command; each changed task is reported once,
/// at the end, with the runs of it that changed.
#[derive(Default)]
pub(super) struct Out {
    pub(super) effects: Vec<Effect>,
    changed: BTreeMap<TaskId, BTreeSet<u32>>,
}

impl Out {
    /// The task's own fields changed (status, completions, times).
    pub(super) fn task_changed(&mut self, id: &TaskId) {
        if !self.changed.contains_key(id) {
            self.changed.insert(id.clone(), BTreeSet::new());
        }
    }

    /// Run `index` of the task changed (and so, maybe, the task).
    pub(super) fn run_changed(&mut self, id: &TaskId, index: u32) {
        match self.changed.get_mut(id) {
            Some(runs) => {
                runs.insert(index);
            }
            None => {
                self.changed.insert(id.clone(), BTreeSet::from([index]));
            }
        }
    }

    pub(super) fn into_effects(self) -> Vec<Effect> {
        let mut effects = self.effects;
        effects.extend(
            self.changed
                .into_iter()
                .map(|(task, runs)| Effect::TaskChanged {
                    task,
                    runs: runs.into_iter().collect(),
                }),
        );
        effects
    }
}
