//! Hostile hosts for adversarial scenarios (`[security]`): outsiders without the
//! cluster's swarm key that try to join, claim the gateway's role and register
//! as workers, and a tap that replays captured broadcasts and floods datagrams.
//!
//! They run the real stack (membership, discovery, a worker node) with the wrong
//! key or none, so what keeps them out is the code under test, not the harness.

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ww::boot::DEFAULT_GROUP;
use ww::exec::RunReport;
use ww::exec::{Sandbox, SandboxConfig};
use ww::transport::{Datagram, SimConfig, SimTransport, SwarmKey, Transport, SIM_BROADCAST_GROUP};
use ww_sched::schema::worker_capnp::worker;
use ww_sched::tasks::hash_puzzle;
use ww_sched::worker::node::{register_worker, Callers, WorkerNode};
use ww_sched::worker::wire;
use ww_sched::worker::WorkerConfig;

use super::tasks::{gateway_peer, stay_registered, TaskObservations, WORKER_RPC};
use crate::cluster::{join_cluster, node_address, now, Observations};
use crate::derive_seed;
use crate::scenario::format::{outsider_name, rogue_name, SecuritySpec, GATEWAY_HOST, TAP_HOST};
use crate::scenario::verdict::{Check, Class};
use ww::transport::PeerId;

type HostResult = Result<(), Box<dyn std::error::Error>>;

/// Largest datagram the tap captures.
const CAPTURE_BYTES_MAX: usize = 4096;
/// Captured datagrams the tap holds for replay; older ones are dropped first.
const CAPTURED_MAX: usize = 4096;

/// What the hostile hosts did, for the verdict's detail line.
#[derive(Clone, Debug, Default)]
pub struct AdversaryLog {
    /// Datagrams the tap captured from the cluster's broadcasts.
    pub captured: u64,
    /// Captured datagrams it sent again.
    pub replayed: u64,
    /// Garbage datagrams it sent.
    pub flooded: u64,
    /// Runs the rogue workers answered with a report that cannot be true.
    pub impossible_reports: u64,
    /// Runs the rogue workers answered with a false result.
    pub forged_reports: u64,
}

/// The log, shared between the hosts and the runner.
pub type SharedAdversaryLog = Arc<Mutex<AdversaryLog>>;

/// The key an outsider holds: none for even ones, another cluster's for odd ones.
fn outsider_key(seed: u64, i: usize) -> Option<SwarmKey> {
    (i % 2 == 1).then(|| crate::cluster_key(derive_seed(seed, "another cluster")))
}

/// Adds the outsiders, rogue workers and the tap `spec` asks for.
pub fn add_hosts(
    sim: &mut turmoil::Sim<'_>,
    seed: u64,
    spec: &SecuritySpec,
    has_gateway: bool,
) -> SharedAdversaryLog {
    let log = SharedAdversaryLog::default();
    for i in 0..spec.rogue_workers {
        let name = rogue_name(i);
        let (keyed, log) = (spec.swarm_key, log.clone());
        sim.host(name.clone(), move || {
            run_rogue(seed, name.clone(), keyed, log.clone())
        });
    }
    for i in 0..spec.outsiders {
        let name = outsider_name(i);
        let starts = Arc::new(AtomicU64::new(0));
        sim.host(name.clone(), move || {
            run_outsider(seed, i, name.clone(), has_gateway, starts.clone())
        });
    }
    if spec.tap {
        let (spec, log) = (spec.clone(), log.clone());
        sim.host(TAP_HOST, move || run_tap(seed, spec.clone(), log.clone()));
    }
    log
}

/// An outsider: announces itself as gateway and worker, serves a worker, and
/// keeps trying to register it with the real gateway.
async fn run_outsider(
    seed: u64,
    i: usize,
    name: String,
    has_gateway: bool,
    starts: Arc<AtomicU64>,
) -> HostResult {
    let start = starts.fetch_add(1, Ordering::SeqCst);
    let mut config = SimConfig::from_seed(seed, &name);
    config.swarm_key = outsider_key(seed, i);
    let (transport, _pubsub, _membership) = join_cluster(seed, &name, start, config, |config| {
        // Both roles a real node could trust it for.
        config.meta = vec![
            ("role".into(), "gateway".into()),
            ("role".into(), "worker".into()),
        ];
    })
    .await?;
    if !has_gateway {
        return std::future::pending().await;
    }
    transport.add_peer_address(gateway_peer(seed), node_address(GATEWAY_HOST))?;
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()));
    let worker = WorkerConfig {
        // Claims many slots, to draw as many runs as it can.
        slots: 64,
        ..WorkerConfig::default()
    };
    let node = WorkerNode::start(
        transport,
        sandbox,
        worker,
        &[],
        Callers::Only(Default::default()),
    )
    .await?;
    stay_registered(node, seed).await;
    Ok(())
}

