//! The gateway core: one task on the node's thread that owns the scheduler (the
//! unfinished tasks), the worker pool and the commit pipeline. HTTP handlers
//! send it commands through a bounded queue; runs report back through a queue
//! whose length is bounded by the runs in flight.
//!
//! Every change goes to the store through the planner (`plan.rs`): the core
//! handles an event and whatever else is waiting, then forms a batch and sends
//! it to the committer (`commit.rs`), which commits it durably on its own
//! thread while the core goes on. An answer that acknowledges something
//! (submit, cancel, purge, upload) is held until the batch formed after it
//! commits, and is rendered from the store, so it shows only committed state.
//! Reads do not come here: handlers read the store, which holds only commits.
//!
//! A failed commit trips the gateway's [`Health`]: held answers are refused
//! with 503 and nothing is acknowledged again; whoever runs the gateway exits.

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use super::commands::{Acked, Command, HealthReport, ModuleInput, NewTask};
pub use commit::StorageMode;
pub use plan::{Formed, PlanFailed, Planner, Released, RunEnded, RunWritten};

use super::events::EventBus;
use super::health::Health;
use super::metrics::{GatewayMetrics, MetricsSnapshot};
use super::pool::Pool;
use super::views::{MemberRow, WorkerRow};
use super::ApiError;
use crate::sched::{
    Op, RunOutcome, SchedConfig, Scheduler, Store, StoreError, TaskHeader, TaskId, TaskStatus,
    WorkerId,
};
use commit::Committer;
use modules::Modules;
use ww::cluster::{Membership, Query, ViewEvent};

mod commit;
mod modules;
mod pipeline;
mod plan;
mod runs;
mod shared;
mod submit;

/// Commands waiting for the core; handlers wait beyond this.
pub const COMMAND_QUEUE_MAX: usize = 256;
/// Commands and run results handled before a batch forms: bounds the batch.
pub const FLUSH_BATCH_MAX: usize = 256;
/// A commit in flight longer than this counts as failed (a hung disk).
pub const COMMIT_STALL_MAX: Duration = Duration::from_secs(30);
/// How often retention runs by default (and more often while it has a backlog).
pub const EXPIRE_INTERVAL_MS: u64 = 10_000;

/// Most tasks owned but not held that one page of a comparison takes up
/// (each is read on the core's thread, a few round trips); the rest wait for
/// the next comparison.
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
pub const CANCEL_ELSEWHERE_WAIT: Duration = Duration::from_secs(20);

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

/// How a run attempt ended, as the runner reports it.
struct RunDone {
    task: TaskId,
    index: u32,
    attempt: u32,
    outcome: RunOutcome,
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
    /// Where commits run.
    pub storage: StorageMode,
    /// Put into generated task ids on a shared store (a tag of this gateway's
    /// peer id and its lease epoch), so two gateways, or two lives of one,
    /// never generate the same one.
    pub id_tag: Option<String>,
}

/// The milliseconds clock the scheduler runs on. It must never step back or
/// jump (run deadlines are measured on it): on real hosts it is the wall clock
/// read once at start, advanced by a monotonic clock, so stored times are
/// wall-clock times and a step of the system clock times out nothing; in
/// simulations it is virtual time.
pub type Clock = Rc<dyn Fn() -> u64>;

/// An answer held until the batch formed after it commits.
enum Held {
    Submit {
        reply: oneshot::Sender<Result<Acked, ApiError>>,
        id: TaskId,
        created: bool,
    },
    Cancel {
        reply: oneshot::Sender<Result<TaskHeader, ApiError>>,
        id: TaskId,
    },
    Purge {
        reply: oneshot::Sender<Result<(), ApiError>>,
        id: TaskId,
    },
    Module {
        reply: oneshot::Sender<Result<[u8; 32], ApiError>>,
        hash: [u8; 32],
    },
}

