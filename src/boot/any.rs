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
        match spec {
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
        }
    }
}
