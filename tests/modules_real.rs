//! Modules through the records, real processes on loopback: the gateway sends
//! a module's bytes to the first worker that lacks it; that worker leaves it
//! in the cluster's records, and the other workers fetch it from there by
//! hash instead of being sent it by the gateway.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::{
    free_udp_port, http_agent, start_gateway_discovering, start_worker, StartedWorker, TempDir,
};

fn metric(url: &str, name: &str) -> u64 {
    let text = http_agent(Duration::from_secs(10))
        .get(url)
        .call()
        .expect("metrics answer")
        .body_mut()
        .read_to_string()
        .expect("metrics text");
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("no {name} in {text}"))
        .trim()
        .parse()
        .expect("a count")
}

fn submit(http: &str, repeats: &str) {
    let wasm = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tasks/hash-puzzle/hash-puzzle.wasm"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_ww-sched"))
        .args([
            "submit",
            "--gateway",
            http,
            "--input",
            "7",
            "--difficulty",
            "1",
            "--repeats",
            repeats,
            wasm,
        ])
        .output()
        .expect("run ww-sched submit");
    assert!(
        output.status.success(),
        "submit: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Module transfers in a cluster of a gateway and 3 workers (started with
/// `worker_flags`) running one task of 1 run, then one of 40: (sent by the
/// gateway, fetched from the records), over all workers.
fn module_transfers(worker_flags: &[&str]) -> (u64, u64) {
    let discover = format!("/ip4/228.8.8.8/udp/{}/multicast/lo", free_udp_port());
    let data = TempDir::new("modules-real");
    let gateway = start_gateway_discovering(data.path(), "/ip4/127.0.0.1/tcp/0", &discover, &[]);
    let http = gateway.http.clone();
    let mut flags = vec!["--metrics", "127.0.0.1:0", "--slots", "2"];
    flags.extend_from_slice(worker_flags);
    let mut workers: Vec<StartedWorker> = (0..3).map(|_| start_worker(&discover, &flags)).collect();
    let metrics: Vec<String> = workers
        .iter()
        .map(|w| {
            w.proc
                .seen
                .iter()
                .find_map(|l| l.strip_prefix("metrics on "))
                .expect("the worker printed its metrics address")
                .to_string()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let pool: serde_json::Value = http_agent(Duration::from_secs(10))
            .get(&format!("{http}/workers"))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        if pool.as_array().map_or(0, Vec::len) == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "pool never had 3 workers: {pool}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Records are placed by each node's own view: measure once every worker
    // sees every node, or a worker whose view still lacks the putter's
    // holders asks others, finds nothing and is sent the module.
    wait_for_full_views(&mut workers, 4, Duration::from_secs(30));
    let total = |name: &str| metrics.iter().map(|url| metric(url, name)).sum::<u64>();

    // One run: one worker is sent the module (and leaves it in the records).
    submit(&http, "1");
    assert_eq!(total("ww_sched_worker_modules_received_total"), 1);
    std::thread::sleep(Duration::from_secs(2));

    // Many runs over all three.
    submit(&http, "40");
    let ran: Vec<u64> = metrics
        .iter()
        .map(|url| metric(url, "ww_sched_worker_runs_started_total"))
        .collect();
    assert!(ran.iter().all(|&n| n > 0), "every worker ran: {ran:?}");
    (
        total("ww_sched_worker_modules_received_total"),
        total("ww_sched_worker_modules_fetched_total"),
    )
}

/// Waits until every worker has printed `peer joined:` for `nodes` distinct
/// peers (itself included): its membership view holds the whole cluster.
fn wait_for_full_views(workers: &mut [StartedWorker], nodes: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    for worker in workers.iter_mut() {
        loop {
            let joined: std::collections::BTreeSet<String> = worker
                .proc
                .seen
                .iter()
                .filter_map(|l| l.strip_prefix("peer joined: "))
                .filter_map(|rest| rest.split_whitespace().next())
                .map(str::to_string)
                .collect();
            if joined.len() >= nodes {
                break;
            }
            assert!(
                worker.proc.next_line(deadline).is_some(),
                "worker {} saw {} of {nodes} nodes join within {timeout:?}: {:?}",
                worker.peer,
                joined.len(),
                worker.proc.seen
            );
        }
    }
}

#[test]
fn workers_fetch_a_module_from_the_records_instead_of_the_gateway() {
    let module_bytes = ww_sched::tasks::HASH_PUZZLE_WASM.len() as u64;
    let (sent, fetched) = module_transfers(&[]);
    let (sent_without, fetched_without) = module_transfers(&["--no-records-modules"]);
    eprintln!(
        "with the records: the gateway sent the module {sent} times ({} bytes), {fetched} \
         fetched from the records; without: sent {sent_without} times ({} bytes)",
        sent * module_bytes,
        sent_without * module_bytes
    );
    assert_eq!(sent, 1, "the gateway sent the module more than once");
    assert_eq!(
        fetched, 2,
        "the two other workers fetched it from the records"
    );
    assert_eq!(fetched_without, 0);
    assert!(
        sent_without >= 3,
        "without the records each worker is sent it"
    );
}
