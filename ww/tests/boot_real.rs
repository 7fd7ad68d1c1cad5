//! Discovery over real sockets on loopback only, with ports the OS picks.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use futures::StreamExt;
use ww::boot::{
    CidrCrawl, CrawlConfig, Discovery, DiscoverySpec, MulticastSurvey, PeerInfo, StaticPeers,
    SurveyConfig,
};
use ww::transport::{Address, Identity, Libp2pConfig, Libp2pTransport, SwarmKey, Transport};

/// Runs `future` on one thread inside a `LocalSet`, as a node does.
fn run_local<F: Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    tokio::task::LocalSet::new().block_on(&runtime, future)
}

/// A UDP port that was free a moment ago (never a fixed one, so parallel runs coexist).
fn free_udp_port(ip: Ipv4Addr) -> u16 {
    let socket = UdpSocket::bind((ip, 0)).expect("bind a free port");
    socket.local_addr().expect("local address").port()
}

async fn libp2p_node() -> anyhow::Result<(Libp2pTransport, Identity)> {
    let identity = Identity::generate();
    let transport = Libp2pTransport::new(Libp2pConfig::new(identity.clone()))?;
    transport
        .listen(Address::new("/ip4/127.0.0.1/tcp/0"))
        .await?;
    Ok((transport, identity))
}

#[test]
fn two_keyed_multicast_surveys_find_each_other_and_hear_no_unicast() -> anyhow::Result<()> {
    run_local(async {
        let config = SurveyConfig {
            swarm_key: Some(SwarmKey::generate()),
            group: SocketAddrV4::new(
                Ipv4Addr::new(228, 8, 8, 8),
                free_udp_port(Ipv4Addr::LOCALHOST),
            ),
            interface: Ipv4Addr::LOCALHOST,
            ..SurveyConfig::default()
        };
        let (ta, ia) = libp2p_node().await?;
        let (tb, ib) = libp2p_node().await?;
        let a = MulticastSurvey::start(&ta, ia, config.clone()).await?;
        let config_port = config.group.port();
        let b = MulticastSurvey::start(&tb, ib, config).await?;
        a.advertise("ww", Duration::from_secs(60)).await?;
        b.advertise("ww", Duration::from_secs(60)).await?;
        let found_by_a = a.find_peers("ww", Some(1)).await?;
        let found_by_b = b.find_peers("ww", Some(1)).await?;
        let (by_a, by_b) = tokio::time::timeout(
            Duration::from_secs(10),
            futures::future::join(
                found_by_a.collect::<Vec<_>>(),
                found_by_b.collect::<Vec<_>>(),
            ),
        )
        .await?;
        assert_eq!(by_a.len(), 1);
        assert_eq!(by_b.len(), 1);
        assert_eq!(by_a[0].peer, tb.local_peer_id());
        assert_eq!(by_b[0].peer, ta.local_peer_id());
        assert_eq!(by_a[0].addresses, tb.listen_addresses());
        // Multicast loopback brings our own packets back; they are dropped, not found.
        assert!(a.stats().dropped_self > 0);
        // The socket is bound to the group: unicast to its port never reaches it
        // (on unix; elsewhere it listens on every address).
        if cfg!(unix) {
            // The probe is not a packet: had it arrived, it would count as malformed.
            // With reuse-port, unicast reaches one socket of the two: count both.
            let malformed = || a.stats().dropped_malformed + b.stats().dropped_malformed;
            let before = malformed();
            let prober = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))?;
            prober.send_to(b"unicast probe", (Ipv4Addr::LOCALHOST, config_port))?;
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(malformed(), before, "a unicast datagram got in");
        }
        Ok(())
    })
}

#[test]
fn static_list_yields_exactly_its_peers_then_ends() -> anyhow::Result<()> {
    run_local(async {
        let a = Identity::generate().peer_id();
        let b = Identity::generate().peer_id();
        let spec: DiscoverySpec =
            format!("/ip4/10.0.0.1/tcp/4001/p2p/{a},/ip4/10.0.0.2/tcp/4001/p2p/{b}").parse()?;
        let DiscoverySpec::Static(peers) = spec else {
            anyhow::bail!("not a static spec: {spec:?}");
        };
        let list = StaticPeers::new(peers);
        let got: Vec<PeerInfo> = list.find_peers("ww", None).await?.collect().await;
        assert_eq!(
            got,
            vec![
                PeerInfo {
                    peer: a,
                    addresses: vec![Address::new("/ip4/10.0.0.1/tcp/4001")]
                },
                PeerInfo {
                    peer: b,
                    addresses: vec![Address::new("/ip4/10.0.0.2/tcp/4001")]
                },
            ]
        );
        let limited: Vec<PeerInfo> = list.find_peers("ww", Some(1)).await?.collect().await;
        assert_eq!(limited.len(), 1);
        assert_eq!(
            list.advertise("ww", Duration::from_secs(5)).await?,
            Duration::from_secs(5)
        );
        Ok(())
    })
}

#[test]
fn cidr_crawl_over_loopback_block_finds_responder() -> anyhow::Result<()> {
    run_local(async {
        let responder_ip = Ipv4Addr::new(127, 0, 0, 3);
        let port = free_udp_port(responder_ip);
        let (tr, ir) = libp2p_node().await?;
        let responder = CidrCrawl::start(
            &tr,
            ir,
            CrawlConfig {
                bind: SocketAddrV4::new(responder_ip, port),
                ..CrawlConfig::new(Ipv4Addr::new(127, 0, 0, 0), 29, port)
            },
        )
        .await?;
        responder.advertise("ww", Duration::from_secs(60)).await?;

        let (tc, ic) = libp2p_node().await?;
        let crawler = CidrCrawl::start(
            &tc,
            ic,
            CrawlConfig {
                bind: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0),
                seed: 5,
                ..CrawlConfig::new(Ipv4Addr::new(127, 0, 0, 0), 29, port)
            },
        )
        .await?;
        let peers = crawler.find_peers("ww", Some(1)).await?;
        let found: Vec<PeerInfo> =
            tokio::time::timeout(Duration::from_secs(10), peers.collect()).await?;
        let ids: BTreeSet<_> = found.iter().map(|p| p.peer).collect();
        assert_eq!(ids, BTreeSet::from([tr.local_peer_id()]));
        assert_eq!(found[0].addresses, tr.listen_addresses());
        assert_eq!(responder.stats().sent, 1);
        Ok(())
    })
}
