//! Chaos on a LAN of network namespaces: a gateway and three workers, real
//! `ww-sched` processes on four "hosts" (namespaces joined by a bridge) that
//! find each other by multicast on the LAN interface under a swarm key,
//! while a client submits, cancels and reads tasks over HTTP and a seeded
//! schedule injects faults: SIGKILL and restart of any node, SIGSTOP/SIGCONT,
//! a host cut off (its link down), a degraded link (netem loss and delay, or
//! a tbf rate limit where the kernel lacks sch_netem). At the end everything
//! is healed, every acknowledged task must finish, and the history checker
//! (`ww_sched::history`) judges every operation the client made.
//!
//! Needs root and iproute2 (`ip netns`, `tc`); fails, saying so, without them.
//! `WW_NETNS_SECS` sets the chaos phase (default 90 s: about two minutes in
//! all), `WW_NETNS_SEED` the fault schedule's seed (default 1), `WW_NETNS_BIN`
//! the `ww-sched` binary the nodes run (default: the one cargo built).

mod netns_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use netns_support::client::Client;
use netns_support::{clean_leftovers, preflight, Lan, NsProc, PREFIX};
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};
use ww_sched::history::{check, is_terminal, CheckConfig, History, OpKind, Operation, Outcome};

/// The gateway's clock (wall clock at its start, advanced by the monotonic
/// clock) against the client's (the system clock): both read the one host
/// clock, so they differ by drift over the run and by rounding to ms.
const CLOCK_TOLERANCE: Duration = Duration::from_millis(250);
/// Deadline of one HTTP request.
const HTTP_TIMEOUT: Duration = Duration::from_secs(4);
/// How long, after the chaos, every acknowledged task has to finish.
const DRAIN: Duration = Duration::from_secs(120);

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The processes of the cluster and how to start them again.
struct Cluster {
    lan: Lan,
    dir: PathBuf,
    key: String,
    ns: String,
    /// Index 0: the gateway; 1..=3: the workers.
    nodes: Vec<Option<NsProc>>,
    http_port: u16,
}

impl Cluster {
    fn multicast(ip: &str) -> String {
        format!("/ip4/228.8.8.8/udp/8822/multicast/{ip}")
    }

    fn start(&mut self, n: usize) -> Result<(), String> {
        let host = self.lan.hosts[n].clone();
        let log = self.dir.join(format!("node{n}.log"));
        let discover = Self::multicast(&host.ip);
        let dir = self.dir.clone();
        let path = |p: &Path| p.to_str().expect("utf-8 path").to_string();
        let proc = if n == 0 {
            let http = format!("{}:{}", host.ip, self.http_port);
            let data = path(&dir.join("gateway"));
            let args = [
                "gateway",
                "--swarm-key",
                &self.key,
                "--http",
                &http,
                "--data",
                &data,
                "--discover",
                &discover,
                "--ns",
                &self.ns,
            ];
            let mut proc = NsProc::start(&host, &args, &log);
            let url = proc.wait_for("http on http://", Duration::from_secs(60))?;
            self.http_port = url
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("no port in {url}"))?;
            proc
        } else {
            let key = path(&dir.join(format!("worker{n}.key")));
            let args = [
                "worker",
                "--swarm-key",
                &self.key,
                "--key",
                &key,
                "--discover",
                &discover,
                "--ns",
                &self.ns,
                "--slots",
                "2",
            ];
            let mut proc = NsProc::start(&host, &args, &log);
            proc.wait_for("peer id: ", Duration::from_secs(60))?;
            proc
        };
        self.nodes[n] = Some(proc);
        Ok(())
    }

    fn kill(&mut self, n: usize) {
        if let Some(mut proc) = self.nodes[n].take() {
            proc.kill();
        }
    }
}

/// What the submitting client shares with the reader.
#[derive(Default)]
struct Known {
    acked: Vec<String>,
}

