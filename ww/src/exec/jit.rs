//! wasmtime (cranelift) behind the sandbox, the optional JIT engine (cargo feature
//! `jit`, `worker --engine wasmtime`): the same limits, WASI subset and error kinds
//! as the interpreter. Fuel is metered by wasmtime in one grant; the deadline and
//! cancellation are checked at every epoch tick (every [`EPOCH_TICK`]), bumped by
//! one thread per engine; memory and tables are bounded by a resource limiter.

use super::error::{ErrorKind, ExecError};
use super::meter::HOST_CALL_FUEL;
use super::signature::{missing_export, typed_args, Arg, IntType};
use super::wasi::{errno, foreign_import, link_wasi, GuestCall, HostState};
use super::wasi::{IMPLEMENTED, TABLE_ELEMENTS_MAX, WASI_MODULE};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;
use wasmtime::{
    Caller, Config, Engine, Error, Extern, ExternType, InstancePre, Linker, Module,
    ResourceLimiter, Store, Trap, UpdateDeadline, Val, ValType,
};

/// How often the deadline and cancellation are checked while a guest runs: a guest
/// stops at most this long (plus the check) after either.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Native stack a guest may use, below the 2 MiB of the worker's blocking threads.
const WASM_STACK_BYTES: usize = 512 * 1024;

/// `proc_exit(code)`, carried out of the guest as an error.
#[derive(Debug, thiserror::Error)]
#[error("exit code {0}")]
struct GuestExit(i32);

