//! The runner: builds the scenario's hosts in one seeded turmoil simulation,
//! applies the faults on schedule, and judges every invariant asked for.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ww::cluster::{LeaveReason, EXPIRY_TICK_MS};
use ww::transport::PeerId;

use super::faults::{apply, describe, Cause, Disturbances, Window};
use super::format::{
    gateway_name, node_names, outsider_name, rogue_name, secs, worker_name, Fault, FaultKind,
    Scenario, BOOT_HOST, CLIENT_HOST, DHT_CLIENT_HOST, GATEWAY_HOST, STORE_HOST, TAP_HOST,
};
use super::verdict::{stamp, Check, Class, Verdict};
use super::ScenarioError;
use crate::cluster::{
    add_boot_server, add_members_with, boot_server_info, peer_of, MemberSetup, SharedObservations,
    SAMPLE_INTERVAL,
};
use crate::derive_seed;
use crate::disk::SimDisk;
use crate::sabotage::{Sabotage, REPUBLISH_NEVER};
use crate::workload::{
    adversary, anchors, channel, channel_check, pubsub_check, records, shared_check, tasks,
    tasks_check,
};
use crate::Trace;

/// The simulation's tick.
pub const TICK: Duration = Duration::from_millis(10);
/// Datagrams queued per host (turmoil's default of 64 drops survey bursts).
pub const UDP_CAPACITY: usize = 4096;
/// Slack added to a node's TTL when deciding whether a leave was excused by a
/// fault: the membership expires on a tick of `EXPIRY_TICK_MS`, plus one second.
const EXCUSE_SLACK: Duration = Duration::from_millis(EXPIRY_TICK_MS + 1_000);

/// Options of one run beyond the scenario and seed.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    /// A deliberate bug to arm for the run (the checks must catch it).
    pub sabotage: Option<Sabotage>,
}

/// Steps `sim` until simulated time `until`.
fn run_until(sim: &mut turmoil::Sim<'_>, until: Duration) -> Result<(), ScenarioError> {
    while sim.elapsed() < until {
        if let Err(e) = sim.step() {
            return Err(ScenarioError(format!(
                "simulation failed at {:?}: {e}",
                sim.elapsed()
            )));
        }
    }
    Ok(())
}

/// Running membership hosts whose latest sampled view differs from the running set.
fn wrong_views(
    observations: &SharedObservations,
    running: &BTreeSet<String>,
    expected: &BTreeSet<PeerId>,
) -> Vec<String> {
    let observations = observations.lock().unwrap_or_else(|p| p.into_inner());
    running
        .iter()
        .filter_map(|host| match observations.views.get(host) {
            Some((_, view)) if view == expected => None,
            Some((at, view)) => Some(format!(
                "{host} (sampled at {:.3}s) sees {} of {} ({} missing, {} extra)",
                at.as_secs_f64(),
                view.intersection(expected).count(),
                expected.len(),
                expected.difference(view).count(),
                view.difference(expected).count()
            )),
            None => Some(format!("{host} has no view yet")),
        })
        .collect()
}

/// Runs `scenario` under `seed`. `Err` is a harness error (the simulation itself
/// failed); invariant violations are in the [`Verdict`].
pub fn run(scenario: &Scenario, seed: u64) -> Result<Verdict, ScenarioError> {
    run_with(scenario, seed, RunOptions::default())
}

