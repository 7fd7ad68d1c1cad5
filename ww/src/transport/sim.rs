//! The simulated transport: turmoil TCP and UDP, with a small handshake that carries
//! the dialer's id and the protocol name. One TCP connection per stream.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::io::{AsyncRead, AsyncWrite};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::compat::{Compat, TokioAsyncReadCompatExt};

use super::handshake::{read_frame, write_frame, Ack, AckStatus, Hello};
use super::topic::{check_topic, sim_frame, TopicSubscribers, TOPIC_PAYLOAD_MAX};
use super::{
    lock, Address, Datagram, Identity, PeerId, Protocol, SwarmKey, TopicReceiver, Transport,
    TransportError,
};

/// The multicast group that carries every simulated topic; receivers filter by topic.
/// (Public so adversarial simulations can tap and flood it.)
pub const PUBSUB_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 255, 77, 77), 7946);

/// The protocol [`Transport::connect`] dials in mesh mode ([`SimConfig::mesh`]):
/// the handshake alone joins both ends' meshes; the stream then closes.
pub const MESH_PROTOCOL: &str = "/ww-sched/sim/mesh";

/// Peers whose topic messages a mesh-mode node hears.
type MeshPeers = Arc<Mutex<BTreeSet<PeerId>>>;

/// Settings of a [`SimTransport`].
#[derive(Clone)]
pub struct SimConfig {
    /// The node's key pair, usually from [`SimConfig::from_seed`].
    pub identity: Identity,
    /// How long connecting plus the handshake may take.
    pub dial_timeout: Duration,
    /// Inbound streams waiting per protocol; further dialers get `Busy`.
    pub accept_queue_max: usize,
    /// The private network's key: only nodes holding the same one (or, without
    /// one, only open nodes) complete a handshake or hear each other's topics.
    pub swarm_key: Option<SwarmKey>,
    /// Topics as a gossip mesh rather than a broadcast: a node hears only the
    /// topic messages of peers it connected to or that connected to it (a
    /// [`Transport::connect`] dial), so discovery decides who hears whom, as
    /// with gossipsub on real hosts. Off: every node hears every node.
    pub mesh: bool,
}

impl SimConfig {
    /// A node whose identity is derived from the simulation seed and its host name,
    /// so the same seed always gives the same ids.
    pub fn from_seed(seed: u64, host: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"ww-sim node identity");
        hasher.update(seed.to_le_bytes());
        hasher.update(host.as_bytes());
        let secret: [u8; 32] = hasher.finalize().into();
        SimConfig {
            identity: Identity::from_secret(secret),
            dial_timeout: Duration::from_secs(5),
            accept_queue_max: 64,
            swarm_key: None,
            mesh: false,
        }
    }
}

type AcceptQueues = BTreeMap<Protocol, mpsc::Sender<(PeerId, SimStream)>>;

/// A node in a turmoil simulation behind the [`Transport`] trait. Must be used
/// inside a turmoil host.
#[derive(Clone)]
pub struct SimTransport {
    inner: Arc<SimInner>,
}

struct SimInner {
    identity: Identity,
    peer_id: PeerId,
    config: SimConfig,
    listen_addresses: Mutex<Vec<Address>>,
    address_book: Mutex<BTreeMap<PeerId, Vec<Address>>>,
    accept_queues: Arc<Mutex<AcceptQueues>>,
    listeners: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    pubsub_socket: tokio::sync::OnceCell<Arc<SimDatagram>>,
    topics: Arc<Mutex<TopicSubscribers>>,
    /// In mesh mode, the peers this node heard of by a mesh handshake either way.
    /// An entry outlives the peer's crash (a model of a connection that stays
    /// until the peer is heard to be gone); a restarted node starts empty.
    mesh: Option<MeshPeers>,
}

impl Drop for SimInner {
    fn drop(&mut self) {
        for listener in lock(&self.listeners).drain(..) {
            listener.abort();
        }
    }
}

impl SimTransport {
    /// Creates the node; nothing listens until [`Transport::listen`].
    pub fn new(config: SimConfig) -> Self {
        let peer_id = config.identity.peer_id();
        let mesh = config.mesh.then(MeshPeers::default);
        SimTransport {
            inner: Arc::new(SimInner {
                identity: config.identity.clone(),
                peer_id,
                config,
                listen_addresses: Mutex::new(Vec::new()),
                address_book: Mutex::new(BTreeMap::new()),
                accept_queues: Arc::new(Mutex::new(BTreeMap::new())),
                listeners: Mutex::new(Vec::new()),
                pubsub_socket: tokio::sync::OnceCell::new(),
                topics: Arc::new(Mutex::new(TopicSubscribers::default())),
                mesh,
            }),
        }
    }

