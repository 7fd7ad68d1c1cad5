//! What the benches share: a node's runtime, and a capability served on one
//! loopback libp2p node and reached from a second one.

use ww::rpc::{self, ServeHandle};
use ww::transport::{
    Address, Identity, Libp2pConfig, Libp2pTransport, PeerId, Protocol, SwarmKey, Transport,
};

/// Keeps a served capability's nodes alive.
pub struct LoopbackPair {
    /// The node a client dials from.
    pub caller: Libp2pTransport,
    /// The serving node's id.
    pub server_peer: PeerId,
    _server: Libp2pTransport,
    _serving: ServeHandle,
}

/// Serves `capability` on `protocol` on a new node listening on loopback, and
/// returns a second node that knows its address. Call inside a `LocalSet`.
// Each bench compiles this module on its own and uses only some of it.
#[allow(dead_code)]
pub async fn serve_on_loopback(
    protocol: &Protocol,
    capability: capnp::capability::Client,
) -> LoopbackPair {
    serve_on_loopback_keyed(protocol, capability, None).await
}

/// Like [`serve_on_loopback`], both nodes in the private network of `key`.
#[allow(dead_code)]
pub async fn serve_on_loopback_keyed(
    protocol: &Protocol,
    capability: capnp::capability::Client,
    key: Option<SwarmKey>,
) -> LoopbackPair {
    let config =
        |key: Option<SwarmKey>| Libp2pConfig::new(Identity::generate()).with_swarm_key(key);
    let server = Libp2pTransport::new(config(key.clone())).unwrap();
    let serving = rpc::serve(&server, protocol, capability).unwrap();
    let bound = server
        .listen(Address::new("/ip4/127.0.0.1/tcp/0"))
        .await
        .unwrap();
    let caller = Libp2pTransport::new(config(key)).unwrap();
    caller
        .add_peer_address(server.local_peer_id(), bound)
        .unwrap();
    LoopbackPair {
        caller,
        server_peer: server.local_peer_id(),
        _server: server,
        _serving: serving,
    }
}

/// A node's thread shape: a current-thread runtime and a `LocalSet` to run
/// capnp-rpc (which is `!Send`) on.
pub fn node_runtime() -> (tokio::runtime::Runtime, tokio::task::LocalSet) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    (runtime, tokio::task::LocalSet::new())
}
