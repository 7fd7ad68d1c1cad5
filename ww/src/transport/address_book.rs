//! Where known peers listen, as a libp2p behaviour that answers the swarm's
//! "which addresses for this peer?" when a stream needs a new connection.
//!
//! Unlike libp2p's own caches, a failed dial does not erase an address: a node
//! that restarts on the same address must stay reachable.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::task::{Context, Poll};

use libp2p::core::transport::PortUse;
use libp2p::core::Endpoint;
use libp2p::swarm::{
    dummy, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler, THandlerInEvent,
    THandlerOutEvent, ToSwarm,
};
use libp2p::{Multiaddr, PeerId};

/// Addresses remembered per peer; the oldest is forgotten first.
pub const ADDRESSES_PER_PEER_MAX: usize = 16;
/// Peers remembered; beyond this, the peer with the smallest id is forgotten.
pub const PEERS_MAX: usize = 4096;

/// Peer addresses added with `Swarm::add_peer_address`.
#[derive(Default)]
pub struct AddressBook {
    peers: BTreeMap<PeerId, VecDeque<Multiaddr>>,
}

impl AddressBook {
    fn remember(&mut self, peer: PeerId, address: &Multiaddr) {
        if !self.peers.contains_key(&peer) && self.peers.len() >= PEERS_MAX {
            self.peers.pop_first();
        }
        let known = self.peers.entry(peer).or_default();
        if known.contains(address) {
            return;
        }
        if known.len() >= ADDRESSES_PER_PEER_MAX {
            known.pop_front();
        }
        known.push_back(address.clone());
    }
}

impl NetworkBehaviour for AddressBook {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        maybe_peer: Option<PeerId>,
        _: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        Ok(maybe_peer
            .and_then(|peer| self.peers.get(&peer))
            .map(|known| known.iter().cloned().collect())
            .unwrap_or_default())
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::NewExternalAddrOfPeer(new) = event {
            self.remember(new.peer_id, new.addr);
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_bounded_per_peer_and_deduplicated() {
        let mut book = AddressBook::default();
        let peer = PeerId::random();
        for port in 0..(ADDRESSES_PER_PEER_MAX as u16 + 4) {
            let address: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
            book.remember(peer, &address);
            book.remember(peer, &address);
        }
        let known = &book.peers[&peer];
        assert_eq!(known.len(), ADDRESSES_PER_PEER_MAX);
        assert_eq!(known[0].to_string(), "/ip4/127.0.0.1/tcp/4");
    }
}
