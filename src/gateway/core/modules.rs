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
//!
//! On a store shared by several gateways the mirror counts this gateway's
//! tasks only. The store counts everyone's under a row lock, so a deletion
//! another gateway's task needs is refused there (the module is kept and
//! asked about again a grace period later), and a reference to a module
//! another gateway has deleted drops that new task (answered as unknown
//! module) and the module from this mirror.

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
    /// A module whose upload is not committed yet is never one: its deletion
    /// could go into the very batch that stores it, after the upload was
    /// acknowledged (the core model found it with a commit slower than the
    /// grace).
    pub fn collect(&mut self, now_ms: u64, grace_ms: u64, max: usize) -> Vec<[u8; 32]> {
        let pending = &self.pending;
        let unused: Vec<[u8; 32]> = self
            .refs
            .iter()
            .filter(|(hash, _)| !pending.contains_key(*hash))
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

    /// The store no longer holds the module (another gateway sharing it
    /// deleted it unused): it is unknown here until uploaded again.
    /// An upload not yet in a batch stores it again: it stays known.
    pub fn forget(&mut self, hash: &[u8; 32]) {
        self.cache.remove(hash);
        if matches!(self.pending.get(hash), Some((_, false))) {
            return;
        }
        self.pending.remove(hash);
        self.refs.remove(hash);
    }

    /// The store kept a module the mirror thought unused (another reference
    /// existed): know it again, with the store's counts.
    pub fn kept(&mut self, hash: [u8; 32], refs: ModuleRefs) {
        tracing::error!(
            module = %ww::exec::ModuleHash(hash),
            tasks = refs.tasks,
            "module reference counts disagreed with the store; module kept"
        );
        self.refs.insert(hash, refs);
    }

    /// A shared store kept a module no task of this gateway refers to: other
    /// gateways' tasks do, and this mirror never hears when they go, so it
    /// asks again after another grace period (from `now_ms`).
    pub fn kept_elsewhere(&mut self, hash: [u8; 32], now_ms: u64) {
        tracing::debug!(module = %ww::exec::ModuleHash(hash), "module kept: other gateways' tasks refer to it");
        self.refs.insert(
            hash,
            ModuleRefs {
                tasks: 0,
                unused_since_ms: now_ms,
            },
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_module_kept_for_other_gateways_is_asked_about_again_after_its_grace() {
        let hash = [7; 32];
        let mut modules = Modules::new(BTreeMap::from([(
            hash,
            ModuleRefs {
                tasks: 0,
                unused_since_ms: 0,
            },
        )]));
        assert_eq!(modules.collect(1_000, 1_000, 8), [hash]);
        assert!(!modules.known(&hash), "chosen for deletion: unknown");
        modules.kept_elsewhere(hash, 5_000);
        assert!(modules.known(&hash));
        assert!(
            modules.collect(5_999, 1_000, 8).is_empty(),
            "within its grace"
        );
        assert_eq!(modules.collect(6_000, 1_000, 8), [hash], "asked again");
    }

    #[test]
    fn a_forgotten_module_stays_known_while_an_upload_of_it_waits_for_a_batch() {
        let hash = [9; 32];
        let mut modules = Modules::default();
        modules.uploaded(hash, Arc::new(vec![0; 8]), 0);
        modules.forget(&hash);
        assert!(modules.known(&hash), "its upload stores it again");
        modules.formed();
        modules.forget(&hash);
        assert!(
            !modules.known(&hash),
            "the batch that held it is the one refused"
        );
    }
}
