//! The sandbox: compiles and caches modules, runs one export under fuel, memory and
//! wall-clock limits, and turns every failure into a typed [`ExecError`].

use super::cache::{CacheStats, LruCache};
use super::error::{ErrorKind, ExecError};
use super::host::{HostEnv, RealHost};
use super::meter::{Meter, FUEL_SLICE};
use super::spec::{ModuleHash, ModuleRef, RunReport, RunSpec};
use super::wasi::{base_linker, module_linker, HostState};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};
use wasmi::errors::{ErrorKind as WasmiKind, InstantiationError, MemoryError};
use wasmi::{
    CompilationMode, Config, EnforcedLimits, Engine, ExternType, Func, FuncType, Linker, Module,
    ResumableCall, Store, TrapCode, Val, ValType,
};

/// Fuel for a module's `start` section, which wasmi cannot pause to check the deadline.
pub const START_SECTION_FUEL: u64 = 100_000_000;

/// Sandbox-wide settings.
#[derive(Clone)]
pub struct SandboxConfig {
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
            .field("cache_modules_max", &self.cache_modules_max)
            .field("cache_bytes_max", &self.cache_bytes_max)
            .field("module_bytes_max", &self.module_bytes_max)
            .field("output_bytes_max", &self.output_bytes_max)
            .finish_non_exhaustive()
    }
}

/// A compiled module with the linker that satisfies its imports.
#[derive(Clone)]
struct Compiled {
    module: Module,
    linker: Arc<Linker<HostState>>,
}