/// [`run`] with options (a sabotage to arm).
pub fn run_with(
    scenario: &Scenario,
    seed: u64,
    options: RunOptions,
) -> Result<Verdict, ScenarioError> {
    if scenario.leases.is_some() {
        return super::leases_run::run(scenario, seed, options.sabotage);
    }
    let mut sim = new_sim(scenario, seed);
    let hosts = add_hosts(&mut sim, scenario, seed, options);
    let trace = Trace::new();
    let mut state = RunState::new(scenario, &hosts.names);

    tasks::take_livelock();
    let outcome = trace.capture(|| -> Result<(), ScenarioError> {
        for fault in &scenario.faults {
            run_until(&mut sim, secs(fault.at_s))?;
            state.fault(&mut sim, seed, &hosts, fault);
        }
        state.judge(&mut sim, scenario, seed, &hosts)
    });
    let mut verdict = state.verdict;
    verdict.simulated = sim.elapsed();
    drop(sim);
    outcome?;
    if let (Some(links), Some(obs)) = (&hosts.store_links, &hosts.task_obs) {
        let obs = obs.lock().unwrap_or_else(|p| p.into_inner());
        let gateway_of_worker = gateway_of_worker(scenario, seed);
        let checks = shared_check::judge(
            &scenario.invariants,
            &trace.run_starts(),
            &gateway_of_worker,
            &links.leases(),
            &obs,
        );
        for check in checks {
            verdict.record(verdict.simulated, check);
        }
    }
    if let Some(livelock) = tasks::take_livelock() {
        return Err(ScenarioError(livelock));
    }
    verdict.digest = trace.digest();
    if let Some(path) = std::env::var_os(TRACE_FILE_ENV) {
        let text: String = trace.lines().iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, text).map_err(|e| {
            ScenarioError(format!("{TRACE_FILE_ENV}={}: {e}", path.to_string_lossy()))
        })?;
    }
    Ok(verdict)
}

/// When set, a run writes its trace (every event it hashed, stamped with
/// simulated time) to this file, to read what happened in a replay.
pub const TRACE_FILE_ENV: &str = "WW_SIM_TRACE_FILE";

/// Each worker's peer id (as the gateway logs it) and the gateway it
/// registers with.
fn gateway_of_worker(scenario: &Scenario, seed: u64) -> BTreeMap<String, String> {
    let Some(gateway) = &scenario.gateway else {
        return BTreeMap::new();
    };
    (0..gateway.workers)
        .map(|i| {
            let peer = peer_of(seed, &worker_name(i)).to_string();
            (peer, gateway_name(i % gateway.gateways))
        })
        .collect()
}

/// The seeded simulation of `scenario`, with its network, and no host yet.
fn new_sim<'a>(scenario: &Scenario, seed: u64) -> turmoil::Sim<'a> {
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(seed)
        .simulation_duration(secs(scenario.duration_s) + Duration::from_secs(1))
        .tick_duration(TICK)
        .udp_capacity(UDP_CAPACITY)
        .fail_rate(scenario.network.fail_rate)
        .repair_rate(scenario.network.repair_rate);
    if let Some(ms) = scenario.network.max_latency_ms {
        builder.max_message_latency(Duration::from_millis(ms));
    }
    builder.build()
}

/// The hosts of one run, and the logs they fill for the checks.
struct Hosts {
    /// The membership nodes.
    names: Vec<String>,
    peer_of_host: BTreeMap<String, PeerId>,
    host_of: BTreeMap<PeerId, String>,
    members: SharedObservations,
    /// The gateway's disk, kept across its restarts.
    disk: SimDisk,
    task_obs: Option<tasks::SharedTasks>,
    /// The gateways' links to their shared store, if they share one.
    store_links: Option<tasks::StoreLinks>,
    /// The gateways' host names.
    gateways: Vec<String>,
    /// Paused hosts resume with their clocks where they stopped
    /// (`lease-act-past-deadline`).
    stopped_clocks: bool,
    adversaries: Option<adversary::SharedAdversaryLog>,
    hostile: BTreeMap<PeerId, String>,
    forgers: BTreeMap<PeerId, String>,
    records_log: Option<records::SharedRecordsLog>,
    anchor_log: Option<anchors::SharedAnchorLog>,
    channel_log: Option<channel::SharedChannelLog>,
}

