//! Serving a bootstrap capability to every peer that opens a protocol stream.

use capnp_rpc::{rpc_twoparty_capnp::Side, twoparty, RpcSystem};
use futures::{AsyncReadExt, StreamExt};

use super::{reader_options, RpcError};
use crate::transport::{Protocol, Transport};

/// A running server; dropping it stops accepting and closes its connections.
pub struct ServeHandle {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ServeHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `bootstrap` to every peer that dials this node for `protocol`.
/// Must be called inside a `LocalSet`.
pub fn serve<T: Transport>(
    transport: &T,
    protocol: &Protocol,
    bootstrap: capnp::capability::Client,
) -> Result<ServeHandle, RpcError> {
    let mut incoming = transport.accept(protocol)?;
    let protocol = protocol.clone();
    let task = tokio::task::spawn_local(async move {
        // Connection tasks live in the set, so aborting this task closes them all.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                next = incoming.next() => match next {
                    Some((peer, stream)) => {
                        tracing::debug!(%peer, %protocol, "rpc connection accepted");
                        let (reader, writer) = stream.split();
                        let network = twoparty::VatNetwork::new(
                            reader,
                            writer,
                            Side::Server,
                            reader_options(),
                        );
                        let system = RpcSystem::new(Box::new(network), Some(bootstrap.clone()));
                        connections.spawn_local(async move {
                            if let Err(e) = system.await {
                                tracing::debug!(%peer, error = %e, "rpc connection ended");
                            }
                        });
                    }
                    None => return,
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
    });
    Ok(ServeHandle { task })
}
