//! The core's driver: one task on the node's thread that owns everything the
//! sans-IO [`Core`] must not: the command queue and the reply of every
//! request, the store (restored from at start, committed to by the committer
//! in `commit.rs`, read in `reads.rs`), the worker pool and the calls to
//! workers (`calls.rs`), the membership view, the clock, the timer, the
//! event bus and the health switch. It feeds the core every input with the
//! clock's time and carries out the effects it gets back.
//!
//! A turn: one event (biased: a commit result first, then read results,
//! commands, run ends, pool and membership changes, the timer), then
//! whatever else is already waiting (up to 256 commands and 256 run ends),
//! then [`Input::TurnEnd`], which sends the turn's runs and forms the next
//! batch.

use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use commit::StorageMode;

use super::{
    Acked, Answer, Clock, Command, Core, CoreConfig, Effect, HealthReport, Input, ReadId,
    ReadResult, Request, RequestId, RunKey, RunStart, FLUSH_BATCH_MAX,
};
use crate::gateway::events::EventBus;
use crate::gateway::health::Health;
use crate::gateway::lease_window::{ActUntil, ClaimRoom};
use crate::gateway::metrics::{GatewayMetrics, MetricsSnapshot};
use crate::gateway::pool::{Pool, PoolEvent};
use crate::gateway::views::{MemberRow, WorkerRow};
use crate::gateway::ApiError;
use crate::sched::{RunOutcome, Store, StoreError, TaskHeader, WorkerId};
use commit::Committer;
use ww::cluster::{Membership, Query, ViewEvent};

mod calls;
mod commit;
mod reads;

/// Where the answer to a request goes.
enum Reply {
    Submit(oneshot::Sender<Result<Acked, ApiError>>),
    Cancel(oneshot::Sender<Result<TaskHeader, ApiError>>),
    Purge(oneshot::Sender<Result<(), ApiError>>),
    Module(oneshot::Sender<Result<[u8; 32], ApiError>>),
    Workers(oneshot::Sender<Vec<WorkerRow>>),
    Health(oneshot::Sender<HealthReport>),
    Metrics(oneshot::Sender<Result<MetricsSnapshot, ApiError>>),
}

/// The core and everything it drives.
pub struct Driver {
    core: Core,
    clock: Clock,
    store: Arc<Store>,
    storage: StorageMode,
    committer: Committer,
    pool: Pool,
    calls: calls::Calls,
    membership: Option<Rc<Membership>>,
    health: Arc<Health>,
    events: Arc<EventBus>,
    replies: BTreeMap<RequestId, Reply>,
    next_request: u64,
    read_results: reads::Results,
    read_ends: mpsc::UnboundedReceiver<(ReadId, ReadResult)>,
    /// When the core asked to be woken (its clock).
    wake_at_ms: u64,
    /// Whether the core was last told the store answers.
    reachable: bool,
    /// Attempts that could not be called (their worker left the pool),
    /// handed back within the same turn.
    not_started: VecDeque<(RunKey, RunOutcome)>,
    /// On a shared store: until when runs may start (the lease window).
    act_until: Option<ActUntil>,
    /// On a shared store: how many more tasks the lease keeper may claim.
    claim_room: Option<ClaimRoom>,
}

