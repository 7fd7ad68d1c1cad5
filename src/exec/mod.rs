//! The WASM sandbox: validation, a module cache, fuel/memory/deadline limits and a WASI subset.

mod cache;
mod error;
mod host;
mod limits;
mod meter;
mod precheck;
mod sandbox;
mod spec;
mod wasi;

pub use cache::CacheStats;
pub use error::{cap_text, ErrorKind, ExecError, MESSAGE_BYTES_MAX};
pub use host::{ClockFn, HostEnv, RealHost, SeededHost};
pub use limits::{Limits, WASM_PAGE_BYTES};
pub use meter::{FUEL_SLICE, HOST_CALL_FUEL, HOST_CHUNK_BYTES, HOST_FUEL_PER_BYTE};
pub use sandbox::{Sandbox, SandboxConfig, START_SECTION_FUEL};
pub use spec::{ModuleHash, ModuleRef, RunReport, RunSpec};
pub use wasi::{errno, WASI_MODULE};
