//! A simulated cluster of membership nodes and what each of them observed.
//!
//! Every node is a turmoil host running the real stack over [`SimTransport`]:
//! multicast-survey discovery (or a boot server's, see [`MemberSetup::boot`]),
//! pubsub and [`Membership`]. Each records its view (sampled) and every leave
//! event into shared [`Observations`] that a test reads between simulation steps.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ww::anchor::{anchor_protocol, AnchorLimits, AnchorServer};
use ww::boot::{
    AnyDiscovery, BootClient, BootServerConfig, BootService, MulticastSurvey, PeerInfo,
    SurveyConfig, WallClock,
};
use ww::cluster::{LeaveReason, Membership, MembershipConfig, ViewEvent};
use ww::pubsub::PubSub;
use ww::records::{take_part, RecordService, RecordsConfig};
use ww::transport::{Address, PeerId, SimConfig, SimTransport, TopicMessage, Transport};

use crate::derive_seed;
use crate::sabotage::DropOneSet;

/// The TCP port every simulated node listens on.
pub const NODE_PORT: u16 = 7000;
/// The topic of the pubsub workload.
pub const TRAFFIC_TOPIC: &str = "sim/traffic";
/// How often a node samples its view into the observations.
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// One node's reported leave of another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaveSeen {
    /// Simulated time of the event.
    pub at: Duration,
    /// The host that saw it.
    pub observer: String,
    /// The peer that left.
    pub peer: PeerId,
    /// Why.
    pub reason: LeaveReason,
}

/// What every node saw, shared between hosts and the test.
#[derive(Default)]
pub struct Observations {
    /// Each host's latest sampled view (peer ids) and when it was sampled.
    pub views: BTreeMap<String, (Duration, BTreeSet<PeerId>)>,
    /// Every leave event, in order.
    pub leaves: Vec<LeaveSeen>,
    /// Each host's number of starts (1 + restarts).
    pub starts: BTreeMap<String, u64>,
    /// Pubsub traffic: every message published, by payload, with its publisher
    /// host and time.
    pub published: BTreeMap<String, (String, Duration)>,
    /// Pubsub traffic: every message received: (observer, payload) -> origin peer
    /// and time of the first receipt, plus how many times it came.
    pub delivered: BTreeMap<(String, String), (PeerId, Duration, u32)>,
    /// Every peer that ever joined a view: its first join, by whom and when.
    pub joined: BTreeMap<PeerId, (String, Duration)>,
}

/// Shared, lockable observations.
pub type SharedObservations = Arc<Mutex<Observations>>;

/// The peer id a host named `name` has under `seed` (stable across restarts).
pub fn peer_of(seed: u64, name: &str) -> PeerId {
    SimConfig::from_seed(seed, name).identity.peer_id()
}

/// Where host `host` listens: `/dns4/<host>/tcp/NODE_PORT`.
pub fn node_address(host: &str) -> Address {
    Address::new(format!("/dns4/{host}/tcp/{NODE_PORT}"))
}

/// Simulated time since the start of the run (zero outside a simulation).
pub fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

/// The wall clock (Unix ms) when a simulation starts: fixed, so runs repeat.
pub const SIM_EPOCH_MS: u64 = 1_700_000_000_000;

/// Every simulated node's wall clock: [`SIM_EPOCH_MS`] plus simulated time, so
/// packet and heartbeat stamps are a function of the seed, never the host's clock.
pub fn sim_wall_clock() -> WallClock {
    WallClock::new(|| {
        let elapsed = u64::try_from(now().as_millis()).unwrap_or(u64::MAX);
        SIM_EPOCH_MS.saturating_add(elapsed)
    })
}

/// How a membership node is set up beyond its name and workload.
#[derive(Clone, Debug, Default)]
pub struct MemberSetup {
    /// The node holds the seed's swarm key.
    pub keyed: bool,
    /// The boot server to discover through (instead of the multicast survey);
    /// the node's topics then form a mesh of the peers it connected to.
    pub boot: Option<PeerInfo>,
    /// The node runs a record service and takes part in the DHT, passing its
    /// records on at this period.
    pub records_every: Option<Duration>,
    /// The node serves its anchors.
    pub anchors: bool,
    /// [`Sabotage::DropAnchorSet`](crate::Sabotage::DropAnchorSet): the
    /// anchors are served through [`DropOneSet`](crate::sabotage::DropOneSet),
    /// striking once among the hosts sharing this flag.
    pub drop_anchor_set: Option<Rc<Cell<bool>>>,
}

/// The boot server of host `host` under `seed`: its peer id and address.
pub fn boot_server_info(seed: u64, host: &str) -> PeerInfo {
    PeerInfo {
        peer: peer_of(seed, host),
        addresses: vec![node_address(host)],
    }
}

