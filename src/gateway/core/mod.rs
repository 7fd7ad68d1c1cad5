//! The gateway core, sans-IO: a state machine that owns the scheduler (the
//! unfinished tasks), the commit planner, the modules mirror and the
//! shared-store bookkeeping, and decides everything the gateway does with
//! them. [`Core::handle`] takes one [`Input`] (a request, a commit or read
//! result, a run's end, a pool change, a tick) with the scheduler's clock, and
//! returns the [`Effect`]s to carry out (commit this batch, read the store,
//! start or stop runs, answer a request, wake me at T). It holds no clock, no
//! channel, no store and no task: `driver/` does all I/O and feeds the
//! results back, so a test can drive the whole core step by step
//! (`tests/gateway_core_model.rs`).
//!
//! Every change goes to the store through the planner (`plan.rs`): inputs
//! accumulate until [`Input::TurnEnd`], when the runs started meanwhile go out
//! and the next batch forms (one in flight at a time). An answer that
//! acknowledges something (submit, cancel, purge, upload) is held until the
//! batch formed after it commits, and shows the store's copy. Whatever the
//! core must know from the store (an id or key taken, a module uploaded
//! elsewhere, the finished count for `/healthz`) it asks for with
//! [`Effect::ReadStore`] and goes on with other inputs until the result comes.
//!
//! A failed commit, or a read that shows the store can no longer be trusted
//! (not one that only could not reach it), fail-stops the core: held answers
//! are refused with 503, runs are stopped, nothing is acknowledged again.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

pub use super::commands::{Acked, Command, HealthReport, HealthStatus, ModuleInput, NewTask};
pub use driver::{Driver, StorageMode};
pub use effect::{Answer, Effect, Read, RunStart};
pub use input::{Input, ReadId, ReadResult, Request, RequestId, RunKey};
pub use plan::{Formed, PlanFailed, Planner, Released, RunEnded, RunWritten};

use super::metrics::GatewayMetrics;
use super::ApiError;
use crate::sched::{ModuleRefs, SchedConfig, Scheduler, StoreError, Task, TaskId, WorkerId};
use modules::Modules;
use reads::Pending;
use submit::Submission;

mod driver;
mod effect;
mod input;
mod invariants;
mod modules;
mod ownership;
mod pipeline;
pub(crate) mod plan;
mod reads;
mod requests;
mod runs;
mod submit;

/// Commands waiting for the core; handlers wait beyond this.
pub const COMMAND_QUEUE_MAX: usize = 256;
/// Commands and run results handled before a batch forms: bounds the batch.
pub const FLUSH_BATCH_MAX: usize = 256;
/// A commit in flight longer than this (on the core's clock) counts as
/// failed (a hung disk).
pub const COMMIT_STALL_MAX_MS: u64 = 30_000;
/// [`COMMIT_STALL_MAX_MS`] as a duration.
pub const COMMIT_STALL_MAX: std::time::Duration =
    std::time::Duration::from_millis(COMMIT_STALL_MAX_MS);
/// How often retention runs by default (and more often while it has a backlog).
pub const EXPIRE_INTERVAL_MS: u64 = 10_000;

/// Most tasks owned but not held that one page of a comparison takes up
/// (each is read whole, a few round trips); the rest wait for the next
/// comparison.
pub const OWNED_TAKE_UP_MAX: usize = 64;
/// Most finished tasks one batch deletes, so one commit stays short.
pub const EXPIRE_DELETE_MAX: usize = 2_000;
/// Most modules one batch deletes.
pub const MODULES_COLLECT_MAX: usize = 256;
/// Cancels of other gateways' tasks that wait for their owners at once; more
/// are asked but answered 503 at once (each wait reads the store every 100 ms).
pub const CANCELS_WAITING_MAX: usize = 64;
/// Longest a cancel of another gateway's task waits for its owner to apply it:
/// a dead owner's lease (10 s) and a claim (1 s), with room to spare.
pub const CANCEL_ELSEWHERE_WAIT_MS: u64 = 20_000;
/// Most submissions waiting for store reads at once; more are answered 503
/// (each waits for the ones before it).
pub const SUBMISSIONS_READING_MAX: usize = 1_024;

