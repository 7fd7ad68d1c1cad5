//! The `Executor` capability over Cap'n Proto: one facet per admitted caller.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use super::executor::{Executor, ExecutorError, ProcessLimits, ProcessSpec};
use super::table::{ProcessEnd, ProcessId, ProcessState};
use crate::exec::MODULE_BYTES_MAX;
use crate::exec::{ModuleHash, ModuleRef, OutputStream};
use crate::schema::executor_capnp::{chunk, executor, process_end, process_spec};
use crate::schema::executor_capnp::{ProcessState as ProcessStateW, Stream as StreamW};

/// `wait` and `kill` calls one facet (one caller's connection) may have
/// waiting at once: each holds a little memory until its process ends.
pub const WAITS_PER_CALLER_MAX: usize = 16;

/// Serves an [`Executor`] to one caller.
pub struct ExecutorServer {
    executor: Executor,
    waiting: Rc<Cell<usize>>,
}

impl ExecutorServer {
    /// A facet over `executor` with its own bound on waiting calls.
    pub fn new(executor: Executor) -> Self {
        ExecutorServer {
            executor,
            waiting: Rc::default(),
        }
    }

    /// Wraps the server as a capability client.
    pub fn into_client(self) -> executor::Client {
        capnp_rpc::new_client(self)
    }
}

/// One waiting call, counted until dropped.
struct Waiting(Rc<Cell<usize>>);

impl Waiting {
    fn enter(count: &Rc<Cell<usize>>) -> Result<Waiting, capnp::Error> {
        if count.get() >= WAITS_PER_CALLER_MAX {
            return Err(capnp::Error::overloaded(format!(
                "overloaded: {WAITS_PER_CALLER_MAX} wait or kill calls already waiting from this caller"
            )));
        }
        count.set(count.get() + 1);
        Ok(Waiting(count.clone()))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        debug_assert!(
            self.0.get() > 0,
            "a waiting call left that was never counted"
        );
        self.0.set(self.0.get().saturating_sub(1));
    }
}

fn to_capnp(error: ExecutorError) -> capnp::Error {
    match &error {
        ExecutorError::Table(super::table::ProcessError::Full(_)) => {
            capnp::Error::overloaded(error.to_string())
        }
        _ => capnp::Error::failed(error.to_string()),
    }
}

/// The wire form of a state.
pub fn state_to_wire(state: ProcessState) -> ProcessStateW {
    match state {
        ProcessState::Running => ProcessStateW::Running,
        ProcessState::Exited(_) => ProcessStateW::Exited,
        ProcessState::Killed => ProcessStateW::Killed,
        ProcessState::Failed(_) => ProcessStateW::Failed,
    }
}

fn write_end(end: &ProcessEnd, mut out: process_end::Builder<'_>) {
    out.set_state(state_to_wire(end.state));
    out.set_exit_code(end.exit_code());
    out.set_fuel_used(end.fuel_used);
    if let Some(error) = &end.error {
        out.set_error_kind(error.kind().as_str());
        out.set_error_message(error.message());
    }
}

fn read_spec(spec: process_spec::Reader<'_>) -> Result<ProcessSpec, capnp::Error> {
    let module = match spec.get_module().which()? {
        process_spec::module::Bytes(bytes) => {
            let bytes = bytes?;
            if bytes.len() > MODULE_BYTES_MAX {
                return Err(capnp::Error::failed(format!(
                    "module_too_large: {} bytes, at most {MODULE_BYTES_MAX}",
                    bytes.len()
                )));
            }
            ModuleRef::Bytes(bytes.to_vec())
        }
        process_spec::module::Hash(hash) => {
            let hash: [u8; 32] = hash?.try_into().map_err(|_| {
                capnp::Error::failed("unknown_module: a module hash is 32 bytes".into())
            })?;
            ModuleRef::Hash(ModuleHash(hash))
        }
    };
    let export = spec.get_export()?.to_string()?;
    if export.is_empty() || export.len() > 256 {
        return Err(capnp::Error::failed(
            "missing_export: an export name is 1 to 256 bytes".into(),
        ));
    }
    let args = spec.get_args()?;
    if args.len() > 64 {
        return Err(capnp::Error::failed(
            "wrong_signature: at most 64 arguments".into(),
        ));
    }
    let limits = spec.get_limits()?;
    let wall_ms = limits.get_wall_time_ms();
    Ok(ProcessSpec {
        module,
        export,
        args: args.iter().collect(),
        limits: ProcessLimits {
            fuel_max: limits.get_fuel_max(),
            memory_pages_max: limits.get_memory_pages_max(),
            deadline: (wall_ms > 0).then(|| Duration::from_millis(wall_ms)),
        },
    })
}

impl executor::Server for ExecutorServer {
    async fn spawn(
        self: Rc<Self>,
        params: executor::SpawnParams,
        mut results: executor::SpawnResults,
    ) -> Result<(), capnp::Error> {
        let spec = read_spec(params.get()?.get_spec()?)?;
        let id = self.executor.spawn(spec).await.map_err(to_capnp)?;
        results.get().set_id(id.0);
        Ok(())
    }

    async fn list(
        self: Rc<Self>,
        _params: executor::ListParams,
        mut results: executor::ListResults,
    ) -> Result<(), capnp::Error> {
        let processes = self.executor.list();
        let len = u32::try_from(processes.len()).unwrap_or(u32::MAX);
        let mut out = results.get().init_processes(len);
        for (i, info) in processes.iter().enumerate().take(len as usize) {
            let mut row = out.reborrow().get(i as u32);
            row.set_id(info.id.0);
            row.set_module_hash(&info.module.0);
            row.set_state(state_to_wire(info.state));
            row.set_started_ms(info.started_ms);
            row.set_exit_code(info.state.exit_code().unwrap_or(0));
            if let ProcessState::Failed(kind) = info.state {
                row.set_error_kind(kind.as_str());
            }
        }
        Ok(())
    }

    async fn wait(
        self: Rc<Self>,
        params: executor::WaitParams,
        mut results: executor::WaitResults,
    ) -> Result<(), capnp::Error> {
        let id = ProcessId(params.get()?.get_id());
        let _waiting = Waiting::enter(&self.waiting)?;
        let end = self.executor.wait(id).await.map_err(to_capnp)?;
        write_end(&end, results.get().init_end());
        Ok(())
    }

    async fn kill(
        self: Rc<Self>,
        params: executor::KillParams,
        mut results: executor::KillResults,
    ) -> Result<(), capnp::Error> {
        let id = ProcessId(params.get()?.get_id());
        let _waiting = Waiting::enter(&self.waiting)?;
        let end = self.executor.kill(id).await.map_err(to_capnp)?;
        write_end(&end, results.get().init_end());
        Ok(())
    }

    async fn read(
        self: Rc<Self>,
        params: executor::ReadParams,
        mut results: executor::ReadResults,
    ) -> Result<(), capnp::Error> {
        let params = params.get()?;
        let which = match params.get_stream()? {
            StreamW::Stdout => OutputStream::Stdout,
            StreamW::Stderr => OutputStream::Stderr,
        };
        let got = self
            .executor
            .read(
                ProcessId(params.get_id()),
                which,
                params.get_offset(),
                params.get_max_bytes() as usize,
            )
            .map_err(to_capnp)?;
        let mut out: chunk::Builder<'_> = results.get().init_chunk();
        out.set_data(&got.data);
        out.set_next_offset(got.next_offset);
        out.set_skipped(got.skipped);
        out.set_eof(got.eof);
        Ok(())
    }
}
