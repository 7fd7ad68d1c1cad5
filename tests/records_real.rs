//! The DHT through real processes on loopback: a record put by one process is
//! read by another after the first has exited, and after k-1 of the hosts
//! that held it are killed; and a host that was never discovered directly is
//! reached by its id through its peer record.

mod support;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use support::{start_worker, StartedWorker, TempDir};

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ww(args: &[&str], discover: &str) -> Output {
    let mut all = args.to_vec();
    all.extend_from_slice(&["--discover", discover, "--wait-ms", "6000"]);
    Command::new(env!("CARGO_BIN_EXE_ww-sched"))
        .args(&all)
        .output()
        .expect("run ww-sched")
}

fn ok(output: &Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout.clone()).expect("utf-8 output")
}

#[test]
fn a_record_outlives_its_putter_and_k_minus_1_holders() {
    let discover = format!("/ip4/228.8.8.8/udp/{}/multicast/lo", free_udp_port());
    let mut workers: Vec<StartedWorker> = (0..5).map(|_| start_worker(&discover, &[])).collect();
    let dir = TempDir::new("records-real");
    let file = std::path::Path::new(dir.path()).join("payload.bin");
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &payload).unwrap();

    let put = ww(&["record", "put", file.to_str().unwrap()], &discover);
    let key = ok(&put, "record put").trim().to_string();
    assert_eq!(key.len(), 64, "printed key {key:?}");
    let holders: Vec<String> = String::from_utf8_lossy(&put.stderr)
        .lines()
        .filter_map(|line| line.strip_prefix("  "))
        .map(str::to_string)
        .collect();
    assert_eq!(
        holders.len(),
        3,
        "stderr: {}",
        String::from_utf8_lossy(&put.stderr)
    );

    // The putter has exited; another process reads the bytes.
    let got = ww(&["record", "get", &key], &discover);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(got.stdout, payload);

    // Two of the three holders die; the third still serves it.
    for holder in &holders[..2] {
        let worker = workers
            .iter_mut()
            .find(|w| &w.peer == holder)
            .expect("a holder is a worker");
        worker.proc.kill();
    }
    let got = ww(&["record", "get", &key], &discover);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(got.stdout, payload);

    // A key nobody holds is an error that says so.
    let missing = ww(&["record", "get", &"0".repeat(64)], &discover);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no host of"));
}

#[test]
fn a_host_never_discovered_directly_is_reached_by_its_peer_record() {
    let discover = format!("/ip4/228.8.8.8/udp/{}/multicast/lo", free_udp_port());
    let seen: Vec<StartedWorker> = (0..3).map(|_| start_worker(&discover, &[])).collect();
    // This one knows only the first worker's address and answers no survey:
    // the observer hears its heartbeats relayed, but has no address for it.
    let hidden = start_worker(&seen[0].address, &[]);
    let anchor = format!("/{}/where", hidden.peer);
    // Its peer record is published 2 s after it joins.
    std::thread::sleep(Duration::from_secs(3));
    let started = Instant::now();
    ok(
        &ww(&["anchor", "set", &anchor, "found"], &discover),
        "anchor set on the hidden host",
    );
    assert_eq!(
        ok(&ww(&["anchor", "get", &anchor], &discover), "anchor get"),
        "found"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}
