//! Swarm variation: each seed runs a scenario with a random subset of its fault
//! kinds switched off, its fault times pulled earlier by a seeded jitter, and
//! perhaps a slower network, in the manner of swarm testing (Groce et al.): runs
//! that leave some faults out exercise interleavings the full schedule hides.
//!
//! Variation only removes disturbances or makes them earlier, and keeps the
//! order of faults, so every bound the scenario states still applies.

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::format::{FaultKind, Scenario};
use crate::derive_seed;

/// Kinds a seed may switch off. Closing kinds (repair, release, disk_heal)
/// stay: on a link (or disk) that is not disturbed they do nothing, and a disk
/// fault that stays keeps the heal after it (order is kept).
const OPTIONAL_KINDS: [FaultKind; 12] = [
    FaultKind::Partition,
    FaultKind::PartitionOneway,
    FaultKind::Hold,
    FaultKind::Latency,
    FaultKind::LinkLoss,
    FaultKind::Loss,
    FaultKind::Crash,
    FaultKind::Restart,
    FaultKind::Pause,
    FaultKind::DiskEio,
    FaultKind::DiskFull,
    FaultKind::DiskFsyncFail,
];
/// Largest pull of a fault earlier, in milliseconds.
const JITTER_MS_MAX: u64 = 500;
/// Random per-message latency caps a seed may pick (ms).
const LATENCIES_MS: [u64; 4] = [10, 50, 100, 200];

/// `scenario` as varied for `seed`, and one line saying how.
pub fn vary(scenario: &Scenario, seed: u64) -> (Scenario, String) {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, "swarm"));
    let mut varied = scenario.clone();
    let present: Vec<FaultKind> = OPTIONAL_KINDS
        .into_iter()
        .filter(|k| scenario.faults.iter().any(|f| f.kind == *k))
        // A crash is only undone by a restart: keep restarts when crashes exist.
        .filter(|k| {
            *k != FaultKind::Restart || !scenario.faults.iter().any(|f| f.kind == FaultKind::Crash)
        })
        .collect();
    let off: Vec<FaultKind> = present
        .iter()
        .copied()
        .filter(|_| rng.next_u64() % 2 == 0)
        .collect();
    varied.faults.retain(|f| !off.contains(&f.kind));
    let mut previous = 0.0f64;
    for fault in &mut varied.faults {
        let pull = (rng.next_u64() % (JITTER_MS_MAX + 1)) as f64 / 1e3;
        fault.at_s = (fault.at_s - pull).max(previous).max(0.0);
        previous = fault.at_s;
    }
    let latency = if scenario.network.max_latency_ms.is_none() && rng.next_u64() % 2 == 0 {
        let ms = LATENCIES_MS[(rng.next_u64() % LATENCIES_MS.len() as u64) as usize];
        varied.network.max_latency_ms = Some(ms);
        format!("max latency {ms} ms")
    } else {
        "default latency".to_string()
    };
    let off_names: Vec<&str> = off.iter().map(|k| k.name()).collect();
    let how = format!(
        "swarm: off [{}], faults pulled up to {JITTER_MS_MAX} ms earlier, {latency}",
        off_names.join(", ")
    );
    (varied, how)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
name = "v"
duration_s = 40
[cluster]
nodes = 4
[[faults]]
at_s = 5
kind = "partition"
a = ["node-000"]
b = ["node-001"]
[[faults]]
at_s = 6
kind = "crash"
nodes = ["node-002"]
[[faults]]
at_s = 10
kind = "repair"
a = ["node-000"]
b = ["node-001"]
[[faults]]
at_s = 12
kind = "restart"
nodes = ["node-002"]
[invariants]
views_complete_within_s = 20
"#;

    #[test]
    fn variations_stay_valid_ordered_and_differ_by_seed() {
        let scenario = Scenario::from_toml_str(TEXT).expect("parse");
        let mut shapes = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let (varied, how) = vary(&scenario, seed);
            varied
                .validate()
                .unwrap_or_else(|e| panic!("seed {seed} ({how}): {e}"));
            assert!(varied.quiet_from() <= scenario.quiet_from());
            assert!(varied.faults.iter().any(|f| f.kind == FaultKind::Restart));
            assert_eq!(vary(&scenario, seed).1, how, "same seed, same variation");
            shapes.insert(how);
        }
        assert!(shapes.len() >= 4, "too few distinct variations: {shapes:?}");
    }

    const DISK: &str = r#"
name = "d"
duration_s = 40
[gateway]
workers = 1
[[faults]]
at_s = 5
kind = "disk_eio"
nodes = ["gateway"]
[[faults]]
at_s = 5.2
kind = "disk_heal"
nodes = ["gateway"]
[[faults]]
at_s = 5.3
kind = "disk_fsync_fail"
nodes = ["gateway"]
[[faults]]
at_s = 5.4
kind = "disk_heal"
nodes = ["gateway"]
[[faults]]
at_s = 9
kind = "disk_full"
nodes = ["gateway"]
[[faults]]
at_s = 12
kind = "disk_heal"
nodes = ["gateway"]
[invariants]
"#;

    #[test]
    fn variations_keep_a_heal_after_every_disk_fault() {
        let scenario = Scenario::from_toml_str(DISK).expect("parse");
        let mut kept = std::collections::BTreeSet::new();
        for seed in 0..64 {
            let (varied, how) = vary(&scenario, seed);
            varied
                .validate()
                .unwrap_or_else(|e| panic!("seed {seed} ({how}): {e}"));
            let kinds: Vec<FaultKind> = varied.faults.iter().map(|f| f.kind).collect();
            assert_eq!(
                kinds.iter().filter(|k| **k == FaultKind::DiskHeal).count(),
                3,
                "seed {seed} ({how}): heals are never dropped"
            );
            for (i, kind) in kinds.iter().enumerate() {
                if kind.undone_by() == Some(FaultKind::DiskHeal) {
                    assert_eq!(
                        kinds.get(i + 1),
                        Some(&FaultKind::DiskHeal),
                        "seed {seed} ({how}): {kinds:?}"
                    );
                }
            }
            kept.insert(kinds.len());
        }
        assert!(kept.len() >= 3, "too few distinct variations: {kept:?}");
    }
}
