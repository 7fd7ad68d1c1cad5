//! The Transport seam's own promises on the simulated transport (SimTransport in
//! turmoil): handshake checks, multicast datagrams, the topic broadcast. Built
//! only with the `sim` feature; the libp2p side is in `transport.rs`.

use std::net::Ipv4Addr;
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use ww::transport::{
    Address, Datagram, Identity, Protocol, SimConfig, SimTransport, Transport, TransportError,
};

type HostResult = Result<(), Box<dyn std::error::Error>>;

fn echo_protocol() -> Protocol {
    Protocol::new("/test/echo").unwrap()
}

const GROUP: Ipv4Addr = Ipv4Addr::new(228, 8, 8, 8);
const GROUP_PORT: u16 = 8822;

#[test]
fn simulated_multicast_reaches_every_member() {
    let mut sim = turmoil::Builder::new()
        .rng_seed(5)
        .simulation_duration(Duration::from_secs(10))
        .build();
    for name in ["a", "b"] {
        sim.client(name, async move {
            let node = SimTransport::new(SimConfig::from_seed(5, name));
            let socket = node
                .bind_datagram((Ipv4Addr::UNSPECIFIED, GROUP_PORT).into())
                .await?;
            socket.join_multicast_v4(GROUP, Ipv4Addr::UNSPECIFIED)?;
            let mut buf = [0u8; 64];
            let (len, _) = socket.recv_from(&mut buf).await?;
            if &buf[..len] != b"survey" {
                return Err("wrong payload".into());
            }
            HostResult::Ok(())
        });
    }
    sim.client("sender", async {
        let node = SimTransport::new(SimConfig::from_seed(5, "sender"));
        let socket = node
            .bind_datagram((Ipv4Addr::UNSPECIFIED, 0).into())
            .await?;
        // Let the members join first.
        tokio::time::sleep(Duration::from_millis(100)).await;
        socket
            .send_to(b"survey", (GROUP, GROUP_PORT).into())
            .await?;
        Ok(())
    });
    sim.run().unwrap();
}

#[test]
fn simulated_handshake_checks_identity_and_protocol() {
    let seed = 11;
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(30))
        .build();
    sim.host("server", move || async move {
        let node = SimTransport::new(SimConfig::from_seed(seed, "server"));
        let mut incoming = node.accept(&echo_protocol())?;
        node.listen(Address::new("/dns4/server/tcp/9000")).await?;
        while let Some((_, mut stream)) = incoming.next().await {
            // A dialer that finds the wrong peer hangs up after the handshake; that
            // stream just ends.
            let mut buf = [0u8; 4];
            if stream.read_exact(&mut buf).await.is_ok() {
                stream.write_all(&buf).await?;
            }
        }
        Ok(())
    });
    sim.client("client", async move {
        let node = SimTransport::new(SimConfig::from_seed(seed, "client"));
        let server = SimConfig::from_seed(seed, "server").identity.peer_id();
        let impostor = SimConfig::from_seed(seed, "impostor").identity.peer_id();
        let address = Address::new("/dns4/server/tcp/9000");
        node.add_peer_address(server, address.clone())?;
        node.add_peer_address(impostor, address)?;
        tokio::time::sleep(Duration::from_millis(10)).await;

        let mut stream = node.dial(server, &echo_protocol()).await?;
        stream.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        stream.read_exact(&mut buf).await?;
        assert_eq!(&buf, b"ping");

        let wrong_peer = node.dial(impostor, &echo_protocol()).await;
        assert!(
            matches!(wrong_peer, Err(TransportError::PeerMismatch { .. })),
            "{wrong_peer:?}"
        );
        let unknown = node.dial(server, &Protocol::new("/test/none")?).await;
        assert!(
            matches!(unknown, Err(TransportError::UnsupportedProtocol { .. })),
            "{unknown:?}"
        );
        let nobody = Identity::from_secret([1; 32]).peer_id();
        let no_address = node.dial(nobody, &echo_protocol()).await;
        assert!(matches!(no_address, Err(TransportError::NoAddress(_))));
        // Same seed, same ids: simulations can name nodes before they start.
        assert_eq!(
            SimConfig::from_seed(seed, "server").identity.peer_id(),
            server
        );
        assert_ne!(
            SimConfig::from_seed(seed + 1, "server").identity.peer_id(),
            server
        );
        Ok(())
    });
    sim.run().unwrap();
}

#[test]
fn simulated_topic_broadcast_reaches_other_subscribers_only() {
    let mut sim = turmoil::Builder::new()
        .rng_seed(3)
        .simulation_duration(Duration::from_secs(10))
        .build();
    for name in ["a", "b"] {
        sim.client(name, async move {
            let node = SimTransport::new(SimConfig::from_seed(3, name));
            let mut beats = node.subscribe_topic("ww").await?;
            let mut other = node.subscribe_topic("elsewhere").await?;
            let message = beats.recv().await.ok_or("topic closed")?;
            let publisher = SimConfig::from_seed(3, "publisher").identity.peer_id();
            if message.origin != publisher || message.payload != b"beat" {
                return Err(format!("unexpected message {message:?}").into());
            }
            if other.try_recv().is_none() {
                Ok(())
            } else {
                Err("a message leaked into another topic".into())
            }
        });
    }
    sim.client("publisher", async {
        let node = SimTransport::new(SimConfig::from_seed(3, "publisher"));
        let mut own = node.subscribe_topic("ww").await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        node.publish_topic("ww", b"beat".to_vec()).await?;
        tokio::time::sleep(Duration::from_millis(500)).await;
        if own.try_recv().is_none() {
            Ok(())
        } else {
            Err("the publisher heard its own message from the medium".into())
        }
    });
    sim.run().unwrap();
}

