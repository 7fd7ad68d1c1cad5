//! The heartbeat a node publishes to announce itself, and its compact binary codec.
//!
//! Wire format, version 2 (all integers big-endian):
//!
//! ```text
//! version u8 (= 2) | ttl_ms u32 | instance u64 | seq u64 | sent_ms u64
//! host_len u8 | host (UTF-8)
//! meta_count u8 | meta_count × ( key_len u8 | key | value_len u16 | value )
//! tag_len u8 (0 or 32) | tag
//! ```
//!
//! `sent_ms` is the sender's wall clock (Unix ms), so receivers can refuse a stale
//! or replayed heartbeat. The tag, present when the cluster has a swarm key, is the
//! key's HMAC ([`HEARTBEAT_TAG_DOMAIN`]) of the publisher's peer id (length first)
//! followed by every byte before `tag_len`: a key holder's heartbeat cannot be
//! passed off as another peer's. Nothing may follow the tag. A value length is two
//! bytes so a later version may raise [`META_VALUE_BYTES_MAX`] without changing
//! the layout. Only version 2 is read: heartbeats are cluster-internal and every
//! node of a cluster runs the same release.

use thiserror::Error;

use crate::transport::{PeerId, SwarmKey, TAG_BYTES};

/// The codec version this build writes and the only one it reads.
pub const HEARTBEAT_VERSION: u8 = 2;
/// The swarm-key tag's domain, so a heartbeat tag never verifies as a discovery packet's.
pub const HEARTBEAT_TAG_DOMAIN: &[u8] = b"ww-sched/heartbeat/v2";
/// Largest encoded heartbeat, in bytes (it must fit one pubsub message comfortably).
pub const HEARTBEAT_BYTES_MAX: usize = 2048;
/// Longest host name, in bytes of UTF-8.
pub const HOST_BYTES_MAX: usize = 255;
/// Most metadata pairs per heartbeat.
pub const META_PAIRS_MAX: usize = 32;
/// Longest metadata key, in bytes of UTF-8.
pub const META_KEY_BYTES_MAX: usize = 64;
/// Longest metadata value, in bytes of UTF-8.
pub const META_VALUE_BYTES_MAX: usize = 255;
/// Shortest accepted time to live; shorter would flap under ordinary gossip delay.
pub const TTL_MS_MIN: u32 = 100;
/// Longest accepted time to live (one hour), so a dead node cannot linger for days.
pub const TTL_MS_MAX: u32 = 3_600_000;

/// Bytes before the host: version, ttl, instance, seq, sent_ms.
const FIXED_HEAD_BYTES: usize = 1 + 4 + 8 + 8 + 8;

