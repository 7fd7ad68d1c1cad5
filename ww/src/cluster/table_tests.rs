//! Tests of the routing table.

use super::*;
use crate::transport::Identity;

fn beat(instance: u64, seq: u64, sent_ms: u64) -> Heartbeat {
    Heartbeat::new(6_000, instance, seq, "node-104", Vec::new())
        .expect("valid heartbeat")
        .with_sent_ms(sent_ms)
}

/// The swarm's `cluster-256` seed 7, replayed on one table: node-103 and
/// node-104 restart together at 13.650 s; node-103's new table hears
/// node-104's new instance first, then the old instance's last heartbeat
/// (sent before the restart, 200 ms links). Taking it for a restart retired
/// the live instance: node-103 refused it for the rest of the run.
#[test]
fn a_late_heartbeat_of_an_earlier_run_never_displaces_the_live_one() {
    let peer = Identity::from_secret([4; 32]).peer_id();
    let (old, new) = (0x7300_577c_c699_7035, 0x8d71_aeea_8a13_6fa4);
    let mut table = RoutingTable::default();
    assert_eq!(
        table.apply(13_660, peer, beat(new, 1, 13_650)),
        Ok(Applied::Joined)
    );
    assert!(table.apply(13_700, peer, beat(old, 17, 13_640)).is_err());
    assert_eq!(table.get(&peer).map(|r| r.heartbeat.instance()), Some(new));
    for seq in 2..=12 {
        let at = 13_650 + seq * 857;
        assert_eq!(
            table.apply(at + 10, peer, beat(new, seq, at)),
            Ok(Applied::Updated),
            "the live instance's heartbeat {seq} must be taken"
        );
    }
    // A late heartbeat of the earlier run after a partition: this node had
    // expired that run (up to seq 9), and its seq 10 arrives after the new
    // run's first heartbeat.
    let other = Identity::from_secret([5; 32]).peer_id();
    let mut table = RoutingTable::default();
    table.apply(0, other, beat(old, 9, 0)).expect("join");
    assert_eq!(table.expire(6_000).len(), 1);
    table
        .apply(8_000, other, beat(new, 1, 8_000))
        .expect("join");
    assert!(table.apply(8_050, other, beat(old, 10, 7_990)).is_err());
    assert_eq!(
        table.apply(8_900, other, beat(new, 2, 8_890)),
        Ok(Applied::Updated)
    );
    // The earlier run stays dead once the live one leaves: its refused
    // heartbeat, replayed within the freshness window, is still refused.
    table.expire(8_900 + 6_000);
    assert!(table.is_empty());
    assert!(table.apply(15_000, other, beat(old, 10, 7_990)).is_err());
    assert!(table.is_empty());
}