/// How long finished tasks and unused modules are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Finished tasks are deleted this long after they finished (`None`: kept
    /// until `finished_max` pushes them out).
    pub retain_ms: Option<u64>,
    /// Most finished tasks kept; beyond it the oldest go first.
    pub finished_max: u64,
    /// A module no task refers to is deleted this long after the last one went
    /// (or after its upload).
    pub module_grace_ms: u64,
    /// How often retention runs (while it has a backlog: at once again).
    pub interval_ms: u64,
}

impl Default for Retention {
    /// Seven days, a million finished tasks, an hour for unused modules.
    fn default() -> Self {
        Retention {
            retain_ms: Some(7 * 24 * 3600 * 1000),
            finished_max: 1_000_000,
            module_grace_ms: 3600 * 1000,
            interval_ms: EXPIRE_INTERVAL_MS,
        }
    }
}

/// Settings of the core.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// Scheduler tuning and seed (and `open_tasks_max`).
    pub sched: SchedConfig,
    /// Largest module accepted.
    pub module_bytes_max: usize,
    /// What is kept, and how long.
    pub retention: Retention,
    /// Where commits and reads run (the driver's concern).
    pub storage: StorageMode,
    /// What every worker's report must pass to be recorded (the driver's
    /// concern: it makes the calls).
    pub report_check: std::sync::Arc<dyn crate::gateway::ReportCheck>,
    /// Put into generated task ids on a shared store (a tag of this gateway's
    /// peer id and its lease epoch), so two gateways, or two lives of one,
    /// never generate the same one. Its presence also means the store is
    /// shared by several gateways.
    pub id_tag: Option<String>,
}

impl CoreConfig {
    /// Whether several gateways share the store (this one holds a lease).
    pub fn shared(&self) -> bool {
        self.id_tag.is_some()
    }
}

/// The milliseconds clock the scheduler runs on. It must never step back or
/// jump (run deadlines are measured on it): on real hosts it is the wall clock
/// read once at start, advanced by a monotonic clock, so stored times are
/// wall-clock times and a step of the system clock times out nothing; in
/// simulations it is virtual time. Only the driver reads it.
pub type Clock = std::rc::Rc<dyn Fn() -> u64>;

/// An answer held until the batch formed after it commits.
#[derive(Debug)]
enum Held {
    Submit {
        request: RequestId,
        id: TaskId,
        created: bool,
    },
    Cancel {
        request: RequestId,
        id: TaskId,
    },
    Purge {
        request: RequestId,
        id: TaskId,
    },
    Module {
        request: RequestId,
        hash: [u8; 32],
    },
}

impl Held {
    /// The request it answers.
    fn request(&self) -> RequestId {
        match self {
            Held::Submit { request, .. }
            | Held::Cancel { request, .. }
            | Held::Purge { request, .. }
            | Held::Module { request, .. } => *request,
        }
    }

    /// The refusal of the answer: what it would acknowledge may not be on disk.
    fn refusal(self, cause: &str) -> Effect {
        let error = || ApiError::Storage(format!("not acknowledged: {cause}"));
        let answer = match self {
            Held::Submit { .. } => Answer::Submit(Err(error())),
            Held::Cancel { .. } => Answer::Cancel(Err(error())),
            Held::Purge { .. } => Answer::Purge(Err(error())),
            Held::Module { .. } => Answer::Module(Err(error())),
        };
        Effect::Answer {
            request: self.request(),
            answer: Box::new(answer),
        }
    }
}

pub(super) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// A run the scheduler started, to be sent when the turn ends.
#[derive(Debug)]
struct Start {
    run: RunKey,
    worker: WorkerId,
    spec: crate::sched::TaskSpec,
}

