//! A small LRU cache of compiled modules keyed by content hash.

use super::spec::ModuleHash;
use std::collections::BTreeMap;

/// Counters of the module cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups (by hash or by bytes) that found a compiled module.
    pub hits: u64,
    /// Compilations, i.e. lookups by bytes that found nothing.
    pub misses: u64,
    /// Modules currently cached.
    pub entries: usize,
    /// Module bytes (as sent, before compiling) of the cached modules.
    pub bytes: usize,
}

struct Slot<V> {
    value: V,
    bytes: usize,
    last_used: u64,
}

/// Map from hash to value bounded in entries and in bytes, evicting the least
/// recently used entries.
///
/// Eviction scans all entries; capacities are tens of modules, so a linked list
/// would cost more in code than it saves in time.
pub(crate) struct LruCache<V> {
    slots: BTreeMap<ModuleHash, Slot<V>>,
    capacity: usize,
    bytes: usize,
    bytes_max: usize,
    tick: u64,
    hits: u64,
    misses: u64,
}

impl<V: Clone> LruCache<V> {
    /// A cache holding at most `capacity` entries (at least one) of `bytes_max` bytes in all.
    pub(crate) fn new(capacity: usize, bytes_max: usize) -> Self {
        Self {
            slots: BTreeMap::new(),
            capacity: capacity.max(1),
            bytes: 0,
            bytes_max,
            tick: 0,
            hits: 0,
            misses: 0,
        }
    }

    /// Returns a clone of the value and marks it most recently used; counts a hit.
    pub(crate) fn get(&mut self, hash: &ModuleHash) -> Option<V> {
        self.tick += 1;
        let tick = self.tick;
        let slot = self.slots.get_mut(hash)?;
        slot.last_used = tick;
        self.hits += 1;
        Some(slot.value.clone())
    }

    /// True if `hash` is cached; does not touch recency or counters.
    pub(crate) fn contains(&self, hash: &ModuleHash) -> bool {
        self.slots.contains_key(hash)
    }

    /// Records a compilation (a miss).
    pub(crate) fn record_miss(&mut self) {
        self.misses += 1;
    }

    /// Inserts (or refreshes) an entry weighing `bytes`, evicting the least recently
    /// used ones until it fits; an entry larger than the whole budget is not kept.
    pub(crate) fn insert(&mut self, hash: ModuleHash, value: V, bytes: usize) {
        self.tick += 1;
        if let Some(old) = self.slots.remove(&hash) {
            self.bytes -= old.bytes;
        }
        if bytes > self.bytes_max {
            tracing::debug!(module = %hash, bytes, "module larger than the cache; not kept");
            return;
        }
        while self.slots.len() >= self.capacity || self.bytes + bytes > self.bytes_max {
            let oldest = self
                .slots
                .iter()
                .min_by_key(|(_, slot)| slot.last_used)
                .map(|(hash, _)| *hash);
            let Some(oldest) = oldest else { break };
            if let Some(slot) = self.slots.remove(&oldest) {
                self.bytes -= slot.bytes;
            }
            tracing::debug!(module = %oldest, "evicted module from cache");
        }
        self.bytes += bytes;
        self.slots.insert(
            hash,
            Slot {
                value,
                bytes,
                last_used: self.tick,
            },
        );
    }

    /// Current counters.
    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits,
            misses: self.misses,
            entries: self.slots.len(),
            bytes: self.bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> ModuleHash {
        ModuleHash([n; 32])
    }

    #[test]
    fn evicts_least_recently_used() {
        let mut cache = LruCache::new(2, usize::MAX);
        cache.insert(h(1), 1, 0);
        cache.insert(h(2), 2, 0);
        assert_eq!(cache.get(&h(1)), Some(1));
        cache.insert(h(3), 3, 0);
        assert!(cache.contains(&h(1)));
        assert!(!cache.contains(&h(2)));
        assert!(cache.contains(&h(3)));
        assert_eq!(cache.stats().entries, 2);
        assert_eq!(cache.get(&h(2)), None);
        assert_eq!(cache.stats().hits, 1);
    }

    #[test]
    fn bytes_are_bounded_too() {
        let mut cache = LruCache::new(10, 100);
        cache.insert(h(1), 1, 40);
        cache.insert(h(2), 2, 40);
        cache.insert(h(3), 3, 40);
        // The oldest went to make room: 80 bytes in two entries.
        assert!(!cache.contains(&h(1)));
        assert_eq!((cache.stats().entries, cache.stats().bytes), (2, 80));
        // Re-inserting an entry does not count it twice.
        cache.insert(h(3), 3, 40);
        assert_eq!(cache.stats().bytes, 80);
        // Larger than the whole budget: not kept, nothing evicted.
        cache.insert(h(4), 4, 101);
        assert!(!cache.contains(&h(4)));
        assert_eq!(cache.stats().entries, 2);
    }
}
