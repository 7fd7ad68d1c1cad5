//! The discovery wire format: a compact, versioned packet inside a signed,
//! optionally authenticated envelope.
//!
//! Packet (all integers big-endian):
//! `version:u8=2 | kind:u8 | sent_ms:u64 | ns_len:u8 | ns | id_len:u8 | peer id bytes |
//! body`, where `sent_ms` is the sender's wall clock (Unix ms), kind 1 (request) has
//! no body, kind 2 (survey) has `distance:u8`, and kind 3 (response) has
//! `count:u8 | (len:u16 | multiaddr text)*count`.
//!
//! Envelope: `"WWB" | version:u8=2 | len:u16 | payload | len:u8 | signer peer id |
//! len:u8 | signature | len:u8 | tag`, the signature being the signer's over
//! [`SIGNATURE_DOMAIN`] followed by the payload, and the tag (empty, or 32 bytes)
//! the swarm key's HMAC ([`TAG_DOMAIN`]) of every envelope byte before the tag's
//! length. Trailing bytes are refused everywhere.
//!
//! Only version 2 is read: discovery is cluster-internal and every node of a
//! cluster runs the same release, so an old node is simply not found.

use crate::transport::{Address, Identity, PeerId, SwarmKey, TAG_BYTES};

use super::stats::DropReason;

/// The largest datagram sent or accepted.
pub const DATAGRAM_MAX_BYTES: usize = 2048;
/// The longest namespace a packet carries.
pub const NAMESPACE_MAX_BYTES: usize = 255;
/// The most addresses a response carries.
pub const ADDRESSES_MAX: usize = 16;
/// The longest single address a response carries.
pub const ADDRESS_MAX_BYTES: usize = 512;
/// Prefixed to the payload before signing, so a boot signature means nothing elsewhere.
pub const SIGNATURE_DOMAIN: &[u8] = b"ww-sched/boot/packet/v2\0";
/// The swarm-key tag's domain, so a discovery tag never verifies as a heartbeat's.
pub const TAG_DOMAIN: &[u8] = b"ww-sched/boot/v2";

const PACKET_VERSION: u8 = 2;
const ENVELOPE_MAGIC: &[u8; 4] = b"WWB\x02";
const KIND_REQUEST: u8 = 1;
const KIND_SURVEY: u8 = 2;
const KIND_RESPONSE: u8 = 3;

/// What a packet asks or answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// "Who advertises this namespace?", sent unicast by a crawler.
    Request {
        /// The asking peer.
        from: PeerId,
    },
    /// The same question to a multicast group, answered only by peers near `from`.
    Survey {
        /// The asking peer.
        from: PeerId,
        /// How many low bits of the id tails may differ (32 or more: everyone answers).
        distance: u8,
    },
    /// "I advertise this namespace, reach me here."
    Response {
        /// The answering peer.
        peer: PeerId,
        /// Where it listens.
        addresses: Vec<Address>,
    },
}

impl Body {
    /// The peer the packet claims to come from; it must be the envelope's signer.
    pub fn sender(&self) -> &PeerId {
        match self {
            Body::Request { from } | Body::Survey { from, .. } => from,
            Body::Response { peer, .. } => peer,
        }
    }
}

/// One discovery message, scoped to a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    /// The namespace asked or answered for.
    pub namespace: String,
    /// When the sender sent it, by its wall clock (Unix ms); checked for freshness.
    pub sent_ms: u64,
    /// The question or answer.
    pub body: Body,
}

