//! The sandbox: compiles and caches modules, runs one export under fuel, memory and
//! wall-clock limits, and turns every failure into a typed [`ExecError`].

use super::cache::{CacheStats, LruCache};
use super::error::{ErrorKind, ExecError};
use super::host::{HostEnv, RealHost};
use super::interp::{self, Interp};
use super::meter::Meter;
use super::spec::{ModuleHash, ModuleRef, RunReport, RunSpec};
use super::wasi::{HostState, OutputSink};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

/// The engine that compiles and runs modules.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum EngineKind {
    /// wasmi, an interpreter: fast to start, the default and the only engine in simulation.
    #[default]
    Wasmi,
    /// wasmtime with cranelift, a JIT compiler: slower to compile a module, several
    /// times faster on compute-bound guests (cargo feature `jit`).
    #[cfg(feature = "jit")]
    Wasmtime,
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Wasmi => "wasmi",
            #[cfg(feature = "jit")]
            Self::Wasmtime => "wasmtime",
        })
    }
}

impl std::str::FromStr for EngineKind {
    type Err = String;

    /// `wasmi` or `wasmtime` (the latter only in a build with the `jit` feature).
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "wasmi" => Ok(Self::Wasmi),
            #[cfg(feature = "jit")]
            "wasmtime" => Ok(Self::Wasmtime),
            #[cfg(not(feature = "jit"))]
            "wasmtime" => Err("this ww-sched was built without the JIT: rebuild it with \
                 `cargo build --release --features jit`"
                .into()),
            other => Err(format!(
                "unknown engine {other:?}: expected wasmi or wasmtime"
            )),
        }
    }
}

/// Sandbox-wide settings.
#[derive(Clone)]
pub struct SandboxConfig {
    /// The engine that compiles and runs modules.
    pub engine: EngineKind,
    /// Compiled modules kept; the least recently used is evicted beyond this.
    pub cache_modules_max: usize,
    /// Module bytes (as sent) the cache keeps in all: with `cache_modules_max` this
    /// bounds what callers can make a worker hold compiled. Compiled code is a few
    /// times larger than its module.
    pub cache_bytes_max: usize,
    /// Largest module accepted, in bytes.
    pub module_bytes_max: usize,
    /// Bytes kept per output stream (stdout, stderr); the rest is dropped.
    pub output_bytes_max: usize,
    /// Clock and randomness for guests and deadlines.
    pub host: Arc<dyn HostEnv>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            engine: EngineKind::default(),
            cache_modules_max: 64,
            cache_bytes_max: 128 * 1024 * 1024,
            module_bytes_max: 16 * 1024 * 1024,
            output_bytes_max: 64 * 1024,
            host: Arc::new(RealHost),
        }
    }
}

impl std::fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("engine", &self.engine)
            .field("cache_modules_max", &self.cache_modules_max)
            .field("cache_bytes_max", &self.cache_bytes_max)
            .field("module_bytes_max", &self.module_bytes_max)
            .field("output_bytes_max", &self.output_bytes_max)
            .finish_non_exhaustive()
    }
}

/// A compiled module, by engine.
#[derive(Clone)]
enum Compiled {
    Interp(interp::Compiled),
    #[cfg(feature = "jit")]
    Jit(super::jit::Compiled),
}

/// The engine of a sandbox.
enum Backend {
    Interp(Interp),
    #[cfg(feature = "jit")]
    Jit(super::jit::Jit),
}

/// Runs WASM exports in isolation; shareable across threads (`Send + Sync`).
pub struct Sandbox {
    backend: Backend,
    cache: Mutex<LruCache<Compiled>>,
    config: SandboxConfig,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("config", &self.config)
            .field("cache", &self.cache_stats())
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Cache state stays consistent even if a holder panicked: every update is one insert.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sandbox {
    /// Creates a sandbox with its own engine and module cache.
    pub fn new(config: SandboxConfig) -> Self {
        let backend = match config.engine {
            EngineKind::Wasmi => Backend::Interp(Interp::new()),
            #[cfg(feature = "jit")]
            EngineKind::Wasmtime => Backend::Jit(super::jit::Jit::new()),
        };
        let cache = Mutex::new(LruCache::new(
            config.cache_modules_max,
            config.cache_bytes_max,
        ));
        Self {
            backend,
            cache,
            config,
        }
    }

    /// The configuration this sandbox was built with.
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }

    /// Validates, compiles and caches a module; returns its hash.
    pub fn insert_module(&self, bytes: &[u8]) -> Result<ModuleHash, ExecError> {
        self.load(bytes).map(|(hash, _)| hash)
    }

    /// True if the module is cached (a run by hash would not fail with UnknownModule).
    pub fn has_module(&self, hash: &ModuleHash) -> bool {
        lock(&self.cache).contains(hash)
    }

    /// Cache counters.
    pub fn cache_stats(&self) -> CacheStats {
        lock(&self.cache).stats()
    }

