//! Real gateways on one shared store (the in-memory store with PostgreSQL's
//! sharing rules): a run repeats per seed; a gateway that loses what its
//! claims took (`shared-claim-hidden`) is caught by the takeover bound, and a
//! store that judges a gateway's leases by that gateway's fast clock
//! (`lease-on-gateway-clock`) by `lease_one_owner_acting`, and a gateway
//! whose clock stopped while it was paused (`lease-act-past-deadline`) by
//! `lease_valid_when_acting`, while the same seeds unarmed are clean; files
//! that cannot run are refused.

use std::path::{Path, PathBuf};

use ww_sim::root_seed;
use ww_sim::scenario::{run, run_with, swarm, RunOptions, Scenario, Verdict};
use ww_sim::Sabotage;

fn load(name: &str) -> (PathBuf, Scenario) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scenarios")
        .join(name);
    let scenario = Scenario::load(&file).unwrap_or_else(|e| panic!("{e}"));
    (file, scenario)
}

fn all_violations(verdict: &Verdict) -> Vec<String> {
    verdict
        .safety_violations
        .iter()
        .chain(&verdict.liveness_violations)
        .cloned()
        .collect()
}

#[test]
fn a_run_of_shared_gateways_is_deterministic_per_seed() {
    let (file, scenario) = load("shared-gateways-crash.toml");
    let seed = root_seed(3);
    let first = run(&scenario, seed).expect("run");
    let second = run(&scenario, seed).expect("run");
    assert_eq!(
        first.digest,
        second.digest,
        "same seed, different traces: ww-sim run {} --seed {seed}",
        file.display()
    );
    assert_eq!(first.timeline, second.timeline);
    assert!(
        first.is_clean(),
        "seed {seed}: {:?}",
        all_violations(&first)
    );
}

/// Seeds searched for one that catches the bug.
const SEARCH_SEEDS: u64 = 10;

#[test]
fn claimed_tasks_a_gateway_never_runs_are_caught_by_the_takeover_bound() {
    let (file, scenario) = load("shared-gateways-crash.toml");
    let options = RunOptions {
        sabotage: Some(Sabotage::SharedClaimHidden),
    };
    let base = root_seed(1);
    let caught = (base..base.saturating_add(SEARCH_SEEDS)).find_map(|seed| {
        let verdict = run_with(&scenario, seed, options).expect("run");
        let hit = all_violations(&verdict)
            .iter()
            .any(|v| v.starts_with("runs_finish_within") || v.starts_with("no_task_lost"));
        hit.then_some((seed, verdict))
    });
    let Some((seed, armed)) = caught else {
        panic!(
            "shared-claim-hidden went unnoticed by seeds {base}..{} of {}",
            base + SEARCH_SEEDS,
            file.display()
        );
    };
    eprintln!(
        "shared-claim-hidden caught by seed {seed}: {:?}",
        all_violations(&armed)
    );
    let clean = run(&scenario, seed).expect("run");
    assert!(
        clean.is_clean(),
        "seed {seed} unarmed: {:?}",
        all_violations(&clean)
    );
}

#[test]
fn a_store_judging_leases_by_a_gateways_clock_is_caught_as_two_owners_acting() {
    let (file, scenario) = load("shared-gateways-crash.toml");
    let options = RunOptions {
        sabotage: Some(Sabotage::LeaseOnGatewayClock),
    };
    let base = root_seed(1);
    let caught = (base..base.saturating_add(SEARCH_SEEDS)).find_map(|seed| {
        let verdict = run_with(&scenario, seed, options).expect("run");
        let hit = verdict
            .safety_violations
            .iter()
            .any(|v| v.starts_with("lease_one_owner_acting:") && v.contains("still held"));
        hit.then_some((seed, verdict))
    });
    let Some((seed, armed)) = caught else {
        panic!(
            "lease-on-gateway-clock went unnoticed by seeds {base}..{} of {}",
            base + SEARCH_SEEDS,
            file.display()
        );
    };
    let again = run_with(&scenario, seed, options).expect("run");
    assert_eq!(armed.safety_violations, again.safety_violations);
    assert_eq!(armed.digest, again.digest, "seed {seed} replays");
    let clean = run(&scenario, seed).expect("run");
    assert!(
        clean.is_clean(),
        "seed {seed} unarmed: {:?}",
        all_violations(&clean)
    );
}

