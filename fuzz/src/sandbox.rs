//! A module made by `wasm-smith` from the input, run by the sandbox under
//! limits also taken from the input. The sandbox must never panic, must
//! stop the guest within its fuel and (give or take one fuel slice) its
//! wall-clock budget, and must say why it stopped with a typed error that is
//! never `internal`.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use arbitrary::{Arbitrary, Unstructured};
use ww::exec::{probe_native_stack, ErrorKind, Limits, ModuleRef, RunSpec, Sandbox, SandboxConfig};

/// One sandbox for all inputs, as a worker has (its module cache included).
/// Before the first input it runs the worker's start-up probe: a build whose
/// interpreter grows the native stack per instruction (cargo-fuzz's default
/// debug assertions do that to wasmi; `scripts/fuzz` builds this target with
/// `-O`) aborts there, naming the probe's thread, instead of on some later
/// input with no artifact saved.
static SANDBOX: LazyLock<Sandbox> = LazyLock::new(|| {
    probe_native_stack().expect("the sandbox's start-up probe");
    Sandbox::new(SandboxConfig::default())
});

/// Wall-clock slack beyond a run's budget: the deadline is checked between
/// fuel slices and at host calls, so a guest may run one slice past it
/// (a few ms), plus compiling the module and the thread's scheduling on a
/// loaded machine.
const WALL_SLACK: Duration = Duration::from_millis(500);

/// What the input says beside the module.
#[derive(Arbitrary, Debug)]
struct Knobs {
    fuel_max: u32,
    memory_pages_max: u8,
    wall_time_ms: u8,
    args: Vec<i64>,
    export: u8,
}

/// The wasm-smith configuration: what the input asks for, less the
/// proposals this build of wasmi does not take (they would only ever be
/// refused at validation, which teaches the fuzzer nothing).
fn config(u: &mut Unstructured<'_>) -> arbitrary::Result<wasm_smith::Config> {
    let mut config = wasm_smith::Config::arbitrary(u)?;
    config.simd_enabled = false;
    config.relaxed_simd_enabled = false;
    config.threads_enabled = false;
    config.shared_everything_threads_enabled = false;
    config.gc_enabled = false;
    config.exceptions_enabled = false;
    config.memory64_enabled = false;
    config.wide_arithmetic_enabled = false;
    config.custom_page_sizes_enabled = false;
    config.max_imports = 0;
    config.export_everything = true;
    config.max_memory32_bytes = config.max_memory32_bytes.min(64 << 20);
    Ok(config)
}

/// The function exports of `bytes`, by name, as wasmi sees them.
fn function_exports(bytes: &[u8]) -> Vec<String> {
    let engine = wasmi::Engine::default();
    let Ok(module) = wasmi::Module::new(&engine, bytes) else {
        return Vec::new();
    };
    module
        .exports()
        .filter(|export| matches!(export.ty(), wasmi::ExternType::Func(_)))
        .map(|export| export.name().to_string())
        .collect()
}

/// One module under one set of limits.
pub fn sandbox(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let Ok(knobs) = Knobs::arbitrary(&mut u) else {
        return;
    };
    let Ok(config) = config(&mut u) else { return };
    let Ok(module) = wasm_smith::Module::new(config, &mut u) else {
        return;
    };
    let bytes = module.to_bytes();
    let exports = function_exports(&bytes);
    let export = match exports.len() {
        0 => "run".to_string(),
        n => exports[usize::from(knobs.export) % n].clone(),
    };
    let limits = Limits {
        fuel_max: u64::from(knobs.fuel_max % 20_000_000) + 1,
        memory_pages_max: u32::from(knobs.memory_pages_max % 65),
        wall_time_ms: u64::from(knobs.wall_time_ms % 200) + 1,
    };
    let spec = RunSpec {
        module: ModuleRef::Bytes(bytes),
        export,
        args: knobs.args.into_iter().take(16).collect(),
        limits,
    };
    let began = Instant::now();
    let report = SANDBOX.run(&spec);
    let elapsed = began.elapsed();
    // The start section's fuel comes out of the same budget.
    assert!(
        report.fuel_used <= limits.fuel_max,
        "fuel {} over the limit {}",
        report.fuel_used,
        limits.fuel_max
    );
    assert!(
        elapsed <= Duration::from_millis(limits.wall_time_ms) + WALL_SLACK,
        "ran {elapsed:?} with a budget of {} ms",
        limits.wall_time_ms
    );
    if let Err(error) = &report.outcome {
        assert_ne!(
            error.kind(),
            ErrorKind::Internal,
            "an internal error: {error}"
        );
    }
}
