//! Tombstones: peer instances that left the view, remembered so that a captured
//! heartbeat of theirs, replayed while still fresh, cannot bring them back.
//!
//! Sans-IO like the table that owns them: times are the caller's `now_ms`.

use std::collections::{BTreeMap, BTreeSet};

/// Default bound on remembered instances; beyond it the oldest tombstone goes first.
pub const TOMBSTONES_MAX: usize = 4096;

/// One buried instance: heartbeats up to `seq_max` are refused until `until_ms`.
#[derive(Debug, Clone, Copy)]
struct Tomb {
    seq_max: u64,
    until_ms: u64,
    stamp: u64,
}

/// Buried `(peer id text, instance)` pairs, bounded, oldest evicted first.
#[derive(Debug, Clone)]
pub(super) struct Tombstones {
    max: usize,
    tombs: BTreeMap<(String, u64), Tomb>,
    // (until_ms, stamp) of every tomb, so expiry needs no scan.
    deadlines: BTreeSet<(u64, u64)>,
    // Burial order, for eviction when full.
    by_stamp: BTreeMap<u64, (String, u64)>,
    next_stamp: u64,
    evicted: u64,
}

impl Tombstones {
    /// Empty, holding at most `max` tombstones (0: none are kept).
    pub(super) fn new(max: usize) -> Self {
        Tombstones {
            max,
            tombs: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            by_stamp: BTreeMap::new(),
            next_stamp: 0,
            evicted: 0,
        }
    }

    /// Refuses heartbeats of `instance` of `peer` with seq up to `seq_max` until
    /// `until_ms`; burying it again keeps the larger of each.
    pub(super) fn bury(&mut self, peer: &str, instance: u64, seq_max: u64, until_ms: u64) {
        if self.max == 0 {
            return;
        }
        let key = (peer.to_string(), instance);
        let (seq_max, until_ms) = match self.remove(&key) {
            Some(old) => (seq_max.max(old.seq_max), until_ms.max(old.until_ms)),
            None => (seq_max, until_ms),
        };
        while self.tombs.len() >= self.max {
            let Some((_, oldest)) = self.by_stamp.first_key_value() else {
                break;
            };
            let oldest = oldest.clone();
            self.remove(&oldest);
            self.evicted += 1;
        }
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        self.deadlines.insert((until_ms, stamp));
        self.by_stamp.insert(stamp, key.clone());
        self.tombs.insert(
            key,
            Tomb {
                seq_max,
                until_ms,
                stamp,
            },
        );
    }

    /// The highest refused seq if a heartbeat `seq` of this instance is refused.
    pub(super) fn refuses(&self, peer: &str, instance: u64, seq: u64) -> Option<u64> {
        let tomb = self.tombs.get(&(peer.to_string(), instance))?;
        (seq <= tomb.seq_max).then_some(tomb.seq_max)
    }

    /// Forgets the tombstone of an instance that is live again (a newer heartbeat).
    pub(super) fn lift(&mut self, peer: &str, instance: u64) {
        self.remove(&(peer.to_string(), instance));
    }

    /// Forgets every tombstone whose time is at or before `now_ms`.
    pub(super) fn expire(&mut self, now_ms: u64) {
        while let Some(&(until_ms, stamp)) = self.deadlines.first() {
            if until_ms > now_ms {
                break;
            }
            if let Some(key) = self.by_stamp.get(&stamp).cloned() {
                self.remove(&key);
            } else {
                self.deadlines.pop_first();
            }
        }
    }

    /// How many instances are buried now.
    pub(super) fn len(&self) -> usize {
        self.tombs.len()
    }

    /// Tombstones evicted to make room before their time.
    pub(super) fn evicted(&self) -> u64 {
        self.evicted
    }

    fn remove(&mut self, key: &(String, u64)) -> Option<Tomb> {
        let tomb = self.tombs.remove(key)?;
        self.deadlines.remove(&(tomb.until_ms, tomb.stamp));
        self.by_stamp.remove(&tomb.stamp);
        Some(tomb)
    }
}
