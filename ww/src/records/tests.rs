use proptest::prelude::*;

use super::*;
use crate::transport::{Address, Identity};

const NOW_MS: u64 = 1_700_000_000_000;

#[test]
fn a_content_record_opens_under_its_hash_and_nowhere_else() {
    let alice = Identity::from_secret([1; 32]);
    let record = Record::content(&alice, NOW_MS, b"module bytes".to_vec()).unwrap();
    let key = RecordKey::of_content(b"module bytes");
    assert_eq!(record.key(), key);
    let opened = Record::open_as(&record.bytes, &key).unwrap();
    assert_eq!(opened, record);
    let other = RecordKey::of_content(b"other bytes");
    assert!(matches!(
        Record::open_as(&record.bytes, &other),
        Err(RecordError::WrongKey { .. })
    ));
    assert_eq!(key.to_hex().parse::<RecordKey>().unwrap(), key);
    assert!("abc".parse::<RecordKey>().is_err());
}

#[test]
fn every_changed_byte_is_refused() {
    let alice = Identity::from_secret([1; 32]);
    let record = Record::content(&alice, NOW_MS, b"0123456789".to_vec()).unwrap();
    for i in 0..record.bytes.len() {
        let mut bytes = record.bytes.clone();
        bytes[i] ^= 0x01;
        assert!(
            Record::open_as(&bytes, &record.key()).is_err(),
            "byte {i} changed and still accepted"
        );
    }
    assert!(Record::open(&record.bytes[..record.bytes.len() - 1]).is_err());
}

#[test]
fn a_peer_record_is_its_peers_own() {
    let bob = Identity::from_secret([2; 32]);
    let addresses = vec![Address::new("/ip4/127.0.0.1/tcp/4001")];
    let record = Record::peer(&bob, NOW_MS, &addresses).unwrap();
    assert_eq!(record.key(), RecordKey::of_peer(&bob.peer_id()));
    assert_eq!(Record::open(&record.bytes).unwrap().addresses(), addresses);
}

#[test]
fn the_store_keeps_the_newest_within_its_bounds_and_drains() {
    let alice = Identity::from_secret([1; 32]);
    let limits = StoreLimits {
        records_max: 2,
        bytes_max: 10_000,
        ttl_ms: 1_000,
        skew_ms: 100,
    };
    let mut store = RecordStore::new(limits);
    let a1 = Record::content(&alice, NOW_MS, b"a".to_vec()).unwrap();
    let a2 = Record::content(&alice, NOW_MS + 10, b"a".to_vec()).unwrap();
    let b = Record::content(&alice, NOW_MS, b"b".to_vec()).unwrap();
    let c = Record::content(&alice, NOW_MS, b"c".to_vec()).unwrap();
    assert_eq!(store.put(&a1, NOW_MS), Ok(Stored::New));
    assert_eq!(store.put(&a2, NOW_MS), Ok(Stored::Replaced));
    assert_eq!(
        store.put(&a1, NOW_MS),
        Ok(Stored::Kept),
        "an older copy never replaces"
    );
    assert_eq!(store.put(&b, NOW_MS), Ok(Stored::New));
    assert!(matches!(
        store.put(&c, NOW_MS),
        Err(StoreError::Full { .. })
    ));
    let future = Record::content(&alice, NOW_MS + 1_000, b"f".to_vec()).unwrap();
    assert!(matches!(
        store.put(&future, NOW_MS),
        Err(StoreError::FromTheFuture { .. })
    ));
    assert!(matches!(
        store.put(&c, NOW_MS + 1_000),
        Err(StoreError::Expired { .. })
    ));
    // b expires at NOW+1000, a2 at NOW+1010.
    assert!(store.get(&b.key(), NOW_MS + 1_000).is_none());
    assert_eq!(store.len(), 1);
    assert_eq!(store.get(&a2.key(), NOW_MS + 1_000), Some(a2.bytes.clone()));
    store.expire(NOW_MS + 1_010);
    assert!(store.is_empty());
    assert_eq!(store.bytes(), 0);
}

proptest! {
    /// The holders of a key are the k nearest by XOR distance, whatever order
    /// the view comes in, and adding a host moves a key to it only if it is
    /// nearer than a holder.
    #[test]
    fn placement_is_the_k_nearest(seeds in proptest::collection::btree_set(0u8..64, 1..20), key_seed: u8, k in 1usize..5) {
        let peers: Vec<_> = seeds.iter().map(|s| Identity::from_secret([*s; 32]).peer_id()).collect();
        let key = RecordKey::of_content(&[key_seed]);
        let chosen = closest(&key, peers.iter().copied(), k);
        let mut reversed = peers.clone();
        reversed.reverse();
        prop_assert_eq!(&chosen, &closest(&key, reversed, k));
        prop_assert_eq!(chosen.len(), k.min(peers.len()));
        let farthest_chosen = chosen.iter().map(|p| RecordKey::of_node(p).distance(&key)).max().unwrap();
        for peer in &peers {
            if !chosen.contains(peer) {
                prop_assert!(RecordKey::of_node(peer).distance(&key) > farthest_chosen);
            }
        }
    }
}
