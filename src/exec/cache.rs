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
}

struct Slot<V> {
    value: V,
    last_used: u64,
}

/// Bounded map from hash to value evicting the least recently used entry.
///
/// Eviction scans all entries; capacities are tens of modules, so a linked list
/// would cost more in code than it saves in time.
pub(crate) struct LruCache<V> {
    slots: BTreeMap<ModuleHash, Slot<V>>,
    capacity: usize,
    tick: u64,
    hits: u64,
    misses: u64,
}

impl<V: Clone> LruCache<V> {
    /// A cache holding at most `capacity` entries (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            slots: BTreeMap::new(),
            capacity: capacity.max(1),
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

    /// Inserts (or refreshes) an entry, evicting the least recently used one if full.
    pub(crate) fn insert(&mut self, hash: ModuleHash, value: V) {
        self.tick += 1;
        if !self.slots.contains_key(&hash) && self.slots.len() >= self.capacity {
            let oldest = self
                .slots
                .iter()
                .min_by_key(|(_, slot)| slot.last_used)
                .map(|(hash, _)| *hash);
            if let Some(oldest) = oldest {
                self.slots.remove(&oldest);
                tracing::debug!(module = %oldest, "evicted module from cache");
            }
        }
        self.slots.insert(
            hash,
            Slot {
                value,
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
        let mut cache = LruCache::new(2);
        cache.insert(h(1), 1);
        cache.insert(h(2), 2);
        assert_eq!(cache.get(&h(1)), Some(1));
        cache.insert(h(3), 3);
        assert!(cache.contains(&h(1)));
        assert!(!cache.contains(&h(2)));
        assert!(cache.contains(&h(3)));
        assert_eq!(cache.stats().entries, 2);
        assert_eq!(cache.get(&h(2)), None);
        assert_eq!(cache.stats().hits, 1);
    }
}
