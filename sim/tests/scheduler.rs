//! The gateway's scheduler over the simulated transport, with worker crashes and
//! a partition, in a seeded turmoil simulation (virtual time).
//!
//! One `gateway` host runs the real gateway (store, scheduler, pool, REST router)
//! and drives a workload through the router in-process: it uploads the hash-puzzle
//! module, submits tasks with various schedules at seeded times, cancels some, and
//! polls every task until all are final. Four `worker-N` hosts run real worker
//! nodes that register through the gateway's `lb` channel. The test driver crashes
//! and restarts workers and cuts one off from the gateway while runs are due.
//!
//! Checked afterwards: every acknowledged task reaches exactly one terminal status
//! and keeps it; no run is lost (each task that was not cancelled has all its runs,
//! each terminal, succeeded ones with the natively computed answer); a cancelled
//! task starts no run after its cancel was acknowledged; at least one run needed a
//! retry (so the faults mattered); and the same seed gives the same records.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use tower::ServiceExt;
use ww_sched::exec::{Sandbox, SandboxConfig, SeededHost};
use ww_sched::gateway::{Gateway, GatewayConfig};
use ww_sched::node::{keep_registered, GatewayLocator, WorkerNode};
use ww_sched::rpc::RpcConfig;
use ww_sched::tasks::{hash_puzzle, HASH_PUZZLE_WASM};
use ww_sched::transport::{Address, PeerId, SimConfig, SimTransport, Transport};
use ww_sched::worker::{ExecMode, WorkerConfig};
use ww_sim::{derive_seed, root_seed};

type HostResult = Result<(), Box<dyn std::error::Error>>;

const PORT: u16 = 7000;
const WORKERS: usize = 4;
const TASKS: usize = 30;
/// Submissions start at this simulated time (the pool is full well before).
const SUBMIT_FROM_MS: u64 = 1_000;
/// Other tasks are submitted at seeded times in this window after that.
const SUBMIT_WINDOW_MS: u64 = 24_000;
/// When the three faults begin (simulated time): a crash, a partition, a crash.
const FAULTS_AT_MS: [u64; 3] = [7_000, 17_000, 29_000];
/// Tasks (the first ones) whose first runs fall due together just before a fault.
const BURSTS: usize = 15;
/// How long before its fault a burst falls due: less than a run's round trip.
const BURST_LEAD_MS: u64 = 5;
/// How long after a fault a lost worker may still get runs: the pool pings every
/// second and gives a ping one second.
const DETECTION_MS: u64 = 2_000;
/// Bound: every task final this long (virtual) after the gateway started.
const ALL_FINAL_BY: Duration = Duration::from_secs(180);
/// After all tasks are final, the workload watches this long that nothing changes.
const QUIET: Duration = Duration::from_secs(10);
/// How often the workload polls every task.
const POLL: Duration = Duration::from_millis(250);
const SIM_DURATION: Duration = Duration::from_secs(300);

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

fn now_ms() -> u64 {
    u64::try_from(now().as_millis()).unwrap_or(u64::MAX)
}

fn now_ns() -> u64 {
    u64::try_from(now().as_nanos()).unwrap_or(u64::MAX)
}

fn address(host: &str) -> Address {
    Address::new(format!("/dns4/{host}/tcp/{PORT}"))
}

fn gateway_peer(seed: u64) -> PeerId {
    SimConfig::from_seed(seed, "gateway").identity.peer_id()
}

fn replay(seed: u64) -> String {
    format!("replay: WW_SIM_SEED={seed} cargo test -p ww-sim --test scheduler")
}

/// One submission the workload makes.
#[derive(Clone, Debug)]
struct Plan {
    id: String,
    at_ms: u64,
    input: u32,
    difficulty: u32,
    start_ms: u64,
    delay_ms: u64,
    repeats: u32,
    /// Cancel this long after the submission was acknowledged.
    cancel_after_ms: Option<u64>,
}

