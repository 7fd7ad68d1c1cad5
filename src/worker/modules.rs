//! Where a worker finds a module it lacks before asking its caller for the
//! bytes: a [`ModuleSource`] (on a real worker, the cluster's records, where
//! a module is the content record under its own SHA-256).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::time::Duration;

use futures::future::LocalBoxFuture;

use crate::schema::worker_capnp::task_spec;
use ww::exec::{ModuleHash, Sandbox};

/// Modules one call may look up at most (a `runMany` of many tasks).
pub const FETCHES_PER_CALL_MAX: usize = 4;
/// How long one lookup may take before the worker asks its caller instead.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(2);

/// A place to find modules by hash, and to leave them for other workers.
pub trait ModuleSource {
    /// The bytes stored under `hash`, if found; the worker checks them against it.
    fn fetch(&self, hash: ModuleHash) -> LocalBoxFuture<'static, Option<Vec<u8>>>;
    /// Leaves `bytes`, a module this worker was just sent, for others to fetch.
    fn offer(&self, bytes: Vec<u8>);
}

/// A worker's module source, set once the worker has joined its cluster
/// (shared by every facet of the worker; one thread).
#[derive(Clone, Default)]
pub struct ModuleSourceSlot(Rc<RefCell<Option<Rc<dyn ModuleSource>>>>);

impl ModuleSourceSlot {
    /// Uses `source` from now on.
    pub fn set(&self, source: Rc<dyn ModuleSource>) {
        *self.0.borrow_mut() = Some(source);
    }

    fn get(&self) -> Option<Rc<dyn ModuleSource>> {
        self.0.borrow().clone()
    }

    /// Looks up the modules `specs` name by hash that `sandbox` lacks (at most
    /// [`FETCHES_PER_CALL_MAX`], each within [`FETCH_TIMEOUT`]) and caches the
    /// ones found whose bytes hash to what was asked; how many. What is not
    /// found is answered `unknown_module` as before, and the caller sends it.
    pub async fn fill_missing<'a>(
        &self,
        sandbox: &Sandbox,
        specs: impl IntoIterator<Item = task_spec::Reader<'a>>,
    ) -> usize {
        let Some(source) = self.get() else { return 0 };
        let mut missing = BTreeSet::new();
        for spec in specs {
            let Ok(task_spec::module::Hash(Ok(hash))) = spec.get_module().which() else {
                continue;
            };
            let Ok(hash) = <[u8; 32]>::try_from(hash) else {
                continue;
            };
            let hash = ModuleHash(hash);
            if !sandbox.has_module(&hash) {
                missing.insert(hash);
            }
        }
        let mut found = 0;
        for hash in missing.into_iter().take(FETCHES_PER_CALL_MAX) {
            let Ok(Some(bytes)) = tokio::time::timeout(FETCH_TIMEOUT, source.fetch(hash)).await
            else {
                continue;
            };
            if ModuleHash::of(&bytes) != hash {
                tracing::warn!(%hash, "a module source sent other bytes; ignored");
                continue;
            }
            match sandbox.insert_module(&bytes) {
                Ok(_) => {
                    tracing::debug!(%hash, bytes = bytes.len(), "module fetched from the records");
                    found += 1;
                }
                Err(e) => tracing::debug!(%hash, error = %e, "fetched module refused"),
            }
        }
        found
    }

    /// Offers the module bytes `spec` carries, if it carries any.
    pub fn offer_sent(&self, spec: task_spec::Reader<'_>) {
        let Some(source) = self.get() else { return };
        if let Ok(task_spec::module::Bytes(Ok(bytes))) = spec.get_module().which() {
            source.offer(bytes.to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::worker::wire;
    use ww::exec::{Limits, ModuleRef, RunSpec, SandboxConfig};

    /// Hands out fixed bytes for any hash.
    struct Fixed(Vec<u8>);

    impl ModuleSource for Fixed {
        fn fetch(&self, _: ModuleHash) -> LocalBoxFuture<'static, Option<Vec<u8>>> {
            let bytes = self.0.clone();
            Box::pin(async move { Some(bytes) })
        }
        fn offer(&self, _: Vec<u8>) {}
    }

    fn spec_of(hash: ModuleHash) -> capnp::message::Builder<capnp::message::HeapAllocator> {
        let mut message = capnp::message::Builder::new_default();
        let spec = RunSpec {
            module: ModuleRef::Hash(hash),
            export: "run".into(),
            args: vec![],
            limits: Limits::default(),
        };
        wire::write_spec(&spec, message.init_root());
        message
    }

    #[tokio::test]
    async fn only_bytes_that_hash_to_the_hash_asked_are_cached() {
        let wanted = crate::tasks::HASH_PUZZLE_WASM.to_vec();
        let other = wat::parse_str(r#"(module (func (export "run")))"#).unwrap();
        let hash = ModuleHash::of(&wanted);
        let message = spec_of(hash);
        let reader = message.get_root_as_reader().unwrap();

        let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()));
        let slot = ModuleSourceSlot::default();
        assert_eq!(
            slot.fill_missing(&sandbox, [reader]).await,
            0,
            "no source yet"
        );
        slot.set(Rc::new(Fixed(other)));
        assert_eq!(
            slot.fill_missing(&sandbox, [reader]).await,
            0,
            "other bytes refused"
        );
        assert!(!sandbox.has_module(&hash));
        slot.set(Rc::new(Fixed(wanted)));
        assert_eq!(slot.fill_missing(&sandbox, [reader]).await, 1);
        assert!(sandbox.has_module(&hash));
        assert_eq!(
            slot.fill_missing(&sandbox, [reader]).await,
            0,
            "held: not fetched again"
        );
    }
}