/// A node of the simulated cluster, in the private network of `key` if any.
fn sim_node(seed: u64, name: &str, key: Option<&ww::transport::SwarmKey>) -> SimTransport {
    let mut config = SimConfig::from_seed(seed, name);
    config.swarm_key = key.cloned();
    SimTransport::new(config)
}

#[test]
fn simulated_private_network_admits_only_holders_of_the_key() {
    use ww::transport::SwarmKey;
    let seed = 17;
    let key = SwarmKey::from_bytes([3; 32]);
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(20))
        .build();
    let server_key = key.clone();
    let heard_by_server = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let heard_log = heard_by_server.clone();
    sim.host("server", move || {
        let key = server_key.clone();
        let heard_log = heard_log.clone();
        async move {
            let node = sim_node(seed, "server", Some(&key));
            let mut incoming = node.accept(&echo_protocol())?;
            node.listen(Address::new("/ip4/0.0.0.0/tcp/4001")).await?;
            let mut heard = node.subscribe_topic("ww").await?;
            tokio::task::spawn(async move {
                while let Some(message) = heard.recv().await {
                    heard_log.lock().unwrap().push(message.payload);
                }
            });
            while let Some((_, mut stream)) = incoming.next().await {
                let mut buf = [0u8; 4];
                stream.read_exact(&mut buf).await?;
                stream.write_all(&buf).await?;
            }
            Ok(())
        }
    });
    let server = sim_node(seed, "server", Some(&key)).local_peer_id();
    let other = SwarmKey::from_bytes([4; 32]);
    for (name, key, admitted) in [
        ("member", Some(key.clone()), true),
        ("outsider", None, false),
        ("other-network", Some(other), false),
    ] {
        sim.client(name, async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let node = sim_node(seed, name, key.as_ref());
            node.add_peer_address(server, Address::new("/dns4/server/tcp/4001"))?;
            node.publish_topic("ww", name.as_bytes().to_vec()).await?;
            let dialed = node.dial(server, &echo_protocol()).await;
            assert_eq!(dialed.is_ok(), admitted, "{name}: {:?}", dialed.err());
            if let Ok(mut stream) = dialed {
                stream.write_all(b"ping").await?;
                let mut buf = [0u8; 4];
                stream.read_exact(&mut buf).await?;
                assert_eq!(&buf, b"ping");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok(())
        });
    }
    sim.run().unwrap();
    let heard = heard_by_server.lock().unwrap().clone();
    assert_eq!(
        heard,
        vec![b"member".to_vec()],
        "only the member may be heard"
    );
}

/// In mesh mode ([`SimConfig::mesh`]) a node hears the topic messages of the
/// peers it connected to or that connected to it, and no one else's: b's one
/// `connect` to a joins both meshes; c, whom no one met, is heard by no one and
/// hears no one.
#[test]
fn simulated_mesh_topics_reach_only_connected_peers() {
    let seed = 23;
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(20))
        .build();
    let peer = |name: &str| SimConfig::from_seed(seed, name).identity.peer_id();
    let heard = std::sync::Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    for name in ["a", "b", "c"] {
        let heard = heard.clone();
        let a = peer("a");
        sim.client(name, async move {
            let mut config = SimConfig::from_seed(seed, name);
            config.mesh = true;
            let node = SimTransport::new(config);
            node.listen(Address::new(format!("/dns4/{name}/tcp/4001")))
                .await?;
            let mut topic = node.subscribe_topic("ww").await?;
            tokio::time::sleep(Duration::from_millis(100)).await;
            if name == "b" {
                node.add_peer_address(a, Address::new("/dns4/a/tcp/4001"))?;
                node.connect(a).await?;
            }
            let mut origins = std::collections::BTreeSet::new();
            for _ in 0..20 {
                node.publish_topic("ww", name.as_bytes().to_vec()).await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
                while let Some(message) = topic.try_recv() {
                    origins.insert(message.origin);
                }
            }
            heard.lock().unwrap().insert(name, origins);
            Ok(())
        });
    }
    sim.run().unwrap();
    let heard = heard.lock().unwrap().clone();
    let only = |name: &str| std::collections::BTreeSet::from([peer(name)]);
    assert_eq!(heard["a"], only("b"), "a hears the peer that dialed it");
    assert_eq!(heard["b"], only("a"), "b hears the peer it dialed");
    assert!(heard["c"].is_empty(), "c met no one: {:?}", heard["c"]);
}
