//! One type for whichever discovery a `--discover` spec chose.

use std::time::Duration;

use super::client::BootClient;
use super::clock::WallClock;
use super::crawl::{CidrCrawl, CrawlConfig};
use super::gradual::{GradualConfig, GradualSurvey};
use super::spec::DiscoverySpec;
use super::static_list::StaticPeers;
use super::stream::PeerStream;
use super::survey::{MulticastSurvey, SurveyConfig};
use super::{BootError, Discovery, DiscoveryStats};
use crate::transport::{Identity, SwarmKey, Transport};

/// The built-in discoveries behind one type, dispatching each call to the one inside.
pub enum AnyDiscovery {
    /// Finds nothing and advertises nowhere.
    None,
    /// A multicast survey at full distance.
    Multicast(MulticastSurvey),
    /// A multicast survey at growing distances.
    Gradual(GradualSurvey),
    /// A CIDR crawl.
    Crawl(CidrCrawl),
    /// A fixed list.
    Static(StaticPeers),
    /// A boot server.
    Boot(Box<BootClient>),
    /// Several at once: advertised through each, peers found through all.
    All(Vec<AnyDiscovery>),
}

impl AnyDiscovery {
    /// Starts what `spec` names with default settings; `seed` drives jitter and
    /// crawl order; packets are tagged with `swarm_key` (if any) and stamped by
    /// `wall_clock`.
    pub async fn from_spec<T: Transport>(
        spec: &DiscoverySpec,
        transport: &T,
        identity: Identity,
        seed: u64,
        swarm_key: Option<SwarmKey>,
        wall_clock: WallClock,
    ) -> Result<Self, BootError> {
        if let DiscoverySpec::All(specs) = spec {
            let mut all = Vec::with_capacity(specs.len());
            for (i, part) in specs.iter().enumerate() {
                // A part cannot be `All` (the parser never nests), so one level of
                // boxing ends the recursion.
                debug_assert!(!matches!(part, DiscoverySpec::All(_)), "nested spec");
                let started = Box::pin(Self::from_spec(
                    part,
                    transport,
                    identity.clone(),
                    seed.wrapping_add(i as u64),
                    swarm_key.clone(),
                    wall_clock.clone(),
                ))
                .await?;
                all.push(started);
            }
            return Ok(AnyDiscovery::All(all));
        }
        match spec {
            DiscoverySpec::All(_) => unreachable!("handled above"),
            DiscoverySpec::None => Ok(AnyDiscovery::None),
            DiscoverySpec::Multicast {
                group,
                interface,
                gradual,
            } => {
                let config = SurveyConfig {
                    group: *group,
                    interface: *interface,
                    swarm_key,
                    wall_clock,
                    ..SurveyConfig::default()
                };
                let survey = MulticastSurvey::start(transport, identity, config).await?;
                if !gradual {
                    return Ok(AnyDiscovery::Multicast(survey));
                }
                let config = GradualConfig {
                    seed,
                    ..GradualConfig::default()
                };
                Ok(AnyDiscovery::Gradual(GradualSurvey::new(survey, config)?))
            }
            DiscoverySpec::Cidr {
                network,
                prefix_len,
                port,
            } => {
                let config = CrawlConfig {
                    seed,
                    swarm_key,
                    wall_clock,
                    ..CrawlConfig::new(*network, *prefix_len, *port)
                };
                Ok(AnyDiscovery::Crawl(
                    CidrCrawl::start(transport, identity, config).await?,
                ))
            }
            DiscoverySpec::Static(peers) => {
                Ok(AnyDiscovery::Static(StaticPeers::new(peers.clone())))
            }
            DiscoverySpec::Boot(server) => Ok(AnyDiscovery::Boot(Box::new(BootClient::new(
                transport, identity, server, swarm_key, wall_clock,
            )?))),
        }
    }
}

impl Discovery for AnyDiscovery {
    async fn advertise(&self, namespace: &str, ttl: Duration) -> Result<Duration, BootError> {
        match self {
            AnyDiscovery::None => {
                super::tracker::check_namespace(namespace)?;
                Ok(ttl)
            }
            AnyDiscovery::Multicast(d) => d.advertise(namespace, ttl).await,
            AnyDiscovery::Gradual(d) => d.advertise(namespace, ttl).await,
            AnyDiscovery::Crawl(d) => d.advertise(namespace, ttl).await,
            AnyDiscovery::Static(d) => d.advertise(namespace, ttl).await,
            AnyDiscovery::Boot(d) => d.advertise(namespace, ttl).await,
            AnyDiscovery::All(all) => advertise_all(all, namespace, ttl).await,
        }
    }

