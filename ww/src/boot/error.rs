//! What can go wrong in discovery.

use crate::transport::TransportError;

/// A discovery failure; each variant says what was attempted and what state is left.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// The namespace does not fit a packet; nothing was advertised or searched.
    #[error("namespace is {len_bytes} bytes, at most {max_bytes} allowed; nothing changed")]
    NamespaceTooLong {
        /// The namespace's length.
        len_bytes: usize,
        /// The longest namespace allowed.
        max_bytes: usize,
    },
    /// Advertising needs at least one address to hand out; nothing was advertised.
    #[error("cannot advertise {namespace:?}: the transport listens on no address yet")]
    NoListenAddresses {
        /// The namespace that was not advertised.
        namespace: String,
    },
    /// The table of advertised namespaces is full; the new one was not added.
    #[error("already advertising {max} namespaces; {namespace:?} was not added")]
    TooManyNamespaces {
        /// The namespace that was not advertised.
        namespace: String,
        /// How many namespaces one node may advertise at once.
        max: usize,
    },
    /// The identity handed in is not the transport's; nothing was started.
    #[error("identity {identity} is not the transport's peer {transport}; nothing started")]
    IdentityMismatch {
        /// The identity's peer id.
        identity: String,
        /// The transport's peer id.
        transport: String,
    },
    /// A configuration value is out of range; nothing was started.
    #[error("invalid discovery config: {0}; nothing started")]
    Config(String),
    /// Binding the discovery socket failed; nothing was started.
    #[error("discovery socket: {0}")]
    Socket(#[source] TransportError),
    /// The boot server could not be reached or refused the call; nothing was
    /// registered or found by this call.
    #[error("boot server {server}: {detail}")]
    Server {
        /// The server's peer id.
        server: String,
        /// What failed.
        detail: String,
    },
    /// The background socket loop has ended; this discovery object is unusable.
    #[error("discovery socket loop has stopped; nothing was sent")]
    Stopped,
}

/// Why a `--discover` spec was refused: the input and what was expected instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid discovery spec {input:?}: expected {expected}")]
pub struct SpecError {
    /// The text (or part of it) that did not parse.
    pub input: String,
    /// What would have been accepted there.
    pub expected: String,
}

impl SpecError {
    /// An error for `input` saying what was `expected`.
    pub(crate) fn new(input: impl Into<String>, expected: impl Into<String>) -> Self {
        SpecError {
            input: input.into(),
            expected: expected.into(),
        }
    }
}