    fn load(&self, bytes: &[u8]) -> Result<(ModuleHash, Compiled), ExecError> {
        if bytes.len() > self.config.module_bytes_max {
            return Err(ExecError::new(
                ErrorKind::ModuleTooLarge,
                format!(
                    "module is {} bytes, limit is {}",
                    bytes.len(),
                    self.config.module_bytes_max
                ),
            ));
        }
        // Checked before wasmi sees the bytes: its errors can echo the whole input.
        if !bytes.starts_with(b"\0asm") {
            return Err(ExecError::new(
                ErrorKind::NotWasm,
                format!("{} bytes without the \\0asm magic", bytes.len()),
            ));
        }
        let hash = ModuleHash::of(bytes);
        if let Some(compiled) = lock(&self.cache).get(&hash) {
            return Ok((hash, compiled));
        }
        // Compiled outside the lock so one large module does not stall every run;
        // two threads may then compile the same module, which is only wasted work.
        lock(&self.cache).record_miss();
        super::precheck::check_code_section(bytes)?;
        let compiled = match &self.backend {
            Backend::Interp(engine) => Compiled::Interp(engine.compile(bytes)?),
            #[cfg(feature = "jit")]
            Backend::Jit(engine) => Compiled::Jit(engine.compile(bytes)?),
        };
        lock(&self.cache).insert(hash, compiled.clone(), bytes.len());
        tracing::debug!(module = %hash, bytes = bytes.len(), "compiled module");
        Ok((hash, compiled))
    }

    /// Runs `spec.export`; never panics. A module exporting `_start` has it run first
    /// (a WASI reactor's `_initialize` likewise); `proc_exit(0)` inside `_start` ends it normally.
    ///
    /// Arguments for i32 parameters must lie in `i32::MIN..=u32::MAX`; values above
    /// `i32::MAX` are passed as the same u32 bit pattern, anything else is WrongSignature.
    /// i32 results come back zero-extended (read as u32), i64 results unchanged.
    pub fn run(&self, spec: &RunSpec) -> RunReport {
        self.run_cancellable(spec, None)
    }

    /// Like [`Sandbox::run`], but setting `cancel` stops the run with
    /// [`ErrorKind::Cancelled`] within one fuel slice, or at its next host call (or
    /// host-call chunk) if it is inside one.
    pub fn run_cancellable(&self, spec: &RunSpec, cancel: Option<Arc<AtomicBool>>) -> RunReport {
        self.run_with(spec, cancel, None)
    }

    /// Like [`Sandbox::run_cancellable`], but the guest's output goes to `sink` as
    /// it is written; the report's `stdout` and `stderr` are then empty. For runs
    /// whose output must be readable before they end (processes).
    pub fn run_streaming(
        &self,
        spec: &RunSpec,
        cancel: Arc<AtomicBool>,
        sink: Arc<dyn OutputSink>,
    ) -> RunReport {
        self.run_with(spec, Some(cancel), Some(sink))
    }

    fn run_with(
        &self,
        spec: &RunSpec,
        cancel: Option<Arc<AtomicBool>>,
        sink: Option<Arc<dyn OutputSink>>,
    ) -> RunReport {
        match catch_unwind(AssertUnwindSafe(|| self.run_inner(spec, cancel, sink))) {
            Ok(report) => report,
            Err(panic) => {
                let text = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                tracing::error!(panic = %text, "sandbox run panicked");
                RunReport::failed(ExecError::new(
                    ErrorKind::Internal,
                    format!("sandbox panicked: {text}"),
                ))
            }
        }
    }

    fn run_inner(
        &self,
        spec: &RunSpec,
        cancel: Option<Arc<AtomicBool>>,
        sink: Option<Arc<dyn OutputSink>>,
    ) -> RunReport {
        let compiled = match &spec.module {
            ModuleRef::Bytes(bytes) => self.load(bytes).map(|(_, c)| c),
            ModuleRef::Hash(hash) => lock(&self.cache).get(hash).ok_or_else(|| {
                ExecError::new(
                    ErrorKind::UnknownModule,
                    format!("module {hash} is not cached"),
                )
            }),
        };
        let compiled = match compiled {
            Ok(compiled) => compiled,
            Err(error) => return RunReport::failed(error),
        };
        let limits = spec.limits;
        let meter = Meter::new(
            limits.fuel_max,
            limits.wall_time_ns(),
            self.config.host.clone(),
            cancel,
        );
        let state = HostState::new(
            self.config.host.clone(),
            self.config.output_bytes_max,
            meter,
            sink,
        );
        let memory_bytes_max = limits.memory_bytes_max();
        let (outcome, fuel_used, state) = match (&self.backend, &compiled) {
            (Backend::Interp(engine), Compiled::Interp(module)) => {
                engine.run(module, &spec.export, &spec.args, state, memory_bytes_max)
            }
            #[cfg(feature = "jit")]
            (Backend::Jit(engine), Compiled::Jit(module)) => {
                engine.run(module, &spec.export, &spec.args, state, memory_bytes_max)
            }
            #[cfg(feature = "jit")]
            _ => unreachable!("a sandbox caches only modules of its own engine"),
        };
        tracing::debug!(export = %spec.export, fuel_used, ok = outcome.is_ok(), "run finished");
        RunReport {
            outcome,
            stdout: state.stdout.data,
            stderr: state.stderr.data,
            fuel_used,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::Limits;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn sandbox_is_send_and_sync() {
        assert_send_sync::<Sandbox>();
        assert_send_sync::<SandboxConfig>();
    }

    #[test]
    fn engines_parse_by_name() {
        assert_eq!("wasmi".parse::<EngineKind>(), Ok(EngineKind::Wasmi));
        assert!("v8"
            .parse::<EngineKind>()
            .unwrap_err()
            .contains("expected wasmi or wasmtime"));
        #[cfg(feature = "jit")]
        assert_eq!("wasmtime".parse::<EngineKind>(), Ok(EngineKind::Wasmtime));
        #[cfg(not(feature = "jit"))]
        assert!("wasmtime"
            .parse::<EngineKind>()
            .unwrap_err()
            .contains("--features jit"));
    }

    #[test]
    fn default_limits_are_sane() {
        let limits = Limits::default();
        assert_eq!(limits.memory_bytes_max(), 64 * 1024 * 1024);
    }
}
