//! CIDR crawl: unicast requests to every host of a block, answered by unicast.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use super::cidr::CidrHosts;
use super::clock::WallClock;
use super::packet::{Body, DATAGRAM_MAX_BYTES};
use super::rate::{SOURCE_BURST, SOURCE_RATE_PER_S};
use super::socket::{Socket, SocketConfig};
use super::stream::PeerStream;
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
    /// Outgoing packets per second, on average.
    pub rate_per_s: u32,
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
    /// A crawl of `network/prefix_len` on `port`, bound on `0.0.0.0:port`, 32 packets/s.
    pub fn new(network: Ipv4Addr, prefix_len: u8, port: u16) -> Self {
        CrawlConfig {
            network,
            prefix_len,
            port,
            bind: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port),
            rate_per_s: 32,
            burst: 8,
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
pub struct CidrCrawl {
    socket: Socket,
    config: CrawlConfig,
    streams_started: std::cell::Cell<u64>,
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
        let socket = transport
            .bind_datagram(SocketAddr::V4(config.bind))
            .await
            .map_err(BootError::Socket)?;
        let socket = Socket::start(
            transport,
            identity,
            socket,
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
            streams_started: std::cell::Cell::new(0),
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
        let seed = super::stream_seed(self.config.seed, &self.streams_started);
        let hosts = CidrHosts::new(self.config.network, self.config.prefix_len, seed)
            .ok_or_else(|| BootError::Config("prefix length over 32".into()))?;
        let (stream, progress) = self.socket.subscribe(namespace, limit)?;
        let shared = self.socket.weak();
        let port = self.config.port;
        let namespace = namespace.to_string();
        let task = tokio::task::spawn_local(async move {
            let count = hosts.host_count();
            tracing::debug!(%namespace, hosts = count, "crawl pass starts");
            for host in hosts {
                if progress.is_closed() {
                    break;
                }
                let target = SocketAddr::V4(SocketAddrV4::new(host, port));
                // Upgrade only for the moment: holding the socket across the wait would
                // keep it alive after the discovery object is dropped.
                let (outgoing, queue) = {
                    let Some(shared) = shared.upgrade() else {
                        return;
                    };
                    let from = shared.local();
                    let Some(outgoing) = shared.seal(&namespace, Body::Request { from }, target)
                    else {
                        return;
                    };
                    (outgoing, shared.outbound())
                };
                // Waiting for room is the rate limit's backpressure on the pass.
                if queue.send(outgoing).await.is_err() {
                    return;
                }
            }
            tracing::debug!(%namespace, found = progress.found(), "crawl pass done");
        });
        Ok(stream.owning(task))
    }

    fn stats(&self) -> DiscoveryStats {
        self.socket.stats()
    }
}
