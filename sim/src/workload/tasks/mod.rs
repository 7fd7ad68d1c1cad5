//! The task workload: a gateway (REST served over the simulated network, its
//! store on a [`SimDisk`] kept across restarts, losing unsynced writes in a
//! crash), workers registering through its
//! channel, and a client host that submits tasks at seeded times, cancels some,
//! and polls every task, recording what it saw for the checks in `tasks_check`.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use ww::exec::{Sandbox, SandboxConfig, SeededHost};
use ww::rpc::RpcConfig;
use ww::transport::{PeerId, SimTransport, Transport};
use ww_sched::history::History;
use ww_sched::tasks::HASH_PUZZLE_WASM;
use ww_sched::worker::node::{keep_registered, Callers, GatewayLocator, WorkerNode};
use ww_sched::worker::{ExecMode, WorkerConfig};

use crate::cluster::{node_address as address, now, peer_of};
use crate::derive_seed;
use crate::disk::SimDisk;
use crate::http::{request, HttpResponse};
use crate::sabotage::Sabotage;
use crate::scenario::format::{
    gateway_name, worker_name, GatewaySpec, StoreKind, TasksSpec, CLIENT_HOST, GATEWAY_HOST,
};

mod gateway;
mod store_links;

pub use gateway::GATEWAY_RESTART_DELAY;
use gateway::{run_gateway, GatewaySeams, GatewayStore};
pub use store_links::{LeaseTimeline, LinkedStore, StoreLinks, HUNG_CALL_WAIT_MS};

pub(super) type HostResult = Result<(), Box<dyn std::error::Error>>;

/// The gateway's REST port.
pub const HTTP_PORT: u16 = 8080;
/// Deadline of one HTTP request (connect, answer and body).
const HTTP_TIMEOUT: Duration = Duration::from_secs(3);
/// Wait before retrying a request that got no definite answer.
const RETRY: Duration = Duration::from_millis(500);
/// Fuel a simulated worker burns per millisecond of simulated time, so runs are
/// in flight long enough for faults to catch them.
const FUEL_PER_SIM_MS: u64 = 5_000;
/// How often the client polls every task.
const POLL: Duration = Duration::from_millis(250);

/// Clock reads at one instant of simulated time beyond which a host is taken
/// to be spinning: a loop that never waits never lets simulated time advance,
/// so the run would hang instead of failing. A busy tick reads the clock a few
/// thousand times at most.
const CLOCK_READS_PER_INSTANT_MAX: u64 = 1_000_000;

thread_local! {
    /// The instant of the latest clock read on this thread, and reads at it.
    static CLOCK_READS: std::cell::Cell<(Duration, u64)> =
        const { std::cell::Cell::new((Duration::ZERO, 0)) };
    /// The livelock found on this thread, until the runner takes it.
    static LIVELOCK: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// The livelock a clock read found on this thread since the last call, if any
/// (the runner reports it as a failed run).
pub fn take_livelock() -> Option<String> {
    CLOCK_READS.with(|cell| cell.set((Duration::ZERO, 0)));
    LIVELOCK.with(|l| l.borrow_mut().take())
}

/// Simulated milliseconds: the gateway's clock and the client's. Read
/// [`CLOCK_READS_PER_INSTANT_MAX`] times without time advancing (a livelock),
/// it records the livelock for [`take_livelock`] and panics, which ends the
/// spinning task (tokio catches the panic).
pub(super) fn now_ms() -> u64 {
    let at = now();
    let reads = CLOCK_READS.with(|cell| {
        let (last, reads) = cell.get();
        let reads = if last == at { reads + 1 } else { 1 };
        cell.set((at, reads));
        reads
    });
    if reads > CLOCK_READS_PER_INSTANT_MAX {
        CLOCK_READS.with(|cell| cell.set((Duration::ZERO, 0)));
        let message = format!(
            "livelock: the clock was read {reads} times at {:.3}s of simulated time without \
             time advancing (a loop that never waits, e.g. the gateway retrying a failing \
             store without delay)",
            at.as_secs_f64()
        );
        LIVELOCK.with(|l| l.borrow_mut().get_or_insert(message.clone()).clone());
        panic!("{message}");
    }
    u64::try_from(at.as_millis()).unwrap_or(u64::MAX)
}

fn now_ns() -> u64 {
    u64::try_from(now().as_nanos()).unwrap_or(u64::MAX)
}

/// The gateway's peer id under `seed`.
pub fn gateway_peer(seed: u64) -> PeerId {
    peer_of(seed, GATEWAY_HOST)
}

/// One submission the client makes.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The task id (also the idempotency key).
    pub id: String,
    /// When to submit, in simulated ms.
    pub at_ms: u64,
    /// The puzzle's input.
    pub input: u32,
    /// The puzzle's difficulty.
    pub difficulty: u32,
    /// Delay of the first run after submission.
    pub start_ms: u64,
    /// Interval between runs.
    pub delay_ms: u64,
    /// How many runs.
    pub repeats: u32,
    /// Cancel this long after the submission was acknowledged.
    pub cancel_after_ms: Option<u64>,
}

