//! The Transport seam's own promises on real hosts (libp2p): identities, stream
//! and protocol checks, datagrams (unicast and multicast), topics. The simulated
//! transport's are in `transport_sim.rs` (built with the `sim` feature).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use ww::rpc;
use ww::transport::{
    Address, Datagram, Identity, Libp2pConfig, Libp2pTransport, PeerId, Protocol, Transport,
    TransportError,
};

fn echo_protocol() -> Protocol {
    Protocol::new("/test/echo").unwrap()
}

#[test]
fn key_file_keeps_the_peer_id_across_restarts() {
    let dir = std::env::temp_dir().join(format!("ww-key-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("node.key");
    let first = Identity::load_or_create(&path).unwrap().peer_id();
    let second = Identity::load_or_create(&path).unwrap().peer_id();
    assert_eq!(first, second);
    assert_ne!(first, Identity::generate().peer_id());
    std::fs::write(&path, b"garbage").unwrap();
    let error = Identity::load_or_create(&path)
        .err()
        .expect("garbage key accepted");
    assert!(matches!(error, TransportError::KeyFile { .. }), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn peer_ids_and_protocols_parse_or_fail_clearly() {
    let id = Identity::from_secret([9; 32]).peer_id();
    let text = id.to_string();
    assert_eq!(text.parse::<PeerId>().unwrap(), id);
    assert_eq!(PeerId::from_bytes(&id.to_bytes()).unwrap(), id);
    assert!("not-a-peer".parse::<PeerId>().is_err());
    assert!(Protocol::new("no-slash").is_err());
    assert!(Protocol::new("/has space").is_err());
    assert!(Protocol::new(format!("/{}", "x".repeat(200))).is_err());
    let (base, peer) = Address::new(format!("/ip4/127.0.0.1/tcp/1/p2p/{id}"))
        .split_peer()
        .unwrap();
    assert_eq!((base.as_str(), peer), ("/ip4/127.0.0.1/tcp/1", Some(id)));
}

#[test]
fn libp2p_streams_echo_and_unknown_protocols_are_refused() {
    rpc::block_on_local(async {
        let server = Libp2pTransport::new(Libp2pConfig::new(Identity::generate())).unwrap();
        let client = Libp2pTransport::new(Libp2pConfig::new(Identity::generate())).unwrap();
        let mut incoming = server.accept(&echo_protocol()).unwrap();
        assert!(matches!(
            server.accept(&echo_protocol()),
            Err(TransportError::AlreadyAccepting(_))
        ));
        let bound = server
            .listen(Address::new("/ip4/127.0.0.1/tcp/0"))
            .await
            .unwrap();
        assert!(bound.as_str().starts_with("/ip4/127.0.0.1/tcp/"));
        assert!(!bound.as_str().ends_with("/tcp/0"));
        client
            .add_peer_address(server.local_peer_id(), bound)
            .unwrap();
        let echo = tokio::task::spawn_local(async move {
            let (dialer, mut stream) = incoming.next().await.unwrap();
            let mut buf = [0u8; 5];
            stream.read_exact(&mut buf).await.unwrap();
            stream.write_all(&buf).await.unwrap();
            stream.close().await.unwrap();
            dialer
        });
        let mut stream = client
            .dial(server.local_peer_id(), &echo_protocol())
            .await
            .unwrap();
        stream.write_all(b"hello").await.unwrap();
        let mut back = Vec::new();
        stream.read_to_end(&mut back).await.unwrap();
        assert_eq!(back, b"hello");
        assert_eq!(echo.await.unwrap(), client.local_peer_id());
        let refused = client
            .dial(
                server.local_peer_id(),
                &Protocol::new("/test/nobody").unwrap(),
            )
            .await;
        assert!(
            matches!(refused, Err(TransportError::UnsupportedProtocol { .. })),
            "{refused:?}"
        );
        // A peer we know nothing about cannot be dialed, and says so in bounded time.
        let unknown = client
            .dial(Identity::generate().peer_id(), &echo_protocol())
            .await;
        assert!(unknown.is_err());
    })
    .unwrap();
}

#[test]
fn real_udp_datagrams_on_loopback() {
    rpc::block_on_local(async {
        let transport = Libp2pTransport::new(Libp2pConfig::new(Identity::generate())).unwrap();
        let loopback: SocketAddr = (Ipv4Addr::LOCALHOST, 0).into();
        let a = transport.bind_datagram(loopback).await.unwrap();
        let b = transport.bind_datagram(loopback).await.unwrap();
        a.send_to(b"ping", b.local_addr().unwrap()).await.unwrap();
        let mut buf = [0u8; 16];
        let (len, from) = tokio::time::timeout(Duration::from_secs(5), b.recv_from(&mut buf))
            .await
            .expect("loopback datagram lost")
            .unwrap();
        assert_eq!(&buf[..len], b"ping");
        assert_eq!(from, a.local_addr().unwrap());
    })
    .unwrap();
}

#[test]
fn signatures_verify_only_for_the_signer_and_the_message() {
    let alice = Identity::from_secret([1; 32]);
    let bob = Identity::from_secret([2; 32]);
    let signature = alice.sign(b"survey");
    assert_eq!(signature.len(), 64);
    assert!(alice.peer_id().verify(b"survey", &signature));
    assert!(!bob.peer_id().verify(b"survey", &signature));
    assert!(!alice.peer_id().verify(b"surveY", &signature));
    assert!(!alice.peer_id().verify(b"survey", &signature[..63]));
    assert!(!alice.peer_id().verify(b"survey", b""));
}

#[test]
fn real_multicast_on_loopback_reaches_every_member_on_the_host() {
    rpc::block_on_local(async {
        let transport = Libp2pTransport::new(Libp2pConfig::new(Identity::generate())).unwrap();
        // A port from the OS, so parallel test runs never share a group port.
        let port = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let group = std::net::SocketAddrV4::new(Ipv4Addr::new(228, 8, 8, 8), port);
        let a = transport
            .bind_multicast(group, Ipv4Addr::LOCALHOST)
            .await
            .unwrap();
        let b = transport
            .bind_multicast(group, Ipv4Addr::LOCALHOST)
            .await
            .unwrap();
        a.send_to(b"survey", group.into()).await.unwrap();
        for member in [&a, &b] {
            let mut buf = [0u8; 16];
            let (len, _) = tokio::time::timeout(Duration::from_secs(5), member.recv_from(&mut buf))
                .await
                .expect("multicast datagram not delivered on loopback")
                .unwrap();
            assert_eq!(&buf[..len], b"survey");
        }
    })
    .unwrap();
}

#[test]
fn libp2p_topic_messages_carry_their_authenticated_origin() {
    rpc::block_on_local(async {
        let a = Libp2pTransport::new(Libp2pConfig::new(Identity::generate())).unwrap();
        let b = Libp2pTransport::new(Libp2pConfig::new(Identity::generate())).unwrap();
        let bound = a
            .listen(Address::new("/ip4/127.0.0.1/tcp/0"))
            .await
            .unwrap();
        let mut at_a = a.subscribe_topic("ww").await.unwrap();
        let mut at_b = b.subscribe_topic("ww").await.unwrap();
        b.add_peer_address(a.local_peer_id(), bound).unwrap();
        b.connect(a.local_peer_id()).await.unwrap();
        // Subscriptions propagate after the connection; publish until one arrives.
        let received = tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                b.publish_topic("ww", b"beat".to_vec()).await.unwrap();
                if let Ok(Some(message)) =
                    tokio::time::timeout(Duration::from_millis(200), at_a.recv()).await
                {
                    return message;
                }
            }
        })
        .await
        .expect("no topic message crossed the connection");
        assert_eq!(received.origin, b.local_peer_id());
        assert_eq!(
            (received.topic.as_str(), received.payload.as_slice()),
            ("ww", &b"beat"[..])
        );
        // The medium never echoes a node's own messages.
        assert!(at_b.try_recv().is_none());
        let too_big = b
            .publish_topic("ww", vec![0; ww::transport::TOPIC_PAYLOAD_MAX + 1])
            .await;
        assert!(matches!(
            too_big,
            Err(TransportError::PayloadTooLarge { .. })
        ));
    })
    .unwrap();
}
