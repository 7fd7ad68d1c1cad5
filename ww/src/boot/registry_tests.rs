use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::transport::Identity;

fn peer(n: u8) -> PeerId {
    Identity::from_secret([n; 32]).peer_id()
}

fn small() -> RegistryLimits {
    RegistryLimits {
        per_namespace_max: 3,
        namespaces_max: 2,
        per_peer_max: 2,
        ttl_max_ms: 1_000,
    }
}

#[test]
fn registrations_are_served_until_their_ttl_ends() {
    let mut table = Registry::new(small());
    assert_eq!(
        table.register("a", peer(1), b"one".to_vec(), 500, 0),
        Ok(500)
    );
    assert_eq!(
        table.register("a", peer(2), b"two".to_vec(), 5_000, 0),
        Ok(1_000)
    );
    assert_eq!(table.discover("a", 10, 499).len(), 2);
    assert_eq!(table.discover("a", 10, 500), vec![b"two".to_vec()]);
    assert_eq!(table.discover("a", 10, 1_000), Vec::<Vec<u8>>::new());
    assert!(table.is_empty(), "expired entries are dropped, not kept");
}

#[test]
fn registering_again_replaces_and_extends() {
    let mut table = Registry::new(small());
    table
        .register("a", peer(1), b"old".to_vec(), 500, 0)
        .unwrap();
    table
        .register("a", peer(1), b"new".to_vec(), 500, 400)
        .unwrap();
    assert_eq!(table.len(), 1);
    assert_eq!(table.discover("a", 10, 800), vec![b"new".to_vec()]);
    assert!(table.discover("a", 10, 900).is_empty());
}

#[test]
fn every_bound_refuses_and_leaves_the_table_unchanged() {
    let mut table = Registry::new(small());
    for n in 1..=3 {
        table.register("a", peer(n), vec![n], 1_000, 0).unwrap();
    }
    assert_eq!(
        table.register("a", peer(4), vec![4], 1_000, 0),
        Err(RegistryError::NamespaceFull {
            namespace: "a".into(),
            max: 3
        })
    );
    table.register("b", peer(1), vec![1], 1_000, 0).unwrap();
    assert_eq!(
        table.register("c", peer(5), vec![5], 1_000, 0),
        Err(RegistryError::TooManyNamespaces {
            namespace: "c".into(),
            max: 2
        })
    );
    assert_eq!(
        table
            .register("b", peer(1), vec![9], 1_000, 0)
            .map(|_| table.len()),
        Ok(4),
        "a peer may renew where it is registered"
    );
    table.unregister("a", peer(3));
    assert_eq!(
        table
            .register("a", peer(1), vec![1], 1_000, 0)
            .map(|_| table.len()),
        Ok(3)
    );
    assert_eq!(
        table.register("x", peer(1), vec![1], 0, 0),
        Err(RegistryError::ZeroTtl)
    );
    assert_eq!(table.len(), 3);
    // Once everything has expired the space is free again: the bounds drain.
    assert!(table.discover("a", 10, 1_000).is_empty());
    assert!(table.is_empty());
    table.register("c", peer(5), vec![5], 1_000, 1_000).unwrap();
}

#[test]
fn a_peer_over_its_namespaces_is_refused() {
    let mut table = Registry::new(RegistryLimits {
        namespaces_max: 10,
        ..small()
    });
    table.register("a", peer(1), vec![], 1_000, 0).unwrap();
    table.register("b", peer(1), vec![], 1_000, 0).unwrap();
    assert_eq!(
        table.register("c", peer(1), vec![], 1_000, 0),
        Err(RegistryError::PeerOverLimit {
            peer: peer(1),
            max: 2
        })
    );
    assert!(table.unregister("a", peer(1)));
    assert!(!table.unregister("a", peer(1)));
    table.register("c", peer(1), vec![], 1_000, 0).unwrap();
}

#[test]
fn discover_honours_its_limit() {
    let mut table = Registry::new(small());
    for n in 1..=3 {
        table.register("a", peer(n), vec![n], 1_000, 0).unwrap();
    }
    assert_eq!(table.discover("a", 2, 0).len(), 2);
    assert!(table.discover("unknown", 2, 0).is_empty());
}

#[derive(Clone, Debug)]
enum Step {
    Register { ns: u8, peer: u8, ttl_ms: u64 },
    Unregister { ns: u8, peer: u8 },
    Discover { ns: u8 },
    Advance { ms: u64 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..4u8, 0..6u8, 0..1_500u64).prop_map(|(ns, peer, ttl_ms)| Step::Register {
            ns,
            peer,
            ttl_ms
        }),
        (0..4u8, 0..6u8).prop_map(|(ns, peer)| Step::Unregister { ns, peer }),
        (0..4u8).prop_map(|ns| Step::Discover { ns }),
        (0..700u64).prop_map(|ms| Step::Advance { ms }),
    ]
}

proptest! {
    /// The table answers as a plain map of (namespace, peer) to (envelope,
    /// expiry) with the bounds checked by counting does.
    #[test]
    fn matches_a_plain_model(steps in proptest::collection::vec(step(), 1..80)) {
        let limits = small();
        let mut table = Registry::new(limits);
        let mut model: BTreeMap<(String, PeerId), (Vec<u8>, u64)> = BTreeMap::new();
        let mut now_ms = 0u64;
        for (i, step) in steps.into_iter().enumerate() {
            model.retain(|_, (_, expires)| *expires > now_ms);
            match step {
                Step::Register { ns, peer: p, ttl_ms } => {
                    let namespace = format!("ns{ns}");
                    let id = peer(p);
                    let envelope = vec![i as u8];
                    let key = (namespace.clone(), id);
                    let exists = model.contains_key(&key);
                    let in_ns = model.keys().filter(|(n, _)| *n == namespace).count();
                    let namespaces: std::collections::BTreeSet<_> =
                        model.keys().map(|(n, _)| n.clone()).collect();
                    let of_peer = model.keys().filter(|(_, q)| *q == id).count();
                    let fits = exists
                        || (in_ns < limits.per_namespace_max
                            && (in_ns > 0 || namespaces.len() < limits.namespaces_max)
                            && of_peer < limits.per_peer_max);
                    let got = table.register(&namespace, id, envelope.clone(), ttl_ms, now_ms);
                    if ttl_ms == 0 || !fits {
                        prop_assert!(got.is_err());
                    } else {
                        let granted = ttl_ms.min(limits.ttl_max_ms);
                        prop_assert_eq!(got, Ok(granted));
                        model.insert(key, (envelope, now_ms + granted));
                    }
                }
                Step::Unregister { ns, peer: p } => {
                    let namespace = format!("ns{ns}");
                    let was = model.remove(&(namespace.clone(), peer(p))).is_some();
                    prop_assert_eq!(table.unregister(&namespace, peer(p)), was);
                }
                Step::Discover { ns } => {
                    let namespace = format!("ns{ns}");
                    let mut want: Vec<(PeerId, Vec<u8>)> = model
                        .iter()
                        .filter(|((n, _), _)| *n == namespace)
                        .map(|((_, p), (e, _))| (*p, e.clone()))
                        .collect();
                    want.sort_by_key(|(p, _)| *p);
                    let want: Vec<Vec<u8>> = want.into_iter().map(|(_, e)| e).collect();
                    prop_assert_eq!(table.discover(&namespace, usize::MAX, now_ms), want);
                }
                Step::Advance { ms } => now_ms += ms,
            }
            table.expire(now_ms);
            model.retain(|_, (_, expires)| *expires > now_ms);
            prop_assert_eq!(table.len(), model.len());
        }
    }
}
