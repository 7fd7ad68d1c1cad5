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
    let key: ww_sched::transport::SwarmKey = out.parse().expect("the printed key parses");
    assert_eq!(out, key.to_string(), "printed in the canonical file form");
    let (_, again, _) = run(&["swarm-key"]);
    assert_ne!(out, again, "two runs printed the same key");

    let dir = TempDir::new("swarm-key");
    let path = format!("{}/swarm.key", dir.path());
    let (ok, out, err) = run(&["swarm-key", "--out", &path]);
    assert!(ok, "{err}");
    assert!(out.contains("fingerprint"), "{out}");
    let written = std::fs::read_to_string(&path).unwrap();
    assert!(written.parse::<ww_sched::transport::SwarmKey>().is_ok());
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
    assert!(
        first.parse::<ww_sched::transport::PeerId>().is_ok(),
        "{first}"
    );
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
