//! The gateway core: one task on the node's RPC thread that owns the scheduler,
//! the store and the worker pool. HTTP handlers reach it through a bounded
//! command queue; runs report back through an internal queue. Every scheduler
//! effect is carried out here: `TaskChanged` is persisted before the command that
//! caused it is answered, so an acknowledged task is never lost. Run outcomes
//! (`Settled`) are written without an fsync, but a read that would show one waits
//! for the fsync first, so a result once shown is never taken back by a crash.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::{mpsc, oneshot};

pub use super::commands::{Command, ModuleInput, NewTask};
use super::pool::{Pool, PoolEvent};
use super::runner::run_on_worker;
use super::ApiError;
use crate::cluster::{Membership, Query, ViewEvent};
use crate::sched::{
    Effect, Run, RunOutcome, SchedConfig, Scheduler, Store, Task, TaskId, TaskSpec, TaskWrite,
};

mod submit;

/// Commands waiting for the core; handlers wait beyond this.
pub const COMMAND_QUEUE_MAX: usize = 256;
/// Stdout kept per run.
pub const RUN_STDOUT_MAX: usize = 64 * 1024;

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
    /// Scheduler tuning and seed.
    pub sched: SchedConfig,
    /// Largest module accepted.
    pub module_bytes_max: usize,
}

/// The milliseconds clock the scheduler runs on (wall clock on real hosts, so
/// stored times survive a restart; virtual time in simulations).
pub type Clock = Rc<dyn Fn() -> u64>;

/// The core's state.
pub struct Core {
    sched: Scheduler,
    store: Store,
    pool: Pool,
    clock: Clock,
    config: CoreConfig,
    membership: Option<Rc<Membership>>,
    running: BTreeMap<(TaskId, u32, u32), tokio::task::JoinHandle<()>>,
    done_sender: mpsc::Sender<RunDone>,
    done: mpsc::Receiver<RunDone>,
    generated: u64,
    /// Tasks changed since the last flush, written together in one commit.
    dirty: BTreeSet<TaskId>,
    /// Whether the next flush must wait for the fsync (a submission or cancel
    /// is waiting for its answer, or a read is about to show a run outcome).
    durable: bool,
    /// Answers held back until the changes they acknowledge are on disk.
    deferred: Vec<Deferred>,
    /// Module bytes by hash, so starting a run does not read the store.
    modules: BTreeMap<[u8; 32], Rc<Vec<u8>>>,
    /// Tasks with a run outcome written but not yet fsynced: reading one makes
    /// the next flush durable.
    unsynced_outcomes: BTreeSet<TaskId>,
    /// Per task and run index, what the store holds: a flush writes the header
    /// and only the runs that differ (a final run never changes again).
    stored_runs: BTreeMap<TaskId, Vec<StoredRun>>,
    /// When non-durable writes were first left unsynced, if any are.
    unsynced_since: Option<tokio::time::Instant>,
    /// Tasks the `LoseAckedTask` sabotage keeps out of the store.
    #[cfg(feature = "sabotage")]
    sabotaged: BTreeSet<TaskId>,
}

/// An answer held until the flush that ends its batch: what it shows is then
/// written, and durable when a crash must not take it back (see `Core::flush`).
enum Deferred {
    Submit(
        oneshot::Sender<Result<(Task, bool), ApiError>>,
        Result<(Task, bool), ApiError>,
    ),
    Cancel(
        oneshot::Sender<Result<Task, ApiError>>,
        Result<Task, ApiError>,
    ),
    Get(oneshot::Sender<Option<Task>>, Option<Task>),
    List(oneshot::Sender<Vec<Task>>, Vec<Task>),
}

impl Deferred {
    /// Sends the answer, or `failure` instead of an acknowledgement when the
    /// flush failed (reads are answered either way: they acknowledge nothing).
    fn send(self, failure: Option<&str>) {
        let refused = |what: &str| ApiError::Internal(format!("not persisted: {what}"));
        match (self, failure) {
            (Deferred::Submit(reply, _), Some(e)) => drop(reply.send(Err(refused(e)))),
            (Deferred::Submit(reply, result), None) => drop(reply.send(result)),
            (Deferred::Cancel(reply, _), Some(e)) => drop(reply.send(Err(refused(e)))),
            (Deferred::Cancel(reply, result), None) => drop(reply.send(result)),
            (Deferred::Get(reply, task), _) => drop(reply.send(task)),
            (Deferred::List(reply, tasks), _) => drop(reply.send(tasks)),
        }
    }
}

