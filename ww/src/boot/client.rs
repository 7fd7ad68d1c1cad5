//! Discovery through a boot server: advertise by registering a signed envelope,
//! find peers by asking for a namespace's envelopes and checking each.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use super::clock::{WallClock, FRESHNESS_WINDOW_MS};
use super::packet::{self, Body, Checks, Packet, DATAGRAM_MAX_BYTES};
use super::server::{boot_protocol, DISCOVER_MAX};
use super::stats::StatsCell;
use super::stream::PeerStream;
use super::tracker::check_namespace;
use super::{BootError, Discovery, DiscoveryStats, PeerInfo};
use futures::future::LocalBoxFuture;

use crate::rpc::{connect, Connection, RpcConfig, RpcError};
use crate::schema::boot_capnp::boot_server;
use crate::transport::{Address, Identity, PeerId, SwarmKey, Transport};

/// How long connecting to the boot server, and each call, may take.
const BOOT_CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// What the client needs of its transport, without its type: so that
/// [`AnyDiscovery`](super::AnyDiscovery) stays one type for every transport.
trait BootLink {
    fn listen_addresses(&self) -> Vec<Address>;
    fn connect(
        &self,
        server: PeerId,
        config: RpcConfig,
    ) -> LocalBoxFuture<'_, Result<Connection<boot_server::Client>, RpcError>>;
}

struct Link<T>(T);

impl<T: Transport> BootLink for Link<T> {
    fn listen_addresses(&self) -> Vec<Address> {
        self.0.listen_addresses()
    }

    fn connect(
        &self,
        server: PeerId,
        config: RpcConfig,
    ) -> LocalBoxFuture<'_, Result<Connection<boot_server::Client>, RpcError>> {
        Box::pin(async move { connect(&self.0, server, &boot_protocol(), config).await })
    }
}

/// A discovery that meets peers at a boot server.
pub struct BootClient {
    link: Box<dyn BootLink>,
    identity: Identity,
    server: PeerId,
    swarm_key: Option<SwarmKey>,
    wall_clock: WallClock,
    connection: RefCell<Option<Rc<Connection<boot_server::Client>>>>,
    stats: StatsCell,
}

impl BootClient {
    /// A client of the boot server `server` (its id and addresses, which are
    /// handed to the transport); envelopes are signed by `identity` and tagged
    /// with `swarm_key`, and stamped and judged by `wall_clock`.
    pub fn new<T: Transport>(
        transport: &T,
        identity: Identity,
        server: &PeerInfo,
        swarm_key: Option<SwarmKey>,
        wall_clock: WallClock,
    ) -> Result<Self, BootError> {
        if identity.peer_id() != transport.local_peer_id() {
            return Err(BootError::IdentityMismatch {
                identity: identity.peer_id().to_string(),
                transport: transport.local_peer_id().to_string(),
            });
        }
        if server.addresses.is_empty() {
            return Err(BootError::Config(format!(
                "boot server {} has no address",
                server.peer
            )));
        }
        for address in &server.addresses {
            transport
                .add_peer_address(server.peer, address.clone())
                .map_err(BootError::Socket)?;
        }
        Ok(BootClient {
            link: Box::new(Link(transport.clone())),
            identity,
            server: server.peer,
            swarm_key,
            wall_clock,
            connection: RefCell::new(None),
            stats: StatsCell::default(),
        })
    }

    /// The live connection to the server, dialed anew if there is none or it was lost.
    async fn connection(&self) -> Result<Rc<Connection<boot_server::Client>>, BootError> {
        let live = self.connection.borrow().clone();
        if let Some(connection) = live.filter(|c| !c.is_lost()) {
            return Ok(connection);
        }
        let config = RpcConfig {
            connect_timeout: BOOT_CALL_TIMEOUT,
            call_timeout: BOOT_CALL_TIMEOUT,
        };
        let connection = self
            .link
            .connect(self.server, config)
            .await
            .map_err(|e| self.unreachable(e.to_string()))?;
        let connection = Rc::new(connection);
        *self.connection.borrow_mut() = Some(connection.clone());
        Ok(connection)
    }