/// Results in a report that cannot be true: more than the gateway records.
const IMPOSSIBLE_RESULTS: usize = 65;
/// The false answer a rogue worker gives.
pub const FORGED_RESULT: i64 = -7;
/// How long a rogue waits without a ping before it registers again.
const ROGUE_SILENCE_MAX: Duration = Duration::from_secs(10);

/// A worker that runs nothing: every other run gets a report that cannot be
/// true, the others a false result with a plausible fuel count.
struct Rogue {
    log: SharedAdversaryLog,
    runs: std::cell::Cell<u64>,
    last_ping: Rc<std::cell::Cell<tokio::time::Instant>>,
}

impl worker::Server for Rogue {
    async fn run(
        self: Rc<Self>,
        _: worker::RunParams,
        mut results: worker::RunResults,
    ) -> Result<(), capnp::Error> {
        let n = self.runs.get();
        self.runs.set(n + 1);
        let impossible = n.is_multiple_of(2);
        let report = RunReport {
            outcome: Ok(if impossible {
                vec![0; IMPOSSIBLE_RESULTS]
            } else {
                vec![FORGED_RESULT]
            }),
            stdout: Vec::new(),
            stderr: Vec::new(),
            fuel_used: 1_000,
        };
        {
            let mut log = self.log.lock().unwrap_or_else(|p| p.into_inner());
            if impossible {
                log.impossible_reports += 1;
            } else {
                log.forged_reports += 1;
            }
        }
        wire::write_report(&report, results.get().init_report());
        Ok(())
    }

    async fn ping(
        self: Rc<Self>,
        _: worker::PingParams,
        _: worker::PingResults,
    ) -> Result<(), capnp::Error> {
        self.last_ping.set(tokio::time::Instant::now());
        Ok(())
    }
}

