//! Cap'n Proto capabilities over any [`Transport`]: serve a bootstrap capability on
//! a protocol, connect to a peer's, and bound every wait.
//!
//! capnp-rpc is `!Send`, so everything here runs on one thread: a node's RPC lives
//! on a current-thread tokio runtime with a [`tokio::task::LocalSet`] (see
//! [`block_on_local`]); turmoil hosts already run that way.
//!
//! # Example
//!
//! A capability (here a CSP channel) served on one loopback node and called
//! from another.
//!
//! ```
//! use capnp::capability::FromClientHook;
//! use ww::csp::{ChanConfig, ChannelServer};
//! use ww::rpc::{self, export_protocol, RpcConfig};
//! use ww::schema::channel_capnp::{chan, recver, sender};
//! use ww::transport::{Address, Identity, Libp2pConfig, Libp2pTransport, Transport};
//!
//! rpc::block_on_local(async {
//!     let protocol = export_protocol("example")?;
//!     let host = Libp2pTransport::new(Libp2pConfig::new(Identity::generate()))?;
//!     let channel = ChannelServer::new(ChanConfig { capacity: 1, ..ChanConfig::default() })?;
//!     let _serving = rpc::serve(&host, &protocol, channel.client().client)?;
//!     let bound = host.listen(Address::new("/ip4/127.0.0.1/tcp/0")).await?;
//!     let guest = Libp2pTransport::new(Libp2pConfig::new(Identity::generate()))?;
//!     guest.add_peer_address(host.local_peer_id(), bound)?;
//!     let connection = rpc::connect::<_, chan::Client>(
//!         &guest,
//!         host.local_peer_id(),
//!         &protocol,
//!         RpcConfig::default(),
//!     )
//!     .await?;
//!     let chan = connection.client();
//!     let send: sender::Client = chan.clone().cast_to();
//!     let mut request = send.send_request();
//!     request.get().init_value().set_as::<capnp::text::Owned>("hi")?;
//!     request.send().promise.await?;
//!     let recv: recver::Client = chan.clone().cast_to();
//!     let answer = recv.recv_request().send().promise.await?;
//!     let value = answer.get()?.get_value().get_as::<capnp::text::Reader>()?;
//!     assert_eq!(value.to_str()?, "hi");
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })??;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod connection;
mod error;
mod serve;

use std::future::Future;
use std::time::Duration;

pub use connection::{connect, Connection};
pub use error::RpcError;
pub use serve::{export_protocol, serve, serve_per_peer, ServeHandle, ServeLimits};

/// Timeouts for connecting and calling.
#[derive(Clone, Copy, Debug)]
pub struct RpcConfig {
    /// Dialing, handshaking and bootstrapping a connection.
    pub connect_timeout: Duration,
    /// One call, from sending to the answer.
    pub call_timeout: Duration,
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            connect_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(60),
        }
    }
}

/// Words a received message may traverse: 64 MiB, room for a 16 MiB module twice over.
pub const TRAVERSAL_LIMIT_WORDS: usize = 8 * 1024 * 1024;

/// How every RPC connection reads messages: bounded by [`TRAVERSAL_LIMIT_WORDS`].
pub fn reader_options() -> capnp::message::ReaderOptions {
    let mut options = capnp::message::ReaderOptions::new();
    options.traversal_limit_in_words(Some(TRAVERSAL_LIMIT_WORDS));
    options
}

/// Bytes a connection's writes gather before they reach the stream: capnp writes
/// a message's segment table and each segment separately and flushes after the
/// message, so unbuffered every message costs two frames in each layer below
/// (yamux, noise) and two `send`s.
pub const WRITE_BUFFER_BYTES: usize = 8 * 1024;

/// Bytes a connection reads ahead: capnp reads a message's segment table, then
/// its segments, so unbuffered every message costs two reads of the stream.
pub const READ_BUFFER_BYTES: usize = 8 * 1024;

/// The two-party Cap'n Proto network every RPC connection runs on `stream`:
/// reads bounded by [`reader_options`] and read ahead, writes gathered per
/// message.
pub fn vat_network<S>(
    stream: S,
    side: capnp_rpc::rpc_twoparty_capnp::Side,
) -> capnp_rpc::twoparty::VatNetwork<futures::io::BufReader<futures::io::ReadHalf<S>>>
where
    S: futures::AsyncRead + futures::AsyncWrite + Unpin + 'static,
{
    use futures::AsyncReadExt;
    let (reader, writer) = stream.split();
    let reader = futures::io::BufReader::with_capacity(READ_BUFFER_BYTES, reader);
    let writer = futures::io::BufWriter::with_capacity(WRITE_BUFFER_BYTES, writer);
    capnp_rpc::twoparty::VatNetwork::new(reader, writer, side, reader_options())
}

/// Awaits an RPC `call` for at most `timeout`; a hang becomes [`RpcError::Timeout`].
pub async fn call_with_timeout<T>(
    what: &str,
    timeout: Duration,
    call: impl Future<Output = Result<T, capnp::Error>>,
) -> Result<T, RpcError> {
    match tokio::time::timeout(timeout, call).await {
        Ok(result) => result.map_err(RpcError::from),
        Err(_) => Err(RpcError::Timeout {
            what: what.to_string(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        }),
    }
}

/// Like [`call_with_timeout`], and a failure that means the connection is gone
/// (timeout, disconnect) sets `lost`, since a stream stuck behind a partition
/// stays stuck.
pub async fn call_noting_loss<T>(
    lost: &std::cell::Cell<bool>,
    what: &str,
    timeout: Duration,
    call: impl Future<Output = Result<T, capnp::Error>>,
) -> Result<T, RpcError> {
    let result = call_with_timeout(what, timeout, call).await;
    if result.as_ref().is_err_and(RpcError::is_connection_lost) {
        lost.set(true);
    }
    result
}

/// Runs `future` on a new current-thread runtime inside a `LocalSet`: the shape
/// every real node's RPC thread has.
pub fn block_on_local<F: Future>(future: F) -> std::io::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    Ok(local.block_on(&runtime, future))
}
