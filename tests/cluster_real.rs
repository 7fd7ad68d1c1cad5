//! Real `ww-sched` processes on loopback find each other: by multicast with the
//! default discovery (on an OS-chosen group port), and by a static list.

mod support;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{free_udp_port, start_worker, Proc};

/// A heartbeat TTL short enough that a wrong expiry shows within seconds.
const SHORT_TTL: &[&str] = &["--ttl-ms", "2000"];

/// A worker process and the peers it has reported joining.
struct Worker {
    proc: Proc,
    peer: String,
    address: String,
    seen: BTreeSet<String>,
}

impl Worker {
    fn start(discover: &str) -> Worker {
        Worker::start_with(discover, &[])
    }

    fn start_with(discover: &str, extra: &[&str]) -> Worker {
        let started = start_worker(discover, extra);
        let (proc, peer, address) = (started.proc, started.peer, started.address);
        Worker {
            proc,
            peer,
            address,
            seen: BTreeSet::new(),
        }
    }

    fn next_line(&mut self, deadline: Instant) -> Option<String> {
        let line = self.proc.next_line(deadline)?;
        if let Some(rest) = line.strip_prefix("peer joined: ") {
            if let Some(peer) = rest.split_whitespace().next() {
                self.seen.insert(peer.to_string());
            }
        }
        Some(line)
    }

    /// Reads output until this worker has seen every peer in `peers`.
    fn wait_to_see(&mut self, peers: &BTreeSet<String>, deadline: Instant) {
        while !peers.is_subset(&self.seen) {
            if self.next_line(deadline).is_none() {
                panic!(
                    "worker {} saw only {:?} of {:?} in time",
                    self.peer, self.seen, peers
                );
            }
        }
    }
}

fn all_see_all(workers: &mut [Worker]) {
    let peers: BTreeSet<String> = workers.iter().map(|w| w.peer.clone()).collect();
    // Bound: a node beats every TTL/7 (about 1.4 s); 30 s is generous for slow CI.
    let deadline = Instant::now() + Duration::from_secs(30);
    for worker in workers.iter_mut() {
        worker.wait_to_see(&peers, deadline);
    }
}

#[test]
fn three_processes_see_each_other_through_multicast() {
    let discover = format!("/ip4/228.8.8.8/udp/{}/multicast/lo", free_udp_port());
    let mut workers: Vec<Worker> = (0..3).map(|_| Worker::start(&discover)).collect();
    all_see_all(&mut workers);

    // An observer started with the same discovery lists all three, as JSON.
    let output = Command::new(env!("CARGO_BIN_EXE_ww-sched"))
        .args([
            "peers",
            "--json",
            "--wait-ms",
            "4000",
            "--discover",
            &discover,
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let listed: BTreeSet<String> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["meta"]["role"] == "worker")
        .map(|row| row["peer"].as_str().unwrap().to_string())
        .collect();
    let peers: BTreeSet<String> = workers.iter().map(|w| w.peer.clone()).collect();
    assert_eq!(listed, peers);
}

#[test]
fn with_multicast_off_a_static_list_works() {
    let first = Worker::start("none");
    let address = first.address.clone();
    let mut workers = vec![first, Worker::start(&address), Worker::start(&address)];
    all_see_all(&mut workers);
    // A worker with no discovery at all sees only itself.
    let mut alone = Worker::start("none");
    let deadline = Instant::now() + Duration::from_secs(3);
    while alone.next_line(deadline).is_some() {}
    assert_eq!(alone.seen, BTreeSet::from([alone.peer.clone()]));
}

#[test]
fn with_multicast_off_a_boot_server_introduces_workers() {
    let mut server = Proc::start(&["boot-server", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    let boot = server.wait_for("boot server on ", Duration::from_secs(30));
    assert!(boot.ends_with("/boot"), "printed address {boot:?}");
    let mut workers = vec![
        Worker::start_with(&boot, SHORT_TTL),
        Worker::start_with(&boot, SHORT_TTL),
    ];
    all_see_all(&mut workers);

    // The server vanishes: only new discovery stops; the members keep their
    // view (heartbeats go peer to peer), well past their 2 s TTL.
    server.kill();
    let deadline = Instant::now() + Duration::from_secs(6);
    for worker in workers.iter_mut() {
        while let Some(line) = worker.next_line(deadline) {
            assert!(
                !line.starts_with("peer left: "),
                "a member dropped out after the boot server went: {line}"
            );
        }
    }
    let mut late = Worker::start_with(&boot, SHORT_TTL);
    let deadline = Instant::now() + Duration::from_secs(3);
    while late.next_line(deadline).is_some() {}
    assert_eq!(
        late.seen,
        BTreeSet::from([late.peer.clone()]),
        "a node started after the server left found peers"
    );
}

#[test]
fn a_boot_server_and_multicast_combine() {
    let mut server = Proc::start(&["boot-server", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    let boot = server.wait_for("boot server on ", Duration::from_secs(30));
    let multicast = format!("/ip4/228.8.8.8/udp/{}/multicast/lo", free_udp_port());
    // Only the first node uses both: the others meet it each its own way, and
    // heartbeats relayed over its connections complete every view.
    let mut workers = vec![
        Worker::start(&format!("{boot}+{multicast}")),
        Worker::start(&multicast),
        Worker::start(&boot),
    ];
    all_see_all(&mut workers);
}
