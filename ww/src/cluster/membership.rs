//! The membership driver: the thin async code around the sans-IO [`RoutingTable`].
//!
//! It publishes this node's heartbeat on the namespace's topic (stamped with the
//! wall clock and, with a swarm key, tagged for this node's peer id), applies every
//! heartbeat it hears that is authentic for its publisher, expires silent peers,
//! and keeps discovery feeding the transport with peer addresses (real hosts need
//! connections for gossip).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use futures::StreamExt;
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{
    Heartbeat, HeartbeatError, Query, Record, Rejected, RoutingTable, TableConfig, ViewEvent,
};
use crate::boot::{Discovery, WallClock};
use crate::pubsub::{PubSub, PubSubError, Subscription, Topic};
use crate::transport::{PeerId, SwarmKey, Transport};

/// Heartbeats sent per TTL, on average. With the +-10% jitter six intervals span
/// at most 0.943 TTL, so five heartbeats lost in a row never expire a live peer,
/// with 5.7% of the TTL to spare for latency (the original sent one per
/// TTL/2..TTL and flapped). Six per TTL left no room: six jittered intervals
/// could exceed the TTL, and swarm runs under 5% loss expired live peers that
/// had lost five.
pub const HEARTBEATS_PER_TTL: u32 = 7;
/// The longest the expiry task sleeps: a silent peer leaves within TTL plus this.
pub const EXPIRY_TICK_MS: u64 = 1_000;
/// Events a watcher may fall behind by before it loses some (and is told how many).
pub const WATCH_BUFFER: usize = 1_024;
/// How long discovery is asked to answer for us before we ask again.
const ADVERTISE_TTL: Duration = Duration::from_secs(120);
/// How often a fresh survey is sent, to catch nodes that started after us.
const RESURVEY_INTERVAL: Duration = Duration::from_secs(30);
/// The shortest wait before renewing an advertisement, however short the TTL granted.
const ADVERTISE_RENEW_MIN: Duration = Duration::from_secs(1);
/// How long to wait before advertising again after a failure.
const ADVERTISE_RETRY: Duration = Duration::from_secs(5);
/// Heartbeats waiting to be applied; a flood beyond this is dropped (and counted).
const RECEIVE_BUFFER: usize = 1_024;

/// How a node takes part in the cluster.
#[derive(Clone, Debug)]
pub struct MembershipConfig {
    /// The cluster's namespace: discovery namespace and heartbeat topic.
    pub namespace: String,
    /// How long others keep our record without a newer heartbeat.
    pub ttl_ms: u32,
    /// Our host name, as others see it.
    pub host: String,
    /// `key=value` pairs others can query by (e.g. `role=gateway`).
    pub meta: Vec<(String, String)>,
    /// Seeds the instance id and the heartbeat jitter (derive it from the
    /// simulation seed in simulations; from OS randomness on real hosts).
    pub seed: u64,
    /// Whether to send heartbeats; an observer (`ww-sched peers`) only listens.
    pub announce: bool,
    /// The cluster's key: our heartbeats carry its tag, and only heartbeats
    /// carrying its tag for their publisher are admitted to the view. Without
    /// one, heartbeats are untagged (loopback and trusted networks only).
    pub swarm_key: Option<SwarmKey>,
    /// The clock heartbeats are stamped with and the view is kept in (simulations
    /// pass virtual time; real hosts [`WallClock::host`]).
    pub wall_clock: WallClock,
}

impl MembershipConfig {
    /// Namespace `ww`, TTL 10 s, announcing, with the given host name and seed.
    pub fn new(host: impl Into<String>, seed: u64) -> Self {
        MembershipConfig {
            namespace: "ww".into(),
            ttl_ms: 10_000,
            host: host.into(),
            meta: Vec::new(),
            seed,
            announce: true,
            swarm_key: None,
            wall_clock: WallClock::host(),
        }
    }

    /// The mean time between two heartbeats.
    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.ttl_ms / HEARTBEATS_PER_TTL))
    }
}

