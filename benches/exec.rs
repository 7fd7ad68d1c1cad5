//! The hash puzzle in the sandbox versus the same source compiled natively.
//!
//! Both use inputs 1..=8 with 3 leading zeros, so the two figures give the
//! interpretation overhead (including instantiation and fuel metering) as a ratio.

use criterion::{criterion_group, criterion_main, Criterion};
use std::hint::black_box;
use ww_sched::exec::{Limits, ModuleRef, RunSpec, Sandbox, SandboxConfig};

use ww_sched::tasks::HASH_PUZZLE_WASM as WASM;
const INPUTS: std::ops::RangeInclusive<u32> = 1..=8;
const ZEROS: u32 = 3;

/// The task's own source, compiled natively into this bench: the same function.
#[path = "../tasks/hash-puzzle/src/lib.rs"]
#[allow(dead_code)]
mod task;

fn native(input: u32, zeros: u32) -> u32 {
    task::run(input, zeros)
}

fn bench(c: &mut Criterion) {
    let sandbox = Sandbox::new(SandboxConfig::default());
    let hash = sandbox
        .insert_module(WASM)
        .expect("hash-puzzle.wasm compiles");
    let spec = |input: u32| RunSpec {
        module: ModuleRef::Hash(hash),
        export: "run".into(),
        args: vec![i64::from(input), i64::from(ZEROS)],
        limits: Limits::default(),
    };
    for input in INPUTS {
        let got = sandbox.run(&spec(input)).outcome.expect("runs");
        assert_eq!(got, vec![i64::from(native(input, ZEROS))]);
    }
    let specs: Vec<RunSpec> = INPUTS.map(spec).collect();
    let mut group = c.benchmark_group("hash_puzzle_zeros3_inputs1to8");
    group.bench_function("sandbox", |b| {
        b.iter(|| {
            for s in &specs {
                black_box(sandbox.run(black_box(s)).outcome.ok());
            }
        })
    });
    group.bench_function("native", |b| {
        b.iter(|| {
            for input in INPUTS {
                black_box(native(black_box(input), ZEROS));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
