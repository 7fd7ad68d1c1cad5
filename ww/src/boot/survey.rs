//! Multicast survey: ask the group once, hear answers (and others' answers) on it.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::rc::{Rc, Weak};
use std::time::Duration;

use super::clock::WallClock;
use super::packet::{Body, DATAGRAM_MAX_BYTES};
use super::rate::{SOURCE_BURST, SOURCE_RATE_PER_S};
use super::socket::{Shared, Socket, SocketConfig};
use super::stream::{PeerStream, SinkProgress};
use super::{BootError, Discovery, DiscoveryStats};
use crate::transport::{Identity, SwarmKey, Transport};

/// The default multicast group and port.
pub const DEFAULT_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(228, 8, 8, 8), 8822);

/// Settings of a [`MulticastSurvey`]; the defaults keep traffic on this machine.
#[derive(Clone, Debug)]
pub struct SurveyConfig {
    /// The multicast group and port.
    pub group: SocketAddrV4,
    /// The interface (by address) to join the group on; loopback by default.
    pub interface: Ipv4Addr,
    /// The distance `find_peers` surveys at (32 or more: every peer answers).
    pub distance: u8,
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
    /// Outgoing packets waiting for the rate limiter; more are dropped and counted.
    pub send_queue_max: usize,
}

impl Default for SurveyConfig {
    fn default() -> Self {
        SurveyConfig {
            group: DEFAULT_GROUP,
            interface: Ipv4Addr::LOCALHOST,
            distance: u8::MAX,
            rate_per_s: 256,
            burst: 16,
            datagram_max_bytes: DATAGRAM_MAX_BYTES,
            send_queue_max: 64,
            source_rate_per_s: SOURCE_RATE_PER_S,
            source_burst: SOURCE_BURST,
            swarm_key: None,
            wall_clock: WallClock::host(),
        }
    }
}

/// Discovery by multicast survey: `find_peers` sends one survey to the group; peers
/// that advertise the namespace (and are near enough) answer to the group, so every
/// searcher hears every answer. A node also announces itself to the group when it
/// starts advertising a namespace, so searchers that surveyed before it started
/// still find it.
pub struct MulticastSurvey {
    socket: Socket,
    group: SocketAddr,
    distance: u8,
}

impl MulticastSurvey {
    /// Joins the group and starts answering; stops when dropped.
    pub async fn start<T: Transport>(
        transport: &T,
        identity: Identity,
        config: SurveyConfig,
    ) -> Result<Self, BootError> {
        if !config.group.ip().is_multicast() {
            return Err(BootError::Config(format!(
                "group {} is not a multicast address (224.0.0.0/4)",
                config.group
            )));
        }
        super::socket::check_identity(transport, &identity)?;
        let socket = transport
            .bind_multicast(config.group, config.interface)
            .await
            .map_err(BootError::Socket)?;
        let group = SocketAddr::V4(config.group);
        let socket = Socket::start(
            transport,
            identity,
            socket,
            SocketConfig {
                group: Some(group),
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
        tracing::info!(%group, interface = %config.interface, "multicast survey started");
        Ok(MulticastSurvey {
            socket,
            group,
            distance: config.distance,
        })
    }

    /// Opens a result stream without surveying (gradual surveys send their own).
    pub(crate) fn subscribe(
        &self,
        namespace: &str,
        limit: Option<usize>,
    ) -> Result<(PeerStream, Rc<SinkProgress>), BootError> {
        self.socket.subscribe(namespace, limit)
    }

    /// A handle for sending surveys from a task that must not keep the socket alive.
    pub(crate) fn surveyor(&self) -> Surveyor {
        Surveyor {
            shared: self.socket.weak(),
            group: self.group,
        }
    }
}

/// Sends surveys to the group while the survey object lives.
#[derive(Clone)]
pub(crate) struct Surveyor {
    shared: Weak<Shared>,
    group: SocketAddr,
}

impl Surveyor {
    /// Sends one survey at `distance`; `false` if the survey object is gone.
    pub(crate) fn survey(&self, namespace: &str, distance: u8) -> bool {
        let Some(shared) = self.shared.upgrade() else {
            return false;
        };
        let from = shared.local();
        tracing::debug!(%namespace, distance, "surveying");
        shared.try_send(namespace, Body::Survey { from, distance }, self.group);
        true
    }
}

impl Discovery for MulticastSurvey {
    async fn advertise(&self, namespace: &str, ttl: Duration) -> Result<Duration, BootError> {
        let granted = self.socket.advertise(namespace, ttl)?;
        if granted.newly {
            // Announce once, for searchers that surveyed before we were listening.
            self.socket.shared().respond_to_group(namespace, self.group);
        }
        Ok(granted.ttl)
    }

    async fn find_peers(
        &self,
        namespace: &str,
        limit: Option<usize>,
    ) -> Result<PeerStream, BootError> {
        let (stream, _) = self.subscribe(namespace, limit)?;
        self.surveyor().survey(namespace, self.distance);
        Ok(stream)
    }

    fn stats(&self) -> DiscoveryStats {
        self.socket.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_stays_on_loopback() {
        let config = SurveyConfig::default();
        assert_eq!(config.group, DEFAULT_GROUP);
        assert_eq!(config.interface, Ipv4Addr::LOCALHOST);
        assert_eq!((config.rate_per_s, config.burst), (256, 16));
        assert_eq!(config.datagram_max_bytes, 2048);
    }
}
