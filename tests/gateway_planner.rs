//! A property test of the gateway's commit planner: random submissions,
//! cancels, run results and ticks drive a real scheduler; batches are formed
//! and committed to a model store out of step with them, and a commit fails at
//! a random step. Checked throughout: an answer is released only by the
//! commit of a batch formed after it was held, and the store then holds what
//! it acknowledges; nothing is released or formed after a failure and every
//! held answer comes back refused; a task is forgotten only once the store
//! holds it final; once drained, the store holds exactly the scheduler's tasks.

use std::collections::BTreeMap;

use proptest::prelude::*;
use ww_sched::gateway::Planner;
use ww_sched::sched::{
    Batch, BatchReport, Effect, Op, Run, RunOutcome, RunStatus, SchedConfig, Scheduler, TaskHeader,
    TaskId, TaskStatus,
};

mod sched_support;

use sched_support::*;

#[derive(Debug, Clone)]
enum Cmd {
    Submit {
        task: u8,
        repeats: u32,
    },
    Cancel(u8),
    /// Finish the n-th outstanding attempt (mod count): succeed, fail, or transport.
    Finish(usize, u8),
    Tick(u64),
    /// Form a batch if none is in flight.
    Form,
    /// The batch in flight commits.
    Commit,
}

fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        3 => (0u8..8, 1u32..4).prop_map(|(task, repeats)| Cmd::Submit { task, repeats }),
        1 => (0u8..8).prop_map(Cmd::Cancel),
        4 => (0usize..16, 0u8..3).prop_map(|(n, k)| Cmd::Finish(n, k)),
        2 => (0u64..400).prop_map(Cmd::Tick),
        3 => Just(Cmd::Form),
        3 => Just(Cmd::Commit),
    ]
}

/// An answer as the model holds it.
#[derive(Debug, Clone)]
struct Answer {
    id: TaskId,
    cancel: bool,
    /// Batches formed before it was held: only a later one may release it.
    formed_before: u64,
}

/// What the model store holds.
#[derive(Default)]
struct ModelStore {
    tasks: BTreeMap<TaskId, (TaskHeader, BTreeMap<u32, Run>)>,
}

impl ModelStore {
    fn apply(&mut self, batch: &Batch) -> Result<(), TestCaseError> {
        for op in &batch.ops {
            let Op::PutTask { header, runs, .. } = op else {
                return Err(TestCaseError::fail(format!("unexpected op {op:?}")));
            };
            let stored_final = self
                .tasks
                .get(&header.spec.id)
                .is_some_and(|(h, _)| h.status.is_final());
            prop_assert!(
                !stored_final,
                "task {} written again after it was stored final",
                header.spec.id
            );
            let entry = self
                .tasks
                .entry(header.spec.id.clone())
                .or_insert_with(|| ((**header).clone(), BTreeMap::new()));
            entry.0 = (**header).clone();
            for run in runs {
                entry.1.insert(run.index, run.clone());
            }
        }
        Ok(())
    }
}

struct Model {
    sched: Scheduler,
    plan: Planner<Answer>,
    store: ModelStore,
    now_ms: u64,
    /// (batch seq, batch) in flight.
    in_flight: Option<(u64, Batch)>,
    formed: u64,
    commits: u64,
    /// The commit that fails (0: none).
    fail_at: u64,
    failed: bool,
    outstanding: Vec<(TaskId, u32, u32)>,
    held: usize,
    released: usize,
    refused: usize,
}