/// Runs a boot server as the body of turmoil host `host`: a [`BootService`]
/// with default limits on the simulation's wall clock, listening on
/// [`node_address`]. A restart starts it empty, as a real restart does.
pub async fn run_boot_server(
    seed: u64,
    host: String,
    keyed: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let config = crate::host_config(seed, &host, keyed);
    let service = BootService::new(BootServerConfig {
        swarm_key: config.swarm_key.clone(),
        wall_clock: sim_wall_clock(),
        ..BootServerConfig::default()
    });
    let transport = SimTransport::new(config);
    let _serving = service.serve(&transport)?;
    transport.listen(node_address(&host)).await?;
    tracing::info!(host = %host, "sim: boot server up");
    std::future::pending().await
}

/// Adds host `host` running [`run_boot_server`] to `sim`.
pub fn add_boot_server(sim: &mut turmoil::Sim<'_>, seed: u64, host: &str, keyed: bool) {
    let host = host.to_string();
    sim.host(host.clone(), move || {
        run_boot_server(seed, host.clone(), keyed)
    });
}

/// Runs one membership node as the body of turmoil host `name`. Each start
/// (including after a crash) is a new instance with its own derived seed.
pub async fn run_member(
    seed: u64,
    name: String,
    ttl_ms: u32,
    publish_every: Option<Duration>,
    observations: SharedObservations,
    restarts: Arc<AtomicU64>,
    setup: MemberSetup,
) -> Result<(), Box<dyn std::error::Error>> {
    let start = restarts.fetch_add(1, Ordering::SeqCst);
    {
        let mut observations = observations.lock().unwrap_or_else(|p| p.into_inner());
        observations.starts.insert(name.clone(), start + 1);
        // A new instance has no view until it samples one; the last instance's
        // must not stand in for it.
        observations.views.remove(&name);
    }
    let mut config = crate::host_config(seed, &name, setup.keyed);
    config.mesh = setup.boot.is_some();
    let identity = config.identity.clone();
    let (transport, pubsub, membership) =
        join_cluster_via(seed, &name, start, config, setup.boot.as_ref(), |config| {
            config.ttl_ms = ttl_ms
        })
        .await?;
    let membership = Rc::new(membership);
    // Both services start empty on every start: a restart loses what they held.
    let _records = match setup.records_every {
        Some(every) => {
            let service = RecordService::new(RecordsConfig {
                wall_clock: sim_wall_clock(),
                republish_every: every,
                ..RecordsConfig::default()
            });
            let serving = service.serve(&transport)?;
            let view = membership.clone();
            let part = tokio::task::spawn_local(take_part(
                service,
                transport.clone(),
                identity,
                move || view.view_peers(),
            ));
            Some((serving, part))
        }
        None => None,
    };
    let _anchors = serve_anchors(&transport, &setup)?;
    let mut events = membership.watch();
    let mut sample = tokio::time::interval(SAMPLE_INTERVAL);
    let topic = pubsub.join(TRAFFIC_TOPIC);
    let mut traffic = match publish_every {
        Some(_) => Some(topic.subscribe(1024).await?),
        None => None,
    };
    // Without traffic the timer is never polled (its branch is disabled).
    let mut publish = tokio::time::interval(publish_every.unwrap_or(Duration::from_secs(3600)));
    let mut published = 0u64;
    loop {
        tokio::select! {
            // Fixed branch order: tokio picks randomly otherwise, unseeded by turmoil.
            biased;
            Some(message) = async { traffic.as_mut()?.recv().await }, if traffic.is_some() => {
                note_delivery(&observations, &name, &message);
            }
            _ = publish.tick(), if publish_every.is_some() => {
                let payload = format!("{name}/{start}/{published}");
                published += 1;
                if topic.publish(payload.clone().into_bytes()).await.is_ok() {
                    observations
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .published
                        .insert(payload, (name.clone(), now()));
                }
            }
            event = events.next() => note_view_event(&observations, &name, event),
            _ = sample.tick() => {
                // The peer ids only: cloning every record of every view ten
                // times a second was a tenth of a 32-node run's wall time.
                let view = membership.view_peers();
                observations
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .views
                    .insert(name.clone(), (now(), view));
            }
        }
    }
}

/// The anchor service of a member that runs one (with the sabotage that drops
/// one set, if the scenario struck it).
fn serve_anchors(
    transport: &SimTransport,
    setup: &MemberSetup,
) -> Result<Option<ww::rpc::ServeHandle>, Box<dyn std::error::Error>> {
    if !setup.anchors {
        return Ok(None);
    }
    let server = AnchorServer::new(AnchorLimits::default());
    let client = match &setup.drop_anchor_set {
        Some(struck) => capnp_rpc::new_client(DropOneSet::new(server, struck.clone())),
        None => server.client(),
    };
    Ok(Some(ww::rpc::serve(
        transport,
        &anchor_protocol(),
        client.client,
    )?))
}