fn workload(seed: u64) -> Vec<Plan> {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, "workload"));
    let mut pick = |n: u64| rng.next_u64() % n;
    let mut plans: Vec<Plan> = (0..TASKS)
        .map(|i| {
            let long_delayed = i >= BURSTS && i % 6 == 5;
            let (at_ms, start_ms, delay_ms) = if i < BURSTS {
                // Bursts: five tasks per fault whose first runs all fall due just
                // before it. Placement spreads simultaneous runs over the least
                // loaded workers, so the victim gets one and has it in flight
                // when it crashes or is cut off.
                let due_ms = FAULTS_AT_MS[i % FAULTS_AT_MS.len()] - BURST_LEAD_MS;
                let at_ms = SUBMIT_FROM_MS + pick(due_ms - SUBMIT_FROM_MS - 500);
                (at_ms, due_ms - at_ms, 200 + pick(500))
            } else if i % 2 == 0 {
                // Due just after a fault, before the gateway can have noticed it.
                let fault_ms = FAULTS_AT_MS[(i / 2) % FAULTS_AT_MS.len()];
                let due_ms = fault_ms + pick(DETECTION_MS);
                let at_ms = SUBMIT_FROM_MS + pick(due_ms - SUBMIT_FROM_MS - 500);
                (at_ms, due_ms - at_ms, 200 + pick(500))
            } else {
                // Anywhere; a few long-delayed, so some cancels come before any run.
                let start_ms = if long_delayed {
                    20_000 + pick(20_000)
                } else {
                    pick(4_000)
                };
                (
                    SUBMIT_FROM_MS + pick(SUBMIT_WINDOW_MS),
                    start_ms,
                    500 + pick(4_000),
                )
            };
            Plan {
                id: format!("task-{i:02}"),
                at_ms,
                input: 1 + pick(10_000) as u32,
                difficulty: pick(3) as u32,
                start_ms,
                delay_ms,
                repeats: 1 + pick(3) as u32,
                // Cancel every fifth task and the long-delayed ones, at various
                // points of their lives.
                cancel_after_ms: (i % 5 == 4 || long_delayed).then(|| pick(start_ms + 6_000)),
            }
        })
        .collect();
    plans.sort_by_key(|p| (p.at_ms, p.id.clone()));
    plans
}

/// A cancel the gateway acknowledged.
#[derive(Clone, Debug)]
struct CancelSeen {
    /// Simulated time the DELETE was answered.
    acked_ms: u64,
    /// The task's status in the answer.
    status: String,
}

/// What the workload saw, shared with the test.
#[derive(Default)]
struct Observations {
    /// Acknowledged (201) submissions, by id.
    acked: BTreeMap<String, Plan>,
    /// Submissions that were not acknowledged, with the answer.
    refused: Vec<String>,
    /// Acknowledged cancels, by id.
    cancels: BTreeMap<String, CancelSeen>,
    /// Each task's distinct consecutive statuses as polled.
    history: BTreeMap<String, Vec<String>>,
    /// Every task's detail once all were final.
    final_tasks: Vec<Value>,
    /// Every task's detail `QUIET` later.
    later_tasks: Vec<Value>,
    /// When every task was first seen final.
    all_final_at: Option<Duration>,
    /// The scheduler's workers over time, on change.
    pool: Vec<(u64, Vec<String>)>,
    /// Starts of each worker host (1 + restarts).
    starts: BTreeMap<String, u64>,
}

type Shared = Arc<Mutex<Observations>>;

fn lock(shared: &Shared) -> std::sync::MutexGuard<'_, Observations> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

async fn run_worker(
    seed: u64,
    name: String,
    restarts: Arc<AtomicU64>,
    shared: Shared,
) -> HostResult {
    let start = restarts.fetch_add(1, Ordering::SeqCst);
    lock(&shared).starts.insert(name.clone(), start + 1);
    let transport = SimTransport::new(SimConfig::from_seed(seed, &name));
    transport.add_peer_address(gateway_peer(seed), address("gateway"))?;
    let host = SeededHost::new(
        derive_seed(seed, &format!("{name}/sandbox/{start}")),
        Arc::new(now_ns),
    );
    let sandbox = Arc::new(Sandbox::new(SandboxConfig {
        host: Arc::new(host),
        ..SandboxConfig::default()
    }));
    let config = WorkerConfig {
        mode: ExecMode::Inline,
        slots: 2,
        ..WorkerConfig::default()
    };
    let node = WorkerNode::start(transport, sandbox, config, &[address(&name)]).await?;
    keep_registered(
        Rc::new(node),
        GatewayLocator::Peer(gateway_peer(seed)),
        None,
        RpcConfig {
            connect_timeout: Duration::from_secs(2),
            call_timeout: Duration::from_secs(5),
        },
    )
    .await;
    Ok(())
}

