//! The closed cluster in a deterministic turmoil simulation: with a swarm key,
//! nodes without it (or with another) are never in a keyed node's view and never
//! answered; a captured heartbeat replayed after its node expired does not revive
//! it; a node whose clock is far off is refused; and a datagram flood from one
//! source is rate-limited while legitimate nodes keep their view.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::rc::Rc;
use std::time::Duration;

mod sim_support;

use futures::StreamExt;
use sim_support::{clock, node, peer_of, sim, SimResult};
use tokio::time::Instant;
use ww::boot::packet::{self, Body, Packet};
use ww::boot::{
    CidrCrawl, CrawlConfig, Discovery, DiscoveryStats, MulticastSurvey, SurveyConfig, DEFAULT_GROUP,
};
use ww::cluster::{Membership, MembershipConfig, MembershipStats, Query};
use ww::pubsub::PubSub;
use ww::transport::{Datagram, Identity, PeerId, SimConfig, SimTransport, SwarmKey, Transport};

/// Heartbeat TTL of every member: short, so expiry happens within a run.
const TTL_MS: u32 = 2_000;
/// How often a member samples its view.
const SAMPLE: Duration = Duration::from_millis(250);
/// The simulated pubsub medium's group (see `transport/sim.rs`): a replay sent
/// there with the victim's origin models gossipsub re-forwarding the victim's
/// signed message, whose origin stays authenticated.
const PUBSUB_GROUP: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(239, 255, 77, 77), 7946);

fn cluster_key() -> SwarmKey {
    SwarmKey::from_bytes([0xc1; 32])
}

fn other_key() -> SwarmKey {
    SwarmKey::from_bytes([0x07; 32])
}

/// What one member saw: its sampled views (time, peers) and final counters.
#[derive(Default)]
struct Seen {
    views: Vec<(Duration, BTreeSet<PeerId>)>,
    membership: MembershipStats,
    discovery: DiscoveryStats,
}

type Observed = Rc<RefCell<BTreeMap<String, Seen>>>;
/// Topic messages Eve recorded: (origin, payload).
type Captured = Rc<RefCell<Vec<(PeerId, Vec<u8>)>>>;

/// How a member runs.
#[derive(Clone)]
struct Member {
    name: &'static str,
    key: Option<SwarmKey>,
    skew_ms: i64,
    run_for: Duration,
}

impl Member {
    fn keyed(name: &'static str, run_for: Duration) -> Self {
        Member {
            name,
            key: Some(cluster_key()),
            skew_ms: 0,
            run_for,
        }
    }
}

/// Runs multicast discovery and membership for `member.run_for`, sampling the view.
async fn run_member(seed: u64, member: Member, observed: Observed) -> SimResult {
    let started = Instant::now();
    let (transport, identity) = node(seed, member.name).await?;
    let survey = SurveyConfig {
        swarm_key: member.key.clone(),
        wall_clock: clock(member.skew_ms),
        ..SurveyConfig::default()
    };
    let discovery = Rc::new(MulticastSurvey::start(&transport, identity, survey).await?);
    let pubsub = PubSub::new(transport.clone());
    let config = MembershipConfig {
        ttl_ms: TTL_MS,
        swarm_key: member.key.clone(),
        wall_clock: clock(member.skew_ms),
        ..MembershipConfig::new(member.name, seed ^ u64::from(member.name.len() as u32))
    };
    let membership = Membership::start(transport, &pubsub, discovery.clone(), config).await?;
    while started.elapsed() < member.run_for {
        tokio::time::sleep(SAMPLE).await;
        let view = membership
            .view(&Query::all())
            .iter()
            .map(|r| r.peer)
            .collect();
        let at = turmoil::sim_elapsed().unwrap_or_default();
        let mut observed = observed.borrow_mut();
        let seen = observed.entry(member.name.to_string()).or_default();
        seen.views.push((at, view));
        seen.membership = membership.stats();
        seen.discovery = discovery.stats();
    }
    Ok(())
}