    async fn find_peers(
        &self,
        namespace: &str,
        limit: Option<usize>,
    ) -> Result<PeerStream, BootError> {
        match self {
            AnyDiscovery::None => {
                super::tracker::check_namespace(namespace)?;
                Ok(PeerStream::from_peers(Vec::new(), limit))
            }
            AnyDiscovery::Multicast(d) => d.find_peers(namespace, limit).await,
            AnyDiscovery::Gradual(d) => d.find_peers(namespace, limit).await,
            AnyDiscovery::Crawl(d) => d.find_peers(namespace, limit).await,
            AnyDiscovery::Static(d) => d.find_peers(namespace, limit).await,
            AnyDiscovery::Boot(d) => d.find_peers(namespace, limit).await,
            AnyDiscovery::All(all) => find_peers_all(all, namespace, limit).await,
        }
    }

    fn stats(&self) -> DiscoveryStats {
        match self {
            AnyDiscovery::None => DiscoveryStats::default(),
            AnyDiscovery::Multicast(d) => d.stats(),
            AnyDiscovery::Gradual(d) => d.stats(),
            AnyDiscovery::Crawl(d) => d.stats(),
            AnyDiscovery::Static(d) => d.stats(),
            AnyDiscovery::Boot(d) => d.stats(),
            AnyDiscovery::All(all) => all
                .iter()
                .map(Discovery::stats)
                .fold(DiscoveryStats::default(), add_stats),
        }
    }
}

/// Advertises through every part; the shortest TTL granted, or the first
/// error if no part could advertise (a part that fails is logged, and the
/// others still serve).
async fn advertise_all(
    all: &[AnyDiscovery],
    namespace: &str,
    ttl: Duration,
) -> Result<Duration, BootError> {
    let mut granted: Option<Duration> = None;
    let mut first_error = None;
    for part in all {
        match Box::pin(part.advertise(namespace, ttl)).await {
            Ok(ttl) => granted = Some(granted.map_or(ttl, |g| g.min(ttl))),
            Err(e) => {
                tracing::warn!(%namespace, error = %e, "one discovery could not advertise");
                first_error.get_or_insert(e);
            }
        }
    }
    match (granted, first_error) {
        (Some(ttl), _) => Ok(ttl),
        (None, Some(e)) => Err(e),
        (None, None) => Ok(ttl),
    }
}

/// One stream of the peers every part finds, each peer once; parts that fail
/// to start are logged and left out unless all fail.
async fn find_peers_all(
    all: &[AnyDiscovery],
    namespace: &str,
    limit: Option<usize>,
) -> Result<PeerStream, BootError> {
    let mut streams = Vec::with_capacity(all.len());
    let mut first_error = None;
    for part in all {
        match Box::pin(part.find_peers(namespace, limit)).await {
            Ok(stream) => streams.push(stream),
            Err(e) => {
                tracing::warn!(%namespace, error = %e, "one discovery could not search");
                first_error.get_or_insert(e);
            }
        }
    }
    if streams.is_empty() {
        if let Some(e) = first_error {
            return Err(e);
        }
    }
    let (mut sink, merged) = PeerStream::channel(limit);
    let task = tokio::task::spawn_local(async move {
        let mut sources = futures::stream::select_all(streams);
        while let Some(peer) = futures::StreamExt::next(&mut sources).await {
            if sink.deliver(peer).await == super::Offer::Closed {
                return;
            }
        }
    });
    Ok(merged.owning(task))
}

/// Counters summed over parts.
fn add_stats(a: DiscoveryStats, b: DiscoveryStats) -> DiscoveryStats {
    DiscoveryStats {
        received: a.received + b.received,
        sent: a.sent + b.sent,
        send_failed: a.send_failed + b.send_failed,
        dropped_oversized: a.dropped_oversized + b.dropped_oversized,
        dropped_malformed: a.dropped_malformed + b.dropped_malformed,
        dropped_source_rate_limited: a.dropped_source_rate_limited + b.dropped_source_rate_limited,
        dropped_unauthenticated: a.dropped_unauthenticated + b.dropped_unauthenticated,
        dropped_unsigned: a.dropped_unsigned + b.dropped_unsigned,
        dropped_bad_signature: a.dropped_bad_signature + b.dropped_bad_signature,
        dropped_signer_mismatch: a.dropped_signer_mismatch + b.dropped_signer_mismatch,
        dropped_not_fresh: a.dropped_not_fresh + b.dropped_not_fresh,
        dropped_namespace: a.dropped_namespace + b.dropped_namespace,
        dropped_self: a.dropped_self + b.dropped_self,
        dropped_rate_limited: a.dropped_rate_limited + b.dropped_rate_limited,
        dropped_stream_full: a.dropped_stream_full + b.dropped_stream_full,
        answers_suppressed: a.answers_suppressed + b.answers_suppressed,
    }
}
