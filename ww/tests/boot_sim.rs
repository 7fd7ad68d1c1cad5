//! Discovery in a deterministic turmoil simulation: multicast survey, gradual
//! survey, CIDR crawl and drop accounting, all on virtual time with fixed seeds.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::rc::Rc;
use std::time::Duration;

mod sim_support;

use futures::StreamExt;
use sim_support::{clock, node, peer_of, sim, SimResult};
use tokio::time::Instant;
use ww::boot::packet::{self, Body, Envelope, Packet};
use ww::boot::{
    within_distance, CidrCrawl, CrawlConfig, Discovery, DiscoveryStats, GradualConfig,
    GradualSurvey, MulticastSurvey, SurveyConfig, DEFAULT_GROUP,
};
use ww::transport::{Address, Datagram, Identity, PeerId, SimConfig, SimTransport, Transport};

/// The default survey on the simulated clock.
fn survey_config() -> SurveyConfig {
    SurveyConfig {
        wall_clock: clock(0),
        ..SurveyConfig::default()
    }
}

#[test]
fn thirty_two_nodes_find_each_other_by_multicast_survey() -> SimResult {
    const SEED: u64 = 41;
    const NODES: usize = 32;
    // Every node must see all others within this much simulated time.
    const FIND_BOUND: Duration = Duration::from_secs(3);
    let names: Vec<String> = (0..NODES).map(|i| format!("node{i}")).collect();
    let mut sim = sim(SEED, Duration::from_secs(30));
    let outsider = peer_of(SEED, "outsider");
    sim.host("outsider", || async {
        let (transport, identity) = node(SEED, "outsider").await?;
        let survey = MulticastSurvey::start(&transport, identity, survey_config()).await?;
        survey.advertise("other", Duration::from_secs(600)).await?;
        let _others = survey.find_peers("other", None).await?;
        std::future::pending::<()>().await;
        Ok(())
    });
    let found_all = Rc::new(RefCell::new(Vec::new()));
    let sent_all = Rc::new(RefCell::new(Vec::new()));
    for name in &names {
        let sent_all = sent_all.clone();
        let name = name.clone();
        let all: BTreeSet<PeerId> = names.iter().map(|n| peer_of(SEED, n)).collect();
        let found_all = found_all.clone();
        sim.client(name.clone(), async move {
            let start = Instant::now();
            let (transport, identity) = node(SEED, &name).await?;
            let me = identity.peer_id();
            let survey = MulticastSurvey::start(&transport, identity, survey_config()).await?;
            let mut peers = survey.find_peers("ww", None).await?;
            survey.advertise("ww", Duration::from_secs(600)).await?;
            let mut found = BTreeSet::new();
            let expected = all.len() - 1;
            tokio::time::timeout(FIND_BOUND, async {
                while found.len() < expected {
                    let Some(info) = peers.next().await else {
                        break;
                    };
                    assert_eq!(
                        info.addresses,
                        vec![Address::new(format!(
                            "/dns4/{}/tcp/7000",
                            host_of(&info.peer, &all, SEED)
                        ))]
                    );
                    found.insert(info.peer);
                }
            })
            .await
            .map_err(|_| {
                format!(
                    "{name} found {} of {expected} in {FIND_BOUND:?}",
                    found.len()
                )
            })?;
            assert!(!found.contains(&me));
            assert!(
                !found.contains(&outsider),
                "{name} found the other namespace's node"
            );
            assert_eq!(found.len(), expected);
            found_all.borrow_mut().push((name.clone(), start.elapsed()));
            // Keep answering a while for nodes still searching.
            tokio::time::sleep(Duration::from_secs(5)).await;
            let stats = survey.stats();
            assert_eq!(stats.dropped_bad_signature + stats.dropped_malformed, 0);
            sent_all
                .borrow_mut()
                .push((stats.sent, stats.answers_suppressed));
            Ok(())
        });
    }
    sim.run()?;
    assert_eq!(found_all.borrow().len(), NODES);
    // All 32 survey at once: each answers the burst of surveys with one or two
    // group answers (GROUP_ANSWER_DELAY), not one per survey (31 each).
    let sent: u64 = sent_all.borrow().iter().map(|(s, _)| s).sum();
    let suppressed: u64 = sent_all.borrow().iter().map(|(_, s)| s).sum();
    eprintln!("{NODES} nodes sent {sent} datagrams; {suppressed} answers suppressed");
    assert!(
        sent <= 4 * NODES as u64,
        "{sent} datagrams sent by {NODES} nodes: answers are not being merged"
    );
    assert!(
        suppressed >= NODES as u64,
        "only {suppressed} answers suppressed"
    );
    Ok(())
}

