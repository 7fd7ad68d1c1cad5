//! CIDR crawl: unicast requests to every host of a block, answered by unicast.

use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::rc::{Rc, Weak};
use std::time::Duration;

use super::cidr::CidrHosts;
use super::clock::WallClock;
use super::packet::{Body, DATAGRAM_MAX_BYTES};
use super::rate::{SOURCE_BURST, SOURCE_RATE_PER_S};
use super::socket::{Shared, Socket, SocketConfig};
use super::stream::{PeerStream, SinkProgress};
use super::{BootError, Discovery, DiscoveryStats};
use crate::transport::{Identity, SwarmKey, Transport};

/// Settings of a [`CidrCrawl`].
#[derive(Clone, Debug)]
pub struct CrawlConfig {
    /// The block's network address (host bits are ignored).
    pub network: Ipv4Addr,
    /// The block's prefix length, at most 32.
    pub prefix_len: u8,
    /// The UDP port every node answers on.
    pub port: u16,
    /// Where this node's socket binds (it answers requests there too).
    pub bind: SocketAddrV4,
    /// Outgoing packets per second, on average, while the crawl has found no
    /// peer: a /24 in one second, a /16 in about four minutes.
    pub rate_per_s: u32,
    /// Outgoing requests per second in a pass that follows one that found a
    /// peer: the cluster is joined and membership finds the rest through its
    /// peers, so later passes only look for islands, gently. A pass in
    /// progress always ends at `rate_per_s` (a node that starts last must
    /// reach every host that started before it in its first pass).
    pub found_rate_per_s: u32,
    /// Outgoing packets sent at once before the rate applies.
    pub burst: u32,
    /// The largest datagram sent or accepted.
    pub datagram_max_bytes: usize,
    /// Incoming datagrams per second one source IP may send, on average; more are dropped.
    pub source_rate_per_s: u32,
    /// Incoming datagrams one source IP may send at once.
    pub source_burst: u32,
    /// The cluster's key: every packet is tagged with it and must carry its tag;
    /// without one, packets are untagged (loopback and trusted networks only).
    pub swarm_key: Option<SwarmKey>,
    /// Stamps outgoing packets and judges incoming ones' freshness (simulations
    /// pass virtual time; real hosts [`WallClock::host`]).
    pub wall_clock: WallClock,
    /// Outgoing packets waiting for the rate limiter.
    pub send_queue_max: usize,
    /// Seeds the crawl order (each stream derives its own order from it).
    pub seed: u64,
}

impl CrawlConfig {
    /// A crawl of `network/prefix_len` on `port`, bound on `0.0.0.0:port`, 256
    /// packets/s (as fast as the original crawled) until a pass finds a peer,
    /// 16/s in the passes after it.
    pub fn new(network: Ipv4Addr, prefix_len: u8, port: u16) -> Self {
        CrawlConfig {
            network,
            prefix_len,
            port,
            bind: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port),
            rate_per_s: 256,
            found_rate_per_s: 16,
            burst: 16,
            datagram_max_bytes: DATAGRAM_MAX_BYTES,
            send_queue_max: 64,
            source_rate_per_s: SOURCE_RATE_PER_S,
            source_burst: SOURCE_BURST,
            swarm_key: None,
            wall_clock: WallClock::host(),
            seed: 0,
        }
    }
}

/// Discovery by crawling a block: `find_peers` sends one request to each host (in a
/// seeded pseudo-random order, rate-limited) and yields the unicast answers. The
/// stream stays open after the pass for late answers.
///
/// One walk over the block is shared by every stream: a stream dropped mid-pass
/// (membership starts a new round every 30 s, shorter than a /16's pass) leaves
/// the walk where it stopped and the next stream resumes it, so every host is
/// asked once per pass however the rounds fall.
pub struct CidrCrawl {
    socket: Socket,
    config: CrawlConfig,
    walk: Rc<Cell<Walk>>,
}

/// Where the shared walk over the block is: which pass (it seeds the order),
/// how far into it, and whether this pass or the last found anyone.
#[derive(Clone, Copy, Debug, Default)]
struct Walk {
    pass: u64,
    position: u64,
    found: bool,
    last_pass_found: bool,
}

