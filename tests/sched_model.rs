//! A property test of the scheduler: random sequences of submissions, cancels,
//! workers joining and leaving, run results and ticks, with the scheduler's
//! invariants checked after every command.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use ww_sched::sched::{Effect, RunStatus, SchedConfig, Scheduler, TaskId, TaskStatus, WorkerId};

mod sched_support;

use sched_support::*;

#[derive(Debug, Clone)]
enum Cmd {
    Submit {
        task: u8,
        start_ms: u64,
        delay_ms: u64,
        repeats: u32,
        duration_ms: u64,
    },
    Cancel(u8),
    Join(u8),
    Lose(u8),
    /// Finish the n-th outstanding StartRun (mod count) with outcome kind 0..3.
    Finish(usize, u8),
    Started(usize),
    Tick(u64),
}

fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        3 => (0u8..6, 0u64..500, 0u64..300, 1u32..4, 50u64..3000).prop_map(
            |(task, start_ms, delay_ms, repeats, duration_ms)| Cmd::Submit { task, start_ms, delay_ms, repeats, duration_ms }
        ),
        1 => (0u8..6).prop_map(Cmd::Cancel),
        2 => (0u8..4).prop_map(Cmd::Join),
        1 => (0u8..4).prop_map(Cmd::Lose),
        4 => (0usize..16, 0u8..3).prop_map(|(n, k)| Cmd::Finish(n, k)),
        1 => (0usize..16).prop_map(Cmd::Started),
        3 => (0u64..2000).prop_map(Cmd::Tick),
    ]
}

/// A driver: applies commands, records effects and checks invariants after each.
struct Harness {
    s: Scheduler,
    now_ms: u64,
    log: Vec<Effect>,
    outstanding: Vec<(TaskId, u32, u32, WorkerId)>,
    cancelled: BTreeSet<TaskId>,
    terminal: BTreeMap<(TaskId, u32), RunStatus>,
}

fn slots_of(worker: u8) -> u32 {
    u32::from(worker % 3) + 1
}

impl Harness {
    fn new(seed: u64) -> Self {
        Harness {
            s: Scheduler::new(SchedConfig {
                attempts_max: 3,
                retry_base_ms: 100,
                retry_max_ms: 1000,
                ..config(seed)
            }),
            now_ms: 0,
            log: Vec::new(),
            outstanding: Vec::new(),
            cancelled: BTreeSet::new(),
            terminal: BTreeMap::new(),
        }
    }

    fn apply(&mut self, c: &Cmd) -> Result<(), TestCaseError> {
        let effects = match c {
            Cmd::Submit {
                task,
                start_ms,
                delay_ms,
                repeats,
                duration_ms,
            } => {
                let name = format!("t{task}");
                self.s
                    .submit(
                        self.now_ms,
                        spec(&name, *start_ms, *delay_ms, *repeats, *duration_ms),
                    )
                    .unwrap_or_default()
            }
            Cmd::Cancel(task) => {
                let tid = id(&format!("t{task}"));
                let e = self.s.cancel(self.now_ms, &tid).unwrap_or_default();
                if self
                    .s
                    .task(&tid)
                    .is_some_and(|t| t.status == TaskStatus::Cancelled)
                {
                    self.cancelled.insert(tid);
                }
                e
            }
            Cmd::Join(w) => {
                self.s
                    .worker_joined(self.now_ms, &worker(&format!("w{w}")), slots_of(*w))
            }
            Cmd::Lose(w) => self.s.worker_lost(self.now_ms, &worker(&format!("w{w}"))),
            Cmd::Finish(n, kind) => {
                if self.outstanding.is_empty() {
                    Vec::new()
                } else {
                    let (task, index, attempt, _) =
                        self.outstanding.remove(n % self.outstanding.len());
                    let outcome = match kind {
                        0 => ok(),
                        1 => trap(),
                        _ => lost(),
                    };
                    self.s
                        .run_finished(self.now_ms, &task, index, attempt, outcome)
                }
            }
            Cmd::Started(n) => match self.outstanding.get(n % self.outstanding.len().max(1)) {
                Some((task, index, attempt, _)) => {
                    self.s
                        .run_started(self.now_ms, &task.clone(), *index, *attempt)
                }
                None => Vec::new(),
            },
            Cmd::Tick(dt) => {
                self.now_ms += dt;
                self.s.tick(self.now_ms)
            }
        };
        self.check(effects)
    }

    fn check(&mut self, effects: Vec<Effect>) -> Result<(), TestCaseError> {
        for e in &effects {
            if let Effect::StartRun {
                task,
                index,
                attempt,
                worker,
                ..
            } = e
            {
                prop_assert!(
                    !self.cancelled.contains(task),
                    "StartRun for cancelled {task}"
                );
                self.outstanding
                    .push((task.clone(), *index, *attempt, worker.clone()));
            }
        }
        self.log.extend(effects);
        self.s.check_invariants().map_err(TestCaseError::fail)?;
        for w in self.s.workers() {
            prop_assert!(w.in_flight <= w.slots, "{w:?} over its slots");
        }
        for task in self.s.tasks() {
            let succeeded = task
                .runs
                .iter()
                .filter(|r| r.status == RunStatus::Succeeded)
                .count();
            prop_assert_eq!(task.completions, succeeded as u64);
            for run in &task.runs {
                let key = (task.spec.id.clone(), run.index);
                if let Some(before) = self.terminal.get(&key) {
                    prop_assert_eq!(*before, run.status, "terminal run {:?} changed", key);
                } else if run.status.is_final() {
                    self.terminal.insert(key, run.status);
                }
            }
        }
        Ok(())
    }

    /// With a worker present, answers every call successfully and ticks until idle.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        self.apply(&Cmd::Join(9))?;
        for _ in 0..10_000 {
            while let Some((task, index, attempt, _)) = self.outstanding.pop() {
                let e = self
                    .s
                    .run_finished(self.now_ms, &task, index, attempt, ok());
                self.check(e)?;
            }
            match self.s.next_wakeup_ms() {
                Some(t) => {
                    self.now_ms = self.now_ms.max(t);
                    let e = self.s.tick(self.now_ms);
                    self.check(e)?;
                }
                None => break,
            }
        }
        for task in self.s.tasks() {
            prop_assert!(task.status.is_final(), "{:?} not final", task.spec.id);
            if task.status != TaskStatus::Cancelled {
                prop_assert_eq!(task.runs.len() as u32, task.spec.schedule.repeats);
            }
            for run in &task.runs {
                prop_assert!(
                    run.status.is_final(),
                    "{:?}/{} is {:?}",
                    task.spec.id,
                    run.index,
                    run.status
                );
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_commands_keep_the_invariants(seed in any::<u64>(), cmds in prop::collection::vec(cmd(), 0..80)) {
        let mut first = Harness::new(seed);
        for c in &cmds {
            first.apply(c)?;
        }
        first.drain()?;
        let mut second = Harness::new(seed);
        for c in &cmds {
            second.apply(c)?;
        }
        second.drain()?;
        prop_assert_eq!(&first.log, &second.log, "same seed and commands, different effects");
    }
}