/// Runs WASM exports in isolation; shareable across threads (`Send + Sync`).
pub struct Sandbox {
    engine: Engine,
    base_linker: Linker<HostState>,
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

/// Why guest execution stopped early: an engine error, or a limit this module enforced.
enum Stop {
    Wasm(wasmi::Error),
    Limit(ExecError),
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Cache state stays consistent even if a holder panicked: every update is one insert.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sandbox {
    /// Creates a sandbox with its own engine and module cache.
    pub fn new(config: SandboxConfig) -> Self {
        let mut wasm_config = Config::default();
        wasm_config
            .consume_fuel(true)
            // One memory per instance keeps the page limit a per-run total.
            .wasm_multi_memory(false)
            // Eager compilation keeps fuel_used independent of what was run before.
            .compilation_mode(CompilationMode::Eager)
            // Bounds what a hostile module can make compilation cost: at most 10,000
            // functions, 1,000 globals, data and element segments, 32 parameters and
            // results, 40 body bytes per function on average (see `EnforcedLimits::strict`).
            // With `module_bytes_max` and wasmparser's own caps (50,000 locals per function)
            // this keeps compile time and memory linear in a bounded input. Execution
            // stacks keep wasmi's defaults: 1,000 nested calls, 1M value cells.
            .enforced_limits(EnforcedLimits::strict());
        let engine = Engine::new(&wasm_config);
        let base_linker = match base_linker(&engine) {
            Ok(linker) => linker,
            Err(error) => {
                // Only a duplicate name in our own table can cause this; fall back to no WASI.
                tracing::error!(%error, "building the WASI linker failed");
                Linker::new(&engine)
            }
        };
        let cache = Mutex::new(LruCache::new(
            config.cache_modules_max,
            config.cache_bytes_max,
        ));
        Self {
            engine,
            base_linker,
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
        let module = Module::new(&self.engine, bytes)
            .map_err(|e| ExecError::new(ErrorKind::BadModule, e.to_string()))?;
        let linker = Arc::new(module_linker(&self.base_linker, &module)?);
        let compiled = Compiled { module, linker };
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
        match catch_unwind(AssertUnwindSafe(|| self.run_inner(spec, cancel))) {
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

    fn run_inner(&self, spec: &RunSpec, cancel: Option<Arc<AtomicBool>>) -> RunReport {
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
        let inputs = match check_export(&compiled.module, &spec.export, &spec.args) {
            Ok(inputs) => inputs,
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
            limits.memory_bytes_max(),
            meter,
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limits);
        let outcome = execute(&mut store, &compiled, &spec.export, &inputs);
        let fuel_used = store.data().meter.used(store.get_fuel().unwrap_or(0));
        let state = store.into_data();
        tracing::debug!(export = %spec.export, fuel_used, ok = outcome.is_ok(), "run finished");
        RunReport {
            outcome,
            stdout: state.stdout.data,
            stderr: state.stderr.data,
            fuel_used,
        }
    }
}

/// Instantiates, runs `_start`/`_initialize` if present, then the export.
fn execute(
    store: &mut Store<HostState>,
    compiled: &Compiled,
    export: &str,
    inputs: &[Val],
) -> Result<Vec<i64>, ExecError> {
    let start_fuel = store.data().meter.fuel_max().min(START_SECTION_FUEL);
    set_fuel(store, start_fuel)?;
    store.data_mut().meter.grant_all(start_fuel);
    let instance = compiled
        .linker
        .instantiate_and_start(&mut *store, &compiled.module)
        .map_err(|e| classify(e, ErrorKind::BadModule))?;
    // Give back what the start section left beyond one slice so the deadline is checked soon.
    let left = store.get_fuel().unwrap_or(0);
    if left > FUEL_SLICE {
        set_fuel(store, FUEL_SLICE)?;
        store.data_mut().meter.give_back(left - FUEL_SLICE);
    }
    store.data().meter.check_stop()?;

    let init = if export == "_start" {
        None
    } else {
        instance
            .get_func(&*store, "_start")
            .or_else(|| instance.get_func(&*store, "_initialize"))
    };
    if let Some(init) = init {
        match drive(store, &init, &[], &mut []) {
            Ok(()) => {}
            Err(Stop::Wasm(e)) if e.i32_exit_status() == Some(0) => {}
            Err(stop) => return Err(stop_error(stop)),
        }
    }
    let Some(target) = instance.get_func(&*store, export) else {
        return Err(ExecError::new(ErrorKind::MissingExport, "export vanished"));
    };
    let ty = target.ty(&*store);
    let mut outputs: Vec<Val> = ty.results().iter().map(|t| zero(*t)).collect();
    match drive(store, &target, inputs, &mut outputs) {
        Ok(()) => {}
        Err(Stop::Wasm(e)) if export == "_start" && e.i32_exit_status() == Some(0) => {
            return Ok(Vec::new())
        }
        Err(stop) => return Err(stop_error(stop)),
    }
    outputs
        .iter()
        .map(|v| match v {
            Val::I32(x) => Ok(i64::from(*x as u32)),
            Val::I64(x) => Ok(*x),
            other => Err(ExecError::new(
                ErrorKind::Internal,
                format!("unexpected result type {:?}", other.ty()),
            )),
        })
        .collect()
}

fn set_fuel(store: &mut Store<HostState>, fuel: u64) -> Result<(), ExecError> {
    store
        .set_fuel(fuel)
        .map_err(|e| ExecError::new(ErrorKind::Internal, e.to_string()))
}

/// Calls `func` resumably, refilling fuel slice by slice until it finishes or a limit hits.
fn drive(
    store: &mut Store<HostState>,
    func: &Func,
    inputs: &[Val],
    outputs: &mut [Val],
) -> Result<(), Stop> {
    let mut call = func
        .call_resumable(&mut *store, inputs, outputs)
        .map_err(Stop::Wasm)?;
    loop {
        match call {
            ResumableCall::Finished => return Ok(()),
            // Host functions never ask to be resumed: their errors (proc_exit, unsupported
            // WASI calls, a limit hit inside a host call) end the run.
            ResumableCall::HostTrap(trap) => return Err(Stop::Wasm(trap.into_host_error())),
            ResumableCall::OutOfFuel(paused) => {
                let left = store.get_fuel().unwrap_or(0);
                let fuel = store
                    .data_mut()
                    .meter
                    .refill(left, paused.required_fuel())
                    .map_err(Stop::Limit)?;
                set_fuel(store, fuel).map_err(Stop::Limit)?;
                call = paused.resume(&mut *store, outputs).map_err(Stop::Wasm)?;
            }
        }
    }
}

fn stop_error(stop: Stop) -> ExecError {
    match stop {
        Stop::Limit(error) => error,
        Stop::Wasm(error) => classify(error, ErrorKind::Trap),
    }
}

/// Maps a wasmi error to our kinds; `fallback` is BadModule while instantiating, else Trap.
fn classify(error: wasmi::Error, fallback: ErrorKind) -> ExecError {
    // A limit hit inside a host call comes back as our own error, kind intact.
    if let Some(limit) = error.downcast_ref::<ExecError>() {
        return limit.clone();
    }
    if let Some(code) = error.i32_exit_status() {
        return ExecError::new(ErrorKind::Exit, format!("exit code {code}"));
    }
    let kind = match error.kind() {
        WasmiKind::TrapCode(TrapCode::OutOfFuel) => ErrorKind::FuelExhausted,
        WasmiKind::TrapCode(TrapCode::GrowthOperationLimited)
        | WasmiKind::Memory(MemoryError::ResourceLimiterDeniedAllocation)
        | WasmiKind::Instantiation(InstantiationError::FailedToInstantiateMemory(
            MemoryError::ResourceLimiterDeniedAllocation,
        )) => ErrorKind::MemoryLimit,
        WasmiKind::Fuel(_) => ErrorKind::FuelExhausted,
        WasmiKind::TrapCode(_) | WasmiKind::Host(_) | WasmiKind::Message(_) => ErrorKind::Trap,
        WasmiKind::Func(_) => ErrorKind::WrongSignature,
        WasmiKind::Linker(_) | WasmiKind::Instantiation(_) => ErrorKind::BadModule,
        _ => fallback,
    };
    ExecError::new(kind, error.to_string())
}

fn zero(ty: ValType) -> Val {
    match ty {
        ValType::I64 => Val::I64(0),
        _ => Val::I32(0),
    }
}

/// Checks the export's signature and converts the arguments.
fn check_export(module: &Module, export: &str, args: &[i64]) -> Result<Vec<Val>, ExecError> {
    let ty: FuncType = match module.get_export(export) {
        Some(ExternType::Func(ty)) => ty,
        Some(_) => {
            return Err(ExecError::new(
                ErrorKind::MissingExport,
                format!("export {export:?} is not a function"),
            ))
        }
        None => {
            return Err(ExecError::new(
                ErrorKind::MissingExport,
                format!("no export named {export:?}"),
            ))
        }
    };
    let wrong = |message: String| ExecError::new(ErrorKind::WrongSignature, message);
    let int = |t: &ValType| matches!(t, ValType::I32 | ValType::I64);
    if !ty.params().iter().all(int) || !ty.results().iter().all(int) {
        return Err(wrong(format!(
            "export {export:?} has type {:?} -> {:?}; only i32/i64 are supported",
            ty.params(),
            ty.results()
        )));
    }
    if ty.params().len() != args.len() {
        return Err(wrong(format!(
            "export {export:?} takes {} arguments, {} given",
            ty.params().len(),
            args.len()
        )));
    }
    ty.params()
        .iter()
        .zip(args)
        .enumerate()
        .map(|(i, (t, &arg))| match t {
            ValType::I64 => Ok(Val::I64(arg)),
            _ => match i32::try_from(arg) {
                Ok(v) => Ok(Val::I32(v)),
                Err(_) => u32::try_from(arg)
                    .map(|v| Val::I32(v as i32))
                    .map_err(|_| wrong(format!("argument {i} ({arg}) does not fit in i32"))),
            },
        })
        .collect()
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
    fn default_limits_are_sane() {
        let limits = Limits::default();
        assert_eq!(limits.memory_bytes_max(), 64 * 1024 * 1024);
    }
}
