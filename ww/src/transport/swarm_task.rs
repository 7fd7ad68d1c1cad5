//! The libp2p swarm's task: the network behaviour it runs and the commands a
//! [`Libp2pTransport`](super::p2p::Libp2pTransport) handle sends it; it answers
//! them, follows the swarm's events and keeps the listen-address list current.

use std::sync::{Arc, Mutex};

use futures::StreamExt;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{connection_limits, gossipsub, identify, memory_connection_limits, Multiaddr, Swarm};
use tokio::sync::{mpsc, oneshot};

use super::address_book::AddressBook;
use super::topic::{TopicMessage, TopicSubscribers};
use super::{lock, PeerId, TopicReceiver};

/// What the swarm runs: connection limits, the address book, streams, identify and gossipsub.
#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    pub(super) limits: connection_limits::Behaviour,
    pub(super) memory: memory_connection_limits::Behaviour,
    pub(super) addresses: AddressBook,
    pub(super) stream: libp2p_stream::Behaviour,
    pub(super) identify: identify::Behaviour,
    pub(super) gossipsub: gossipsub::Behaviour,
}

/// What a [`Libp2pTransport`](super::p2p::Libp2pTransport) handle asks of the swarm task.
pub(super) enum Command {
    Listen {
        address: Multiaddr,
        reply: oneshot::Sender<Result<Multiaddr, String>>,
    },
    AddAddress {
        peer: libp2p::PeerId,
        address: Multiaddr,
    },
    Connect {
        peer: libp2p::PeerId,
        reply: oneshot::Sender<Result<(), String>>,
    },
    Subscribe {
        topic: String,
        reply: oneshot::Sender<TopicReceiver>,
    },
    Publish {
        topic: String,
        payload: Vec<u8>,
        reply: oneshot::Sender<Result<(), String>>,
    },
    /// Answered once every earlier command is applied, so a dial sees the
    /// addresses added before it.
    Barrier(oneshot::Sender<()>),
}

/// Runs the swarm: answers commands and keeps the listen-address list current.
pub(super) async fn drive_swarm(
    swarm: Swarm<Behaviour>,
    mut commands: mpsc::Receiver<Command>,
    listen_addresses: Arc<Mutex<Vec<Multiaddr>>>,
    topics: Arc<Mutex<TopicSubscribers>>,
) {
    let mut driver = SwarmDriver {
        swarm,
        listen_addresses,
        topics,
        pending_listens: Vec::new(),
    };
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                None => return,
                Some(command) => driver.command(command),
            },
            event = driver.swarm.select_next_some() => driver.event(event),
        }
    }
}

/// The swarm and what its task keeps beside it.
struct SwarmDriver {
    swarm: Swarm<Behaviour>,
    listen_addresses: Arc<Mutex<Vec<Multiaddr>>>,
    topics: Arc<Mutex<TopicSubscribers>>,
    /// `Listen` commands waiting for their listener's first address (or its failure).
    pending_listens: Vec<(
        libp2p::core::transport::ListenerId,
        oneshot::Sender<Result<Multiaddr, String>>,
    )>,
}

impl SwarmDriver {
    /// Carries out one command of the transport's handle.
    fn command(&mut self, command: Command) {
        let swarm = &mut self.swarm;
        match command {
            Command::Listen { address, reply } => match swarm.listen_on(address) {
                Ok(id) => self.pending_listens.push((id, reply)),
                Err(e) => {
                    let _ = reply.send(Err(e.to_string()));
                }
            },
            Command::AddAddress { peer, address } => {
                swarm.add_peer_address(peer, address);
            }
            Command::Connect { peer, reply } => {
                let options = DialOpts::peer_id(peer)
                    .condition(PeerCondition::DisconnectedAndNotDialing)
                    .build();
                let outcome = match swarm.dial(options) {
                    Ok(()) | Err(libp2p::swarm::DialError::DialPeerConditionFalse(_)) => Ok(()),
                    Err(e) => Err(e.to_string()),
                };
                let _ = reply.send(outcome);
            }
            Command::Subscribe { topic, reply } => {
                let (receiver, first) = lock(&self.topics).add(&topic);
                if first {
                    let topic = gossipsub::IdentTopic::new(topic);
                    if let Err(e) = swarm.behaviour_mut().gossipsub.subscribe(&topic) {
                        tracing::warn!(%topic, error = %e, "gossipsub subscribe failed");
                    }
                }
                let _ = reply.send(receiver);
            }
            Command::Publish {
                topic,
                payload,
                reply,
            } => {
                let topic = gossipsub::IdentTopic::new(topic);
                let outcome = match swarm.behaviour_mut().gossipsub.publish(topic, payload) {
                    // Best effort: with nobody to hear it, a message is simply not heard.
                    Ok(_) | Err(gossipsub::PublishError::NoPeersSubscribedToTopic) => Ok(()),
                    Err(e) => Err(e.to_string()),
                };
                let _ = reply.send(outcome);
            }
            Command::Barrier(reply) => {
                let _ = reply.send(());
            }
        }
    }

    /// Answers the `Listen` command waiting for `listener`, if one is.
    fn answer_listen(
        &mut self,
        listener: libp2p::core::transport::ListenerId,
        answer: Result<Multiaddr, String>,
    ) {
        if let Some(at) = self
            .pending_listens
            .iter()
            .position(|(id, _)| *id == listener)
        {
            let (_, reply) = self.pending_listens.swap_remove(at);
            let _ = reply.send(answer);
        }
    }

    /// Follows one event of the swarm.
    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                tracing::debug!(%address, "listening");
                lock(&self.listen_addresses).push(address.clone());
                self.answer_listen(listener_id, Ok(address));
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                lock(&self.listen_addresses).retain(|a| a != &address);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                let detail = match reason {
                    Ok(()) => "listener closed".to_string(),
                    Err(e) => e.to_string(),
                };
                self.answer_listen(listener_id, Err(detail));
            }
            SwarmEvent::ListenerError { listener_id, error } => {
                self.answer_listen(listener_id, Err(error.to_string()));
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                // Remember where a peer says it listens, so later dials can reach it.
                for address in info.listen_addrs {
                    self.swarm.add_peer_address(peer_id, address);
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                message,
                ..
            })) => {
                // Strict validation means unsigned messages never get here.
                if let Some(origin) = message.source {
                    let delivered = TopicMessage {
                        topic: message.topic.into_string(),
                        origin: PeerId(origin),
                        payload: message.data,
                    };
                    lock(&self.topics).deliver(&delivered);
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                tracing::debug!(peer = %peer_id, address = %endpoint.get_remote_address(), "connected");
            }
            SwarmEvent::ConnectionClosed { peer_id, cause, .. } => {
                tracing::debug!(peer = %peer_id, ?cause, "disconnected");
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, %error, "outgoing connection failed");
            }
            _ => {}
        }
    }
}
