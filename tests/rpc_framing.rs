//! How RPC messages reach the stream: `vat_network` gathers each message into
//! one write, where capnp alone writes its segment table and each segment
//! separately (and every write costs a yamux frame, a noise frame and a `send`
//! on the libp2p transport).

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use capnp_rpc::{rpc_twoparty_capnp::Side, RpcSystem};
use futures::{AsyncRead, AsyncWrite};
use tokio_util::compat::TokioAsyncReadCompatExt;
use ww::exec::{Sandbox, SandboxConfig};
use ww::rpc::{block_on_local, vat_network};
use ww_sched::schema::worker_capnp::worker;
use ww_sched::worker::{WorkerConfig, WorkerServer};

/// A stream that counts the writes that carry bytes.
struct CountingWrites<S> {
    inner: S,
    writes: Rc<Cell<usize>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for CountingWrites<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountingWrites<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.writes.set(self.writes.get() + 1);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[test]
fn each_message_leaves_in_one_write() {
    const PINGS: usize = 50;
    block_on_local(async {
        let (client_end, server_end) = tokio::io::duplex(64 * 1024);
        let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()));
        let server = WorkerServer::new(sandbox, WorkerConfig::default()).into_client();
        let server_network = vat_network(server_end.compat(), Side::Server);
        tokio::task::spawn_local(RpcSystem::new(
            Box::new(server_network),
            Some(server.client),
        ));

        let writes = Rc::new(Cell::new(0));
        let counted = CountingWrites {
            inner: client_end.compat(),
            writes: writes.clone(),
        };
        let mut system = RpcSystem::new(Box::new(vat_network(counted, Side::Client)), None);
        let client: worker::Client = system.bootstrap(Side::Server);
        tokio::task::spawn_local(system);

        client.ping_request().send().promise.await.unwrap();
        let before = writes.get();
        for _ in 0..PINGS {
            client.ping_request().send().promise.await.unwrap();
        }
        // A ping is one message from the client (a `Call` that needs no
        // `Finish`): one write gathered, two (segment table, segment) if not.
        assert_eq!(
            writes.get() - before,
            PINGS,
            "writes for {PINGS} pings: messages are split into several writes"
        );
    })
    .unwrap();
}
