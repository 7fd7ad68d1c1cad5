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
use ww_sched::sabotage as switches;

use super::faults::{apply, describe, Disturbances};
use super::format::{
    node_names, outsider_name, rogue_name, secs, FaultKind, Scenario, BOOT_HOST, CLIENT_HOST,
    DHT_CLIENT_HOST, GATEWAY_HOST, TAP_HOST,
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
    adversary, anchors, channel, channel_check, pubsub_check, records, tasks, tasks_check,
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

/// Arms a sabotage for one run and disarms it when dropped, even on a panic.
struct Armed;

impl Armed {
    fn new(sabotage: Option<Sabotage>) -> Armed {
        switches::arm(sabotage.and_then(Sabotage::node_switch));
        Armed
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        switches::arm(None);
    }
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
    let names = node_names(scenario.cluster.nodes);
    let peer_of_host: BTreeMap<String, PeerId> = names
        .iter()
        .map(|n| (n.clone(), peer_of(seed, n)))
        .collect();
    let host_of: BTreeMap<PeerId, String> =
        peer_of_host.iter().map(|(n, p)| (*p, n.clone())).collect();
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
    let mut sim = builder.build();
    let publish_every = scenario
        .pubsub
        .as_ref()
        .map(|p| Duration::from_millis(p.interval_ms));
    let keyed = scenario.security.swarm_key;
    if scenario.boot.is_some() {
        add_boot_server(&mut sim, seed, BOOT_HOST, keyed);
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
    let members = add_members_with(
        &mut sim,
        seed,
        &names,
        scenario.cluster.ttl_ms,
        publish_every,
        &setup,
    );
    let disk = SimDisk::new();
    let mut disk_crashes = 0u32;
    let task_obs = scenario.gateway.as_ref().map(|gateway| {
        tasks::add_hosts(
            &mut sim,
            seed,
            gateway,
            scenario.tasks.as_ref(),
            disk.clone(),
            keyed,
            options.sabotage,
        )
    });
    let security = &scenario.security;
    let adversaries = (security.outsiders > 0 || security.tap || security.rogue_workers > 0)
        .then(|| adversary::add_hosts(&mut sim, seed, security, scenario.gateway.is_some()));
    let hostile: BTreeMap<PeerId, String> = (0..security.outsiders)
        .map(outsider_name)
        .chain(security.tap.then(|| TAP_HOST.to_string()))
        .map(|n| (peer_of(seed, &n), n))
        .collect();
    let forgers: BTreeMap<PeerId, String> = (0..security.rogue_workers)
        .map(rogue_name)
        .map(|n| (peer_of(seed, &n), n))
        .collect();
    let forger_ids: BTreeSet<String> = forgers.keys().map(|p| p.to_string()).collect();
    let records_log = scenario
        .records
        .as_ref()
        .map(|spec| records::add_client(&mut sim, seed, scenario.cluster.nodes, spec));
    let anchor_log = scenario
        .anchors
        .as_ref()
        .map(|spec| anchors::add_clients(&mut sim, seed, scenario.cluster.nodes, spec));
    // Every loss of a node's memory: a crash, or a restart of a running node.
    let mut wipes: Vec<(Duration, String)> = Vec::new();
    let channel_log = scenario
        .channel
        .as_ref()
        .map(|spec| channel::add_hosts(&mut sim, seed, spec));

    let trace = Trace::new();
    let mut verdict = Verdict::default();
    let mut disturbances = Disturbances::default();
    disturbances.network_loss(scenario.network.fail_rate);
    // Calls the gateway's disk had refused when its current fault was armed.
    let mut failures_before_fault = 0u64;
    let mut running: BTreeSet<String> = names.iter().cloned().collect();
    let quiet = scenario.quiet_from();
    let end = secs(scenario.duration_s);
    let inv = &scenario.invariants;

    tasks::take_livelock();
    let armed = Armed::new(options.sabotage);
    let outcome = trace.capture(|| -> Result<(), ScenarioError> {
        for fault in &scenario.faults {
            run_until(&mut sim, secs(fault.at_s))?;
            let at = sim.elapsed();
            let gateway_down = matches!(fault.kind, FaultKind::Crash | FaultKind::Restart)
                && fault.nodes.iter().any(|n| n == GATEWAY_HOST);
            if gateway_down && task_obs.is_some() {
                // Before turmoil drops the host: what it writes going down is lost,
                // and of what it wrote since its last sync a seeded subset survives.
                disk_crashes += 1;
                let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(
                    seed,
                    &format!("{GATEWAY_HOST}/disk/crash/{disk_crashes}"),
                ));
                let lost = disk.crash_torn(&mut rng);
                tracing::info!(target: "ww_sim::scenario", bytes = lost, "gateway disk crashed");
                verdict.timeline.push(format!(
                    "{} gateway disk lost {lost} unsynced bytes",
                    stamp(at)
                ));
            }
            if fault.kind.is_disk() && fault.kind != FaultKind::DiskHeal {
                failures_before_fault = disk.failures();
            }
            if fault.kind == FaultKind::DiskHeal {
                if let Some(armed) = disk.fault() {
                    let refused = disk.failures() - failures_before_fault;
                    tracing::info!(target: "ww_sim::scenario", refused, "gateway disk healed");
                    verdict.timeline.push(format!(
                        "{} gateway disk refused {refused} calls under {}",
                        stamp(at),
                        armed.name()
                    ));
                }
            }
            apply(&mut sim, fault, &disk);
            for n in &fault.nodes {
                let wiped = match fault.kind {
                    FaultKind::Crash => true,
                    FaultKind::Restart => running.contains(n),
                    _ => false,
                };
                if wiped && n.starts_with("node-") {
                    wipes.push((at, n.clone()));
                }
                if n.starts_with("node-") {
                    match fault.kind {
                        FaultKind::Crash => running.remove(n),
                        _ => running.insert(n.clone()),
                    };
                }
            }
            disturbances.record(fault, at);
            let line = describe(fault);
            tracing::info!(target: "ww_sim::scenario", fault = %line, "fault");
            verdict.timeline.push(format!("{} fault {line}", stamp(at)));
        }

        let expected: BTreeSet<PeerId> = running.iter().map(|n| peer_of(seed, n)).collect();
        let views_check = |when: &str, bound: f64, at: Duration| {
            let wrong = wrong_views(&members, &running, &expected);
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
            run_until(&mut sim, quiet + secs(bound) + SAMPLE_INTERVAL)?;
            let check = views_check("bound after last fault", bound, sim.elapsed());
            verdict.record(sim.elapsed(), check);
        }
        run_until(&mut sim, end)?;
        let at = sim.elapsed();
        if let Some(bound) = inv.views_complete_within_s {
            verdict.record(at, views_check("end of run", bound, at));
        }
        if inv.no_false_leave {
            let check = false_leaves(
                &members,
                &host_of,
                &disturbances,
                Duration::from_millis(u64::from(scenario.cluster.ttl_ms)) + EXCUSE_SLACK,
            );
            verdict.record(at, check);
        }
        if let Some(obs) = &task_obs {
            let obs = obs.lock().unwrap_or_else(|p| p.into_inner());
            let excuses =
                tasks_check::Excuses::new(&disturbances.windows(GATEWAY_HOST, CLIENT_HOST), at);
            if inv.no_task_lost {
                verdict.record(at, tasks_check::no_task_lost(&obs, &excuses, at));
            }
            if inv.one_terminal_status {
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
                verdict.record(
                    at,
                    tasks_check::runs_finish_within(&obs, quiet, secs(bound), end),
                );
            }
        }
        if let (Some(log), Some(spec)) = (&channel_log, &scenario.channel) {
            let log = log.lock().unwrap_or_else(|p| p.into_inner());
            if inv.channel_exactly_once {
                verdict.record(at, channel_check::exactly_once(&log, spec.capacity));
            }
            if inv.channel_order {
                verdict.record(at, channel_check::order(&log));
            }
            if let Some(bound) = inv.channel_drains_within_s {
                let deadline = quiet.max(secs(spec.send_until_s)) + secs(bound);
                verdict.record(
                    at,
                    channel_check::drains_within(&log, spec.senders, deadline),
                );
            }
        }
        if let (true, Some(log), Some(obs)) = (inv.forgeries_attributed, &adversaries, &task_obs) {
            let obs = obs.lock().unwrap_or_else(|p| p.into_inner());
            let log = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
            verdict.record(at, adversary::forgeries_attributed(&obs, &forgers, &log));
        }
        if let (true, Some(log)) = (inv.outsiders_excluded, &adversaries) {
            let members = members.lock().unwrap_or_else(|p| p.into_inner());
            let tasks = task_obs
                .as_ref()
                .map(|t| t.lock().unwrap_or_else(|p| p.into_inner()));
            let log = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let check = adversary::outsiders_excluded(&members, tasks.as_deref(), &hostile, &log);
            verdict.record(at, check);
        }
        if let (Some(log), Some(spec)) = (&records_log, &scenario.records) {
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
                verdict.record(
                    at,
                    records::survive(&log, &wipes, window, spec.read_at_s.len()),
                );
            }
        }
        if let Some(log) = &anchor_log {
            let calls = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
            if inv.anchors_linearizable {
                verdict.record(at, anchors::linearizable(&calls, &wipes));
            }
            if inv.anchors_available {
                let first = scenario
                    .faults
                    .first()
                    .map_or(Duration::ZERO, |f| secs(f.at_s));
                let check = anchors::available(&calls, &disturbances, (first, quiet));
                verdict.record(at, check);
            }
            if let Some(bound) = inv.anchors_reachable_within_s {
                let check = anchors::reachable_after(&calls, &running, quiet + secs(bound));
                verdict.record(at, check);
            }
        }
        if scenario.pubsub.is_some() {
            let obs = members.lock().unwrap_or_else(|p| p.into_inner());
            if inv.pubsub_integrity {
                verdict.record(at, pubsub_check::integrity(&obs, &peer_of_host));
            }
            if let Some(bound) = inv.pubsub_delivery_within_s {
                let check = pubsub_check::delivery_within(&obs, &running, quiet, end, secs(bound));
                verdict.record(at, check);
            }
        }
        Ok(())
    });
    drop(armed);
    verdict.simulated = sim.elapsed();
    drop(sim);
    outcome?;
    if let Some(livelock) = tasks::take_livelock() {
        return Err(ScenarioError(livelock));
    }
    verdict.digest = trace.digest();
    Ok(verdict)
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