    /// The node's key pair.
    pub fn identity(&self) -> &Identity {
        &self.inner.identity
    }

    /// The broadcast socket, bound (with its receive loop) on first use.
    async fn pubsub_socket(&self) -> Result<Arc<SimDatagram>, TransportError> {
        let socket = self
            .inner
            .pubsub_socket
            .get_or_try_init(|| async {
                let socket = Arc::new(
                    self.bind_multicast(PUBSUB_GROUP, Ipv4Addr::UNSPECIFIED)
                        .await?,
                );
                let task = tokio::spawn(receive_broadcasts(
                    socket.clone(),
                    self.inner.peer_id,
                    self.inner.topics.clone(),
                    self.inner.config.swarm_key.clone(),
                    self.inner.mesh.clone(),
                ));
                lock(&self.inner.listeners).push(task);
                Ok::<_, TransportError>(socket)
            })
            .await?;
        Ok(socket.clone())
    }
}

/// Delivers broadcast datagrams to this node's topic subscribers (in mesh
/// mode, only those of peers in its mesh).
async fn receive_broadcasts(
    socket: Arc<SimDatagram>,
    local: PeerId,
    topics: Arc<Mutex<TopicSubscribers>>,
    key: Option<SwarmKey>,
    mesh: Option<MeshPeers>,
) {
    let mut buffer = vec![0u8; TOPIC_PAYLOAD_MAX + 512];
    loop {
        let len = match socket.recv_from(&mut buffer).await {
            Ok((len, _)) => len,
            Err(e) => {
                tracing::warn!(error = %e, "sim broadcast receive failed; topics stop");
                return;
            }
        };
        match sim_frame::decode(&buffer[..len], key.as_ref()) {
            Some(message)
                if message.origin != local
                    && mesh
                        .as_ref()
                        .is_none_or(|m| lock(m).contains(&message.origin)) =>
            {
                lock(&topics).deliver(&message)
            }
            Some(_) => {}
            None => tracing::debug!(len, "malformed sim broadcast dropped"),
        }
    }
}

/// A simulated address: `/dns4/<host>/tcp/<port>` or `/ip4/<a.b.c.d>/tcp/<port>`.
struct SimAddress {
    host: String,
    port: u16,
}

fn parse_address(address: &Address) -> Result<SimAddress, TransportError> {
    let invalid = |detail: &str| TransportError::InvalidAddress {
        address: address.to_string(),
        detail: detail.to_string(),
    };
    let parts: Vec<&str> = address.as_str().split('/').collect();
    match parts.as_slice() {
        ["", "dns4" | "ip4", host, "tcp", port] if !host.is_empty() => Ok(SimAddress {
            host: (*host).to_string(),
            port: port.parse().map_err(|_| invalid("bad port"))?,
        }),
        _ => Err(invalid(
            "expected /dns4/<host>/tcp/<port> or /ip4/<ip>/tcp/<port>",
        )),
    }
}

impl Transport for SimTransport {
    type Stream = SimStream;
    type Incoming = SimIncoming;
    type Datagram = SimDatagram;

    fn local_peer_id(&self) -> PeerId {
        self.inner.peer_id
    }