impl Driver {
    /// Restores the unfinished tasks from the store (on a shared store, only
    /// those this gateway now owns: of gateways whose leases expired, and of
    /// its own previous epoch), starts the committer and the core.
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
        let tasks = match store.shared() {
            Some(shared) => shared.claim(config.sched.open_tasks_max)?,
            None => store.open_tasks()?,
        };
        let module_refs = store.module_refs()?;
        let committer =
            Committer::start(store.clone(), config.storage, metrics.clone()).map_err(|e| {
                StoreError::Corrupt {
                    what: "commit thread".into(),
                    reason: format!("not started: {e}"),
                }
            })?;
        let storage = config.storage;
        let calls = calls::Calls::new(config.report_check.clone());
        let now = clock();
        let (core, effects) = Core::new(config, tasks, module_refs, metrics, now);
        let (read_results, read_ends) = mpsc::unbounded_channel();
        let mut driver = Driver {
            core,
            clock,
            store,
            storage,
            committer,
            pool,
            calls,
            membership,
            health,
            events,
            replies: BTreeMap::new(),
            next_request: 1,
            read_results,
            read_ends,
            wake_at_ms: now,
            reachable: true,
            not_started: VecDeque::new(),
            act_until: None,
            claim_room: None,
        };
        driver.execute(effects);
        driver.hand_back_not_started();
        Ok(driver)
    }

    /// On a shared store: starts runs only within the lease window `until`
    /// says, and keeps `room` at the number of tasks it may still take over.
    pub fn on_shared_store(&mut self, until: ActUntil, room: ClaimRoom) {
        self.act_until = Some(until);
        room.set(
            self.core
                .config
                .sched
                .open_tasks_max
                .saturating_sub(self.core.sched.tasks_held()),
        );
        self.claim_room = Some(room);
    }

    /// Serves commands, commit and read results, run ends, pool changes and
    /// the timer until the command queue closes.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut view_events = self.membership.as_ref().map(|m| m.watch());
        loop {
            let wake = Duration::from_millis(self.wake_at_ms.saturating_sub((self.clock)()));
            tokio::select! {
                biased;
                (seq, result) = self.committer.result() => self.feed(Input::Committed { seq, result }),
                Some((id, result)) = self.read_ends.recv() => self.feed(Input::ReadDone { id, result }),
                command = commands.recv() => match command {
                    Some(command) => self.command(command),
                    None => return,
                },
                Some((run, outcome)) = self.calls.ends.recv() => self.run_done(run, outcome),
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
                            let reason = "left the membership view".to_string();
                            self.feed(Input::WorkerLeft { worker, reason });
                        }
                    }
                }
                _ = tokio::time::sleep(wake) => self.feed(Input::Tick),
            }
            // Take whatever else is already waiting into the same batch.
            for _ in 0..FLUSH_BATCH_MAX {
                let Ok(command) = commands.try_recv() else {
                    break;
                };
                self.command(command);
            }
            for _ in 0..FLUSH_BATCH_MAX {
                let Ok((run, outcome)) = self.calls.ends.try_recv() else {
                    break;
                };
                self.run_done(run, outcome);
            }
            // A handler's failed read, or the lease keeper, trips the switch
            // too: stop here as well.
            if let (Some(cause), None) = (self.health.fatal(), self.core.failed()) {
                let cause = cause.to_string();
                self.feed(Input::Tripped { cause });
            }
            self.hand_back_not_started();
        }
    }

    /// Ends the turn; attempts that could not be called end at once, which
    /// may start others, in the same turn.
    fn hand_back_not_started(&mut self) {
        loop {
            self.feed(Input::TurnEnd);
            if self.not_started.is_empty() {
                return;
            }
            while let Some((run, outcome)) = self.not_started.pop_front() {
                self.feed(Input::RunDone { run, outcome });
            }
        }
    }

    /// Hands `input` to the core at the clock's time and carries out what it says.
    fn feed(&mut self, input: Input) {
        let effects = self.core.handle(input, (self.clock)());
        self.execute(effects);
    }

    fn run_done(&mut self, run: RunKey, outcome: RunOutcome) {
        self.calls.ended(&run);
        self.feed(Input::RunDone { run, outcome });
    }

    fn pool_event(&mut self, event: PoolEvent) {
        let input = match event {
            PoolEvent::Joined { worker, slots } => Input::WorkerJoined { worker, slots },
            PoolEvent::Left { worker, reason } => Input::WorkerLeft { worker, reason },
        };
        self.feed(input);
    }

    /// A handler's command: requests go to the core with their reply kept
    /// here; the membership view is the driver's own to show.
    fn command(&mut self, command: Command) {
        let (request, reply) = match command {
            Command::Submit {
                task,
                idempotency_key,
                reply,
            } => (
                Request::Submit {
                    task,
                    idempotency_key,
                },
                Reply::Submit(reply),
            ),
            Command::Cancel { id, reply } => (Request::Cancel { id }, Reply::Cancel(reply)),
            Command::Purge { id, reply } => (Request::Purge { id }, Reply::Purge(reply)),
            Command::PutModule { bytes, reply } => {
                (Request::PutModule { bytes }, Reply::Module(reply))
            }
            Command::Workers { reply } => (Request::Workers, Reply::Workers(reply)),
            Command::Health { reply } => (Request::Health, Reply::Health(reply)),
            Command::Metrics { reply } => (Request::Metrics, Reply::Metrics(reply)),
            Command::Cluster { reply } => {
                let _ = reply.send(self.cluster_rows());
                return;
            }
            Command::Adopt { tasks } => return self.feed(Input::Adopt { tasks }),
            Command::Owned { ids } => return self.feed(Input::Owned { ids }),
            Command::CancelAsked { id } => return self.feed(Input::CancelAsked { id }),
        };
        // The committer retries a commit while the store is out of reach:
        // the core refuses acknowledgements meanwhile.
        let reachable = !self.committer.unreachable();
        if reachable != self.reachable {
            self.reachable = reachable;
            self.feed(Input::StoreReachable(reachable));
        }
        let id = RequestId(self.next_request);
        self.next_request += 1;
        self.replies.insert(id, reply);
        self.feed(Input::Request { id, request });
    }

    /// Carries out the core's effects, in order.
    fn execute(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Answer { request, answer } => self.reply(request, *answer),
                Effect::Commit { seq, batch } => {
                    // A fail-stop earlier in this list refused the batch.
                    if self.core.failed().is_none() {
                        self.committer.send(seq, batch);
                    }
                }
                Effect::ReadStore { id, read } => {
                    reads::start(&self.store, self.storage, &self.read_results, id, read);
                }
                Effect::StartRuns { worker, runs } => self.start_runs(worker, runs),
                Effect::StopRun { run } => self.calls.stop(&run),
                Effect::StopAllRuns => {
                    self.calls.stop_all();
                    self.not_started.clear();
                }
                Effect::Publish(event) => self.events.publish(event),
                Effect::FailStop { cause } => self.health.trip(cause),
                Effect::WakeAt { at_ms } => self.wake_at_ms = at_ms,
                Effect::ClaimRoom { room } => {
                    if let Some(claim_room) = &self.claim_room {
                        claim_room.set(room);
                    }
                }
            }
        }
    }

    /// Calls `worker` with `runs`, unless the gateway stopped, its lease
    /// window has passed, or the worker left the pool.
    fn start_runs(&mut self, worker: WorkerId, runs: Vec<RunStart>) {
        if self.core.failed().is_some() {
            return;
        }
        if let Some(until) = &self.act_until {
            if tokio::time::Instant::now() >= until.get() {
                // The keeper has not renewed in time (or could not run): past
                // the window another gateway may soon own these tasks.
                let cause = "lease window passed before runs could start: stopping".to_string();
                return self.feed(Input::Tripped { cause });
            }
        }
        let Some(client) = self.pool.client(&worker) else {
            // Failing before any call is reported like any other end of an
            // attempt, in this turn: the scheduler hears every end once.
            for start in runs {
                let message = format!("worker {worker} is not in the pool");
                let outcome = RunOutcome::TransportFailed { message };
                self.not_started.push_back((start.run, outcome));
            }
            return;
        };
        // Logged here, past every check, as the call goes out: what a worker
        // may now run (the simulation's lease checks read these events).
        for run in &runs {
            tracing::debug!(task = %run.run.0, index = run.run.1, attempt = run.run.2, %worker, "run started");
        }
        self.calls.start(client, worker, runs);
    }

    /// Sends `answer` where request `request` waits.
    fn reply(&mut self, request: RequestId, answer: Answer) {
        let Some(reply) = self.replies.remove(&request) else {
            debug_assert!(false, "request {request:?} answered twice");
            return;
        };
        // A handler that gave up waiting dropped its end: nobody to tell.
        match (reply, answer) {
            (Reply::Submit(reply), Answer::Submit(a)) => drop(reply.send(a)),
            (Reply::Cancel(reply), Answer::Cancel(a)) => drop(reply.send(a)),
            (Reply::Purge(reply), Answer::Purge(a)) => drop(reply.send(a)),
            (Reply::Module(reply), Answer::Module(a)) => drop(reply.send(a)),
            (Reply::Workers(reply), Answer::Workers(a)) => drop(reply.send(a)),
            (Reply::Health(reply), Answer::Health(a)) => drop(reply.send(a)),
            (Reply::Metrics(reply), Answer::Metrics(a)) => {
                drop(reply.send(a.map(|s| self.with_membership(s))));
            }
            (_, answer) => debug_assert!(false, "request {request:?} answered with {answer:?}"),
        }
    }

    /// A scrape's snapshot with the membership's levels, which are the
    /// driver's.
    fn with_membership(&self, mut snapshot: MetricsSnapshot) -> MetricsSnapshot {
        if let Some(membership) = &self.membership {
            let peers = membership.view(&Query::all()).len() as u64;
            snapshot.membership = Some((peers, membership.stats()));
            snapshot.discovery = Some(membership.discovery_stats());
        }
        snapshot
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
