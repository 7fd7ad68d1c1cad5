//! The gateway's task ingest rate and its end-to-end run rate.
//!
//! - `gateway_ingest`: `POST /tasks` (JSON, module by hash, far-future start so
//!   nothing is due and no worker is needed) through the real router served by
//!   `axum::serve` on loopback, from a keep-alive `ureq` client on its own OS
//!   thread; versus a bare axum JSON handler served the same way. The gateway is
//!   run twice: with its data directory on disk and on tmpfs (`/dev/shm`), where
//!   redb's fsync costs nothing.
//! - `gateway_runs`: runs per second of a no-op task with 1, 2 and 4 in-process
//!   workers registered through the gateway's channel (as `ww-sched demo` does).
//!   Each iteration submits one task with `RUNS` repeats and `delay_ms` 0 through
//!   the router in process (`tower::ServiceExt::oneshot`, no TCP) and polls
//!   `GET /tasks/{id}` the same way until it is `succeeded`.
//! - `gateway_parts`: what one run costs the gateway: a durable `Store::put_task`
//!   of a task like the one above (disk and tmpfs); for a task of `REPEATS_MAX`
//!   runs, a whole write against a header-and-one-run write (tmpfs); one
//!   `Worker.run` of the no-op module over the transport; and the metric
//!   updates one run costs at most (`metrics_per_run`).
//!
//! One current-thread runtime with a `LocalSet` carries the gateway, its core and
//! every worker, as on a node's RPC thread; sandbox runs go to tokio's blocking
//! pool.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
mod support;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use serde::Deserialize;
use serde_json::{json, Value};
use support::serve_on_loopback;
use tokio::runtime::Runtime;
use tokio::task::LocalSet;
use tower::ServiceExt;
use ww::exec::{Limits, ModuleHash, ModuleRef, RunSpec, Sandbox, SandboxConfig};
use ww::rpc::RpcConfig;
use ww::transport::{Address, Identity, Libp2pConfig, Libp2pTransport, Transport};
use ww_sched::gateway::{Clock, Gateway, GatewayConfig, GatewayMetrics, RunEnded, STORE_FILE};
use ww_sched::sched::types::REPEATS_MAX;
use ww_sched::sched::{
    Batch, Op, RunOutcome, RunStatus, SchedConfig, Schedule, Scheduler, Store, Task, TaskId,
    TaskSpec, WorkerId,
};
use ww_sched::worker::node::{keep_registered, Callers, GatewayLocator, WorkerNode};
use ww_sched::worker::{RemoteWorker, WorkerConfig, WorkerServer};

/// Runs per task in the end-to-end bench.
const RUNS: u32 = 100;
/// 300 days in ms (the limit is a year): a start never due during the bench.
const FAR_FUTURE_MS: u64 = 300 * 24 * 3600 * 1000;

const NOOP_WAT: &str = r#"(module (func (export "run") (result i32) i32.const 0))"#;

fn noop_wasm() -> Vec<u8> {
    wat::parse_str(NOOP_WAT).unwrap()
}

fn run<F: std::future::Future>(runtime: &Runtime, local: &LocalSet, future: F) -> F::Output {
    local.block_on(runtime, future)
}

fn wall_clock() -> Clock {
    Rc::new(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    })
}

