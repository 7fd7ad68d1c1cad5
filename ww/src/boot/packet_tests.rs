use proptest::prelude::*;

use super::*;

fn identity(n: u8) -> Identity {
    Identity::from_secret([n; 32])
}

/// The receivers' clock in these tests; packets are stamped near it.
const NOW_MS: u64 = 1_700_000_000_000;
const WINDOW_MS: u64 = 30_000;

fn checks(max_bytes: usize, key: Option<&SwarmKey>) -> Checks<'_> {
    Checks {
        max_bytes,
        key,
        now_ms: NOW_MS,
        freshness_window_ms: WINDOW_MS,
    }
}

fn key(n: u8) -> SwarmKey {
    SwarmKey::from_bytes([n; 32])
}

fn body_strategy() -> impl Strategy<Value = Body> {
    let id = (0u8..8).prop_map(|n| identity(n).peer_id());
    let addresses = prop::collection::vec("[ -~]{0,64}", 0..=ADDRESSES_MAX)
        .prop_map(|v| v.into_iter().map(Address::new).collect::<Vec<_>>());
    prop_oneof![
        id.clone().prop_map(|from| Body::Request { from }),
        (id.clone(), any::<u8>()).prop_map(|(from, distance)| Body::Survey { from, distance }),
        (id, addresses).prop_map(|(peer, addresses)| Body::Response { peer, addresses }),
    ]
}

fn packet_strategy() -> impl Strategy<Value = Packet> {
    ("\\PC{0,40}", any::<u64>(), body_strategy())
        .prop_filter("namespace fits", |(ns, _, _)| {
            ns.len() <= NAMESPACE_MAX_BYTES
        })
        .prop_map(|(namespace, sent_ms, body)| Packet {
            namespace,
            sent_ms,
            body,
        })
}

fn response(peer: PeerId) -> Packet {
    Packet {
        namespace: "ww".into(),
        sent_ms: NOW_MS,
        body: Body::Response {
            peer,
            addresses: vec![Address::new("/ip4/127.0.0.1/tcp/1")],
        },
    }
}

proptest! {
    #[test]
    fn packet_round_trips(packet in packet_strategy()) {
        let bytes = packet.encode().expect("encodes");
        prop_assert_eq!(Packet::decode(&bytes).expect("decodes"), packet);
    }

    #[test]
    fn every_truncation_fails_cleanly(packet in packet_strategy()) {
        let bytes = packet.encode().expect("encodes");
        for len in 0..bytes.len() {
            prop_assert!(Packet::decode(&bytes[..len]).is_err());
        }
        for k in [None, Some(key(1))] {
            let sealed = Envelope::seal(&identity(1), k.as_ref(), bytes.clone())
                .expect("seals")
                .encode()
                .expect("encodes");
            for len in 0..sealed.len() {
                prop_assert!(Envelope::decode(&sealed[..len]).is_err());
                prop_assert!(open(&sealed[..len], &checks(DATAGRAM_MAX_BYTES, k.as_ref())).is_err());
            }
        }
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = Packet::decode(&bytes);
        let _ = Envelope::decode(&bytes);
        prop_assert!(open(&bytes, &checks(DATAGRAM_MAX_BYTES, None)).is_err());
        prop_assert!(open(&bytes, &checks(DATAGRAM_MAX_BYTES, Some(&key(1)))).is_err());
    }

    #[test]
    fn sealed_packets_open(packet in packet_strategy(), skew in -30_000i64..=30_000, keyed: bool) {
        let signer = identity(0);
        // Make the packet name its signer, as real packets do.
        let body = match packet.body {
            Body::Request { .. } => Body::Request { from: signer.peer_id() },
            Body::Survey { distance, .. } => Body::Survey { from: signer.peer_id(), distance },
            Body::Response { addresses, .. } => Body::Response { peer: signer.peer_id(), addresses },
        };
        let sent_ms = NOW_MS.saturating_add_signed(skew);
        let packet = Packet { body, sent_ms, ..packet };
        let k = keyed.then(|| key(1));
        let bytes = seal(&signer, k.as_ref(), &packet).expect("seals");
        prop_assert_eq!(open(&bytes, &checks(usize::MAX, k.as_ref())), Ok(packet.clone()));
        // Under another key, or where a key is expected but absent (or the
        // reverse), the same bytes are refused before the signature is checked.
        let other = key(2);
        prop_assert_eq!(open(&bytes, &checks(usize::MAX, Some(&other))), Err(DropReason::Unauthenticated));
        if keyed {
            prop_assert_eq!(open(&bytes, &checks(usize::MAX, None)), Err(DropReason::Unauthenticated));
        }
    }

    #[test]
    fn packets_outside_the_window_are_not_fresh(
        packet in packet_strategy(), beyond in 1u64..1_000_000_000, ahead: bool, keyed: bool,
    ) {
        let signer = identity(0);
        let body = Body::Request { from: signer.peer_id() };
        let sent_ms = if ahead { NOW_MS + WINDOW_MS + beyond } else { NOW_MS - WINDOW_MS - beyond };
        let packet = Packet { body, sent_ms, ..packet };
        let k = keyed.then(|| key(1));
        let bytes = seal(&signer, k.as_ref(), &packet).expect("seals");
        prop_assert_eq!(open(&bytes, &checks(usize::MAX, k.as_ref())), Err(DropReason::NotFresh));
    }

    #[test]
    fn any_flipped_bit_of_a_tagged_envelope_is_refused(packet in packet_strategy(), bit in 0usize..4096) {
        let signer = identity(0);
        let packet = Packet { body: Body::Request { from: signer.peer_id() }, sent_ms: NOW_MS, ..packet };
        let mut bytes = seal(&signer, Some(&key(1)), &packet).expect("seals");
        let bit = bit % (bytes.len() * 8);
        bytes[bit / 8] ^= 1 << (bit % 8);
        prop_assert!(open(&bytes, &checks(usize::MAX, Some(&key(1)))).is_err());
    }
}

