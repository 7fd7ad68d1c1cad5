//! A host's [`AnchorTree`] served as the `Anchor` capability.

use std::cell::RefCell;
use std::rc::Rc;

use capnp::capability::Rc as CapRc;

use super::tree::{AnchorLimits, AnchorTree, Held, HeldKind};
use crate::rpc::{serve, RpcError, ServeHandle};
use crate::schema::anchor_capnp::{anchor, entry, Holds};
use crate::transport::{Protocol, Transport};

/// The stream protocol a host serves its anchors on.
pub const ANCHOR_PROTOCOL: &str = "/ww-sched/0.1/anchor";

/// [`ANCHOR_PROTOCOL`] as a checked [`Protocol`].
pub fn anchor_protocol() -> Protocol {
    Protocol::new(ANCHOR_PROTOCOL).expect("ANCHOR_PROTOCOL is a valid protocol name")
}

/// One host's anchors, shared by every connection (all on one thread).
#[derive(Clone)]
pub struct AnchorServer {
    tree: Rc<RefCell<AnchorTree<capnp::capability::Client>>>,
}

impl AnchorServer {
    /// An empty tree bounded by `limits`.
    pub fn new(limits: AnchorLimits) -> Self {
        AnchorServer {
            tree: Rc::new(RefCell::new(AnchorTree::new(limits))),
        }
    }

    /// The capability over this tree.
    pub fn client(&self) -> anchor::Client {
        capnp_rpc::new_client(self.clone())
    }

    /// Serves the tree to every peer that can connect to `transport` (on a
    /// keyed cluster, the key's holders). Must be called inside a `LocalSet`.
    pub fn serve<T: Transport>(&self, transport: &T) -> Result<ServeHandle, RpcError> {
        serve(transport, &anchor_protocol(), self.client().client)
    }

    /// Makes `path` hold `held` from this host's own code (what callers'
    /// `set` does, with the same checks and bounds).
    pub fn set_local(
        &self,
        path: &[String],
        held: Held<capnp::capability::Client>,
    ) -> Result<(), super::AnchorError> {
        self.tree.borrow_mut().set(path, held)
    }

    /// The names of `path`'s children (empty if there is no such path).
    pub fn children_local(&self, path: &[String]) -> Vec<String> {
        self.tree
            .borrow()
            .list(path)
            .map(|children| children.into_iter().map(|c| c.name).collect())
            .unwrap_or_default()
    }

    /// Removes `path` and what is below it, from this host's own code.
    pub fn remove_local(&self, path: &[String]) -> Result<usize, super::AnchorError> {
        self.tree.borrow_mut().remove(path)
    }

    /// Paths held now.
    pub fn len(&self) -> usize {
        self.tree.borrow().len()
    }

    /// Whether the tree is empty.
    pub fn is_empty(&self) -> bool {
        self.tree.borrow().is_empty()
    }
}

/// The segments of a request's path, each checked as UTF-8 text.
fn segments(list: capnp::text_list::Reader<'_>) -> Result<Vec<String>, capnp::Error> {
    let mut path = Vec::with_capacity(list.len() as usize);
    for segment in list.iter() {
        let text = segment?
            .to_str()
            .map_err(|e| capnp::Error::failed(format!("path segment is not UTF-8: {e}")))?;
        path.push(text.to_string());
    }
    Ok(path)
}

fn failed(e: impl std::fmt::Display) -> capnp::Error {
    capnp::Error::failed(e.to_string())
}

impl anchor::Server for AnchorServer {
    async fn list(
        self: CapRc<Self>,
        params: anchor::ListParams,
        mut results: anchor::ListResults,
    ) -> Result<(), capnp::Error> {
        let path = segments(params.get()?.get_path()?)?;
        let children = self.tree.borrow().list(&path).map_err(failed)?;
        let len = u32::try_from(children.len()).map_err(failed)?;
        let mut list = results.get().init_children(len);
        for (i, child) in children.iter().enumerate() {
            let mut out = list.reborrow().get(i as u32);
            out.set_name(child.name.as_str());
            out.set_holds(match child.holds {
                HeldKind::Nothing => Holds::Nothing,
                HeldKind::Value => Holds::Value,
                HeldKind::Capability => Holds::Capability,
            });
            out.set_children(u32::try_from(child.children).unwrap_or(u32::MAX));
        }
        Ok(())
    }

    async fn get(
        self: CapRc<Self>,
        params: anchor::GetParams,
        mut results: anchor::GetResults,
    ) -> Result<(), capnp::Error> {
        let path = segments(params.get()?.get_path()?)?;
        let held = self.tree.borrow().get(&path).map_err(failed)?;
        let mut out: entry::Builder<'_> = results.get().init_entry();
        match held {
            Held::Nothing => out.set_nothing(()),
            Held::Value(bytes) => out.set_value(&bytes),
            Held::Capability(client) => out.init_capability().set_as_capability(client.hook),
        }
        Ok(())
    }

    async fn set(
        self: CapRc<Self>,
        params: anchor::SetParams,
        _: anchor::SetResults,
    ) -> Result<(), capnp::Error> {
        let params = params.get()?;
        let path = segments(params.get_path()?)?;
        let value = params.get_value()?.to_vec();
        self.tree
            .borrow_mut()
            .set(&path, Held::Value(value))
            .map_err(failed)
    }

    async fn set_capability(
        self: CapRc<Self>,
        params: anchor::SetCapabilityParams,
        _: anchor::SetCapabilityResults,
    ) -> Result<(), capnp::Error> {
        let params = params.get()?;
        let path = segments(params.get_path()?)?;
        let client: capnp::capability::Client = params.get_capability().get_as_capability()?;
        self.tree
            .borrow_mut()
            .set(&path, Held::Capability(client))
            .map_err(failed)
    }

    async fn remove(
        self: CapRc<Self>,
        params: anchor::RemoveParams,
        mut results: anchor::RemoveResults,
    ) -> Result<(), capnp::Error> {
        let path = segments(params.get()?.get_path()?)?;
        let removed = self.tree.borrow_mut().remove(&path).map_err(failed)?;
        results
            .get()
            .set_removed(u32::try_from(removed).unwrap_or(u32::MAX));
        Ok(())
    }
}