/// The peers `name` had in view at its last sample.
fn last_view(observed: &Observed, name: &str) -> BTreeSet<PeerId> {
    let observed = observed.borrow();
    let seen = observed.get(name).expect("member ran");
    seen.views
        .last()
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

#[test]
fn nodes_without_the_key_are_never_in_a_keyed_view() -> SimResult {
    const SEED: u64 = 21;
    let run_for = Duration::from_secs(20);
    let keyed = ["k0", "k1", "k2"];
    let outsiders = [
        Member {
            name: "open",
            key: None,
            skew_ms: 0,
            run_for,
        },
        Member {
            name: "stranger",
            key: Some(other_key()),
            skew_ms: 0,
            run_for,
        },
    ];
    let observed: Observed = Rc::default();
    let mut sim = sim(SEED, Duration::from_secs(40));
    for name in keyed {
        let observed = observed.clone();
        sim.client(
            name,
            run_member(SEED, Member::keyed(name, run_for), observed),
        );
    }
    for member in outsiders.clone() {
        let observed = observed.clone();
        sim.client(member.name, run_member(SEED, member, observed));
    }
    sim.run()?;

    let insiders: BTreeSet<PeerId> = keyed.iter().map(|n| peer_of(SEED, n)).collect();
    let strangers: BTreeSet<PeerId> = outsiders.iter().map(|m| peer_of(SEED, m.name)).collect();
    for name in keyed {
        assert_eq!(last_view(&observed, name), insiders, "{name}'s final view");
        let observed = observed.borrow();
        let seen = &observed[name];
        for (at, view) in &seen.views {
            assert!(
                view.is_disjoint(&strangers),
                "{name} admitted an outsider at {at:?}"
            );
        }
        // Both outsiders' heartbeats and discovery packets reached it and were refused.
        assert!(seen.membership.unauthenticated > 0, "{:?}", seen.membership);
        assert!(
            seen.discovery.dropped_unauthenticated > 0,
            "{:?}",
            seen.discovery
        );
        assert_eq!(seen.discovery.dropped_bad_signature, 0);
    }
    // The outsiders never saw the cluster either (nor each other: neither has
    // the other's key, and a keyless node refuses tagged packets).
    for member in &outsiders {
        let observed = observed.borrow();
        let seen = &observed[member.name];
        for (at, view) in &seen.views {
            assert!(
                view.is_disjoint(&insiders),
                "{} saw the cluster at {at:?}",
                member.name
            );
        }
        assert_eq!(
            last_view_of(seen),
            BTreeSet::from([peer_of(SEED, member.name)])
        );
    }
    Ok(())
}

fn last_view_of(seen: &Seen) -> BTreeSet<PeerId> {
    seen.views
        .last()
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

#[test]
fn unauthenticated_requests_are_not_answered() -> SimResult {
    const SEED: u64 = 22;
    const PORT: u16 = 2020;
    let names = ["c0", "c1"];
    let crawl_config = |key: Option<SwarmKey>| CrawlConfig {
        swarm_key: key,
        wall_clock: clock(0),
        seed: SEED,
        ..CrawlConfig::new(Ipv4Addr::new(192, 168, 0, 0), 24, PORT)
    };
    let stats: Rc<RefCell<Vec<DiscoveryStats>>> = Rc::default();
    let mut sim = sim(SEED, Duration::from_secs(60));
    for name in names {
        let stats = stats.clone();
        sim.client(name, async move {
            let (transport, identity) = node(SEED, name).await?;
            let crawl =
                CidrCrawl::start(&transport, identity, crawl_config(Some(cluster_key()))).await?;
            crawl.advertise("ww", Duration::from_secs(600)).await?;
            tokio::time::sleep(Duration::from_secs(30)).await;
            stats.borrow_mut().push(crawl.stats());
            Ok(())
        });
    }
    // A prober without the key asks every node by unicast, with a spoofable
    // source: an answer would make the node a reflector.
    sim.client("prober", async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let transport = SimTransport::new(SimConfig::from_seed(SEED, "prober"));
        let socket = transport
            .bind_datagram((Ipv4Addr::UNSPECIFIED, PORT).into())
            .await?;
        let me = Identity::from_secret([9; 32]);
        let request = Packet {
            namespace: "ww".into(),
            sent_ms: clock(0).now_ms(),
            body: Body::Request { from: me.peer_id() },
        };
        for name in names {
            let target = SocketAddr::new(turmoil::lookup(name), PORT);
            for key in [None, Some(other_key())] {
                let datagram = packet::seal(&me, key.as_ref(), &request)?;
                socket.send_to(&datagram, target).await?;
            }
        }
        let mut buffer = [0u8; 4096];
        let answer =
            tokio::time::timeout(Duration::from_secs(5), socket.recv_from(&mut buffer)).await;
        assert!(answer.is_err(), "an unauthenticated request was answered");
        Ok(())
    });
    // A crawler with the key finds both.
    sim.client("member", async move {
        tokio::time::sleep(Duration::from_secs(8)).await;
        let (transport, identity) = node(SEED, "member").await?;
        let crawl =
            CidrCrawl::start(&transport, identity, crawl_config(Some(cluster_key()))).await?;
        let peers = crawl.find_peers("ww", Some(names.len())).await?;
        let found: BTreeSet<PeerId> =
            tokio::time::timeout(Duration::from_secs(15), peers.collect::<Vec<_>>())
                .await?
                .into_iter()
                .map(|p| p.peer)
                .collect();
        let expected: BTreeSet<PeerId> = names.iter().map(|n| peer_of(SEED, n)).collect();
        assert_eq!(found, expected);
        Ok(())
    });
    sim.run()?;
    let stats = stats.borrow();
    assert_eq!(stats.len(), names.len());
    for stats in stats.iter() {
        // The prober's two requests; the keyed crawler's one was answered.
        assert_eq!(stats.dropped_unauthenticated, 2, "{stats:?}");
    }
    Ok(())
}

#[test]
fn a_replayed_heartbeat_does_not_revive_a_dead_node_and_a_skewed_clock_is_refused() -> SimResult {
    const SEED: u64 = 23;
    let observed: Observed = Rc::default();
    let captured: Captured = Rc::default();
    let victim = peer_of(SEED, "victim");
    let skewed = peer_of(SEED, "skewed");
    let mut sim = sim(SEED, Duration::from_secs(60));
    // The observer runs throughout.
    sim.client(
        "observer",
        run_member(
            SEED,
            Member::keyed("observer", Duration::from_secs(20)),
            observed.clone(),
        ),
    );
    // The victim runs 5 s and dies; its last heartbeat then expires at the observer.
    sim.client(
        "victim",
        run_member(
            SEED,
            Member::keyed("victim", Duration::from_secs(5)),
            observed.clone(),
        ),
    );
    // A key holder whose clock is a minute ahead: every heartbeat is refused.
    sim.client(
        "skewed",
        run_member(
            SEED,
            Member {
                skew_ms: 60_000,
                ..Member::keyed("skewed", Duration::from_secs(20))
            },
            observed.clone(),
        ),
    );
    // Eve holds no key but hears the topic: she records the victim's heartbeats
    // and, after the victim has expired, replays the latest with its origin.
    let capture = captured.clone();
    sim.client("eve", async move {
        let transport = SimTransport::new(SimConfig::from_seed(SEED, "eve"));
        let mut topic = transport.subscribe_topic("ww").await?;
        let until = Instant::now() + Duration::from_secs(6);
        while let Ok(Some(message)) = tokio::time::timeout_at(until, topic.recv()).await {
            if message.origin == victim {
                capture.borrow_mut().push((message.origin, message.payload));
            }
        }
        let (origin, payload) = capture.borrow().last().cloned().ok_or("nothing captured")?;
        // Expired at the observer by t = 5 + 2 s; replay at 9 s, 10 s and 11 s,
        // well inside the 30 s freshness window of the heartbeat's sent_ms.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let socket = transport
            .bind_datagram((Ipv4Addr::UNSPECIFIED, 0).into())
            .await?;
        for _ in 0..3 {
            let frame = sim_frame(&origin, "ww", &payload);
            socket.send_to(&frame, PUBSUB_GROUP.into()).await?;
            // Re-attributed to Eve herself: the tag is bound to the victim's id.
            transport.publish_topic("ww", payload.clone()).await?;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        Ok(())
    });
    sim.run()?;

    assert!(captured.borrow().len() >= 3, "eve captured too little");
    let observed = observed.borrow();
    let seen = &observed["observer"];
    let had_victim = seen.views.iter().any(|(_, v)| v.contains(&victim));
    assert!(had_victim, "the victim never joined");
    let gone_at = (seen.views.iter())
        .filter(|(_, v)| v.contains(&victim))
        .map(|(at, _)| *at)
        .max()
        .expect("seen");
    assert!(
        gone_at < Duration::from_secs(8),
        "victim stayed until {gone_at:?}"
    );
    for (at, view) in &seen.views {
        assert!(
            *at <= gone_at || !view.contains(&victim),
            "the replay revived the victim at {at:?}"
        );
        assert!(!view.contains(&skewed), "skewed clock admitted at {at:?}");
    }
    assert!(seen.membership.replayed >= 3, "{:?}", seen.membership);
    assert!(
        seen.membership.unauthenticated >= 3,
        "{:?}",
        seen.membership
    );
    assert!(seen.membership.not_fresh > 0, "{:?}", seen.membership);
    assert!(seen.discovery.dropped_not_fresh > 0, "{:?}", seen.discovery);
    Ok(())
}

/// The simulated broadcast's frame: `WWP1`, origin, topic, payload (as
/// `transport/topic.rs` writes it).
fn sim_frame(origin: &PeerId, topic: &str, payload: &[u8]) -> Vec<u8> {
    let origin = origin.to_bytes();
    let mut out = b"WWP1".to_vec();
    out.push(origin.len() as u8);
    out.extend_from_slice(&origin);
    out.push(topic.len() as u8);
    out.extend_from_slice(topic.as_bytes());
    out.extend_from_slice(payload);
    out
}

#[test]
fn a_flood_from_one_source_is_rate_limited_and_the_view_holds() -> SimResult {
    const SEED: u64 = 24;
    const FLOOD_PER_TICK: usize = 20;
    const TICK: Duration = Duration::from_millis(10);
    let keyed = ["m0", "m1", "m2", "late"];
    let observed: Observed = Rc::default();
    let mut sim = sim(SEED, Duration::from_secs(60));
    for name in &keyed[..3] {
        sim.client(
            *name,
            run_member(
                SEED,
                Member::keyed(name, Duration::from_secs(20)),
                observed.clone(),
            ),
        );
    }
    // Joins in the middle of the flood: found and admitted all the same.
    let late = observed.clone();
    sim.client("late", async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        run_member(SEED, Member::keyed("late", Duration::from_secs(15)), late).await
    });
    // 2,000 datagrams a second to the discovery group for 10 s, from one host.
    sim.client("flooder", async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let transport = SimTransport::new(SimConfig::from_seed(SEED, "flooder"));
        let socket = transport
            .bind_datagram((Ipv4Addr::UNSPECIFIED, 0).into())
            .await?;
        let group = SocketAddr::V4(DEFAULT_GROUP);
        let garbage = vec![0x5a; 512];
        for _ in 0..1_000 {
            for _ in 0..FLOOD_PER_TICK {
                socket.send_to(&garbage, group).await?;
            }
            tokio::time::sleep(TICK).await;
        }
        Ok(())
    });
    sim.run()?;

    let everyone: BTreeSet<PeerId> = keyed.iter().map(|n| peer_of(SEED, n)).collect();
    let observed = observed.borrow();
    for name in keyed {
        let seen = &observed[name];
        assert_eq!(last_view_of(seen), everyone, "{name}'s final view");
        let stats = seen.discovery;
        // Nearly all of the flood is refused before it is even parsed: at most
        // a burst plus the per-source rate got through to the decoder.
        assert!(
            stats.dropped_source_rate_limited > 5_000,
            "{name}: {stats:?}"
        );
        assert!(stats.dropped_malformed < 2_000, "{name}: {stats:?}");
    }
    // The members that ran throughout never lost a peer to the flood.
    for name in &keyed[..3] {
        let seen = &observed[*name];
        let insiders: BTreeSet<PeerId> = keyed[..3].iter().map(|n| peer_of(SEED, n)).collect();
        let full_since = (seen.views.iter())
            .position(|(_, v)| insiders.is_subset(v))
            .expect("converged");
        for (at, view) in &seen.views[full_since..] {
            assert!(insiders.is_subset(view), "{name} lost a peer at {at:?}");
        }
    }
    Ok(())
}