/// Memory, table and instance bounds of one run; growth past them traps with
/// `MemoryLimit` at once, as in the interpreter.
struct Limiter {
    memory_bytes_max: usize,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool, Error> {
        if desired > self.memory_bytes_max {
            return Err(Error::new(ExecError::new(
                ErrorKind::MemoryLimit,
                format!(
                    "memory of {desired} bytes asked, limit is {}",
                    self.memory_bytes_max
                ),
            )));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> Result<bool, Error> {
        if desired > TABLE_ELEMENTS_MAX {
            return Err(Error::new(ExecError::new(
                ErrorKind::MemoryLimit,
                format!("table of {desired} elements asked, limit is {TABLE_ELEMENTS_MAX}"),
            )));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        16
    }

    fn memories(&self) -> usize {
        1
    }
}

/// What a wasmtime store holds: the run's host state and its limiter.
pub(crate) struct Data {
    state: HostState,
    limiter: Limiter,
}

impl GuestCall for Caller<'_, Data> {
    type Error = Error;

    fn charge(&mut self, fuel: u64) -> Result<(), Error> {
        let left = self.get_fuel()?;
        let level = self
            .data_mut()
            .state
            .meter
            .charge(left, fuel)
            .map_err(Error::new)?;
        self.set_fuel(level)
    }

    fn memory(&mut self) -> Option<&[u8]> {
        let memory = self.get_export("memory").and_then(Extern::into_memory)?;
        Some(memory.data(&*self))
    }

    fn memory_and_state(&mut self) -> Option<(&mut [u8], &mut HostState)> {
        let memory = self.get_export("memory").and_then(Extern::into_memory)?;
        let (mem, data) = memory.data_and_store_mut(self);
        Some((mem, &mut data.state))
    }
}

/// A module compiled by cranelift and pre-linked.
#[derive(Clone)]
pub(crate) struct Compiled {
    module: Module,
    pre: InstancePre<Data>,
}

/// Bumps the engine's epoch every [`EPOCH_TICK`] until dropped.
struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wasmtime-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .map_err(|error| tracing::error!(%error, "starting the epoch thread failed"))
            .ok();
        Self { stop, thread }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The wasmtime engine with the WASI functions every module may import.
pub(crate) struct Jit {
    engine: Engine,
    base_linker: Linker<Data>,
    _ticker: Ticker,
}

impl Jit {
    /// A wasmtime engine configured for untrusted modules, with its epoch thread.
    pub(crate) fn new() -> Self {
        let mut config = Config::new();
        config
            .consume_fuel(true)
            .epoch_interruption(true)
            .max_wasm_stack(WASM_STACK_BYTES)
            // The proposals the interpreter takes, no more: one memory of 32-bit
            // addresses, no SIMD (threads are not in this build of wasmtime).
            .wasm_multi_memory(false)
            .wasm_memory64(false)
            .wasm_relaxed_simd(false)
            .wasm_simd(false);
        let engine = match Engine::new(&config) {
            Ok(engine) => engine,
            Err(error) => {
                // Only a setting this build lacks can cause this: fall back to defaults
                // plus the limits, which every build has.
                tracing::error!(%error, "wasmtime refused the configuration");
                let mut config = Config::new();
                config.consume_fuel(true).epoch_interruption(true);
                Engine::new(&config).expect("wasmtime's default configuration")
            }
        };
        let base_linker = match base_linker(&engine) {
            Ok(linker) => linker,
            Err(error) => {
                tracing::error!(%error, "building the WASI linker failed");
                Linker::new(&engine)
            }
        };
        let ticker = Ticker::start(engine.clone());
        Self {
            engine,
            base_linker,
            _ticker: ticker,
        }
    }

    /// Validates and compiles `bytes` (already prechecked), and links its imports.
    pub(crate) fn compile(&self, bytes: &[u8]) -> Result<Compiled, ExecError> {
        let module = Module::new(&self.engine, bytes)
            .map_err(|e| ExecError::new(ErrorKind::BadModule, format!("{e:#}")))?;
        let linker = module_linker(&self.base_linker, &module)?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| ExecError::new(ErrorKind::BadModule, format!("{e:#}")))?;
        Ok(Compiled { module, pre })
    }

    /// Runs `export(args)` of `compiled` with `state`'s meter; returns the outcome,
    /// the fuel used and the state (with the captured output).
    pub(crate) fn run(
        &self,
        compiled: &Compiled,
        export: &str,
        args: &[i64],
        mut state: HostState,
        memory_bytes_max: usize,
    ) -> (Result<Vec<i64>, ExecError>, u64, HostState) {
        let inputs = match check_export(&compiled.module, export, args) {
            Ok(inputs) => inputs,
            Err(error) => return (Err(error), 0, state),
        };
        let fuel = state.meter.fuel_max();
        state.meter.grant_all(fuel);
        let data = Data {
            state,
            limiter: Limiter { memory_bytes_max },
        };
        let mut store = Store::new(&self.engine, data);
        store.limiter(|data| &mut data.limiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|context| {
            context
                .data()
                .state
                .meter
                .check_stop()
                .map_err(Error::new)?;
            Ok(UpdateDeadline::Continue(1))
        });
        let outcome = match store.set_fuel(fuel) {
            Ok(()) => execute(&mut store, compiled, export, &inputs),
            Err(error) => Err(ExecError::new(ErrorKind::Internal, error.to_string())),
        };
        let left = store.get_fuel().unwrap_or(0);
        let fuel_used = store.data().state.meter.used(left);
        (outcome, fuel_used, store.into_data().state)
    }
}

/// A linker with every implemented WASI function; shared by all modules of a sandbox.
fn base_linker(engine: &Engine) -> Result<Linker<Data>, ExecError> {
    let mut linker = Linker::<Data>::new(engine);
    link_wasi!(&mut linker, Caller<'_, Data>, Error, |code| Error::new(
        GuestExit(code)
    ));
    Ok(linker)
}

/// Extends `base` for `module`: other WASI functions return ENOSYS; foreign imports are BadModule.
fn module_linker(base: &Linker<Data>, module: &Module) -> Result<Linker<Data>, ExecError> {
    let mut linker = base.clone();
    let mut stubbed = BTreeSet::new();
    for import in module.imports() {
        let (module_name, name) = (import.module(), import.name());
        let ty = match import.ty() {
            ExternType::Func(ty) => Some(ty),
            _ => None,
        };
        if let Some(error) = foreign_import(module_name, name, ty.is_some()) {
            return Err(error);
        }
        let Some(ty) = ty else { continue };
        if IMPLEMENTED.contains(&name) || !stubbed.insert(name.to_string()) {
            continue;
        }
        let fname = name.to_string();
        let results: Vec<ValType> = ty.results().collect();
        let errno_result = matches!(results.as_slice(), [ValType::I32]);
        linker
            .func_new(
                WASI_MODULE,
                name,
                ty.clone(),
                move |mut c: Caller<'_, Data>, _params: &[Val], results: &mut [Val]| {
                    c.charge(HOST_CALL_FUEL)?;
                    tracing::debug!(function = %fname, "unsupported WASI call");
                    if errno_result {
                        results[0] = Val::I32(errno::NOSYS);
                        Ok(())
                    } else {
                        Err(Error::msg(format!("unsupported WASI function {fname}")))
                    }
                },
            )
            .map_err(|e| ExecError::new(ErrorKind::BadModule, e.to_string()))?;
    }
    Ok(linker)
}

