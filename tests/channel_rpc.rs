//! Channels over the real transport: facets, close, and a capability sent
//! through a channel that the receiver then calls.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use capnp::capability::FromClientHook;
use ww::csp::{ChanConfig, ChannelServer};
use ww::exec::{Sandbox, SandboxConfig};
use ww::rpc::{self, export_protocol, Connection, RpcConfig, RpcError};
use ww::schema::channel_capnp::{chan, recver, sender};
use ww::transport::{Address, Identity, Libp2pConfig, Libp2pTransport, Transport};
use ww_sched::schema::worker_capnp::registration;
use ww_sched::tasks::{hash_puzzle, HASH_PUZZLE_WASM};
use ww_sched::worker::{RemoteWorker, WorkerConfig, WorkerServer};

fn node() -> Libp2pTransport {
    Libp2pTransport::new(Libp2pConfig::new(Identity::generate())).unwrap()
}

/// Serves `server` as `name` on a new node; returns a connection from another node.
async fn exported(
    server: &ChannelServer,
    name: &str,
) -> (Vec<Box<dyn std::any::Any>>, Connection<chan::Client>) {
    let host = node();
    let serving = rpc::serve(
        &host,
        &export_protocol(name).unwrap(),
        server.client().client,
    )
    .unwrap();
    let bound = host
        .listen(Address::new("/ip4/127.0.0.1/tcp/0"))
        .await
        .unwrap();
    let guest = node();
    guest.add_peer_address(host.local_peer_id(), bound).unwrap();
    let connection = rpc::connect(
        &guest,
        host.local_peer_id(),
        &export_protocol(name).unwrap(),
        RpcConfig::default(),
    )
    .await
    .unwrap();
    (
        vec![Box::new(serving), Box::new(host), Box::new(guest)],
        connection,
    )
}

/// `Chan` extends `Sender`, `Recver` and `Closer`; capnp-rust reaches a
/// superclass's methods through a cast of the same capability.
fn as_sender(chan: &chan::Client) -> sender::Client {
    chan.clone().cast_to()
}

async fn send_text(chan: &chan::Client, text: &str) -> Result<(), capnp::Error> {
    let mut request = as_sender(chan).send_request();
    request
        .get()
        .init_value()
        .set_as::<capnp::text::Owned>(text)?;
    request.send().promise.await.map(|_| ())
}

async fn recv_text(chan: &chan::Client) -> Result<String, capnp::Error> {
    let recver: recver::Client = chan.clone().cast_to();
    let response = recver.recv_request().send().promise.await?;
    let value = response.get()?.get_value();
    Ok(value.get_as::<capnp::text::Reader>()?.to_string()?)
}

#[test]
fn remote_facets_send_receive_and_close_in_order() {
    rpc::block_on_local(async {
        let server = ChannelServer::new(ChanConfig {
            capacity: 2,
            ..ChanConfig::default()
        })
        .unwrap();
        let (_keep, connection) = exported(&server, "facets").await;
        let chan = connection.client();
        // Attenuation: each facet alone, obtained from the full capability.
        let sender = chan
            .sender_request()
            .send()
            .promise
            .await
            .unwrap()
            .get()
            .unwrap()
            .get_sender()
            .unwrap();
        let recver = chan
            .recver_request()
            .send()
            .promise
            .await
            .unwrap()
            .get()
            .unwrap()
            .get_recver()
            .unwrap();
        let closer = chan
            .closer_request()
            .send()
            .promise
            .await
            .unwrap()
            .get()
            .unwrap()
            .get_closer()
            .unwrap();
        for text in ["a", "b"] {
            let mut request = sender.send_request();
            request
                .get()
                .init_value()
                .set_as::<capnp::text::Owned>(text)
                .unwrap();
            request.send().promise.await.unwrap();
        }
        assert_eq!(server.len(), 2, "two values buffered");
        closer.close_request().send().promise.await.unwrap();
        // Later sends fail; buffered values are still delivered, in order; then Closed.
        let refused = send_text(chan, "c").await.unwrap_err();
        assert!(refused.to_string().contains("closed"), "{refused}");
        for expected in ["a", "b"] {
            let response = recver.recv_request().send().promise.await.unwrap();
            let got = response
                .get()
                .unwrap()
                .get_value()
                .get_as::<capnp::text::Reader>()
                .unwrap()
                .to_string()
                .unwrap();
            assert_eq!(got, expected);
        }
        let drained = recv_text(chan).await.unwrap_err();
        assert!(drained.to_string().contains("closed"), "{drained}");
        let twice = closer
            .close_request()
            .send()
            .promise
            .await
            .err()
            .expect("closed twice");
        assert!(twice.to_string().contains("already closed"), "{twice}");
    })
    .unwrap();
}

#[test]
fn a_rendezvous_send_completes_only_when_received() {
    rpc::block_on_local(async {
        let server = ChannelServer::new(ChanConfig::default()).unwrap();
        let (_keep, connection) = exported(&server, "rendezvous").await;
        let chan = connection.client().clone();
        let sending = tokio::task::spawn_local(async move { send_text(&chan, "hello").await });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(
            !sending.is_finished(),
            "a rendezvous send returned with nobody receiving"
        );
        let item = server.recv_local().await.unwrap();
        let got = item
            .read::<capnp::text::Owned, _>(|t| Ok(t.to_string()?))
            .unwrap();
        assert_eq!(got, "hello");
        tokio::time::timeout(Duration::from_secs(5), sending)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    })
    .unwrap();
}

#[test]
fn a_worker_capability_sent_through_a_channel_runs_the_hash_puzzle() {
    rpc::block_on_local(async {
        let server = ChannelServer::new(ChanConfig {
            capacity: 4,
            ..ChanConfig::default()
        })
        .unwrap();
        let (_keep, connection) = exported(&server, "lb").await;
        // The worker side: its capability travels inside a Registration value.
        let worker = WorkerServer::new(
            Arc::new(Sandbox::new(SandboxConfig::default())),
            WorkerConfig::default(),
        )
        .into_client();
        let mut request = as_sender(connection.client()).send_request();
        {
            let mut registration = request
                .get()
                .init_value()
                .init_as::<registration::Builder>();
            registration.set_worker(worker);
            registration.set_slots(3);
        }
        request.send().promise.await.unwrap();
        // The receiving side gets a capability it can call, over the sender's connection.
        let item = server.recv_local().await.unwrap();
        let (client, slots) = item
            .read::<registration::Owned, _>(|r| Ok((r.get_worker()?, r.get_slots())))
            .unwrap();
        assert_eq!(slots, 3);
        let remote = Rc::new(RemoteWorker::from_capability(
            client,
            None,
            Duration::from_secs(30),
        ));
        let answer = remote.assign(HASH_PUZZLE_WASM, 9, 3).await.unwrap();
        assert_eq!(answer, hash_puzzle(9, 3).to_string());
        // When the connection that carried the capability goes, calls fail cleanly.
        drop(connection);
        let error = remote.ping().await.unwrap_err();
        assert!(matches!(error, RpcError::Disconnected(_)), "{error}");
    })
    .unwrap();
}
