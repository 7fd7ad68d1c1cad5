//! The cluster's shared secret: a libp2p private-network key (PSK v1).
//!
//! Holders of the key are the cluster. It does three things: libp2p's pnet layer
//! encrypts every connection with it (a node without it cannot finish a
//! handshake), and discovery packets and heartbeats carry an HMAC-SHA256 tag
//! under a key derived from it (a node without it can be neither discovered nor
//! admitted to a view). The file format is the one go-libp2p, js-libp2p and IPFS
//! private networks use, so keys are interchangeable with those tools.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::TransportError;

/// The first line of a swarm key file.
pub const SWARM_KEY_HEADER: &str = "/key/swarm/psk/1.0.0/";
/// The second line: the encoding of the key that follows.
pub const SWARM_KEY_ENCODING: &str = "/base16/";
/// Bytes in a swarm key.
pub const SWARM_KEY_BYTES: usize = 32;
/// Bytes of an authentication tag ([`SwarmKey::tag`]).
pub const TAG_BYTES: usize = 32;
/// Largest swarm key file read (the format needs about 90 bytes).
const SWARM_KEY_FILE_BYTES_MAX: u64 = 4096;

/// A 32-byte pre-shared key naming a private cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct SwarmKey {
    secret: [u8; SWARM_KEY_BYTES],
    /// The HMAC key for packets: derived, so a tag never exposes the pnet key.
    mac_key: [u8; 32],
}

/// Why text is not a swarm key; nothing was loaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SwarmKeyError {
    /// The first line is not `/key/swarm/psk/1.0.0/`.
    #[error("not a swarm key: the first line must be {SWARM_KEY_HEADER}")]
    BadHeader,
    /// The encoding line is missing or not `/base16/` (the only one supported).
    #[error("unsupported key encoding {0:?}: only {SWARM_KEY_ENCODING} is supported")]
    BadEncoding(String),
    /// The key line is not 64 hexadecimal digits.
    #[error("the key must be {} hexadecimal digits", SWARM_KEY_BYTES * 2)]
    BadKey,
    /// Text follows the key line.
    #[error("unexpected text after the key")]
    TrailingText,
}

impl SwarmKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> Self {
        let mut secret = [0u8; SWARM_KEY_BYTES];
        rand::fill(&mut secret);
        Self::from_bytes(secret)
    }

    /// The key made of these 32 bytes (simulations derive them from their seed).
    pub fn from_bytes(secret: [u8; SWARM_KEY_BYTES]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"ww-sched/swarm-key/packet-mac/v1\0");
        hasher.update(secret);
        SwarmKey {
            secret,
            mac_key: hasher.finalize().into(),
        }
    }

    /// The raw key, as libp2p's pnet layer takes it.
    pub(crate) fn secret(&self) -> [u8; SWARM_KEY_BYTES] {
        self.secret
    }

    /// Reads a key file (at most 4 KiB), naming the file in every error.
    pub fn load(path: &Path) -> Result<Self, TransportError> {
        let key_error = |detail: String| TransportError::KeyFile {
            path: path.display().to_string(),
            detail,
        };
        let size = std::fs::metadata(path)
            .map_err(|e| key_error(e.to_string()))?
            .len();
        if size > SWARM_KEY_FILE_BYTES_MAX {
            return Err(key_error(format!(
                "{size} bytes is too large for a swarm key"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| key_error(e.to_string()))?;
        text.parse()
            .map_err(|e: SwarmKeyError| key_error(e.to_string()))
    }

    /// A short public name of the key (8 hex digits of a hash of it), safe to log,
    /// so operators can tell whether two nodes hold the same key.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.mac_key);
        digest[..4].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The HMAC-SHA256 tag of `message` under this key, within `domain`, so a
    /// tag made for one kind of message never verifies as another.
    pub fn tag(&self, domain: &[u8], message: &[u8]) -> [u8; TAG_BYTES] {
        self.mac(domain, message).finalize().into_bytes().into()
    }

    /// Whether `tag` is this key's tag of `message` within `domain`; the
    /// comparison takes the same time wherever the first difference is.
    pub fn verify(&self, domain: &[u8], message: &[u8], tag: &[u8]) -> bool {
        self.mac(domain, message).verify_slice(tag).is_ok()
    }

    fn mac(&self, domain: &[u8], message: &[u8]) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.mac_key)
            .expect("HMAC takes keys of any length");
        // The domain's length goes first so (domain, message) splits are unambiguous.
        mac.update(&(domain.len() as u64).to_be_bytes());
        mac.update(domain);
        mac.update(message);
        mac
    }
}

