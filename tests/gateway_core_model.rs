//! A property test of the whole sans-IO gateway core (`ww_sched::gateway::Core`),
//! as `sched_model.rs` is of the scheduler and `gateway_planner.rs` of the
//! planner: random sequences of submissions (new, retried with a key, by
//! module hash), cancels, purges, uploads, health, metrics and pool requests,
//! workers joining and leaving, run results, ticks, turn ends, commits
//! (succeeding, out of reach for a while, failing for good) and store reads
//! (answered, out of reach, failing for good), in any order the driver could
//! produce them. The store is the embedded engine on memory: commits and
//! reads really happen, when the test says so.
//!
//! Checked after every input: an answer that acknowledges something comes
//! only once a batch formed after its request has committed, and the store
//! then holds what it acknowledges; none comes after a fail-stop; only a
//! fatal error fail-stops (a store out of reach, for a commit or a read, never
//! does: health answers `unavailable`, metrics 503); a health or metrics
//! request waits for its read without holding anything else up (a pool
//! request asked meanwhile is answered at once, and the read's answer is the
//! store's count at that moment); every request is answered exactly once;
//! after each commit the store and the scheduler agree on which tasks are
//! open; the core's and the scheduler's invariants hold; and once drained,
//! the store holds exactly the scheduler's tasks.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use ww_sched::gateway::{
    Answer, ApiError, Core, CoreConfig, Effect, GatewayMetrics, HealthReport, HealthStatus, Input,
    MetricsSnapshot, ModuleInput, NewTask, Read, ReadResult, Request, RequestId, Retention, RunKey,
    StorageMode,
};
use ww_sched::sched::{
    Batch, RunOutcome, SchedConfig, Schedule, Store, StoreError, TaskId, WorkerId,
};

/// How a commit or a read the test carries out ends.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    Ok,
    /// The store is out of reach (a commit is retried by the driver meanwhile).
    Transient,
    /// The store fails for good.
    Fatal,
}

#[derive(Debug, Clone)]
enum Cmd {
    Submit {
        task: u8,
        key: Option<u8>,
        given_id: bool,
        by_hash: bool,
    },
    Cancel(u8),
    Purge(u8),
    Upload,
    Health,
    Metrics,
    Workers,
    Join(u8),
    Leave(u8),
    /// Finish the n-th outstanding attempt (mod count): succeed, fail, or transport.
    Finish(usize, u8),
    Tick(u64),
    TurnEnd,
    Commit(Outcome),
    /// Carry out the n-th outstanding read (mod count).
    Read(usize, Outcome),
}

fn outcome() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        12 => Just(Outcome::Ok),
        2 => Just(Outcome::Transient),
        1 => Just(Outcome::Fatal),
    ]
}

fn cmd() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        4 => (0u8..6, proptest::option::of(0u8..4), any::<bool>(), any::<bool>()).prop_map(
            |(task, key, given_id, by_hash)| Cmd::Submit { task, key, given_id, by_hash }
        ),
        1 => (0u8..8).prop_map(Cmd::Cancel),
        1 => (0u8..8).prop_map(Cmd::Purge),
        1 => Just(Cmd::Upload),
        1 => Just(Cmd::Health),
        1 => Just(Cmd::Metrics),
        1 => Just(Cmd::Workers),
        1 => (0u8..3).prop_map(Cmd::Join),
        1 => (0u8..3).prop_map(Cmd::Leave),
        4 => (0usize..16, 0u8..3).prop_map(|(n, k)| Cmd::Finish(n, k)),
        2 => (0u64..400).prop_map(Cmd::Tick),
        4 => Just(Cmd::TurnEnd),
        4 => outcome().prop_map(Cmd::Commit),
        4 => (0usize..8, outcome()).prop_map(|(n, o)| Cmd::Read(n, o)),
    ]
}

/// A deliberate bug in the test's driver, to show the checks bite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Breakage {
    /// Reports every commit as done without writing its batch.
    CommitsNotWritten,
}

/// A request the core has not answered yet.
#[derive(Debug)]
struct Asked {
    kind: Kind,
    /// The last batch formed when it was asked: only a later one may
    /// release an acknowledgement.
    formed_before: u64,
    /// A cancel of a task not held when asked: answered from the store
    /// (final or unknown: nothing to change), not by a commit.
    from_store: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Submit,
    Cancel,
    Purge,
    Module,
    Workers,
    Health,
    Metrics,
}