/// A fresh, empty directory `name` under `root`.
fn fresh_dir(root: &Path, name: &str) -> PathBuf {
    let dir = root.join(format!("ww-sched-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn disk_root() -> PathBuf {
    std::env::temp_dir()
}

fn tmpfs_root() -> PathBuf {
    PathBuf::from("/dev/shm")
}

/// A gateway on its own transport, listening on loopback for workers.
struct Running {
    gateway: Gateway,
    transport: Libp2pTransport,
    address: Address,
    data: PathBuf,
}

async fn start_gateway(data: PathBuf) -> Running {
    let transport = Libp2pTransport::new(Libp2pConfig::new(Identity::generate())).unwrap();
    let address = transport
        .listen(Address::new("/ip4/127.0.0.1/tcp/0"))
        .await
        .unwrap();
    let mut config = GatewayConfig::new(data.clone());
    config.sched.seed = 7;
    // Ingest keeps every accepted task; let it hold all a bench submits.
    config.sched.open_tasks_max = 1_000_000;
    let gateway = Gateway::start(&transport, None, wall_clock(), config)
        .await
        .unwrap();
    Running {
        gateway,
        transport,
        address,
        data,
    }
}

/// One request through the router in process; the status and the JSON answer.
async fn call(router: &Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn upload(router: &Router, wasm: &[u8]) -> String {
    let request = Request::post("/modules")
        .header("content-type", "application/wasm")
        .body(Body::from(wasm.to_vec()))
        .unwrap();
    let (status, answer) = call(router, request).await;
    assert_eq!(status, StatusCode::CREATED, "{answer}");
    answer["hash"].as_str().unwrap().to_string()
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    address
}

/// The bare baseline: parses a body like a submission and answers 201.
#[derive(Deserialize)]
#[allow(dead_code)]
struct BareTask {
    description: String,
    module: String,
    args: Vec<i64>,
    start_ms: u64,
    repeats: u32,
}

fn bare_router() -> Router {
    let counter = Arc::new(AtomicU64::new(0));
    Router::new().route(
        "/tasks",
        post(move |Json(task): Json<BareTask>| {
            let id = counter.fetch_add(1, Ordering::Relaxed);
            async move {
                (
                    StatusCode::CREATED,
                    Json(json!({ "id": format!("t{id}"), "status": "pending", "repeats": task.repeats })),
                )
            }
        }),
    )
}

/// Post `body` to `url` this many times, then answer the time taken.
type Job = (
    String,
    Arc<String>,
    u64,
    tokio::sync::oneshot::Sender<Duration>,
);

/// A keep-alive HTTP client on its own thread, doing one [`Job`] at a time.
struct Client {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl Client {
    fn start() -> Self {
        let (jobs, incoming) = std::sync::mpsc::channel::<Job>();
        std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(60)))
                .build()
                .into();
            for (url, body, iters, done) in incoming {
                let started = Instant::now();
                for _ in 0..iters {
                    let mut response = agent
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .send(body.as_bytes())
                        .unwrap();
                    let status = response.status();
                    let text = response.body_mut().read_to_string().unwrap();
                    assert_eq!(status.as_u16(), 201, "{text}");
                }
                let _ = done.send(started.elapsed());
            }
        });
        Client { jobs }
    }
}

/// Clients on their own threads, each sending its share of the requests at once
/// (with more than one: concurrent submissions, which group commit can batch).
struct Clients(Vec<Client>);

impl Clients {
    fn start(count: usize) -> Self {
        Clients((0..count).map(|_| Client::start()).collect())
    }

    fn post(
        &self,
        runtime: &Runtime,
        local: &LocalSet,
        url: &str,
        body: &Arc<String>,
        iters: u64,
    ) -> Duration {
        let count = self.0.len() as u64;
        let answers: Vec<_> = self
            .0
            .iter()
            .enumerate()
            .map(|(i, client)| {
                let share = iters / count + u64::from((i as u64) < iters % count);
                let (done, answer) = tokio::sync::oneshot::channel();
                client
                    .jobs
                    .send((url.to_string(), body.clone(), share, done))
                    .unwrap();
                answer
            })
            .collect();
        run(runtime, local, async {
            let mut longest = Duration::ZERO;
            for answer in answers {
                longest = longest.max(answer.await.unwrap());
            }
            longest
        })
    }
}

/// Sends `iters` requests with `body` to `url` and returns how long they took.
type PostFn<'a> = dyn Fn(&str, &Arc<String>, u64) -> Duration + 'a;

/// Concurrent clients in the ingest bench.
const INGEST_CLIENTS: usize = 16;

