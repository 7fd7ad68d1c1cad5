//! Runs every scenario file in `scenarios/` (found at test time, so a new file is
//! picked up without code changes) under two fixed seeds, checks determinism, and
//! checks that the invariant checkers can fail.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ww_sim::root_seed;
use ww_sim::scenario::{run, Scenario};

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

fn scenario_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(scenarios_dir())
        .expect("read scenarios/")
        .map(|entry| entry.expect("read scenarios/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

fn replay(file: &Path, seed: u64) -> String {
    format!(
        "replay: ww-sim run {} --seed {seed}   (or: WW_SIM_SEED={seed} cargo test -p ww-sim \
         --test scenarios every_scenario_file)",
        file.display()
    )
}

#[test]
fn every_scenario_file_holds_its_invariants_under_two_seeds() {
    let base = root_seed(1);
    let seeds = [base, base.wrapping_add(1)];
    eprintln!("seeds {seeds:?}");
    let files = scenario_files();
    assert!(files.len() >= 4, "expected scenario files, found {files:?}");
    let mut failures = Vec::new();
    for file in &files {
        let scenario = match Scenario::load(file) {
            Ok(s) => s,
            Err(e) => {
                failures.push(format!("{e}"));
                continue;
            }
        };
        for seed in seeds {
            let started = Instant::now();
            match run(&scenario, seed) {
                Ok(verdict) => {
                    eprintln!(
                        "{} seed {seed}: {} in {:.2}s wall",
                        scenario.name,
                        if verdict.is_clean() { "ok" } else { "FAILED" },
                        started.elapsed().as_secs_f64()
                    );
                    if !verdict.is_clean() {
                        failures.push(format!(
                            "{} seed {seed}:\n  safety: {:?}\n  liveness: {:?}\n  timeline:\n    {}\n{}",
                            scenario.name,
                            verdict.safety_violations,
                            verdict.liveness_violations,
                            verdict.timeline.join("\n    "),
                            replay(file, seed)
                        ));
                    }
                }
                Err(e) => failures.push(format!(
                    "{} seed {seed}: harness error: {e}\n{}",
                    scenario.name,
                    replay(file, seed)
                )),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn a_scenario_run_is_deterministic_per_seed() {
    let file = scenarios_dir().join("partition-and-heal.toml");
    let scenario = Scenario::load(&file).expect("load");
    let seed = root_seed(6);
    let first = run(&scenario, seed).expect("run");
    let second = run(&scenario, seed).expect("run");
    assert_eq!(
        first.digest,
        second.digest,
        "same seed, different traces\n{}",
        replay(&file, seed)
    );
    assert_eq!(first.timeline, second.timeline);
    let other = run(&scenario, seed.wrapping_add(1)).expect("run");
    assert_ne!(
        first.digest, other.digest,
        "a different seed gave the same trace"
    );
}

const PARTITION_WRONG_BOUND: &str = r#"
name = "partition-wrong-bound"
duration_s = 16
[cluster]
nodes = 8
[[faults]]
at_s = 3
kind = "partition"
a = ["node-000", "node-001", "node-002", "node-003"]
b = ["node-004", "node-005", "node-006", "node-007"]
[[faults]]
at_s = 14
kind = "repair"
a = ["node-000", "node-001", "node-002", "node-003"]
b = ["node-004", "node-005", "node-006", "node-007"]
[invariants]
no_false_leave = true
views_complete_within_s = 0   # wrong on purpose: rediscovery takes heartbeats
"#;

#[test]
fn an_impossible_liveness_bound_is_reported() {
    let scenario = Scenario::from_toml_str(PARTITION_WRONG_BOUND).expect("parse");
    let seed = root_seed(7);
    let verdict = run(&scenario, seed).expect("run");
    assert!(
        !verdict.liveness_violations.is_empty(),
        "a zero bound after a partition should be violated (seed {seed}): {:?}",
        verdict.timeline
    );
    // The partition excuses every expiry across the cut.
    assert!(
        verdict.safety_violations.is_empty(),
        "{:?}",
        verdict.safety_violations
    );
}

#[test]
fn unexcused_expiries_are_reported_as_safety_violations() {
    // Every link breaks at 3 s and never mends. Loss is not a fault that excuses
    // an expiry, so every expiry is a false leave by the checker's definition.
    let text = r#"
name = "total-loss"
duration_s = 20
[cluster]
nodes = 4
[network]
repair_rate = 0.0
[[faults]]
at_s = 3
kind = "loss"
fail_rate = 1.0
[invariants]
no_false_leave = true
"#;
    let scenario = Scenario::from_toml_str(text).expect("parse");
    let verdict = run(&scenario, root_seed(8)).expect("run");
    assert!(
        !verdict.safety_violations.is_empty(),
        "total loss should make nodes expire: {:?}",
        verdict.timeline
    );
}

#[test]
fn bad_scenarios_are_refused_with_a_reason() {
    let base = "name = \"x\"\nduration_s = 10\n[cluster]\nnodes = 4\n[invariants]\n";
    let cases = [
        (format!("{base}bogus = 1\n"), "bogus"),
        (format!("colour = 1\n{base}"), "colour"),
        (
            format!("{base}[[faults]]\nat_s = 1\nkind = \"explode\"\nnodes = [\"node-000\"]\n"),
            "explode",
        ),
        (
            format!("{base}[[faults]]\nat_s = 1\nkind = \"crash\"\nnodes = [\"node-009\"]\n"),
            "unknown node",
        ),
        (
            format!(
                "{base}[[faults]]\nat_s = 5\nkind = \"crash\"\nnodes = [\"node-000\"]\n\
                 [[faults]]\nat_s = 2\nkind = \"restart\"\nnodes = [\"node-000\"]\n"
            ),
            "time order",
        ),
        (
            format!("{base}[[faults]]\nat_s = 1\nkind = \"partition\"\na = [\"node-000\"]\n"),
            "non-empty",
        ),
        (format!("{base}views_complete_within_s = 10\n"), "too short"),
        (
            format!("{base}[[faults]]\nat_s = 1\nkind = \"loss\"\n"),
            "fail_rate",
        ),
    ];
    for (text, expected) in cases {
        let error = Scenario::from_toml_str(&text).expect_err(&text).to_string();
        assert!(
            error.contains(expected),
            "{text:?}: error {error:?} should mention {expected:?}"
        );
    }
}

#[test]
fn the_binary_prints_a_verdict_and_exits_by_kind() {
    let bin = env!("CARGO_BIN_EXE_ww-sim");
    let ok = Command::new(bin)
        .args(["run"])
        .arg(scenarios_dir().join("steady-state.toml"))
        .args(["--seed", "3"])
        .env_remove("WW_SIM_SEED")
        .output()
        .expect("run ww-sim");
    let stdout = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{stdout}");
    assert!(stdout.starts_with("seed 3\n"), "{stdout}");
    assert!(stdout.contains("verdict: ok"), "{stdout}");

    let dir = std::env::temp_dir().join(format!("ww-sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let wrong = dir.join("wrong-bound.toml");
    std::fs::write(&wrong, PARTITION_WRONG_BOUND).expect("write");
    let liveness = Command::new(bin)
        .arg("run")
        .arg(&wrong)
        .args(["--seed", "5"])
        .output()
        .expect("run ww-sim");
    let stdout = String::from_utf8_lossy(&liveness.stdout);
    assert_eq!(liveness.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains(&format!("replay: ww-sim run {} --seed 5", wrong.display())),
        "{stdout}"
    );

    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "name = 3\n").expect("write");
    let harness = Command::new(bin)
        .arg("run")
        .arg(&bad)
        .output()
        .expect("run ww-sim");
    assert_eq!(harness.status.code(), Some(3));
    let usage = Command::new(bin)
        .arg("frobnicate")
        .output()
        .expect("run ww-sim");
    assert_eq!(usage.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("usage: ww-sim run"));
    let _ = std::fs::remove_dir_all(&dir);
}