    async fn listen(&self, address: Address) -> Result<Address, TransportError> {
        let parsed = parse_address(&address)?;
        let listen_error = |detail: String| TransportError::Listen {
            address: address.to_string(),
            detail,
        };
        let listener = turmoil::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, parsed.port))
            .await
            .map_err(|e| listen_error(e.to_string()))?;
        let port = listener
            .local_addr()
            .map_err(|e| listen_error(e.to_string()))?
            .port();
        let bound = Address::new(format!("/dns4/{}/tcp/{}", parsed.host, port));
        tracing::debug!(address = %bound, "sim listening");
        let task = tokio::spawn(accept_connections(
            listener,
            self.inner.peer_id,
            self.inner.accept_queues.clone(),
            self.inner.config.dial_timeout,
            self.inner.config.swarm_key.clone(),
            self.inner.mesh.clone(),
        ));
        lock(&self.inner.listeners).push(task);
        lock(&self.inner.listen_addresses).push(bound.clone());
        Ok(bound)
    }

    fn listen_addresses(&self) -> Vec<Address> {
        lock(&self.inner.listen_addresses).clone()
    }

    fn add_peer_address(&self, peer: PeerId, address: Address) -> Result<(), TransportError> {
        parse_address(&address)?;
        let mut book = lock(&self.inner.address_book);
        let known = book.entry(peer).or_default();
        if !known.contains(&address) {
            known.push(address);
        }
        Ok(())
    }

    async fn dial(
        &self,
        peer: PeerId,
        protocol: &Protocol,
    ) -> Result<Self::Stream, TransportError> {
        let addresses = lock(&self.inner.address_book)
            .get(&peer)
            .cloned()
            .unwrap_or_default();
        if addresses.is_empty() {
            return Err(TransportError::NoAddress(peer.to_string()));
        }
        let what = format!("dial {peer} for {protocol}");
        let key = self.inner.config.swarm_key.as_ref();
        let hello = Hello::new(self.inner.peer_id, protocol.clone(), key);
        super::with_timeout(&what, self.inner.config.dial_timeout, async {
            let mut last_error = TransportError::NoAddress(peer.to_string());
            for address in &addresses {
                match dial_address(address, peer, &hello, key).await {
                    Ok(stream) => {
                        tracing::debug!(%peer, %protocol, %address, "sim dial ok");
                        return Ok(stream);
                    }
                    Err(e) => {
                        tracing::debug!(%peer, %protocol, %address, error = %e, "sim dial failed");
                        last_error = e;
                    }
                }
            }
            Err(last_error)
        })
        .await
    }

    fn accept(&self, protocol: &Protocol) -> Result<Self::Incoming, TransportError> {
        let mut queues = lock(&self.inner.accept_queues);
        if queues.get(protocol).is_some_and(|q| !q.is_closed()) {
            return Err(TransportError::AlreadyAccepting(protocol.to_string()));
        }
        let (sender, receiver) = mpsc::channel(self.inner.config.accept_queue_max.max(1));
        queues.insert(protocol.clone(), sender);
        Ok(SimIncoming(receiver))
    }

    async fn connect(&self, peer: PeerId) -> Result<(), TransportError> {
        let Some(mesh) = &self.inner.mesh else {
            // Simulated topics are broadcast, so there is no mesh to join.
            return Ok(());
        };
        // Dialed every time, even for a peer already in the mesh: that peer may
        // have restarted and forgotten this node.
        self.dial(peer, &mesh_protocol()).await?;
        lock(mesh).insert(peer);
        Ok(())
    }

    async fn subscribe_topic(&self, topic: &str) -> Result<TopicReceiver, TransportError> {
        check_topic(topic, 0)?;
        self.pubsub_socket().await?;
        Ok(lock(&self.inner.topics).add(topic).0)
    }

    async fn publish_topic(&self, topic: &str, payload: Vec<u8>) -> Result<(), TransportError> {
        check_topic(topic, payload.len())?;
        let socket = self.pubsub_socket().await?;
        let key = self.inner.config.swarm_key.as_ref();
        let frame = sim_frame::encode(&self.inner.peer_id, topic, &payload, key);
        socket.send_to(&frame, PUBSUB_GROUP.into()).await?;
        Ok(())
    }

    fn topic_messages_dropped(&self) -> u64 {
        lock(&self.inner.topics).dropped()
    }

    async fn bind_datagram(&self, address: SocketAddr) -> Result<Self::Datagram, TransportError> {
        turmoil::net::UdpSocket::bind(address)
            .await
            .map(SimDatagram)
            .map_err(|e| TransportError::io(format!("bind simulated udp {address}"), e))
    }

    async fn bind_multicast(
        &self,
        group: SocketAddrV4,
        _interface: Ipv4Addr,
    ) -> Result<Self::Datagram, TransportError> {
        // turmoil hosts have one interface; it only accepts 0.0.0.0 or 127.0.0.1 here.
        let socket = self
            .bind_datagram((Ipv4Addr::UNSPECIFIED, group.port()).into())
            .await?;
        socket.join_multicast_v4(*group.ip(), Ipv4Addr::UNSPECIFIED)?;
        Ok(socket)
    }
}

fn mesh_protocol() -> Protocol {
    Protocol::new(MESH_PROTOCOL).expect("MESH_PROTOCOL is a valid protocol name")
}

