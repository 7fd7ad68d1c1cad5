//! The boot server's table of registrations (sans-IO: the caller passes `now_ms`).
//!
//! A registration is a namespace, a peer and the peer's signed envelope, kept
//! until its granted TTL ends. Everything is bounded: entries per namespace,
//! namespaces, and namespaces per peer, so a registrant with many ids fills at
//! most its share and a full table refuses instead of growing. Expired entries
//! are dropped before every change and every read, so nothing stale is served
//! and the table drains when its registrants stop.

use std::collections::{BTreeMap, BTreeSet};

use crate::transport::PeerId;

/// How the table is bounded and how long it keeps an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegistryLimits {
    /// Registrations kept for one namespace.
    pub per_namespace_max: usize,
    /// Namespaces with at least one registration.
    pub namespaces_max: usize,
    /// Namespaces one peer may be registered in at once.
    pub per_peer_max: usize,
    /// The longest TTL granted; longer requests are cut to it.
    pub ttl_max_ms: u64,
}

impl Default for RegistryLimits {
    /// 4,096 peers per namespace, 256 namespaces, 8 namespaces per peer, 30 s:
    /// a stored envelope is never older than its signer's freshness window
    /// when served, since a live registrant re-registers within half its TTL.
    fn default() -> Self {
        RegistryLimits {
            per_namespace_max: 4_096,
            namespaces_max: 256,
            per_peer_max: 8,
            ttl_max_ms: 30_000,
        }
    }
}

/// Why a registration was refused; in every case the table is unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The namespace holds as many registrations as allowed.
    #[error("namespace {namespace:?} already holds {max} registrations; not registered")]
    NamespaceFull {
        /// The namespace asked for.
        namespace: String,
        /// Registrations one namespace may hold.
        max: usize,
    },
    /// The table holds as many namespaces as allowed.
    #[error("already {max} namespaces registered; {namespace:?} was not added")]
    TooManyNamespaces {
        /// The namespace that was not added.
        namespace: String,
        /// Namespaces the table may hold.
        max: usize,
    },
    /// The peer is registered in as many namespaces as allowed.
    #[error("peer {peer} is already registered in {max} namespaces; not registered")]
    PeerOverLimit {
        /// The registrant.
        peer: PeerId,
        /// Namespaces one peer may be registered in.
        max: usize,
    },
    /// A zero TTL registers nothing (use [`Registry::unregister`] to leave).
    #[error("a TTL of 0 ms registers nothing")]
    ZeroTtl,
}

/// One registrant's envelope for one namespace.
#[derive(Clone, Debug)]
struct Entry {
    envelope: Vec<u8>,
    expires_ms: u64,
}

/// Registrations by namespace and peer, with an index by expiry.
#[derive(Debug, Default)]
pub struct Registry {
    limits: RegistryLimits,
    by_namespace: BTreeMap<String, BTreeMap<PeerId, Entry>>,
    /// Namespaces each peer is registered in.
    by_peer: BTreeMap<PeerId, BTreeSet<String>>,
    /// (expires_ms, namespace, peer) of every entry, soonest first.
    expiries: BTreeSet<(u64, String, PeerId)>,
}

impl Registry {
    /// An empty table bounded by `limits`.
    pub fn new(limits: RegistryLimits) -> Self {
        Registry {
            limits,
            ..Registry::default()
        }
    }

    /// Keeps `envelope` as `peer`'s registration in `namespace` for `ttl_ms`
    /// (cut to the limit) from `now_ms`, replacing the peer's earlier one
    /// there; returns the TTL granted.
    pub fn register(
        &mut self,
        namespace: &str,
        peer: PeerId,
        envelope: Vec<u8>,
        ttl_ms: u64,
        now_ms: u64,
    ) -> Result<u64, RegistryError> {
        self.expire(now_ms);
        if ttl_ms == 0 {
            return Err(RegistryError::ZeroTtl);
        }
        let granted_ms = ttl_ms.min(self.limits.ttl_max_ms);
        let existing = self
            .by_namespace
            .get(namespace)
            .and_then(|peers| peers.get(&peer))
            .map(|entry| entry.expires_ms);
        match existing {
            Some(expires_ms) => {
                let removed = self
                    .expiries
                    .remove(&(expires_ms, namespace.to_string(), peer));
                debug_assert!(removed, "every entry has its expiry indexed");
            }
            None => self.check_room(namespace, peer)?,
        }
        let expires_ms = now_ms.saturating_add(granted_ms);
        self.by_namespace
            .entry(namespace.to_string())
            .or_default()
            .insert(
                peer,
                Entry {
                    envelope,
                    expires_ms,
                },
            );
        self.by_peer
            .entry(peer)
            .or_default()
            .insert(namespace.to_string());
        self.expiries
            .insert((expires_ms, namespace.to_string(), peer));
        self.debug_check();
        Ok(granted_ms)
    }