#[test]
fn trailing_bytes_are_refused() {
    let mut bytes = response(identity(1).peer_id()).encode().expect("encodes");
    bytes.push(0);
    assert_eq!(Packet::decode(&bytes), Err(PacketError::TrailingBytes(1)));
}

#[test]
fn unknown_version_and_kind_are_refused() {
    let mut bytes = response(identity(1).peer_id()).encode().expect("encodes");
    bytes[1] = 9;
    assert_eq!(Packet::decode(&bytes), Err(PacketError::UnknownKind(9)));
    for version in [1, 3] {
        bytes[0] = version;
        assert_eq!(Packet::decode(&bytes), Err(PacketError::UnknownVersion));
    }
}

#[test]
fn over_long_fields_do_not_encode() {
    let peer = identity(1).peer_id();
    let long_ns = Packet {
        namespace: "n".repeat(NAMESPACE_MAX_BYTES + 1),
        sent_ms: NOW_MS,
        body: Body::Request { from: peer },
    };
    assert!(matches!(long_ns.encode(), Err(PacketError::TooLong { .. })));
    let many = Packet {
        namespace: "ww".into(),
        sent_ms: NOW_MS,
        body: Body::Response {
            peer,
            addresses: vec![Address::new("/a"); ADDRESSES_MAX + 1],
        },
    };
    assert!(matches!(many.encode(), Err(PacketError::TooLong { .. })));
}

#[test]
fn worst_case_response_fits_a_datagram_only_when_addresses_are_short() {
    let signer = identity(1);
    let packet = Packet {
        namespace: "n".repeat(NAMESPACE_MAX_BYTES),
        sent_ms: NOW_MS,
        body: Body::Response {
            peer: signer.peer_id(),
            addresses: vec![Address::new("/ip4/255.255.255.255/tcp/65535"); ADDRESSES_MAX],
        },
    };
    let bytes = seal(&signer, Some(&key(1)), &packet).expect("seals");
    assert!(bytes.len() <= DATAGRAM_MAX_BYTES, "{} bytes", bytes.len());
}

#[test]
fn oversized_is_dropped_before_anything_else() {
    let bytes = seal(&identity(1), None, &response(identity(1).peer_id())).expect("seals");
    assert_eq!(
        open(&bytes, &checks(bytes.len() - 1, None)),
        Err(DropReason::Oversized)
    );
}