/// One request through the router, in-process.
async fn http(
    router: &axum::Router,
    method: Method,
    uri: &str,
    body: Option<Body>,
    content_type: &str,
) -> Result<(StatusCode, Value), Box<dyn std::error::Error>> {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", content_type)
        .body(body.unwrap_or_else(Body::empty))?;
    let response = router.clone().oneshot(request).await?;
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX).await?;
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, value))
}

async fn get(router: &axum::Router, uri: &str) -> Result<Value, Box<dyn std::error::Error>> {
    let (status, value) = http(router, Method::GET, uri, None, "application/json").await?;
    if status != StatusCode::OK {
        return Err(format!("GET {uri}: {status} {value}").into());
    }
    Ok(value)
}

/// The workers in the scheduler's table, by host name.
async fn pool(
    router: &axum::Router,
    names: &BTreeMap<String, String>,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let rows = get(router, "/workers").await?;
    Ok(rows
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            let peer = w["worker"].as_str().unwrap_or_default();
            names.get(peer).cloned().unwrap_or_else(|| peer.to_string())
        })
        .collect())
}

/// Samples the pool every 100 ms into the observations, on change.
async fn watch_pool(router: axum::Router, names: BTreeMap<String, String>, shared: Shared) {
    loop {
        if let Ok(workers) = pool(&router, &names).await {
            let mut obs = lock(&shared);
            if obs.pool.last().map(|(_, w)| w) != Some(&workers) {
                obs.pool.push((now_ms(), workers));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn snapshot(
    router: &axum::Router,
    ids: &[String],
) -> Result<Vec<Value>, Box<dyn std::error::Error>> {
    let mut tasks = Vec::new();
    for id in ids {
        tasks.push(get(router, &format!("/tasks/{id}")).await?);
    }
    Ok(tasks)
}

fn is_final(status: &str) -> bool {
    matches!(status, "succeeded" | "failed" | "cancelled")
}

/// The gateway and the workload, on the `gateway` host.
async fn run_gateway(seed: u64, data_dir: std::path::PathBuf, shared: Shared) -> HostResult {
    let transport = SimTransport::new(SimConfig::from_seed(seed, "gateway"));
    transport.listen(address("gateway")).await?;
    let mut config = GatewayConfig::new(data_dir);
    config.sched.seed = derive_seed(seed, "scheduler");
    config.pool.ping_interval = Duration::from_secs(1);
    config.pool.call_timeout = Duration::from_secs(3);
    let clock: ww_sched::gateway::Clock = Rc::new(now_ms);
    let gateway = Gateway::start(&transport, None, clock, config).await?;
    let router = gateway.router();

    let names: BTreeMap<String, String> = (0..WORKERS)
        .map(|i| {
            let name = format!("worker-{i}");
            (
                SimConfig::from_seed(seed, &name)
                    .identity
                    .peer_id()
                    .to_string(),
                name,
            )
        })
        .collect();
    let _watch =
        tokio::task::spawn_local(watch_pool(router.clone(), names.clone(), shared.clone()));

    // Every worker registers through the channel.
    while pool(&router, &names).await?.len() < WORKERS {
        if now() > Duration::from_secs(20) {
            return Err("the workers did not all register within 20 s".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, module) = http(
        &router,
        Method::POST,
        "/modules",
        Some(Body::from(HASH_PUZZLE_WASM.to_vec())),
        "application/wasm",
    )
    .await?;
    if status != StatusCode::CREATED {
        return Err(format!("module upload: {status} {module}").into());
    }
    let hash = module["hash"].as_str().unwrap_or_default().to_string();

    // Submissions and cancels, in time order.
    let mut agenda: Vec<(u64, bool, Plan)> = workload(seed)
        .into_iter()
        .map(|p| (p.at_ms, false, p))
        .collect();
    let mut ids = Vec::new();
    while !agenda.is_empty() {
        agenda.sort_by_key(|(at, cancel, p)| (*at, *cancel, p.id.clone()));
        let (at, cancel, plan) = agenda.remove(0);
        if let Some(wait) = at.checked_sub(now_ms()).filter(|w| *w > 0) {
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
        if cancel {
            let uri = format!("/tasks/{}", plan.id);
            let (status, task) =
                http(&router, Method::DELETE, &uri, None, "application/json").await?;
            if status != StatusCode::OK {
                return Err(format!("DELETE {uri}: {status} {task}").into());
            }
            let seen = CancelSeen {
                acked_ms: now_ms(),
                status: task["status"].as_str().unwrap_or_default().to_string(),
            };
            lock(&shared).cancels.insert(plan.id.clone(), seen);
            continue;
        }
        let body = json!({
            "id": plan.id,
            "description": format!("puzzle {}/{}", plan.input, plan.difficulty),
            "module": hash,
            "args": [plan.input, plan.difficulty],
            "start_ms": plan.start_ms,
            "delay_ms": plan.delay_ms,
            "repeats": plan.repeats,
        });
        let (status, answer) = http(
            &router,
            Method::POST,
            "/tasks",
            Some(Body::from(body.to_string())),
            "application/json",
        )
        .await?;
        if status == StatusCode::CREATED {
            ids.push(plan.id.clone());
            lock(&shared).acked.insert(plan.id.clone(), plan.clone());
            if let Some(after) = plan.cancel_after_ms {
                agenda.push((now_ms() + after, true, plan));
            }
        } else {
            lock(&shared)
                .refused
                .push(format!("{}: {status} {answer}", plan.id));
        }
    }

    // Poll every task until all are final, then watch them stay put.
    let mut final_since: Option<Duration> = None;
    loop {
        let tasks = snapshot(&router, &ids).await?;
        let mut all_final = true;
        {
            let mut obs = lock(&shared);
            for task in &tasks {
                let id = task["id"].as_str().unwrap_or_default().to_string();
                let status = task["status"].as_str().unwrap_or_default().to_string();
                all_final &= is_final(&status);
                let history = obs.history.entry(id).or_default();
                if history.last() != Some(&status) {
                    history.push(status);
                }
            }
            match (all_final, final_since) {
                (true, None) => {
                    final_since = Some(now());
                    obs.all_final_at = Some(now());
                    obs.final_tasks = tasks;
                }
                (true, Some(since)) if now() >= since + QUIET => {
                    obs.later_tasks = tasks;
                    return Ok(());
                }
                (false, Some(_)) => final_since = None,
                _ => {}
            }
        }
        if now() > ALL_FINAL_BY {
            return Err(format!("not every task was final by {ALL_FINAL_BY:?}").into());
        }
        tokio::time::sleep(POLL).await;
    }
}

enum Fault {
    Crash(&'static str),
    Bounce(&'static str),
    Partition(&'static str),
    Repair(&'static str),
}

/// Faults while submissions and runs are under way: each starts at one of
/// `FAULTS_AT_MS` and heals six or eight seconds later.
fn faults() -> Vec<(Duration, Fault)> {
    let ms = Duration::from_millis;
    let [crash, cut, crash_again] = FAULTS_AT_MS;
    vec![
        (ms(crash), Fault::Crash("worker-1")),
        (ms(crash + 6_000), Fault::Bounce("worker-1")),
        (ms(cut), Fault::Partition("worker-2")),
        (ms(cut + 8_000), Fault::Repair("worker-2")),
        (ms(crash_again), Fault::Crash("worker-3")),
        (ms(crash_again + 4_000), Fault::Bounce("worker-3")),
    ]
}

/// Everything one run of the scenario produced.
struct Outcome {
    obs: Observations,
    elapsed: Duration,
}

static DATA_DIRS: AtomicU64 = AtomicU64::new(0);

fn run_scenario(seed: u64) -> Outcome {
    let data_dir = std::env::temp_dir().join(format!(
        "ww-sim-scheduler-{}-{seed}-{}",
        std::process::id(),
        DATA_DIRS.fetch_add(1, Ordering::SeqCst)
    ));
    let shared = Shared::default();
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(SIM_DURATION)
        .build();
    for i in 0..WORKERS {
        let name = format!("worker-{i}");
        let restarts = Arc::new(AtomicU64::new(0));
        let shared = shared.clone();
        sim.host(name.clone(), move || {
            run_worker(seed, name.clone(), restarts.clone(), shared.clone())
        });
    }
    sim.client(
        "gateway",
        run_gateway(seed, data_dir.clone(), shared.clone()),
    );
    let mut faults = faults().into_iter().peekable();
    let outcome = loop {
        while let Some((at, fault)) = faults.next_if(|(at, _)| sim.elapsed() >= *at) {
            eprintln!(
                "{at:?}: {}",
                match fault {
                    Fault::Crash(h) => {
                        sim.crash(h);
                        format!("crash {h}")
                    }
                    Fault::Bounce(h) => {
                        sim.bounce(h);
                        format!("restart {h}")
                    }
                    Fault::Partition(h) => {
                        sim.partition(h, "gateway");
                        format!("partition {h} | gateway")
                    }
                    Fault::Repair(h) => {
                        sim.repair(h, "gateway");
                        format!("repair {h} | gateway")
                    }
                }
            );
        }
        match sim.step() {
            Ok(true) => break Ok(()),
            Ok(false) => {}
            Err(e) => break Err(e),
        }
    };
    let elapsed = sim.elapsed();
    drop(sim);
    let _ = std::fs::remove_dir_all(&data_dir);
    if let Err(e) = outcome {
        panic!(
            "simulation failed at {elapsed:?} under seed {seed}: {e}\n{}",
            replay(seed)
        );
    }
    let obs = std::mem::take(&mut *lock(&shared));
    Outcome { obs, elapsed }
}

/// Every guarantee, checked on one outcome; the failures, as text.
fn violations(outcome: &Outcome) -> Vec<String> {
    let obs = &outcome.obs;
    let mut wrong = Vec::new();
    if !obs.refused.is_empty() {
        wrong.push(format!("submissions refused: {:?}", obs.refused));
    }
    if obs.final_tasks.len() != obs.acked.len() {
        wrong.push(format!(
            "{} tasks acknowledged, {} in the final records",
            obs.acked.len(),
            obs.final_tasks.len()
        ));
    }
    if obs.final_tasks != obs.later_tasks {
        wrong.push(format!(
            "task records changed in the {QUIET:?} after all were final"
        ));
    }
    for task in &obs.final_tasks {
        let id = task["id"].as_str().unwrap_or_default();
        let Some(plan) = obs.acked.get(id) else {
            wrong.push(format!("{id}: not acknowledged but listed"));
            continue;
        };
        let status = task["status"].as_str().unwrap_or_default();
        // Exactly one terminal status, and it stays.
        let history = obs.history.get(id).cloned().unwrap_or_default();
        let finals: Vec<&String> = history.iter().filter(|s| is_final(s)).collect();
        if finals.len() != 1 || history.last().map(String::as_str) != Some(status) {
            wrong.push(format!(
                "{id}: status history {history:?}, final record {status}"
            ));
        }
        let runs = task["runs"].as_array().cloned().unwrap_or_default();
        let cancel = obs.cancels.get(id).filter(|c| c.status == "cancelled");
        // No run lost: indexes 0.. in order, all of them unless cancelled.
        let indexes: Vec<u64> = runs.iter().filter_map(|r| r["index"].as_u64()).collect();
        let expected: Vec<u64> = (0..indexes.len() as u64).collect();
        if indexes != expected || runs.len() > plan.repeats as usize {
            wrong.push(format!("{id}: run indexes {indexes:?} of {}", plan.repeats));
        }
        if cancel.is_none() && runs.len() != plan.repeats as usize {
            wrong.push(format!(
                "{id}: {} runs of {} ({status})",
                runs.len(),
                plan.repeats
            ));
        }
        let answer = i64::from(hash_puzzle(plan.input, plan.difficulty));
        let mut succeeded = 0;
        for run in &runs {
            let index = &run["index"];
            let run_status = run["status"].as_str().unwrap_or_default();
            match run_status {
                "succeeded" => {
                    succeeded += 1;
                    if run["results"] != json!([answer]) {
                        wrong.push(format!(
                            "{id}/{index}: results {} but the native answer is {answer}",
                            run["results"]
                        ));
                    }
                }
                "cancelled" if cancel.is_some() => {}
                // Only running out of attempts in transport may fail a run here.
                "failed"
                    if run["error_kind"] == "transport" && run["attempt"].as_u64() >= Some(5) => {}
                other => wrong.push(format!("{id}/{index}: run ended {other}: {run}")),
            }
            if run["finished_ms"].is_null() {
                wrong.push(format!("{id}/{index}: terminal run without finished_ms"));
            }
            if let (Some(cancel), Some(started)) = (cancel, run["started_ms"].as_u64()) {
                if started > cancel.acked_ms {
                    wrong.push(format!(
                        "{id}/{index}: started at {started} ms after the cancel was acknowledged at {} ms",
                        cancel.acked_ms
                    ));
                }
            }
        }
        if task["completions"].as_u64() != Some(succeeded) {
            wrong.push(format!(
                "{id}: completions {} but {succeeded} runs succeeded",
                task["completions"]
            ));
        }
        let expected_status = if cancel.is_some() {
            "cancelled"
        } else if succeeded == plan.repeats as u64 {
            "succeeded"
        } else {
            "failed"
        };
        if status != expected_status {
            wrong.push(format!(
                "{id}: status {status}, its runs say {expected_status}"
            ));
        }
    }
    // Cancels answered with a final status other than cancelled only for finished tasks.
    for (id, cancel) in &obs.cancels {
        if cancel.status != "cancelled" && !is_final(&cancel.status) {
            wrong.push(format!(
                "{id}: cancel answered with status {}",
                cancel.status
            ));
        }
    }
    if retried(obs).is_empty() {
        wrong.push("no run needed a retry: the faults did not matter".into());
    }
    wrong
}

/// Runs whose final attempt was not the first: (task, index, attempt).
fn retried(obs: &Observations) -> Vec<(String, u64, u64)> {
    obs.final_tasks
        .iter()
        .flat_map(|t| {
            let id = t["id"].as_str().unwrap_or_default().to_string();
            t["runs"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(move |r| {
                    let attempt = r["attempt"].as_u64()?;
                    let index = r["index"].as_u64()?;
                    (attempt > 1).then(|| (id.clone(), index, attempt))
                })
        })
        .collect()
}

fn summary(outcome: &Outcome) -> String {
    let obs = &outcome.obs;
    let mut statuses: BTreeMap<&str, usize> = BTreeMap::new();
    let mut runs: BTreeMap<String, usize> = BTreeMap::new();
    let mut workers = BTreeSet::new();
    for task in &obs.final_tasks {
        *statuses
            .entry(task["status"].as_str().unwrap_or("?"))
            .or_default() += 1;
        for run in task["runs"].as_array().into_iter().flatten() {
            *runs
                .entry(run["status"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
            if let Some(w) = run["worker"].as_str() {
                workers.insert(w.to_string());
            }
        }
    }
    format!(
        "{} tasks acknowledged, {} cancels; tasks {statuses:?}; runs {runs:?} on {} workers; \
         retried runs {:?}; all final at {:?}; simulated {:?}; pool over time {:?}; starts {:?}",
        obs.acked.len(),
        obs.cancels.len(),
        workers.len(),
        retried(obs),
        obs.all_final_at,
        outcome.elapsed,
        obs.pool,
        obs.starts,
    )
}

#[test]
fn tasks_survive_worker_crashes_and_partitions() {
    let seed = root_seed(2024);
    eprintln!("seed {seed} ({})", replay(seed));
    let wall = std::time::Instant::now();
    let first = run_scenario(seed);
    eprintln!("{} (wall {:?})", summary(&first), wall.elapsed());
    let wrong = violations(&first);
    assert!(
        wrong.is_empty(),
        "seed {seed}: {} violations:\n{}\n{}\n{}",
        wrong.len(),
        wrong.join("\n"),
        summary(&first),
        replay(seed)
    );

    let second = run_scenario(seed);
    if first.obs.final_tasks != second.obs.final_tasks {
        let differ: Vec<String> = first
            .obs
            .final_tasks
            .iter()
            .zip(&second.obs.final_tasks)
            .filter(|(a, b)| a != b)
            .map(|(a, b)| format!("first:  {a}\nsecond: {b}"))
            .take(3)
            .collect();
        panic!(
            "same seed {seed}, different task records:\n{}\n{}",
            differ.join("\n"),
            replay(seed)
        );
    }
    eprintln!(
        "determinism: identical records for seed {seed} (wall {:?})",
        wall.elapsed()
    );
}

/// Liveness of the pool under the same faults: a crashed worker that restarts and
/// a worker whose partition is repaired both register again, so at the end (at
/// least eight seconds after the last fault healed, sixteen after the repair)
/// every worker is back in the gateway's pool.
#[test]
fn every_worker_is_back_in_the_pool_after_its_fault_heals() {
    let seed = root_seed(2024);
    eprintln!("seed {seed} ({})", replay(seed));
    let outcome = run_scenario(seed);
    let all: BTreeSet<String> = (0..WORKERS).map(|i| format!("worker-{i}")).collect();
    let (at, last) = outcome.obs.pool.last().cloned().unwrap_or_default();
    let last: BTreeSet<String> = last.into_iter().collect();
    let missing: Vec<&String> = all.difference(&last).collect();
    assert!(
        missing.is_empty(),
        "seed {seed}: {missing:?} not back in the pool by {:?} (pool since {at} ms: {last:?}); \
         pool over time: {:?}\n{}",
        outcome.elapsed,
        outcome.obs.pool,
        replay(seed)
    );
}