/// The host name whose seeded id is `peer` (ids are derived from names).
fn host_of(peer: &PeerId, all: &BTreeSet<PeerId>, seed: u64) -> String {
    assert!(all.contains(peer));
    (0..all.len())
        .map(|i| format!("node{i}"))
        .find(|n| peer_of(seed, n) == *peer)
        .unwrap_or_default()
}

#[test]
fn gradual_survey_climbs_distances_and_stops_after_a_find() -> SimResult {
    const SEED: u64 = 7;
    let responders = ["r0", "r1", "r2"];
    let mut sim = sim(SEED, Duration::from_secs(120));
    for name in responders {
        sim.host(name, move || async move {
            let (transport, identity) = node(SEED, name).await?;
            let survey = MulticastSurvey::start(&transport, identity, survey_config()).await?;
            survey.advertise("ww", Duration::from_secs(600)).await?;
            std::future::pending::<()>().await;
            Ok(())
        });
    }
    // The first distance at which some responder answers the searcher.
    let searcher = peer_of(SEED, "searcher");
    let tail = |p: &PeerId| ww::boot::id_tail(p);
    let first_answer = (0u8..=32)
        .find(|d| {
            responders
                .iter()
                .any(|r| within_distance(tail(&searcher), tail(&peer_of(SEED, r)), *d))
        })
        .ok_or("nobody answers at 32")?;
    // With this seed the searcher has to climb far before anyone answers.
    assert!(
        first_answer > 8,
        "seed gives first answer at distance {first_answer}"
    );
    sim.client("searcher", async move {
        // Start after the responders' announcements, so only answers to surveys count.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (transport, identity) = node(SEED, "searcher").await?;
        let survey = MulticastSurvey::start(&transport, identity, survey_config()).await?;
        let config = GradualConfig {
            backoff_min_ms: 100,
            backoff_max_ms: 1_000,
            backoff_factor: 1.5,
            seed: SEED,
        };
        let gradual = GradualSurvey::new(survey, config)?;
        let mut peers = gradual.find_peers("ww", None).await?;
        let first = tokio::time::timeout(Duration::from_secs(60), peers.next())
            .await?
            .ok_or("stream ended")?;
        assert!(responders.iter().any(|r| peer_of(SEED, r) == first.peer));
        let sent_at_find = gradual.stats().sent;
        // One survey per distance 0..=first_answer, none after the find.
        assert_eq!(sent_at_find, u64::from(first_answer) + 1);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert_eq!(
            gradual.stats().sent,
            sent_at_find,
            "kept surveying after a find"
        );
        Ok(())
    });
    sim.run()?;
    Ok(())
}

