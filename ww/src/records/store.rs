//! One node's share of the DHT (sans-IO: the caller passes `now_ms`): checked
//! records by key, bounded in count and bytes, each kept until its publisher's
//! time plus the record TTL.

use std::collections::{BTreeMap, BTreeSet};

use super::record::{Record, RecordKey};

/// Bounds on one node's store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreLimits {
    /// Records held.
    pub records_max: usize,
    /// Bytes of every record together.
    pub bytes_max: usize,
    /// How long a record lives after its publisher made it.
    pub ttl_ms: u64,
    /// How far ahead of our clock a record's time may be.
    pub skew_ms: u64,
}

impl Default for StoreLimits {
    /// 4,096 records, 128 MiB, 24 hours, 30 s of clock skew.
    fn default() -> Self {
        StoreLimits {
            records_max: 4_096,
            bytes_max: 128 * 1024 * 1024,
            ttl_ms: 24 * 60 * 60 * 1000,
            skew_ms: 30_000,
        }
    }
}

/// Why a record was not stored; the store is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The record's life (publisher's time + TTL) is over.
    #[error("record {key} expired at {expired_ms} ms; not stored")]
    Expired {
        /// Its key.
        key: String,
        /// When it expired (Unix ms).
        expired_ms: u64,
    },
    /// The record claims a time too far ahead of our clock.
    #[error("record {key} is dated {ahead_ms} ms ahead of this node's clock; not stored")]
    FromTheFuture {
        /// Its key.
        key: String,
        /// How far ahead.
        ahead_ms: u64,
    },
    /// The store is at its count or byte bound.
    #[error("store full ({records} records, {bytes} bytes); record {key} not stored")]
    Full {
        /// Its key.
        key: String,
        /// Records held.
        records: usize,
        /// Bytes held.
        bytes: usize,
    },
}

/// What a put did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// A new key.
    New,
    /// A newer record replaced the one held.
    Replaced,
    /// The one held is as new or newer; nothing changed.
    Kept,
}

#[derive(Clone, Debug)]
struct Held {
    bytes: Vec<u8>,
    sent_ms: u64,
    expires_ms: u64,
}

/// Records by key, with an index by expiry.
#[derive(Debug, Default)]
pub struct RecordStore {
    limits: StoreLimits,
    records: BTreeMap<RecordKey, Held>,
    expiries: BTreeSet<(u64, RecordKey)>,
    bytes: usize,
}

impl RecordStore {
    /// An empty store bounded by `limits`.
    pub fn new(limits: StoreLimits) -> Self {
        RecordStore {
            limits,
            ..RecordStore::default()
        }
    }

    /// Keeps a checked `record` under its key, unless the one held is newer.
    pub fn put(&mut self, record: &Record, now_ms: u64) -> Result<Stored, StoreError> {
        self.expire(now_ms);
        let key = record.key();
        let expires_ms = record.sent_ms.saturating_add(self.limits.ttl_ms);
        if expires_ms <= now_ms {
            return Err(StoreError::Expired {
                key: key.to_hex(),
                expired_ms: expires_ms,
            });
        }
        if record.sent_ms > now_ms.saturating_add(self.limits.skew_ms) {
            return Err(StoreError::FromTheFuture {
                key: key.to_hex(),
                ahead_ms: record.sent_ms - now_ms,
            });
        }
        let old = self
            .records
            .get(&key)
            .map(|h| (h.sent_ms, h.bytes.len(), h.expires_ms));
        if let Some((sent_ms, _, _)) = old {
            if sent_ms >= record.sent_ms {
                return Ok(Stored::Kept);
            }
        }
        let (old_bytes, old_count) = old.map_or((0, 0), |(_, len, _)| (len, 1));
        let bytes = self.bytes - old_bytes + record.bytes.len();
        let count = self.records.len() - old_count + 1;
        if bytes > self.limits.bytes_max || count > self.limits.records_max {
            return Err(StoreError::Full {
                key: key.to_hex(),
                records: self.records.len(),
                bytes: self.bytes,
            });
        }
        if let Some((_, _, old_expiry)) = old {
            self.expiries.remove(&(old_expiry, key));
        }
        self.records.insert(
            key,
            Held {
                bytes: record.bytes.clone(),
                sent_ms: record.sent_ms,
                expires_ms,
            },
        );
        self.expiries.insert((expires_ms, key));
        self.bytes = bytes;
        self.debug_check();
        Ok(if old.is_some() {
            Stored::Replaced
        } else {
            Stored::New
        })
    }

    /// The record held under `key`, as its publisher signed it.
    pub fn get(&mut self, key: &RecordKey, now_ms: u64) -> Option<Vec<u8>> {
        self.expire(now_ms);
        self.records.get(key).map(|held| held.bytes.clone())
    }

    /// Drops every record whose life is over by `now_ms`; how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let mut dropped = 0;
        while let Some(&(expires_ms, key)) = self.expiries.first() {
            if expires_ms > now_ms {
                break;
            }
            self.expiries.pop_first();
            let held = self.records.remove(&key);
            debug_assert!(held.is_some(), "an indexed expiry names a held record");
            self.bytes -= held.map_or(0, |h| h.bytes.len());
            dropped += 1;
        }
        dropped
    }

    /// Up to `max` held keys after `after` (all from the start if `None`), in order:
    /// a republisher walks the store a slice at a time.
    pub fn keys_after(&self, after: Option<RecordKey>, max: usize) -> Vec<RecordKey> {
        use std::ops::Bound;
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        self.records
            .range((start, Bound::Unbounded))
            .take(max)
            .map(|(key, _)| *key)
            .collect()
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn debug_check(&self) {
        debug_assert_eq!(
            self.records.len(),
            self.expiries.len(),
            "one expiry per record"
        );
        debug_assert!(self.records.len() <= self.limits.records_max);
        debug_assert!(self.bytes <= self.limits.bytes_max);
    }
}

/// The `k` peers closest to `key` in the key space, nearest first.
pub fn closest(
    key: &RecordKey,
    peers: impl IntoIterator<Item = crate::transport::PeerId>,
    k: usize,
) -> Vec<crate::transport::PeerId> {
    let mut by_distance: Vec<([u8; 32], crate::transport::PeerId)> = peers
        .into_iter()
        .map(|peer| (RecordKey::of_node(&peer).distance(key), peer))
        .collect();
    by_distance.sort();
    by_distance.dedup_by_key(|(_, peer)| *peer);
    by_distance
        .into_iter()
        .take(k)
        .map(|(_, peer)| peer)
        .collect()
}
