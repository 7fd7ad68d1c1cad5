//! The caller's side: a remote worker's capability with typed, bounded calls.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use super::{wire, worker_protocol};
use crate::exec::{RunReport, RunSpec};
use crate::rpc::{call_noting_loss, connect, Connection, RpcConfig, RpcError};
use crate::schema::worker_capnp::worker;
use crate::transport::{PeerId, Transport};

/// A remote worker. Every call is bounded by the call timeout; after a lost
/// connection ([`RemoteWorker::is_lost`]), get a new capability.
pub struct RemoteWorker {
    client: worker::Client,
    peer: Option<PeerId>,
    call_timeout: Duration,
    lost: Rc<Cell<bool>>,
    /// Keeps our own connection open when we dialed the worker ourselves.
    connection: Option<Connection<worker::Client>>,
}

impl RemoteWorker {
    /// Dials `peer`'s worker capability.
    pub async fn connect<T: Transport>(
        transport: &T,
        peer: PeerId,
        config: RpcConfig,
    ) -> Result<Self, RpcError> {
        let connection: Connection<worker::Client> =
            connect(transport, peer, &worker_protocol(), config).await?;
        Ok(RemoteWorker {
            client: connection.client().clone(),
            peer: Some(peer),
            call_timeout: config.call_timeout,
            lost: Rc::new(Cell::new(false)),
            connection: Some(connection),
        })
    }

    /// Wraps a capability received some other way (e.g. through a channel).
    pub fn from_capability(
        client: worker::Client,
        peer: Option<PeerId>,
        call_timeout: Duration,
    ) -> Self {
        RemoteWorker {
            client,
            peer,
            call_timeout,
            lost: Rc::new(Cell::new(false)),
            connection: None,
        }
    }

    /// The worker's peer id, when known.
    pub fn peer(&self) -> Option<PeerId> {
        self.peer
    }

    /// Whether the connection failed and the capability should be replaced.
    pub fn is_lost(&self) -> bool {
        self.lost.get() || self.connection.as_ref().is_some_and(|c| c.is_lost())
    }

    async fn call<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<T, capnp::Error>>,
    ) -> Result<T, RpcError> {
        call_noting_loss(&self.lost, what, self.call_timeout, call).await
    }

    /// The original system's call: `run(input, difficulty)` as decimal text.
    pub async fn assign(
        &self,
        wasm: &[u8],
        input: i64,
        difficulty: i64,
    ) -> Result<String, RpcError> {
        let mut request = self.client.assign_request();
        {
            let mut params = request.get();
            params.set_wasm(wasm);
            params.set_input(input);
            params.set_difficulty(difficulty);
        }
        let response = self.call("assign", request.send().promise).await?;
        let text = response
            .get()
            .and_then(|r| r.get_result())
            .and_then(|t| Ok(t.to_str()?.to_string()))
            .map_err(|e| RpcError::BadAnswer(e.to_string()))?;
        Ok(text)
    }

    /// Runs a task and returns the worker's report.
    pub async fn run(&self, spec: &RunSpec) -> Result<RunReport, RpcError> {
        let mut request = self.client.run_request();
        wire::write_spec(spec, request.get().init_spec());
        let response = self.call("run", request.send().promise).await?;
        response
            .get()
            .and_then(|r| r.get_report())
            .and_then(wire::read_report)
            .map_err(|e| RpcError::BadAnswer(e.to_string()))
    }

    /// A no-op round trip.
    pub async fn ping(&self) -> Result<(), RpcError> {
        let request = self.client.ping_request();
        self.call("ping", request.send().promise).await?;
        Ok(())
    }
}
