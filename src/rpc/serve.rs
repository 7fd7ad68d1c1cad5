//! Serving a bootstrap capability to every peer that opens a protocol stream.

use capnp_rpc::{rpc_twoparty_capnp::Side, twoparty, RpcSystem};
use futures::{AsyncReadExt, StreamExt};

use super::{reader_options, RpcError};
use crate::transport::{PeerId, Protocol, Transport, TransportError};

/// A running server; dropping it stops accepting and closes its connections.
pub struct ServeHandle {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ServeHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ServeHandle {
    /// Stops serving and waits until the protocol is free to be served again.
    pub async fn stop(mut self) {
        self.task.abort();
        let _ = (&mut self.task).await;
    }
}

/// Serves `bootstrap` to every peer that dials this node for `protocol`.
/// Must be called inside a `LocalSet`.
pub fn serve<T: Transport>(
    transport: &T,
    protocol: &Protocol,
    bootstrap: capnp::capability::Client,
) -> Result<ServeHandle, RpcError> {
    serve_per_peer(transport, protocol, move |_| bootstrap.clone())
}

/// Like [`serve`], but each connection gets the capability `bootstrap_for` makes
/// for the dialer's authenticated peer id (e.g. a channel facet that records who
/// sent each value).
pub fn serve_per_peer<T: Transport>(
    transport: &T,
    protocol: &Protocol,
    bootstrap_for: impl Fn(PeerId) -> capnp::capability::Client + 'static,
) -> Result<ServeHandle, RpcError> {
    let mut incoming = transport.accept(protocol)?;
    let protocol = protocol.clone();
    let task = tokio::task::spawn_local(async move {
        // Connection tasks live in the set, so aborting this task closes them all.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                // Fixed branch order: tokio picks randomly otherwise, unseeded by turmoil.
                biased;
                next = incoming.next() => match next {
                    Some((peer, stream)) => {
                        tracing::debug!(%peer, %protocol, "rpc connection accepted");
                        let (reader, writer) = stream.split();
                        let network = twoparty::VatNetwork::new(
                            reader,
                            writer,
                            Side::Server,
                            reader_options(),
                        );
                        let system = RpcSystem::new(Box::new(network), Some(bootstrap_for(peer)));
                        connections.spawn_local(async move {
                            if let Err(e) = system.await {
                                tracing::debug!(%peer, error = %e, "rpc connection ended");
                            }
                        });
                    }
                    None => return,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    });
    Ok(ServeHandle { task })
}

/// The protocol a capability exported under `name` is served on:
/// `/ww-sched/0.1/cap/<name>` (the original served its channel as `/lb`).
pub fn export_protocol(name: &str) -> Result<Protocol, TransportError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if !valid {
        return Err(TransportError::InvalidProtocol(format!(
            "capability name {name:?}: 1 to 64 of [A-Za-z0-9._-]"
        )));
    }
    Protocol::new(format!("/ww-sched/0.1/cap/{name}"))
}