/// A rogue worker: a key holder (in a keyed scenario) that registers a
/// [`Rogue`] with 2 slots and registers again when the gateway goes silent.
async fn run_rogue(seed: u64, name: String, keyed: bool, log: SharedAdversaryLog) -> HostResult {
    let transport = SimTransport::new(crate::host_config(seed, &name, keyed));
    transport.add_peer_address(gateway_peer(seed), node_address(GATEWAY_HOST))?;
    loop {
        let last_ping = Rc::new(std::cell::Cell::new(tokio::time::Instant::now()));
        let rogue = Rogue {
            log: log.clone(),
            runs: std::cell::Cell::new(0),
            last_ping: last_ping.clone(),
        };
        let client: worker::Client = capnp_rpc::new_client(rogue);
        if let Ok(connection) =
            register_worker(&transport, gateway_peer(seed), client, 2, WORKER_RPC).await
        {
            while !connection.is_lost() && last_ping.get().elapsed() < ROGUE_SILENCE_MAX {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The tap: captures every broadcast it hears (heartbeats, discovery), replays
/// each `replay_after_ms` later, and floods garbage at `flood_per_s`.
async fn run_tap(seed: u64, spec: SecuritySpec, log: SharedAdversaryLog) -> HostResult {
    let transport = SimTransport::new(SimConfig::from_seed(seed, TAP_HOST));
    let broadcasts = transport
        .bind_multicast(SIM_BROADCAST_GROUP, Ipv4Addr::UNSPECIFIED)
        .await?;
    let discovery = transport
        .bind_multicast(DEFAULT_GROUP, Ipv4Addr::UNSPECIFIED)
        .await?;
    let sender = transport
        .bind_datagram((Ipv4Addr::UNSPECIFIED, 0).into())
        .await?;
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, "tap"));
    let replay_after = Duration::from_millis(spec.replay_after_ms);
    let mut captured: VecDeque<(Duration, SocketAddr, Vec<u8>)> = VecDeque::new();
    let flood_every = (spec.flood_per_s > 0)
        .then(|| Duration::from_micros(1_000_000 / u64::from(spec.flood_per_s)));
    let mut flood = tokio::time::interval(flood_every.unwrap_or(Duration::from_secs(3600)));
    let mut replay = tokio::time::interval(Duration::from_millis(50));
    let mut broadcast_buffer = vec![0u8; CAPTURE_BYTES_MAX];
    let mut discovery_buffer = vec![0u8; CAPTURE_BYTES_MAX];
    // The tap hears its own sends too; capturing those would replay replays.
    let own_ip = turmoil::lookup(TAP_HOST);
    loop {
        tokio::select! {
            // Fixed branch order: tokio picks randomly otherwise, unseeded by turmoil.
            biased;
            heard = broadcasts.recv_from(&mut broadcast_buffer) => {
                let (len, from) = heard?;
                if from.ip() != own_ip {
                    capture(&mut captured, &log, SIM_BROADCAST_GROUP.into(), &broadcast_buffer[..len]);
                }
            }
            heard = discovery.recv_from(&mut discovery_buffer) => {
                let (len, from) = heard?;
                if from.ip() != own_ip {
                    capture(&mut captured, &log, DEFAULT_GROUP.into(), &discovery_buffer[..len]);
                }
            }
            _ = replay.tick() => {
                while captured.front().is_some_and(|(at, _, _)| now() >= *at + replay_after) {
                    let Some((_, target, bytes)) = captured.pop_front() else { break };
                    if sender.send_to(&bytes, target).await.is_ok() {
                        log.lock().unwrap_or_else(|p| p.into_inner()).replayed += 1;
                    }
                }
            }
            _ = flood.tick(), if flood_every.is_some() => {
                let mut garbage = vec![0u8; 1 + (rng.next_u32() % 512) as usize];
                rng.fill_bytes(&mut garbage);
                let target: SocketAddr = if rng.next_u32() % 2 == 0 {
                    DEFAULT_GROUP.into()
                } else {
                    SIM_BROADCAST_GROUP.into()
                };
                if sender.send_to(&garbage, target).await.is_ok() {
                    log.lock().unwrap_or_else(|p| p.into_inner()).flooded += 1;
                }
            }
        }
    }
}

/// Holds one heard datagram for replay, dropping the oldest beyond the bound.
fn capture(
    captured: &mut VecDeque<(Duration, SocketAddr, Vec<u8>)>,
    log: &SharedAdversaryLog,
    target: SocketAddr,
    bytes: &[u8],
) {
    if captured.len() >= CAPTURED_MAX {
        captured.pop_front();
    }
    captured.push_back((now(), target, bytes.to_vec()));
    log.lock().unwrap_or_else(|p| p.into_inner()).captured += 1;
}

/// Safety `outsiders_excluded`: no outsider (nor the tap) ever joined a
/// member's view, and no run was ever handed to one.
pub fn outsiders_excluded(
    members: &Observations,
    tasks: Option<&TaskObservations>,
    hostile: &BTreeMap<PeerId, String>,
    log: &AdversaryLog,
) -> Check {
    let mut wrong = Vec::new();
    for (peer, (observer, at)) in &members.joined {
        if let Some(host) = hostile.get(peer) {
            wrong.push(format!(
                "{observer} admitted {host} to its view at {:.3}s",
                at.as_secs_f64()
            ));
        }
    }
    let mut runs = 0usize;
    if let Some(tasks) = tasks {
        for (id, seen) in &tasks.seen {
            let latest = seen
                .latest
                .iter()
                .flat_map(|t| t["runs"].as_array().into_iter().flatten());
            for run in seen.final_runs.values().chain(latest) {
                runs += 1;
                let worker = run["worker"].as_str().unwrap_or("");
                if let Some(host) = hostile.iter().find(|(p, _)| p.to_string() == worker) {
                    wrong.push(format!("{id}: a run was handed to {}", host.1));
                }
            }
        }
    }
    Check::new(
        "outsiders_excluded",
        Class::Safety,
        wrong,
        format!(
            "{} hostile hosts; {} joins and {runs} runs checked; the tap captured {}, \
             replayed {} and flooded {} datagrams",
            hostile.len(),
            members.joined.len(),
            log.captured,
            log.replayed,
            log.flooded
        ),
    )
}

/// Safety `forgeries_attributed`: every recorded result that is not the task's
/// true answer was run by one of `forgers` and is their plausible forgery
/// ([`FORGED_RESULT`]): their reports that cannot be true were never recorded.
pub fn forgeries_attributed(
    tasks: &TaskObservations,
    forgers: &BTreeMap<PeerId, String>,
    log: &AdversaryLog,
) -> Check {
    let forger_ids: BTreeMap<String, &String> =
        forgers.iter().map(|(p, n)| (p.to_string(), n)).collect();
    let mut wrong = Vec::new();
    let (mut forged_recorded, mut checked) = (0usize, 0usize);
    for (id, seen) in &tasks.seen {
        let Some((plan, _)) = tasks.acked.get(id) else {
            continue;
        };
        let answer = serde_json::json!([i64::from(hash_puzzle(plan.input, plan.difficulty))]);
        for (index, run) in &seen.final_runs {
            checked += 1;
            if run["status"] != "succeeded" || run["results"] == answer {
                continue;
            }
            let worker = run["worker"].as_str().unwrap_or("");
            let results = run["results"].as_array().map_or(0, Vec::len);
            match forger_ids.get(worker) {
                Some(_) if run["results"] == serde_json::json!([FORGED_RESULT]) => {
                    forged_recorded += 1
                }
                Some(rogue) => wrong.push(format!(
                    "{id}/{index}: {rogue}'s report that cannot be true was recorded \
                     ({results} of the {IMPOSSIBLE_RESULTS} results it sent)"
                )),
                None => wrong.push(format!(
                    "{id}/{index}: results {} (true answer {answer}) from {worker}, not a rogue",
                    run["results"]
                )),
            }
        }
    }
    Check::new(
        "forgeries_attributed",
        Class::Safety,
        wrong,
        format!(
            "{checked} terminal runs; rogues sent {} impossible and {} false reports, \
             {forged_recorded} false results recorded, each with its rogue",
            log.impossible_reports, log.forged_reports
        ),
    )
}
