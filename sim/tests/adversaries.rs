//! Adversarial simulations: the keyed cluster of
//! `scenarios/keyed-cluster-under-attack.toml` keeps outsiders, replays and a
//! datagram flood out and pins every false result on the rogue worker that made
//! it (every scenario file also runs in `scenarios.rs`); here, the same attack on
//! an open cluster, and on a gateway that records impossible reports, shows that
//! the checks catch what the defences prevent, so they are not checks that
//! cannot fail.

use std::path::Path;

use ww_sim::root_seed;
use ww_sim::scenario::{run, run_with, RunOptions, Scenario};
use ww_sim::Sabotage;

fn attack() -> Scenario {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/keyed-cluster-under-attack.toml");
    Scenario::load(&path).expect("the attack scenario loads")
}

#[test]
fn without_the_swarm_key_outsiders_join_and_the_check_says_so() {
    let seed = root_seed(3);
    let mut scenario = attack();
    scenario.security.swarm_key = false;
    let verdict = run(&scenario, seed).expect("the simulation runs");
    let excluded: Vec<&String> = verdict
        .safety_violations
        .iter()
        .filter(|v| v.starts_with("outsiders_excluded"))
        .collect();
    assert!(
        excluded.iter().any(|v| v.contains("admitted outsider-0")),
        "seed {seed}: an open cluster admitted no keyless outsider: {:?}",
        verdict.safety_violations
    );
    assert!(
        excluded
            .iter()
            .any(|v| v.contains("a run was handed to outsider")),
        "seed {seed}: no run reached an outsider on an open cluster: {:?}",
        verdict.safety_violations
    );
}

#[test]
fn the_keyed_cluster_keeps_every_outsider_out() {
    let seed = root_seed(3);
    let verdict = run(&attack(), seed).expect("the simulation runs");
    let summary = verdict
        .checks
        .iter()
        .find(|c| c.invariant == "outsiders_excluded")
        .map(|c| c.summary.clone())
        .expect("outsiders_excluded was checked");
    assert!(
        verdict.safety_violations.is_empty(),
        "seed {seed}: {:?}",
        verdict.safety_violations
    );
    // The attack really happened: the tap heard, replayed and flooded.
    for word in ["captured 0", "replayed 0", "flooded 0"] {
        assert!(!summary.contains(word), "seed {seed}: {summary}");
    }
}

#[test]
fn a_gateway_that_records_impossible_reports_is_caught() {
    let seed = root_seed(3);
    let options = RunOptions {
        sabotage: Some(Sabotage::AcceptImpossibleReports),
    };
    let verdict = run_with(&attack(), seed, options).expect("the simulation runs");
    assert!(
        verdict
            .safety_violations
            .iter()
            .any(|v| v.starts_with("forgeries_attributed") && v.contains("65 results")),
        "seed {seed}: the recorded impossible reports went unnoticed: {:?}",
        verdict.safety_violations
    );
}
