//! A fixed list of peers, as given on the command line.

use std::time::Duration;

use super::stream::PeerStream;
use super::{BootError, Discovery, DiscoveryStats, PeerInfo};

/// Discovery from a fixed list: every namespace finds the same peers, then ends.
#[derive(Clone, Debug, Default)]
pub struct StaticPeers {
    peers: Vec<PeerInfo>,
}

impl StaticPeers {
    /// A list of known peers (duplicates by id are yielded once).
    pub fn new(peers: Vec<PeerInfo>) -> Self {
        StaticPeers { peers }
    }

    /// The peers as configured.
    pub fn peers(&self) -> &[PeerInfo] {
        &self.peers
    }
}

impl Discovery for StaticPeers {
    /// Nothing to announce: others find us only if their lists name us.
    async fn advertise(&self, namespace: &str, ttl: Duration) -> Result<Duration, BootError> {
        super::tracker::check_namespace(namespace)?;
        Ok(ttl)
    }

    async fn find_peers(
        &self,
        namespace: &str,
        limit: Option<usize>,
    ) -> Result<PeerStream, BootError> {
        super::tracker::check_namespace(namespace)?;
        Ok(PeerStream::from_peers(self.peers.clone(), limit))
    }

    fn stats(&self) -> DiscoveryStats {
        DiscoveryStats::default()
    }
}
