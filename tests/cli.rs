//! The `ww-sched` binary as a user runs it: a worker in one process, `call` in
//! another, and `run-local` without a network.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::start_worker;

use ww_sched::tasks::hash_puzzle;

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ww-sched"))
}

fn hash_puzzle_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tasks/hash-puzzle/hash-puzzle.wasm")
}

#[test]
fn worker_and_call_in_two_processes() {
    let worker = start_worker("none", &[]);
    let (peer, address) = (worker.peer.clone(), worker.address.clone());
    assert!(address.ends_with(&peer), "{address}");

    let output = binary()
        .args([
            "call",
            "--peer",
            &address,
            "--input",
            "7",
            "--difficulty",
            "3",
        ])
        .arg("--wasm")
        .arg(hash_puzzle_path())
        .output()
        .expect("run ww-sched call");
    assert!(
        output.status.success(),
        "call failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout).unwrap();
    assert_eq!(printed.trim(), hash_puzzle(7, 3).to_string());
}

#[test]
fn call_refuses_an_address_without_peer_id() {
    let output = binary()
        .args([
            "call",
            "--peer",
            "/ip4/127.0.0.1/tcp/1",
            "--input",
            "1",
            "--difficulty",
            "1",
        ])
        .arg("--wasm")
        .arg(hash_puzzle_path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/p2p/"), "{stderr}");
}

#[test]
fn run_local_prints_the_result_and_names_failures() {
    let output = binary()
        .args(["run-local", "--input", "42", "--difficulty", "2"])
        .arg("--wasm")
        .arg(hash_puzzle_path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8(output.stdout).unwrap().trim(),
        hash_puzzle(42, 2).to_string()
    );

    let not_wasm = std::env::temp_dir().join(format!("ww-not-wasm-{}", std::process::id()));
    std::fs::write(&not_wasm, "just text, not a module").unwrap();
    let output = binary()
        .args(["run-local", "--input", "1", "--difficulty", "1"])
        .arg("--wasm")
        .arg(&not_wasm)
        .output()
        .unwrap();
    std::fs::remove_file(&not_wasm).unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not_wasm"), "{stderr}");

    let output = binary()
        .args([
            "run-local",
            "--wasm",
            "/nonexistent/module.wasm",
            "--arg",
            "1",
        ])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/module.wasm"));
}
