//! The heartbeat codec: every truncation and every malformed field is refused
//! with its own error, construction enforces the same limits, metadata is
//! sorted, deduplicated and parsed on the first `=`, and a tagged heartbeat opens
//! only under its key and for its publisher.

use proptest::prelude::*;
use ww::cluster::{parse_meta, Heartbeat, HeartbeatError};
use ww::transport::{Identity, PeerId, SwarmKey};

fn peer(n: u8) -> PeerId {
    Identity::from_secret([n; 32]).peer_id()
}

fn meta(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A version-2 message from raw parts (untagged), so invalid ones can be written.
fn raw(ttl_ms: u32, host: &[u8], pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = vec![2u8];
    out.extend_from_slice(&ttl_ms.to_be_bytes());
    out.extend_from_slice(&5u64.to_be_bytes());
    out.extend_from_slice(&6u64.to_be_bytes());
    out.extend_from_slice(&7u64.to_be_bytes());
    out.push(host.len() as u8);
    out.extend_from_slice(host);
    out.push(pairs.len() as u8);
    for (k, v) in pairs {
        out.push(k.len() as u8);
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u16).to_be_bytes());
        out.extend_from_slice(v);
    }
    out.push(0);
    out
}

#[test]
fn raw_helper_matches_encoder() {
    let h = Heartbeat::new(1000, 5, 6, "box", meta(&[("a", "1")]))
        .unwrap()
        .with_sent_ms(7);
    assert_eq!(raw(1000, b"box", &[(b"a", b"1")]), h.encode());
    assert_eq!(h.encode(), h.seal(None, &peer(1)));
}

#[test]
fn every_truncation_is_an_error() {
    let h = Heartbeat::new(1000, 5, 6, "box", meta(&[("a", "1"), ("zone", "eu")])).unwrap();
    let key = SwarmKey::from_bytes([1; 32]);
    for bytes in [h.encode(), h.seal(Some(&key), &peer(1))] {
        for len in 0..bytes.len() {
            let err = Heartbeat::decode(&bytes[..len]).expect_err("truncated must fail");
            assert!(
                matches!(err, HeartbeatError::Truncated { .. }),
                "{len}: {err}"
            );
            assert!(Heartbeat::open(&bytes[..len], Some(&key), &peer(1)).is_err());
        }
    }
}

#[test]
fn each_decode_violation_has_its_error() {
    use HeartbeatError as E;
    let dec = |b: Vec<u8>| Heartbeat::decode(&b).expect_err("must fail");
    for version in [1, 3] {
        let mut other = raw(1000, b"", &[]);
        other[0] = version;
        assert_eq!(dec(other), E::UnsupportedVersion { version });
    }
    let mut short_tag = raw(1000, b"", &[]);
    *short_tag.last_mut().unwrap() = 16;
    short_tag.extend_from_slice(&[0; 16]);
    assert_eq!(dec(short_tag), E::TagLength { len_bytes: 16 });
    assert_eq!(dec(raw(99, b"", &[])), E::TtlOutOfRange { ttl_ms: 99 });
    assert_eq!(
        dec(raw(3_600_001, b"", &[])),
        E::TtlOutOfRange { ttl_ms: 3_600_001 }
    );
    assert_eq!(dec(raw(1000, b"\xff", &[])), E::HostNotUtf8);
    let many: Vec<(&[u8], &[u8])> = vec![(b"k", b"v"); 33];
    assert_eq!(dec(raw(1000, b"", &many)), E::TooManyMeta { count: 33 });
    assert_eq!(dec(raw(1000, b"", &[(b"", b"v")])), E::MetaKeyEmpty);
    assert!(matches!(
        dec(raw(1000, b"", &[(b"a=b", b"v")])),
        E::MetaKeyHasSeparator { .. }
    ));
    let long_key = [b'k'; 65];
    assert_eq!(
        dec(raw(1000, b"", &[(&long_key, b"v")])),
        E::MetaKeyTooLong { len_bytes: 65 }
    );
    assert_eq!(dec(raw(1000, b"", &[(b"\xc3", b"v")])), E::MetaKeyNotUtf8);
    let long_value = [b'v'; 256];
    let got = dec(raw(1000, b"", &[(b"k", &long_value)]));
    assert_eq!(got, E::MetaValueTooLong { len_bytes: 256 });
    assert_eq!(dec(raw(1000, b"", &[(b"k", b"\xff")])), E::MetaValueNotUtf8);
    let mut trailing = raw(1000, b"", &[]);
    trailing.extend_from_slice(b"xy");
    assert_eq!(dec(trailing), E::TrailingBytes { count: 2 });
    assert_eq!(dec(vec![1; 2049]), E::MessageTooLarge { len_bytes: 2049 });
    assert_eq!(dec(Vec::new()), E::Truncated { field: "version" });
}