/// Why a heartbeat could not be built, decoded or parsed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HeartbeatError {
    /// The message ended before a field was complete.
    #[error("heartbeat truncated: message ended inside the {field} field")]
    Truncated {
        /// The field that was cut off.
        field: &'static str,
    },
    /// The message (or the one a constructor would produce) is too large.
    #[error("heartbeat is {len_bytes} bytes, more than the {HEARTBEAT_BYTES_MAX}-byte limit")]
    MessageTooLarge {
        /// Its size in bytes.
        len_bytes: usize,
    },
    /// The first byte names a codec version this build does not read.
    #[error("heartbeat version {version} is not supported (expected {HEARTBEAT_VERSION})")]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },
    /// `ttl_ms` is outside `TTL_MS_MIN..=TTL_MS_MAX`.
    #[error("heartbeat ttl {ttl_ms} ms is outside {TTL_MS_MIN}..={TTL_MS_MAX} ms")]
    TtlOutOfRange {
        /// The ttl found.
        ttl_ms: u32,
    },
    /// The host name is longer than [`HOST_BYTES_MAX`].
    #[error("heartbeat host is {len_bytes} bytes, more than {HOST_BYTES_MAX}")]
    HostTooLong {
        /// Its length in bytes.
        len_bytes: usize,
    },
    /// The host name is not UTF-8.
    #[error("heartbeat host is not valid UTF-8")]
    HostNotUtf8,
    /// More than [`META_PAIRS_MAX`] metadata pairs.
    #[error("heartbeat has {count} metadata pairs, more than {META_PAIRS_MAX}")]
    TooManyMeta {
        /// How many pairs were given or announced.
        count: usize,
    },
    /// A metadata key is empty.
    #[error("heartbeat metadata key is empty")]
    MetaKeyEmpty,
    /// A metadata key contains `=`, which would make `key=value` text ambiguous.
    #[error("heartbeat metadata key {key:?} contains '='")]
    MetaKeyHasSeparator {
        /// The offending key.
        key: String,
    },
    /// A metadata key is longer than [`META_KEY_BYTES_MAX`].
    #[error("heartbeat metadata key is {len_bytes} bytes, more than {META_KEY_BYTES_MAX}")]
    MetaKeyTooLong {
        /// Its length in bytes.
        len_bytes: usize,
    },
    /// A metadata key is not UTF-8.
    #[error("heartbeat metadata key is not valid UTF-8")]
    MetaKeyNotUtf8,
    /// A metadata value is longer than [`META_VALUE_BYTES_MAX`].
    #[error("heartbeat metadata value is {len_bytes} bytes, more than {META_VALUE_BYTES_MAX}")]
    MetaValueTooLong {
        /// Its length in bytes.
        len_bytes: usize,
    },
    /// A metadata value is not UTF-8.
    #[error("heartbeat metadata value is not valid UTF-8")]
    MetaValueNotUtf8,
    /// The tag is neither absent nor [`TAG_BYTES`] long.
    #[error("heartbeat tag is {len_bytes} bytes (expected 0 or {TAG_BYTES})")]
    TagLength {
        /// Its length in bytes.
        len_bytes: usize,
    },
    /// The swarm-key tag is missing or wrong for its publisher, or present when
    /// this node has no key.
    #[error("heartbeat not authenticated: swarm-key tag missing, wrong, or unexpected")]
    Unauthenticated,
    /// Bytes follow the last field.
    #[error("heartbeat has {count} trailing bytes after the last field")]
    TrailingBytes {
        /// How many bytes were left over.
        count: usize,
    },
    /// A `--meta` argument has no `=`.
    #[error("metadata {text:?} has no '=' (expected key=value)")]
    MetaSeparatorMissing {
        /// The text given.
        text: String,
    },
}

/// One node's announcement: who it is (this run), how long to trust it, and metadata.
///
/// Fields are private so every value obeys the codec limits: [`Heartbeat::encode`]
/// then cannot fail, and whatever it writes [`Heartbeat::decode`] reads back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Heartbeat {
    ttl_ms: u32,
    instance: u64,
    seq: u64,
    sent_ms: u64,
    host: String,
    meta: Vec<(String, String)>,
}

impl Heartbeat {
    /// Builds a heartbeat, sorting `meta` by key then value and dropping duplicates.
    pub fn new(
        ttl_ms: u32,
        instance: u64,
        seq: u64,
        host: impl Into<String>,
        meta: Vec<(String, String)>,
    ) -> Result<Self, HeartbeatError> {
        let host = host.into();
        check_ttl(ttl_ms)?;
        if host.len() > HOST_BYTES_MAX {
            return Err(HeartbeatError::HostTooLong {
                len_bytes: host.len(),
            });
        }
        let mut meta = meta;
        meta.sort();
        meta.dedup();
        if meta.len() > META_PAIRS_MAX {
            return Err(HeartbeatError::TooManyMeta { count: meta.len() });
        }
        for (key, value) in &meta {
            check_key(key)?;
            if value.len() > META_VALUE_BYTES_MAX {
                return Err(HeartbeatError::MetaValueTooLong {
                    len_bytes: value.len(),
                });
            }
        }
        let heartbeat = Heartbeat {
            ttl_ms,
            instance,
            seq,
            sent_ms: 0,
            host,
            meta,
        };
        // Room for a tag is kept, so a heartbeat valid here is valid sealed.
        let len_bytes = heartbeat.encoded_len() + TAG_BYTES;
        if len_bytes > HEARTBEAT_BYTES_MAX {
            return Err(HeartbeatError::MessageTooLarge { len_bytes });
        }
        Ok(heartbeat)
    }

    /// The same heartbeat with another sequence number (the size does not change).
    pub fn with_seq(mut self, seq: u64) -> Self {
        self.seq = seq;
        self
    }

    /// The same heartbeat stamped with another send time (the size does not change).
    pub fn with_sent_ms(mut self, sent_ms: u64) -> Self {
        self.sent_ms = sent_ms;
        self
    }

    /// When the sender sent it, by its wall clock (Unix ms).
    pub fn sent_ms(&self) -> u64 {
        self.sent_ms
    }

    /// How long a receiver keeps this node after this heartbeat, in milliseconds.
    pub fn ttl_ms(&self) -> u32 {
        self.ttl_ms
    }

