//! The lease protocol's scenarios beyond `every_scenario_file`: determinism,
//! the two sabotages caught (and the same seeds clean unarmed), swarm
//! variation, takeover and cancel-stop times across seeds, and checks that
//! fail on forged logs.

use std::path::{Path, PathBuf};

use ww_sched::lease::model::{Reply, Request};
use ww_sched::lease::{RunOutcome, RunRef};
use ww_sim::root_seed;
use ww_sim::scenario::{run, run_with, swarm, RunOptions, Scenario, Verdict};
use ww_sim::workload::leases::{simulate, Action, ActionRecord, LeaseLog, OpRecord};
use ww_sim::workload::leases_check::judge;
use ww_sim::Sabotage;

/// Seeds a sabotage test searches from the root seed.
const SEARCH_SEEDS: u64 = 20;
/// Seeds the measurements and the swarm run.
const MEASURE_SEEDS: u64 = 20;

fn load(name: &str) -> (PathBuf, Scenario) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name);
    let scenario = Scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
    (file, scenario)
}

fn caught(verdict: &Verdict, check: &str, needle: &str) -> bool {
    verdict
        .safety_violations
        .iter()
        .any(|v| v.starts_with(&format!("{check}:")) && v.contains(needle))
}

#[test]
fn lease_scenarios_are_deterministic_per_seed() {
    for name in ["lease-gateway-crash.toml", "lease-partition.toml"] {
        let (_, scenario) = load(name);
        let seed = root_seed(7);
        let first = run(&scenario, seed).expect("run");
        let second = run(&scenario, seed).expect("run");
        assert_eq!(
            first.digest, second.digest,
            "{name}: same seed, other trace"
        );
        assert_eq!(first.timeline, second.timeline);
        let other = run(&scenario, seed.wrapping_add(1)).expect("run");
        assert_ne!(
            first.digest, other.digest,
            "{name}: another seed, same trace"
        );
    }
}

/// The first seed of [`SEARCH_SEEDS`] under which `file` with `sabotage`
/// armed breaks `check` with a violation containing `needle`; it must replay,
/// and the same seed unarmed must be clean.
fn assert_caught(file: &str, sabotage: Sabotage, check: &str, needle: &str) {
    let (_, scenario) = load(file);
    let options = RunOptions {
        sabotage: Some(sabotage),
    };
    let base = root_seed(1);
    let mut misses = Vec::new();
    let found = (base..base.saturating_add(SEARCH_SEEDS)).find_map(|seed| {
        let verdict = run_with(&scenario, seed, options).expect("run");
        if caught(&verdict, check, needle) {
            return Some((seed, verdict));
        }
        misses.push(seed);
        None
    });
    let Some((seed, first)) = found else {
        panic!(
            "{} went unnoticed by seeds {base}..+{SEARCH_SEEDS}",
            sabotage.name()
        );
    };
    eprintln!(
        "{} caught by seed {seed} (missed by {misses:?}): {:?}",
        sabotage.name(),
        first.safety_violations
    );
    let again = run_with(&scenario, seed, options).expect("run");
    assert_eq!(first.safety_violations, again.safety_violations);
    assert_eq!(first.digest, again.digest);
    let clean = run(&scenario, seed).expect("run");
    assert!(
        clean.is_clean(),
        "seed {seed} unarmed: {:?}",
        clean.safety_violations
    );
}

/// A gateway acting on replies past its lease deadline (after a pause) is
/// seen acting while the store had let its lease go.
#[test]
fn acting_past_the_lease_deadline_is_caught() {
    assert_caught(
        "lease-partition.toml",
        Sabotage::LeaseActPastDeadline,
        "lease_valid_when_acting",
        "at the store its row was",
    );
}

/// A store that starts runs of cancelled tasks is caught by the cancel check.
#[test]
fn starting_cancelled_runs_is_caught() {
    assert_caught(
        "lease-gateway-crash.toml",
        Sabotage::LeaseStartCancelled,
        "lease_cancel_stops_runs",
        "after its cancel committed",
    );
}

/// Every seed's swarm variation of both files holds every invariant.
#[test]
fn swarm_variations_hold() {
    let base = root_seed(1);
    for name in ["lease-gateway-crash.toml", "lease-partition.toml"] {
        let (_, scenario) = load(name);
        for seed in base..base + MEASURE_SEEDS {
            let (varied, how) = swarm::vary(&scenario, seed);
            let verdict = run(&varied, seed).expect("run");
            assert!(
                verdict.is_clean(),
                "{name} seed {seed} ({how}): {:?} {:?}",
                verdict.safety_violations,
                verdict.liveness_violations
            );
        }
    }
}

/// Takeover after a crash: measured on every seed, within the stated bound
/// (lease + poll, plus round trips and a free slot); and the cancel-to-stop
/// time of runs in flight within one poll plus round trips.
#[test]
fn takeover_and_cancel_stop_times_across_seeds() {
    let (_, scenario) = load("lease-gateway-crash.toml");
    let spec = scenario.leases.clone().expect("[leases]");
    let config = spec.config();
    let base = root_seed(1);
    let (mut takeovers, mut stops) = (Vec::new(), Vec::new());
    for seed in base..base + MEASURE_SEEDS {
        let log = simulate(&spec, &scenario.faults, 90_000, 100, 0.0, seed, None);
        let findings = judge(&log, spec.lease_ms);
        takeovers.extend_from_slice(findings.takeover_ms());
        stops.extend_from_slice(findings.cancel_stop_ms());
    }
    takeovers.sort_unstable();
    stops.sort_unstable();
    eprintln!("takeover ms over {MEASURE_SEEDS} seeds: {takeovers:?}");
    eprintln!("cancel-to-stop ms over {MEASURE_SEEDS} seeds: {stops:?}");
    assert!(
        takeovers.len() as u64 >= MEASURE_SEEDS / 2,
        "too few takeovers measured"
    );
    // Two round trips of at most 100 ms each (the claim and the start), and
    // on a saturated claimer a slot freed by a run ending.
    let takeover_bound = config.takeover_bound_ms() + 400 + spec.run_ms_max;
    assert!(
        takeovers.iter().all(|t| *t <= takeover_bound),
        "{takeovers:?}"
    );
    // The earliest takeover: the lease minus one renewal period.
    assert!(takeovers[0] >= config.lease_ms - config.renew_every_ms);
    let stop_bound = config.cancel_stop_bound_ms() + 200;
    assert!(!stops.is_empty());
    assert!(stops.iter().all(|t| *t <= stop_bound), "{stops:?}");
}