/// Why bytes are not a packet or an envelope.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// The input ended inside a field.
    #[error("truncated: {0} missing")]
    Truncated(&'static str),
    /// Bytes follow the last field.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    /// Another version or magic than this codec speaks.
    #[error("unknown version or magic")]
    UnknownVersion,
    /// A packet kind this codec does not know.
    #[error("unknown packet kind {0}")]
    UnknownKind(u8),
    /// A text field is not UTF-8.
    #[error("{0} is not UTF-8")]
    NotUtf8(&'static str),
    /// The peer id bytes do not parse.
    #[error("invalid peer id")]
    BadPeerId,
    /// A field is longer than the format allows; nothing was encoded.
    #[error("{what} too long: {len} > {max}")]
    TooLong {
        /// Which field.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl Packet {
    /// Encodes the packet; fails if a field exceeds the format's limits.
    pub fn encode(&self) -> Result<Vec<u8>, PacketError> {
        let mut out = Vec::with_capacity(128);
        let kind = match self.body {
            Body::Request { .. } => KIND_REQUEST,
            Body::Survey { .. } => KIND_SURVEY,
            Body::Response { .. } => KIND_RESPONSE,
        };
        out.extend_from_slice(&[PACKET_VERSION, kind]);
        out.extend_from_slice(&self.sent_ms.to_be_bytes());
        put_u8_bytes(&mut out, "namespace", self.namespace.as_bytes())?;
        put_u8_bytes(&mut out, "peer id", &self.body.sender().to_bytes())?;
        match &self.body {
            Body::Request { .. } => {}
            Body::Survey { distance, .. } => out.push(*distance),
            Body::Response { addresses, .. } => {
                if addresses.len() > ADDRESSES_MAX {
                    return Err(PacketError::TooLong {
                        what: "address list",
                        len: addresses.len(),
                        max: ADDRESSES_MAX,
                    });
                }
                out.push(addresses.len() as u8);
                for address in addresses {
                    let bytes = address.as_str().as_bytes();
                    if bytes.len() > ADDRESS_MAX_BYTES {
                        return Err(PacketError::TooLong {
                            what: "address",
                            len: bytes.len(),
                            max: ADDRESS_MAX_BYTES,
                        });
                    }
                    out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
                    out.extend_from_slice(bytes);
                }
            }
        }
        Ok(out)
    }

    /// Decodes a packet, refusing anything malformed, over-long or with trailing bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, PacketError> {
        let mut r = Reader(bytes);
        if r.u8("version")? != PACKET_VERSION {
            return Err(PacketError::UnknownVersion);
        }
        let kind = r.u8("kind")?;
        let sent_ms = u64::from_be_bytes(r.array("sent_ms")?);
        let namespace = r.u8_len_bytes("namespace")?;
        let namespace = std::str::from_utf8(namespace)
            .map_err(|_| PacketError::NotUtf8("namespace"))?
            .to_string();
        let id = r.u8_len_bytes("peer id")?;
        let id = PeerId::from_bytes(id).map_err(|_| PacketError::BadPeerId)?;
        let body = match kind {
            KIND_REQUEST => Body::Request { from: id },
            KIND_SURVEY => Body::Survey {
                from: id,
                distance: r.u8("distance")?,
            },
            KIND_RESPONSE => {
                let count = usize::from(r.u8("address count")?);
                if count > ADDRESSES_MAX {
                    return Err(PacketError::TooLong {
                        what: "address list",
                        len: count,
                        max: ADDRESSES_MAX,
                    });
                }
                let mut addresses = Vec::with_capacity(count);
                for _ in 0..count {
                    let len = usize::from(u16::from_be_bytes([
                        r.u8("address length")?,
                        r.u8("address length")?,
                    ]));
                    if len > ADDRESS_MAX_BYTES {
                        return Err(PacketError::TooLong {
                            what: "address",
                            len,
                            max: ADDRESS_MAX_BYTES,
                        });
                    }
                    let text = std::str::from_utf8(r.take(len, "address")?)
                        .map_err(|_| PacketError::NotUtf8("address"))?;
                    addresses.push(Address::new(text));
                }
                Body::Response {
                    peer: id,
                    addresses,
                }
            }
            other => return Err(PacketError::UnknownKind(other)),
        };
        r.finish()?;
        Ok(Packet {
            namespace,
            sent_ms,
            body,
        })
    }
}

/// A payload with its signer and signature, as it travels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The encoded [`Packet`].
    pub payload: Vec<u8>,
    /// The signer's peer id bytes (empty: unsigned).
    pub signer: Vec<u8>,
    /// The signature over [`SIGNATURE_DOMAIN`] ‖ payload (empty: unsigned).
    pub signature: Vec<u8>,
    /// The swarm key's tag of the bytes before it (empty: no key).
    pub tag: Vec<u8>,
}

