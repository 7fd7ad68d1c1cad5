//! The real-host transport: libp2p with TCP, noise and yamux (QUIC behind the
//! `quic` feature), libp2p-stream for protocol streams, and identify.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::{Boxed, Transport as _};
use libp2p::core::upgrade::Version;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::{
    connection_limits, gossipsub, identify, memory_connection_limits, noise, tcp, yamux, Multiaddr,
    StreamProtocol,
};
use tokio::sync::{mpsc, oneshot};

use super::address_book::AddressBook;
use super::swarm_task::{drive_swarm, Behaviour, Command};
use super::topic::{check_topic, TopicSubscribers, TOPIC_PAYLOAD_MAX};
use super::{
    lock, Address, Identity, PeerId, Protocol, SwarmKey, TopicReceiver, Transport, TransportError,
    UdpDatagram,
};

/// The agent string that identify advertises.
const PROTOCOL_VERSION: &str = "/ww-sched/0.1.0";
/// Commands waiting for the swarm task; senders fail fast beyond this.
const COMMAND_QUEUE_MAX: usize = 256;

/// Settings of a [`Libp2pTransport`].
#[derive(Clone)]
pub struct Libp2pConfig {
    /// The node's key pair.
    pub identity: Identity,
    /// How long opening a stream (including connecting) may take.
    pub dial_timeout: Duration,
    /// How long a connection with no open stream is kept.
    pub idle_connection_timeout: Duration,
    /// The private network's key: with it every connection is encrypted under
    /// the key first (libp2p pnet), so only holders can connect.
    pub swarm_key: Option<SwarmKey>,
    /// Connections the node accepts and opens.
    pub connection_bounds: ConnectionBounds,
}

impl Libp2pConfig {
    /// Defaults that work on a laptop: 10 s dial timeout, 60 s idle connections,
    /// no swarm key, [`ConnectionBounds::default`].
    pub fn new(identity: Identity) -> Self {
        Libp2pConfig {
            identity,
            dial_timeout: Duration::from_secs(10),
            idle_connection_timeout: Duration::from_secs(60),
            swarm_key: None,
            connection_bounds: ConnectionBounds::default(),
        }
    }

    /// The same settings inside the private network of `key`.
    pub fn with_swarm_key(mut self, key: Option<SwarmKey>) -> Self {
        self.swarm_key = key;
        self
    }
}

/// Limits on connections, so a flood of dialers cannot exhaust the node:
/// beyond them new connections are refused and existing ones are kept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConnectionBounds {
    /// Connections established at once, both directions.
    pub established_max: u32,
    /// Connections established with one peer at once.
    pub established_per_peer_max: u32,
    /// Inbound connections still in their handshake.
    pub pending_incoming_max: u32,
    /// Outbound connections still in their handshake.
    pub pending_outgoing_max: u32,
    /// Share of the machine's memory above which the process refuses new
    /// connections (libp2p's memory-connection-limits), 0.0 to 1.0.
    pub memory_fraction_max: f64,
}

impl Default for ConnectionBounds {
    /// 1,024 connections, 4 per peer (a peer needs one; redials may briefly
    /// overlap), 128 pending each way, and 90% of memory.
    fn default() -> Self {
        ConnectionBounds {
            established_max: 1_024,
            established_per_peer_max: 4,
            pending_incoming_max: 128,
            pending_outgoing_max: 128,
            memory_fraction_max: 0.9,
        }
    }
}

/// A libp2p node behind the [`Transport`] trait. Clones share the node; the swarm
/// runs on a tokio task that stops when the last clone is dropped.
#[derive(Clone)]
pub struct Libp2pTransport {
    inner: Arc<Inner>,
}

