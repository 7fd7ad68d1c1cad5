//! Calling a host's `Executor` capability.

use super::executor::ProcessSpec;
use super::output::Chunk;
use super::table::ProcessId;
use crate::exec::{ModuleRef, OutputStream};
use crate::rpc::{self, Connection, RpcConfig, RpcError};
use crate::schema::executor_capnp::{executor, process_end};
use crate::schema::executor_capnp::{ProcessState as ProcessStateW, Stream as StreamW};
use crate::transport::{PeerId, Transport};

/// A process's line as a caller sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteProcess {
    /// Its number on the host.
    pub id: ProcessId,
    /// SHA-256 of its module, as hex.
    pub module: String,
    /// running, exited, killed or failed.
    pub state: &'static str,
    /// When it was spawned, in the host's Unix milliseconds.
    pub started_ms: u64,
    /// Its exit code once ended; 0 while running.
    pub exit_code: i32,
}

/// How a process ended, as a caller sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteEnd {
    /// exited, killed or failed.
    pub state: &'static str,
    /// The exit code (137 killed, 134 failed).
    pub exit_code: i32,
    /// The sandbox error's kind, empty for an exit.
    pub error_kind: String,
    /// The sandbox error's message.
    pub error_message: String,
    /// Fuel burnt.
    pub fuel_used: u64,
}

fn state_name(state: ProcessStateW) -> &'static str {
    match state {
        ProcessStateW::Running => "running",
        ProcessStateW::Exited => "exited",
        ProcessStateW::Killed => "killed",
        ProcessStateW::Failed => "failed",
    }
}

fn read_end(end: process_end::Reader<'_>) -> Result<RemoteEnd, capnp::Error> {
    Ok(RemoteEnd {
        // An unknown state from a newer host reads as failed.
        state: end.get_state().map_or("failed", state_name),
        exit_code: end.get_exit_code(),
        error_kind: end.get_error_kind()?.to_string()?,
        error_message: end.get_error_message()?.to_string()?,
        fuel_used: end.get_fuel_used(),
    })
}

/// A connection to one host's executor.
pub struct RemoteExecutor {
    connection: Connection<executor::Client>,
}

impl RemoteExecutor {
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
    pub async fn list(&self) -> Result<Vec<RemoteProcess>, RpcError> {
        let request = self.connection.client().list_request();
        let call = async {
            let reply = request.send().promise.await?;
            let mut rows = Vec::new();
            for row in reply.get()?.get_processes()? {
                let hash: String = row
                    .get_module_hash()?
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                rows.push(RemoteProcess {
                    id: ProcessId(row.get_id()),
                    module: hash,
                    state: row.get_state().map_or("failed", state_name),
                    started_ms: row.get_started_ms(),
                    exit_code: row.get_exit_code(),
                });
            }
            Ok(rows)
        };
        self.connection.call("list", call).await
    }

    /// Waits until process `id` ends (within the connection's call timeout).
    pub async fn wait(&self, id: ProcessId) -> Result<RemoteEnd, RpcError> {
        let mut request = self.connection.client().wait_request();
        request.get().set_id(id.0);
        let call = async {
            let reply = request.send().promise.await?;
            read_end(reply.get()?.get_end()?)
        };
        self.connection.call("wait", call).await
    }

    /// Stops process `id` and returns how it ended.
    pub async fn kill(&self, id: ProcessId) -> Result<RemoteEnd, RpcError> {
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

impl RemoteEnd {
    /// True when the process exited on its own with code 0.
    pub fn succeeded(&self) -> bool {
        self.state == "exited" && self.exit_code == 0
    }
}
