//! Failures of connecting to and calling capabilities.

use crate::transport::TransportError;

/// An RPC failure. A timed-out or disconnected connection should be dropped and
/// dialed again; the others say what the peer answered.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// Opening the underlying stream failed.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// No answer within the deadline; the call's outcome on the peer is unknown.
    #[error("{what} timed out after {timeout_ms} ms")]
    Timeout {
        /// What we were waiting for.
        what: String,
        /// The deadline, in milliseconds.
        timeout_ms: u64,
    },
    /// The connection was lost; the call's outcome on the peer is unknown.
    #[error("disconnected: {0}")]
    Disconnected(String),
    /// The peer answered with an error.
    #[error("remote error: {0}")]
    Remote(String),
    /// The peer's answer could not be read (malformed or over a limit).
    #[error("bad answer: {0}")]
    BadAnswer(String),
}

impl RpcError {
    /// Whether the connection is unusable and should be replaced by a new dial.
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            RpcError::Transport(_) | RpcError::Timeout { .. } | RpcError::Disconnected(_)
        )
    }
}

impl From<capnp::Error> for RpcError {
    fn from(error: capnp::Error) -> Self {
        match error.kind {
            capnp::ErrorKind::Disconnected => RpcError::Disconnected(error.extra),
            capnp::ErrorKind::Failed
            | capnp::ErrorKind::Overloaded
            | capnp::ErrorKind::Unimplemented => RpcError::Remote(error.extra),
            _ => RpcError::BadAnswer(error.to_string()),
        }
    }
}
