//! The WASM sandbox: validation, a module cache, fuel/memory/deadline limits and a WASI subset.
//!
//! # Example
//!
//! A module's export run under fuel, memory and time limits.
//!
//! ```
//! use ww::exec::{Limits, ModuleRef, RunSpec, Sandbox, SandboxConfig};
//!
//! let wasm = wat::parse_str(
//!     r#"(module (func (export "add") (param i32 i32) (result i32)
//!          (i32.add (local.get 0) (local.get 1))))"#,
//! )?;
//! let sandbox = Sandbox::new(SandboxConfig::default());
//! let report = sandbox.run(&RunSpec {
//!     module: ModuleRef::Bytes(wasm),
//!     export: "add".into(),
//!     args: vec![2, 3],
//!     limits: Limits::default(),
//! });
//! assert_eq!(report.outcome?, vec![5]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod cache;
mod error;
mod host;
mod interp;
#[cfg(feature = "jit")]
mod jit;
mod limits;
mod meter;
mod precheck;
mod sandbox;
mod signature;
mod spec;
mod stack_probe;
mod wasi;

pub use cache::CacheStats;
pub use error::{cap_text, ErrorKind, ExecError, MESSAGE_BYTES_MAX};
pub use host::{ClockFn, HostEnv, RealHost, SeededHost};
pub use limits::{Limits, MODULE_BYTES_MAX, WASM_PAGE_BYTES};
pub use meter::{
    FUEL_SLICE, HOST_CALL_FUEL, HOST_CHUNK_BYTES, HOST_FUEL_PER_BYTE, START_SECTION_FUEL,
};
pub use sandbox::{EngineKind, Sandbox, SandboxConfig};
pub use spec::{ModuleHash, ModuleRef, RunReport, RunSpec};
pub use stack_probe::{
    probe_native_stack, probe_native_stack_with, StackProbeError, STACK_PROBE_ITERATIONS,
    STACK_PROBE_STACK_BYTES, STACK_PROBE_WASM,
};
pub use wasi::{errno, OutputSink, OutputStream, WASI_MODULE};