fn ingest(c: &mut Criterion, runtime: &Runtime, local: &LocalSet) {
    let client = Clients::start(1);
    let clients = Clients::start(INGEST_CLIENTS);
    let disk = run(
        runtime,
        local,
        start_gateway(fresh_dir(&disk_root(), "ingest")),
    );
    let tmpfs = run(
        runtime,
        local,
        start_gateway(fresh_dir(&tmpfs_root(), "ingest")),
    );
    let wasm = noop_wasm();
    let mut targets = Vec::new();
    for (name, gateway) in [("gateway_disk", &disk), ("gateway_tmpfs", &tmpfs)] {
        let router = gateway.gateway.router();
        let hash = run(runtime, local, upload(&router, &wasm));
        let address = run(runtime, local, serve(router));
        let body = json!({
            "description": "ingest bench",
            "module": hash,
            "args": [1, 2],
            "start_ms": FAR_FUTURE_MS,
            "repeats": 1,
        });
        targets.push((name, address, Arc::new(body.to_string())));
    }
    let bare = run(runtime, local, serve(bare_router()));
    let bare_body = json!({
        "description": "ingest bench",
        "module": "00".repeat(32),
        "args": [1, 2],
        "start_ms": FAR_FUTURE_MS,
        "repeats": 1,
    });
    targets.insert(0, ("bare_axum", bare, Arc::new(bare_body.to_string())));

    let groups: [(&str, &PostFn); 2] = [
        ("gateway_ingest", &|url, body, iters| {
            client.post(runtime, local, url, body, iters)
        }),
        ("gateway_ingest_16_clients", &|url, body, iters| {
            clients.post(runtime, local, url, body, iters)
        }),
    ];
    for (group_name, post) in groups {
        let mut group = c.benchmark_group(group_name);
        group.throughput(Throughput::Elements(1));
        group.warm_up_time(Duration::from_secs(1));
        group.measurement_time(Duration::from_secs(5));
        for (name, address, body) in &targets {
            let url = format!("http://{address}/tasks");
            group.bench_function(*name, |b| b.iter_custom(|iters| post(&url, body, iters)));
        }
        group.finish();
    }
    for running in [disk, tmpfs] {
        let data = running.data.clone();
        drop(running);
        let _ = std::fs::remove_dir_all(data);
    }
}

/// A gateway and `workers` registered workers, the no-op module uploaded.
struct Cluster {
    running: Running,
    hash: String,
    registrations: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for registration in &self.registrations {
            registration.abort();
        }
    }
}

async fn start_cluster(root: &Path, workers: usize) -> Cluster {
    let running = start_gateway(fresh_dir(root, &format!("runs-{workers}"))).await;
    let peer = running.transport.local_peer_id();
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()));
    let loopback = Address::new("/ip4/127.0.0.1/tcp/0");
    let mut registrations = Vec::new();
    for _ in 0..workers {
        let transport = Libp2pTransport::new(Libp2pConfig::new(Identity::generate())).unwrap();
        transport
            .add_peer_address(peer, running.address.clone())
            .unwrap();
        // Default slots, as `ww-sched worker` starts them: one per core.
        let config = WorkerConfig::default();
        let node = Rc::new(
            WorkerNode::start(
                transport,
                sandbox.clone(),
                config,
                std::slice::from_ref(&loopback),
                Callers::Only(Default::default()),
            )
            .await
            .unwrap(),
        );
        registrations.push(tokio::task::spawn_local(keep_registered(
            node,
            GatewayLocator::Peer(peer),
            None,
            RpcConfig::default(),
        )));
    }
    let router = running.gateway.router();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, rows) = call(
            &router,
            Request::get("/workers").body(Body::empty()).unwrap(),
        )
        .await;
        if rows.as_array().map_or(0, Vec::len) == workers {
            break;
        }
        assert!(Instant::now() < deadline, "workers did not register");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let hash = upload(&router, &noop_wasm()).await;
    let cluster = Cluster {
        running,
        hash,
        registrations,
    };
    // Warm up: the first run sends the module to each worker.
    run_task(&cluster, 8).await;
    cluster
}