/// The client's submissions under `seed`, in time order.
pub fn plans(seed: u64, spec: &TasksSpec) -> Vec<Plan> {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, "tasks/plans"));
    let mut pick = |n: u64| rng.next_u64() % n.max(1);
    let from_ms = (spec.submit_from_s * 1e3) as u64;
    let window_ms = ((spec.submit_until_s - spec.submit_from_s) * 1e3) as u64;
    let mut plans: Vec<Plan> = (0..spec.count)
        .map(|i| {
            let start_ms = pick(spec.start_ms_max + 1);
            let delay_ms = 200 + pick(spec.interval_ms_max + 1);
            let repeats = 1 + pick(u64::from(spec.repeats_max)) as u32;
            let cancel = pick(100) < u64::from(spec.cancel_percent);
            let life_ms = start_ms + u64::from(repeats) * delay_ms + 1_000;
            Plan {
                id: format!("task-{i:03}"),
                at_ms: from_ms + pick(window_ms + 1),
                input: 1 + pick(10_000) as u32,
                difficulty: pick(3) as u32,
                start_ms,
                delay_ms,
                repeats,
                cancel_after_ms: cancel.then(|| pick(life_ms)),
            }
        })
        .collect();
    plans.sort_by_key(|p| (p.at_ms, p.id.clone()));
    plans
}

/// A cancel the gateway acknowledged.
#[derive(Clone, Debug)]
pub struct CancelSeen {
    /// Simulated ms when the DELETE was answered.
    pub acked_ms: u64,
    /// The task's status in the answer.
    pub status: String,
}

/// What the client saw of one task.
#[derive(Clone, Debug, Default)]
pub struct TaskSeen {
    /// Distinct consecutive statuses as polled.
    pub history: Vec<String>,
    /// Each run's first terminal record, by index.
    pub final_runs: BTreeMap<u64, Value>,
    /// Terminal runs seen to change afterwards: (index, first, later).
    pub run_changes: Vec<(u64, Value, Value)>,
    /// The latest record polled.
    pub latest: Option<Value>,
    /// When a poll first answered for the task.
    pub first_at: Option<Duration>,
    /// When the task was first seen final.
    pub final_at: Option<Duration>,
    /// When a poll first answered 404 for it, if ever.
    pub missing_at: Option<Duration>,
}

/// A request the gateway did not serve: a 5xx answer, no answer at all (a
/// transport error or a timeout), or a submission refused with a 4xx other
/// than 409.
#[derive(Clone, Debug)]
pub struct Refusal {
    /// When the request was sent.
    pub sent: Duration,
    /// When its answer, or its failure, came.
    pub at: Duration,
    /// The gateway it was sent to.
    pub host: String,
    /// The request's method.
    pub method: String,
    /// The request's path.
    pub path: String,
    /// The answer's status; `None` when no answer came.
    pub status: Option<u16>,
    /// The answer's body, or why no answer came (at most [`REFUSAL_TEXT_MAX`]
    /// characters).
    pub body: String,
}

/// Characters of a refusal's body kept.
pub const REFUSAL_TEXT_MAX: usize = 200;

/// What the task workload observed.
#[derive(Default)]
pub struct TaskObservations {
    /// Acknowledged submissions, by id, with the ack time.
    pub acked: BTreeMap<String, (Plan, Duration)>,
    /// Submissions answered with a refusal (4xx other than 409), with the answer.
    pub refused: Vec<String>,
    /// Acknowledged cancels, by id.
    pub cancels: BTreeMap<String, CancelSeen>,
    /// Tasks whose cancel was sent (answered or not).
    pub cancels_asked: std::collections::BTreeSet<String>,
    /// Submissions planned, answered or not.
    pub planned: usize,
    /// Per task, what polling saw.
    pub seen: BTreeMap<String, TaskSeen>,
    /// Requests that got no definite answer (retried).
    pub retries: u64,
    /// Requests sent (every attempt).
    pub requests: u64,
    /// Every request the gateway did not serve, in time order.
    pub refusals: Vec<Refusal>,
    /// Starts of the gateway: the first, restarts by the scenario, and
    /// restarts by its supervisor after a fail-stop.
    pub gateway_starts: u64,
    /// Every submission, cancel and read the client made, with simulated
    /// invocation and completion times, for `ww_sched::history::check`.
    pub history: History,
}

