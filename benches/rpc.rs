//! Sequential round trip of a no-op call (`Worker.ping`): bare capnp-rpc over
//! loopback TCP versus the same call through the libp2p transport (noise + yamux),
//! and through it inside a private network (pnet under noise).
//!
//! Both run in one process on one current-thread runtime, client and server
//! alike, so the ratio isolates what the transport adds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use capnp_rpc::{rpc_twoparty_capnp::Side, RpcSystem};
mod support;

use criterion::{criterion_group, criterion_main, Criterion};
use support::{serve_on_loopback_keyed, LoopbackPair};
use tokio::runtime::Runtime;
use tokio::task::LocalSet;
use tokio_util::compat::TokioAsyncReadCompatExt;
use ww::exec::{Sandbox, SandboxConfig};
use ww::rpc::{vat_network, RpcConfig};
use ww::transport::SwarmKey;
use ww_sched::schema::worker_capnp::worker;
use ww_sched::worker::{RemoteWorker, WorkerConfig, WorkerServer};

fn worker_client() -> worker::Client {
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()));
    WorkerServer::new(sandbox, WorkerConfig::default()).into_client()
}

/// The baseline: capnp-rpc's two-party network straight on a tokio TCP socket,
/// its writes gathered per message as on the libp2p paths (`vat_network`).
async fn bare_tcp_client() -> worker::Client {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = worker_client();
    tokio::task::spawn_local(async move {
        let (socket, _) = listener.accept().await.unwrap();
        socket.set_nodelay(true).unwrap();
        let network = vat_network(socket.compat(), Side::Server);
        let _ = RpcSystem::new(Box::new(network), Some(server.client)).await;
    });
    let socket = tokio::net::TcpStream::connect(address).await.unwrap();
    socket.set_nodelay(true).unwrap();
    let network = vat_network(socket.compat(), Side::Client);
    let mut system = RpcSystem::new(Box::new(network), None);
    let client: worker::Client = system.bootstrap(Side::Server);
    tokio::task::spawn_local(system);
    client
}

/// The same capability behind two libp2p transports on loopback, in the
/// private network of `key` if there is one (pnet under noise).
async fn libp2p_worker(key: Option<SwarmKey>) -> (LoopbackPair, RemoteWorker) {
    let pair = serve_on_loopback_keyed(
        &ww_sched::worker::worker_protocol(),
        worker_client().client,
        key,
    )
    .await;
    let remote = RemoteWorker::connect(&pair.caller, pair.server_peer, RpcConfig::default())
        .await
        .unwrap();
    remote.ping().await.unwrap();
    (pair, remote)
}

fn bench(c: &mut Criterion) {
    let (runtime, local) = support::node_runtime();
    let bare = local.block_on(&runtime, bare_tcp_client());
    let (_keep, remote) = local.block_on(&runtime, libp2p_worker(None));
    let (_keep_keyed, keyed) = local.block_on(&runtime, libp2p_worker(Some(SwarmKey::generate())));

    let mut group = c.benchmark_group("ping_round_trip");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("bare_capnp_tcp", |b| {
        b.iter_custom(|iters| {
            run(&runtime, &local, async {
                let started = Instant::now();
                for _ in 0..iters {
                    bare.ping_request().send().promise.await.unwrap();
                }
                started.elapsed()
            })
        })
    });
    group.bench_function("libp2p_transport", |b| {
        b.iter_custom(|iters| {
            run(&runtime, &local, async {
                let started = Instant::now();
                for _ in 0..iters {
                    remote.ping().await.unwrap();
                }
                started.elapsed()
            })
        })
    });
    group.bench_function("libp2p_transport_pnet", |b| {
        b.iter_custom(|iters| {
            run(&runtime, &local, async {
                let started = Instant::now();
                for _ in 0..iters {
                    keyed.ping().await.unwrap();
                }
                started.elapsed()
            })
        })
    });
    group.finish();
}

fn run<F: std::future::Future>(runtime: &Runtime, local: &LocalSet, future: F) -> F::Output {
    local.block_on(runtime, future)
}

criterion_group!(benches, bench);
criterion_main!(benches);
