//! Faults the gateway's users see: disk faults under a task workload (the
//! gateway fail-stops and its supervisor restarts it), and a client cut off
//! from the gateway, whose lost requests the cut must explain.

use ww_sim::root_seed;
use ww_sim::scenario::{run, Scenario, Verdict};

/// Fails unless the run held every invariant; `seed` names it.
fn assert_clean(verdict: &Verdict, seed: u64) {
    assert!(
        verdict.is_clean(),
        "seed {seed}: {:?} {:?}",
        verdict.safety_violations,
        verdict.liveness_violations
    );
}

/// The summary of `invariant`'s check, which must have run.
fn summary<'v>(verdict: &'v Verdict, invariant: &str) -> &'v str {
    verdict
        .checks
        .iter()
        .find(|c| c.invariant == invariant)
        .map(|c| c.summary.as_str())
        .unwrap_or_else(|| panic!("{invariant} was not checked"))
}

/// Each disk fault for a while, then a heal and a restart (a store that met
/// an I/O error stays failed until reopened). The only worker is down from the
/// start, so every store write is a submission's durable commit.
const DISK_FAULTS: &str = r#"
name = "disk-faults"
duration_s = 40
[gateway]
workers = 1
[tasks]
count = 40
submit_from_s = 1
submit_until_s = 14
repeats_max = 2
start_ms_max = 1000
interval_ms_max = 1000
cancel_percent = 0
[[faults]]
at_s = 0
kind = "crash"
nodes = ["worker-0"]
[[faults]]
at_s = 3
kind = "disk_eio"
nodes = ["gateway"]
[[faults]]
at_s = 5
kind = "disk_heal"
nodes = ["gateway"]
[[faults]]
at_s = 8
kind = "disk_fsync_fail"
nodes = ["gateway"]
[[faults]]
at_s = 9
kind = "disk_heal"
nodes = ["gateway"]
[[faults]]
at_s = 12
kind = "disk_full"
nodes = ["gateway"]
[[faults]]
at_s = 13
kind = "disk_heal"
nodes = ["gateway"]
[invariants]
no_task_lost = true
one_terminal_status = true
refusals_explained = true
"#;

/// Disk faults reach the gateway's store: each refuses some of its calls (the
/// timeline says how many), the gateway fail-stops and its supervisor restarts
/// it (no restart is scheduled: it starts more than once only by stopping
/// itself), and nothing acknowledged is lost, no shown result changes, every
/// refusal is explained.
#[test]
fn disk_faults_reach_the_gateways_store() {
    let scenario = Scenario::from_toml_str(DISK_FAULTS).expect("parse");
    for seed in 1..=4 {
        let verdict = run(&scenario, seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        for fault in ["eio", "fsync failure", "enospc"] {
            let line = verdict
                .timeline
                .iter()
                .find(|l| l.ends_with(&format!("calls under {fault}")))
                .unwrap_or_else(|| panic!("no heal line for {fault}: {:#?}", verdict.timeline));
            assert!(
                !line.contains("refused 0 calls"),
                "seed {seed}: {fault} refused nothing: {line}"
            );
        }
        assert_clean(&verdict, seed);
        let lost = summary(&verdict, "no_task_lost");
        let starts: u64 = lost
            .rsplit("gateway started ")
            .next()
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no start count in {lost:?}"));
        assert!(
            starts >= 4,
            "seed {seed}: the gateway fail-stopped {} times, not 3",
            starts - 1
        );
    }
}

/// The client cut off from the gateway for 3 s: its timeouts are explained by
/// the cut, and nothing else breaks.
#[test]
fn requests_lost_on_a_cut_client_link_are_explained() {
    let text = r#"
name = "client-cut-off"
duration_s = 45
[gateway]
workers = 2
[tasks]
count = 15
submit_from_s = 1
submit_until_s = 10
repeats_max = 2
start_ms_max = 1000
interval_ms_max = 1000
[[faults]]
at_s = 4
kind = "partition"
a = ["client"]
b = ["gateway"]
[[faults]]
at_s = 7
kind = "repair"
a = ["client"]
b = ["gateway"]
[invariants]
no_task_lost = true
one_terminal_status = true
refusals_explained = true
runs_finish_within_s = 25
"#;
    let scenario = Scenario::from_toml_str(text).expect("parse");
    let seed = root_seed(13);
    let verdict = run(&scenario, seed).expect("run");
    assert_clean(&verdict, seed);
    let explained = summary(&verdict, "refusals_explained");
    assert!(explained.contains("by link"), "{explained}");
}

/// The runner arms each disk fault on the gateway's disk and heals it (the
/// heal's timeline line names the fault it found armed).
#[test]
fn disk_faults_are_armed_and_healed_on_the_gateways_disk() {
    let mut text = String::from("name = \"disk\"\nduration_s = 10\n[gateway]\nworkers = 1\n");
    for (i, kind) in ["disk_eio", "disk_full", "disk_fsync_fail"]
        .iter()
        .enumerate()
    {
        for (at, kind) in [(2 * i + 1, *kind), (2 * i + 2, "disk_heal")] {
            text.push_str(&format!(
                "[[faults]]\nat_s = {at}\nkind = \"{kind}\"\nnodes = [\"gateway\"]\n"
            ));
        }
    }
    text.push_str("[invariants]\n");
    let scenario = Scenario::from_toml_str(&text).expect("parse");
    let verdict = run(&scenario, root_seed(12)).expect("run");
    for (at, line) in [
        (1.0, "fault disk_eio gateway"),
        (2.0, "gateway disk refused 0 calls under eio"),
        (4.0, "gateway disk refused 0 calls under enospc"),
        (6.0, "gateway disk refused 0 calls under fsync failure"),
        (6.0, "fault disk_heal gateway"),
    ] {
        let expected = format!("{at:>9.3}s {line}");
        assert!(
            verdict.timeline.contains(&expected),
            "no {expected:?} in {:#?}",
            verdict.timeline
        );
    }
}