/// The test's driver: it owns the store and carries out the core's effects
/// when the commands say so.
struct Harness {
    core: Core,
    store: Store,
    now_ms: u64,
    next_request: u64,
    asked: BTreeMap<RequestId, Asked>,
    in_flight: Option<(u64, Batch)>,
    last_formed: u64,
    last_committed: u64,
    reads: Vec<(ww_sched::gateway::ReadId, Read)>,
    runs: Vec<RunKey>,
    workers: BTreeSet<WorkerId>,
    wake_at: u64,
    /// The core fail-stopped.
    failed: bool,
    /// A fatal error was handed to the core.
    fatal_given: bool,
    /// A commit is being retried (the store is out of reach).
    unreachable: bool,
    /// Ids of tasks acknowledged, to cancel and purge.
    known: Vec<TaskId>,
    module: Vec<u8>,
    /// The read being answered, while its result is handled.
    answering: Option<Read>,
    /// An out-of-reach error was handed for the read being answered.
    answering_transient: bool,
    broken: Option<Breakage>,
}

fn fail(message: String) -> TestCaseError {
    TestCaseError::fail(message)
}

impl Harness {
    fn new(seed: u64, broken: Option<Breakage>) -> Harness {
        let store = Store::open_on(redb::backends::InMemoryBackend::new(), "memory")
            .expect("an in-memory store");
        let config = CoreConfig {
            sched: SchedConfig {
                seed,
                attempts_max: 2,
                open_tasks_max: 12,
                ..SchedConfig::default()
            },
            module_bytes_max: 1024,
            retention: Retention {
                retain_ms: Some(2_000),
                finished_max: 4,
                module_grace_ms: 1_000,
                interval_ms: 500,
            },
            storage: StorageMode::Inline,
            report_check: Arc::new(ww_sched::gateway::PlausibleReports),
            id_tag: None,
        };
        let metrics = Arc::new(GatewayMetrics::new());
        let (core, effects) = Core::new(config, Vec::new(), BTreeMap::new(), metrics, 0);
        let mut harness = Harness {
            core,
            store,
            now_ms: 0,
            next_request: 1,
            asked: BTreeMap::new(),
            in_flight: None,
            last_formed: 0,
            last_committed: 0,
            reads: Vec::new(),
            runs: Vec::new(),
            workers: BTreeSet::new(),
            wake_at: 0,
            failed: false,
            fatal_given: false,
            unreachable: false,
            known: Vec::new(),
            module: b"\0asm\x01\0\0\0".to_vec(),
            answering: None,
            answering_transient: false,
            broken,
        };
        harness.effects(effects, None).expect("start");
        harness
    }

    fn module_hash(&self) -> [u8; 32] {
        ww::exec::ModuleHash::of(&self.module).0
    }

    /// Hands `input` to the core and checks what comes back.
    fn feed(&mut self, input: Input) -> Result<(), TestCaseError> {
        let request = match &input {
            Input::Request { id, .. } => Some(*id),
            _ => None,
        };
        let effects = self.core.handle(input, self.now_ms);
        self.effects(effects, request)?;
        self.core.check_invariants().map_err(fail)?;
        Ok(())
    }

    /// Carries out effects as a driver would (commits and reads are only
    /// noted: the commands carry them out).
    fn effects(
        &mut self,
        effects: Vec<Effect>,
        asked_now: Option<RequestId>,
    ) -> Result<(), TestCaseError> {
        for effect in effects {
            match effect {
                Effect::Answer { request, answer } => self.answered(request, *answer)?,
                Effect::Commit { seq, batch, .. } => {
                    prop_assert!(!self.failed, "batch {seq} formed after a fail-stop");
                    prop_assert!(self.in_flight.is_none(), "two batches in flight");
                    prop_assert!(seq > self.last_formed, "batch {seq} formed out of order");
                    self.last_formed = seq;
                    self.in_flight = Some((seq, batch));
                }
                Effect::ReadStore { id, read } => {
                    prop_assert!(
                        matches!(
                            read,
                            Read::Header(_)
                                | Read::Keyed(_)
                                | Read::Module(_)
                                | Read::FinishedCount
                                | Read::ModuleRefs
                        ),
                        "a shared store's read on the embedded one: {read:?}"
                    );
                    self.reads.push((id, read));
                }
                Effect::StartRuns { worker, runs } => {
                    prop_assert!(!self.failed, "runs started after a fail-stop");
                    prop_assert!(
                        self.workers.contains(&worker),
                        "runs on {worker}, not in the pool"
                    );
                    prop_assert!(!runs.is_empty() && runs.len() <= 64);
                    for run in runs {
                        prop_assert!(!self.runs.contains(&run.run), "{:?} started twice", run.run);
                        prop_assert_eq!(run.module.as_slice(), self.module.as_slice());
                        self.runs.push(run.run);
                    }
                }
                Effect::StopRun { run } => self.runs.retain(|r| *r != run),
                Effect::StopAllRuns => self.runs.clear(),
                Effect::Publish(_) => {}
                Effect::FailStop { cause } => {
                    prop_assert!(self.fatal_given, "fail-stop without a fatal error: {cause}");
                    self.failed = true;
                }
                Effect::WakeAt { at_ms } => self.wake_at = at_ms,
                Effect::ClaimRoom { .. } => prop_assert!(false, "claim room on the embedded store"),
            }
        }
        // A pool request is never held up by reads in flight.
        if let Some(request) = asked_now {
            if self
                .asked
                .get(&request)
                .is_some_and(|a| a.kind == Kind::Workers)
            {
                prop_assert!(false, "a pool request waited");
            }
        }
        Ok(())
    }

