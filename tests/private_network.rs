//! The private network on real hosts (libp2p pnet over loopback): only holders
//! of the cluster's swarm key can connect, and connection bounds hold.

use std::time::Duration;

use futures::{AsyncReadExt, AsyncWriteExt, StreamExt};
use ww::rpc;
use ww::transport::{
    Address, ConnectionBounds, Identity, Libp2pConfig, Libp2pTransport, Protocol, SwarmKey,
    Transport,
};

fn echo_protocol() -> Protocol {
    Protocol::new("/test/echo").unwrap()
}

fn node(key: Option<&SwarmKey>) -> Libp2pTransport {
    let mut config = Libp2pConfig::new(Identity::generate()).with_swarm_key(key.cloned());
    config.dial_timeout = Duration::from_secs(3);
    Libp2pTransport::new(config).unwrap()
}

/// A server that echoes five bytes on every stream; returns its address.
async fn echo_server(server: &Libp2pTransport) -> Address {
    let mut incoming = server.accept(&echo_protocol()).unwrap();
    tokio::task::spawn_local(async move {
        while let Some((_, mut stream)) = incoming.next().await {
            tokio::task::spawn_local(async move {
                let mut buf = [0u8; 5];
                if stream.read_exact(&mut buf).await.is_ok() {
                    let _ = stream.write_all(&buf).await;
                    let _ = stream.close().await;
                }
            });
        }
    });
    server
        .listen(Address::new("/ip4/127.0.0.1/tcp/0"))
        .await
        .unwrap()
}

/// Whether `client` can open an echo stream to `server` and get its bytes back.
async fn echoes(client: &Libp2pTransport, server: &Libp2pTransport, address: &Address) -> bool {
    client
        .add_peer_address(server.local_peer_id(), address.clone())
        .unwrap();
    let Ok(mut stream) = client.dial(server.local_peer_id(), &echo_protocol()).await else {
        return false;
    };
    if stream.write_all(b"hello").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 5];
    let read = tokio::time::timeout(Duration::from_secs(3), stream.read_exact(&mut buf)).await;
    matches!(read, Ok(Ok(()))) && &buf == b"hello"
}

#[test]
fn only_holders_of_the_swarm_key_connect() {
    rpc::block_on_local(async {
        let key = SwarmKey::generate();
        let server = node(Some(&key));
        let address = echo_server(&server).await;
        assert!(
            echoes(&node(Some(&key)), &server, &address).await,
            "a holder of the key could not connect"
        );
        assert!(
            !echoes(&node(None), &server, &address).await,
            "a node without a key connected to a keyed node"
        );
        assert!(
            !echoes(&node(Some(&SwarmKey::generate())), &server, &address).await,
            "a node with another key connected"
        );
        // And the other way: a keyed node cannot join an open one.
        let open = node(None);
        let open_address = echo_server(&open).await;
        assert!(echoes(&node(None), &open, &open_address).await);
        assert!(!echoes(&node(Some(&key)), &open, &open_address).await);
    })
    .unwrap();
}

#[test]
fn connections_beyond_the_bound_are_refused_and_earlier_ones_kept() {
    rpc::block_on_local(async {
        let mut config = Libp2pConfig::new(Identity::generate());
        config.connection_bounds = ConnectionBounds {
            established_max: 2,
            ..ConnectionBounds::default()
        };
        let server = Libp2pTransport::new(config).unwrap();
        let address = echo_server(&server).await;
        let first = node(None);
        let second = node(None);
        let third = node(None);
        assert!(echoes(&first, &server, &address).await);
        assert!(echoes(&second, &server, &address).await);
        assert!(
            !echoes(&third, &server, &address).await,
            "a third connection was accepted with established_max 2"
        );
        assert!(
            echoes(&first, &server, &address).await,
            "a connection within the bound was lost"
        );
    })
    .unwrap();
}

#[test]
fn an_rpc_server_holds_at_most_its_limit_of_connections_per_peer_and_in_all() {
    use std::sync::Arc;
    use ww::exec::{Sandbox, SandboxConfig};
    use ww::rpc::{RpcConfig, ServeLimits};
    use ww_sched::worker::{worker_protocol, RemoteWorker, WorkerConfig, WorkerServer};
    rpc::block_on_local(async {
        let server = node(None);
        let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()));
        let worker = WorkerServer::new(sandbox, WorkerConfig::default()).into_client();
        let limits = ServeLimits {
            connections_max: 2,
            connections_per_peer_max: 1,
        };
        let _serving = rpc::serve_per_peer(&server, &worker_protocol(), limits, move |_| {
            Some(worker.client.clone())
        })
        .unwrap();
        let address = server
            .listen(Address::new("/ip4/127.0.0.1/tcp/0"))
            .await
            .unwrap();
        let config = RpcConfig {
            connect_timeout: Duration::from_secs(3),
            call_timeout: Duration::from_secs(3),
        };
        // Whether a new RPC connection from `client` answers a ping.
        let answers = |client: Libp2pTransport| {
            let address = address.clone();
            let server_peer = server.local_peer_id();
            async move {
                client.add_peer_address(server_peer, address).unwrap();
                let remote = RemoteWorker::connect(&client, server_peer, config).await;
                let ok = match &remote {
                    Ok(remote) => remote.ping().await.is_ok(),
                    Err(_) => false,
                };
                (ok, remote, client)
            }
        };
        let first = node(None);
        let (ok, _keep_first, first) = answers(first).await;
        assert!(ok, "the first connection was refused");
        let (ok, _, _) = answers(first.clone()).await;
        assert!(
            !ok,
            "a second connection from one peer was served with 1 per peer"
        );
        let (ok, _keep_second, _second_node) = answers(node(None)).await;
        assert!(ok, "another peer was refused below the total limit");
        let (ok, _, _) = answers(node(None)).await;
        assert!(!ok, "a third connection was served with 2 in all");
    })
    .unwrap();
}