/// Shared, lockable task observations.
pub type SharedTasks = Arc<Mutex<TaskObservations>>;

pub(super) fn lock(shared: &SharedTasks) -> MutexGuard<'_, TaskObservations> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether a task or run status is terminal.
pub fn is_final(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled" | "timed_out")
}

/// Adds the gateways, their workers and the client to `sim`; `disk` is the
/// lone gateway's (unused on a shared store, whose links are returned).
pub fn add_hosts(
    sim: &mut turmoil::Sim<'_>,
    seed: u64,
    gateway: &GatewaySpec,
    tasks: Option<&TasksSpec>,
    disk: SimDisk,
    keyed: bool,
    sabotage: Option<Sabotage>,
) -> (SharedTasks, Option<StoreLinks>) {
    let shared = SharedTasks::default();
    let links = (gateway.store == StoreKind::Shared).then(|| StoreLinks::new(seed));
    let store = match &links {
        None => GatewayStore::Disk(disk.clone()),
        Some(links) => {
            // The store's clock is the simulation's: leases are judged by it.
            let clock: ww_sched::sched::StoreClock = Arc::new(StoreLinks::store_now_ms);
            let store = ww_sched::sched::MemoryStore::new(clock).expect("an in-memory store opens");
            GatewayStore::Shared {
                store: Arc::new(store),
                links: links.clone(),
            }
        }
    };
    let seams = GatewaySeams::new(sabotage, &disk);
    for g in 0..gateway.gateways {
        let (shared, store, seams, host) = (
            shared.clone(),
            store.clone(),
            seams.clone(),
            gateway_name(g),
        );
        sim.host(host.clone(), move || {
            run_gateway(
                seed,
                host.clone(),
                store.clone(),
                shared.clone(),
                keyed,
                seams.clone(),
            )
        });
    }
    for i in 0..gateway.workers {
        let name = worker_name(i);
        let starts = Arc::new(AtomicU64::new(0));
        let slots = gateway.slots;
        let to = gateway_name(i % gateway.gateways);
        sim.host(name.clone(), move || {
            run_worker(seed, name.clone(), to.clone(), slots, starts.clone(), keyed)
        });
    }
    if let Some(tasks) = tasks {
        let (spec, shared) = (tasks.clone(), shared.clone());
        let targets: Vec<String> = (0..gateway.gateways).map(gateway_name).collect();
        sim.host(CLIENT_HOST, move || {
            run_client(seed, spec.clone(), targets.clone(), shared.clone())
        });
    }
    (shared, links)
}

async fn run_worker(
    seed: u64,
    name: String,
    gateway: String,
    slots: u32,
    starts: Arc<AtomicU64>,
    keyed: bool,
) -> HostResult {
    let start = starts.fetch_add(1, Ordering::SeqCst);
    let transport = SimTransport::new(crate::host_config(seed, &name, keyed));
    transport.add_peer_address(peer_of(seed, &gateway), address(&gateway))?;
    let host = SeededHost::new(
        derive_seed(seed, &format!("{name}/sandbox/{start}")),
        Arc::new(now_ns),
    );
    let sandbox = Arc::new(Sandbox::new(SandboxConfig {
        host: Arc::new(host),
        ..SandboxConfig::default()
    }));
    let config = WorkerConfig {
        mode: ExecMode::Simulated {
            fuel_per_ms: FUEL_PER_SIM_MS,
        },
        slots: slots as usize,
        ..WorkerConfig::default()
    };
    // Least authority, as on a keyed cluster: the gateway reaches the worker
    // only through its registration, and no peer may call it directly.
    let callers = Callers::Only(Default::default());
    let node = WorkerNode::start(transport, sandbox, config, &[address(&name)], callers).await?;
    stay_registered_with(node, peer_of(seed, &gateway)).await;
    Ok(())
}

/// How simulated workers reach the gateway: short timeouts, so that a
/// partition is noticed and the worker registers again soon after it heals.
pub const WORKER_RPC: RpcConfig = RpcConfig {
    connect_timeout: Duration::from_secs(2),
    call_timeout: Duration::from_secs(5),
};

/// Keeps `node` registered with the (first) gateway for as long as its host runs.
pub async fn stay_registered(node: WorkerNode<SimTransport>, seed: u64) {
    stay_registered_with(node, gateway_peer(seed)).await
}

