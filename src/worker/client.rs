//! The caller's side: a remote worker's capability with typed, bounded calls.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use super::{wire, worker_protocol};
use crate::schema::worker_capnp::worker;
use ww::exec::{RunReport, RunSpec};
use ww::rpc::{call_noting_loss, connect, Connection, RpcConfig, RpcError};
use ww::transport::{PeerId, Transport};

/// A remote worker. Every call is bounded by the call timeout; after a lost
/// connection ([`RemoteWorker::is_lost`]), get a new capability.
pub struct RemoteWorker {
    client: worker::Client,
    peer: Option<PeerId>,
    call_timeout: Duration,
    lost: Rc<Cell<bool>>,
    /// The worker answered `runMany` with `unimplemented` (an older build):
    /// later batches go as `run` calls without asking again.
    no_run_many: Cell<bool>,
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
            no_run_many: Cell::new(false),
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
            no_run_many: Cell::new(false),
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

    /// Runs several specs in one call (`runMany`); the reports in the order
    /// of `specs`. `Ok(None)`: the worker predates `runMany` (it answered
    /// `unimplemented`), so the caller should send `run` calls instead.
    pub async fn run_many(&self, specs: &[RunSpec]) -> Result<Option<Vec<RunReport>>, RpcError> {
        let count = u32::try_from(specs.len())
            .ok()
            .filter(|n| (1..=wire::RUN_MANY_MAX).contains(n))
            .ok_or_else(|| {
                RpcError::BadAnswer(format!(
                    "runMany takes 1 to {} specs, not {}",
                    wire::RUN_MANY_MAX,
                    specs.len()
                ))
            })?;
        if self.no_run_many.get() {
            return Ok(None);
        }
        let mut request = self.client.run_many_request();
        {
            let mut list = request.get().init_specs(count);
            for (index, spec) in specs.iter().enumerate() {
                wire::write_spec(spec, list.reborrow().get(index as u32));
            }
        }
        let promise = request.send().promise;
        let call = async {
            match promise.await {
                Ok(response) => Ok(Some(response)),
                Err(e) if e.kind == capnp::ErrorKind::Unimplemented => Ok(None),
                Err(e) => Err(e),
            }
        };
        let Some(response) = self.call("runMany", call).await? else {
            self.no_run_many.set(true);
            return Ok(None);
        };
        let reports = response
            .get()
            .and_then(|r| r.get_reports())
            .map_err(|e| RpcError::BadAnswer(e.to_string()))?;
        if reports.len() != count {
            return Err(RpcError::BadAnswer(format!(
                "runMany answered {} reports for {count} specs",
                reports.len()
            )));
        }
        reports
            .iter()
            .map(wire::read_report)
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
            .map_err(|e| RpcError::BadAnswer(e.to_string()))
    }

    /// A no-op round trip.
    pub async fn ping(&self) -> Result<(), RpcError> {
        let request = self.client.ping_request();
        self.call("ping", request.send().promise).await?;
        Ok(())
    }
}
