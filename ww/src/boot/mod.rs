//! Finding peers: the [`Discovery`] trait and its implementations.
//!
//! - [`MulticastSurvey`] (the default): one signed survey to a UDP multicast group;
//!   peers advertising the namespace answer to the group, so every searcher hears
//!   every answer; a node also announces itself once when it starts advertising.
//! - [`GradualSurvey`]: surveys at distances 0, 1, 2, … with bounded, jittered
//!   backoff, and stops surveying once a peer is found.
//! - [`CidrCrawl`]: unicast requests to every host of a block, outward from
//!   our own address (else in a seeded pseudo-random order), rate-limited,
//!   answered by unicast; an asked node asks the crawler back.
//! - [`StaticPeers`]: a fixed list.
//! - [`BootClient`]: a boot server ([`BootService`]), for networks without
//!   multicast: nodes register their signed addresses there and ask it for
//!   the others'; every envelope is checked by the asker as a multicast answer is.
//! - Any user type implementing [`Discovery`]; [`AnyDiscovery`] covers the built-ins.
//!
//! Every packet travels in a signed envelope ([`packet`]), tagged with the swarm
//! key when the cluster has one, and carries its sender's wall-clock time. Each
//! source IP has a token bucket; received datagrams over their source's rate,
//! oversized, malformed, without the right tag (or with a tag when we have no
//! key), unsigned, mis-signed, signed by someone other than the peer they name,
//! sent outside the freshness window of our clock ([`FRESHNESS_WINDOW_MS`]), for
//! a namespace we neither advertise nor search, or our own, are dropped and
//! counted in [`DiscoveryStats`]; nothing dropped is answered, so a node without
//! the key gets no answer. Outgoing packets are rate-limited by a token bucket
//! behind a bounded queue; a full queue drops and counts.
//!
//! # `--discover` grammar
//!
//! ```text
//! spec      = "none"
//!           | "/ip4/" GROUP "/udp/" PORT "/multicast/" IFACE [ "/survey" ]
//!           | "/ip4/" NETWORK "/udp/" PORT "/cidr/" PREFIX
//!           | PEERADDR *( "," PEERADDR )
//!           | "multicast://" GROUP ":" PORT [ "?iface=" IFACE ]
//!           | "survey://" GROUP ":" PORT [ "?iface=" IFACE ]      ; gradual survey
//!           | "cidr://" NETWORK "/" PREFIX ":" PORT
//!           | "static://" PEERADDR *( "," PEERADDR )
//! GROUP     = IPv4 address in 224.0.0.0/4
//! IFACE     = IPv4 address of the interface | "lo" | "lo0"      ; lo = 127.0.0.1 (default)
//! PREFIX    = 0..32      ; /31 and /32 crawl nothing; network and broadcast are skipped
//! PORT      = 1..65535
//! PEERADDR  = multiaddr "/p2p/" peer-id, e.g. /ip4/10.0.0.1/tcp/4001/p2p/12D3KooW…
//! ```
//!
//! The default, [`DEFAULT_DISCOVER`], is `/ip4/228.8.8.8/udp/8822/multicast/lo`: a
//! default node never sends multicast beyond this machine.
//!
//! # Example
//!
//! The simplest [`Discovery`]: a static list of peers, found in any namespace.
//!
//! ```
//! use futures::StreamExt;
//! use ww::boot::{Discovery, PeerInfo, StaticPeers};
//! use ww::transport::{Address, Identity};
//!
//! ww::rpc::block_on_local(async {
//!     let peer = Identity::generate().peer_id();
//!     let addresses = vec![Address::new("/ip4/192.0.2.7/tcp/4001")];
//!     let discovery = StaticPeers::new(vec![PeerInfo { peer, addresses }]);
//!     let found: Vec<PeerInfo> = discovery.find_peers("ww", None).await?.collect().await;
//!     assert_eq!(found.len(), 1);
//!     assert_eq!(found[0].peer, peer);
//!     Ok::<(), ww::boot::BootError>(())
//! })??;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod any;
mod cidr;
mod client;
mod clock;
mod crawl;
mod distance;
mod error;
mod gradual;
pub mod packet;
mod rate;
mod registry;
mod server;
mod socket;
mod spec;
mod static_list;
mod stats;
mod stream;
mod survey;
mod tracker;

use std::future::Future;
use std::time::Duration;

use crate::transport::{Address, PeerId};

pub use any::AnyDiscovery;
pub use cidr::CidrHosts;
pub use client::BootClient;
pub use clock::{WallClock, FRESHNESS_WINDOW_MS};
pub use crawl::{CidrCrawl, CrawlConfig};
pub use distance::{id_tail, should_answer, within_distance};
pub use error::{BootError, SpecError};
pub use gradual::{Backoff, GradualConfig, GradualSchedule, GradualSurvey};
pub use rate::{SourceLimits, TokenBucket, SOURCES_MAX, SOURCE_BURST, SOURCE_RATE_PER_S};
pub use registry::{Registry, RegistryError, RegistryLimits};
pub use server::{boot_protocol, BootServerConfig, BootService, BOOT_PROTOCOL, DISCOVER_MAX};
pub use socket::STREAMS_MAX;
pub use spec::{DiscoverySpec, COMBINED_MAX, DEFAULT_DISCOVER, STATIC_ADDRESSES_MAX};
pub use static_list::StaticPeers;
pub use stats::{DiscoveryStats, DropReason};
pub use stream::{Offer, PeerSink, PeerStream, SinkProgress, STREAM_BUFFER, STREAM_SEEN_MAX};
pub use survey::{MulticastSurvey, SurveyConfig, DEFAULT_GROUP};
pub use tracker::{Advertised, Granted, NAMESPACES_MAX, TTL_MAX};

/// A peer found by discovery and where it listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's id.
    pub peer: PeerId,
    /// Its listen addresses (multiaddr text, without `/p2p/`).
    pub addresses: Vec<Address>,
}

/// A way of finding peers by namespace and of being found.
pub trait Discovery {
    /// Answers requests for `namespace` until `ttl` elapses (call again to extend); returns the ttl granted.
    fn advertise(
        &self,
        namespace: &str,
        ttl: Duration,
    ) -> impl Future<Output = Result<Duration, BootError>>;

    /// Peers found in `namespace` as they arrive (deduplicated per stream); ends after `limit` peers, or when the implementation is done (static list), else runs until dropped.
    fn find_peers(
        &self,
        namespace: &str,
        limit: Option<usize>,
    ) -> impl Future<Output = Result<PeerStream, BootError>>;

    /// Counters (received, sent, and each drop reason).
    fn stats(&self) -> DiscoveryStats;
}

/// A shared discovery, so a caller can keep a handle (e.g. for its counters)
/// while membership drives it.
impl<D: Discovery> Discovery for std::rc::Rc<D> {
    async fn advertise(&self, namespace: &str, ttl: Duration) -> Result<Duration, BootError> {
        (**self).advertise(namespace, ttl).await
    }

    async fn find_peers(
        &self,
        namespace: &str,
        limit: Option<usize>,
    ) -> Result<PeerStream, BootError> {
        (**self).find_peers(namespace, limit).await
    }

    fn stats(&self) -> DiscoveryStats {
        (**self).stats()
    }
}

/// A seed for the next result stream of a discovery: each stream jitters (or
/// orders its crawl) differently, yet reproducibly from `seed`.
pub(crate) fn stream_seed(seed: u64, streams_started: &std::cell::Cell<u64>) -> u64 {
    let n = streams_started.get();
    streams_started.set(n.wrapping_add(1));
    seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}
