//! The checked-in hash-puzzle task, run in the sandbox, agrees with a native reference.

use proptest::prelude::*;
use sha2::{Digest, Sha256};
use std::sync::OnceLock;
use ww::exec::{Limits, ModuleRef, RunSpec, Sandbox, SandboxConfig};

use ww_sched::tasks::HASH_PUZZLE_WASM as WASM;

/// Smallest counter >= 1 whose hex SHA-256 of `input ++ counter` starts with `zeros` '0's.
fn reference(input: u32, zeros: u32) -> u32 {
    let prefix = "0".repeat(zeros as usize);
    (1..=u32::MAX)
        .find(|counter| {
            let digest = Sha256::digest(format!("{input}{counter}").as_bytes());
            let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
            hex.starts_with(&prefix)
        })
        .unwrap_or(0)
}

fn in_sandbox(sandbox: &Sandbox, input: u32, zeros: u32) -> u32 {
    let report = sandbox.run(&RunSpec {
        module: ModuleRef::Bytes(WASM.to_vec()),
        export: "run".into(),
        args: vec![i64::from(input), i64::from(zeros)],
        limits: Limits::default(),
    });
    let values = report.outcome.expect("hash puzzle runs");
    assert_eq!(values.len(), 1);
    u32::try_from(values[0]).expect("u32 result")
}

#[test]
fn fixed_vectors() {
    let sandbox = Sandbox::new(SandboxConfig::default());
    assert_eq!(reference(0, 0), 1);
    for (input, zeros) in [(0, 0), (1, 1), (42, 2), (7, 3), (u32::MAX, 3), (123_456, 4)] {
        assert_eq!(
            in_sandbox(&sandbox, input, zeros),
            reference(input, zeros),
            "input {input} zeros {zeros}"
        );
    }
    // Only one compilation for all runs.
    assert_eq!(sandbox.cache_stats().misses, 1);
}

#[test]
fn runs_within_limits_and_reports_fuel() {
    let sandbox = Sandbox::new(SandboxConfig::default());
    let mut spec = RunSpec {
        module: ModuleRef::Bytes(WASM.to_vec()),
        export: "run".into(),
        args: vec![5, 3],
        limits: Limits::default(),
    };
    let report = sandbox.run(&spec);
    assert!(report.outcome.is_ok());
    assert!(report.fuel_used > 1_000, "{}", report.fuel_used);
    spec.limits.fuel_max = 1_000;
    let starved = sandbox.run(&spec);
    assert_eq!(
        starved.outcome.map_err(|e| e.kind()),
        Err(ww::exec::ErrorKind::FuelExhausted)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn sandbox_matches_reference(input in any::<u32>(), zeros in 0u32..=3) {
        // Shared so the module is compiled once and every case also exercises the cache.
        static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
        let sandbox = SANDBOX.get_or_init(|| Sandbox::new(SandboxConfig::default()));
        let expected = reference(input, zeros);
        prop_assert_eq!(in_sandbox(sandbox, input, zeros), expected);
        // The library's native reference (used by benches and the demo) agrees too.
        prop_assert_eq!(ww_sched::tasks::hash_puzzle(input, zeros), expected);
    }
}