impl Model {
    fn effects(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::TaskChanged { task, runs } => self.plan.changed(task, runs),
                Effect::StartRun {
                    task,
                    index,
                    attempt,
                    ..
                } => self.outstanding.push((task, index, attempt)),
                Effect::StopRun { .. } => {}
            }
        }
    }

    fn hold(&mut self, id: TaskId, cancel: bool) -> Result<(), TestCaseError> {
        self.held += 1;
        let answer = Answer {
            id,
            cancel,
            formed_before: self.formed,
        };
        match self.plan.hold(answer) {
            Ok(()) => prop_assert!(!self.failed, "held after a failure"),
            Err(_) => {
                prop_assert!(self.failed, "refused before any failure");
                self.refused += 1;
            }
        }
        Ok(())
    }

    fn step(&mut self, cmd: &Cmd) -> Result<(), TestCaseError> {
        match cmd {
            Cmd::Submit { task, repeats } => {
                let name = format!("t{task}-{}", self.now_ms);
                // The core refuses an id the store keeps (409), as a finished
                // task is no longer in the scheduler.
                if self.store.tasks.contains_key(&id(&name)) {
                    return Ok(());
                }
                let spec = spec(&name, 0, 50, *repeats, 1_000);
                if let Ok(effects) = self.sched.submit(self.now_ms, spec) {
                    self.effects(effects);
                    self.hold(id(&name), false)?;
                }
            }
            Cmd::Cancel(task) => {
                let target = self
                    .sched
                    .tasks()
                    .map(|t| t.spec.id.clone())
                    .filter(|id| id.as_str().starts_with(&format!("t{task}-")))
                    .last();
                if let Some(target) = target {
                    let effects = self.sched.cancel(self.now_ms, &target).expect("held task");
                    self.effects(effects);
                    self.hold(target, true)?;
                }
            }
            Cmd::Finish(n, kind) => {
                if !self.outstanding.is_empty() {
                    let (task, index, attempt) =
                        self.outstanding.remove(n % self.outstanding.len());
                    let outcome = match kind {
                        0 => ok(),
                        1 => RunOutcome::TaskFailed {
                            kind: ww::exec::ErrorKind::Trap,
                            message: "boom".into(),
                            stdout: String::new(),
                            fuel_used: 1,
                        },
                        _ => RunOutcome::TransportFailed {
                            message: "reset".into(),
                        },
                    };
                    let effects =
                        self.sched
                            .run_finished(self.now_ms, &task, index, attempt, outcome);
                    self.effects(effects);
                }
            }
            Cmd::Tick(ms) => {
                self.now_ms += ms;
                let effects = self.sched.tick(self.now_ms);
                self.effects(effects);
            }
            Cmd::Form => {
                let sched = &self.sched;
                let formed = self.plan.form(|id| sched.task(id));
                match formed {
                    Some(formed) => {
                        prop_assert!(!self.failed, "a batch formed after a failure");
                        prop_assert!(self.in_flight.is_none(), "two batches in flight");
                        self.formed += 1;
                        self.in_flight = Some((formed.seq, formed.batch));
                    }
                    None => prop_assert!(
                        self.failed || self.in_flight.is_some() || !self.plan.has_work(),
                        "work waits but no batch formed"
                    ),
                }
            }
            Cmd::Commit => self.commit()?,
        }
        self.sched.check_invariants().map_err(TestCaseError::fail)?;
        Ok(())
    }

    /// Commits the batch in flight (or fails it, at the commit chosen to
    /// fail): what it releases must have been stored by it.
    fn commit(&mut self) -> Result<(), TestCaseError> {
        let Some((seq, batch)) = self.in_flight.take() else {
            return Ok(());
        };
        self.commits += 1;
        if self.commits == self.fail_at {
            self.failed = true;
            let refused = self.plan.failed(seq, "injected".into());
            self.refused += refused.len();
            return Ok(());
        }
        self.store.apply(&batch)?;
        let released = self.plan.committed(seq, BatchReport::default());
        for answer in released.answers {
            self.released += 1;
            prop_assert!(
                answer.formed_before < seq,
                "answer held after batch {seq} formed was released by it"
            );
            let stored = self.store.tasks.get(&answer.id);
            prop_assert!(stored.is_some(), "{} acknowledged, not stored", answer.id);
            if answer.cancel {
                let status = stored.map(|s| s.0.status);
                prop_assert!(status.is_some_and(TaskStatus::is_final), "{status:?}");
            }
        }
        for id in released.finished {
            let stored = self.store.tasks.get(&id).map(|s| s.0.status);
            prop_assert!(stored.is_some_and(TaskStatus::is_final), "{id}: {stored:?}");
            self.sched
                .forget(&id)
                .expect("a finished task is forgotten");
            self.outstanding.retain(|(t, _, _)| *t != id);
        }
        Ok(())
    }

    /// Forms and commits until nothing waits, then compares store and scheduler.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..8 {
            self.step(&Cmd::Commit)?;
            self.step(&Cmd::Form)?;
        }
        self.step(&Cmd::Commit)?;
        if self.failed {
            prop_assert_eq!(
                self.held,
                self.released + self.refused,
                "an answer was lost"
            );
            return Ok(());
        }
        prop_assert!(!self.plan.has_work());
        prop_assert_eq!(self.held, self.released, "an answer was never released");
        for task in self.sched.tasks() {
            let (header, runs) = self
                .store
                .tasks
                .get(&task.spec.id)
                .ok_or_else(|| TestCaseError::fail(format!("{} not stored", task.spec.id)))?;
            prop_assert_eq!(header, &task.header());
            let runs: Vec<Run> = runs.values().cloned().collect();
            prop_assert_eq!(&runs, &task.runs, "runs of {}", task.spec.id);
        }
        for (id, (header, runs)) in &self.store.tasks {
            if self.sched.task(id).is_none() {
                prop_assert!(
                    header.status.is_final(),
                    "{id} forgotten while {:?}",
                    header.status
                );
                prop_assert!(runs.values().all(|r| r.status != RunStatus::Running));
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn answers_show_only_committed_state(
        seed in 0u64..1000,
        cmds in proptest::collection::vec(cmd(), 1..120),
        fail_at in 0u64..12,
    ) {
        let mut sched = Scheduler::new(SchedConfig { attempts_max: 2, ..config(seed) });
        sched.worker_joined(0, &worker("w"), 3);
        let mut model = Model {
            sched,
            plan: Planner::new(std::iter::empty()),
            store: ModelStore::default(),
            now_ms: 0,
            in_flight: None,
            formed: 0,
            commits: 0,
            fail_at,
            failed: false,
            outstanding: Vec::new(),
            held: 0,
            released: 0,
            refused: 0,
        };
        for cmd in &cmds {
            model.step(cmd)?;
        }
        model.drain()?;
    }
}
