//! Simulation speed: simulated seconds per wall second of whole clusters under
//! load, against bare turmoil carrying the same heartbeat traffic in the same run.
//!
//! A documented harness rather than criterion: one 256-node run takes tens of
//! seconds, so each configuration runs `RUNS` times and the median is reported.
//! Besides wall time it reports the CPU time of the simulation's thread, which
//! other work sharing the cores inflates far less than wall time.
//! Run with `cargo bench -p ww-sim --bench sim_speed`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ww_sim::scenario::{run, Scenario, TICK, UDP_CAPACITY};

/// Runs per configuration; the median wall time is reported.
const RUNS: usize = 3;

/// CPU time this thread has run so far (Linux `schedstat`; zero elsewhere).
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map(Duration::from_nanos)
        .unwrap_or_default()
}

/// Wall and CPU time of `f`.
fn timed<R>(f: impl FnOnce() -> R) -> (R, Duration, Duration) {
    let (wall, cpu) = (Instant::now(), thread_cpu());
    let result = f();
    (result, wall.elapsed(), thread_cpu().saturating_sub(cpu))
}

/// A membership cluster of `nodes` under pubsub load (`interval_ms` per node).
fn membership(nodes: usize, duration_s: u32, interval_ms: u64) -> Scenario {
    Scenario::from_toml_str(&format!(
        "name = \"speed-{nodes}\"\nduration_s = {duration_s}\n[cluster]\nnodes = {nodes}\n\
         ttl_ms = 6000\n[pubsub]\ninterval_ms = {interval_ms}\n[invariants]\n\
         no_false_leave = true\npubsub_integrity = true\n"
    ))
    .expect("bench scenario")
}

/// Bare turmoil: `nodes` hosts, each sending a 200-byte datagram to every other
/// host once per `interval` (the shape of heartbeats plus pubsub), nothing else.
fn bare_turmoil(nodes: usize, duration: Duration, interval: Duration) {
    let mut sim = turmoil::Builder::new()
        .rng_seed(1)
        .simulation_duration(duration + Duration::from_secs(1))
        .tick_duration(TICK)
        .udp_capacity(UDP_CAPACITY)
        .build();
    let names: Vec<String> = (0..nodes).map(|i| format!("bare-{i:03}")).collect();
    for name in &names {
        let peers = names.clone();
        let me = name.clone();
        sim.host(name.as_str(), move || {
            let (peers, me) = (peers.clone(), me.clone());
            async move {
                let socket =
                    turmoil::net::UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 9000)))
                        .await?;
                let payload = [7u8; 200];
                let mut buffer = [0u8; 512];
                let mut tick = tokio::time::interval(interval);
                loop {
                    tokio::select! {
                        biased;
                        _ = socket.recv_from(&mut buffer) => {}
                        _ = tick.tick() => {
                            for peer in peers.iter().filter(|p| **p != me) {
                                let target = (turmoil::lookup(peer.as_str()), 9000);
                                let _ = socket.send_to(&payload, target).await;
                            }
                        }
                    }
                }
            }
        });
    }
    while sim.elapsed() < duration {
        sim.step().expect("bare simulation");
    }
}

fn median(mut walls: Vec<Duration>) -> Duration {
    walls.sort();
    walls[walls.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument picks configurations.
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let configs = [(32usize, 30u32, 1_000u64), (256, 10, 1_000)];
    println!(
        "{:<22} {:>9} {:>8} {:>13} {:>8} {:>12} {:>13} {:>12} {:>6}",
        "cluster",
        "simulated",
        "wall",
        "sim s/wall s",
        "cpu",
        "sim s/cpu s",
        "bare (wall)",
        "bare (cpu)",
        "ratio"
    );
    for (nodes, duration_s, interval_ms) in configs {
        let name = format!("{nodes} nodes + pubsub");
        if filter.as_ref().is_some_and(|f| !name.contains(f.as_str())) {
            continue;
        }
        let scenario = membership(nodes, duration_s, interval_ms);
        let simulated = Duration::from_secs(u64::from(duration_s));
        let (mut ours, mut ours_cpu, mut bare, mut bare_cpu) = (vec![], vec![], vec![], vec![]);
        for seed in 1..=RUNS as u64 {
            let (verdict, wall, cpu) = timed(|| run(&scenario, seed).expect("bench run"));
            assert!(verdict.is_clean(), "{:?}", verdict.safety_violations);
            ours.push(wall);
            ours_cpu.push(cpu);
            let interval = Duration::from_millis(interval_ms / 2);
            let ((), wall, cpu) = timed(|| bare_turmoil(nodes, simulated, interval));
            bare.push(wall);
            bare_cpu.push(cpu);
        }
        let per = |d: Duration| simulated.as_secs_f64() / d.as_secs_f64();
        let (ours, ours_cpu) = (median(ours), median(ours_cpu));
        let (bare, bare_cpu) = (median(bare), median(bare_cpu));
        println!(
            "{name:<22} {:>8.0}s {:>7.2}s {:>13.2} {:>7.2}s {:>12.2} {:>13.2} {:>12.2} {:>5.2}x",
            simulated.as_secs_f64(),
            ours.as_secs_f64(),
            per(ours),
            ours_cpu.as_secs_f64(),
            per(ours_cpu),
            per(bare),
            per(bare_cpu),
            per(ours_cpu) / per(bare_cpu)
        );
    }
}
