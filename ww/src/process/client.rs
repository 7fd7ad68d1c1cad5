//! Calling a host's `Executor` capability.

use super::executor::ProcessSpec;
use super::output::Chunk;
use super::table::{ProcessEnd, ProcessId, ProcessInfo, ProcessState};
use crate::exec::{ErrorKind, ExecError, ModuleHash, ModuleRef, OutputStream};
use crate::rpc::{self, Connection, RpcConfig, RpcError};
use crate::schema::executor_capnp::{executor, process_end};
use crate::schema::executor_capnp::{ProcessState as ProcessStateW, Stream as StreamW};
use crate::transport::{PeerId, Transport};

/// The state a host reports, rebuilt from its wire form: the exit code for an
/// exit, the error kind for a failure (an unknown kind from a newer host reads
/// as `internal`, an unknown state as failed).
fn read_state(
    state: Result<ProcessStateW, capnp::NotInSchema>,
    exit_code: i32,
    error_kind: &str,
) -> ProcessState {
    match state {
        Ok(ProcessStateW::Running) => ProcessState::Running,
        Ok(ProcessStateW::Exited) => ProcessState::Exited(exit_code),
        Ok(ProcessStateW::Killed) => ProcessState::Killed,
        Ok(ProcessStateW::Failed) | Err(_) => ProcessState::Failed(
            ErrorKind::from_str_name(error_kind).unwrap_or(ErrorKind::Internal),
        ),
    }
}

fn read_end(end: process_end::Reader<'_>) -> Result<ProcessEnd, capnp::Error> {
    let kind = end.get_error_kind()?.to_str()?;
    let state = read_state(end.get_state(), end.get_exit_code(), kind);
    let error = match ErrorKind::from_str_name(kind) {
        Some(kind) => Some(ExecError::new(kind, end.get_error_message()?.to_str()?)),
        None => None,
    };
    Ok(ProcessEnd {
        state,
        error,
        fuel_used: end.get_fuel_used(),
    })
}

/// A connection to one host's executor.
pub struct RemoteExecutor {
    connection: Connection<executor::Client>,
}

impl RemoteExecutor {
    /// The executor behind a connection already made to its protocol.
    pub fn from_connection(connection: Connection<executor::Client>) -> Self {
        RemoteExecutor { connection }
    }

    /// Dials `peer`'s executor protocol.
    pub async fn connect<T: Transport>(
        transport: &T,
        peer: PeerId,
        config: RpcConfig,
    ) -> Result<Self, RpcError> {
        let connection = rpc::connect(transport, peer, &super::executor_protocol(), config).await?;
        Ok(RemoteExecutor { connection })
    }

    /// Starts a process; returns its id on the host.
    pub async fn spawn(&self, spec: &ProcessSpec) -> Result<ProcessId, RpcError> {
        let mut request = self.connection.client().spawn_request();
        {
            let mut out = request.get().init_spec();
            match &spec.module {
                ModuleRef::Bytes(bytes) => out.reborrow().init_module().set_bytes(bytes),
                ModuleRef::Hash(hash) => out.reborrow().init_module().set_hash(&hash.0),
            }
            out.set_export(spec.export.as_str());
            let len = u32::try_from(spec.args.len()).unwrap_or(u32::MAX);
            let mut args = out.reborrow().init_args(len);
            for (i, arg) in spec.args.iter().enumerate().take(len as usize) {
                args.set(i as u32, *arg);
            }
            let mut limits = out.init_limits();
            limits.set_fuel_max(spec.limits.fuel_max);
            limits.set_memory_pages_max(spec.limits.memory_pages_max);
            let wall = spec.limits.deadline.map_or(0, |d| d.as_millis().max(1));
            limits.set_wall_time_ms(u64::try_from(wall).unwrap_or(u64::MAX));
        }
        let call = async {
            let reply = request.send().promise.await?;
            Ok(ProcessId(reply.get()?.get_id()))
        };
        self.connection.call("spawn", call).await
    }

    /// Every process the host holds.
    pub async fn list(&self) -> Result<Vec<ProcessInfo>, RpcError> {
        let request = self.connection.client().list_request();
        let call = async {
            let reply = request.send().promise.await?;
            let mut rows = Vec::new();
            for row in reply.get()?.get_processes()? {
                let hash: [u8; 32] = row.get_module_hash()?.try_into().map_err(|_| {
                    capnp::Error::failed("a module hash of other than 32 bytes".into())
                })?;
                let kind = row.get_error_kind()?.to_str()?;
                rows.push(ProcessInfo {
                    id: ProcessId(row.get_id()),
                    module: ModuleHash(hash),
                    state: read_state(row.get_state(), row.get_exit_code(), kind),
                    started_ms: row.get_started_ms(),
                });
            }
            Ok(rows)
        };
        self.connection.call("list", call).await
    }

    /// Waits until process `id` ends (within the connection's call timeout).
    pub async fn wait(&self, id: ProcessId) -> Result<ProcessEnd, RpcError> {
        let mut request = self.connection.client().wait_request();
        request.get().set_id(id.0);
        let call = async {
            let reply = request.send().promise.await?;
            read_end(reply.get()?.get_end()?)
        };
        self.connection.call("wait", call).await
    }

    /// Stops process `id` and returns how it ended.
    pub async fn kill(&self, id: ProcessId) -> Result<ProcessEnd, RpcError> {
        let mut request = self.connection.client().kill_request();
        request.get().set_id(id.0);
        let call = async {
            let reply = request.send().promise.await?;
            read_end(reply.get()?.get_end()?)
        };
        self.connection.call("kill", call).await
    }

    /// Up to `max_bytes` of `which` from `offset` on.
    pub async fn read(
        &self,
        id: ProcessId,
        which: OutputStream,
        offset: u64,
        max_bytes: u32,
    ) -> Result<Chunk, RpcError> {
        let mut request = self.connection.client().read_request();
        {
            let mut params = request.get();
            params.set_id(id.0);
            params.set_stream(match which {
                OutputStream::Stdout => StreamW::Stdout,
                OutputStream::Stderr => StreamW::Stderr,
            });
            params.set_offset(offset);
            params.set_max_bytes(max_bytes);
        }
        let call = async {
            let reply = request.send().promise.await?;
            let chunk = reply.get()?.get_chunk()?;
            Ok(Chunk {
                data: chunk.get_data()?.to_vec(),
                next_offset: chunk.get_next_offset(),
                skipped: chunk.get_skipped(),
                eof: chunk.get_eof(),
            })
        };
        self.connection.call("read", call).await
    }
}