/// Submits one task of `repeats` no-op runs and waits until it succeeded.
async fn run_task(cluster: &Cluster, repeats: u32) -> Duration {
    let router = cluster.running.gateway.router();
    let body = json!({
        "description": "runs bench",
        "module": cluster.hash,
        "repeats": repeats,
        "delay_ms": 0,
    });
    let started = Instant::now();
    let request = Request::post("/tasks")
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let (status, task) = call(&router, request).await;
    assert_eq!(status, StatusCode::CREATED, "{task}");
    let url = format!("/tasks/{}", task["id"].as_str().unwrap());
    loop {
        let (_, task) = call(&router, Request::get(&url).body(Body::empty()).unwrap()).await;
        match task["status"].as_str().unwrap_or("") {
            "succeeded" => return started.elapsed(),
            "failed" | "cancelled" => panic!("task ended {task}"),
            _ => tokio::time::sleep(Duration::from_micros(500)).await,
        }
    }
}

fn runs(c: &mut Criterion, runtime: &Runtime, local: &LocalSet) {
    let mut group = c.benchmark_group("gateway_runs");
    group.throughput(Throughput::Elements(u64::from(RUNS)));
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for (medium, root) in [("disk", disk_root()), ("tmpfs", tmpfs_root())] {
        for workers in [1, 2, 4] {
            let cluster = run(runtime, local, start_cluster(&root, workers));
            group.bench_function(format!("{medium}_workers_{workers}"), |b| {
                b.iter_custom(|iters| {
                    run(runtime, local, async {
                        let mut total = Duration::ZERO;
                        for _ in 0..iters {
                            total += run_task(&cluster, RUNS).await;
                        }
                        total
                    })
                })
            });
            let data = cluster.running.data.clone();
            drop(cluster);
            let _ = std::fs::remove_dir_all(data);
        }
    }
    group.finish();
}

/// A task like the run bench's: `RUNS` runs on one worker, all but the last
/// succeeded with the no-op's answer (so it is unfinished and may be written
/// again), built by the scheduler so that `gateway_parts` runs alone.
fn open_task() -> Task {
    let id = TaskId::parse("sample").expect("id");
    let worker = WorkerId::from(Identity::from_secret([1; 32]).peer_id());
    let mut sched = Scheduler::new(SchedConfig::default());
    sched.worker_joined(0, &worker, RUNS);
    let spec = TaskSpec {
        id: id.clone(),
        description: String::new(),
        module_hash: ModuleHash::of(&noop_wasm()).0,
        export: "run".into(),
        args: Vec::new(),
        fuel_max: 0,
        memory_pages_max: 0,
        duration_ms: 30_000,
        schedule: Schedule {
            start_ms: 0,
            delay_ms: 0,
            repeats: RUNS,
        },
        completions_initial: 0,
        idempotency_key: None,
    };
    sched.submit(0, spec).expect("submit");
    for index in 0..RUNS - 1 {
        let outcome = RunOutcome::Succeeded {
            results: vec![0],
            stdout: String::new(),
            fuel_used: 1,
        };
        sched.run_finished(1, &id, index, 1, outcome);
    }
    sched.task(&id).expect("task").clone()
}

