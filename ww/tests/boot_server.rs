//! The boot server's checks on what it is asked to keep: a peer registers only
//! itself, with a fresh envelope under the cluster's key; readers get back
//! exactly the bytes the registrant signed, and nothing after its TTL.

use ww::boot::packet::{self, Body, Packet};
use ww::boot::{BootServerConfig, BootService, RegistryLimits, WallClock};
use ww::transport::{Address, Identity, SwarmKey};

const NOW_MS: u64 = 1_700_000_000_000;

fn service(
    clock_ms: std::sync::Arc<std::sync::atomic::AtomicU64>,
    key: Option<SwarmKey>,
) -> BootService {
    BootService::new(BootServerConfig {
        limits: RegistryLimits::default(),
        swarm_key: key,
        wall_clock: WallClock::new(move || clock_ms.load(std::sync::atomic::Ordering::SeqCst)),
        ..BootServerConfig::default()
    })
}

fn envelope(identity: &Identity, key: Option<&SwarmKey>, namespace: &str, sent_ms: u64) -> Vec<u8> {
    let packet = Packet {
        namespace: namespace.to_string(),
        sent_ms,
        body: Body::Response {
            peer: identity.peer_id(),
            addresses: vec![Address::new("/ip4/127.0.0.1/tcp/4001")],
        },
    };
    packet::seal(identity, key, &packet).unwrap()
}

#[test]
fn a_peer_registers_itself_and_readers_get_its_signed_bytes() {
    let clock = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(NOW_MS));
    let boot = service(clock.clone(), None);
    let alice = Identity::generate();
    let bytes = envelope(&alice, None, "ww", NOW_MS);
    assert_eq!(
        boot.register(alice.peer_id(), &bytes, 60_000),
        Ok(30_000),
        "TTL cut to the limit"
    );
    assert_eq!(boot.discover("ww", 10).unwrap(), vec![bytes]);
    assert!(boot.discover("other", 10).unwrap().is_empty());
    clock.store(NOW_MS + 30_000, std::sync::atomic::Ordering::SeqCst);
    assert!(
        boot.discover("ww", 10).unwrap().is_empty(),
        "served after its TTL"
    );
    assert_eq!(boot.registrations(), 0);
}

#[test]
fn the_server_refuses_what_is_not_the_callers_own_fresh_envelope() {
    let clock = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(NOW_MS));
    let key = SwarmKey::generate();
    let boot = service(clock, Some(key.clone()));
    let alice = Identity::generate();
    let mallory = Identity::generate();
    let refused = |caller: &Identity, bytes: &[u8], why: &str| {
        let got = boot.register(caller.peer_id(), bytes, 10_000);
        assert!(got.is_err(), "{why}: accepted");
        assert!(
            got.unwrap_err().contains("not registered"),
            "{why}: the error says nothing was kept"
        );
    };
    refused(
        &mallory,
        &envelope(&alice, Some(&key), "ww", NOW_MS),
        "someone else's envelope",
    );
    refused(
        &alice,
        &envelope(&alice, None, "ww", NOW_MS),
        "no swarm-key tag",
    );
    refused(
        &alice,
        &envelope(&alice, Some(&SwarmKey::generate()), "ww", NOW_MS),
        "another cluster's tag",
    );
    refused(
        &alice,
        &envelope(&alice, Some(&key), "ww", NOW_MS - 60_000),
        "a stale envelope",
    );
    let mut forged = envelope(&alice, Some(&key), "ww", NOW_MS);
    let last = forged.len() - 40;
    forged[last] ^= 1;
    refused(&alice, &forged, "a changed byte");
    refused(&alice, b"not an envelope", "garbage");
    assert_eq!(boot.registrations(), 0);
    assert!(boot
        .register(
            alice.peer_id(),
            &envelope(&alice, Some(&key), "ww", NOW_MS),
            10_000
        )
        .is_ok());
    assert_eq!(boot.registrations(), 1);
}