#[test]
fn cidr_crawl_finds_advertised_nodes_by_unicast() -> SimResult {
    const SEED: u64 = 11;
    const PORT: u16 = 2020;
    let names = ["c0", "c1", "c2", "c3"];
    let mut sim = sim(SEED, Duration::from_secs(60));
    for name in names {
        sim.host(name, move || async move {
            let (transport, identity) = node(SEED, name).await?;
            let config = CrawlConfig {
                wall_clock: clock(0),
                ..CrawlConfig::new(Ipv4Addr::new(192, 168, 0, 0), 24, PORT)
            };
            let crawl = CidrCrawl::start(&transport, identity, config).await?;
            crawl.advertise("ww", Duration::from_secs(600)).await?;
            std::future::pending::<()>().await;
            Ok(())
        });
    }
    sim.client("crawler", async move {
        for name in names {
            let ip = turmoil::lookup(name);
            assert!(matches!(ip, std::net::IpAddr::V4(v4) if v4.octets()[..3] == [192, 168, 0]));
        }
        let (transport, identity) = node(SEED, "crawler").await?;
        let config = CrawlConfig {
            seed: SEED,
            wall_clock: clock(0),
            ..CrawlConfig::new(Ipv4Addr::new(192, 168, 0, 0), 24, PORT)
        };
        let crawl = CidrCrawl::start(&transport, identity, config).await?;
        let peers = crawl.find_peers("ww", Some(names.len())).await?;
        // 254 hosts at 256 packets/s take about 1 s; the stream ends at its limit.
        let found: BTreeSet<PeerId> =
            tokio::time::timeout(Duration::from_secs(2), peers.collect::<Vec<_>>())
                .await?
                .into_iter()
                .map(|p| p.peer)
                .collect();
        let expected: BTreeSet<PeerId> = names.iter().map(|n| peer_of(SEED, n)).collect();
        assert_eq!(found, expected);
        let stats = crawl.stats();
        assert!(stats.sent >= names.len() as u64);
        // The next stream resumes the pass where the first stopped and ends it
        // at full rate; the pass after one that found peers goes gently.
        let rest = crawl.find_peers("ww", None).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(rest);
        let attempts = |s: DiscoveryStats| s.sent + s.send_failed;
        let after_pass = attempts(crawl.stats());
        assert!(
            after_pass >= 254,
            "a whole pass is {} requests, not {after_pass}",
            254
        );
        let gentle = crawl.find_peers("ww", None).await?;
        tokio::time::sleep(Duration::from_secs(4)).await;
        drop(gentle);
        let sent = attempts(crawl.stats()) - after_pass;
        assert!(
            (32..=66).contains(&sent),
            "a pass after peers were found sends 16/s: {sent} in 4 s"
        );
        // Requests to addresses without a host are refused, not fatal.
        assert!(stats.send_failed > 0);
        Ok(())
    });
    sim.run()?;
    Ok(())
}

