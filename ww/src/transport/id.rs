//! Names on the network: who a node is, what it speaks, where it listens.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use super::TransportError;

/// A node's identity on the cluster: the multihash of its ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub(crate) libp2p::PeerId);

impl PeerId {
    /// The id's canonical bytes (a multihash), as carried on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.0.to_bytes()
    }

    /// Checks that `signature` is this peer's signature of `message`. Only ids that
    /// embed their public key (ed25519 ids do) can be checked; others never verify.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        const IDENTITY_MULTIHASH: u64 = 0x00;
        let multihash: &libp2p::multihash::Multihash<64> = self.0.as_ref();
        if multihash.code() != IDENTITY_MULTIHASH {
            return false;
        }
        match libp2p::identity::PublicKey::try_decode_protobuf(multihash.digest()) {
            Ok(key) => key.verify(message, signature),
            Err(_) => false,
        }
    }

    /// Parses canonical bytes produced by [`PeerId::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TransportError> {
        libp2p::PeerId::from_bytes(bytes)
            .map(PeerId)
            .map_err(|e| TransportError::InvalidPeerId(e.to_string()))
    }
}

/// Peer ids whose text this thread remembers, at most.
const TEXT_CACHED_MAX: usize = 4_096;

thread_local! {
    /// The base58 text of peer ids this thread has shown. Encoding is quadratic
    /// in the id's length (about a microsecond each), and ids are shown per
    /// heartbeat: as the routing table's key and in every view event logged, so
    /// in a simulation of n nodes on one thread n^2 times per heartbeat interval.
    /// Bounded, so ids an attacker makes up cannot grow it without end, and
    /// emptied when full, so ids met after months of churn are cached as well as
    /// the first ones. The text is a function of the id, so the cache changes
    /// nothing but time.
    static TEXT: std::cell::RefCell<std::collections::BTreeMap<PeerId, std::rc::Rc<str>>> =
        const { std::cell::RefCell::new(std::collections::BTreeMap::new()) };
}

impl PeerId {
    /// Calls `f` with the id's base58 text, from this thread's cache when it
    /// can.
    fn with_text<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        let cached = TEXT.with(|text| text.borrow().get(self).cloned());
        if let Some(text) = cached {
            return f(&text);
        }
        let text: std::rc::Rc<str> = self.0.to_base58().into();
        TEXT.with(|cache| {
            let mut cache = cache.borrow_mut();
            if cache.len() >= TEXT_CACHED_MAX {
                cache.clear();
            }
            cache.insert(*self, text.clone());
        });
        f(&text)
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_text(|text| f.pad(text))
    }
}

impl fmt::Debug for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_text(|text| write!(f, "PeerId({text})"))
    }
}

impl FromStr for PeerId {
    type Err = TransportError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        libp2p::PeerId::from_str(s)
            .map(PeerId)
            .map_err(|e| TransportError::InvalidPeerId(format!("{s:?}: {e}")))
    }
}

/// A node's ed25519 key pair; its public half names the node.
#[derive(Clone)]
pub struct Identity(pub(crate) libp2p::identity::Keypair);

impl Identity {
    /// A fresh random identity: a restarted node gets a new id.
    pub fn generate() -> Self {
        Identity(libp2p::identity::Keypair::generate_ed25519())
    }

    /// A deterministic identity from 32 secret bytes (simulations derive them from the seed).
    pub fn from_secret(mut secret: [u8; 32]) -> Self {
        // Cannot fail: any 32 bytes are a valid ed25519 secret key.
        let keypair = libp2p::identity::Keypair::ed25519_from_bytes(&mut secret)
            .expect("32 bytes are always a valid ed25519 secret");
        Identity(keypair)
    }

    /// Loads the identity stored at `path`, or creates and stores a new one, so that a
    /// restarted node keeps its id. The file holds the protobuf-encoded key pair.
    pub fn load_or_create(path: &Path) -> Result<Self, TransportError> {
        let key_error = |detail: String| TransportError::KeyFile {
            path: path.display().to_string(),
            detail,
        };
        match std::fs::read(path) {
            Ok(bytes) => libp2p::identity::Keypair::from_protobuf_encoding(&bytes)
                .map(Identity)
                .map_err(|e| key_error(format!("not a key file: {e}"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let identity = Self::generate();
                let bytes = identity
                    .0
                    .to_protobuf_encoding()
                    .map_err(|e| key_error(e.to_string()))?;
                write_private_file(path, &bytes).map_err(|e| key_error(e.to_string()))?;
                Ok(identity)
            }
            Err(e) => Err(key_error(e.to_string())),
        }
    }

    /// Signs `message` with the node's private key (ed25519: 64 bytes).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        // ed25519 signing cannot fail; only RSA and secp256k1 keys, never made here, can.
        self.0.sign(message).expect("ed25519 signing is infallible")
    }

    /// The id that this key pair names.
    pub fn peer_id(&self) -> PeerId {
        PeerId(self.0.public().to_peer_id())
    }
}

/// Writes the file through a temporary name so a crash never leaves half a key behind.
fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// The name of a stream protocol, such as `/ww-sched/0.1/worker`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Protocol(String);

impl Protocol {
    /// Protocol names longer than this are refused (they travel in every handshake).
    pub const LEN_MAX: usize = 128;

    /// Checks that `name` starts with `/`, is printable ASCII and is not too long.
    pub fn new(name: impl Into<String>) -> Result<Self, TransportError> {
        let name = name.into();
        let printable = name.bytes().all(|b| (0x21..=0x7e).contains(&b));
        if !name.starts_with('/') || !printable || name.len() > Self::LEN_MAX {
            return Err(TransportError::InvalidProtocol(name));
        }
        Ok(Protocol(name))
    }

    /// The protocol's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A listen or dial address in multiaddr text form, e.g. `/ip4/127.0.0.1/tcp/4001`.
///
/// Kept as text so layers above the transport never depend on a multiaddr library.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Address(String);

impl Address {
    /// Wraps a multiaddr string; each transport validates it when it is used.
    pub fn new(text: impl Into<String>) -> Self {
        Address(text.into())
    }

    /// The multiaddr text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Splits a trailing `/p2p/<peer id>` off the address, as users paste them.
    pub fn split_peer(&self) -> Result<(Address, Option<PeerId>), TransportError> {
        match self.0.rsplit_once("/p2p/") {
            Some((base, id)) => Ok((Address::new(base), Some(id.parse()?))),
            None => Ok((self.clone(), None)),
        }
    }

    /// This address with `/p2p/<peer>` appended: what another node needs to dial us.
    pub fn with_peer(&self, peer: &PeerId) -> Address {
        Address(format!("{}/p2p/{}", self.0, peer))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Address {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Address::new(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_cache_stays_bounded_and_exact() {
        let ids: Vec<PeerId> = (0..TEXT_CACHED_MAX + 100)
            .map(|_| PeerId(libp2p::PeerId::random()))
            .collect();
        for id in &ids {
            assert_eq!(id.to_string(), id.0.to_base58());
            let cached = TEXT.with(|cache| cache.borrow().len());
            assert!((1..=TEXT_CACHED_MAX).contains(&cached), "{cached}");
        }
        // Past the bound the cache was emptied and refilled: the newest ids are in it.
        let last = ids.last().expect("ids");
        assert!(TEXT.with(|cache| cache.borrow().contains_key(last)));
        assert_eq!(
            format!("{last:?}"),
            format!("PeerId({})", last.0.to_base58())
        );
    }
}