impl fmt::Display for SwarmKey {
    /// The file form: header, encoding, 64 lowercase hex digits, one per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{SWARM_KEY_HEADER}")?;
        writeln!(f, "{SWARM_KEY_ENCODING}")?;
        for byte in self.secret {
            write!(f, "{byte:02x}")?;
        }
        writeln!(f)
    }
}

impl fmt::Debug for SwarmKey {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SwarmKey({})", self.fingerprint())
    }
}

impl FromStr for SwarmKey {
    type Err = SwarmKeyError;

    /// Parses the file form; surrounding whitespace and CRLF line ends are accepted.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if lines.next() != Some(SWARM_KEY_HEADER) {
            return Err(SwarmKeyError::BadHeader);
        }
        match lines.next() {
            Some(SWARM_KEY_ENCODING) => {}
            other => return Err(SwarmKeyError::BadEncoding(other.unwrap_or("").into())),
        }
        let hex = lines.next().ok_or(SwarmKeyError::BadKey)?;
        if lines.next().is_some() {
            return Err(SwarmKeyError::TrailingText);
        }
        if hex.len() != SWARM_KEY_BYTES * 2 || !hex.is_ascii() {
            return Err(SwarmKeyError::BadKey);
        }
        let mut secret = [0u8; SWARM_KEY_BYTES];
        for (i, byte) in secret.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
                .map_err(|_| SwarmKeyError::BadKey)?;
        }
        Ok(SwarmKey::from_bytes(secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_form_round_trips_and_is_the_libp2p_format() {
        let key = SwarmKey::generate();
        let text = key.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "/key/swarm/psk/1.0.0/");
        assert_eq!(lines[1], "/base16/");
        assert_eq!(lines[2].len(), 64);
        assert!(lines[2].bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(text.parse::<SwarmKey>().unwrap(), key);
        assert_ne!(SwarmKey::generate(), key, "two generated keys differ");
    }

    #[test]
    fn malformed_keys_are_refused_with_a_reason() {
        let hex = "ab".repeat(32);
        let cases = [
            ("".to_string(), SwarmKeyError::BadHeader),
            (
                format!("/key/swarm/psk/2.0.0/\n/base16/\n{hex}"),
                SwarmKeyError::BadHeader,
            ),
            (
                format!("/key/swarm/psk/1.0.0/\n/base64/\n{hex}"),
                SwarmKeyError::BadEncoding("/base64/".into()),
            ),
            (
                "/key/swarm/psk/1.0.0/\n/base16/\nabcd".to_string(),
                SwarmKeyError::BadKey,
            ),
            (
                format!("/key/swarm/psk/1.0.0/\n/base16/\n{}zz", &hex[2..]),
                SwarmKeyError::BadKey,
            ),
            (
                format!("/key/swarm/psk/1.0.0/\n/base16/\n{hex}\nmore"),
                SwarmKeyError::TrailingText,
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(text.parse::<SwarmKey>().unwrap_err(), expected, "{text:?}");
        }
        let crlf = format!("/key/swarm/psk/1.0.0/\r\n/base16/\r\n{hex}\r\n");
        assert_eq!(crlf.parse::<SwarmKey>().unwrap().secret(), [0xab; 32]);
    }

    #[test]
    fn tags_verify_only_under_the_same_key_domain_and_message() {
        let key = SwarmKey::from_bytes([7; 32]);
        let other = SwarmKey::from_bytes([8; 32]);
        let tag = key.tag(b"heartbeat", b"hello");
        assert!(key.verify(b"heartbeat", b"hello", &tag));
        assert!(!other.verify(b"heartbeat", b"hello", &tag));
        assert!(!key.verify(b"discovery", b"hello", &tag));
        assert!(!key.verify(b"heartbeat", b"hellO", &tag));
        assert!(!key.verify(b"heartbeat", b"hello", &tag[..31]));
        // The domain/message boundary is part of what is signed.
        assert!(!key.verify(b"heartbeath", b"ello", &tag));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = SwarmKey::from_bytes([0xab; 32]);
        let shown = format!("{key:?}");
        assert!(!shown.contains("abab"), "{shown}");
        assert_eq!(shown, format!("SwarmKey({})", key.fingerprint()));
    }
}