impl Envelope {
    /// Signs `payload` with `identity` and, given a key, tags it.
    pub fn seal(
        identity: &Identity,
        key: Option<&SwarmKey>,
        payload: Vec<u8>,
    ) -> Result<Self, PacketError> {
        let signature = identity.sign(&signed_message(&payload));
        let mut envelope = Envelope {
            payload,
            signer: identity.peer_id().to_bytes(),
            signature,
            tag: Vec::new(),
        };
        if let Some(key) = key {
            envelope.tag = key.tag(TAG_DOMAIN, &envelope.authenticated()?).to_vec();
        }
        Ok(envelope)
    }

    /// Encodes the envelope; fails if a field exceeds the format's limits.
    pub fn encode(&self) -> Result<Vec<u8>, PacketError> {
        let mut out = self.authenticated()?;
        put_u8_bytes(&mut out, "tag", &self.tag)?;
        Ok(out)
    }

    /// The bytes the tag covers: everything before the tag's length.
    fn authenticated(&self) -> Result<Vec<u8>, PacketError> {
        let mut out = Vec::with_capacity(self.payload.len() + 128);
        out.extend_from_slice(ENVELOPE_MAGIC);
        let len = u16::try_from(self.payload.len()).map_err(|_| PacketError::TooLong {
            what: "payload",
            len: self.payload.len(),
            max: usize::from(u16::MAX),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.payload);
        put_u8_bytes(&mut out, "signer", &self.signer)?;
        put_u8_bytes(&mut out, "signature", &self.signature)?;
        Ok(out)
    }

    /// Decodes an envelope without checking its signature.
    pub fn decode(bytes: &[u8]) -> Result<Self, PacketError> {
        let mut r = Reader(bytes);
        if r.take(ENVELOPE_MAGIC.len(), "magic")? != ENVELOPE_MAGIC {
            return Err(PacketError::UnknownVersion);
        }
        let len = usize::from(u16::from_be_bytes([
            r.u8("payload length")?,
            r.u8("payload length")?,
        ]));
        let payload = r.take(len, "payload")?.to_vec();
        let signer = r.u8_len_bytes("signer")?.to_vec();
        let signature = r.u8_len_bytes("signature")?.to_vec();
        let tag = r.u8_len_bytes("tag")?.to_vec();
        r.finish()?;
        Ok(Envelope {
            payload,
            signer,
            signature,
            tag,
        })
    }
}

/// Encodes `packet`, seals it with `identity` and tags it with `key`, ready to send.
pub fn seal(
    identity: &Identity,
    key: Option<&SwarmKey>,
    packet: &Packet,
) -> Result<Vec<u8>, PacketError> {
    Envelope::seal(identity, key, packet.encode()?)?.encode()
}

/// What a receiver checks a datagram against.
#[derive(Clone, Copy, Debug)]
pub struct Checks<'a> {
    /// The largest datagram accepted.
    pub max_bytes: usize,
    /// The cluster's key: with one, only tagged envelopes are accepted; without,
    /// only untagged ones (a tag we cannot check is no better than none).
    pub key: Option<&'a SwarmKey>,
    /// The receiver's wall clock now (Unix ms).
    pub now_ms: u64,
    /// How far `sent_ms` may be from `now_ms`, either way.
    pub freshness_window_ms: u64,
}

