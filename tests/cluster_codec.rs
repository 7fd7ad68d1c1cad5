//! The heartbeat codec: every truncation and every malformed field is refused
//! with its own error, construction enforces the same limits, and metadata is
//! sorted, deduplicated and parsed on the first `=`.

use ww_sched::cluster::{parse_meta, Heartbeat, HeartbeatError};

fn meta(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A version-1 message from raw parts, so invalid ones can be written.
fn raw(ttl_ms: u32, host: &[u8], pairs: &[(&[u8], &[u8])]) -> Vec<u8> {
    let mut out = vec![1u8];
    out.extend_from_slice(&ttl_ms.to_be_bytes());
    out.extend_from_slice(&5u64.to_be_bytes());
    out.extend_from_slice(&6u64.to_be_bytes());
    out.push(host.len() as u8);
    out.extend_from_slice(host);
    out.push(pairs.len() as u8);
    for (k, v) in pairs {
        out.push(k.len() as u8);
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u16).to_be_bytes());
        out.extend_from_slice(v);
    }
    out
}

#[test]
fn raw_helper_matches_encoder() {
    let h = Heartbeat::new(1000, 5, 6, "box", meta(&[("a", "1")])).unwrap();
    assert_eq!(raw(1000, b"box", &[(b"a", b"1")]), h.encode());
}

#[test]
fn every_truncation_is_an_error() {
    let h = Heartbeat::new(1000, 5, 6, "box", meta(&[("a", "1"), ("zone", "eu")])).unwrap();
    let bytes = h.encode();
    for len in 0..bytes.len() {
        let err = Heartbeat::decode(&bytes[..len]).expect_err("truncated must fail");
        assert!(
            matches!(err, HeartbeatError::Truncated { .. }),
            "{len}: {err}"
        );
    }
}

#[test]
fn each_decode_violation_has_its_error() {
    use HeartbeatError as E;
    let dec = |b: Vec<u8>| Heartbeat::decode(&b).expect_err("must fail");
    let mut v2 = raw(1000, b"", &[]);
    v2[0] = 2;
    assert_eq!(dec(v2), E::UnsupportedVersion { version: 2 });
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