impl Held {
    /// Refuses the answer: what it would acknowledge may not be on disk.
    fn refuse(self, cause: &str) {
        let error = || ApiError::Storage(format!("not acknowledged: {cause}"));
        match self {
            Held::Submit { reply, .. } => drop(reply.send(Err(error()))),
            Held::Cancel { reply, .. } => drop(reply.send(Err(error()))),
            Held::Purge { reply, .. } => drop(reply.send(Err(error()))),
            Held::Module { reply, .. } => drop(reply.send(Err(error()))),
        }
    }
}

/// Answers 503 to a command that would need acknowledging while the store is
/// out of reach (nothing of it is applied); hands any other command back.
fn refuse_while_unreachable(command: Command) -> Option<Command> {
    let busy = || {
        ApiError::Busy(
            "the task store cannot be reached; nothing was acknowledged: retry shortly".into(),
        )
    };
    match command {
        Command::Submit { reply, .. } => drop(reply.send(Err(busy()))),
        Command::Cancel { reply, .. } => drop(reply.send(Err(busy()))),
        Command::Purge { reply, .. } => drop(reply.send(Err(busy()))),
        Command::PutModule { reply, .. } => drop(reply.send(Err(busy()))),
        other => return Some(other),
    }
    None
}

pub(super) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

impl Core {
    /// A store read failed: the disk may no longer hold what it says, so the
    /// gateway fail-stops (the health switch stops the core on its next turn)
    /// and the request is refused with 503.
    pub(super) fn read_failed(&self, e: StoreError) -> ApiError {
        if e.is_transient() {
            // Out of reach, not wrong: refuse this request, keep going.
            return ApiError::Busy(format!("the task store cannot be reached: {e}"));
        }
        let cause = format!("store read failed: {e}");
        self.health.trip(cause.clone());
        ApiError::Storage(cause)
    }
}

/// The core's state.
pub struct Core {
    sched: Scheduler,
    store: Arc<Store>,
    plan: Planner<Held>,
    committer: Committer,
    /// When the batch in flight was sent.
    in_flight_since: Option<tokio::time::Instant>,
    commits: u64,
    pool: Pool,
    clock: Clock,
    config: CoreConfig,
    health: Arc<Health>,
    metrics: Arc<GatewayMetrics>,
    /// Where committed changes and pool changes are announced.
    events: Arc<EventBus>,
    /// When each worker in the pool joined (clock ms).
    joined: BTreeMap<WorkerId, u64>,
    membership: Option<Rc<Membership>>,
    /// The call carrying each run in flight (several runs may share one).
    running: BTreeMap<(TaskId, u32, u32), Rc<runs::RunCall>>,
    /// Runs started this turn, sent together when it ends.
    starts: Vec<runs::Start>,
    /// Run results; at most one per attempt in flight, so bounded by the pool's slots.
    done_sender: mpsc::UnboundedSender<RunDone>,
    done: mpsc::UnboundedReceiver<RunDone>,
    /// Attempts that failed before any call (no worker, no module).
    failed_at_start: VecDeque<RunDone>,
    generated: u64,
    modules: Modules,
    /// Idempotency keys of the tasks held in memory (the store has the rest).
    keys: BTreeMap<String, TaskId>,
    /// When retention runs next (clock ms).
    next_expire_ms: u64,
    /// On a shared store: until when runs may start (the lease window).
    act_until: Option<super::shared::ActUntil>,
    /// On a shared store: how many more tasks this gateway may take over
    /// (`open_tasks_max` less those held), kept for the lease keeper.
    claim_room: Option<super::shared::ClaimRoom>,
    /// Cancels of other gateways' tasks waiting to be applied.
    cancels_waiting: Rc<std::cell::Cell<usize>>,
}

