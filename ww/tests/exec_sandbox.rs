//! Sandbox behaviour: limits, validation, WASI subset, cache, on each engine of the
//! build (wasmi; wasmtime with the `jit` feature). Modules are WAT compiled at test time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use ww::exec::{
    EngineKind, ErrorKind, Limits, ModuleHash, ModuleRef, RunReport, RunSpec, Sandbox,
    SandboxConfig, SeededHost,
};

/// The cases on the interpreter (the default engine).
mod wasmi {
    use super::*;
    const ENGINE: EngineKind = EngineKind::Wasmi;
    /// A run stopped by its deadline, a cancel or the memory limit reports the fuel
    /// it burnt to the instruction, the same on every run.
    const FUEL_EXACT_AT_INTERRUPT: bool = true;
    include!("exec_sandbox/cases.rs");
}

/// The same cases on the JIT (cargo feature `jit`).
#[cfg(feature = "jit")]
mod wasmtime {
    use super::*;
    const ENGINE: EngineKind = EngineKind::Wasmtime;
    /// wasmtime keeps the fuel counter in a register and stores it only at calls,
    /// returns and fuel traps: a run stopped by the epoch callback or the
    /// limiter reports the fuel counted to its last call (a lower bound).
    const FUEL_EXACT_AT_INTERRUPT: bool = false;
    include!("exec_sandbox/cases.rs");
}

/// The checked-in probe module is the compiled `stack_probe.wat`; `WW_BLESS=1`
/// rewrites it after an edit of the text.
#[test]
fn stack_probe_wasm_is_fresh() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/exec");
    let compiled = wat::parse_file(dir.join("stack_probe.wat")).expect("stack_probe.wat parses");
    if std::env::var_os("WW_BLESS").is_some() {
        std::fs::write(dir.join("stack_probe.wasm"), &compiled).expect("write stack_probe.wasm");
    }
    assert!(
        compiled == ww::exec::STACK_PROBE_WASM,
        "src/exec/stack_probe.wasm is stale: run `WW_BLESS=1 cargo test -p ww --test exec_sandbox stack_probe` and rebuild"
    );
}

/// A long run must not grow the native stack: wasmi's handlers have to tail-call
/// each other as jumps. Forty million instructions on a 128 KiB stack; a build that
/// leaks a frame per instruction aborts this test binary with "thread
/// 'wasm-stack-probe' has overflowed its stack" (seen with `-Cdebug-assertions`,
/// which the fuzzer's default build adds).
#[test]
fn long_runs_keep_the_native_stack_flat() {
    ww::exec::probe_native_stack().expect("the start-up probe");
    ww::exec::probe_native_stack_with(1_000_000, 128 * 1024).expect("a long probe");
}
