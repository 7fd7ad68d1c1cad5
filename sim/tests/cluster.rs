//! Zero-conf clustering in seeded turmoil simulations (virtual time). Each test
//! states its bound; each prints its seed and how to replay it.

use std::collections::BTreeSet;
use std::time::Duration;

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ww::cluster::{LeaveReason, HEARTBEATS_PER_TTL};
use ww::transport::PeerId;
use ww_sim::cluster::{add_members, peer_of, SharedObservations, SAMPLE_INTERVAL};
use ww_sim::root_seed;

/// The default TTL, as a node started with no flags uses.
const TTL: Duration = Duration::from_millis(10_000);
/// The mean heartbeat interval at that TTL.
const INTERVAL: Duration = Duration::from_millis(10_000 / HEARTBEATS_PER_TTL as u64);
/// The membership's expiry tick.
const TICK: Duration = Duration::from_millis(ww::cluster::EXPIRY_TICK_MS);

fn names(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("node-{i:03}")).collect()
}

fn peers(seed: u64, names: &[String]) -> BTreeSet<PeerId> {
    names.iter().map(|n| peer_of(seed, n)).collect()
}

fn builder(seed: u64, duration: Duration) -> turmoil::Builder {
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(seed)
        .simulation_duration(duration)
        // 10 ms ticks keep 32-node runs quick; bounds below are far coarser.
        .tick_duration(Duration::from_millis(10))
        // turmoil's default of 64 queued datagrams per host drops survey bursts.
        .udp_capacity(4096);
    builder
}

fn replay(seed: u64, test: &str) -> String {
    format!("replay: WW_SIM_SEED={seed} cargo test -p ww-sim --test cluster {test}")
}

/// Steps the simulation until simulated time `until`.
fn run_until(sim: &mut turmoil::Sim<'_>, until: Duration, seed: u64, test: &str) {
    while sim.elapsed() < until {
        if let Err(e) = sim.step() {
            panic!(
                "simulation failed at {:?}: {e}\n{}",
                sim.elapsed(),
                replay(seed, test)
            );
        }
    }
}

/// Hosts whose latest sampled view differs from `expected`, with what they saw.
fn wrong_views(
    observations: &SharedObservations,
    hosts: &[String],
    expected: &BTreeSet<PeerId>,
) -> Vec<String> {
    let observations = observations.lock().unwrap();
    hosts
        .iter()
        .filter_map(|host| match observations.views.get(host) {
            Some((_, view)) if view == expected => None,
            Some((at, view)) => Some(format!(
                "{host} at {at:?} sees {} of {}",
                view.len(),
                expected.len()
            )),
            None => Some(format!("{host} has no view yet")),
        })
        .collect()
}

#[test]
fn thirty_two_nodes_find_each_other_by_multicast_within_two_intervals() {
    let seed = root_seed(2);
    eprintln!("seed {seed}");
    let hosts = names(32);
    // Bound: every view complete within two heartbeat intervals of the start.
    let bound = 2 * INTERVAL;
    let mut sim = builder(seed, Duration::from_secs(30)).build();
    let observations = add_members(&mut sim, seed, &hosts, TTL.as_millis() as u32, None);
    run_until(&mut sim, bound + SAMPLE_INTERVAL, seed, "thirty_two");
    let wrong = wrong_views(&observations, &hosts, &peers(seed, &hosts));
    assert!(
        wrong.is_empty(),
        "views incomplete after {bound:?}: {wrong:?}\n{}",
        replay(seed, "thirty_two")
    );
    assert!(observations.lock().unwrap().leaves.is_empty());
}

#[test]
fn partitioned_sides_drop_each_other_and_heal() {
    let seed = root_seed(3);
    eprintln!("seed {seed}");
    let hosts = names(16);
    let (side_a, side_b) = hosts.split_at(8);
    let mut sim = builder(seed, Duration::from_secs(60)).build();
    let observations = add_members(&mut sim, seed, &hosts, TTL.as_millis() as u32, None);
    let all = peers(seed, &hosts);
    run_until(&mut sim, Duration::from_secs(5), seed, "partitioned");
    assert!(wrong_views(&observations, &hosts, &all).is_empty());

    let cut_at = sim.elapsed();
    for a in side_a {
        for b in side_b {
            sim.partition(a.as_str(), b.as_str());
        }
    }
    // Bound: each side drops the other within TTL plus one expiry tick.
    run_until(
        &mut sim,
        cut_at + TTL + TICK + SAMPLE_INTERVAL,
        seed,
        "partitioned",
    );
    for (side, others) in [(side_a, side_b), (side_b, side_a)] {
        let wrong = wrong_views(&observations, side, &peers(seed, side));
        assert!(
            wrong.is_empty(),
            "a side still sees the other {:?} after the cut: {wrong:?}\n{}",
            TTL + TICK,
            replay(seed, "partitioned")
        );
        // Leaves were only of the other side: each side kept its own members.
        let others = peers(seed, others);
        let observations = observations.lock().unwrap();
        for leave in observations
            .leaves
            .iter()
            .filter(|l| side.contains(&l.observer))
        {
            assert!(others.contains(&leave.peer), "{leave:?} left its own side");
            assert!(leave.at > cut_at, "{leave:?} before the partition");
        }
    }

    for a in side_a {
        for b in side_b {
            sim.repair(a.as_str(), b.as_str());
        }
    }
    let healed_at = sim.elapsed();
    // Bound: after repair every view is complete again within two intervals.
    run_until(
        &mut sim,
        healed_at + 2 * INTERVAL + SAMPLE_INTERVAL,
        seed,
        "partitioned",
    );
    let wrong = wrong_views(&observations, &hosts, &all);
    assert!(
        wrong.is_empty(),
        "views not complete {:?} after repair: {wrong:?}\n{}",
        2 * INTERVAL,
        replay(seed, "partitioned")
    );
}

