//! Separate `ww-sched` processes on loopback: a gateway and two workers that
//! register through its channel; tasks submitted over HTTP; workers and the
//! gateway killed with SIGKILL mid-flight.

mod support;

use std::time::{Duration, Instant};

use support::{
    free_tcp_port, get, submit_form, wait_final, wait_for_workers, Proc, StartedGateway, TempDir,
};
use ww_sched::tasks::{hash_puzzle, HASH_PUZZLE_WASM};

/// Spins `input` times; about a second per 10^8 on this machine's wasmi.
const BUSY_WAT: &str = r#"(module (func (export "run") (param i64 i64) (result i64) (local i64)
  (loop $spin
    (local.set 2 (i64.add (local.get 2) (i64.const 1)))
    (br_if $spin (i64.lt_u (local.get 2) (local.get 0))))
  (local.get 2)))"#;

type Gateway = StartedGateway;

fn start_gateway(data: &TempDir, p2p_port: u16) -> Gateway {
    support::start_gateway(data.path(), &format!("/ip4/127.0.0.1/tcp/{p2p_port}"), &[])
}

fn start_worker(gateway: &Gateway) -> (Proc, String) {
    let started = support::start_worker("none", &["--dial", &gateway.dial]);
    (started.proc, started.peer)
}

#[test]
fn multipart_hash_puzzle_runs_on_registered_workers() {
    let data = TempDir::new("gw-e2e");
    let gateway = start_gateway(&data, free_tcp_port());
    let _workers = [start_worker(&gateway), start_worker(&gateway)];
    wait_for_workers(&gateway.http, 2, Duration::from_secs(30));
    let task = submit_form(
        &gateway.http,
        &[
            ("id", "puzzle"),
            ("description", "e2e"),
            ("input", "7"),
            ("difficulty", "3"),
            ("repeats", "1"),
        ],
        HASH_PUZZLE_WASM,
    );
    assert_eq!(task["id"], "puzzle");
    let task = wait_final(&gateway.http, "puzzle", Duration::from_secs(60));
    assert_eq!(task["status"], "succeeded", "{task}");
    assert_eq!(task["completions"], 1);
    assert_eq!(
        task["runs"][0]["results"][0].as_i64(),
        Some(i64::from(hash_puzzle(7, 3)))
    );

    // The CLI: `submit` prints the id, follows the task, prints each run's result.
    let wasm =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tasks/hash-puzzle/hash-puzzle.wasm");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ww-sched"))
        .args([
            "submit",
            "--input",
            "5",
            "--difficulty",
            "2",
            "--repeats",
            "2",
            "--id",
            "cli",
        ])
        .args(["--gateway", &gateway.http])
        .arg(&wasm)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    let mut lines = printed.lines();
    assert_eq!(lines.next(), Some("cli"));
    let results: Vec<&str> = lines.collect();
    assert_eq!(results.len(), 2, "{printed}");
    for line in results {
        assert!(
            line.contains(&format!("succeeded result [{}]", hash_puzzle(5, 2))),
            "{line}"
        );
    }
    let listed = std::process::Command::new(env!("CARGO_BIN_EXE_ww-sched"))
        .args(["tasks", "--gateway", &gateway.http])
        .output()
        .unwrap();
    let table = String::from_utf8(listed.stdout).unwrap();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("cli ") && l.contains("succeeded")),
        "{table}"
    );
}

#[test]
fn a_killed_worker_leaves_the_pool_and_its_run_finishes_elsewhere() {
    let data = TempDir::new("gw-kill-worker");
    let gateway = start_gateway(&data, free_tcp_port());
    let mut workers = vec![start_worker(&gateway), start_worker(&gateway)];
    wait_for_workers(&gateway.http, 2, Duration::from_secs(30));
    let busy = wat::parse_str(BUSY_WAT).unwrap();
    submit_form(
        &gateway.http,
        &[
            ("id", "busy"),
            ("input", "300000000"),
            ("difficulty", "0"),
            ("duration", "120"),
        ],
        &busy,
    );
    // Wait until the run is on a worker, then kill that worker.
    let deadline = Instant::now() + Duration::from_secs(30);
    let victim = loop {
        let task = get(&format!("{}/tasks/busy", gateway.http));
        if let Some(worker) = task["runs"][0]["worker"].as_str() {
            break worker.to_string();
        }
        assert!(Instant::now() < deadline, "the run never started: {task}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let at = workers
        .iter()
        .position(|(_, peer)| *peer == victim)
        .expect("run on a known worker");
    let (mut proc, _) = workers.remove(at);
    proc.kill();
    let killed_at = Instant::now();
    // Bound: out of the pool within the membership TTL (10 s); liveness pings run every 2 s.
    wait_for_workers(&gateway.http, 1, Duration::from_secs(10));
    assert!(killed_at.elapsed() <= Duration::from_secs(10));
    let task = wait_final(&gateway.http, "busy", Duration::from_secs(120));
    assert_eq!(task["status"], "succeeded", "{task}");
    let run = &task["runs"][0];
    assert_eq!(run["results"][0].as_i64(), Some(300_000_000));
    assert!(run["attempt"].as_u64().unwrap() >= 2, "{run}");
    assert_eq!(run["worker"].as_str(), Some(workers[0].1.as_str()));
}

#[test]
fn a_killed_gateway_restarts_with_every_task_and_workers_register_again() {
    let data = TempDir::new("gw-restart");
    let p2p_port = free_tcp_port();
    let mut gateway = start_gateway(&data, p2p_port);
    let _workers = [start_worker(&gateway), start_worker(&gateway)];
    wait_for_workers(&gateway.http, 2, Duration::from_secs(30));
    submit_form(
        &gateway.http,
        &[("id", "now"), ("input", "1"), ("difficulty", "2")],
        HASH_PUZZLE_WASM,
    );
    submit_form(
        &gateway.http,
        &[
            ("id", "later"),
            ("input", "2"),
            ("difficulty", "2"),
            ("start", "4"),
        ],
        HASH_PUZZLE_WASM,
    );
    submit_form(
        &gateway.http,
        &[
            ("id", "twice"),
            ("input", "3"),
            ("difficulty", "2"),
            ("repeats", "2"),
            ("delay", "3"),
        ],
        HASH_PUZZLE_WASM,
    );
    assert_eq!(
        wait_final(&gateway.http, "now", Duration::from_secs(30))["status"],
        "succeeded"
    );
    let peer = gateway.peer.clone();
    gateway.proc.kill();

    // Same data directory (and so the same key and peer id), same libp2p port.
    let gateway = start_gateway(&data, p2p_port);
    assert_eq!(gateway.peer, peer, "the key file keeps the gateway's id");
    let listed: Vec<String> = get(&format!("{}/tasks", gateway.http))
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, ["later", "now", "twice"]);
    wait_for_workers(&gateway.http, 2, Duration::from_secs(30));
    for (id, input) in [("later", 2), ("twice", 3)] {
        let task = wait_final(&gateway.http, id, Duration::from_secs(60));
        assert_eq!(task["status"], "succeeded", "{task}");
        for run in task["runs"].as_array().unwrap() {
            assert_eq!(
                run["results"][0].as_i64(),
                Some(i64::from(hash_puzzle(input, 2)))
            );
        }
    }
}