    fn unreachable(&self, detail: String) -> BootError {
        BootError::Server {
            server: self.server.to_string(),
            detail,
        }
    }

    /// Checks one envelope from the server; the peer it names, or why not.
    fn check(&self, namespace: &str, envelope: &[u8]) -> Option<PeerInfo> {
        self.stats.received();
        let checks = Checks {
            max_bytes: DATAGRAM_MAX_BYTES,
            key: self.swarm_key.as_ref(),
            now_ms: self.wall_clock.now_ms(),
            freshness_window_ms: FRESHNESS_WINDOW_MS,
        };
        let packet = match packet::open(envelope, &checks) {
            Ok(packet) => packet,
            Err(reason) => {
                self.stats.dropped(reason);
                return None;
            }
        };
        match packet.body {
            Body::Response { peer, addresses } if packet.namespace == namespace => {
                Some(PeerInfo { peer, addresses })
            }
            _ => {
                self.stats.dropped(super::DropReason::Namespace);
                None
            }
        }
    }
}

impl Discovery for BootClient {
    /// Registers this node's signed addresses for `namespace` at the server.
    async fn advertise(&self, namespace: &str, ttl: Duration) -> Result<Duration, BootError> {
        check_namespace(namespace)?;
        let addresses = self.link.listen_addresses();
        if addresses.is_empty() {
            return Err(BootError::NoListenAddresses {
                namespace: namespace.to_string(),
            });
        }
        let packet = Packet {
            namespace: namespace.to_string(),
            sent_ms: self.wall_clock.now_ms(),
            body: Body::Response {
                peer: self.identity.peer_id(),
                addresses,
            },
        };
        let envelope = packet::seal(&self.identity, self.swarm_key.as_ref(), &packet)
            .map_err(|e| BootError::Config(format!("cannot seal a registration: {e}")))?;
        let connection = self.connection().await?;
        let mut request = connection.client().register_request();
        request.get().set_envelope(&envelope);
        request
            .get()
            .set_ttl_ms(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        let granted_ms = connection
            .call("register at the boot server", async {
                Ok(request.send().promise.await?.get()?.get_granted_ms())
            })
            .await
            .map_err(|e| self.unreachable(e.to_string()))?;
        self.stats.sent();
        Ok(Duration::from_millis(granted_ms))
    }

    /// The peers registered for `namespace` now, each envelope checked; the
    /// stream ends with them (membership asks again at its next round).
    async fn find_peers(
        &self,
        namespace: &str,
        limit: Option<usize>,
    ) -> Result<PeerStream, BootError> {
        check_namespace(namespace)?;
        let connection = self.connection().await?;
        let mut request = connection.client().discover_request();
        request.get().set_namespace(namespace);
        let asked = limit.unwrap_or(DISCOVER_MAX).min(DISCOVER_MAX);
        request
            .get()
            .set_limit(u32::try_from(asked).expect("DISCOVER_MAX fits u32"));
        let envelopes: Vec<Vec<u8>> = connection
            .call("discover at the boot server", async {
                let answer = request.send().promise.await?;
                let list = answer.get()?.get_envelopes()?;
                let mut envelopes = Vec::with_capacity(list.len() as usize);
                for envelope in list.iter() {
                    envelopes.push(envelope?.to_vec());
                }
                Ok(envelopes)
            })
            .await
            .map_err(|e| self.unreachable(e.to_string()))?;
        self.stats.sent();
        let local = self.identity.peer_id();
        let peers: Vec<PeerInfo> = envelopes
            .iter()
            .take(DISCOVER_MAX)
            .filter_map(|envelope| self.check(namespace, envelope))
            .filter(|found| found.peer != local)
            .collect();
        Ok(PeerStream::from_peers(peers, limit))
    }

    fn stats(&self) -> DiscoveryStats {
        self.stats.snapshot()
    }
}