    /// Checks one answer.
    fn answered(&mut self, request: RequestId, answer: Answer) -> Result<(), TestCaseError> {
        let asked = self.asked.remove(&request).ok_or_else(|| {
            fail(format!(
                "request {request:?} answered twice, or never asked"
            ))
        })?;
        let acknowledged = match &answer {
            Answer::Submit(Ok((header, _))) => Some(header.spec.id.clone()),
            Answer::Cancel(Ok(header)) => {
                prop_assert!(
                    header.status.is_final(),
                    "a cancel answered {:?}",
                    header.status
                );
                Some(header.spec.id.clone())
            }
            Answer::Purge(Ok(())) | Answer::Module(Ok(_)) => None,
            _ => None,
        };
        let acknowledges = matches!(
            answer,
            Answer::Submit(Ok(_))
                | Answer::Cancel(Ok(_))
                | Answer::Purge(Ok(()))
                | Answer::Module(Ok(_))
        );
        if acknowledges {
            prop_assert!(
                !self.failed,
                "{:?} acknowledged after a fail-stop",
                asked.kind
            );
        }
        if acknowledges && !asked.from_store {
            prop_assert!(
                self.last_committed > asked.formed_before,
                "{:?} acknowledged before a batch formed after it committed (formed before: {}, committed: {})",
                asked.kind,
                asked.formed_before,
                self.last_committed
            );
        }
        if let Some(id) = acknowledged {
            let stored = self.store.header(&id).map_err(|e| fail(e.to_string()))?;
            prop_assert!(stored.is_some(), "{id} acknowledged, not stored");
            if !self.known.contains(&id) {
                self.known.push(id);
            }
        }
        if let Answer::Module(Ok(hash)) = &answer {
            let stored = self.store.module(hash).map_err(|e| fail(e.to_string()))?;
            prop_assert!(stored.is_some(), "module acknowledged, not stored");
        }
        match (&asked.kind, &answer) {
            (Kind::Submit, Answer::Submit(_))
            | (Kind::Cancel, Answer::Cancel(_))
            | (Kind::Purge, Answer::Purge(_))
            | (Kind::Module, Answer::Module(_))
            | (Kind::Workers, Answer::Workers(_)) => {}
            (Kind::Health, Answer::Health(report)) => self.check_health(report)?,
            (Kind::Metrics, Answer::Metrics(snapshot)) => self.check_metrics(snapshot)?,
            (kind, answer) => prop_assert!(false, "{kind:?} answered with {answer:?}"),
        }
        Ok(())
    }

    /// A health answer: ok with the store's finished count and the held
    /// tasks, unavailable only with the store out of reach, failed only after
    /// a fail-stop.
    fn check_health(&self, report: &HealthReport) -> Result<(), TestCaseError> {
        match report.status {
            HealthStatus::Ok => {
                prop_assert!(!self.failed);
                prop_assert_eq!(
                    &self.answering,
                    &Some(Read::FinishedCount),
                    "health answered without its read"
                );
                let count = self
                    .store
                    .finished_count()
                    .map_err(|e| fail(e.to_string()))?;
                prop_assert_eq!(report.finished_tasks, count);
                prop_assert_eq!(report.open_tasks, self.core.scheduler().tasks_held());
            }
            HealthStatus::Unavailable => {
                prop_assert!(
                    !self.failed && self.answering_transient,
                    "unavailable without a store out of reach"
                );
            }
            HealthStatus::Failed => prop_assert!(self.failed || self.core.failed().is_some()),
        }
        Ok(())
    }