/// The core's state.
pub struct Core {
    sched: Scheduler,
    plan: Planner<Held>,
    config: CoreConfig,
    /// Counters moved where their events happen (atomics: no I/O, and never
    /// read back by the core).
    metrics: Arc<GatewayMetrics>,
    /// The clock at the input being handled.
    now_ms: u64,
    /// Effects of the input being handled.
    out: Vec<Effect>,
    /// When the batch in flight was sent.
    in_flight_since_ms: Option<u64>,
    commits: u64,
    /// When each worker in the pool joined.
    joined: BTreeMap<WorkerId, u64>,
    /// Runs started this turn, sent together when it ends.
    starts: Vec<Start>,
    /// Runs whose module's bytes are being read, by module.
    module_waits: BTreeMap<[u8; 32], Vec<Start>>,
    generated: u64,
    modules: Modules,
    /// Idempotency keys of the tasks held in memory (the store has the rest).
    keys: BTreeMap<String, TaskId>,
    /// When retention runs next.
    next_expire_ms: u64,
    /// `false` while a commit is retried because the store is out of reach.
    reachable: bool,
    /// Store reads in flight, and what each is for.
    reads: BTreeMap<ReadId, Pending>,
    next_read: u64,
    /// Submissions waiting, in order, for the reads their checks need; the
    /// first is the one being read for.
    submissions: VecDeque<Submission>,
    /// The finished count as last read (shown once reads have stopped).
    finished_seen: u64,
    /// Health and metrics requests waiting for the finished count being read.
    count_waiters: Vec<(RequestId, bool)>,
    /// Cancels of other gateways' tasks waiting for their owners.
    cancels_waiting: usize,
    /// Tasks taken over by `Owned` reads in flight: forgotten meanwhile,
    /// they are not taken up again from a read made before.
    owned_reads: usize,
    forgotten_meanwhile: BTreeSet<TaskId>,
    /// Tasks deleted (purged, expired) by batches committed while answers
    /// are read from the store to be shown: one missing then was deleted,
    /// not lost.
    deleted_meanwhile: BTreeSet<TaskId>,
    /// The last wake-up and claim room told to the driver.
    wake_at: Option<u64>,
    claim_room: Option<usize>,
}

impl Core {
    /// A core holding `tasks` (the unfinished tasks restored or claimed from
    /// the store; runs in flight at the last stop are retried: at-least-once)
    /// and the store's `module_refs`, at `now_ms`. The effects start the
    /// tasks' runs.
    pub fn new(
        config: CoreConfig,
        tasks: Vec<Task>,
        module_refs: BTreeMap<[u8; 32], ModuleRefs>,
        metrics: Arc<GatewayMetrics>,
        now_ms: u64,
    ) -> (Self, Vec<Effect>) {
        let modules = Modules::new(module_refs);
        let keys = tasks
            .iter()
            .filter_map(|t| Some((t.spec.idempotency_key.clone()?, t.spec.id.clone())))
            .collect();
        let plan = Planner::new(&tasks);
        let restored = tasks.len();
        let (sched, effects) = Scheduler::restore(config.sched.clone(), now_ms, tasks);
        tracing::info!(
            tasks = restored,
            modules = modules.count(),
            "unfinished tasks restored from the store"
        );
        let mut core = Core {
            sched,
            plan,
            config,
            metrics,
            now_ms,
            out: Vec::new(),
            in_flight_since_ms: None,
            commits: 0,
            joined: BTreeMap::new(),
            starts: Vec::new(),
            module_waits: BTreeMap::new(),
            generated: 0,
            modules,
            keys,
            next_expire_ms: now_ms,
            reachable: true,
            reads: BTreeMap::new(),
            next_read: 1,
            submissions: VecDeque::new(),
            finished_seen: 0,
            count_waiters: Vec::new(),
            cancels_waiting: 0,
            owned_reads: 0,
            forgotten_meanwhile: BTreeSet::new(),
            deleted_meanwhile: BTreeSet::new(),
            wake_at: None,
            claim_room: None,
        };
        core.apply(effects);
        let out = core.handle(Input::TurnEnd, now_ms);
        (core, out)
    }