/// Client 0: submits tasks (retrying a submission under its key), cancels
/// about a third of them a little later.
fn submitter(
    client: Client,
    module: String,
    known: Arc<Mutex<Known>>,
    stop: Arc<AtomicBool>,
    seed: u64,
) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5u64);
    let mut pick = move |n: u64| rng.next_u64() % n.max(1);
    let mut cancels: Vec<(Instant, String)> = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let key = format!("k-{n}");
        let body = json!({
            "description": format!("netns {key}"),
            "module": module,
            "args": [1 + pick(10_000), pick(3)],
            "start_ms": pick(1_000),
            "delay_ms": 300 + pick(1_500),
            "repeats": 1 + pick(4),
        });
        for _ in 0..5 {
            if let Some(id) = client.submit(&key, &body) {
                known.lock().unwrap().acked.push(id.clone());
                if pick(100) < 35 {
                    let after = Duration::from_millis(pick(3_000));
                    cancels.push((Instant::now() + after, id));
                }
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        let due: Vec<String> = cancels
            .iter()
            .filter(|(at, _)| *at <= Instant::now())
            .map(|(_, id)| id.clone())
            .collect();
        cancels.retain(|(at, _)| *at > Instant::now());
        for id in due {
            for _ in 0..3 {
                if client.cancel(&id) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        std::thread::sleep(Duration::from_millis(100 + pick(300)));
    }
}

/// Client 1: reads acknowledged tasks at random, and lists every task now
/// and then.
fn reader(client: Client, known: Arc<Mutex<Known>>, stop: Arc<AtomicBool>, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7u64);
    let mut round = 0u64;
    while !stop.load(Ordering::SeqCst) {
        round += 1;
        let op = if round.is_multiple_of(25) {
            client.list_op(1)
        } else {
            let id = {
                let known = known.lock().unwrap();
                if known.acked.is_empty() {
                    None
                } else {
                    // Mostly recent tasks, where things change.
                    let len = known.acked.len() as u64;
                    let back =
                        rng.next_u64() % len.min(if round.is_multiple_of(3) { len } else { 20 });
                    Some(known.acked[(len - 1 - back) as usize].clone())
                }
            };
            let Some(id) = id else {
                std::thread::sleep(Duration::from_millis(100));
                continue;
            };
            client.read_op(1, &id)
        };
        client.history.lock().unwrap().record(op);
        std::thread::sleep(Duration::from_millis(40));
    }
}

/// The fault kinds, by name.
const FAULTS: [&str; 4] = ["kill_restart", "stop_cont", "link_down", "link_degraded"];

fn uniform(rng: &mut ChaCha8Rng, from_ms: u64, to_ms: u64) -> Duration {
    Duration::from_millis(from_ms + rng.next_u64() % (to_ms - from_ms).max(1))
}

/// Injects faults until `until`, one at a time, each healed before the next.
fn chaos(cluster: &mut Cluster, rng: &mut ChaCha8Rng, until: Instant) -> BTreeMap<String, u64> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    while Instant::now() < until {
        std::thread::sleep(uniform(rng, 500, 2_500));
        let kind = FAULTS[(rng.next_u64() % 4) as usize];
        let node = (rng.next_u64() % 4) as usize;
        let role = if node == 0 { "gateway" } else { "worker" };
        let hold = uniform(rng, 1_000, 6_000);
        match kind {
            "kill_restart" => {
                cluster.kill(node);
                std::thread::sleep(hold / 3);
                if let Err(e) = cluster.start(node) {
                    panic!("restart of node {node} failed: {e}");
                }
            }
            "stop_cont" => {
                let proc = cluster.nodes[node].as_ref().expect("running");
                proc.signal("STOP");
                std::thread::sleep(hold);
                proc.signal("CONT");
            }
            "link_down" => {
                cluster.lan.cut(node).expect("link down");
                std::thread::sleep(hold);
                cluster.lan.heal_cut(node).expect("link up");
            }
            _ => {
                cluster.lan.degrade(node).expect("degrade the link");
                std::thread::sleep(hold);
                cluster.lan.heal_degrade(node);
            }
        }
        *counts.entry(format!("{kind}:{role}")).or_default() += 1;
    }
    counts
}

