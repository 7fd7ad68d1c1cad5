//! A start-up check that wasmi's interpreter runs in constant native stack.
//!
//! wasmi 2 dispatches from one instruction handler to the next by tail calls and
//! relies on LLVM to compile them into jumps. A build where that does not happen
//! (debug assertions in wasmi, an unusual profile or compiler) leaves one native
//! frame per executed instruction, so any guest that loops long enough overflows
//! the thread's stack and kills the whole process: one task could take a worker
//! down. The fuzzer found exactly that in a build with debug assertions. A worker
//! runs [`probe_native_stack`] before it serves, so such a build stops at start,
//! saying why, instead of at the first long task.

use super::error::ExecError;
use super::limits::Limits;
use super::sandbox::{Sandbox, SandboxConfig};
use super::spec::{ModuleRef, RunSpec};

/// The probe module (`stack_probe.wat`, compiled): `spin(n)` loops `n` times over a
/// mix of instruction kinds and returns `3 * n`.
pub const STACK_PROBE_WASM: &[u8] = include_bytes!("stack_probe.wasm");

/// Stack of the probe's thread. A build that leaks one frame (at least 16 bytes) per
/// instruction overflows it within a few thousand of the probe's iterations.
pub const STACK_PROBE_STACK_BYTES: usize = 256 * 1024;

/// Iterations of the probe loop (about 40 instructions each).
pub const STACK_PROBE_ITERATIONS: u32 = 50_000;

/// Why the probe did not confirm a flat stack (an overflow aborts the process instead).
#[derive(Debug, thiserror::Error)]
pub enum StackProbeError {
    /// The probe thread could not be started.
    #[error("could not start the stack probe thread: {0}")]
    Spawn(#[from] std::io::Error),
    /// The probe ran but failed: the sandbox is broken in another way.
    #[error("the stack probe failed in the sandbox: {0}")]
    Run(#[from] ExecError),
    /// The probe returned something other than `3 * iterations`.
    #[error("the stack probe returned {got:?} where {expected} was due")]
    WrongAnswer {
        /// What `spin` returned.
        got: Vec<i64>,
        /// `3 * iterations`.
        expected: i64,
    },
    /// The probe thread panicked.
    #[error("the stack probe thread panicked")]
    Panicked,
}

/// Runs the probe for `iterations` on a thread with `stack_bytes` of stack, in a
/// fresh sandbox of its own. Returns `Ok` when the guest ran to its answer; a build
/// whose interpreter grows the native stack aborts the process here, with Rust's
/// message "thread 'wasm-stack-probe' has overflowed its stack".
pub fn probe_native_stack_with(iterations: u32, stack_bytes: usize) -> Result<(), StackProbeError> {
    let expected = 3 * i64::from(iterations);
    let thread = std::thread::Builder::new()
        .name("wasm-stack-probe".into())
        .stack_size(stack_bytes)
        .spawn(move || {
            let sandbox = Sandbox::new(SandboxConfig::default());
            let spec = RunSpec {
                module: ModuleRef::Bytes(STACK_PROBE_WASM.to_vec()),
                export: "spin".into(),
                args: vec![i64::from(iterations)],
                limits: Limits {
                    // About 40 instructions per iteration; generous, so the limit
                    // is never what stops it.
                    fuel_max: 200 * u64::from(iterations) + 1_000_000,
                    memory_pages_max: 1,
                    wall_time_ms: 60_000,
                },
            };
            sandbox.run(&spec).outcome
        })?;
    let got = thread.join().map_err(|_| StackProbeError::Panicked)??;
    if got != [expected] {
        return Err(StackProbeError::WrongAnswer { got, expected });
    }
    Ok(())
}

/// [`probe_native_stack_with`] at the default size (a few milliseconds).
pub fn probe_native_stack() -> Result<(), StackProbeError> {
    probe_native_stack_with(STACK_PROBE_ITERATIONS, STACK_PROBE_STACK_BYTES)
}