    /// Handles one input at `now_ms` (the scheduler's clock, never going
    /// back) and returns what to do, in order.
    pub fn handle(&mut self, input: Input, now_ms: u64) -> Vec<Effect> {
        debug_assert!(now_ms >= self.now_ms, "the clock went back");
        self.now_ms = self.now_ms.max(now_ms);
        match input {
            Input::Request { id, request } => self.request(id, request),
            Input::Committed { seq, result } => self.commit_done(seq, result),
            Input::ReadDone { id, result } => self.read_done(id, result),
            Input::RunDone { run, outcome } => self.run_done(run, outcome),
            Input::WorkerJoined { worker, slots } => self.worker_joined(worker, slots),
            Input::WorkerLeft { worker, reason } => self.worker_left(worker, reason),
            Input::Adopt { tasks } => self.adopt(tasks),
            Input::Owned { ids } => self.take_up_owned(ids),
            Input::CancelAsked { id } => self.cancel_asked(&id),
            Input::StoreReachable(reachable) => self.reachable = reachable,
            Input::Tripped { cause } => self.fail(cause),
            Input::Tick => self.tick(),
            Input::TurnEnd => self.turn_end(),
        }
        debug_assert_eq!(self.check_invariants(), Ok(()));
        std::mem::take(&mut self.out)
    }

    /// Whether the core has fail-stopped.
    pub fn failed(&self) -> Option<&str> {
        self.plan.failure()
    }

    /// The scheduler, to look at (tests, invariants).
    pub fn scheduler(&self) -> &Scheduler {
        &self.sched
    }

    /// The number of the batch in flight, if one is.
    pub fn batch_in_flight(&self) -> Option<u64> {
        self.plan.in_flight()
    }

    /// Timers: the scheduler's due runs and deadlines, retention, and a
    /// commit in flight too long.
    fn tick(&mut self) {
        let now = self.now_ms;
        let effects = self.sched.tick(now);
        self.apply(effects);
        if now >= self.next_expire_ms {
            self.expire(now);
        }
        if let Some(since) = self.in_flight_since_ms {
            if now.saturating_sub(since) >= COMMIT_STALL_MAX_MS {
                let seq = self.plan.in_flight().unwrap_or(0);
                self.fail(format!(
                    "commit of batch {seq} still in flight after {} s: the disk hangs",
                    COMMIT_STALL_MAX_MS / 1000
                ));
            }
        }
    }

    /// The end of a turn: runs started go out together, the next batch
    /// forms, and the driver learns when to wake the core and how much room
    /// the lease keeper has.
    fn turn_end(&mut self) {
        self.send_starts();
        self.send_batch();
        let room = self.config.shared().then(|| {
            self.config
                .sched
                .open_tasks_max
                .saturating_sub(self.sched.tasks_held())
        });
        if room.is_some() && room != self.claim_room {
            self.claim_room = room;
            self.out.push(Effect::ClaimRoom {
                room: room.unwrap_or(0),
            });
        }
        let wake = self.next_wake_ms();
        if Some(wake) != self.wake_at {
            self.wake_at = Some(wake);
            self.out.push(Effect::WakeAt { at_ms: wake });
        }
    }

    /// When the core next has timed work: the scheduler, retention, or the
    /// stall check.
    fn next_wake_ms(&self) -> u64 {
        let mut at = self.next_expire_ms;
        if let Some(due) = self.sched.next_wakeup_ms() {
            at = at.min(due);
        }
        if let Some(since) = self.in_flight_since_ms {
            at = at.min(since.saturating_add(COMMIT_STALL_MAX_MS));
        }
        at
    }

    /// Holds an answer for the next batch, or refuses it when the store failed.
    fn hold(&mut self, held: Held) {
        if let Err((held, failed)) = self.plan.hold(held) {
            self.out.push(held.refusal(&failed.0));
        }
    }

    /// Sends `answer` to `request`.
    fn answer(&mut self, request: RequestId, answer: Answer) {
        self.out.push(Effect::Answer {
            request,
            answer: Box::new(answer),
        });
    }

    /// A store read failed. Out of reach (transient): this request is refused
    /// with 503 and the gateway goes on. Anything else: the disk may no
    /// longer hold what it says, so the core fail-stops.
    fn read_failed(&mut self, e: StoreError) -> ApiError {
        if e.is_transient() {
            return ApiError::Busy(format!("the task store cannot be reached: {e}"));
        }
        let cause = format!("store read failed: {e}");
        self.fail(cause.clone());
        ApiError::Storage(cause)
    }

    /// Asks the driver to read the store for `pending`.
    fn read(&mut self, read: Read, pending: Pending) -> ReadId {
        let id = ReadId(self.next_read);
        self.next_read += 1;
        self.reads.insert(id, pending);
        self.out.push(Effect::ReadStore { id, read });
        id
    }
}