impl Core {
    /// Restores the unfinished tasks from the store (runs that were in flight at
    /// the last stop are retried: at-least-once) and starts the committer.
    #[allow(clippy::too_many_arguments)]
    pub fn restore(
        store: Arc<Store>,
        pool: Pool,
        clock: Clock,
        config: CoreConfig,
        membership: Option<Rc<Membership>>,
        health: Arc<Health>,
        metrics: Arc<GatewayMetrics>,
        events: Arc<EventBus>,
    ) -> Result<Self, StoreError> {
        // On a shared store, only the tasks this gateway now owns: those of
        // gateways whose leases expired (and its own previous epoch's).
        let tasks = match store.shared() {
            Some(shared) => shared.claim(config.sched.open_tasks_max)?,
            None => store.open_tasks()?,
        };
        let modules = Modules::new(store.module_refs()?);
        let keys = tasks
            .iter()
            .filter_map(|t| Some((t.spec.idempotency_key.clone()?, t.spec.id.clone())))
            .collect();
        let plan = Planner::new(&tasks);
        let restored = tasks.len();
        let now_ms = clock();
        let (sched, effects) = Scheduler::restore(config.sched.clone(), now_ms, tasks);
        tracing::info!(
            tasks = restored,
            modules = modules.count(),
            "unfinished tasks restored from the store"
        );
        let committer =
            Committer::start(store.clone(), config.storage, metrics.clone()).map_err(|e| {
                StoreError::Corrupt {
                    what: "commit thread".into(),
                    reason: format!("not started: {e}"),
                }
            })?;
        let (done_sender, done) = mpsc::unbounded_channel();
        let mut core = Core {
            sched,
            store,
            plan,
            committer,
            in_flight_since: None,
            commits: 0,
            pool,
            clock,
            config,
            health,
            metrics,
            events,
            joined: BTreeMap::new(),
            membership,
            running: BTreeMap::new(),
            starts: Vec::new(),
            done_sender,
            done,
            failed_at_start: VecDeque::new(),
            generated: 0,
            modules,
            keys,
            next_expire_ms: now_ms,
            act_until: None,
            claim_room: None,
            cancels_waiting: Rc::default(),
        };
        core.apply(effects);
        core.send_starts();
        core.send_batch();
        Ok(core)
    }

    /// Serves commands, commit results, run results, pool changes and timers
    /// until the command queue closes.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut view_events = self.membership.as_ref().map(|m| m.watch());
        loop {
            let wake = self.next_wake();
            tokio::select! {
                biased;
                (seq, result) = self.committer.result() => self.commit_done(seq, result),
                command = commands.recv() => match command {
                    Some(command) => self.handle(command),
                    None => return,
                },
                Some(done) = self.done.recv() => self.run_done(done),
                event = self.pool.next_event() => self.pool_event(event),
                Some(event) = async {
                    match view_events.as_mut() {
                        Some(events) => events.next().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let ViewEvent::Left { peer, .. } = event {
                        // A worker that left the membership view leaves the pool.
                        let worker = WorkerId::from(peer);
                        if self.pool.remove(&worker) {
                            self.worker_left(worker.clone(), "left the membership view".into());
                            let effects = self.sched.worker_lost((self.clock)(), &worker);
                            self.apply(effects);
                        }
                    }
                }
                _ = tokio::time::sleep(wake) => self.tick(),
            }
            // Take whatever else is already waiting into the same batch.
            for _ in 0..FLUSH_BATCH_MAX {
                let Ok(command) = commands.try_recv() else {
                    break;
                };
                self.handle(command);
            }
            for _ in 0..FLUSH_BATCH_MAX {
                let Ok(done) = self.done.try_recv() else {
                    break;
                };
                self.run_done(done);
            }
            // Runs started this turn go out together; any that could not
            // start end at once, which may start others.
            loop {
                self.send_starts();
                let Some(done) = self.failed_at_start.pop_front() else {
                    break;
                };
                self.run_done(done);
                while let Some(done) = self.failed_at_start.pop_front() {
                    self.run_done(done);
                }
            }
            // A handler's failed read trips the switch too: stop here as well.
            if let (Some(cause), None) = (self.health.fatal(), self.plan.failure()) {
                let cause = cause.to_string();
                self.fail(cause);
            }
            self.send_batch();
            self.update_claim_room();
        }
    }

