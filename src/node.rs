//! Composing a node over a [`Transport`]: today a worker node (transport, sandbox,
//! the `Worker` capability served on its protocol).

use std::sync::Arc;

use crate::exec::Sandbox;
use crate::rpc::{self, RpcError, ServeHandle};
use crate::transport::{Address, PeerId, Transport, TransportError};
use crate::worker::{worker_protocol, WorkerConfig, WorkerServer};

/// Why a node could not start; nothing is left listening.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// Listening or accepting failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// Serving the capability failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
}

/// A running worker node. Dropping it stops serving; the transport stops when its
/// last clone is dropped.
pub struct WorkerNode<T: Transport> {
    transport: T,
    _serving: ServeHandle,
}

impl<T: Transport> WorkerNode<T> {
    /// Serves a worker over `sandbox` on `transport`, then listens on `listen`.
    /// Must be called inside a `LocalSet`.
    pub async fn start(
        transport: T,
        sandbox: Arc<Sandbox>,
        config: WorkerConfig,
        listen: &[Address],
    ) -> Result<Self, NodeError> {
        let client = WorkerServer::new(sandbox, config).into_client();
        let serving = rpc::serve(&transport, &worker_protocol(), client.client)?;
        for address in listen {
            transport.listen(address.clone()).await?;
        }
        Ok(WorkerNode {
            transport,
            _serving: serving,
        })
    }

    /// The node's id.
    pub fn peer_id(&self) -> PeerId {
        self.transport.local_peer_id()
    }

    /// Every listen address with `/p2p/<id>` appended: what a caller dials.
    pub fn dial_addresses(&self) -> Vec<Address> {
        let peer = self.peer_id();
        self.transport
            .listen_addresses()
            .iter()
            .map(|a| a.with_peer(&peer))
            .collect()
    }

    /// The node's transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }
}