#[test]
fn each_construction_violation_has_its_error() {
    use HeartbeatError as E;
    let new = |ttl, host: &str, m| Heartbeat::new(ttl, 1, 1, host, m).expect_err("must fail");
    assert_eq!(new(0, "", vec![]), E::TtlOutOfRange { ttl_ms: 0 });
    assert_eq!(
        new(1000, &"h".repeat(256), vec![]),
        E::HostTooLong { len_bytes: 256 }
    );
    let many = (0..33).map(|i| (format!("k{i}"), String::new())).collect();
    assert_eq!(new(1000, "", many), E::TooManyMeta { count: 33 });
    assert_eq!(new(1000, "", meta(&[("", "v")])), E::MetaKeyEmpty);
    let err = new(1000, "", vec![("k".repeat(65), String::new())]);
    assert_eq!(err, E::MetaKeyTooLong { len_bytes: 65 });
    let err = new(1000, "", vec![("k".into(), "v".repeat(256))]);
    assert_eq!(err, E::MetaValueTooLong { len_bytes: 256 });
    // Room for the tag is kept: a heartbeat that fits untagged but not tagged is refused.
    // Seven 260-byte pairs, one of 175 and the 32-byte rest: 2027 bytes untagged.
    let mut pairs: Vec<(String, String)> =
        (0..7).map(|i| (format!("k{i}"), "v".repeat(255))).collect();
    pairs.push(("k7".into(), "v".repeat(170)));
    assert_eq!(new(1000, "", pairs), E::MessageTooLarge { len_bytes: 2059 });
    // 32 pairs at their limits are each valid but together exceed 2048 bytes.
    let big = (0..32)
        .map(|i| (format!("{i:064}"), "v".repeat(255)))
        .collect();
    assert!(matches!(new(1000, "", big), E::MessageTooLarge { len_bytes } if len_bytes > 2048));
}

#[test]
fn meta_is_sorted_and_deduplicated() {
    let pairs = meta(&[("b", "2"), ("a", "9"), ("b", "1"), ("a", "9")]);
    let h = Heartbeat::new(1000, 1, 1, "", pairs).unwrap();
    assert_eq!(
        h.meta(),
        meta(&[("a", "9"), ("b", "1"), ("b", "2")]).as_slice()
    );
    let wire = raw(1000, b"", &[(b"b", b"2"), (b"a", b"9"), (b"a", b"9")]);
    let decoded = Heartbeat::decode(&wire).unwrap();
    assert_eq!(decoded.meta(), meta(&[("a", "9"), ("b", "2")]).as_slice());
}

#[test]
fn parse_meta_splits_on_the_first_equals() {
    let pair = |k: &str, v: &str| Ok((k.to_string(), v.to_string()));
    assert_eq!(parse_meta("zone=eu"), pair("zone", "eu"));
    assert_eq!(parse_meta("a=b=c"), pair("a", "b=c"));
    assert_eq!(parse_meta("k="), pair("k", ""));
    let missing = HeartbeatError::MetaSeparatorMissing {
        text: "zone".into(),
    };
    assert_eq!(parse_meta("zone"), Err(missing));
    assert_eq!(parse_meta("=eu"), Err(HeartbeatError::MetaKeyEmpty));
}

#[test]
fn a_tag_binds_the_key_the_domain_and_the_publisher() {
    let key = SwarmKey::from_bytes([1; 32]);
    let h = Heartbeat::new(1000, 5, 6, "box", meta(&[("role", "gateway")]))
        .unwrap()
        .with_sent_ms(1_700_000_000_000);
    let sealed = h.seal(Some(&key), &peer(1));
    assert_eq!(sealed.len(), h.encoded_len() + 32);
    assert_eq!(
        Heartbeat::open(&sealed, Some(&key), &peer(1)),
        Ok(h.clone())
    );
    let refused = Err(HeartbeatError::Unauthenticated);
    // Re-attributed to another publisher (a key holder relaying it as its own).
    assert_eq!(Heartbeat::open(&sealed, Some(&key), &peer(2)), refused);
    // Another cluster's key, and a node without a key.
    let other = SwarmKey::from_bytes([2; 32]);
    assert_eq!(Heartbeat::open(&sealed, Some(&other), &peer(1)), refused);
    assert_eq!(Heartbeat::open(&sealed, None, &peer(1)), refused);
    // An untagged heartbeat under a key.
    assert_eq!(Heartbeat::open(&h.encode(), Some(&key), &peer(1)), refused);
    assert_eq!(Heartbeat::open(&h.encode(), None, &peer(1)), Ok(h));
    // A boot packet's tag of the same bytes is not a heartbeat tag.
    let body = &sealed[..sealed.len() - 33];
    let mut forged = body.to_vec();
    forged.push(32);
    forged.extend_from_slice(&key.tag(b"ww-sched/boot/v2", body));
    assert_eq!(Heartbeat::open(&forged, Some(&key), &peer(1)), refused);
}

proptest! {
    #[test]
    fn sealed_heartbeats_round_trip_and_any_flipped_bit_is_refused(
        ttl_ms in 100..=3_600_000u32, instance: u64, seq: u64, sent_ms: u64,
        host in "\\PC{0,40}",
        pairs in prop::collection::vec(("[a-z0-9._-]{1,64}", "\\PC{0,20}"), 0..=8),
        bit: usize,
    ) {
        let key = SwarmKey::from_bytes([1; 32]);
        let h = Heartbeat::new(ttl_ms, instance, seq, host, pairs).expect("valid").with_sent_ms(sent_ms);
        let sealed = h.seal(Some(&key), &peer(1));
        prop_assert!(sealed.len() <= ww::cluster::HEARTBEAT_BYTES_MAX);
        prop_assert_eq!(Heartbeat::open(&sealed, Some(&key), &peer(1)), Ok(h.clone()));
        prop_assert_eq!(Heartbeat::decode(&sealed), Ok(h));
        let mut flipped = sealed.clone();
        let bit = bit % (flipped.len() * 8);
        flipped[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(Heartbeat::open(&flipped, Some(&key), &peer(1)).is_err());
    }

    #[test]
    fn open_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..400), keyed: bool) {
        let key = SwarmKey::from_bytes([1; 32]);
        let key = keyed.then_some(&key);
        if let Ok(h) = Heartbeat::open(&bytes, key, &peer(1)) {
            prop_assert_eq!(Heartbeat::open(&h.seal(key, &peer(1)), key, &peer(1)), Ok(h));
        }
    }
}
