//! The signed record format: what the DHT stores, and how a reader checks it.
//!
//! ```text
//! record   = magic "wwrec1" | kind u8 | publisher (u8 len, bytes) | sent_ms u64 BE
//!            | payload (u32 len BE, bytes) | signature (u8 len, bytes)
//! ```
//!
//! The signature (the publisher's ed25519 key) covers [`SIGNATURE_DOMAIN`] and
//! every byte before the signature. A content record's key is the SHA-256 of
//! its payload, so it is immutable: other bytes have another key. A peer
//! record's key is derived from the peer's id, its payload is the peer's
//! addresses, and only that peer may sign it; a newer one replaces an older.

use sha2::{Digest, Sha256};

use crate::transport::{Address, Identity, PeerId};

/// Bytes that start every record.
const MAGIC: &[u8] = b"wwrec1";
/// What a record's signature covers before its bytes.
pub const SIGNATURE_DOMAIN: &[u8] = b"ww-sched/record/v1\0";
/// What a peer record's key is derived from, before the peer's id.
const PEER_KEY_DOMAIN: &[u8] = b"ww-sched/peer-record/v1\0";
/// The largest payload a record may carry: 4 MiB.
pub const PAYLOAD_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Addresses one peer record may list.
pub const PEER_ADDRESSES_MAX: usize = 16;

/// A record's key: 32 bytes, printed as hex.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKey(pub [u8; 32]);

impl RecordKey {
    /// The key of content `payload`: its SHA-256.
    pub fn of_content(payload: &[u8]) -> Self {
        RecordKey(Sha256::digest(payload).into())
    }

    /// The key under which `peer` publishes its addresses.
    pub fn of_peer(peer: &PeerId) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(PEER_KEY_DOMAIN);
        hasher.update(peer.to_bytes());
        RecordKey(hasher.finalize().into())
    }

    /// Where a node sits in the key space: the SHA-256 of its id.
    pub fn of_node(peer: &PeerId) -> Self {
        RecordKey(Sha256::digest(peer.to_bytes()).into())
    }

    /// The XOR distance to `other`, compared as a big-endian number.
    pub fn distance(&self, other: &RecordKey) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = self.0[i] ^ other.0[i];
        }
        out
    }

    /// The key as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Display for RecordKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::str::FromStr for RecordKey {
    type Err = RecordError;

    fn from_str(s: &str) -> Result<Self, RecordError> {
        let s = s.trim();
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(RecordError::BadKey(s.chars().take(80).collect()));
        }
        let mut key = [0u8; 32];
        for (i, byte) in key.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
                .map_err(|_| RecordError::BadKey(s.to_string()))?;
        }
        Ok(RecordKey(key))
    }
}

/// What a record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordKind {
    /// Bytes addressed by their hash.
    Content,
    /// A peer's addresses, addressed by its id.
    Peer,
}

/// Why a record was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The bytes are not a record of this format.
    #[error("not a record: {0}")]
    Malformed(&'static str),
    /// The payload is larger than allowed.
    #[error("payload is {bytes} bytes, at most {max} allowed")]
    TooLarge {
        /// The payload's size.
        bytes: usize,
        /// The largest allowed.
        max: usize,
    },
    /// The signature does not verify under the publisher's key.
    #[error("signature does not verify for publisher {0}")]
    BadSignature(String),
    /// The record does not have the key it was asked for or stored under.
    #[error("record's key is {actual}, not {expected}")]
    WrongKey {
        /// The key asked for.
        expected: String,
        /// The record's own key.
        actual: String,
    },
    /// A key that is not 64 hex digits.
    #[error("{0:?} is not a record key (64 hex digits)")]
    BadKey(String),
}

/// A checked record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// What it is.
    pub kind: RecordKind,
    /// Who signed it.
    pub publisher: PeerId,
    /// When the publisher made it (its wall clock, Unix ms).
    pub sent_ms: u64,
    /// The bytes (a content record) or addresses one per line (a peer record).
    pub payload: Vec<u8>,
    /// The record as signed: what is stored and sent.
    pub bytes: Vec<u8>,
}

impl Record {
    /// Signs `payload` as a content record of `identity`.
    pub fn content(
        identity: &Identity,
        sent_ms: u64,
        payload: Vec<u8>,
    ) -> Result<Self, RecordError> {
        Self::seal(identity, RecordKind::Content, sent_ms, payload)
    }

    /// Signs `addresses` as `identity`'s peer record.
    pub fn peer(
        identity: &Identity,
        sent_ms: u64,
        addresses: &[Address],
    ) -> Result<Self, RecordError> {
        let text: Vec<&str> = addresses
            .iter()
            .take(PEER_ADDRESSES_MAX)
            .map(Address::as_str)
            .collect();
        Self::seal(
            identity,
            RecordKind::Peer,
            sent_ms,
            text.join("\n").into_bytes(),
        )
    }