fn parts(c: &mut Criterion, runtime: &Runtime, local: &LocalSet) {
    let mut group = c.benchmark_group("gateway_parts");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(3));
    let task = open_task();
    for (medium, root) in [("disk", disk_root()), ("tmpfs", tmpfs_root())] {
        let dir = fresh_dir(&root, "store");
        let store = Store::open(&dir.join(STORE_FILE)).unwrap();
        store.put_module(&noop_wasm(), 0).unwrap();
        group.bench_function(format!("put_task_{}_runs_{medium}", RUNS), |b| {
            b.iter(|| store.put_task(&task).unwrap())
        });
        drop(store);
        let _ = std::fs::remove_dir_all(dir);
    }
    // A task at REPEATS_MAX: writing it whole on every change, as layout 1
    // did, against writing its header and the one run that changed.
    let mut big = task.clone();
    big.runs = (0..REPEATS_MAX)
        .map(|index| {
            let mut run = task.runs[0].clone();
            run.index = index;
            run
        })
        .collect();
    let dir = fresh_dir(&tmpfs_root(), "store-big");
    let store = Store::open(&dir.join(STORE_FILE)).unwrap();
    store.put_module(&noop_wasm(), 0).unwrap();
    store.put_task(&big).unwrap();
    group.bench_function(format!("put_task_{REPEATS_MAX}_runs_whole_tmpfs"), |b| {
        b.iter(|| store.put_task(&big).unwrap())
    });
    group.bench_function(format!("put_changes_1_of_{REPEATS_MAX}_runs_tmpfs"), |b| {
        b.iter(|| {
            let change = Op::PutTask {
                header: Box::new(big.header()),
                runs: vec![big.runs[7].clone()],
                new: false,
            };
            store.commit(&Batch { ops: vec![change] }).unwrap()
        })
    });
    drop(store);
    let _ = std::fs::remove_dir_all(dir);
    let (_keep, remote) = run(runtime, local, remote_worker());
    let spec = RunSpec {
        module: ModuleRef::Hash(ModuleHash::of(&noop_wasm())),
        export: "run".into(),
        args: Vec::new(),
        limits: Limits::default(),
    };
    group.bench_function("worker_run_noop_rpc", |b| {
        b.iter_custom(|iters| {
            run(runtime, local, async {
                let started = Instant::now();
                for _ in 0..iters {
                    let report = remote.run(&spec).await.unwrap();
                    assert!(report.outcome.is_ok());
                }
                started.elapsed()
            })
        })
    });
    let sandbox = Sandbox::new(SandboxConfig::default());
    let mut with_bytes = spec.clone();
    with_bytes.module = ModuleRef::Bytes(noop_wasm());
    assert!(sandbox.run(&with_bytes).outcome.is_ok());
    group.bench_function("sandbox_run_noop", |b| {
        b.iter(|| assert!(sandbox.run(&spec).outcome.is_ok()))
    });
    // What metrics add to one run, at most: its dispatch (queue wait), its
    // end (status, duration), one API request and one commit counted (the
    // runs bench has fewer requests and commits than runs).
    let metrics = GatewayMetrics::new();
    let ended = RunEnded {
        status: RunStatus::Succeeded,
        started_ms: Some(1_000),
        finished_ms: Some(1_003),
    };
    group.bench_function("metrics_per_run", |b| {
        b.iter(|| {
            metrics.run_dispatched(1, 998, 1_000);
            metrics.run_ended(std::hint::black_box(&ended));
            metrics.request_answered("/tasks/{id}", 200);
            metrics.committed(Duration::from_micros(300));
        })
    });
    group.finish();
}

/// A worker behind the transport, with the no-op module cached.
async fn remote_worker() -> (Vec<Box<dyn std::any::Any>>, RemoteWorker) {
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()));
    let config = WorkerConfig {
        slots: 1,
        ..WorkerConfig::default()
    };
    let pair = serve_on_loopback(
        &ww_sched::worker::worker_protocol(),
        WorkerServer::new(sandbox, config).into_client().client,
    )
    .await;
    let remote = RemoteWorker::connect(&pair.caller, pair.server_peer, RpcConfig::default())
        .await
        .unwrap();
    let first = RunSpec {
        module: ModuleRef::Bytes(noop_wasm()),
        export: "run".into(),
        args: Vec::new(),
        limits: Limits::default(),
    };
    assert!(remote.run(&first).await.unwrap().outcome.is_ok());
    let keep: Vec<Box<dyn std::any::Any>> = vec![Box::new(pair)];
    (keep, remote)
}

fn bench(c: &mut Criterion) {
    let (runtime, local) = support::node_runtime();
    ingest(c, &runtime, &local);
    runs(c, &runtime, &local);
    parts(c, &runtime, &local);
}

criterion_group!(benches, bench);
criterion_main!(benches);
