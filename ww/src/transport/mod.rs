//! The one seam all networking goes through.
//!
//! A [`Transport`] gives a node an identity, lets it listen, open byte streams to a
//! peer by protocol name, accept streams for a protocol, and send datagrams for
//! discovery. Two implementations exist: [`Libp2pTransport`] for real hosts and
//! `SimTransport` for seeded turmoil simulations, built only with the `sim`
//! feature (ww-sim and the simulation tests enable it; a shipped build has no
//! turmoil). Nothing outside this module (and the `sim` crate) names a libp2p or
//! turmoil type.
//!
//! # Example
//!
//! Two libp2p nodes on loopback: one accepts a protocol, the other dials it
//! and the bytes come back.
//!
//! ```
//! use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
//! use ww::transport::{Address, Identity, Libp2pConfig, Libp2pTransport, Protocol, Transport};
//!
//! ww::rpc::block_on_local(async {
//!     let echo = Protocol::new("/example/echo")?;
//!     let server = Libp2pTransport::new(Libp2pConfig::new(Identity::generate()))?;
//!     let client = Libp2pTransport::new(Libp2pConfig::new(Identity::generate()))?;
//!     let mut incoming = server.accept(&echo)?;
//!     let bound = server.listen(Address::new("/ip4/127.0.0.1/tcp/0")).await?;
//!     client.add_peer_address(server.local_peer_id(), bound)?;
//!     tokio::task::spawn_local(async move {
//!         let (_dialer, mut stream) = incoming.next().await.expect("a stream");
//!         let mut buf = [0u8; 5];
//!         stream.read_exact(&mut buf).await.expect("read");
//!         stream.write_all(&buf).await.expect("write");
//!         stream.close().await.expect("close");
//!     });
//!     let mut stream = client.dial(server.local_peer_id(), &echo).await?;
//!     stream.write_all(b"hello").await?;
//!     let mut back = Vec::new();
//!     stream.read_to_end(&mut back).await?;
//!     assert_eq!(back, b"hello");
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })??;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

/// Implements [`Datagram`] for a newtype over a socket with tokio's UDP methods
/// (tokio's and turmoil's sockets share them), naming `$what` in errors.
macro_rules! impl_datagram {
    ($ty:ty, $what:literal) => {
        impl $crate::transport::Datagram for $ty {
            fn local_addr(
                &self,
            ) -> Result<std::net::SocketAddr, $crate::transport::TransportError> {
                self.0.local_addr().map_err(|e| {
                    $crate::transport::TransportError::io(concat!($what, " local address"), e)
                })
            }

            async fn send_to(
                &self,
                payload: &[u8],
                target: std::net::SocketAddr,
            ) -> Result<usize, $crate::transport::TransportError> {
                self.0.send_to(payload, target).await.map_err(|e| {
                    $crate::transport::TransportError::io(
                        format!(concat!($what, " send to {}"), target),
                        e,
                    )
                })
            }

            async fn recv_from(
                &self,
                buffer: &mut [u8],
            ) -> Result<(usize, std::net::SocketAddr), $crate::transport::TransportError> {
                self.0.recv_from(buffer).await.map_err(|e| {
                    $crate::transport::TransportError::io(concat!($what, " receive"), e)
                })
            }

            fn join_multicast_v4(
                &self,
                group: std::net::Ipv4Addr,
                interface: std::net::Ipv4Addr,
            ) -> Result<(), $crate::transport::TransportError> {
                self.0.join_multicast_v4(group, interface).map_err(|e| {
                    $crate::transport::TransportError::io(
                        format!(
                            concat!($what, ": join multicast {} on {}"),
                            group, interface
                        ),
                        e,
                    )
                })
            }
        }
    };
}

mod address_book;
mod error;
#[cfg(feature = "sim")]
mod handshake;
mod id;
mod p2p;
#[cfg(feature = "sim")]
mod sim;
mod swarm_key;
mod swarm_task;
mod topic;
mod udp;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use futures::io::{AsyncRead, AsyncWrite};
use futures::Stream;

pub use error::TransportError;
pub use id::{Address, Identity, PeerId, Protocol};
pub use p2p::{ConnectionBounds, Libp2pConfig, Libp2pTransport};
#[cfg(feature = "sim")]
pub use sim::{SimConfig, SimTransport, PUBSUB_GROUP as SIM_BROADCAST_GROUP};
pub use swarm_key::{SwarmKey, SwarmKeyError, SWARM_KEY_BYTES, TAG_BYTES};
pub use topic::{TopicMessage, TopicReceiver, TOPIC_PAYLOAD_MAX, TOPIC_QUEUE_MAX};
pub use udp::UdpDatagram;