/// What the store holds of one run, as the core last wrote or loaded it.
enum StoredRun {
    /// Not written yet.
    Unwritten,
    /// Written in this non-final state, which may still change.
    Open(Box<Run>),
    /// Written final: it never changes again, so no copy is kept.
    Final,
}

impl StoredRun {
    fn of(run: &Run) -> Self {
        if run.status.is_final() {
            StoredRun::Final
        } else {
            StoredRun::Open(Box::new(run.clone()))
        }
    }

    /// Whether the store already holds `run` as it is now.
    fn holds(&self, run: &Run) -> bool {
        match self {
            StoredRun::Unwritten => false,
            StoredRun::Open(stored) => **stored == *run,
            StoredRun::Final => true,
        }
    }
}

/// Commands and run results handled before one flush: bounds the batch (and so
/// the latency of the first answer in it).
pub const FLUSH_BATCH_MAX: usize = 256;
/// The longest non-durable writes (run progress) stay unsynced: what a crash
/// can lose is at most this much progress, which is then redone (at-least-once).
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);
/// Module bytes kept in the core's cache.
pub const MODULE_CACHE_MAX: usize = 64;

pub(super) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

impl Core {
    /// Restores the scheduler from the store: unfinished tasks resume, and runs
    /// that were in flight at the last stop are retried (at-least-once).
    pub fn restore(
        store: Store,
        pool: Pool,
        clock: Clock,
        config: CoreConfig,
        membership: Option<Rc<Membership>>,
    ) -> Result<Self, ApiError> {
        let tasks = store.tasks().map_err(internal)?;
        let restored = tasks.len();
        // What was loaded is what is stored.
        let stored_runs = tasks
            .iter()
            .map(|t| {
                (
                    t.spec.id.clone(),
                    t.runs.iter().map(StoredRun::of).collect(),
                )
            })
            .collect();
        let (sched, effects) = Scheduler::restore(config.sched.clone(), clock(), tasks);
        tracing::info!(tasks = restored, "scheduler restored from the store");
        let (done_sender, done) = mpsc::channel(4096);
        let mut core = Core {
            sched,
            store,
            pool,
            clock,
            config,
            membership,
            running: BTreeMap::new(),
            done_sender,
            done,
            generated: 0,
            dirty: BTreeSet::new(),
            durable: false,
            deferred: Vec::new(),
            modules: BTreeMap::new(),
            unsynced_outcomes: BTreeSet::new(),
            stored_runs,
            unsynced_since: None,
            #[cfg(feature = "sabotage")]
            sabotaged: BTreeSet::new(),
        };
        core.apply(effects);
        core.flush();
        Ok(core)
    }

