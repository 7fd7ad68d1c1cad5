//! The core's knowledge of modules: which are stored (or about to be), how
//! many tasks refer to each, and a small cache of their bytes.
//!
//! The reference counts mirror the store's, counting ahead: a submission adds
//! its reference when it is accepted, a deletion removes one only when it is
//! committed. So a module the mirror sees unused is unused in the store too,
//! and garbage collection, which the core decides, never deletes a module that
//! a batch still to commit refers to. A module chosen for deletion leaves the
//! mirror at once: a submission naming it by hash is then refused as unknown,
//! and an upload stores it again after the deletion.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::sched::ModuleRefs;

/// Module bytes kept in the core's cache.
pub const MODULE_CACHE_MAX: usize = 64;

/// Modules, as the core tracks them.
#[derive(Debug, Default)]
pub struct Modules {
    refs: BTreeMap<[u8; 32], ModuleRefs>,
    /// Bytes of modules in batches not yet committed (a run may start before),
    /// and whether their batch is formed (in flight) yet.
    pending: BTreeMap<[u8; 32], (Arc<Vec<u8>>, bool)>,
    cache: BTreeMap<[u8; 32], Arc<Vec<u8>>>,
}

impl Modules {
    /// The mirror of what the store holds.
    pub fn new(refs: BTreeMap<[u8; 32], ModuleRefs>) -> Self {
        Modules {
            refs,
            ..Modules::default()
        }
    }

    /// Whether the module is stored or about to be, and not being deleted.
    pub fn known(&self, hash: &[u8; 32]) -> bool {
        self.refs.contains_key(hash)
    }

    /// How many modules are known.
    pub fn count(&self) -> usize {
        self.refs.len()
    }

    /// The module is uploaded at `now_ms` (its bytes go into the next batch).
    pub fn uploaded(&mut self, hash: [u8; 32], bytes: Arc<Vec<u8>>, now_ms: u64) {
        let refs = self.refs.entry(hash).or_insert(ModuleRefs {
            tasks: 0,
            unused_since_ms: now_ms,
        });
        if refs.tasks == 0 {
            refs.unused_since_ms = now_ms;
        }
        self.pending.insert(hash, (bytes, false));
    }

    /// A new task refers to the module, which must be known.
    pub fn referred(&mut self, hash: &[u8; 32]) {
        match self.refs.get_mut(hash) {
            Some(refs) => refs.tasks += 1,
            None => debug_assert!(false, "a task refers to an unknown module"),
        }
    }

    /// A task taken over from another gateway refers to the module, which the
    /// store holds (it may be news to this gateway's mirror).
    pub fn adopted(&mut self, hash: &[u8; 32]) {
        self.refs
            .entry(*hash)
            .or_insert(ModuleRefs {
                tasks: 0,
                unused_since_ms: 0,
            })
            .tasks += 1;
    }

    /// A module another gateway stored in a shared store, unknown here until
    /// now, unused (as far as this gateway knows) since `now_ms`.
    pub fn learned(&mut self, hash: [u8; 32], now_ms: u64) {
        self.refs.entry(hash).or_insert(ModuleRefs {
            tasks: 0,
            unused_since_ms: now_ms,
        });
    }

    /// A task that referred to the module was deleted (committed) at `now_ms`.
    pub fn released(&mut self, hash: &[u8; 32], now_ms: u64) {
        if let Some(refs) = self.refs.get_mut(hash) {
            debug_assert!(refs.tasks > 0, "a module reference released twice");
            refs.tasks = refs.tasks.saturating_sub(1);
            if refs.tasks == 0 {
                refs.unused_since_ms = now_ms;
            }
        }
    }

    /// Modules no task has referred to since `grace_ms` before `now_ms`, at
    /// most `max`: they leave the mirror now, to be deleted by the next batch.
    pub fn collect(&mut self, now_ms: u64, grace_ms: u64, max: usize) -> Vec<[u8; 32]> {
        let unused: Vec<[u8; 32]> = self
            .refs
            .iter()
            .filter(|(_, r)| r.tasks == 0 && r.unused_since_ms.saturating_add(grace_ms) <= now_ms)
            .map(|(hash, _)| *hash)
            .take(max)
            .collect();
        for hash in &unused {
            self.refs.remove(hash);
            self.pending.remove(hash);
            self.cache.remove(hash);
        }
        unused
    }

    /// The store kept a module the mirror thought unused (another reference
    /// existed): know it again.
    pub fn kept(&mut self, hash: [u8; 32], refs: ModuleRefs) {
        tracing::error!(
            module = %crate::exec::ModuleHash(hash),
            tasks = refs.tasks,
            "module reference counts disagreed with the store; module kept"
        );
        self.refs.insert(hash, refs);
    }

    /// A batch formed: the modules pending so far are in it.
    pub fn formed(&mut self) {
        for (_, in_batch) in self.pending.values_mut() {
            *in_batch = true;
        }
    }

    /// The batch in flight committed: the modules it stored move to the cache.
    pub fn committed(&mut self) {
        let stored: Vec<[u8; 32]> = self
            .pending
            .iter()
            .filter(|(_, (_, in_batch))| *in_batch)
            .map(|(hash, _)| *hash)
            .collect();
        for hash in stored {
            if let Some((bytes, _)) = self.pending.remove(&hash) {
                self.cache_insert(hash, bytes);
            }
        }
    }

    /// The bytes, if in memory (pending or cached).
    pub fn bytes(&self, hash: &[u8; 32]) -> Option<Arc<Vec<u8>>> {
        self.pending
            .get(hash)
            .map(|(bytes, _)| bytes)
            .or_else(|| self.cache.get(hash))
            .cloned()
    }

    /// Keeps bytes read from the store.
    pub fn cache_insert(&mut self, hash: [u8; 32], bytes: Arc<Vec<u8>>) {
        if self.cache.len() >= MODULE_CACHE_MAX && !self.cache.contains_key(&hash) {
            self.cache.pop_first();
        }
        self.cache.insert(hash, bytes);
    }
}