/// Adds every host `scenario` asks for to `sim`; `options.sabotage` breaks
/// the one it is about.
fn add_hosts(
    sim: &mut turmoil::Sim<'_>,
    scenario: &Scenario,
    seed: u64,
    options: RunOptions,
) -> Hosts {
    let names = node_names(scenario.cluster.nodes);
    let peer_of_host: BTreeMap<String, PeerId> = names
        .iter()
        .map(|n| (n.clone(), peer_of(seed, n)))
        .collect();
    let host_of = peer_of_host.iter().map(|(n, p)| (*p, n.clone())).collect();
    let publish_every = scenario
        .pubsub
        .as_ref()
        .map(|p| Duration::from_millis(p.interval_ms));
    let keyed = scenario.security.swarm_key;
    if scenario.boot.is_some() {
        add_boot_server(sim, seed, BOOT_HOST, keyed);
    }
    let setup = MemberSetup {
        keyed,
        boot: scenario
            .boot
            .as_ref()
            .map(|_| boot_server_info(seed, BOOT_HOST)),
        records_every: scenario.records.as_ref().map(|r| match options.sabotage {
            Some(Sabotage::SkipRepublish) => REPUBLISH_NEVER,
            _ => secs(r.republish_every_s),
        }),
        anchors: scenario.anchors.is_some(),
        drop_anchor_set: (options.sabotage == Some(Sabotage::DropAnchorSet))
            .then(|| Rc::new(Cell::new(false))),
    };
    let ttl_ms = scenario.cluster.ttl_ms;
    let members = add_members_with(sim, seed, &names, ttl_ms, publish_every, &setup);
    let disk = SimDisk::new();
    let tasks_hosts = scenario.gateway.as_ref().map(|gateway| {
        let tasks = scenario.tasks.as_ref();
        tasks::add_hosts(
            sim,
            seed,
            gateway,
            tasks,
            disk.clone(),
            keyed,
            options.sabotage,
        )
    });
    let (task_obs, store_links) = match tasks_hosts {
        Some((obs, links)) => (Some(obs), links),
        None => (None, None),
    };
    let gateways = (0..scenario.gateway.as_ref().map_or(0, |g| g.gateways))
        .map(gateway_name)
        .collect();
    let security = &scenario.security;
    let adversaries = (security.outsiders > 0 || security.tap || security.rogue_workers > 0)
        .then(|| adversary::add_hosts(sim, seed, security, scenario.gateway.is_some()));
    let hostile = (0..security.outsiders)
        .map(outsider_name)
        .chain(security.tap.then(|| TAP_HOST.to_string()))
        .map(|n| (peer_of(seed, &n), n))
        .collect();
    let forgers = (0..security.rogue_workers)
        .map(rogue_name)
        .map(|n| (peer_of(seed, &n), n))
        .collect();
    let nodes = scenario.cluster.nodes;
    Hosts {
        records_log: (scenario.records.as_ref())
            .map(|spec| records::add_client(sim, seed, nodes, spec)),
        anchor_log: (scenario.anchors.as_ref())
            .map(|spec| anchors::add_clients(sim, seed, nodes, spec)),
        channel_log: (scenario.channel.as_ref()).map(|spec| channel::add_hosts(sim, seed, spec)),
        names,
        peer_of_host,
        host_of,
        members,
        disk,
        task_obs,
        store_links,
        gateways,
        stopped_clocks: options.sabotage == Some(Sabotage::LeaseActPastDeadline),
        adversaries,
        hostile,
        forgers,
    }
}

/// What a run learns as it goes: the faults applied and what they did.
struct RunState {
    verdict: Verdict,
    disturbances: Disturbances,
    /// Membership nodes running now.
    running: BTreeSet<String>,
    /// Every loss of a node's memory: a crash, or a restart of a running node.
    wipes: Vec<(Duration, String)>,
    /// Calls the gateway's disk had refused when its current fault was armed.
    failures_before_fault: u64,
    /// Crashes of the gateway's disk so far.
    disk_crashes: u32,
}

impl RunState {
    fn new(scenario: &Scenario, names: &[String]) -> RunState {
        let mut disturbances = Disturbances::default();
        disturbances.network_loss(scenario.network.fail_rate);
        RunState {
            verdict: Verdict::default(),
            disturbances,
            running: names.iter().cloned().collect(),
            wipes: Vec::new(),
            failures_before_fault: 0,
            disk_crashes: 0,
        }
    }