#[test]
fn bad_packets_are_dropped_and_counted() -> SimResult {
    const SEED: u64 = 3;
    let mut sim = sim(SEED, Duration::from_secs(20));
    sim.client("target", async move {
        let (transport, identity) = node(SEED, "target").await?;
        let survey = MulticastSurvey::start(&transport, identity, survey_config()).await?;
        survey.advertise("ww", Duration::from_secs(600)).await?;
        let mut peers = survey.find_peers("ww", None).await?;
        let rogue = Identity::from_secret([9; 32]).peer_id();
        tokio::time::sleep(Duration::from_secs(5)).await;
        let stats = survey.stats();
        // Seven from the rogue, plus our own survey and announcement looped back.
        assert_eq!(stats.received, 9, "{stats:?}");
        assert_eq!(stats.dropped_self, 2, "{stats:?}");
        assert_eq!(stats.dropped_malformed, 1, "{stats:?}");
        assert_eq!(stats.dropped_bad_signature, 1, "{stats:?}");
        assert_eq!(stats.dropped_unsigned, 1, "{stats:?}");
        assert_eq!(stats.dropped_oversized, 1, "{stats:?}");
        assert_eq!(stats.dropped_signer_mismatch, 1, "{stats:?}");
        assert_eq!(stats.dropped_namespace, 1, "{stats:?}");
        // The one good response was delivered and nothing else was.
        assert_eq!(stats.dropped_stream_full, 0, "{stats:?}");
        assert_eq!(peers.next().await.map(|p| p.peer), Some(rogue));
        assert!(futures::poll!(peers.next()).is_pending());
        // Dropping the discovery object stops its socket loop and ends its streams.
        drop(survey);
        let end = tokio::time::timeout(Duration::from_secs(1), peers.next()).await?;
        assert!(end.is_none());
        Ok(())
    });
    sim.client("rogue", async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let transport = SimTransport::new(SimConfig::from_seed(SEED, "rogue"));
        let socket = transport
            .bind_datagram((Ipv4Addr::UNSPECIFIED, 0).into())
            .await?;
        let group = SocketAddr::V4(SocketAddrV4::new(*DEFAULT_GROUP.ip(), DEFAULT_GROUP.port()));
        let me = Identity::from_secret([9; 32]);
        let stranger = Identity::from_secret([10; 32]);
        let response = |ns: &str, peer: PeerId| Packet {
            namespace: ns.into(),
            sent_ms: clock(0).now_ms(),
            body: Body::Response {
                peer,
                addresses: vec![Address::new("/dns4/rogue/tcp/1")],
            },
        };
        let good = response("ww", me.peer_id());
        let mut mis_signed = Envelope::seal(&me, None, good.encode()?)?;
        mis_signed.signature[3] ^= 0x40;
        let unsigned = Envelope {
            signature: Vec::new(),
            ..Envelope::seal(&me, None, good.encode()?)?
        };
        let datagrams: Vec<Vec<u8>> = vec![
            b"garbage, not an envelope".to_vec(),
            mis_signed.encode()?,
            unsigned.encode()?,
            vec![0u8; 3000],
            packet::seal(&stranger, None, &good)?,
            packet::seal(&me, None, &response("elsewhere", me.peer_id()))?,
            packet::seal(&me, None, &good)?,
        ];
        for datagram in datagrams {
            socket.send_to(&datagram, group).await?;
        }
        Ok(())
    });
    sim.run()?;
    Ok(())
}

/// A node whose crawl found an empty block learns of a crawler that starts
/// later from the crawler's request: it asks the crawler back and the signed
/// answer reaches its open stream, long before its own next pass.
#[test]
fn a_crawled_node_asks_the_crawler_back() -> SimResult {
    const SEED: u64 = 12;
    const PORT: u16 = 2020;
    let config = || CrawlConfig {
        wall_clock: clock(0),
        seed: SEED,
        ..CrawlConfig::new(Ipv4Addr::new(192, 168, 0, 0), 24, PORT)
    };
    let mut sim = sim(SEED, Duration::from_secs(60));
    sim.client("early", async move {
        let (transport, identity) = node(SEED, "early").await?;
        let crawl = CidrCrawl::start(&transport, identity, config()).await?;
        crawl.advertise("ww", Duration::from_secs(600)).await?;
        let started = Instant::now();
        let mut peers = crawl.find_peers("ww", None).await?;
        let found = tokio::time::timeout(Duration::from_secs(10), peers.next())
            .await?
            .expect("the stream stays open");
        assert_eq!(found.peer, peer_of(SEED, "late"));
        // The late node starts at 3 s and its pass ends by 4 s; our own pass
        // ended at about 1 s and the next is a new stream's, 30 s on.
        let took = started.elapsed();
        assert!(took < Duration::from_secs(5), "found after {took:?}");
        Ok(())
    });
    sim.client("late", async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let (transport, identity) = node(SEED, "late").await?;
        let crawl = CidrCrawl::start(&transport, identity, config()).await?;
        crawl.advertise("ww", Duration::from_secs(600)).await?;
        let peers = crawl.find_peers("ww", Some(1)).await?;
        let found: Vec<_> =
            tokio::time::timeout(Duration::from_secs(3), peers.collect::<Vec<_>>()).await?;
        assert_eq!(found[0].peer, peer_of(SEED, "early"));
        // Stay up to answer the early node's request.
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(())
    });
    sim.run()?;
    Ok(())
}
