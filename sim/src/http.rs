//! HTTP/1.1 over the simulated network: the real axum [`Router`] served on a
//! turmoil TCP listener, and a minimal client over turmoil TCP streams, so that
//! simulated clients reach the gateway's REST API through partitions, latency
//! and crashes instead of calling the router in-process.
//!
//! Everything runs on the host's `LocalSet` (turmoil hosts are single-threaded),
//! so nothing here needs `Send`, and nothing reads the wall clock or a random
//! source: the same seed gives the same exchanges.

use std::fmt;
use std::time::Duration;

use axum::Router;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::task::JoinHandle;
use turmoil::net::{TcpListener, TcpStream};

/// Pause after a failed accept, so a persistent error cannot spin the host.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(5);

/// Serves `router` on every connection `listener` accepts, forever. Dropping
/// the future closes the listener and every connection (a process exit).
pub async fn serve(listener: TcpListener, router: Router) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        // Reap finished connections so the set stays as small as the open ones.
        while connections.try_join_next().is_some() {}
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::debug!(%error, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(router.clone());
        // One task per connection so a slow or stalled peer blocks nobody else.
        connections.spawn_local(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            if let Err(error) = connection.await {
                // Peers vanish mid-exchange whenever the simulation crashes or
                // partitions them; that is expected, not a server fault.
                tracing::debug!(%peer, %error, "http connection ended with an error");
            }
        });
    }
}

/// A complete HTTP response: its status code and whole body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The body bytes, fully read.
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The body parsed as JSON, or `Value::Null` if it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Why a [`request`] got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpError {
    /// The TCP connection could not be opened (`host:port: cause`).
    Connect(String),
    /// No complete response arrived within the request's timeout.
    Timeout,
    /// The request was invalid or the exchange broke (`host:port: cause`).
    Protocol(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Connect(detail) => write!(f, "could not connect to {detail}"),
            HttpError::Timeout => f.write_str("no complete HTTP response before the timeout"),
            HttpError::Protocol(detail) => write!(f, "HTTP exchange with {detail}"),
        }
    }
}

impl std::error::Error for HttpError {}

/// Aborts the connection task when the request ends, including when a timeout
/// drops the request midway, so no stalled connection outlives its request.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sends one HTTP/1.1 request on a fresh connection to `host:port` and reads the
/// whole response, all within `timeout`.
pub async fn request(
    host: &str,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<HttpResponse, HttpError> {
    let exchange = exchange(host, port, method, path, headers, body);
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or(Err(HttpError::Timeout))
}

async fn exchange(
    host: &str,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<HttpResponse, HttpError> {
    let target = format!("{host}:{port}");
    let protocol = |what: &str, error: &dyn fmt::Display| {
        HttpError::Protocol(format!("{target} failed: {what}: {error}"))
    };

    // Build the request first: a malformed one should not cost a connection.
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, &target);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let outgoing = builder
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| protocol(&format!("invalid request {method} {path}"), &e))?;

    let stream = TcpStream::connect((host, port))
        .await
        // turmoil's connect errors carry only the address, so name the kind too.
        .map_err(|e| HttpError::Connect(format!("{target}: {} ({e})", e.kind())))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| protocol("handshake", &e))?;
    let _connection = AbortOnDrop(tokio::task::spawn_local(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "http client connection ended with an error");
        }
    }));

    let response = sender
        .send_request(outgoing)
        .await
        .map_err(|e| protocol(&format!("sending {method} {path}"), &e))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| protocol(&format!("reading the body of {method} {path}"), &e))?
        .to_bytes()
        .to_vec();
    Ok(HttpResponse { status, body })
}
