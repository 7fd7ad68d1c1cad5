//! What can go wrong below the RPC layer.

/// A transport failure; each variant says what was attempted and what state is left.
///
/// Peer ids appear in their text form, which keeps the error small enough to pass by value.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The text is not a peer id.
    #[error("invalid peer id: {0}")]
    InvalidPeerId(String),
    /// Protocol names start with `/`, are printable ASCII and at most 128 bytes.
    #[error(
        "invalid protocol name {0:?}: must start with '/', be printable ASCII, at most 128 bytes"
    )]
    InvalidProtocol(String),
    /// The address cannot be used by this transport.
    #[error("unsupported address {address}: {detail}")]
    InvalidAddress {
        /// The address as given.
        address: String,
        /// Why it was refused.
        detail: String,
    },
    /// The identity key file could not be read or written; no identity was loaded.
    #[error("key file {path}: {detail}")]
    KeyFile {
        /// The key file's path.
        path: String,
        /// What failed.
        detail: String,
    },
    /// Binding a listener failed; nothing is listening on that address.
    #[error("listen on {address} failed: {detail}")]
    Listen {
        /// The address we tried to listen on.
        address: String,
        /// Why it failed.
        detail: String,
    },
    /// We know no address for the peer, so it cannot be dialed.
    #[error("no known address for peer {0}")]
    NoAddress(String),
    /// Opening a stream to the peer failed; no stream exists.
    #[error("dial {peer} for {protocol} failed: {detail}")]
    Dial {
        /// The peer we dialed.
        peer: String,
        /// The protocol we asked for.
        protocol: String,
        /// Why it failed.
        detail: String,
    },
    /// The peer does not speak the protocol.
    #[error("peer {peer} does not support {protocol}")]
    UnsupportedProtocol {
        /// The peer we dialed.
        peer: String,
        /// The protocol we asked for.
        protocol: String,
    },
    /// The address answered with another identity than the one we dialed.
    #[error("dialed {expected} but reached {actual}")]
    PeerMismatch {
        /// The peer we meant to reach.
        expected: String,
        /// The peer that answered.
        actual: String,
    },
    /// A network wait ran past its deadline and was abandoned.
    #[error("{what} timed out after {timeout_ms} ms")]
    Timeout {
        /// What we were waiting for.
        what: String,
        /// The deadline, in milliseconds.
        timeout_ms: u64,
    },
    /// Some protocol is already being accepted; accept it once and share the stream.
    #[error("protocol {0} is already being accepted")]
    AlreadyAccepting(String),
    /// Topic names are 1 to 128 bytes.
    #[error("invalid topic name {0:?}: must be 1 to 128 bytes")]
    InvalidTopic(String),
    /// The message is larger than the pubsub medium carries; nothing was sent.
    #[error("payload of {len} bytes exceeds the {max}-byte limit; nothing was sent")]
    PayloadTooLarge {
        /// The payload's size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The transport's background task has stopped; the transport is unusable.
    #[error("transport is shut down")]
    Shutdown,
    /// An I/O error from the operating system or the simulated network.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl TransportError {
    /// Wraps an I/O error with what we were doing.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        TransportError::Io {
            context: context.into(),
            source,
        }
    }
}