#[test]
fn chaos_on_a_lan_of_namespaces() {
    if let Err(why) = preflight() {
        panic!("cannot run the network-namespace test: {why}");
    }
    let removed = clean_leftovers();
    if !removed.is_empty() {
        eprintln!("netns: removed leftovers of earlier runs: {removed:?}");
    }
    let secs = env_u64("WW_NETNS_SECS", 90);
    let seed = env_u64("WW_NETNS_SEED", 1);
    eprintln!("netns: chaos for {secs} s, seed {seed} (WW_NETNS_SECS, WW_NETNS_SEED)");
    let pid = std::process::id();
    let dir = std::env::temp_dir().join(format!("{PREFIX}-{pid}-netns"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let lan = Lan::create(4).unwrap_or_else(|e| panic!("cannot build the LAN: {e}"));
    if !lan.netem {
        eprintln!(
            "netns: this kernel lacks sch_netem (`tc qdisc add ... netem` is refused): a \
             degraded link is a tbf rate limit instead of netem loss 20% delay 50ms"
        );
    }
    let (mut cluster, client) = start_cluster(&dir, lan, pid);
    wait_for_workers(&client);
    let module = upload_module(&client);

    let stop = Arc::new(AtomicBool::new(false));
    let known = Arc::new(Mutex::new(Known::default()));
    let threads = [
        {
            let (c, k, s, m) = (client.clone(), known.clone(), stop.clone(), module.clone());
            std::thread::spawn(move || submitter(c, m, k, s, seed))
        },
        {
            let (c, k, s) = (client.clone(), known.clone(), stop.clone());
            std::thread::spawn(move || reader(c, k, s, seed))
        },
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let chaos_start = Instant::now();
    let faults = chaos(
        &mut cluster,
        &mut rng,
        chaos_start + Duration::from_secs(secs),
    );
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().expect("client thread");
    }
    heal(&mut cluster);
    // Wait for every acknowledged task to finish, then read each once more.
    let acked = known.lock().unwrap().acked.clone();
    let mut finals = drain(&client, &acked);
    finals.push(client.list_op(2));
    let history = client.history.lock().unwrap().clone();
    let config = CheckConfig {
        clock_tolerance_ms: CLOCK_TOLERANCE.as_millis() as u64,
        require_final: true,
    };
    let report = check(&history, &finals, &config);
    figures(
        &history,
        &faults,
        &report,
        acked.len(),
        chaos_start.elapsed(),
    );
    for v in &report.violations {
        eprintln!("VIOLATION {v}");
    }
    assert!(
        report.violations.is_empty(),
        "{} violations (logs in {})",
        report.violations.len(),
        dir.display()
    );
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts the four nodes on `lan` (a gateway and three workers, with a swarm
/// key in `dir`); the cluster and a client of its gateway's API.
fn start_cluster(dir: &std::path::Path, lan: Lan, pid: u32) -> (Cluster, Client) {
    let key = dir.join("swarm.key").to_str().unwrap().to_string();
    let out = std::process::Command::new(netns_support::binary())
        .args(["swarm-key", "--out", &key])
        .output()
        .unwrap();
    assert!(out.status.success(), "swarm-key: {out:?}");
    let mut cluster = Cluster {
        lan,
        dir: dir.to_path_buf(),
        key,
        ns: format!("netns-{pid}"),
        nodes: (0..4).map(|_| None).collect(),
        http_port: 0,
    };
    for n in 0..4 {
        cluster
            .start(n)
            .unwrap_or_else(|e| panic!("node {n} did not start: {e}"));
    }
    let token = std::fs::read_to_string(dir.join("gateway/api-token"))
        .expect("the gateway's api token")
        .trim()
        .to_string();
    let client = Client {
        base: format!("http://{}:{}", cluster.lan.hosts[0].ip, cluster.http_port),
        token,
        agent: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(HTTP_TIMEOUT))
            .build()
            .into(),
        history: Arc::default(),
    };
    (cluster, client)
}

/// Every worker registered, found by multicast on the LAN (60 s at most).
fn wait_for_workers(client: &Client) {
    let started = Instant::now();
    loop {
        let workers = client.send("GET", "/workers", None, None);
        if let Ok((200, Value::Array(rows))) = &workers {
            if rows.len() == 3 {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "3 workers did not register within 60 s: {workers:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "netns: 3 workers registered after {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Uploads the hash-puzzle module; its hash.
fn upload_module(client: &Client) -> String {
    let wasm = std::fs::read("tasks/hash-puzzle/hash-puzzle.wasm").unwrap();
    client
        .agent
        .post(&format!("{}/modules", client.base))
        .header("Authorization", &format!("Bearer {}", client.token))
        .header("Content-Type", "application/wasm")
        .send(&wasm[..])
        .unwrap()
        .body_mut()
        .read_json::<Value>()
        .unwrap()["hash"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Heals the LAN: every link up and clean, every process running.
fn heal(cluster: &mut Cluster) {
    for n in 0..4 {
        let _ = cluster.lan.heal_cut(n);
        cluster.lan.heal_degrade(n);
        if let Some(proc) = &cluster.nodes[n] {
            proc.signal("CONT");
        }
        if cluster.nodes[n].as_mut().is_none_or(NsProc::exited) {
            eprintln!("netns: node {n} had exited; starting it again");
            cluster.start(n).expect("restart after the chaos");
        }
    }
}

/// Waits for every acknowledged task to finish (up to `DRAIN`), then reads
/// each once more: the final reads.
fn drain(client: &Client, acked: &[String]) -> Vec<Operation> {
    let drain = Instant::now();
    let mut open: Vec<String> = acked.to_vec();
    while !open.is_empty() && drain.elapsed() < DRAIN {
        open.retain(|id| {
            let op = client.read_op(2, id);
            !op.task_view().is_some_and(|v| is_terminal(&v.status))
        });
        std::thread::sleep(Duration::from_millis(500));
    }
    acked.iter().map(|id| client.read_op(2, id)).collect()
}

/// Prints what the run did: faults by kind, operations by kind and outcome.
fn figures(
    history: &History,
    faults: &BTreeMap<String, u64>,
    report: &ww_sched::history::Report,
    acked: usize,
    took: Duration,
) {
    let mut ops: BTreeMap<String, u64> = BTreeMap::new();
    for op in history.operations() {
        let kind = match op.kind {
            OpKind::Submit { .. } => "submit",
            OpKind::Cancel { .. } => "cancel",
            OpKind::Read { .. } => "read",
            OpKind::List => "list",
        };
        let outcome = match &op.outcome {
            Outcome::Ok(_) => "ok",
            Outcome::Failed(_) => "failed",
            Outcome::Unknown => "unknown",
        };
        *ops.entry(format!("{kind}/{outcome}")).or_default() += 1;
    }
    let injected: u64 = faults.values().sum();
    eprintln!("netns: figures after {:.0} s", took.as_secs_f64());
    eprintln!("netns:   faults injected: {injected} {faults:?}");
    eprintln!("netns:   tasks acknowledged: {acked}");
    eprintln!("netns:   operations: {ops:?}");
    eprintln!(
        "netns:   operations checked: {}, violations: {}",
        report.operations_checked,
        report.violations.len()
    );
}
