//! The closed cluster as a user runs it (real processes on loopback): making a
//! swarm key and a node id, refusing to listen open without a key, and who may
//! call a keyed worker.

mod support;

use std::process::Command;

use support::TempDir;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ww-sched"))
}

/// Runs `ww-sched` with `args`; returns (success, stdout, stderr).
fn run(args: &[&str]) -> (bool, String, String) {
    let output = binary()
        .args(args)
        .env_remove("WW_SCHED_SWARM_KEY")
        .output()
        .expect("run ww-sched");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn swarm_key_prints_a_libp2p_psk_and_writes_a_private_file() {
    let (ok, out, err) = run(&["swarm-key"]);
    assert!(ok, "{err}");
    let key: ww::transport::SwarmKey = out.parse().expect("the printed key parses");
    assert_eq!(out, key.to_string(), "printed in the canonical file form");
    let (_, again, _) = run(&["swarm-key"]);
    assert_ne!(out, again, "two runs printed the same key");

    let dir = TempDir::new("swarm-key");
    let path = format!("{}/swarm.key", dir.path());
    let (ok, out, err) = run(&["swarm-key", "--out", &path]);
    assert!(ok, "{err}");
    assert!(out.contains("fingerprint"), "{out}");
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(written.parse::<ww::transport::SwarmKey>().is_ok());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key file is readable by others");
    let (ok, _, err) = run(&["swarm-key", "--out", &path]);
    assert!(!ok && err.contains("not overwriting"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), written);
}

#[test]
fn id_prints_the_same_peer_id_for_a_key_file_and_creates_it() {
    let dir = TempDir::new("node-id");
    let path = format!("{}/node.key", dir.path());
    let (ok, first, err) = run(&["id", "--key", &path]);
    assert!(ok, "{err}");
    let first = first.trim().to_string();
    assert!(first.parse::<ww::transport::PeerId>().is_ok(), "{first}");
    let (_, second, _) = run(&["id", "--key", &path]);
    assert_eq!(first, second.trim());
}

#[test]
fn without_a_swarm_key_nodes_refuse_to_listen_beyond_loopback() {
    let dir = TempDir::new("open-refused");
    let data = format!("{}/data", dir.path());
    for args in [
        vec![
            "worker",
            "--listen",
            "/ip4/0.0.0.0/tcp/0",
            "--discover",
            "none",
        ],
        vec![
            "gateway",
            "--data",
            &data,
            "--http",
            "127.0.0.1:0",
            "--listen",
            "/ip4/0.0.0.0/tcp/0",
            "--discover",
            "none",
        ],
        vec!["worker", "--discover", "/ip4/10.0.0.0/udp/8822/cidr/24"],
    ] {
        let (ok, _, err) = run(&args);
        assert!(!ok, "{args:?} started open without a key");
        assert!(err.contains("without a swarm key"), "{args:?}: {err}");
        assert!(
            err.contains("--swarm-key") && err.contains("--insecure-open"),
            "{err}"
        );
    }
    let key = format!("{}/swarm.key", dir.path());
    assert!(run(&["swarm-key", "--out", &key]).0);
    let (ok, _, err) = run(&[
        "worker",
        "--swarm-key",
        &key,
        "--discover",
        "/ip4/0.0.0.0/udp/1/cidr/40",
    ]);
    assert!(
        !ok && !err.contains("without a swarm key"),
        "with a key, only the bad spec is refused: {err}"
    );
}

/// `ww-sched call` against `address` with `extra` flags: (success, stderr).
fn call(address: &str, extra: &[&str]) -> (bool, String) {
    let wasm = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tasks/hash-puzzle/hash-puzzle.wasm");
    let mut args = vec![
        "call",
        "--peer",
        address,
        "--input",
        "7",
        "--difficulty",
        "1",
        "--timeout-ms",
        "5000",
        "--wasm",
        wasm.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (ok, out, err) = run(&args);
    if ok {
        assert!(
            !out.trim().is_empty(),
            "a successful call printed no result"
        );
    }
    (ok, err)
}

#[test]
fn a_keyed_worker_serves_calls_only_to_key_holders_it_allows() {
    let dir = TempDir::new("keyed-worker");
    let swarm_key = format!("{}/swarm.key", dir.path());
    assert!(run(&["swarm-key", "--out", &swarm_key]).0);
    let other_key = format!("{}/other.key", dir.path());
    assert!(run(&["swarm-key", "--out", &other_key]).0);
    let caller_key = format!("{}/caller.key", dir.path());
    let (_, caller_id, _) = run(&["id", "--key", &caller_key]);
    let stranger_key = format!("{}/stranger.key", dir.path());

    let worker = support::start_worker(
        "none",
        &["--swarm-key", &swarm_key, "--allow", caller_id.trim()],
    );
    let address = worker.address.clone();
    // The allowed caller with the key runs its module.
    let (ok, err) = call(&address, &["--key", &caller_key, "--swarm-key", &swarm_key]);
    assert!(ok, "the allowed key holder was refused: {err}");
    // Without the key nobody gets through, allowed or not.
    let (ok, _) = call(&address, &["--key", &caller_key]);
    assert!(!ok, "a caller without the swarm key was served");
    let (ok, _) = call(&address, &["--key", &caller_key, "--swarm-key", &other_key]);
    assert!(!ok, "a caller with another swarm key was served");
    // A key holder that is not allowed gets no Worker capability.
    let (ok, _) = call(
        &address,
        &["--key", &stranger_key, "--swarm-key", &swarm_key],
    );
    assert!(!ok, "a key holder not named by --allow was served");
    let (ok, _) = call(&address, &["--swarm-key", &swarm_key]);
    assert!(!ok, "an anonymous key holder was served");
}

#[test]
fn a_keyed_cluster_runs_tasks_and_an_outsider_cannot_register() {
    let dir = TempDir::new("keyed-cluster");
    let swarm_key = format!("{}/swarm.key", dir.path());
    assert!(run(&["swarm-key", "--out", &swarm_key]).0);
    let data = format!("{}/data", dir.path());
    let gateway =
        support::start_gateway(&data, "/ip4/127.0.0.1/tcp/0", &["--swarm-key", &swarm_key]);
    let _member = support::start_worker(
        "none",
        &["--swarm-key", &swarm_key, "--gateway", &gateway.dial],
    );
    let _outsider = support::start_worker("none", &["--gateway", &gateway.dial]);
    let agent = support::http_agent(std::time::Duration::from_secs(10));
    let workers = |agent: &ureq::Agent| -> usize {
        let body: serde_json::Value = agent
            .get(&format!("{}/workers", gateway.http))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        body.as_array().map_or(0, Vec::len)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while workers(&agent) < 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "the member never registered"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The outsider retries every second; give it several tries.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert_eq!(
        workers(&agent),
        1,
        "a worker without the swarm key registered"
    );

    let wasm = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tasks/hash-puzzle/hash-puzzle.wasm");
    let output = binary()
        .args([
            "submit",
            "--input",
            "5",
            "--difficulty",
            "1",
            "--gateway",
            &gateway.http,
        ])
        .arg(&wasm)
        .env_remove("WW_SCHED_SWARM_KEY")
        .output()
        .expect("run ww-sched submit");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("succeeded"),
        "the task did not succeed on the keyed worker: {stdout}"
    );
}