    /// Applies `fault` now, with what it does to the gateway's disk.
    fn fault(&mut self, sim: &mut turmoil::Sim<'_>, seed: u64, hosts: &Hosts, fault: &Fault) {
        let at = sim.elapsed();
        self.gateway_disk(seed, hosts, fault, at);
        apply(sim, fault, &hosts.disk, hosts.stopped_clocks);
        if let Some(links) = &hosts.store_links {
            links.apply(fault);
        }
        for n in &fault.nodes {
            let wiped = match fault.kind {
                FaultKind::Crash => true,
                FaultKind::Restart => self.running.contains(n),
                _ => false,
            };
            if wiped && n.starts_with("node-") {
                self.wipes.push((at, n.clone()));
            }
            if n.starts_with("node-") {
                match fault.kind {
                    FaultKind::Crash => self.running.remove(n),
                    _ => self.running.insert(n.clone()),
                };
            }
        }
        self.disturbances.record(fault, at);
        let line = describe(fault);
        tracing::info!(target: "ww_sim::scenario", fault = %line, "fault");
        self.verdict
            .timeline
            .push(format!("{} fault {line}", stamp(at)));
    }

    /// What `fault` at `at` does to the gateway's disk, before it is applied.
    fn gateway_disk(&mut self, seed: u64, hosts: &Hosts, fault: &Fault, at: Duration) {
        let disk = &hosts.disk;
        let gateway_down = matches!(fault.kind, FaultKind::Crash | FaultKind::Restart)
            && fault.nodes.iter().any(|n| n == GATEWAY_HOST);
        if gateway_down && hosts.task_obs.is_some() {
            // Before turmoil drops the host: what it writes going down is lost,
            // and of what it wrote since its last sync a seeded subset survives.
            self.disk_crashes += 1;
            let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(
                seed,
                &format!("{GATEWAY_HOST}/disk/crash/{}", self.disk_crashes),
            ));
            let lost = disk.crash_torn(&mut rng);
            tracing::info!(target: "ww_sim::scenario", bytes = lost, "gateway disk crashed");
            self.verdict.timeline.push(format!(
                "{} gateway disk lost {lost} unsynced bytes",
                stamp(at)
            ));
        }
        if fault.kind.is_disk() && fault.kind != FaultKind::DiskHeal {
            self.failures_before_fault = disk.failures();
        }
        if fault.kind == FaultKind::DiskHeal {
            if let Some(armed) = disk.fault() {
                let refused = disk.failures() - self.failures_before_fault;
                tracing::info!(target: "ww_sim::scenario", refused, "gateway disk healed");
                self.verdict.timeline.push(format!(
                    "{} gateway disk refused {refused} calls under {}",
                    stamp(at),
                    armed.name()
                ));
            }
        }
    }

    /// Runs to the end, judging the views on the way, then every invariant.
    fn judge(
        &mut self,
        sim: &mut turmoil::Sim<'_>,
        scenario: &Scenario,
        seed: u64,
        hosts: &Hosts,
    ) -> Result<(), ScenarioError> {
        let inv = &scenario.invariants;
        let expected: BTreeSet<PeerId> = self.running.iter().map(|n| peer_of(seed, n)).collect();
        let views_check = |running: &BTreeSet<String>, when: &str, bound: f64, at: Duration| {
            let wrong = wrong_views(&hosts.members, running, &expected);
            let wrong = if wrong.is_empty() {
                wrong
            } else {
                vec![format!(
                    "({when}) {} of {} running nodes wrong at {:.3}s: {}",
                    wrong.len(),
                    running.len(),
                    at.as_secs_f64(),
                    wrong.join("; ")
                )]
            };
            Check::new(
                "views_complete_within_s",
                Class::Liveness,
                wrong,
                format!("{when}, bound {bound}s, {} running nodes", running.len()),
            )
        };
        if let Some(bound) = inv.views_complete_within_s {
            run_until(sim, scenario.quiet_from() + secs(bound) + SAMPLE_INTERVAL)?;
            let at = sim.elapsed();
            let check = views_check(&self.running, "bound after last fault", bound, at);
            self.verdict.record(at, check);
        }
        run_until(sim, secs(scenario.duration_s))?;
        let at = sim.elapsed();
        if let Some(bound) = inv.views_complete_within_s {
            let check = views_check(&self.running, "end of run", bound, at);
            self.verdict.record(at, check);
        }
        if inv.no_false_leave {
            let window = Duration::from_millis(u64::from(scenario.cluster.ttl_ms)) + EXCUSE_SLACK;
            let check = false_leaves(&hosts.members, &hosts.host_of, &self.disturbances, window);
            self.verdict.record(at, check);
        }
        self.judge_tasks(at, scenario, hosts);
        self.judge_channel_and_adversaries(at, scenario, hosts);
        self.judge_records_anchors_pubsub(at, scenario, seed, hosts);
        Ok(())
    }

    /// The task invariants, at the end of the run (`at`).
    fn judge_tasks(&mut self, at: Duration, scenario: &Scenario, hosts: &Hosts) {
        let windows = self.gateway_windows(&hosts.gateways);
        let (inv, verdict) = (&scenario.invariants, &mut self.verdict);
        let Some(obs) = &hosts.task_obs else {
            return;
        };
        let obs = obs.lock().unwrap_or_else(|p| p.into_inner());
        let excuses = tasks_check::Excuses::new(&windows, at);
        if inv.no_task_lost {
            verdict.record(at, tasks_check::no_task_lost(&obs, &excuses, at));
        }
        if inv.one_terminal_status {
            let forger_ids: BTreeSet<String> =
                hosts.forgers.keys().map(|p| p.to_string()).collect();
            verdict.record(at, tasks_check::one_terminal_status(&obs, &forger_ids));
        }
        if inv.cancel_stops_runs {
            verdict.record(at, tasks_check::cancel_stops_runs(&obs));
        }
        if inv.history_checked {
            verdict.record(at, tasks_check::history_checked(&obs));
        }
        if inv.refusals_explained {
            verdict.record(at, tasks_check::refusals_explained(&obs, &excuses));
        }
        if let Some(bound) = inv.runs_finish_within_s {
            let (quiet, end) = (scenario.quiet_from(), secs(scenario.duration_s));
            let check = tasks_check::runs_finish_within(&obs, quiet, secs(bound), end);
            verdict.record(at, check);
        }
    }

    /// Every disturbance of the gateways, of their links with the client and,
    /// as a fault of their storage, of their links with a shared store.
    fn gateway_windows(&self, gateways: &[String]) -> Vec<Window> {
        let mut windows = Vec::new();
        for gateway in gateways {
            windows.extend(self.disturbances.windows(gateway, CLIENT_HOST));
            let store = self.disturbances.windows(gateway, STORE_HOST);
            windows.extend(
                store
                    .into_iter()
                    .filter(|w| w.cause == Cause::Link)
                    .map(|w| Window {
                        cause: Cause::Disk,
                        ..w
                    }),
            );
        }
        windows
    }

    /// The channel and adversary invariants, at the end of the run (`at`).
    fn judge_channel_and_adversaries(&mut self, at: Duration, scenario: &Scenario, hosts: &Hosts) {
        let (inv, verdict) = (&scenario.invariants, &mut self.verdict);
        if let (Some(log), Some(spec)) = (&hosts.channel_log, &scenario.channel) {
            let log = log.lock().unwrap_or_else(|p| p.into_inner());
            if inv.channel_exactly_once {
                verdict.record(at, channel_check::exactly_once(&log, spec.capacity));
            }
            if inv.channel_order {
                verdict.record(at, channel_check::order(&log));
            }
            if let Some(bound) = inv.channel_drains_within_s {
                let deadline = scenario.quiet_from().max(secs(spec.send_until_s)) + secs(bound);
                let check = channel_check::drains_within(&log, spec.senders, deadline);
                verdict.record(at, check);
            }
        }
        let (adversaries, task_obs) = (&hosts.adversaries, &hosts.task_obs);
        if let (true, Some(log), Some(obs)) = (inv.forgeries_attributed, adversaries, task_obs) {
            let obs = obs.lock().unwrap_or_else(|p| p.into_inner());
            let log = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let check = adversary::forgeries_attributed(&obs, &hosts.forgers, &log);
            verdict.record(at, check);
        }
        if let (true, Some(log)) = (inv.outsiders_excluded, adversaries) {
            let members = hosts.members.lock().unwrap_or_else(|p| p.into_inner());
            let tasks = task_obs
                .as_ref()
                .map(|t| t.lock().unwrap_or_else(|p| p.into_inner()));
            let log = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let check =
                adversary::outsiders_excluded(&members, tasks.as_deref(), &hosts.hostile, &log);
            verdict.record(at, check);
        }
    }

    /// The records, anchors and pubsub invariants, at the end of the run (`at`).
    fn judge_records_anchors_pubsub(
        &mut self,
        at: Duration,
        scenario: &Scenario,
        seed: u64,
        hosts: &Hosts,
    ) {
        let (inv, verdict, wipes) = (&scenario.invariants, &mut self.verdict, &self.wipes);
        let quiet = scenario.quiet_from();
        if let (Some(log), Some(spec)) = (&hosts.records_log, &scenario.records) {
            let log = log.lock().unwrap_or_else(|p| p.into_inner());
            if inv.records_intact {
                let client = peer_of(seed, DHT_CLIENT_HOST);
                verdict.record(at, records::intact(&log, client));
            }
            if inv.records_survive {
                let window = records::republish_window(
                    Duration::from_millis(u64::from(scenario.cluster.ttl_ms)),
                    secs(spec.republish_every_s),
                );
                let check = records::survive(&log, wipes, window, spec.read_at_s.len());
                verdict.record(at, check);
            }
        }
        if let Some(log) = &hosts.anchor_log {
            let calls = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if inv.anchors_linearizable {
                verdict.record(at, anchors::linearizable(&calls, wipes));
            }
            if inv.anchors_available {
                let first = scenario
                    .faults
                    .first()
                    .map_or(Duration::ZERO, |f| secs(f.at_s));
                let check = anchors::available(&calls, &self.disturbances, (first, quiet));
                verdict.record(at, check);
            }
            if let Some(bound) = inv.anchors_reachable_within_s {
                let check = anchors::reachable_after(&calls, &self.running, quiet + secs(bound));
                verdict.record(at, check);
            }
        }
        if scenario.pubsub.is_some() {
            let obs = hosts.members.lock().unwrap_or_else(|p| p.into_inner());
            if inv.pubsub_integrity {
                verdict.record(at, pubsub_check::integrity(&obs, &hosts.peer_of_host));
            }
            if let Some(bound) = inv.pubsub_delivery_within_s {
                let end = secs(scenario.duration_s);
                let check =
                    pubsub_check::delivery_within(&obs, &self.running, quiet, end, secs(bound));
                verdict.record(at, check);
            }
        }
    }
}

/// Safety `no_false_leave`: every expiry a node reported must be excused by a
/// fault on the peer or on the link within `window` before it.
fn false_leaves(
    members: &SharedObservations,
    host_of: &BTreeMap<PeerId, String>,
    disturbances: &Disturbances,
    window: Duration,
) -> Check {
    let observations = members.lock().unwrap_or_else(|p| p.into_inner());
    let mut checked = 0usize;
    let mut wrong = Vec::new();
    for leave in &observations.leaves {
        if leave.reason != LeaveReason::Expired {
            continue;
        }
        checked += 1;
        let peer = host_of
            .get(&leave.peer)
            .cloned()
            .unwrap_or_else(|| leave.peer.to_string());
        if !disturbances.excused(
            &leave.observer,
            &peer,
            leave.at.saturating_sub(window),
            leave.at,
        ) {
            wrong.push(format!(
                "{} reported {peer} expired at {:.3}s, though {peer} was running and the link \
                 was undisturbed for the {window:?} before",
                leave.observer,
                leave.at.as_secs_f64(),
            ));
        }
    }
    Check::new(
        "no_false_leave",
        Class::Safety,
        wrong,
        format!("{checked} expiries, each judged against the faults"),
    )
}
