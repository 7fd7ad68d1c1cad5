//! The wasmi interpreter behind the sandbox (the default engine, and the only one
//! in simulation): fuel in slices through resumable calls, the deadline and
//! cancellation checked between slices.

use super::error::{ErrorKind, ExecError};
use super::meter::FUEL_SLICE;
use super::meter::{HOST_CALL_FUEL, START_SECTION_FUEL};
use super::signature::{missing_export, typed_args, Arg, IntType};
use super::wasi::{errno, TABLE_ELEMENTS_MAX};
use super::wasi::{foreign_import, link_wasi, GuestCall, HostState, IMPLEMENTED, WASI_MODULE};
use std::collections::BTreeSet;
use std::sync::Arc;
use wasmi::errors::{ErrorKind as WasmiKind, InstantiationError, MemoryError};
use wasmi::{
    Caller, CompilationMode, Config, EnforcedLimits, Engine, Error, Extern, ExternType, Func,
    Linker, Module, ResumableCall, Store, StoreLimits, StoreLimitsBuilder, TrapCode, Val, ValType,
};

/// What a wasmi store holds: the run's host state and its memory limiter.
pub(crate) struct Data {
    state: HostState,
    limits: StoreLimits,
}

impl GuestCall for Caller<'_, Data> {
    type Error = Error;

    fn charge(&mut self, fuel: u64) -> Result<(), Error> {
        // Fuel metering is always on in this engine; an error here would be our bug.
        let left = self.get_fuel()?;
        let level = self
            .data_mut()
            .state
            .meter
            .charge(left, fuel)
            .map_err(Error::host)?;
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

/// Store limits of one run.
///
/// A custom `ResourceLimiter` is not possible: wasmi 2 does not export `LimiterError`,
/// the only error type its methods may return. `StoreLimits` with `trap_on_grow_failure`
/// gives the wanted effect: growth past the limit traps (`GrowthOperationLimited`) rather
/// than returning -1, so a memory bomb ends at once as MemoryLimit instead of spinning
/// until its fuel runs out.
fn store_limits(memory_bytes_max: usize) -> StoreLimits {
    StoreLimitsBuilder::new()
        .memory_size(memory_bytes_max)
        .table_elements(TABLE_ELEMENTS_MAX)
        .instances(1)
        .memories(1)
        .tables(16)
        .trap_on_grow_failure(true)
        .build()
}

/// A module compiled by wasmi, with the linker that satisfies its imports.
#[derive(Clone)]
pub(crate) struct Compiled {
    module: Module,
    linker: Arc<Linker<Data>>,
}

/// The wasmi engine with the WASI functions every module may import.
pub(crate) struct Interp {
    engine: Engine,
    base_linker: Linker<Data>,
}

/// Why guest execution stopped early: an engine error, or a limit this module enforced.
enum Stop {
    Wasm(Error),
    Limit(ExecError),
}

impl Interp {
    /// A wasmi engine configured for untrusted modules.
    pub(crate) fn new() -> Self {
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
        Self {
            engine,
            base_linker,
        }
    }

    /// Validates and compiles `bytes` (already prechecked), and links its imports.
    pub(crate) fn compile(&self, bytes: &[u8]) -> Result<Compiled, ExecError> {
        let module = Module::new(&self.engine, bytes)
            .map_err(|e| ExecError::new(ErrorKind::BadModule, e.to_string()))?;
        let linker = Arc::new(module_linker(&self.base_linker, &module)?);
        Ok(Compiled { module, linker })
    }

    /// Runs `export(args)` of `compiled` with `state`'s meter; returns the outcome,
    /// the fuel used and the state (with the captured output).
    pub(crate) fn run(
        &self,
        compiled: &Compiled,
        export: &str,
        args: &[i64],
        state: HostState,
        memory_bytes_max: usize,
    ) -> (Result<Vec<i64>, ExecError>, u64, HostState) {
        let inputs = match check_export(&compiled.module, export, args) {
            Ok(inputs) => inputs,
            Err(error) => return (Err(error), 0, state),
        };
        let data = Data {
            state,
            limits: store_limits(memory_bytes_max),
        };
        let mut store = Store::new(&self.engine, data);
        store.limiter(|data| &mut data.limits);
        let outcome = execute(&mut store, compiled, export, &inputs);
        let fuel_used = store.data().state.meter.used(store.get_fuel().unwrap_or(0));
        (outcome, fuel_used, store.into_data().state)
    }
}

/// A linker with every implemented WASI function; shared by all modules of a sandbox.
fn base_linker(engine: &Engine) -> Result<Linker<Data>, ExecError> {
    let mut linker = Linker::<Data>::new(engine);
    link_wasi!(&mut linker, Caller<'_, Data>, Error, Error::i32_exit);
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
        let errno_result = ty.results() == [ValType::I32];
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
                        Err(Error::new(format!("unsupported WASI function {fname}")))
                    }
                },
            )
            .map_err(|e| ExecError::new(ErrorKind::BadModule, e.to_string()))?;
    }
    Ok(linker)
}

/// Instantiates, runs `_start`/`_initialize` if present, then the export.
fn execute(
    store: &mut Store<Data>,
    compiled: &Compiled,
    export: &str,
    inputs: &[Val],
) -> Result<Vec<i64>, ExecError> {
    let start_fuel = store.data().state.meter.fuel_max().min(START_SECTION_FUEL);
    set_fuel(store, start_fuel)?;
    store.data_mut().state.meter.grant_all(start_fuel);
    let instance = compiled
        .linker
        .instantiate_and_start(&mut *store, &compiled.module)
        .map_err(|e| classify(e, ErrorKind::BadModule))?;
    // Give back what the start section left beyond one slice so the deadline is checked soon.
    let left = store.get_fuel().unwrap_or(0);
    if left > FUEL_SLICE {
        set_fuel(store, FUEL_SLICE)?;
        store.data_mut().state.meter.give_back(left - FUEL_SLICE);
    }
    store.data().state.meter.check_stop()?;

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

fn set_fuel(store: &mut Store<Data>, fuel: u64) -> Result<(), ExecError> {
    store
        .set_fuel(fuel)
        .map_err(|e| ExecError::new(ErrorKind::Internal, e.to_string()))
}

/// Calls `func` resumably, refilling fuel slice by slice until it finishes or a limit hits.
fn drive(
    store: &mut Store<Data>,
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
                    .state
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
fn classify(error: Error, fallback: ErrorKind) -> ExecError {
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
    let params: Vec<IntType> = ty.params().iter().map(int_type).collect();
    let results: Vec<IntType> = ty.results().iter().map(int_type).collect();
    let describe = || format!("{:?} -> {:?}", ty.params(), ty.results());
    let args = typed_args(export, &params, &results, describe, args)?;
    Ok(args
        .into_iter()
        .map(|arg| match arg {
            Arg::I32(v) => Val::I32(v),
            Arg::I64(v) => Val::I64(v),
        })
        .collect())
}