/// Why membership could not start; nothing was left running.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    /// The heartbeat would be invalid (bad TTL, host or meta).
    #[error("invalid heartbeat: {0}")]
    Heartbeat(#[from] HeartbeatError),
    /// Subscribing to the namespace's topic failed.
    #[error(transparent)]
    PubSub(#[from] PubSubError),
}

/// What happened to the heartbeats a membership heard, since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MembershipStats {
    /// Heartbeats heard (our own included), before any check.
    pub received: u64,
    /// Applied to the view (joined, updated or replaced a record).
    pub applied: u64,
    /// Refused: not a well-formed heartbeat.
    pub malformed: u64,
    /// Refused: the swarm-key tag is missing, wrong for the publisher, or unexpected.
    pub unauthenticated: u64,
    /// Refused: `sent_ms` outside the freshness window of our clock.
    pub not_fresh: u64,
    /// Refused: not newer than the instance's last (duplicate or reordered).
    pub stale: u64,
    /// Refused: from an instance that left the view (retired or buried), or from
    /// an earlier run than the one held (late or replayed).
    pub replayed: u64,
    /// Refused: the view is full.
    pub table_full: u64,
}

impl MembershipStats {
    /// Every refused heartbeat, whatever the reason.
    pub fn rejected(&self) -> u64 {
        self.malformed
            + self.unauthenticated
            + self.not_fresh
            + self.stale
            + self.replayed
            + self.table_full
    }

    fn count(&mut self, rejected: &Rejected) {
        let counter = match rejected {
            Rejected::Stale { .. } => &mut self.stale,
            Rejected::RetiredInstance { .. }
            | Rejected::Tombstoned { .. }
            | Rejected::EarlierRun { .. } => &mut self.replayed,
            Rejected::NotFresh { .. } => &mut self.not_fresh,
            Rejected::TableFull { .. } => &mut self.table_full,
        };
        *counter += 1;
    }
}

struct Shared {
    table: RoutingTable,
    watchers: Vec<mpsc::Sender<ViewEvent>>,
    lagged: u64,
    stats: MembershipStats,
}

impl Shared {
    fn publish_events(&mut self) {
        let events = self.table.drain_events();
        for event in events {
            tracing::debug!(?event, "view changed");
            let mut lagged = 0;
            self.watchers.retain(|w| match w.try_send(event.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    lagged += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            });
            self.lagged += lagged;
        }
    }
}

/// A node's live membership view. Dropping it stops heartbeats and discovery.
pub struct Membership {
    shared: Rc<RefCell<Shared>>,
    clock: WallClock,
    local: PeerId,
    instance: u64,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Reads the discovery's counters (it is shared with the task that drives it).
    discovery_stats: Box<dyn Fn() -> crate::boot::DiscoveryStats>,
}

impl Drop for Membership {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Membership {
    /// Joins the cluster: subscribes to the namespace's heartbeats, starts
    /// announcing (if configured) and keeps `discovery` feeding peer addresses to
    /// the transport. Must be called inside a `LocalSet`.
    pub async fn start<T, D>(
        transport: T,
        pubsub: &PubSub<T>,
        discovery: D,
        config: MembershipConfig,
    ) -> Result<Self, MembershipError>
    where
        T: Transport,
        D: Discovery + 'static,
    {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let instance = rng.next_u64();
        let template = Heartbeat::new(
            config.ttl_ms,
            instance,
            0,
            config.host.clone(),
            config.meta.clone(),
        )?;
        let topic = pubsub.join(&config.namespace);
        let heartbeats = topic.subscribe(RECEIVE_BUFFER).await?;
        let shared = Rc::new(RefCell::new(Shared {
            table: RoutingTable::new(TableConfig::default()),
            watchers: Vec::new(),
            lagged: 0,
            stats: MembershipStats::default(),
        }));
        let clock = config.wall_clock.clone();
        let local = transport.local_peer_id();
        let mut tasks = Vec::new();

        tasks.push(tokio::task::spawn_local(receive_heartbeats(
            heartbeats,
            shared.clone(),
            config.swarm_key.clone(),
            clock.clone(),
        )));
        tasks.push(tokio::task::spawn_local(expire_members(
            shared.clone(),
            clock.clone(),
        )));

        if config.announce {
            tasks.push(tokio::task::spawn_local(announce(
                topic,
                template,
                Announcing {
                    interval_ms: u64::from(config.ttl_ms / HEARTBEATS_PER_TTL),
                    namespace: config.namespace.clone(),
                    key: config.swarm_key.clone(),
                    clock: clock.clone(),
                    local,
                    rng,
                },
            )));
        }

        let discovery = Rc::new(discovery);
        let counted = discovery.clone();
        tasks.push(tokio::task::spawn_local(keep_discovering(
            transport.clone(),
            discovery,
            config.namespace.clone(),
            config.announce,
        )));

        Ok(Membership {
            shared,
            clock,
            local,
            instance,
            tasks,
            discovery_stats: Box::new(move || counted.stats()),
        })
    }