#[test]
fn churn_of_a_quarter_of_the_nodes_converges_to_the_live_set() {
    let seed = root_seed(4);
    eprintln!("seed {seed}");
    let hosts = names(32);
    let mut sim = builder(seed, Duration::from_secs(120)).build();
    let observations = add_members(&mut sim, seed, &hosts, TTL.as_millis() as u32, None);
    run_until(&mut sim, Duration::from_secs(5), seed, "churn");

    // Over one minute, crash 8 distinct nodes (a quarter) at seeded times and
    // restart each 4 s later: a restart is a new instance under the same peer id.
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut victims: Vec<String> = Vec::new();
    while victims.len() < hosts.len() / 4 {
        let pick = hosts[(rng.next_u64() % hosts.len() as u64) as usize].clone();
        if !victims.contains(&pick) {
            victims.push(pick);
        }
    }
    for (i, victim) in victims.iter().enumerate() {
        let crash_at = Duration::from_secs(5) + Duration::from_millis(7_500 * i as u64);
        run_until(&mut sim, crash_at, seed, "churn");
        sim.crash(victim.as_str());
        run_until(&mut sim, crash_at + Duration::from_secs(4), seed, "churn");
        sim.bounce(victim.as_str());
    }
    // Quiet phase. Bound: converged within TTL + tick + two intervals after the last restart.
    let quiet_from = sim.elapsed();
    run_until(
        &mut sim,
        quiet_from + TTL + TICK + 2 * INTERVAL,
        seed,
        "churn",
    );
    let wrong = wrong_views(&observations, &hosts, &peers(seed, &hosts));
    assert!(
        wrong.is_empty(),
        "views did not converge to the live set: {wrong:?}\n{}",
        replay(seed, "churn")
    );
    let observations = observations.lock().unwrap();
    for victim in &victims {
        assert_eq!(observations.starts[victim], 2, "{victim} restarted once");
        // Others noticed the restart: the old instance left (expired while it was
        // down, or replaced by the new one's first heartbeat).
        let peer = peer_of(seed, victim);
        assert!(
            observations.leaves.iter().any(|l| l.peer == peer),
            "nobody saw {victim} go"
        );
    }
}

#[test]
fn five_percent_loss_never_reports_a_live_node_as_left() {
    let seed = root_seed(5);
    eprintln!("seed {seed}");
    let hosts = names(32);
    let mut sim = builder(seed, Duration::from_secs(120))
        // turmoil breaks a link with this probability per message and mends it
        // with the repair rate per message: about 5% of messages are lost.
        .fail_rate(0.05)
        .repair_rate(0.95)
        .build();
    let observations = add_members(&mut sim, seed, &hosts, TTL.as_millis() as u32, None);
    run_until(&mut sim, Duration::from_secs(90), seed, "five_percent");
    let observations_now = observations.lock().unwrap();
    let false_leaves: Vec<_> = observations_now
        .leaves
        .iter()
        .filter(|l| l.reason == LeaveReason::Expired)
        .collect();
    assert!(
        false_leaves.is_empty(),
        "live nodes reported as left under 5% loss: {false_leaves:?}\n{}",
        replay(seed, "five_percent")
    );
    drop(observations_now);
    let wrong = wrong_views(&observations, &hosts, &peers(seed, &hosts));
    assert!(
        wrong.is_empty(),
        "{wrong:?}\n{}",
        replay(seed, "five_percent")
    );
}

#[test]
fn cluster_trace_is_identical_for_the_same_seed() {
    let run = |seed: u64| {
        let trace = ww_sim::Trace::new();
        let hosts = names(8);
        let mut sim = builder(seed, Duration::from_secs(20)).build();
        let observations = add_members(&mut sim, seed, &hosts, TTL.as_millis() as u32, None);
        trace.capture(|| {
            run_until(&mut sim, Duration::from_secs(6), seed, "cluster_trace");
            sim.crash("node-003");
            run_until(&mut sim, Duration::from_secs(19), seed, "cluster_trace");
        });
        let left = observations.lock().unwrap().leaves.len();
        (trace, left)
    };
    let seed = root_seed(6);
    let (first, left) = run(seed);
    assert!(
        left >= 7,
        "the crashed node should have left every other view"
    );
    assert!(first.lines().len() > 100, "trace too thin to mean anything");
    let (second, _) = run(seed);
    if first.digest() != second.digest() {
        let (a, b) = (first.lines(), second.lines());
        let at = a
            .iter()
            .zip(&b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len()));
        let around =
            |lines: &[String]| lines[at.saturating_sub(3)..(at + 3).min(lines.len())].join("\n");
        panic!(
            "same seed {seed}, different traces from line {at}:\nfirst:\n{}\nsecond:\n{}",
            around(&a),
            around(&b)
        );
    }
    let (other, _) = run(seed + 1);
    assert_ne!(first.digest(), other.digest());
}
