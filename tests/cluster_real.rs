//! Real `ww-sched` processes on loopback find each other: by multicast with the
//! default discovery (on an OS-chosen group port), and by a static list.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

/// Kills the process even when an assertion fails first.
struct Worker {
    child: Child,
    lines: Receiver<String>,
    peer: String,
    address: String,
    seen: BTreeSet<String>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Worker {
    fn start(discover: &str) -> Worker {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ww-sched"))
            .args(["worker", "--listen", "/ip4/127.0.0.1/tcp/0", "--slots", "1"])
            .args(["--discover", discover])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start ww-sched worker");
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        let mut worker = Worker {
            child,
            lines,
            peer: String::new(),
            address: String::new(),
            seen: BTreeSet::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while worker.address.is_empty() {
            let line = worker
                .next_line(deadline)
                .expect("worker printed no address");
            if let Some(peer) = line.strip_prefix("peer id: ") {
                worker.peer = peer.to_string();
            }
            if let Some(address) = line.strip_prefix("listening on ") {
                worker.address = address.to_string();
            }
        }
        worker
    }

    fn next_line(&mut self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = self.lines.recv_timeout(left).ok()?;
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

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn all_see_all(workers: &mut [Worker]) {
    let peers: BTreeSet<String> = workers.iter().map(|w| w.peer.clone()).collect();
    // Bound: a node beats every TTL/6 (about 1.7 s); 30 s is generous for slow CI.
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
    let mut first = Worker::start("none");
    let address = first.address.clone();
    let mut workers = vec![Worker::start(&address), Worker::start(&address)];
    workers.insert(0, std::mem::replace(&mut first, Worker::start("none")));
    // `first` now holds an unrelated, isolated worker: it must see only itself.
    all_see_all(&mut workers);
    let deadline = Instant::now() + Duration::from_secs(3);
    while first.next_line(deadline).is_some() {}
    assert_eq!(first.seen, BTreeSet::from([first.peer.clone()]));
}
