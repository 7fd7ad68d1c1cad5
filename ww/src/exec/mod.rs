//! The WASM sandbox: validation, a module cache, fuel/memory/deadline limits and a WASI subset.

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