struct Inner {
    peer_id: PeerId,
    control: libp2p_stream::Control,
    commands: mpsc::Sender<Command>,
    listen_addresses: Arc<Mutex<Vec<Multiaddr>>>,
    topics: Arc<Mutex<TopicSubscribers>>,
    dial_timeout: Duration,
    /// Whether connections must carry the swarm key (TCP with pnet only).
    private: bool,
    driver: tokio::task::JoinHandle<()>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Libp2pTransport {
    /// Builds the node and starts its swarm task; call from inside a tokio runtime.
    pub fn new(config: Libp2pConfig) -> Result<Self, TransportError> {
        let build_error = |e: &dyn std::fmt::Display| TransportError::Listen {
            address: "(swarm)".into(),
            detail: e.to_string(),
        };
        let peer_id = config.identity.peer_id();
        let swarm_key = config.swarm_key.clone();
        let builder =
            libp2p::SwarmBuilder::with_existing_identity(config.identity.0.clone()).with_tokio();
        #[cfg(feature = "quic")]
        let builder = builder.with_quic();
        let builder = builder
            .with_other_transport(|key| tcp_transport(key, swarm_key.as_ref()))
            .map_err(|e| build_error(&e))?;
        let idle = config.idle_connection_timeout;
        let bounds = config.connection_bounds;
        let gossip_config = gossipsub::ConfigBuilder::default()
            .validation_mode(gossipsub::ValidationMode::Strict)
            .max_transmit_size(TOPIC_PAYLOAD_MAX + 1024)
            .build()
            .map_err(|e| build_error(&e))?;
        let swarm = builder
            .with_behaviour(|key| Behaviour {
                limits: connection_limits::Behaviour::new(connection_limits(&bounds)),
                memory: memory_connection_limits::Behaviour::with_max_percentage(
                    bounds.memory_fraction_max,
                ),
                // Strict validation with signed messages authenticates every origin.
                gossipsub: gossipsub::Behaviour::new(
                    gossipsub::MessageAuthenticity::Signed(key.clone()),
                    gossip_config,
                )
                .expect("signed authenticity with a valid config is accepted"),
                addresses: AddressBook::default(),
                stream: libp2p_stream::Behaviour::new(),
                identify: identify::Behaviour::new(identify::Config::new(
                    PROTOCOL_VERSION.to_string(),
                    key.public(),
                )),
            })
            .map_err(|e| build_error(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build();
        let control = swarm.behaviour().stream.new_control();
        let (commands, receiver) = mpsc::channel(COMMAND_QUEUE_MAX);
        let listen_addresses = Arc::new(Mutex::new(Vec::new()));
        let topics = Arc::new(Mutex::new(TopicSubscribers::default()));
        let driver = tokio::spawn(drive_swarm(
            swarm,
            receiver,
            listen_addresses.clone(),
            topics.clone(),
        ));
        Ok(Libp2pTransport {
            inner: Arc::new(Inner {
                peer_id,
                control,
                commands,
                listen_addresses,
                topics,
                dial_timeout: config.dial_timeout,
                private: config.swarm_key.is_some(),
                driver,
            }),
        })
    }
}

impl Libp2pTransport {
    /// Queues a command for the swarm task.
    async fn command(&self, command: Command) -> Result<(), TransportError> {
        self.inner
            .commands
            .send(command)
            .await
            .map_err(|_| TransportError::Shutdown)
    }
}

/// TCP, then (with a swarm key) the pnet layer, then noise and yamux. pnet goes
/// under noise, as in every libp2p: without the key, noise reads noise-encrypted
/// garbage and the connection fails before any protocol runs.
fn tcp_transport(
    key: &libp2p::identity::Keypair,
    swarm_key: Option<&SwarmKey>,
) -> Result<Boxed<(libp2p::PeerId, StreamMuxerBox)>, Box<dyn std::error::Error + Send + Sync>> {
    let noise = noise::Config::new(key)?;
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    let upgraded = match swarm_key {
        Some(swarm_key) => {
            let pnet = PnetConfig::new(PreSharedKey::new(swarm_key.secret()));
            tcp.and_then(move |socket, _| pnet.handshake(socket))
                .upgrade(Version::V1)
                .authenticate(noise)
                .multiplex(yamux::Config::default())
                .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
                .boxed()
        }
        None => tcp
            .upgrade(Version::V1)
            .authenticate(noise)
            .multiplex(yamux::Config::default())
            .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
            .boxed(),
    };
    Ok(upgraded)
}

/// Whether `address` runs over QUIC.
fn is_quic(address: &Multiaddr) -> bool {
    address.iter().any(|p| {
        matches!(
            p,
            libp2p::multiaddr::Protocol::Quic | libp2p::multiaddr::Protocol::QuicV1
        )
    })
}

/// libp2p's connection limits from ours.
fn connection_limits(bounds: &ConnectionBounds) -> connection_limits::ConnectionLimits {
    connection_limits::ConnectionLimits::default()
        .with_max_established(Some(bounds.established_max))
        .with_max_established_per_peer(Some(bounds.established_per_peer_max))
        .with_max_pending_incoming(Some(bounds.pending_incoming_max))
        .with_max_pending_outgoing(Some(bounds.pending_outgoing_max))
}

fn parse_multiaddr(address: &Address) -> Result<Multiaddr, TransportError> {
    address.as_str().parse().map_err(
        |e: libp2p::multiaddr::Error| TransportError::InvalidAddress {
            address: address.to_string(),
            detail: e.to_string(),
        },
    )
}

fn stream_protocol(protocol: &Protocol) -> Result<StreamProtocol, TransportError> {
    StreamProtocol::try_from_owned(protocol.as_str().to_string())
        .map_err(|_| TransportError::InvalidProtocol(protocol.to_string()))
}

impl Transport for Libp2pTransport {
    type Stream = libp2p::Stream;
    type Incoming = Libp2pIncoming;
    type Datagram = UdpDatagram;

    fn local_peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    async fn listen(&self, address: Address) -> Result<Address, TransportError> {
        let multiaddr = parse_multiaddr(&address)?;
        if self.inner.private && is_quic(&multiaddr) {
            // pnet wraps byte streams; QUIC brings its own encryption and would
            // let anyone without the key in.
            return Err(TransportError::Listen {
                address: address.to_string(),
                detail: "a private network runs over TCP only; QUIC cannot carry the swarm key"
                    .into(),
            });
        }
        let (reply, answer) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Listen {
                address: multiaddr,
                reply,
            })
            .await
            .map_err(|_| TransportError::Shutdown)?;
        let bound = answer.await.map_err(|_| TransportError::Shutdown)?;
        bound
            .map(|a| Address::new(a.to_string()))
            .map_err(|detail| TransportError::Listen {
                address: address.to_string(),
                detail,
            })
    }

    fn listen_addresses(&self) -> Vec<Address> {
        lock(&self.inner.listen_addresses)
            .iter()
            .map(|a| Address::new(a.to_string()))
            .collect()
    }

    fn add_peer_address(&self, peer: PeerId, address: Address) -> Result<(), TransportError> {
        let multiaddr = parse_multiaddr(&address)?;
        if self.inner.private && is_quic(&multiaddr) {
            // Unreachable inside a private network; not an error for the caller.
            return Ok(());
        }
        self.inner
            .commands
            .try_send(Command::AddAddress {
                peer: peer.0,
                address: multiaddr,
            })
            .map_err(|_| TransportError::Shutdown)
    }

    async fn dial(
        &self,
        peer: PeerId,
        protocol: &Protocol,
    ) -> Result<Self::Stream, TransportError> {
        let wire_protocol = stream_protocol(protocol)?;
        let mut control = self.inner.control.clone();
        let what = format!("dial {peer} for {protocol}");
        let protocol_name = protocol.to_string();
        let commands = self.inner.commands.clone();
        super::with_timeout(&what, self.inner.dial_timeout, async move {
            let (reply, applied) = oneshot::channel();
            commands
                .send(Command::Barrier(reply))
                .await
                .map_err(|_| TransportError::Shutdown)?;
            applied.await.map_err(|_| TransportError::Shutdown)?;
            control
                .open_stream(peer.0, wire_protocol)
                .await
                .map_err(|e| match e {
                    libp2p_stream::OpenStreamError::UnsupportedProtocol(_) => {
                        TransportError::UnsupportedProtocol {
                            peer: peer.to_string(),
                            protocol: protocol_name,
                        }
                    }
                    other => TransportError::Dial {
                        peer: peer.to_string(),
                        protocol: protocol_name,
                        detail: other.to_string(),
                    },
                })
        })
        .await
    }

    fn accept(&self, protocol: &Protocol) -> Result<Self::Incoming, TransportError> {
        let wire_protocol = stream_protocol(protocol)?;
        let mut control = self.inner.control.clone();
        control
            .accept(wire_protocol)
            .map(Libp2pIncoming)
            .map_err(|_| TransportError::AlreadyAccepting(protocol.to_string()))
    }

    async fn connect(&self, peer: PeerId) -> Result<(), TransportError> {
        let (reply, answer) = oneshot::channel();
        self.command(Command::Connect {
            peer: peer.0,
            reply,
        })
        .await?;
        let outcome = answer.await.map_err(|_| TransportError::Shutdown)?;
        outcome.map_err(|detail| TransportError::Dial {
            peer: peer.to_string(),
            protocol: "(connection)".into(),
            detail,
        })
    }

    async fn subscribe_topic(&self, topic: &str) -> Result<TopicReceiver, TransportError> {
        check_topic(topic, 0)?;
        let (reply, answer) = oneshot::channel();
        self.command(Command::Subscribe {
            topic: topic.to_string(),
            reply,
        })
        .await?;
        answer.await.map_err(|_| TransportError::Shutdown)
    }

    async fn publish_topic(&self, topic: &str, payload: Vec<u8>) -> Result<(), TransportError> {
        check_topic(topic, payload.len())?;
        let (reply, answer) = oneshot::channel();
        self.command(Command::Publish {
            topic: topic.to_string(),
            payload,
            reply,
        })
        .await?;
        let outcome = answer.await.map_err(|_| TransportError::Shutdown)?;
        outcome.map_err(|detail| TransportError::io("publish", std::io::Error::other(detail)))
    }

    fn topic_messages_dropped(&self) -> u64 {
        lock(&self.inner.topics).dropped()
    }

    async fn bind_datagram(&self, address: SocketAddr) -> Result<Self::Datagram, TransportError> {
        UdpDatagram::bind(address).await
    }

    async fn bind_multicast(
        &self,
        group: SocketAddrV4,
        interface: Ipv4Addr,
    ) -> Result<Self::Datagram, TransportError> {
        UdpDatagram::bind_multicast(group, interface)
    }
}

/// Inbound libp2p streams for one protocol.
pub struct Libp2pIncoming(libp2p_stream::IncomingStreams);

impl futures::Stream for Libp2pIncoming {
    type Item = (PeerId, libp2p::Stream);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0
            .poll_next_unpin(cx)
            .map(|next| next.map(|(peer, stream)| (PeerId(peer), stream)))
    }
}