    /// Whether a new registration of `peer` in `namespace` fits every bound.
    fn check_room(&self, namespace: &str, peer: PeerId) -> Result<(), RegistryError> {
        match self.by_namespace.get(namespace) {
            Some(peers) if peers.len() >= self.limits.per_namespace_max => {
                return Err(RegistryError::NamespaceFull {
                    namespace: namespace.to_string(),
                    max: self.limits.per_namespace_max,
                });
            }
            None if self.by_namespace.len() >= self.limits.namespaces_max => {
                return Err(RegistryError::TooManyNamespaces {
                    namespace: namespace.to_string(),
                    max: self.limits.namespaces_max,
                });
            }
            _ => {}
        }
        let peer_count = self.by_peer.get(&peer).map_or(0, BTreeSet::len);
        if peer_count >= self.limits.per_peer_max {
            return Err(RegistryError::PeerOverLimit {
                peer,
                max: self.limits.per_peer_max,
            });
        }
        Ok(())
    }

    /// Drops `peer`'s registration in `namespace`; whether there was one.
    pub fn unregister(&mut self, namespace: &str, peer: PeerId) -> bool {
        let Some(entry) = self
            .by_namespace
            .get_mut(namespace)
            .and_then(|peers| peers.remove(&peer))
        else {
            return false;
        };
        let removed = self
            .expiries
            .remove(&(entry.expires_ms, namespace.to_string(), peer));
        debug_assert!(removed, "every entry has its expiry indexed");
        self.forget(namespace, peer);
        self.debug_check();
        true
    }

    /// The envelopes of `namespace` live at `now_ms`, at most `limit`, in peer order.
    pub fn discover(&mut self, namespace: &str, limit: usize, now_ms: u64) -> Vec<Vec<u8>> {
        self.expire(now_ms);
        self.by_namespace
            .get(namespace)
            .map(|peers| {
                peers
                    .values()
                    .take(limit)
                    .map(|entry| entry.envelope.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Drops every registration whose TTL has ended by `now_ms`; how many.
    pub fn expire(&mut self, now_ms: u64) -> usize {
        let mut dropped = 0;
        while let Some((expires_ms, _, _)) = self.expiries.first() {
            if *expires_ms > now_ms {
                break;
            }
            let (_, namespace, peer) = self.expiries.pop_first().expect("first() was Some");
            let removed = self
                .by_namespace
                .get_mut(&namespace)
                .and_then(|peers| peers.remove(&peer));
            debug_assert!(removed.is_some(), "an indexed expiry names a live entry");
            self.forget(&namespace, peer);
            dropped += 1;
        }
        if dropped > 0 {
            self.debug_check();
        }
        dropped
    }

    /// Drops the peer index of an entry already taken out of its namespace
    /// and its expiry index, and the namespace if that emptied it.
    fn forget(&mut self, namespace: &str, peer: PeerId) {
        if self
            .by_namespace
            .get(namespace)
            .is_some_and(BTreeMap::is_empty)
        {
            self.by_namespace.remove(namespace);
        }
        if let Some(namespaces) = self.by_peer.get_mut(&peer) {
            namespaces.remove(namespace);
            if namespaces.is_empty() {
                self.by_peer.remove(&peer);
            }
        }
    }

    /// Registrations held, all namespaces together (expired ones included
    /// until the next call that takes `now_ms`).
    pub fn len(&self) -> usize {
        self.expiries.len()
    }

    /// Whether the table holds no registration.
    pub fn is_empty(&self) -> bool {
        self.expiries.is_empty()
    }

    /// The three indexes agree (debug builds).
    fn debug_check(&self) {
        debug_assert_eq!(
            self.expiries.len(),
            self.by_namespace.values().map(BTreeMap::len).sum::<usize>(),
            "one expiry per entry"
        );
        debug_assert_eq!(
            self.expiries.len(),
            self.by_peer.values().map(BTreeSet::len).sum::<usize>(),
            "one peer index per entry"
        );
        debug_assert!(self.by_namespace.len() <= self.limits.namespaces_max);
    }
}

#[cfg(test)]
#[path = "registry_tests.rs"]
mod tests;