fn op(seq: u64, at_ms: u64, request: Request, reply: Reply) -> OpRecord {
    OpRecord {
        seq,
        at_ms,
        request,
        reply,
    }
}

fn run_ref(attempt: u32) -> RunRef {
    RunRef {
        task: ww_sched::sched::TaskId::parse("t").unwrap(),
        index: 0,
        attempt,
    }
}

/// A log with one registered gateway that submitted task `t` (one run) and
/// started it under attempt 1.
fn started_log() -> LeaseLog {
    LeaseLog {
        ops: vec![
            op(
                1,
                0,
                Request::Register {
                    gateway: 0,
                    seen: 0,
                },
                Reply::Registered { epoch: 1 },
            ),
            op(
                2,
                10,
                Request::Submit {
                    gateway: 0,
                    epoch: 1,
                    task: ww_sched::sched::TaskId::parse("t").unwrap(),
                    runs: 1,
                },
                Reply::Done,
            ),
            op(
                3,
                20,
                Request::StartRuns {
                    gateway: 0,
                    epoch: 1,
                    runs: vec![run_ref(1)],
                },
                Reply::Started(vec![(run_ref(1), Ok(()))]),
            ),
        ],
        ..LeaseLog::default()
    }
}

fn finish(seq: u64, at_ms: u64, attempt: u32) -> OpRecord {
    op(
        seq,
        at_ms,
        Request::FinishRun {
            gateway: 0,
            epoch: 1,
            run: run_ref(attempt),
            outcome: RunOutcome::Succeeded,
        },
        Reply::Finished {
            terminal: Some(ww_sched::lease::model::TaskStatus::Succeeded),
        },
    )
}

#[test]
fn the_checks_fail_on_forged_logs() {
    let mut clean = started_log();
    clean.ops.push(finish(4, 30, 1));
    let findings = judge(&clean, 10_000);
    assert!(findings.runs_once().held() && findings.one_terminal().held());

    let mut twice = clean.clone();
    twice.ops.push(finish(5, 40, 1));
    let findings = judge(&twice, 10_000);
    assert!(!findings.runs_once().held(), "a run counted twice");
    assert!(!findings.one_terminal().held(), "a second terminal record");

    let mut stale = started_log();
    stale.ops.push(finish(4, 30, 2));
    assert!(
        !judge(&stale, 10_000).runs_once().held(),
        "an attempt never started"
    );

    let mut late = started_log();
    late.actions.push(ActionRecord {
        seq: 4,
        at_ms: 10_001,
        gateway: 0,
        action: Action::Dispatch {
            epoch: 1,
            run: run_ref(1),
        },
    });
    let check = judge(&late, 10_000).valid_when_acting();
    assert!(
        !check.held(),
        "a dispatch after the lease ended at the store"
    );
}

#[test]
fn lease_files_refuse_what_the_driver_cannot_run() {
    let base = r#"
name = "x"
duration_s = 60
[leases]
gateways = 2
tasks = 5
submit_until_s = 10
[invariants]
lease_one_terminal = true
"#;
    Scenario::from_toml_str(base).expect("the base file is valid");
    let refused = |extra: &str, needle: &str| {
        let text = format!("{base}{extra}");
        let error = Scenario::from_toml_str(&text).expect_err(extra).0;
        assert!(error.contains(needle), "{extra}: {error}");
    };
    refused(
        "[[faults]]\nat_s = 1\nkind = \"crash\"\nnodes = [\"store\"]\n",
        "the store",
    );
    refused(
        "[[faults]]\nat_s = 1\nkind = \"crash\"\nnodes = [\"gw-2\"]\n",
        "unknown host",
    );
    refused("[gateway]\nworkers = 1\n", "runs alone");
    // The gateways' one timing rule: a 3 s margin needs a lease of 6 s.
    let tight = base.replace(
        "submit_until_s = 10",
        "submit_until_s = 10\nlease_ms = 4000",
    );
    let error = Scenario::from_toml_str(&tight).expect_err("tight").0;
    assert!(error.contains("no room for two renewals"), "{error}");
    let too_short = base.replace(
        "lease_one_terminal = true",
        "lease_tasks_final_within_s = 55",
    );
    let error = Scenario::from_toml_str(&too_short)
        .expect_err("too short")
        .0;
    assert!(error.contains("too short"), "{error}");
    let pause_elsewhere = "name = \"y\"\nduration_s = 10\n[cluster]\nnodes = 2\n\
        [[faults]]\nat_s = 1\nkind = \"pause\"\nnodes = [\"node-000\"]\n[invariants]\n";
    let error = Scenario::from_toml_str(pause_elsewhere)
        .expect_err("pause")
        .0;
    assert!(error.contains("[leases]"), "{error}");
}