/// Checks a received datagram in order (size, envelope, tag, signature, packet,
/// signer, freshness) and returns the packet, or the reason to drop it. The tag
/// goes before the signature: an HMAC is cheap, so a flood without the key costs
/// no ed25519 verification. Namespace and self checks are the caller's, since
/// they depend on the node's state.
pub fn open(datagram: &[u8], checks: &Checks<'_>) -> Result<Packet, DropReason> {
    if datagram.len() > checks.max_bytes {
        return Err(DropReason::Oversized);
    }
    let envelope = Envelope::decode(datagram).map_err(|_| DropReason::Malformed)?;
    // The envelope decoded exactly, so the tag's length byte and the tag end it.
    let authenticated = &datagram[..datagram.len() - 1 - envelope.tag.len()];
    let tag_ok = match checks.key {
        Some(key) => {
            envelope.tag.len() == TAG_BYTES && key.verify(TAG_DOMAIN, authenticated, &envelope.tag)
        }
        None => envelope.tag.is_empty(),
    };
    if !tag_ok {
        return Err(DropReason::Unauthenticated);
    }
    if envelope.signer.is_empty() || envelope.signature.is_empty() {
        return Err(DropReason::Unsigned);
    }
    let signer = PeerId::from_bytes(&envelope.signer).map_err(|_| DropReason::BadSignature)?;
    let digest = envelope_digest(&envelope);
    if !verified_before(&digest) {
        if !signer.verify(&signed_message(&envelope.payload), &envelope.signature) {
            return Err(DropReason::BadSignature);
        }
        remember_verified(digest);
    }
    let packet = Packet::decode(&envelope.payload).map_err(|_| DropReason::Malformed)?;
    if *packet.body.sender() != signer {
        return Err(DropReason::SignerMismatch);
    }
    if packet.sent_ms.abs_diff(checks.now_ms) > checks.freshness_window_ms {
        return Err(DropReason::NotFresh);
    }
    Ok(packet)
}

/// Envelopes whose signature this thread has verified, remembered at most.
const VERIFIED_MAX: usize = 4_096;

/// A bounded set of envelope digests, with their insertion order for eviction.
struct VerifiedDigests {
    set: std::collections::BTreeSet<[u8; 32]>,
    order: std::collections::VecDeque<[u8; 32]>,
}

thread_local! {
    /// Digests of envelopes verified on this thread, oldest first. A group answer
    /// reaches every node on the group; nodes sharing a thread (tests,
    /// simulations) then check its signature once instead of once each, and a
    /// replayed datagram costs a hash instead of an ed25519 verification.
    static VERIFIED: std::cell::RefCell<VerifiedDigests> = const {
        std::cell::RefCell::new(VerifiedDigests {
            set: std::collections::BTreeSet::new(),
            order: std::collections::VecDeque::new(),
        })
    };
}

/// A digest of everything the signature covers and of the signature and signer.
fn envelope_digest(envelope: &Envelope) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in [&envelope.signer, &envelope.signature, &envelope.payload] {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

fn verified_before(digest: &[u8; 32]) -> bool {
    VERIFIED.with(|v| v.borrow().set.contains(digest))
}

fn remember_verified(digest: [u8; 32]) {
    VERIFIED.with(|v| {
        let verified = &mut *v.borrow_mut();
        if verified.set.insert(digest) {
            verified.order.push_back(digest);
            while verified.order.len() > VERIFIED_MAX {
                if let Some(oldest) = verified.order.pop_front() {
                    verified.set.remove(&oldest);
                }
            }
        }
    });
}

fn signed_message(payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNATURE_DOMAIN.len() + payload.len());
    message.extend_from_slice(SIGNATURE_DOMAIN);
    message.extend_from_slice(payload);
    message
}

fn put_u8_bytes(out: &mut Vec<u8>, what: &'static str, bytes: &[u8]) -> Result<(), PacketError> {
    let len = u8::try_from(bytes.len()).map_err(|_| PacketError::TooLong {
        what,
        len: bytes.len(),
        max: usize::from(u8::MAX),
    })?;
    out.push(len);
    out.extend_from_slice(bytes);
    Ok(())
}

/// A cursor that fails cleanly at the end of input.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], PacketError> {
        if self.0.len() < len {
            return Err(PacketError::Truncated(what));
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, PacketError> {
        Ok(self.take(1, what)?[0])
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], PacketError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    fn u8_len_bytes(&mut self, what: &'static str) -> Result<&'a [u8], PacketError> {
        let len = usize::from(self.u8(what)?);
        self.take(len, what)
    }

    fn finish(self) -> Result<(), PacketError> {
        match self.0.len() {
            0 => Ok(()),
            n => Err(PacketError::TrailingBytes(n)),
        }
    }
}

#[cfg(test)]
#[path = "packet_tests.rs"]
mod tests;
