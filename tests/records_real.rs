//! The DHT through real processes on loopback: a record put by one process is
//! read by another after the first has exited, and after k-1 of the hosts
//! that held it are killed; and a host that was never discovered directly is
//! reached by its id through its peer record.

mod support;

use std::time::{Duration, Instant};

use support::{
    free_udp_port, run_observer, start_worker, stdout_of_success, StartedWorker, TempDir,
};

#[test]
fn a_record_outlives_its_putter_and_k_minus_1_holders() {
    let discover = format!("/ip4/228.8.8.8/udp/{}/multicast/lo", free_udp_port());
    let mut workers: Vec<StartedWorker> = (0..5).map(|_| start_worker(&discover, &[])).collect();
    let dir = TempDir::new("records-real");
    let file = std::path::Path::new(dir.path()).join("payload.bin");
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&file, &payload).unwrap();

    let put = run_observer(&["record", "put", file.to_str().unwrap()], &discover);
    let key = stdout_of_success(&put, "record put").trim().to_string();
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
    let got = run_observer(&["record", "get", &key], &discover);
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
    let got = run_observer(&["record", "get", &key], &discover);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    assert_eq!(got.stdout, payload);

    // A key nobody holds is an error that says so.
    let missing = run_observer(&["record", "get", &"0".repeat(64)], &discover);
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
    // Its peer record is published 2 s after it joins (later on a loaded
    // machine): until an observer can resolve it, `anchor set` fails saying
    // the host has no address; it must succeed within a minute.
    std::thread::sleep(Duration::from_secs(3));
    let started = Instant::now();
    loop {
        let set = run_observer(&["anchor", "set", &anchor, "found"], &discover);
        if set.status.success() || started.elapsed() > Duration::from_secs(60) {
            stdout_of_success(&set, "anchor set on the hidden host");
            break;
        }
        let stderr = String::from_utf8_lossy(&set.stderr);
        assert!(
            stderr.contains("no addresses for peer"),
            "anchor set failed otherwise than by an unresolved host: {stderr}"
        );
    }
    assert_eq!(
        stdout_of_success(
            &run_observer(&["anchor", "get", &anchor], &discover),
            "anchor get"
        ),
        "found"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}
