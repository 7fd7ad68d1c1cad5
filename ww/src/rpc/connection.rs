//! Client connections to a peer's bootstrap capability.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use capnp_rpc::{rpc_twoparty_capnp::Side, RpcSystem};

use super::{call_noting_loss, vat_network, RpcConfig, RpcError};
use crate::transport::{with_timeout, PeerId, Protocol, Transport};

/// A live connection to a peer's bootstrap capability `C`. Dropping it closes the
/// connection; calls on clients obtained from it then fail as disconnected.
pub struct Connection<C> {
    client: C,
    peer: PeerId,
    call_timeout: Duration,
    lost: Rc<Cell<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl<C> Drop for Connection<C> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Dials `peer` for `protocol` and bootstraps its capability, all within
/// `config.connect_timeout`. Must be called inside a `LocalSet`.
pub async fn connect<T, C>(
    transport: &T,
    peer: PeerId,
    protocol: &Protocol,
    config: RpcConfig,
) -> Result<Connection<C>, RpcError>
where
    T: Transport,
    C: capnp::capability::FromClientHook + Clone,
{
    let what = format!("connect to {peer} for {protocol}");
    let stream = with_timeout(
        &what,
        config.connect_timeout,
        transport.dial(peer, protocol),
    )
    .await?;
    let network = vat_network(stream, Side::Client);
    let mut system = RpcSystem::new(Box::new(network), None);
    let client: C = system.bootstrap(Side::Server);
    let lost = Rc::new(Cell::new(false));
    let lost_flag = lost.clone();
    let task = tokio::task::spawn_local(async move {
        if let Err(e) = system.await {
            tracing::debug!(%peer, error = %e, "rpc connection ended");
        }
        lost_flag.set(true);
    });
    Ok(Connection {
        client,
        peer,
        call_timeout: config.call_timeout,
        lost,
        task,
    })
}

impl<C: Clone> Connection<C> {
    /// The peer's capability.
    pub fn client(&self) -> &C {
        &self.client
    }

    /// The peer at the other end.
    pub fn peer(&self) -> PeerId {
        self.peer
    }

    /// Whether the connection has failed: it should be dropped and dialed again.
    pub fn is_lost(&self) -> bool {
        self.lost.get()
    }

    /// Awaits `call` within the connection's call timeout; a timeout marks the
    /// connection lost, since its stream may be stuck behind a partition.
    pub async fn call<T>(
        &self,
        what: &str,
        call: impl std::future::Future<Output = Result<T, capnp::Error>>,
    ) -> Result<T, RpcError> {
        call_noting_loss(&self.lost, what, self.call_timeout, call).await
    }
}