    fn seal(
        identity: &Identity,
        kind: RecordKind,
        sent_ms: u64,
        payload: Vec<u8>,
    ) -> Result<Self, RecordError> {
        if payload.len() > PAYLOAD_BYTES_MAX {
            return Err(RecordError::TooLarge {
                bytes: payload.len(),
                max: PAYLOAD_BYTES_MAX,
            });
        }
        let publisher = identity.peer_id();
        let publisher_bytes = publisher.to_bytes();
        let mut bytes = Vec::with_capacity(payload.len() + 160);
        bytes.extend_from_slice(MAGIC);
        bytes.push(match kind {
            RecordKind::Content => 0,
            RecordKind::Peer => 1,
        });
        bytes.push(
            u8::try_from(publisher_bytes.len()).map_err(|_| RecordError::Malformed("publisher"))?,
        );
        bytes.extend_from_slice(&publisher_bytes);
        bytes.extend_from_slice(&sent_ms.to_be_bytes());
        bytes.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&payload);
        let signature = identity.sign(&signed(&bytes));
        bytes.push(u8::try_from(signature.len()).map_err(|_| RecordError::Malformed("signature"))?);
        bytes.extend_from_slice(&signature);
        Ok(Record {
            kind,
            publisher,
            sent_ms,
            payload,
            bytes,
        })
    }

    /// Decodes and checks `bytes`: format, size, signature, and a peer
    /// record's signer. The caller checks the key.
    pub fn open(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut rest = bytes
            .strip_prefix(MAGIC)
            .ok_or(RecordError::Malformed("magic"))?;
        let kind = match take(&mut rest, 1)?[0] {
            0 => RecordKind::Content,
            1 => RecordKind::Peer,
            _ => return Err(RecordError::Malformed("kind")),
        };
        let publisher_len = usize::from(take(&mut rest, 1)?[0]);
        let publisher = PeerId::from_bytes(take(&mut rest, publisher_len)?)
            .map_err(|_| RecordError::Malformed("publisher"))?;
        let sent_ms = u64::from_be_bytes(take(&mut rest, 8)?.try_into().expect("8 bytes"));
        let payload_len =
            u32::from_be_bytes(take(&mut rest, 4)?.try_into().expect("4 bytes")) as usize;
        if payload_len > PAYLOAD_BYTES_MAX {
            return Err(RecordError::TooLarge {
                bytes: payload_len,
                max: PAYLOAD_BYTES_MAX,
            });
        }
        let payload = take(&mut rest, payload_len)?.to_vec();
        let signed_len = bytes.len() - rest.len();
        let signature_len = usize::from(take(&mut rest, 1)?[0]);
        let signature = take(&mut rest, signature_len)?;
        if !rest.is_empty() {
            return Err(RecordError::Malformed("trailing bytes"));
        }
        if !publisher.verify(&signed(&bytes[..signed_len]), signature) {
            return Err(RecordError::BadSignature(publisher.to_string()));
        }
        Ok(Record {
            kind,
            publisher,
            sent_ms,
            payload,
            bytes: bytes.to_vec(),
        })
    }

    /// The key this record lives under.
    pub fn key(&self) -> RecordKey {
        match self.kind {
            RecordKind::Content => RecordKey::of_content(&self.payload),
            RecordKind::Peer => RecordKey::of_peer(&self.publisher),
        }
    }

    /// Opens `bytes` and checks they are the record under `key`.
    pub fn open_as(bytes: &[u8], key: &RecordKey) -> Result<Self, RecordError> {
        let record = Record::open(bytes)?;
        let actual = record.key();
        if actual != *key {
            return Err(RecordError::WrongKey {
                expected: key.to_hex(),
                actual: actual.to_hex(),
            });
        }
        Ok(record)
    }

    /// A peer record's addresses (empty for a content record).
    pub fn addresses(&self) -> Vec<Address> {
        if self.kind != RecordKind::Peer {
            return Vec::new();
        }
        String::from_utf8_lossy(&self.payload)
            .lines()
            .filter(|line| !line.is_empty())
            .take(PEER_ADDRESSES_MAX)
            .map(Address::new)
            .collect()
    }
}

fn signed(bytes: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNATURE_DOMAIN.len() + bytes.len());
    message.extend_from_slice(SIGNATURE_DOMAIN);
    message.extend_from_slice(bytes);
    message
}

fn take<'a>(rest: &mut &'a [u8], len: usize) -> Result<&'a [u8], RecordError> {
    if rest.len() < len {
        return Err(RecordError::Malformed("truncated"));
    }
    let (head, tail) = rest.split_at(len);
    *rest = tail;
    Ok(head)
}