#[test]
fn unsigned_is_dropped() {
    let payload = response(identity(1).peer_id()).encode().expect("encodes");
    let no_signature = Envelope {
        payload: payload.clone(),
        signer: identity(1).peer_id().to_bytes(),
        signature: Vec::new(),
        tag: Vec::new(),
    };
    let no_signer = Envelope {
        payload,
        signer: Vec::new(),
        signature: vec![1; 64],
        tag: Vec::new(),
    };
    for envelope in [no_signature, no_signer] {
        let bytes = envelope.encode().expect("encodes");
        assert_eq!(
            open(&bytes, &checks(DATAGRAM_MAX_BYTES, None)),
            Err(DropReason::Unsigned)
        );
    }
}

#[test]
fn mis_signed_is_dropped() {
    let signer = identity(1);
    let mut envelope = Envelope::seal(
        &signer,
        None,
        response(signer.peer_id()).encode().expect("ok"),
    )
    .expect("seals");
    envelope.signature[0] ^= 1;
    let bytes = envelope.encode().expect("encodes");
    assert_eq!(
        open(&bytes, &checks(DATAGRAM_MAX_BYTES, None)),
        Err(DropReason::BadSignature)
    );

    // A payload changed after signing no longer verifies either.
    let mut envelope = Envelope::seal(
        &signer,
        None,
        response(signer.peer_id()).encode().expect("ok"),
    )
    .expect("seals");
    let last = envelope.payload.len() - 1;
    envelope.payload[last] ^= 1;
    let bytes = envelope.encode().expect("encodes");
    assert_eq!(
        open(&bytes, &checks(DATAGRAM_MAX_BYTES, None)),
        Err(DropReason::BadSignature)
    );

    // Signed without the domain prefix: not a boot signature.
    let payload = response(signer.peer_id()).encode().expect("ok");
    let bare = Envelope {
        signature: signer.sign(&payload),
        signer: signer.peer_id().to_bytes(),
        payload,
        tag: Vec::new(),
    };
    let bytes = bare.encode().expect("encodes");
    assert_eq!(
        open(&bytes, &checks(DATAGRAM_MAX_BYTES, None)),
        Err(DropReason::BadSignature)
    );
}

#[test]
fn signer_must_be_the_named_peer() {
    // Validly signed by identity 2, but the packet claims to be from identity 1.
    let bytes = seal(&identity(2), None, &response(identity(1).peer_id())).expect("seals");
    assert_eq!(
        open(&bytes, &checks(DATAGRAM_MAX_BYTES, None)),
        Err(DropReason::SignerMismatch)
    );
}

#[test]
fn a_tag_is_checked_before_the_signature_and_a_forged_one_is_refused() {
    let signer = identity(1);
    let packet = response(signer.peer_id());
    // A wrong signature under a wrong tag: the tag is what refuses it.
    let mut envelope =
        Envelope::seal(&signer, Some(&key(1)), packet.encode().expect("ok")).expect("seals");
    envelope.signature[0] ^= 1;
    envelope.tag[0] ^= 1;
    let bytes = envelope.encode().expect("encodes");
    let cluster_key = key(1);
    let keyed = checks(DATAGRAM_MAX_BYTES, Some(&cluster_key));
    assert_eq!(open(&bytes, &keyed), Err(DropReason::Unauthenticated));
    // A short tag, and no tag at all, are refused under a key.
    for tag in [vec![0u8; 31], Vec::new()] {
        let short = Envelope {
            tag,
            ..Envelope::seal(&signer, None, packet.encode().expect("ok")).expect("seals")
        };
        let bytes = short.encode().expect("encodes");
        assert_eq!(open(&bytes, &keyed), Err(DropReason::Unauthenticated));
    }
    // The freshness window is inclusive at both ends.
    for sent_ms in [NOW_MS - WINDOW_MS, NOW_MS + WINDOW_MS] {
        let packet = Packet {
            sent_ms,
            ..packet.clone()
        };
        let bytes = seal(&signer, Some(&key(1)), &packet).expect("seals");
        assert_eq!(open(&bytes, &keyed), Ok(packet));
    }
}