    /// How long the core may sleep: until the scheduler, retention or the
    /// stall check next has work.
    fn next_wake(&self) -> Duration {
        let now = (self.clock)();
        let mut at = self.next_expire_ms;
        if let Some(due) = self.sched.next_wakeup_ms() {
            at = at.min(due);
        }
        let mut wake = Duration::from_millis(at.saturating_sub(now));
        if let Some(since) = self.in_flight_since {
            wake = wake.min(
                (since + COMMIT_STALL_MAX).saturating_duration_since(tokio::time::Instant::now()),
            );
        }
        wake
    }

    fn tick(&mut self) {
        let now = (self.clock)();
        let effects = self.sched.tick(now);
        self.apply(effects);
        if now >= self.next_expire_ms {
            self.expire(now);
        }
        if let Some(since) = self.in_flight_since {
            if since.elapsed() >= COMMIT_STALL_MAX {
                let seq = self.plan.in_flight().unwrap_or(0);
                self.fail(format!(
                    "commit of batch {seq} still in flight after {} s: the disk hangs",
                    COMMIT_STALL_MAX.as_secs()
                ));
            }
        }
    }

    fn health_report(&mut self) -> HealthReport {
        let finished_tasks = match self.store.finished_count() {
            Ok(count) => count,
            Err(e) => {
                self.fail(format!("store read failed: {e}"));
                0
            }
        };
        let failed = self.plan.failure().map(str::to_string);
        HealthReport {
            status: if failed.is_some() { "failed" } else { "ok" },
            store_error: failed,
            commit_in_flight_ms: self
                .in_flight_since
                .map(|since| u64::try_from(since.elapsed().as_millis()).unwrap_or(u64::MAX)),
            commits: self.commits,
            open_tasks: self.sched.tasks_held(),
            modules: self.modules.count(),
            finished_tasks,
            workers: self.sched.workers().len(),
        }
    }

    /// The levels a scrape shows, as the core knows them now.
    fn metrics_snapshot(&mut self) -> MetricsSnapshot {
        let mut snapshot = MetricsSnapshot::default();
        for task in self.sched.tasks() {
            match task.status {
                TaskStatus::Pending => snapshot.tasks_pending += 1,
                TaskStatus::Running => snapshot.tasks_running += 1,
                // Final, being stored: not yet in the store's count (it is
                // forgotten on the same turn as the commit that counts it).
                _ => snapshot.tasks_finished += 1,
            }
        }
        snapshot.tasks_finished += match self.store.finished_count() {
            Ok(count) => count,
            Err(e) => {
                self.fail(format!("store read failed: {e}"));
                0
            }
        };
        for worker in self.sched.workers() {
            let (slots, busy) = (u64::from(worker.slots), u64::from(worker.in_flight));
            snapshot.workers += 1;
            snapshot.slots_busy += busy.min(slots);
            snapshot.slots_free += slots.saturating_sub(busy);
        }
        if let Some(membership) = &self.membership {
            let peers = membership.view(&Query::all()).len() as u64;
            snapshot.membership = Some((peers, membership.stats()));
            snapshot.discovery = Some(membership.discovery_stats());
        }
        snapshot
    }