    /// The random id of this run of the node; a restart draws a new one.
    pub fn instance(&self) -> u64 {
        self.instance
    }

    /// The per-instance counter, incremented on every heartbeat.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The node's host name.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Metadata pairs, sorted by key then value, without duplicates.
    pub fn meta(&self) -> &[(String, String)] {
        &self.meta
    }

    /// The instance id as 16 lowercase hex digits, as queries and logs show it.
    pub fn instance_hex(&self) -> String {
        format!("{:016x}", self.instance)
    }

    /// The exact size [`Heartbeat::encode`] produces (a tag adds [`TAG_BYTES`]).
    pub fn encoded_len(&self) -> usize {
        let meta_bytes: usize = self
            .meta
            .iter()
            .map(|(key, value)| 1 + key.len() + 2 + value.len())
            .sum();
        FIXED_HEAD_BYTES + 1 + self.host.len() + 1 + meta_bytes + 1
    }

    /// Writes the version-2 wire form without a tag (a cluster without a key).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.encode_body();
        out.push(0);
        out
    }

    /// Writes the version-2 wire form as `origin` publishes it: tagged under
    /// `key` if the cluster has one, else as [`Heartbeat::encode`].
    pub fn seal(&self, key: Option<&SwarmKey>, origin: &PeerId) -> Vec<u8> {
        let mut out = self.encode_body();
        match key {
            Some(key) => {
                let tag = key.tag(HEARTBEAT_TAG_DOMAIN, &tagged_message(origin, &out));
                out.push(TAG_BYTES as u8);
                out.extend_from_slice(&tag);
            }
            None => out.push(0),
        }
        out
    }

    /// Reads a heartbeat published by `origin`, refusing it unless its tag is
    /// `key`'s tag for `origin` (with a key) or it has no tag (without one).
    pub fn open(
        bytes: &[u8],
        key: Option<&SwarmKey>,
        origin: &PeerId,
    ) -> Result<Heartbeat, HeartbeatError> {
        let (heartbeat, tag) = Self::decode_parts(bytes)?;
        // decode_parts succeeded, so the tag and its length byte end the input.
        let body = &bytes[..bytes.len() - 1 - tag.len()];
        let authentic = match key {
            Some(key) => {
                !tag.is_empty()
                    && key.verify(HEARTBEAT_TAG_DOMAIN, &tagged_message(origin, body), tag)
            }
            None => tag.is_empty(),
        };
        if !authentic {
            return Err(HeartbeatError::Unauthenticated);
        }
        Ok(heartbeat)
    }

    /// Everything before the tag's length byte.
    fn encode_body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len() + TAG_BYTES);
        out.push(HEARTBEAT_VERSION);
        out.extend_from_slice(&self.ttl_ms.to_be_bytes());
        out.extend_from_slice(&self.instance.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.sent_ms.to_be_bytes());
        // The casts cannot truncate: `new` and `decode` enforce the limits, all < 256.
        out.push(self.host.len() as u8);
        out.extend_from_slice(self.host.as_bytes());
        out.push(self.meta.len() as u8);
        for (key, value) in &self.meta {
            out.push(key.len() as u8);
            out.extend_from_slice(key.as_bytes());
            out.extend_from_slice(&(value.len() as u16).to_be_bytes());
            out.extend_from_slice(value.as_bytes());
        }
        out
    }

    /// Reads a wire-form heartbeat, checking every limit but not authenticating
    /// it (receivers use [`Heartbeat::open`]); never panics.
    pub fn decode(bytes: &[u8]) -> Result<Heartbeat, HeartbeatError> {
        Self::decode_parts(bytes).map(|(heartbeat, _)| heartbeat)
    }

    /// The heartbeat and its tag (empty if none).
    fn decode_parts(bytes: &[u8]) -> Result<(Heartbeat, &[u8]), HeartbeatError> {
        if bytes.len() > HEARTBEAT_BYTES_MAX {
            return Err(HeartbeatError::MessageTooLarge {
                len_bytes: bytes.len(),
            });
        }
        let mut reader = Reader { rest: bytes };
        let version = reader.u8("version")?;
        if version != HEARTBEAT_VERSION {
            return Err(HeartbeatError::UnsupportedVersion { version });
        }
        let ttl_ms = u32::from_be_bytes(reader.array("ttl_ms")?);
        check_ttl(ttl_ms)?;
        let instance = u64::from_be_bytes(reader.array("instance")?);
        let seq = u64::from_be_bytes(reader.array("seq")?);
        let sent_ms = u64::from_be_bytes(reader.array("sent_ms")?);
        let host_len = usize::from(reader.u8("host length")?);
        let host = std::str::from_utf8(reader.take(host_len, "host")?)
            .map_err(|_| HeartbeatError::HostNotUtf8)?
            .to_string();
        let count = usize::from(reader.u8("meta count")?);
        if count > META_PAIRS_MAX {
            return Err(HeartbeatError::TooManyMeta { count });
        }
        let mut meta = Vec::with_capacity(count);
        for _ in 0..count {
            let key_len = usize::from(reader.u8("meta key length")?);
            if key_len > META_KEY_BYTES_MAX {
                return Err(HeartbeatError::MetaKeyTooLong { len_bytes: key_len });
            }
            let key = std::str::from_utf8(reader.take(key_len, "meta key")?)
                .map_err(|_| HeartbeatError::MetaKeyNotUtf8)?;
            check_key(key)?;
            let value_len = usize::from(u16::from_be_bytes(reader.array("meta value length")?));
            if value_len > META_VALUE_BYTES_MAX {
                return Err(HeartbeatError::MetaValueTooLong {
                    len_bytes: value_len,
                });
            }
            let value = std::str::from_utf8(reader.take(value_len, "meta value")?)
                .map_err(|_| HeartbeatError::MetaValueNotUtf8)?;
            meta.push((key.to_string(), value.to_string()));
        }
        let tag_len = usize::from(reader.u8("tag length")?);
        if tag_len != 0 && tag_len != TAG_BYTES {
            return Err(HeartbeatError::TagLength { len_bytes: tag_len });
        }
        let tag = reader.take(tag_len, "tag")?;
        if !reader.rest.is_empty() {
            return Err(HeartbeatError::TrailingBytes {
                count: reader.rest.len(),
            });
        }
        meta.sort();
        meta.dedup();
        let heartbeat = Heartbeat {
            ttl_ms,
            instance,
            seq,
            sent_ms,
            host,
            meta,
        };
        Ok((heartbeat, tag))
    }
}