    /// A metrics answer: with the store's finished count and the held final
    /// tasks, refused only with the store out of reach or after a fail-stop.
    fn check_metrics(
        &self,
        snapshot: &Result<MetricsSnapshot, ApiError>,
    ) -> Result<(), TestCaseError> {
        match snapshot {
            Ok(snapshot) => {
                prop_assert_eq!(
                    &self.answering,
                    &Some(Read::FinishedCount),
                    "metrics answered without their read"
                );
                let count = self
                    .store
                    .finished_count()
                    .map_err(|e| fail(e.to_string()))?;
                let held_final = self
                    .core
                    .scheduler()
                    .tasks()
                    .filter(|t| t.status.is_final())
                    .count() as u64;
                prop_assert_eq!(snapshot.tasks_finished, count + held_final);
            }
            Err(e) => prop_assert!(
                self.answering_transient || self.failed || self.core.failed().is_some(),
                "metrics refused: {e}"
            ),
        }
        Ok(())
    }

    fn ask(&mut self, kind: Kind, request: Request) -> Result<(), TestCaseError> {
        let id = RequestId(self.next_request);
        self.next_request += 1;
        let from_store = match &request {
            Request::Cancel { id } => self.core.scheduler().task(id).is_none(),
            _ => false,
        };
        self.asked.insert(
            id,
            Asked {
                kind,
                formed_before: self.last_formed,
                from_store,
            },
        );
        self.feed(Input::Request { id, request })
    }

    fn target(&self, n: u8) -> TaskId {
        match self.known.get(n as usize) {
            Some(id) => id.clone(),
            None => TaskId::parse(&format!("t{n}")).expect("an id"),
        }
    }

    fn step(&mut self, cmd: &Cmd) -> Result<(), TestCaseError> {
        match cmd {
            Cmd::Submit {
                task,
                key,
                given_id,
                by_hash,
            } => {
                self.submit(*task, *key, *given_id, *by_hash)?;
            }
            Cmd::Cancel(n) => {
                let id = self.target(*n);
                self.ask(Kind::Cancel, Request::Cancel { id })?;
            }
            Cmd::Purge(n) => {
                let id = self.target(*n);
                self.ask(Kind::Purge, Request::Purge { id })?;
            }
            Cmd::Upload => {
                let bytes = self.module.clone();
                self.ask(Kind::Module, Request::PutModule { bytes })?;
            }
            Cmd::Health => self.ask(Kind::Health, Request::Health)?,
            Cmd::Metrics => self.ask(Kind::Metrics, Request::Metrics)?,
            Cmd::Workers => self.ask(Kind::Workers, Request::Workers)?,
            Cmd::Join(w) => {
                let worker = worker_id(*w);
                self.workers.insert(worker.clone());
                self.feed(Input::WorkerJoined { worker, slots: 2 })?;
            }
            Cmd::Leave(w) => {
                let worker = worker_id(*w);
                if self.workers.remove(&worker) {
                    let reason = "gone".to_string();
                    self.feed(Input::WorkerLeft { worker, reason })?;
                }
            }
            Cmd::Finish(n, kind) => {
                self.finish(*n, *kind)?;
            }
            Cmd::Tick(ms) => {
                self.now_ms += ms;
                if self.now_ms >= self.wake_at {
                    self.feed(Input::Tick)?;
                }
            }
            Cmd::TurnEnd => self.feed(Input::TurnEnd)?,
            Cmd::Commit(outcome) => self.commit(*outcome)?,
            Cmd::Read(n, outcome) => {
                if !self.reads.is_empty() {
                    let (id, read) = self.reads.remove(n % self.reads.len());
                    self.read(id, read, *outcome)?;
                }
            }
        }
        Ok(())
    }

    /// Submits task `task` (by hash or with its bytes, maybe with a given id and a key).
    fn submit(
        &mut self,
        task: u8,
        key: Option<u8>,
        given_id: bool,
        by_hash: bool,
    ) -> Result<(), TestCaseError> {
        let module = if by_hash {
            ModuleInput::Hash(self.module_hash())
        } else {
            ModuleInput::Bytes(self.module.clone())
        };
        let task = NewTask {
            id: given_id.then(|| TaskId::parse(&format!("t{task}")).expect("an id")),
            description: String::new(),
            module,
            export: "run".into(),
            args: vec![i64::from(task)],
            fuel_max: 0,
            memory_pages_max: 0,
            duration_ms: 300,
            schedule: Schedule {
                start_ms: 0,
                delay_ms: 50,
                repeats: 1 + u32::from(task % 3),
            },
            completions_initial: 0,
        };
        let idempotency_key = key.map(|k| format!("k{k}"));
        self.ask(
            Kind::Submit,
            Request::Submit {
                task,
                idempotency_key,
            },
        )
    }