impl CidrCrawl {
    /// Binds the socket and starts answering requests; stops when dropped.
    pub async fn start<T: Transport>(
        transport: &T,
        identity: Identity,
        config: CrawlConfig,
    ) -> Result<Self, BootError> {
        if config.prefix_len > 32 {
            return Err(BootError::Config(format!(
                "prefix length {} is over 32",
                config.prefix_len
            )));
        }
        super::socket::check_identity(transport, &identity)?;
        let answers = transport
            .bind_datagram(SocketAddr::V4(config.bind))
            .await
            .map_err(BootError::Socket)?;
        // Requests go out from a socket of their own (see
        // `Socket::send_requests_from`), on the same address, any port.
        let requests = transport
            .bind_datagram(SocketAddr::V4(SocketAddrV4::new(*config.bind.ip(), 0)))
            .await
            .map_err(BootError::Socket)?;
        let mut socket = Socket::start(
            transport,
            identity,
            answers,
            SocketConfig {
                group: None,
                rate_per_s: config.rate_per_s,
                burst: config.burst,
                datagram_max_bytes: config.datagram_max_bytes,
                send_queue_max: config.send_queue_max,
                source_rate_per_s: config.source_rate_per_s,
                source_burst: config.source_burst,
                swarm_key: config.swarm_key.clone(),
                wall_clock: config.wall_clock.clone(),
            },
        )?;
        socket.send_requests_from(
            requests,
            config.rate_per_s,
            config.burst,
            config.send_queue_max,
        )?;
        tracing::info!(
            network = %config.network,
            prefix_len = config.prefix_len,
            port = config.port,
            bind = %config.bind,
            "cidr crawl started"
        );
        Ok(CidrCrawl {
            socket,
            config,
            walk: Rc::new(Cell::new(Walk::default())),
        })
    }
}

impl Discovery for CidrCrawl {
    async fn advertise(&self, namespace: &str, ttl: Duration) -> Result<Duration, BootError> {
        Ok(self.socket.advertise(namespace, ttl)?.ttl)
    }

    async fn find_peers(
        &self,
        namespace: &str,
        limit: Option<usize>,
    ) -> Result<PeerStream, BootError> {
        if CidrHosts::new(self.config.network, self.config.prefix_len, 0).is_none() {
            return Err(BootError::Config("prefix length over 32".into()));
        }
        let (stream, progress) = self.socket.subscribe(namespace, limit)?;
        let task = tokio::task::spawn_local(crawl_pass(
            self.socket.weak(),
            self.config.clone(),
            self.walk.clone(),
            namespace.to_string(),
            progress,
        ));
        Ok(stream.owning(task))
    }

    fn stats(&self) -> DiscoveryStats {
        self.socket.stats()
    }
}

/// Sends requests along the shared walk until the pass ends or the stream
/// closes: at the node's rate, or paced down to `found_rate_per_s` if the
/// last pass found a peer.
async fn crawl_pass(
    shared: Weak<Shared>,
    config: CrawlConfig,
    walk: Rc<Cell<Walk>>,
    namespace: String,
    progress: Rc<SinkProgress>,
) {
    let mut at = walk.get();
    let seed = config.seed ^ at.pass.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let Some(hosts) = CidrHosts::new(config.network, config.prefix_len, seed) else {
        return;
    };
    // Outward from our own address in the block, if we know it.
    let own = match config.bind.ip() {
        ip if !ip.is_unspecified() => Some(*ip),
        _ => shared
            .upgrade()
            .and_then(|s| s.listen_ipv4().into_iter().find(|ip| hosts.contains(*ip))),
    };
    let hosts = match own {
        Some(own) => hosts.outward_from(own),
        None => hosts,
    };
    let mut hosts = hosts.resumed_at(at.position);
    let gap = at
        .last_pass_found
        .then(|| Duration::from_secs(1) / config.found_rate_per_s.max(1));
    tracing::debug!(
        %namespace,
        pass = at.pass,
        from = at.position,
        hosts = hosts.host_count(),
        gentle = gap.is_some(),
        "crawl pass resumes"
    );
    while let Some(host) = hosts.next() {
        if progress.is_closed() {
            return;
        }
        if let Some(gap) = gap {
            tokio::time::sleep(gap).await;
        }
        let target = SocketAddr::V4(SocketAddrV4::new(host, config.port));
        // Upgrade only for the moment: holding the socket across the wait would
        // keep it alive after the discovery object is dropped.
        let (outgoing, queue) = {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let from = shared.local();
            let Some(outgoing) = shared.seal(&namespace, Body::Request { from }, target) else {
                return;
            };
            (outgoing, shared.requests_outbound())
        };
        // Waiting for room is the rate limit's backpressure on the pass.
        if queue.send(outgoing).await.is_err() {
            return;
        }
        at.position = hosts.position();
        at.found |= progress.found() > 0;
        walk.set(at);
    }
    walk.set(Walk {
        pass: at.pass.wrapping_add(1),
        position: 0,
        found: false,
        last_pass_found: at.found || progress.found() > 0,
    });
    tracing::debug!(%namespace, found = progress.found(), "crawl pass done");
}