    fn handle(&mut self, command: Command) {
        // While the store is out of reach a commit is being retried: nothing
        // new is taken that would need acknowledging (it could not be).
        let command = if self.committer.unreachable() {
            match refuse_while_unreachable(command) {
                Some(command) => command,
                None => return,
            }
        } else {
            command
        };
        match command {
            Command::Submit {
                task,
                idempotency_key,
                reply,
            } => match self.submit(task, idempotency_key) {
                Ok((id, created)) => self.hold(Held::Submit { reply, id, created }),
                Err(e) => drop(reply.send(Err(e))),
            },
            Command::Cancel { id, reply } => {
                if self.sched.task(&id).is_some() {
                    match self.sched.cancel((self.clock)(), &id) {
                        Ok(effects) => {
                            self.apply(effects);
                            self.hold(Held::Cancel { reply, id });
                        }
                        Err(e) => drop(reply.send(Err(ApiError::BadRequest(e.to_string())))),
                    }
                } else {
                    // Not held: finished (cancelling changes nothing), unknown,
                    // or another gateway's (a shared store: asked of its owner).
                    let answer = match self.store.header(&id) {
                        Ok(Some(header))
                            if !header.status.is_final() && self.store.shared().is_some() =>
                        {
                            return self.cancel_elsewhere(id, reply);
                        }
                        Ok(Some(header)) => Ok(header),
                        Ok(None) => Err(ApiError::NotFound(format!("no task {:?}", id.as_str()))),
                        Err(e) => Err(self.read_failed(e)),
                    };
                    let _ = reply.send(answer);
                }
            }
            Command::Purge { id, reply } => match self.sched.task(&id) {
                // Its final state is still being written: a purge now would be
                // ordered before that write.
                Some(task) if task.status.is_final() => {
                    let _ = reply.send(Err(ApiError::Conflict(format!(
                        "task {:?} has just finished and is being stored; purge it in a moment",
                        id.as_str()
                    ))));
                }
                Some(task) => {
                    let _ = reply.send(Err(ApiError::Conflict(format!(
                        "task {:?} is {:?}, not finished; cancel it and purge it once final",
                        id.as_str(),
                        task.status
                    ))));
                }
                None => {
                    self.plan.queue(Op::Purge {
                        id: id.clone(),
                        now_ms: (self.clock)(),
                    });
                    self.hold(Held::Purge { reply, id });
                }
            },
            Command::PutModule { bytes, reply } => match self.check_module(&bytes) {
                Ok(()) => {
                    let bytes = Arc::new(bytes);
                    let hash = ww::exec::ModuleHash::of(&bytes).0;
                    let now = (self.clock)();
                    self.modules.uploaded(hash, bytes.clone(), now);
                    self.plan.queue(Op::PutModule {
                        hash,
                        bytes,
                        now_ms: now,
                    });
                    self.hold(Held::Module { reply, hash });
                }
                Err(e) => drop(reply.send(Err(e))),
            },
            Command::Workers { reply } => {
                let rows = self
                    .sched
                    .workers()
                    .into_iter()
                    .map(|w| WorkerRow {
                        joined_ms: self.joined.get(&w.worker).copied(),
                        worker: w.worker,
                        slots: w.slots,
                        in_flight: w.in_flight,
                    })
                    .collect();
                let _ = reply.send(rows);
            }
            Command::Cluster { reply } => {
                let _ = reply.send(self.cluster_rows());
            }
            Command::Health { reply } => {
                let _ = reply.send(self.health_report());
            }
            Command::Metrics { reply } => {
                let _ = reply.send(self.metrics_snapshot());
            }
            Command::Adopt { tasks } => self.adopt(tasks),
            Command::Owned { ids } => self.take_up_owned(ids),
            Command::CancelAsked { id } => self.cancel_asked(&id),
        }
    }

    /// Holds an answer for the next batch, or refuses it when the store failed.
    fn hold(&mut self, held: Held) {
        if let Err((held, failed)) = self.plan.hold(held) {
            held.refuse(&failed.0);
        }
    }

    fn cluster_rows(&self) -> Vec<MemberRow> {
        let Some(membership) = &self.membership else {
            return Vec::new();
        };
        let now = membership.now_ms();
        membership
            .view(&Query::all())
            .iter()
            .map(|r| {
                let meta: BTreeMap<_, _> = r.heartbeat.meta().iter().cloned().collect();
                MemberRow {
                    peer: r.peer.to_string(),
                    host: r.heartbeat.host().to_string(),
                    instance: r.heartbeat.instance_hex(),
                    meta,
                    expires_in_ms: r.deadline_ms.saturating_sub(now),
                }
            })
            .collect()
    }
}