    /// Finishes the n-th outstanding attempt (mod count): succeeds (`kind` 0),
    /// fails (1) or loses its transport.
    fn finish(&mut self, n: usize, kind: u8) -> Result<(), TestCaseError> {
        if self.runs.is_empty() {
            return Ok(());
        }
        let run = self.runs.remove(n % self.runs.len());
        let outcome = match kind {
            0 => RunOutcome::Succeeded {
                results: vec![1],
                stdout: "ok\n".into(),
                fuel_used: 5,
            },
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
        self.feed(Input::RunDone { run, outcome })
    }

    /// The batch in flight commits, stays out of reach for now, or fails.
    fn commit(&mut self, outcome: Outcome) -> Result<(), TestCaseError> {
        let Some((seq, batch)) = self.in_flight.take() else {
            return Ok(());
        };
        match outcome {
            Outcome::Transient => {
                // The driver retries the commit; the core hears the store is
                // out of reach and keeps going.
                self.in_flight = Some((seq, batch));
                if !self.unreachable {
                    self.unreachable = true;
                    self.feed(Input::StoreReachable(false))?;
                }
            }
            Outcome::Fatal => {
                self.fatal_given = true;
                let error = StoreError::Corrupt {
                    what: "the disk".into(),
                    reason: "injected".into(),
                };
                self.feed(Input::Committed {
                    seq,
                    result: Err(error),
                })?;
                prop_assert!(self.failed, "a failed commit did not fail-stop");
            }
            Outcome::Ok => {
                if self.unreachable {
                    self.unreachable = false;
                    self.feed(Input::StoreReachable(true))?;
                }
                let report = if self.broken == Some(Breakage::CommitsNotWritten) {
                    Default::default()
                } else {
                    self.store
                        .commit(&batch)
                        .map_err(|e| fail(format!("the store refused batch {seq}: {e}")))?
                };
                self.last_committed = seq;
                self.feed(Input::Committed {
                    seq,
                    result: Ok(report),
                })?;
                self.check_agreement()?;
            }
        }
        Ok(())
    }

    /// Carries out a read, or fails it.
    fn read(
        &mut self,
        id: ww_sched::gateway::ReadId,
        read: Read,
        outcome: Outcome,
    ) -> Result<(), TestCaseError> {
        let error = |transient: bool| {
            if transient {
                StoreError::Unavailable {
                    what: "a read".into(),
                    waited_ms: 0,
                }
            } else {
                StoreError::Corrupt {
                    what: "a read".into(),
                    reason: "injected".into(),
                }
            }
        };
        let failed = match outcome {
            Outcome::Ok => None,
            Outcome::Transient => Some(true),
            Outcome::Fatal => {
                self.fatal_given = true;
                Some(false)
            }
        };
        let store = &self.store;
        let result = match (&read, failed) {
            (Read::Header(task), None) => ReadResult::Header(store.header(task)),
            (Read::Keyed(key), None) => ReadResult::Header(match store.idempotency(key) {
                Ok(Some(task)) => store.header(&task),
                other => other.map(|_| None),
            }),
            (Read::Module(hash), None) => {
                ReadResult::Module(store.module(hash).map(|m| m.map(Arc::new)))
            }
            (Read::FinishedCount, None) => ReadResult::FinishedCount(store.finished_count()),
            (Read::ModuleRefs, None) => ReadResult::ModuleRefs(store.module_refs()),
            (Read::Header(_) | Read::Keyed(_), Some(t)) => ReadResult::Header(Err(error(t))),
            (Read::Module(_), Some(t)) => ReadResult::Module(Err(error(t))),
            (Read::FinishedCount, Some(t)) => ReadResult::FinishedCount(Err(error(t))),
            (Read::ModuleRefs, Some(t)) => ReadResult::ModuleRefs(Err(error(t))),
            (other, _) => return Err(fail(format!("unexpected read {other:?}"))),
        };
        let failed_before = self.failed;
        self.answering = Some(read);
        self.answering_transient = failed == Some(true);
        let fed = self.feed(Input::ReadDone { id, result });
        self.answering = None;
        self.answering_transient = false;
        fed?;
        if failed == Some(true) && !failed_before {
            prop_assert!(!self.failed, "a store out of reach fail-stopped the core");
        }
        Ok(())
    }

    /// After a commit: every open task stored is held, and no task held is
    /// stored final (the store and the core agree on which tasks are open).
    fn check_agreement(&self) -> Result<(), TestCaseError> {
        if self.failed {
            return Ok(());
        }
        let sched = self.core.scheduler();
        let stored = self.store.tasks().map_err(|e| fail(e.to_string()))?;
        for task in &stored {
            let held = sched.task(&task.spec.id);
            if task.status.is_final() {
                prop_assert!(held.is_none(), "{} stored final, still held", task.spec.id);
            } else {
                prop_assert!(held.is_some(), "{} stored open, not held", task.spec.id);
            }
        }
        Ok(())
    }

    /// Carries out everything outstanding until the core is quiet, then
    /// compares the store with the scheduler.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..64 {
            self.feed(Input::TurnEnd)?;
            self.commit(Outcome::Ok)?;
            while let Some((id, read)) = self.reads.pop() {
                self.read(id, read, Outcome::Ok)?;
            }
            if self.in_flight.is_none() && self.reads.is_empty() {
                self.feed(Input::TurnEnd)?;
                if self.in_flight.is_none() && self.reads.is_empty() {
                    break;
                }
            }
        }
        prop_assert!(
            self.asked.is_empty(),
            "requests never answered: {:?}",
            self.asked
        );
        if self.failed {
            return Ok(());
        }
        let sched = self.core.scheduler();
        for task in sched.tasks() {
            let header = self
                .store
                .header(&task.spec.id)
                .map_err(|e| fail(e.to_string()))?;
            prop_assert_eq!(
                header.as_ref(),
                Some(&task.header()),
                "header of {}",
                task.spec.id
            );
            let runs = self
                .store
                .runs(&task.spec.id, 0, usize::MAX)
                .map_err(|e| fail(e.to_string()))?;
            prop_assert_eq!(&runs, &task.runs, "runs of {}", task.spec.id);
        }
        self.check_agreement()
    }
}