/// Instantiates (running the start section), runs `_start`/`_initialize` if
/// present, then the export.
fn execute(
    store: &mut Store<Data>,
    compiled: &Compiled,
    export: &str,
    inputs: &[Val],
) -> Result<Vec<i64>, ExecError> {
    let instance = compiled
        .pre
        .instantiate(&mut *store)
        .map_err(|e| classify(e, ErrorKind::BadModule))?;
    let init = if export == "_start" {
        None
    } else {
        instance
            .get_func(&mut *store, "_start")
            .or_else(|| instance.get_func(&mut *store, "_initialize"))
    };
    if let Some(init) = init {
        match init.call(&mut *store, &[], &mut []) {
            Ok(()) => {}
            Err(e) if exit_status(&e) == Some(0) => {}
            Err(e) => return Err(classify(e, ErrorKind::Trap)),
        }
    }
    let Some(target) = instance.get_func(&mut *store, export) else {
        return Err(ExecError::new(ErrorKind::MissingExport, "export vanished"));
    };
    let ty = target.ty(&*store);
    let mut outputs: Vec<Val> = ty
        .results()
        .map(|t| match t {
            ValType::I64 => Val::I64(0),
            _ => Val::I32(0),
        })
        .collect();
    match target.call(&mut *store, inputs, &mut outputs) {
        Ok(()) => {}
        Err(e) if export == "_start" && exit_status(&e) == Some(0) => return Ok(Vec::new()),
        Err(e) => return Err(classify(e, ErrorKind::Trap)),
    }
    outputs
        .iter()
        .map(|v| match v {
            Val::I32(x) => Ok(i64::from(*x as u32)),
            Val::I64(x) => Ok(*x),
            other => Err(ExecError::new(
                ErrorKind::Internal,
                format!("unexpected result {other:?}"),
            )),
        })
        .collect()
}

fn exit_status(error: &Error) -> Option<i32> {
    error.downcast_ref::<GuestExit>().map(|exit| exit.0)
}

/// Maps a wasmtime error to our kinds; `fallback` is BadModule while instantiating,
/// else Trap.
fn classify(error: Error, fallback: ErrorKind) -> ExecError {
    // A limit hit in a host call, the limiter or the epoch callback is our own error.
    if let Some(limit) = error.downcast_ref::<ExecError>() {
        return limit.clone();
    }
    if let Some(code) = exit_status(&error) {
        return ExecError::new(ErrorKind::Exit, format!("exit code {code}"));
    }
    let kind = match error.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => ErrorKind::FuelExhausted,
        Some(_) => ErrorKind::Trap,
        None => fallback,
    };
    ExecError::new(kind, format!("{error:#}"))
}

fn int_type(ty: &ValType) -> IntType {
    match ty {
        ValType::I32 => Some(false),
        ValType::I64 => Some(true),
        _ => None,
    }
}

/// Checks the export's signature and converts the arguments.
fn check_export(module: &Module, export: &str, args: &[i64]) -> Result<Vec<Val>, ExecError> {
    let ty = match module.get_export(export) {
        Some(ExternType::Func(ty)) => ty,
        other => return Err(missing_export(export, other.is_some())),
    };
    let params: Vec<IntType> = ty.params().map(|t| int_type(&t)).collect();
    let results: Vec<IntType> = ty.results().map(|t| int_type(&t)).collect();
    let describe = || {
        let params: Vec<ValType> = ty.params().collect();
        let results: Vec<ValType> = ty.results().collect();
        format!("{params:?} -> {results:?}")
    };
    let args = typed_args(export, &params, &results, describe, args)?;
    Ok(args
        .into_iter()
        .map(|arg| match arg {
            Arg::I32(v) => Val::I32(v),
            Arg::I64(v) => Val::I64(v),
        })
        .collect())
}