/// What a heartbeat tag covers: the publisher's id (length first), then the body.
fn tagged_message(origin: &PeerId, body: &[u8]) -> Vec<u8> {
    let origin = origin.to_bytes();
    let mut message = Vec::with_capacity(1 + origin.len() + body.len());
    // A peer id is at most 64 bytes, so its length fits one byte.
    message.push(origin.len() as u8);
    message.extend_from_slice(&origin);
    message.extend_from_slice(body);
    message
}

/// Splits a `--meta` argument `key=value` on its first `=`; the value may be empty
/// or contain `=`, the key may not be empty.
pub fn parse_meta(text: &str) -> Result<(String, String), HeartbeatError> {
    let (key, value) =
        text.split_once('=')
            .ok_or_else(|| HeartbeatError::MetaSeparatorMissing {
                text: text.to_string(),
            })?;
    check_key(key)?;
    if value.len() > META_VALUE_BYTES_MAX {
        return Err(HeartbeatError::MetaValueTooLong {
            len_bytes: value.len(),
        });
    }
    Ok((key.to_string(), value.to_string()))
}

fn check_ttl(ttl_ms: u32) -> Result<(), HeartbeatError> {
    if (TTL_MS_MIN..=TTL_MS_MAX).contains(&ttl_ms) {
        Ok(())
    } else {
        Err(HeartbeatError::TtlOutOfRange { ttl_ms })
    }
}

fn check_key(key: &str) -> Result<(), HeartbeatError> {
    if key.is_empty() {
        return Err(HeartbeatError::MetaKeyEmpty);
    }
    if key.len() > META_KEY_BYTES_MAX {
        return Err(HeartbeatError::MetaKeyTooLong {
            len_bytes: key.len(),
        });
    }
    if key.contains('=') {
        return Err(HeartbeatError::MetaKeyHasSeparator {
            key: key.to_string(),
        });
    }
    Ok(())
}

/// A cursor over the input whose reads fail with `Truncated` instead of panicking.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize, field: &'static str) -> Result<&'a [u8], HeartbeatError> {
        if self.rest.len() < len {
            return Err(HeartbeatError::Truncated { field });
        }
        let (head, tail) = self.rest.split_at(len);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], HeartbeatError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, HeartbeatError> {
        Ok(self.array::<1>(field)?[0])
    }
}