/// A node's access to the network.
///
/// Clones share one underlying node. Methods never block without a bound: every
/// network wait either completes or fails with [`TransportError::Timeout`].
pub trait Transport: Clone + Send + Sync + 'static {
    /// A bidirectional, ordered, reliable byte stream to one peer.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// Inbound streams for one protocol, each with the dialer's verified id.
    type Incoming: Stream<Item = (PeerId, Self::Stream)> + Unpin + Send + 'static;
    /// A datagram socket (unicast and multicast) for discovery.
    type Datagram: Datagram;

    /// This node's id.
    fn local_peer_id(&self) -> PeerId;

    /// Starts listening on `address` and returns the address actually bound
    /// (port 0 is resolved to the port the system chose).
    fn listen(
        &self,
        address: Address,
    ) -> impl Future<Output = Result<Address, TransportError>> + Send;

    /// Every address this node currently listens on.
    fn listen_addresses(&self) -> Vec<Address>;

    /// Remembers that `peer` may be reached at `address`.
    fn add_peer_address(&self, peer: PeerId, address: Address) -> Result<(), TransportError>;

    /// Opens a stream to `peer` speaking `protocol`, connecting first if needed.
    fn dial(
        &self,
        peer: PeerId,
        protocol: &Protocol,
    ) -> impl Future<Output = Result<Self::Stream, TransportError>> + Send;

    /// Accepts inbound streams for `protocol`; dropping the result stops accepting.
    fn accept(&self, protocol: &Protocol) -> Result<Self::Incoming, TransportError>;

    /// Binds a datagram socket on `address` (port 0 lets the system choose).
    fn bind_datagram(
        &self,
        address: SocketAddr,
    ) -> impl Future<Output = Result<Self::Datagram, TransportError>> + Send;

    /// Ensures a connection to `peer` (using its known addresses) so that topic
    /// messages can flow; returns once the attempt has started.
    fn connect(&self, peer: PeerId) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Receives the topic's messages published by other nodes, from now on.
    fn subscribe_topic(
        &self,
        topic: &str,
    ) -> impl Future<Output = Result<TopicReceiver, TransportError>> + Send;

    /// Publishes `payload` on `topic`, best effort: success means handed to the
    /// medium, not delivered.
    fn publish_topic(
        &self,
        topic: &str,
        payload: Vec<u8>,
    ) -> impl Future<Output = Result<(), TransportError>> + Send;

    /// Topic messages this node lost because a subscriber was full.
    fn topic_messages_dropped(&self) -> u64;

    /// Binds a socket that receives `group`'s datagrams on `interface` (other
    /// processes on the host may bind the same group and port) and sends to the
    /// group through that interface, hearing its own host's members too.
    fn bind_multicast(
        &self,
        group: SocketAddrV4,
        interface: Ipv4Addr,
    ) -> impl Future<Output = Result<Self::Datagram, TransportError>> + Send;
}

/// An unreliable, unordered datagram socket, as discovery needs.
pub trait Datagram: Send + Sync + 'static {
    /// The address this socket is bound to.
    fn local_addr(&self) -> Result<SocketAddr, TransportError>;

    /// Sends one datagram to `target`, which may be a multicast group.
    fn send_to(
        &self,
        payload: &[u8],
        target: SocketAddr,
    ) -> impl Future<Output = Result<usize, TransportError>> + Send;

    /// Receives one datagram into `buffer`, returning its length and sender.
    fn recv_from(
        &self,
        buffer: &mut [u8],
    ) -> impl Future<Output = Result<(usize, SocketAddr), TransportError>> + Send;

    /// Joins the IPv4 multicast `group` on the interface with address `interface`.
    fn join_multicast_v4(&self, group: Ipv4Addr, interface: Ipv4Addr)
        -> Result<(), TransportError>;
}

/// Waits for `future` at most `timeout`, turning a hang into [`TransportError::Timeout`].
pub async fn with_timeout<T>(
    what: &str,
    timeout: std::time::Duration,
    future: impl Future<Output = Result<T, TransportError>>,
) -> Result<T, TransportError> {
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => result,
        Err(_) => Err(TransportError::Timeout {
            what: what.to_string(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        }),
    }
}

/// Locks a mutex, recovering the data if a panicking holder poisoned it: every
/// critical section here leaves the data consistent at each step.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}