    /// Serves commands, run results, pool changes and timers until the command
    /// queue closes.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut view_events = self.membership.as_ref().map(|m| m.watch());
        loop {
            let now = (self.clock)();
            let mut wake = self
                .sched
                .next_wakeup_ms()
                .map(|at| Duration::from_millis(at.saturating_sub(now)))
                .unwrap_or(Duration::from_secs(3600));
            if let Some(since) = self.unsynced_since {
                wake = wake.min(
                    (since + SYNC_INTERVAL).saturating_duration_since(tokio::time::Instant::now()),
                );
            }
            tokio::select! {
                biased;
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
                        if self.pool.remove(&peer.to_string()) {
                            let effects = self.sched.worker_lost((self.clock)(), &peer.to_string());
                            self.apply(effects);
                        }
                    }
                }
                _ = tokio::time::sleep(wake) => {
                    let effects = self.sched.tick((self.clock)());
                    self.apply(effects);
                }
            }
            // Group commit: take whatever else is already waiting, then write all
            // the changes in one transaction before answering any of them.
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
            self.flush();
        }
    }

    fn run_done(&mut self, done: RunDone) {
        self.running
            .remove(&(done.task.clone(), done.index, done.attempt));
        let effects = self.sched.run_finished(
            (self.clock)(),
            &done.task,
            done.index,
            done.attempt,
            done.outcome,
        );
        self.apply(effects);
    }

    /// Writes every changed task in one commit (durable when an answer waits on
    /// it), then sends the answers that were held back.
    fn flush(&mut self) {
        // Progress left unsynced too long rides on this commit, or gets its own.
        let overdue = self
            .unsynced_since
            .is_some_and(|since| since.elapsed() >= SYNC_INTERVAL);
        self.durable |= overdue;
        let unsynced_write = !self.durable && !self.dirty.is_empty();
        let written = if !self.dirty.is_empty() {
            #[cfg(feature = "sabotage")]
            self.dirty.retain(|id| !self.sabotaged.contains(id));
            let writes: Vec<TaskWrite<'_>> = self
                .dirty
                .iter()
                .filter_map(|id| self.sched.task(id))
                .map(|task| {
                    let stored = self.stored_runs.get(&task.spec.id);
                    let runs = task
                        .runs
                        .iter()
                        .filter(|r| {
                            let held = stored.and_then(|s| s.get(r.index as usize));
                            !held.is_some_and(|h| h.holds(r))
                        })
                        .collect();
                    TaskWrite { task, runs }
                })
                .collect();
            let written = self.store.put_changes(&writes, self.durable);
            match &written {
                Ok(()) => {
                    for write in &writes {
                        let id = write.task.spec.id.clone();
                        let stored = self.stored_runs.entry(id).or_default();
                        stored.resize_with(write.task.runs.len(), || StoredRun::Unwritten);
                        for run in &write.runs {
                            stored[run.index as usize] = StoredRun::of(run);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(tasks = writes.len(), error = %e, "tasks not persisted");
                }
            }
            self.dirty.clear();
            written
        } else if self.durable && self.unsynced_since.is_some() {
            // Nothing new, but earlier unsynced writes must become durable now.
            let synced = self.store.sync();
            if let Err(e) = &synced {
                tracing::error!(error = %e, "store sync failed");
            }
            synced
        } else {
            Ok(())
        };
        match written {
            Ok(()) if self.durable => {
                self.unsynced_since = None;
                self.unsynced_outcomes.clear();
            }
            Ok(()) if unsynced_write => {
                self.unsynced_since
                    .get_or_insert_with(tokio::time::Instant::now);
            }
            Ok(()) => {}
            Err(e) => {
                let failure = e.to_string();
                for deferred in self.deferred.drain(..) {
                    deferred.send(Some(&failure));
                }
            }
        }
        self.durable = false;
        for deferred in self.deferred.drain(..) {
            deferred.send(None);
        }
    }

    fn pool_event(&mut self, event: PoolEvent) {
        let now = (self.clock)();
        let effects = match event {
            PoolEvent::Joined { worker, slots } => {
                tracing::info!(%worker, slots, "worker joined the pool");
                self.sched.worker_joined(now, &worker, slots)
            }
            PoolEvent::Left { worker, reason } => {
                tracing::info!(%worker, %reason, "worker left the pool");
                self.sched.worker_lost(now, &worker)
            }
        };
        self.apply(effects);
    }

    /// Carries out scheduler effects.
    fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::TaskChanged(id) => {
                    self.dirty.insert(id);
                }
                Effect::Settled(id) => {
                    #[cfg(feature = "sabotage")]
                    if crate::sabotage::armed(crate::sabotage::Sabotage::ShowUnsyncedResults) {
                        continue;
                    }
                    // Written without an fsync; a read that would show it waits for one.
                    self.unsynced_outcomes.insert(id);
                }
                Effect::StartRun {
                    task,
                    index,
                    attempt,
                    worker,
                    spec,
                } => self.start_run(task, index, attempt, worker, spec),
                Effect::StopRun {
                    task,
                    index,
                    attempt,
                    worker,
                } => {
                    // Dropping the call cancels it on the worker, which stops the run.
                    if let Some(handle) = self.running.remove(&(task.clone(), index, attempt)) {
                        handle.abort();
                        tracing::debug!(%task, index, attempt, %worker, "run stopped");
                    }
                }
            }
        }
    }

    fn start_run(
        &mut self,
        task: TaskId,
        index: u32,
        attempt: u32,
        worker: String,
        spec: TaskSpec,
    ) {
        let done = self.done_sender.clone();
        // Failing before any call still reports through the queue, so the
        // scheduler hears every attempt's end the same way.
        let fail_now = |outcome: RunOutcome| {
            let _ = done.try_send(RunDone {
                task: task.clone(),
                index,
                attempt,
                outcome,
            });
        };
        let Some(client) = self.pool.client(&worker) else {
            fail_now(RunOutcome::TransportFailed {
                message: format!("worker {worker} is not in the pool"),
            });
            return;
        };
        let cached = self.modules.get(&spec.module_hash).cloned();
        let module = match cached
            .map(Ok)
            .unwrap_or_else(|| self.load_module(&spec.module_hash))
        {
            Ok(bytes) => bytes,
            Err(other) => {
                fail_now(RunOutcome::TaskFailed {
                    kind: "unknown_module".into(),
                    message: format!("module missing from the store: {other:?}"),
                    stdout: String::new(),
                    fuel_used: 0,
                });
                return;
            }
        };
        let key = (task.clone(), index, attempt);
        let handle = tokio::task::spawn_local(async move {
            let outcome = run_on_worker(&client, &spec, module).await;
            let _ = done
                .send(RunDone {
                    task,
                    index,
                    attempt,
                    outcome,
                })
                .await;
        });
        self.running.insert(key, handle);
    }

    /// Reads a module from the store into the cache.
    fn load_module(&mut self, hash: &[u8; 32]) -> Result<Rc<Vec<u8>>, String> {
        match self.store.module(hash) {
            Ok(Some(bytes)) => {
                if self.modules.len() >= MODULE_CACHE_MAX {
                    self.modules.pop_first();
                }
                let bytes = Rc::new(bytes);
                self.modules.insert(*hash, bytes.clone());
                Ok(bytes)
            }
            Ok(None) => Err("not in the store".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn handle(&mut self, command: Command) {
        match command {
            Command::Submit {
                task,
                idempotency_key,
                reply,
            } => {
                let result = self.submit(task, idempotency_key);
                if result.is_ok() {
                    // A 201 waits for the fsync: an acknowledged task is never lost.
                    // A repeat (200) waits too: its first submission may be in
                    // this very batch.
                    self.durable = true;
                    self.deferred.push(Deferred::Submit(reply, result));
                } else {
                    let _ = reply.send(result);
                }
            }
            Command::List {
                status,
                offset,
                limit,
                reply,
            } => {
                let tasks = self
                    .sched
                    .tasks()
                    .filter(|t| status.is_none_or(|s| t.status == s))
                    .skip(offset)
                    .take(limit)
                    .cloned()
                    .collect::<Vec<Task>>();
                // Reads wait for the flush, durable if they show an outcome not yet
                // fsynced: a result once shown survives a crash.
                self.durable |= tasks
                    .iter()
                    .any(|t| self.unsynced_outcomes.contains(&t.spec.id));
                self.deferred.push(Deferred::List(reply, tasks));
            }
            Command::Get { id, reply } => {
                self.durable |= self.unsynced_outcomes.contains(&id);
                let task = self.sched.task(&id).cloned();
                self.deferred.push(Deferred::Get(reply, task));
            }
            Command::Cancel { id, reply } => {
                let result = match self.sched.cancel((self.clock)(), &id) {
                    Ok(effects) => {
                        // Answered only after the flush: a cancel survives a restart.
                        self.apply(effects);
                        self.durable = true;
                        self.sched
                            .task(&id)
                            .cloned()
                            .ok_or_else(|| ApiError::NotFound(format!("no task {:?}", id.0)))
                    }
                    Err(crate::sched::SchedError::NotFound { .. }) => {
                        Err(ApiError::NotFound(format!("no task {:?}", id.0)))
                    }
                    Err(e) => Err(ApiError::BadRequest(e.to_string())),
                };
                if result.is_ok() {
                    self.deferred.push(Deferred::Cancel(reply, result));
                } else {
                    let _ = reply.send(result);
                }
            }
            Command::PutModule { bytes, reply } => {
                let _ = reply.send(self.put_module(&bytes));
            }
            Command::Workers { reply } => {
                let rows = self
                    .sched
                    .workers()
                    .into_iter()
                    .map(|w| json!({ "worker": w.worker, "slots": w.slots, "in_flight": w.in_flight }))
                    .collect();
                let _ = reply.send(rows);
            }
            Command::Cluster { reply } => {
                let rows = match &self.membership {
                    None => Vec::new(),
                    Some(membership) => {
                        let now = membership.now_ms();
                        membership
                            .view(&Query::all())
                            .iter()
                            .map(|r| {
                                let meta: BTreeMap<_, _> =
                                    r.heartbeat.meta().iter().cloned().collect();
                                json!({
                                    "peer": r.peer.to_string(),
                                    "host": r.heartbeat.host(),
                                    "instance": r.heartbeat.instance_hex(),
                                    "meta": meta,
                                    "expires_in_ms": r.deadline_ms.saturating_sub(now),
                                })
                            })
                            .collect()
                    }
                };
                let _ = reply.send(rows);
            }
        }
    }
}
