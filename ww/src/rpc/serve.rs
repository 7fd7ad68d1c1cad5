//! Serving a bootstrap capability to every peer that opens a protocol stream.

use std::collections::BTreeMap;

use capnp_rpc::{rpc_twoparty_capnp::Side, RpcSystem};
use futures::StreamExt;

use super::{vat_network, RpcError};
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

/// Bounds on the connections one server holds, so that dialers (each with a
/// verified peer id, but possibly many ids) cannot exhaust it; beyond them a new
/// stream is closed at once and existing connections are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServeLimits {
    /// Connections open at once, all peers together.
    pub connections_max: usize,
    /// Connections open at once from one peer.
    pub connections_per_peer_max: usize,
}

impl Default for ServeLimits {
    /// 256 connections, 8 per peer (a peer needs one; reconnects may overlap).
    fn default() -> Self {
        ServeLimits {
            connections_max: 256,
            connections_per_peer_max: 8,
        }
    }
}

/// Serves `bootstrap` to every peer that dials this node for `protocol`, within
/// the default [`ServeLimits`]. Must be called inside a `LocalSet`.
pub fn serve<T: Transport>(
    transport: &T,
    protocol: &Protocol,
    bootstrap: capnp::capability::Client,
) -> Result<ServeHandle, RpcError> {
    serve_per_peer(transport, protocol, ServeLimits::default(), move |_| {
        Some(bootstrap.clone())
    })
}

/// Like [`serve`], but each connection gets the capability `bootstrap_for` makes
/// for the dialer's authenticated peer id (e.g. a channel facet that records who
/// sent each value), or is closed at once when it makes none (the peer is not
/// admitted).
pub fn serve_per_peer<T: Transport>(
    transport: &T,
    protocol: &Protocol,
    limits: ServeLimits,
    bootstrap_for: impl Fn(PeerId) -> Option<capnp::capability::Client> + 'static,
) -> Result<ServeHandle, RpcError> {
    let mut incoming = transport.accept(protocol)?;
    let protocol = protocol.clone();
    let task = tokio::task::spawn_local(async move {
        // Connection tasks live in the set, so aborting this task closes them all.
        let mut connections = tokio::task::JoinSet::new();
        // Open connections per peer (ordered: no hash-order effects in simulations).
        let mut open: BTreeMap<PeerId, usize> = BTreeMap::new();
        loop {
            tokio::select! {
                // Fixed branch order: tokio picks randomly otherwise, unseeded by turmoil.
                biased;
                next = incoming.next() => match next {
                    Some((peer, stream)) => {
                        let from_peer = open.get(&peer).copied().unwrap_or(0);
                        if connections.len() >= limits.connections_max
                            || from_peer >= limits.connections_per_peer_max
                        {
                            tracing::debug!(%peer, %protocol, from_peer, total = connections.len(),
                                "rpc connection refused: over the server's limits");
                            continue;
                        }
                        let Some(bootstrap) = bootstrap_for(peer) else {
                            tracing::debug!(%peer, %protocol, "rpc connection refused: peer not admitted");
                            continue;
                        };
                        tracing::debug!(%peer, %protocol, "rpc connection accepted");
                        *open.entry(peer).or_insert(0) += 1;
                        let network = vat_network(stream, Side::Server);
                        let system = RpcSystem::new(Box::new(network), Some(bootstrap));
                        connections.spawn_local(async move {
                            if let Err(e) = system.await {
                                tracing::debug!(%peer, error = %e, "rpc connection ended");
                            }
                            peer
                        });
                    }
                    None => return,
                },
                Some(ended) = connections.join_next(), if !connections.is_empty() => {
                    // A connection task only ends by returning its peer (the set is
                    // never aborted while this loop runs), so the count is exact.
                    if let Ok(peer) = ended {
                        release(&mut open, peer);
                    }
                }
            }
        }
    });
    Ok(ServeHandle { task })
}

/// Counts one connection of `peer` as closed, forgetting peers with none left.
fn release(open: &mut BTreeMap<PeerId, usize>, peer: PeerId) {
    match open.get_mut(&peer) {
        Some(count) if *count > 1 => *count -= 1,
        Some(_) => {
            open.remove(&peer);
        }
        None => debug_assert!(false, "a connection closed that was never counted"),
    }
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
