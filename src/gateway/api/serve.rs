//! The HTTP/1.1 server of the REST API on a real TCP listener: bounded in
//! connections and in how long a client may take to send a request's head,
//! which axum's own `serve` bounds in neither (a client trickling headers, or
//! idling between requests, would hold a task and a file descriptor for ever,
//! before any check of [`super::guard`] can run).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::guard::HttpLimits;

/// Pause after an accept error that is not one connection's (EMFILE: out of
/// file descriptors), so the loop does not spin while none come free.
const ACCEPT_BACKOFF: Duration = Duration::from_secs(1);

/// Serves `router` on `listener` until the task is dropped: at most
/// `limits.connections_max` connections at once (further clients wait in the
/// kernel's backlog), each closed when a request's head, or the next request
/// on a kept-alive connection, takes over `limits.header_read_timeout`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: HttpLimits,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(limits.connections_max));
    loop {
        let Ok(permit) = connections.clone().acquire_owned().await else {
            // The semaphore is never closed; stop cleanly if it were.
            return Ok(());
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                if !matches!(
                    error.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::ConnectionReset
                ) {
                    tracing::error!(%error, "HTTP accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                tracing::debug!(%peer, %error, "HTTP connection ended with an error");
            }
            drop(permit);
        });
    }
}
