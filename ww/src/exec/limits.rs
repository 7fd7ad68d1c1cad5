//! Per-run resource limits.

/// Bytes in one WebAssembly page.
pub const WASM_PAGE_BYTES: u64 = 65_536;

/// Module bytes one request may carry to a host (a run's spec, a process's
/// spawn); larger ones are refused before any work.
pub const MODULE_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Resource limits of one run; each exhausted limit has its own `ErrorKind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Fuel budget (about one unit per executed instruction), shared by `_start` and the export.
    pub fuel_max: u64,
    /// Largest linear memory, in 64 KiB pages.
    pub memory_pages_max: u32,
    /// Wall-clock budget in milliseconds, measured with `HostEnv::monotonic_ns`.
    pub wall_time_ms: u64,
}

impl Default for Limits {
    /// Laptop-sized defaults: 10^10 fuel, 64 MiB, 30 s.
    fn default() -> Self {
        Self {
            fuel_max: 10_000_000_000,
            memory_pages_max: 1024,
            wall_time_ms: 30_000,
        }
    }
}

impl Limits {
    /// The memory limit in bytes, saturating on hosts with a small `usize`.
    pub fn memory_bytes_max(&self) -> usize {
        let bytes = u64::from(self.memory_pages_max).saturating_mul(WASM_PAGE_BYTES);
        usize::try_from(bytes).unwrap_or(usize::MAX)
    }

    /// The wall-clock budget in nanoseconds.
    pub fn wall_time_ns(&self) -> u64 {
        self.wall_time_ms.saturating_mul(1_000_000)
    }
}