/// Keeps `node` registered with gateway `peer` for as long as its host runs.
async fn stay_registered_with(node: WorkerNode<SimTransport>, peer: PeerId) {
    keep_registered(Rc::new(node), GatewayLocator::Peer(peer), None, WORKER_RPC).await
}

/// One request to the gateway; `None` when no definite answer came (the gateway
/// is down, cut off or slow), which the caller retries. Every answer that is
/// not a success is recorded as a [`Refusal`]: a 5xx or no answer for any
/// request, and a 4xx other than 409 for a submission (`POST /tasks`).
/// The gateways a client sends to, in turn: each request goes to the next
/// (a round-robin balancer; one gateway gets them all).
struct Targets {
    hosts: Vec<String>,
    next: std::cell::Cell<usize>,
}

impl Targets {
    fn new(hosts: Vec<String>) -> Rc<Targets> {
        debug_assert!(!hosts.is_empty(), "a client needs a gateway");
        Rc::new(Targets {
            hosts,
            next: std::cell::Cell::new(0),
        })
    }

    /// The gateway the next request goes to.
    fn next(&self) -> &str {
        let i = self.next.get();
        self.next.set((i + 1) % self.hosts.len());
        &self.hosts[i]
    }
}

async fn call(
    shared: &SharedTasks,
    host: &str,
    method: &str,
    path: &str,
    idempotency_key: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> Option<HttpResponse> {
    let mut headers = vec![("content-type", content_type)];
    if let Some(key) = idempotency_key {
        headers.push(("idempotency-key", key));
    }
    let sent = now();
    let result = request(host, HTTP_PORT, method, path, &headers, body, HTTP_TIMEOUT).await;
    let submission = method == "POST" && path == "/tasks";
    let (status, text) = match &result {
        Ok(response) if response.status >= 500 => {
            tracing::debug!(target: "ww_sim::workload", method, path, status = response.status, "retrying");
            (
                Some(response.status),
                String::from_utf8_lossy(&response.body).into_owned(),
            )
        }
        Ok(response) if submission && response.status >= 400 && response.status != 409 => (
            Some(response.status),
            String::from_utf8_lossy(&response.body).into_owned(),
        ),
        Ok(_) => (None, String::new()),
        Err(e) => {
            tracing::debug!(target: "ww_sim::workload", method, path, error = %e, "retrying");
            (None, e.to_string())
        }
    };
    let mut obs = lock(shared);
    obs.requests += 1;
    if let Some(op) = super::tasks_history::operation(method, path, idempotency_key, sent, &result)
    {
        obs.history.record(op);
    }
    if status.is_some() || result.is_err() {
        obs.refusals.push(Refusal {
            host: host.to_string(),
            sent,
            at: now(),
            method: method.to_string(),
            path: path.to_string(),
            status,
            body: text.chars().take(REFUSAL_TEXT_MAX).collect(),
        });
    }
    drop(obs);
    result.ok().filter(|response| response.status < 500)
}

/// Repeats a request until it gets a definite answer.
async fn call_until_answered(
    shared: &SharedTasks,
    targets: &Targets,
    method: &str,
    path: &str,
    idempotency_key: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> HttpResponse {
    loop {
        if let Some(response) = call(
            shared,
            targets.next(),
            method,
            path,
            idempotency_key,
            content_type,
            body.to_vec(),
        )
        .await
        {
            return response;
        }
        lock(shared).retries += 1;
        tokio::time::sleep(RETRY).await;
    }
}

async fn run_client(
    seed: u64,
    spec: TasksSpec,
    gateways: Vec<String>,
    shared: SharedTasks,
) -> HostResult {
    let targets = Targets::new(gateways);
    let poller = tokio::task::spawn_local(poll_tasks(shared.clone(), targets.clone()));
    let answer = call_until_answered(
        &shared,
        &targets,
        "POST",
        "/modules",
        None,
        "application/wasm",
        HASH_PUZZLE_WASM,
    )
    .await;
    if !matches!(answer.status, 200 | 201) {
        return Err(format!("module upload refused: {} {}", answer.status, answer.json()).into());
    }
    let module = answer.json()["hash"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    // Submissions and cancels, in time order (a cancel is queued once its
    // submission is acknowledged).
    let mut agenda: Vec<(u64, bool, Plan)> = plans(seed, &spec)
        .into_iter()
        .map(|p| (p.at_ms, false, p))
        .collect();
    lock(&shared).planned = agenda.len();
    while !agenda.is_empty() {
        agenda.sort_by_key(|(at, cancel, p)| (*at, *cancel, p.id.clone()));
        let (at, cancel, plan) = agenda.remove(0);
        if let Some(wait) = at.checked_sub(now_ms()).filter(|w| *w > 0) {
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        if cancel {
            lock(&shared).cancels_asked.insert(plan.id.clone());
            let path = format!("/tasks/{}", plan.id);
            let answer = call_until_answered(
                &shared,
                &targets,
                "DELETE",
                &path,
                None,
                "application/json",
                &[],
            )
            .await;
            let status = answer.json()["status"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            tracing::info!(target: "ww_sim::workload", id = %plan.id, http = answer.status, %status, "cancel answered");
            if answer.status == 200 {
                let seen = CancelSeen {
                    acked_ms: now_ms(),
                    status,
                };
                lock(&shared).cancels.insert(plan.id.clone(), seen);
            }
            continue;
        }
        let body = json!({
            "id": plan.id,
            "description": format!("puzzle {}/{}", plan.input, plan.difficulty),
            "module": module,
            "args": [plan.input, plan.difficulty],
            "start_ms": plan.start_ms,
            "delay_ms": plan.delay_ms,
            "repeats": plan.repeats,
        })
        .to_string();
        let answer = call_until_answered(
            &shared,
            &targets,
            "POST",
            "/tasks",
            Some(&plan.id),
            "application/json",
            body.as_bytes(),
        )
        .await;
        tracing::info!(target: "ww_sim::workload", id = %plan.id, http = answer.status, "submission answered");
        // 409: an earlier attempt of this very submission was stored though its
        // answer was lost, and the gateway restarted since (forgetting the key).
        if matches!(answer.status, 200 | 201 | 409) {
            lock(&shared)
                .acked
                .insert(plan.id.clone(), (plan.clone(), now()));
            if let Some(after) = plan.cancel_after_ms {
                agenda.push((now_ms() + after, true, plan));
            }
        } else {
            lock(&shared)
                .refused
                .push(format!("{}: {} {}", plan.id, answer.status, answer.json()));
        }
    }
    poller.await?;
    Ok(())
}

/// The next task a poll round visits: one acknowledged since the round began
/// (or not yet answered for) before the rest, each once per round, by id.
fn next_to_poll(obs: &TaskObservations, polled: &BTreeSet<String>) -> Option<String> {
    let unpolled = || obs.acked.keys().filter(|id| !polled.contains(*id));
    unpolled()
        .find(|id| obs.seen.get(*id).is_none_or(|s| s.latest.is_none()))
        .or_else(|| unpolled().next())
        .cloned()
}

/// Polls every acknowledged task, forever (to the end of the run), in rounds
/// [`POLL`] apart; a task not yet seen goes first, even one acknowledged
/// while a round is under way.
async fn poll_tasks(shared: SharedTasks, targets: Rc<Targets>) {
    loop {
        let mut polled = BTreeSet::new();
        loop {
            // The guard must be gone before the request (it locks again).
            let next = next_to_poll(&lock(&shared), &polled);
            let Some(id) = next else { break };
            polled.insert(id.clone());
            let Some(answer) = call(
                &shared,
                targets.next(),
                "GET",
                &format!("/tasks/{id}"),
                None,
                "application/json",
                Vec::new(),
            )
            .await
            else {
                continue;
            };
            let at = now();
            let mut obs = lock(&shared);
            let seen = obs.seen.entry(id).or_default();
            if answer.status == 404 {
                seen.missing_at.get_or_insert(at);
                continue;
            }
            if answer.status != 200 {
                continue;
            }
            note_task(seen, answer.json(), at);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Folds one polled record of a task into what was seen of it.
pub fn note_task(seen: &mut TaskSeen, task: Value, at: Duration) {
    let status = task["status"].as_str().unwrap_or_default().to_string();
    if seen.history.last() != Some(&status) {
        seen.history.push(status.clone());
    }
    seen.first_at.get_or_insert(at);
    if is_final(&status) {
        seen.final_at.get_or_insert(at);
    }
    for run in task["runs"].as_array().into_iter().flatten() {
        let (Some(index), Some(run_status)) = (run["index"].as_u64(), run["status"].as_str())
        else {
            continue;
        };
        match seen.final_runs.get(&index) {
            // Any change counts, not just of status: a result shown, then lost in a
            // crash and redone, comes back as the same status with another attempt.
            Some(first) if first != run => {
                let change = (index, first.clone(), run.clone());
                if !seen.run_changes.contains(&change) {
                    seen.run_changes.push(change);
                }
            }
            Some(_) => {}
            None if is_final(run_status) => {
                seen.final_runs.insert(index, run.clone());
            }
            None => {}
        }
    }
    seen.latest = Some(task);
}