async fn dial_address(
    address: &Address,
    peer: PeerId,
    hello: &Hello,
    key: Option<&SwarmKey>,
) -> Result<SimStream, TransportError> {
    let target = parse_address(address)?;
    let dial_error = |detail: String| TransportError::Dial {
        peer: peer.to_string(),
        protocol: hello.protocol.to_string(),
        detail,
    };
    let tcp = turmoil::net::TcpStream::connect((target.host.as_str(), target.port))
        .await
        .map_err(|e| dial_error(e.to_string()))?;
    let mut stream = SimStream(tcp.compat());
    write_frame(&mut stream, &hello.encode()).await?;
    let ack = Ack::decode(&read_frame(&mut stream).await?)?;
    if !ack.proven(key) {
        return Err(dial_error(
            "the listener is not on this private network".into(),
        ));
    }
    if ack.listener != peer {
        return Err(TransportError::PeerMismatch {
            expected: peer.to_string(),
            actual: ack.listener.to_string(),
        });
    }
    match ack.status {
        AckStatus::Accepted => Ok(stream),
        AckStatus::Unsupported => Err(TransportError::UnsupportedProtocol {
            peer: peer.to_string(),
            protocol: hello.protocol.to_string(),
        }),
        AckStatus::Busy => Err(dial_error("accept queue full".into())),
    }
}

/// Accepts TCP connections and runs each handshake on its own task, so a slow
/// dialer never holds up the others.
async fn accept_connections(
    listener: turmoil::net::TcpListener,
    local: PeerId,
    queues: Arc<Mutex<AcceptQueues>>,
    handshake_timeout: Duration,
    key: Option<SwarmKey>,
    mesh: Option<MeshPeers>,
) {
    loop {
        let (tcp, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "sim accept failed; listener stops");
                return;
            }
        };
        let queues = queues.clone();
        let key = key.clone();
        let mesh = mesh.clone();
        tokio::spawn(async move {
            let stream = SimStream(tcp.compat());
            let handshake = answer_handshake(stream, local, &queues, key.as_ref(), mesh.as_ref());
            match tokio::time::timeout(handshake_timeout, handshake).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(%from, error = %e, "sim handshake refused"),
                Err(_) => tracing::debug!(%from, "sim handshake timed out"),
            }
        });
    }
}

async fn answer_handshake(
    mut stream: SimStream,
    local: PeerId,
    queues: &Mutex<AcceptQueues>,
    key: Option<&SwarmKey>,
    mesh: Option<&MeshPeers>,
) -> Result<(), TransportError> {
    let hello = Hello::decode(&read_frame(&mut stream).await?)?;
    if !hello.proven(key) {
        // As with pnet, an outsider gets nothing back: the stream just closes.
        return Err(TransportError::io(
            "simulated handshake",
            std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("{} is not on this private network", hello.dialer),
            ),
        ));
    }
    if let (Some(mesh), true) = (mesh, hello.protocol.as_str() == MESH_PROTOCOL) {
        // A mesh dial joins both meshes; nothing flows on the stream itself.
        write_frame(
            &mut stream,
            &Ack::new(AckStatus::Accepted, local, key).encode(),
        )
        .await?;
        lock(mesh).insert(hello.dialer);
        return Ok(());
    }
    let queue = lock(queues).get(&hello.protocol).cloned();
    let permit = match &queue {
        None => Err(AckStatus::Unsupported),
        Some(queue) => queue.try_reserve().map_err(|e| match e {
            mpsc::error::TrySendError::Closed(()) => AckStatus::Unsupported,
            mpsc::error::TrySendError::Full(()) => AckStatus::Busy,
        }),
    };
    let status = match &permit {
        Ok(_) => AckStatus::Accepted,
        Err(status) => *status,
    };
    write_frame(&mut stream, &Ack::new(status, local, key).encode()).await?;
    if let Ok(permit) = permit {
        tracing::debug!(dialer = %hello.dialer, protocol = %hello.protocol, "sim stream accepted");
        permit.send((hello.dialer, stream));
    }
    Ok(())
}

/// A simulated byte stream (one turmoil TCP connection).
pub struct SimStream(Compat<turmoil::net::TcpStream>);

impl std::fmt::Debug for SimStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let peer = self.0.get_ref().peer_addr().ok();
        f.debug_struct("SimStream").field("peer", &peer).finish()
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}

/// Inbound simulated streams for one protocol.
pub struct SimIncoming(mpsc::Receiver<(PeerId, SimStream)>);

impl futures::Stream for SimIncoming {
    type Item = (PeerId, SimStream);

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// A simulated UDP socket.
pub struct SimDatagram(turmoil::net::UdpSocket);

impl_datagram!(SimDatagram, "simulated udp");