    /// What the discovery this membership drives has counted (for metrics).
    pub fn discovery_stats(&self) -> crate::boot::DiscoveryStats {
        (self.discovery_stats)()
    }

    /// The wall clock (Unix ms) records are kept in.
    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    /// This node's peer id.
    pub fn local_peer_id(&self) -> PeerId {
        self.local
    }

    /// This node's instance id (new on every start).
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// The records matching `query`, ordered by peer id: a point-in-time snapshot of
    /// the local view (PA/EL: other nodes may see otherwise).
    pub fn view(&self, query: &Query) -> Vec<Record> {
        let mut shared = self.shared.borrow_mut();
        // Expire first so a caller never sees a record past its deadline.
        shared.table.expire(self.now_ms());
        shared.publish_events();
        shared.table.query(query)
    }

    /// The peers in the view, as [`Membership::view`] with [`Query::all`] would
    /// list them (expiring first, as it does), without copying their records.
    pub fn view_peers(&self) -> std::collections::BTreeSet<PeerId> {
        let mut shared = self.shared.borrow_mut();
        shared.table.expire(self.now_ms());
        shared.publish_events();
        shared.table.iter().map(|record| record.peer).collect()
    }

    /// Join, update and leave events from now on. A watcher that falls more than
    /// [`WATCH_BUFFER`] events behind loses events; [`Membership::events_lagged`]
    /// counts them.
    pub fn watch(&self) -> Watch {
        let (sender, receiver) = mpsc::channel(WATCH_BUFFER);
        self.shared.borrow_mut().watchers.push(sender);
        Watch(receiver)
    }

    /// Events lost by watchers that fell behind.
    pub fn events_lagged(&self) -> u64 {
        self.shared.borrow().lagged
    }

    /// Heartbeats refused for any reason ([`Membership::stats`] says which).
    pub fn heartbeats_rejected(&self) -> u64 {
        self.shared.borrow().stats.rejected()
    }

    /// What happened to the heartbeats heard so far.
    pub fn stats(&self) -> MembershipStats {
        self.shared.borrow().stats
    }

