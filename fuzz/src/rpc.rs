//! Arbitrary bytes as the incoming stream of an RPC connection, served as a
//! real connection is (`twoparty` with the RPC layer's reader limits): to a
//! `Worker` (the calls that carry a `TaskSpec` in) and to a channel server
//! (sends and receives of arbitrary values). Neither may panic, and the
//! connection must end once the stream does.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use capnp_rpc::rpc_twoparty_capnp::Side;
use capnp_rpc::{twoparty, RpcSystem};
use futures::AsyncReadExt as _;
use tokio::io::AsyncWriteExt as _;
use tokio_util::compat::TokioAsyncReadCompatExt as _;
use ww::csp::{ChanConfig, ChannelServer};
use ww::exec::{Limits, Sandbox, SandboxConfig};
use ww_sched::worker::{WorkerConfig, WorkerServer};

/// How long a connection may take to end after its input ends: virtual
/// time (the runtime's clock is paused and jumps when all is idle), so a
/// hang costs nothing but is still caught.
const END_TIMEOUT: Duration = Duration::from_secs(60);

/// One sandbox for all inputs, as a worker has; runs are capped small so
/// that an input which does form a valid call ends at once.
static SANDBOX: LazyLock<Arc<Sandbox>> =
    LazyLock::new(|| Arc::new(Sandbox::new(SandboxConfig::default())));

/// Serves `bootstrap` over a connection whose peer sends `data` and then
/// closes its side; panics if the connection outlives [`END_TIMEOUT`].
fn serve_bytes(data: &[u8], bootstrap: impl FnOnce() -> capnp::capability::Client) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async {
        let (mut peer, server) = tokio::io::duplex(64 * 1024);
        let (reader, writer) = server.compat().split();
        let network =
            twoparty::VatNetwork::new(reader, writer, Side::Server, ww::rpc::reader_options());
        let system = RpcSystem::new(Box::new(network), Some(bootstrap()));
        let input = data.to_vec();
        // The peer writes its bytes, closes its sending side, and drains
        // what the server answers so that the server never blocks on it.
        let peer_task = tokio::task::spawn_local(async move {
            let (mut from_server, mut to_server) = tokio::io::split(&mut peer);
            let write = async {
                let _ = to_server.write_all(&input).await;
                let _ = to_server.shutdown().await;
            };
            let drain = async {
                let mut sink = tokio::io::sink();
                let _ = tokio::io::copy(&mut from_server, &mut sink).await;
            };
            tokio::join!(write, drain);
        });
        let ended = tokio::time::timeout(END_TIMEOUT, system).await;
        assert!(
            ended.is_ok(),
            "the connection did not end after its input did"
        );
        peer_task.abort();
    });
}

/// The bytes of one connection to a `Worker`.
pub fn rpc_worker(data: &[u8]) {
    serve_bytes(data, || {
        let config = WorkerConfig {
            limits_max: Limits {
                fuel_max: 1_000_000,
                memory_pages_max: 16,
                wall_time_ms: 50,
            },
            ..WorkerConfig::default()
        };
        WorkerServer::new(SANDBOX.clone(), config)
            .into_client()
            .client
    });
}

/// The bytes of one connection to a channel server (a buffered channel, so
/// that sends complete and receives find values).
pub fn rpc_channel(data: &[u8]) {
    serve_bytes(data, || {
        let server = ChannelServer::new(ChanConfig {
            capacity: 4,
            ..ChanConfig::default()
        })
        .expect("a channel server");
        server.client().client
    });
}