/// Member `name` heard `message` on the traffic topic.
fn note_delivery(observations: &SharedObservations, name: &str, message: &TopicMessage) {
    let payload = String::from_utf8_lossy(&message.payload).into_owned();
    let mut observations = observations.lock().unwrap_or_else(|p| p.into_inner());
    observations
        .delivered
        .entry((name.to_string(), payload))
        .and_modify(|(_, _, count)| *count += 1)
        .or_insert((message.origin, now(), 1));
}

/// Member `name`'s view changed: a first join and every leave are noted.
fn note_view_event(observations: &SharedObservations, name: &str, event: Option<ViewEvent>) {
    if let Some(ViewEvent::Joined(record)) = &event {
        observations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .joined
            .entry(record.peer)
            .or_insert_with(|| (name.to_string(), now()));
    }
    if let Some(ViewEvent::Left { peer, reason, .. }) = event {
        tracing::debug!(observer = %name, %peer, ?reason, "sim: leave seen");
        observations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .leaves
            .push(LeaveSeen {
                at: now(),
                observer: name.to_string(),
                peer,
                reason,
            });
    }
}

/// Starts host `name`'s node (start number `start`) on `config`, listening on
/// [`node_address`], with multicast-survey discovery, pubsub and membership on the
/// simulation's wall clock and the transport's swarm key; `adjust` changes the
/// membership settings before it starts.
pub async fn join_cluster(
    seed: u64,
    name: &str,
    start: u64,
    config: SimConfig,
    adjust: impl FnOnce(&mut MembershipConfig),
) -> Result<(SimTransport, PubSub<SimTransport>, Membership), Box<dyn std::error::Error>> {
    join_cluster_via(seed, name, start, config, None, adjust).await
}

/// [`join_cluster`], discovering through the boot server `boot` when given
/// (a [`BootClient`]) instead of the multicast survey.
pub async fn join_cluster_via(
    seed: u64,
    name: &str,
    start: u64,
    config: SimConfig,
    boot: Option<&PeerInfo>,
    adjust: impl FnOnce(&mut MembershipConfig),
) -> Result<(SimTransport, PubSub<SimTransport>, Membership), Box<dyn std::error::Error>> {
    let identity = config.identity.clone();
    let swarm_key = config.swarm_key.clone();
    let transport = SimTransport::new(config);
    transport.listen(node_address(name)).await?;
    let discovery = match boot {
        Some(server) => AnyDiscovery::Boot(Box::new(BootClient::new(
            &transport,
            identity,
            server,
            swarm_key.clone(),
            sim_wall_clock(),
        )?)),
        None => {
            let survey_config = SurveyConfig {
                wall_clock: sim_wall_clock(),
                swarm_key: swarm_key.clone(),
                ..SurveyConfig::default()
            };
            AnyDiscovery::Multicast(
                MulticastSurvey::start(&transport, identity, survey_config).await?,
            )
        }
    };
    let pubsub = PubSub::new(transport.clone());
    let mut membership_config = MembershipConfig {
        wall_clock: sim_wall_clock(),
        swarm_key,
        ..MembershipConfig::new(name, derive_seed(seed, &format!("{name}/start/{start}")))
    };
    adjust(&mut membership_config);
    let membership =
        Membership::start(transport.clone(), &pubsub, discovery, membership_config).await?;
    Ok((transport, pubsub, membership))
}

/// Adds `names` as membership hosts to `sim`, returning the shared observations.
pub fn add_members(
    sim: &mut turmoil::Sim<'_>,
    seed: u64,
    names: &[String],
    ttl_ms: u32,
    publish_every: Option<Duration>,
) -> SharedObservations {
    add_members_with(
        sim,
        seed,
        names,
        ttl_ms,
        publish_every,
        &MemberSetup::default(),
    )
}

/// [`add_members`], every member holding the seed's swarm key when `keyed`.
pub fn add_members_keyed(
    sim: &mut turmoil::Sim<'_>,
    seed: u64,
    names: &[String],
    ttl_ms: u32,
    publish_every: Option<Duration>,
    keyed: bool,
) -> SharedObservations {
    let setup = MemberSetup {
        keyed,
        ..MemberSetup::default()
    };
    add_members_with(sim, seed, names, ttl_ms, publish_every, &setup)
}

/// [`add_members`], every member set up as `setup` says.
pub fn add_members_with(
    sim: &mut turmoil::Sim<'_>,
    seed: u64,
    names: &[String],
    ttl_ms: u32,
    publish_every: Option<Duration>,
    setup: &MemberSetup,
) -> SharedObservations {
    let observations = SharedObservations::default();
    for name in names {
        let restarts = Arc::new(AtomicU64::new(0));
        let observations = observations.clone();
        let name = name.clone();
        let setup = setup.clone();
        sim.host(name.clone(), move || {
            run_member(
                seed,
                name.clone(),
                ttl_ms,
                publish_every,
                observations.clone(),
                restarts.clone(),
                setup.clone(),
            )
        });
    }
    observations
}