/// Swarm seeds searched for one whose pause strikes where a gateway with a
/// stopped clock acts (between a run's placement and its call).
const PAUSE_SEARCH_SEEDS: u64 = 20;

#[test]
fn a_gateway_whose_clock_stopped_while_paused_is_caught_dispatching_past_its_lease() {
    let (file, scenario) = load("shared-gateways-pause.toml");
    let options = RunOptions {
        sabotage: Some(Sabotage::LeaseActPastDeadline),
    };
    let base = root_seed(1);
    let caught = (base..base.saturating_add(PAUSE_SEARCH_SEEDS)).find_map(|seed| {
        let (varied, how) = swarm::vary(&scenario, seed);
        let verdict = run_with(&varied, seed, options).expect("run");
        let hit = verdict
            .safety_violations
            .iter()
            .any(|v| v.starts_with("lease_valid_when_acting:") && v.contains("not live"));
        hit.then_some((seed, varied, how))
    });
    let Some((seed, varied, how)) = caught else {
        panic!(
            "lease-act-past-deadline went unnoticed by swarm seeds {base}..{} of {}",
            base + PAUSE_SEARCH_SEEDS,
            file.display()
        );
    };
    let clean = run(&varied, seed).expect("run");
    assert!(
        clean.is_clean(),
        "swarm seed {seed} ({how}) unarmed: {:?}",
        all_violations(&clean)
    );
}

#[test]
fn shared_store_scenarios_that_cannot_run_are_refused_with_a_reason() {
    let head = "name = \"x\"\nduration_s = 10\n[invariants]\n";
    let cases = [
        (
            "[gateway]\nworkers = 2\ngateways = 2\n",
            "several gateways need store = \"shared\"",
        ),
        (
            "[gateway]\nworkers = 2\ngateways = 3\nstore = \"shared\"\n",
            "every gateway needs a worker",
        ),
        (
            "[gateway]\nworkers = 2\ngateways = 2\nstore = \"shared\"\n\
             [[faults]]\nat_s = 1\nkind = \"disk_eio\"\nnodes = [\"gateway\"]\n",
            "no disk",
        ),
        (
            "[gateway]\nworkers = 2\ngateways = 2\nstore = \"shared\"\n\
             [[faults]]\nat_s = 1\nkind = \"crash\"\nnodes = [\"store\"]\n",
            "no node to crash",
        ),
        (
            "[gateway]\nworkers = 1\n\
             [[faults]]\nat_s = 1\nkind = \"partition\"\na = [\"gateway\"]\nb = [\"store\"]\n",
            "unknown host",
        ),
        (
            "[gateway]\nworkers = 1\n\
             [[faults]]\nat_s = 1\nkind = \"pause\"\nnodes = [\"worker-0\"]\n",
            "pause and resume are for gateways only",
        ),
        (
            "lease_one_owner_acting = true\n[gateway]\nworkers = 1\n\
             [tasks]\ncount = 1\nsubmit_until_s = 2\n",
            "lease_one_owner_acting needs a shared-store [gateway]",
        ),
    ];
    for (body, needle) in cases {
        // [invariants] is empty: the sections after it are tables of their own.
        let text = format!("{head}{body}");
        let error = Scenario::from_toml_str(&text)
            .err()
            .unwrap_or_else(|| panic!("accepted:\n{text}"));
        assert!(
            error.0.contains(needle),
            "{text}\nrefused for another reason: {}",
            error.0
        );
    }
}