    /// How many left instances are remembered so their replays are refused.
    pub fn tombstones(&self) -> usize {
        self.shared.borrow().table.tombstones()
    }
}

/// A stream of view events.
pub struct Watch(mpsc::Receiver<ViewEvent>);

impl Watch {
    /// The next event; `None` once the membership has stopped.
    pub async fn next(&mut self) -> Option<ViewEvent> {
        self.0.recv().await
    }
}

/// Applies every heartbeat heard on the namespace to the routing table,
/// counting those dropped (unauthenticated, malformed, not applied).
async fn receive_heartbeats(
    mut heartbeats: Subscription,
    shared: Rc<RefCell<Shared>>,
    key: Option<SwarmKey>,
    now: WallClock,
) {
    while let Some(message) = heartbeats.recv().await {
        let mut shared = shared.borrow_mut();
        shared.stats.received += 1;
        let origin = message.origin;
        let heartbeat = match Heartbeat::open(&message.payload, key.as_ref(), &origin) {
            Ok(heartbeat) => heartbeat,
            Err(e) => {
                tracing::debug!(%origin, error = %e, "heartbeat dropped");
                match e {
                    HeartbeatError::Unauthenticated => shared.stats.unauthenticated += 1,
                    _ => shared.stats.malformed += 1,
                }
                continue;
            }
        };
        match shared.table.apply(now.now_ms(), origin, heartbeat) {
            Ok(_) => shared.stats.applied += 1,
            Err(e) => {
                tracing::trace!(%origin, error = %e, "heartbeat not applied");
                shared.stats.count(&e);
            }
        }
        shared.publish_events();
    }
}

/// Drops members whose heartbeats stopped, at their deadlines (or every
/// `EXPIRY_TICK_MS` at least).
async fn expire_members(shared: Rc<RefCell<Shared>>, now: WallClock) {
    loop {
        let now_ms = now.now_ms();
        let next = shared.borrow().table.next_deadline_ms();
        let wait_ms = next.map_or(EXPIRY_TICK_MS, |deadline| {
            deadline.saturating_sub(now_ms).min(EXPIRY_TICK_MS)
        });
        tokio::time::sleep(Duration::from_millis(wait_ms)).await;
        let mut shared = shared.borrow_mut();
        let left = shared.table.expire(now.now_ms());
        if !left.is_empty() {
            shared.publish_events();
        }
    }
}

/// How a member announces itself.
struct Announcing {
    interval_ms: u64,
    namespace: String,
    key: Option<SwarmKey>,
    clock: WallClock,
    local: PeerId,
    rng: ChaCha8Rng,
}

/// Publishes this member's heartbeat every `interval_ms`, with jitter.
async fn announce<T: Transport>(topic: Topic<T>, template: Heartbeat, mut how: Announcing) {
    let mut seq: u64 = 0;
    loop {
        seq += 1;
        let beat = template
            .clone()
            .with_seq(seq)
            .with_sent_ms(how.clock.now_ms())
            .seal(how.key.as_ref(), &how.local);
        if let Err(e) = topic.publish(beat).await {
            tracing::debug!(namespace = %how.namespace, error = %e, "heartbeat not sent");
        }
        // +-10% jitter keeps a cluster started at once from beating in lockstep.
        let jitter = how.interval_ms / 10;
        let wait = how.interval_ms - jitter + how.rng.next_u64() % (2 * jitter + 1);
        tokio::time::sleep(Duration::from_millis(wait)).await;
    }
}

/// Advertises our namespace and hands every discovered peer's addresses to the
/// transport, resurveying now and then for nodes that started after us.
/// Advertising runs on its own timer beside the rounds: a round can last its
/// whole period (a multicast stream never ends), and a registration must be
/// renewed at half its granted TTL, before it lapses.
async fn keep_discovering<T: Transport, D: Discovery>(
    transport: T,
    discovery: Rc<D>,
    namespace: String,
    announce: bool,
) {
    let advertising = async {
        if !announce {
            return std::future::pending::<()>().await;
        }
        loop {
            let wait = match discovery.advertise(&namespace, ADVERTISE_TTL).await {
                Ok(granted) => (granted / 2).max(ADVERTISE_RENEW_MIN),
                Err(e) => {
                    tracing::warn!(%namespace, error = %e, "advertise failed");
                    ADVERTISE_RETRY
                }
            };
            tokio::time::sleep(wait).await;
        }
    };
    let local = transport.local_peer_id();
    let searching = async {
        loop {
            let round = async {
                let mut peers = match discovery.find_peers(&namespace, None).await {
                    Ok(peers) => peers,
                    Err(e) => {
                        tracing::warn!(%namespace, error = %e, "discovery failed");
                        return;
                    }
                };
                while let Some(found) = peers.next().await {
                    if found.peer == local {
                        continue;
                    }
                    for address in found.addresses {
                        if let Err(e) = transport.add_peer_address(found.peer, address) {
                            tracing::debug!(peer = %found.peer, error = %e, "address not usable");
                        }
                    }
                    if let Err(e) = transport.connect(found.peer).await {
                        tracing::debug!(peer = %found.peer, error = %e, "connect failed");
                    }
                }
            };
            // A round ends when its stream ends (static lists) or at the resurvey time.
            let round_started = Instant::now();
            let _ = tokio::time::timeout(RESURVEY_INTERVAL, round).await;
            tokio::time::sleep_until(round_started + RESURVEY_INTERVAL).await;
        }
    };
    futures::join!(advertising, searching);
}
