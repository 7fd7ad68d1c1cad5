use proptest::prelude::*;

use super::*;

fn identity(n: u8) -> Identity {
    Identity::from_secret([n; 32])
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
    ("\\PC{0,40}", body_strategy())
        .prop_filter("namespace fits", |(ns, _)| ns.len() <= NAMESPACE_MAX_BYTES)
        .prop_map(|(namespace, body)| Packet { namespace, body })
}

fn response(peer: PeerId) -> Packet {
    Packet {
        namespace: "ww".into(),
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
        let sealed = Envelope::seal(&identity(1), bytes).encode().expect("encodes");
        for len in 0..sealed.len() {
            prop_assert!(Envelope::decode(&sealed[..len]).is_err());
            prop_assert!(open(&sealed[..len], DATAGRAM_MAX_BYTES).is_err());
        }
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = Packet::decode(&bytes);
        let _ = Envelope::decode(&bytes);
        prop_assert!(open(&bytes, DATAGRAM_MAX_BYTES).is_err());
    }

    #[test]
    fn sealed_packets_open(packet in packet_strategy()) {
        let signer = identity(0);
        // Make the packet name its signer, as real packets do.
        let body = match packet.body {
            Body::Request { .. } => Body::Request { from: signer.peer_id() },
            Body::Survey { distance, .. } => Body::Survey { from: signer.peer_id(), distance },
            Body::Response { addresses, .. } => Body::Response { peer: signer.peer_id(), addresses },
        };
        let packet = Packet { body, ..packet };
        let bytes = seal(&signer, &packet).expect("seals");
        prop_assert_eq!(open(&bytes, usize::MAX), Ok(packet));
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
    bytes[0] = 2;
    assert_eq!(Packet::decode(&bytes), Err(PacketError::UnknownVersion));
}

#[test]
fn over_long_fields_do_not_encode() {
    let peer = identity(1).peer_id();
    let long_ns = Packet {
        namespace: "n".repeat(NAMESPACE_MAX_BYTES + 1),
        body: Body::Request { from: peer },
    };
    assert!(matches!(long_ns.encode(), Err(PacketError::TooLong { .. })));
    let many = Packet {
        namespace: "ww".into(),
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
        body: Body::Response {
            peer: signer.peer_id(),
            addresses: vec![Address::new("/ip4/255.255.255.255/tcp/65535"); ADDRESSES_MAX],
        },
    };
    let bytes = seal(&signer, &packet).expect("seals");
    assert!(bytes.len() <= DATAGRAM_MAX_BYTES, "{} bytes", bytes.len());
}

#[test]
fn oversized_is_dropped_before_anything_else() {
    let bytes = seal(&identity(1), &response(identity(1).peer_id())).expect("seals");
    assert_eq!(open(&bytes, bytes.len() - 1), Err(DropReason::Oversized));
}

#[test]
fn unsigned_is_dropped() {
    let payload = response(identity(1).peer_id()).encode().expect("encodes");
    let no_signature = Envelope {
        payload: payload.clone(),
        signer: identity(1).peer_id().to_bytes(),
        signature: Vec::new(),
    };
    let no_signer = Envelope {
        payload,
        signer: Vec::new(),
        signature: vec![1; 64],
    };
    for envelope in [no_signature, no_signer] {
        let bytes = envelope.encode().expect("encodes");
        assert_eq!(open(&bytes, DATAGRAM_MAX_BYTES), Err(DropReason::Unsigned));
    }
}

#[test]
fn mis_signed_is_dropped() {
    let signer = identity(1);
    let mut envelope = Envelope::seal(&signer, response(signer.peer_id()).encode().expect("ok"));
    envelope.signature[0] ^= 1;
    let bytes = envelope.encode().expect("encodes");
    assert_eq!(
        open(&bytes, DATAGRAM_MAX_BYTES),
        Err(DropReason::BadSignature)
    );

    // A payload changed after signing no longer verifies either.
    let mut envelope = Envelope::seal(&signer, response(signer.peer_id()).encode().expect("ok"));
    let last = envelope.payload.len() - 1;
    envelope.payload[last] ^= 1;
    let bytes = envelope.encode().expect("encodes");
    assert_eq!(
        open(&bytes, DATAGRAM_MAX_BYTES),
        Err(DropReason::BadSignature)
    );

    // Signed without the domain prefix: not a boot signature.
    let payload = response(signer.peer_id()).encode().expect("ok");
    let bare = Envelope {
        signature: signer.sign(&payload),
        signer: signer.peer_id().to_bytes(),
        payload,
    };
    let bytes = bare.encode().expect("encodes");
    assert_eq!(
        open(&bytes, DATAGRAM_MAX_BYTES),
        Err(DropReason::BadSignature)
    );
}

#[test]
fn signer_must_be_the_named_peer() {
    // Validly signed by identity 2, but the packet claims to be from identity 1.
    let bytes = seal(&identity(2), &response(identity(1).peer_id())).expect("seals");
    assert_eq!(
        open(&bytes, DATAGRAM_MAX_BYTES),
        Err(DropReason::SignerMismatch)
    );
}
