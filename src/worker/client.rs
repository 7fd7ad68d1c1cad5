//! The caller's side: a connection to a remote worker with typed calls.

use super::{wire, worker_protocol};
use crate::exec::{RunReport, RunSpec};
use crate::rpc::{connect, Connection, RpcConfig, RpcError};
use crate::schema::worker_capnp::worker;
use crate::transport::{PeerId, Transport};

/// A connected remote worker. Every call is bounded by the connection's call
/// timeout; after a lost connection, connect again.
pub struct RemoteWorker {
    connection: Connection<worker::Client>,
}

impl RemoteWorker {
    /// Dials `peer`'s worker capability.
    pub async fn connect<T: Transport>(
        transport: &T,
        peer: PeerId,
        config: RpcConfig,
    ) -> Result<Self, RpcError> {
        let connection = connect(transport, peer, &worker_protocol(), config).await?;
        Ok(RemoteWorker { connection })
    }

    /// Wraps an existing capability connection.
    pub fn from_connection(connection: Connection<worker::Client>) -> Self {
        RemoteWorker { connection }
    }

    /// The worker's peer id.
    pub fn peer(&self) -> PeerId {
        self.connection.peer()
    }

    /// Whether the connection failed and should be replaced.
    pub fn is_lost(&self) -> bool {
        self.connection.is_lost()
    }

    /// The original system's call: `run(input, difficulty)` as decimal text.
    pub async fn assign(
        &self,
        wasm: &[u8],
        input: i64,
        difficulty: i64,
    ) -> Result<String, RpcError> {
        let mut request = self.connection.client().assign_request();
        {
            let mut params = request.get();
            params.set_wasm(wasm);
            params.set_input(input);
            params.set_difficulty(difficulty);
        }
        let response = self
            .connection
            .call("assign", request.send().promise)
            .await?;
        let text = response
            .get()
            .and_then(|r| r.get_result())
            .and_then(|t| Ok(t.to_str()?.to_string()))
            .map_err(|e| RpcError::BadAnswer(e.to_string()))?;
        Ok(text)
    }

    /// Runs a task and returns the worker's report.
    pub async fn run(&self, spec: &RunSpec) -> Result<RunReport, RpcError> {
        let mut request = self.connection.client().run_request();
        wire::write_spec(spec, request.get().init_spec());
        let response = self.connection.call("run", request.send().promise).await?;
        response
            .get()
            .and_then(|r| r.get_report())
            .and_then(wire::read_report)
            .map_err(|e| RpcError::BadAnswer(e.to_string()))
    }

    /// A no-op round trip.
    pub async fn ping(&self) -> Result<(), RpcError> {
        let request = self.connection.client().ping_request();
        self.connection.call("ping", request.send().promise).await?;
        Ok(())
    }
}