/// One case: the commands, then a drain. Without `fatal`, a command that
/// would fail the store for good succeeds instead: most cases then run to
/// the end without a fail-stop, and reach deeper states.
fn run_case(
    seed: u64,
    cmds: &[Cmd],
    fatal: bool,
    broken: Option<Breakage>,
) -> Result<(), TestCaseError> {
    let mut harness = Harness::new(seed, broken);
    for cmd in cmds {
        let cmd = match cmd {
            Cmd::Commit(Outcome::Fatal) if !fatal => Cmd::Commit(Outcome::Ok),
            Cmd::Read(n, Outcome::Fatal) if !fatal => Cmd::Read(*n, Outcome::Ok),
            other => other.clone(),
        };
        harness.step(&cmd)?;
    }
    harness.drain()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_core_acknowledges_only_what_is_committed_and_stops_only_for_good_reason(
        seed in 0u64..1000,
        cmds in proptest::collection::vec(cmd(), 1..160),
        fatal in proptest::bool::weighted(0.3),
    ) {
        run_case(seed, &cmds, fatal, None)?;
    }
}

/// The checks bite: a driver that reports commits it never wrote is caught
/// (an acknowledged task missing from the store).
#[test]
fn the_model_catches_acknowledgements_of_batches_never_written() {
    let mut runner = TestRunner::new(Config {
        cases: 128,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (0u64..1000, proptest::collection::vec(cmd(), 1..160));
    let result = runner.run(&strategy, |(seed, cmds)| {
        run_case(seed, &cmds, false, Some(Breakage::CommitsNotWritten))
    });
    let Err(failure) = result else {
        panic!("the model did not notice commits that were never written");
    };
    let message = failure.to_string();
    assert!(
        [
            "not stored",
            "stored open",
            "header of",
            "fail-stop without a fatal error"
        ]
        .iter()
        .any(|reason| message.contains(reason)),
        "caught, but not for the reason expected: {message}"
    );
}

/// Worker `n` of the model: a peer id derived from `n`.
fn worker_id(n: u8) -> WorkerId {
    let mut secret = [7u8; 32];
    secret[0] = n;
    WorkerId::from(ww::transport::Identity::from_secret(secret).peer_id())
}
