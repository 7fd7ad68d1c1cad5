//! The routing table against a plain reference model (freshness and tombstones
//! included), plus table and query tests (the heartbeat codec is in
//! `cluster_codec.rs`).

use std::collections::BTreeMap;

use proptest::prelude::*;
use ww::cluster::{
    parse_selector, Applied, Heartbeat, LeaveReason, Left, Match, Query, Record, Rejected,
    RoutingTable, Selector, SelectorError, TableConfig, ViewEvent,
};
use ww::transport::{Identity, PeerId};

fn peer(n: u8) -> PeerId {
    Identity::from_secret([n; 32]).peer_id()
}

fn meta(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A heartbeat sent at time 0 (fresh for tests that stay within the window).
fn hb(ttl_ms: u32, instance: u64, seq: u64) -> Heartbeat {
    let host = format!("h{instance}s{seq}");
    let pairs = vec![("seq".to_string(), seq.to_string())];
    Heartbeat::new(ttl_ms, instance, seq, host, pairs).expect("valid heartbeat")
}

/// A heartbeat sent at `sent_ms`.
fn hb_at(sent_ms: u64, ttl_ms: u32, instance: u64, seq: u64) -> Heartbeat {
    hb(ttl_ms, instance, seq).with_sent_ms(sent_ms)
}

// ---------- the reference model ----------

const PEERS: u8 = 5;
const INSTANCES: [u64; 3] = [0x1111_2222_3333_4444, 7, u64::MAX];
const TTLS: [u32; 3] = [1000, 3000, 10000];
const MODEL_PEERS_MAX: usize = 4;
const MODEL_TOMBSTONES_MAX: usize = 3;
const WINDOW_MS: u64 = 30_000;
/// Where the model's clock starts, so senders may be behind it by a window.
const START_MS: u64 = 1_000_000;
/// Sender clock offsets: within the window (both edges) and beyond it.
const SKEWS: [i64; 6] = [0, -5_000, 30_000, -30_000, 30_001, -45_000];

#[derive(Default)]
struct Model {
    // peer text -> (record, retired instances oldest first)
    peers: BTreeMap<String, (Record, Vec<u64>)>,
    // (peer text, instance) -> (highest refused seq, until, burial order)
    tombs: BTreeMap<(String, u64), (u64, u64, u64)>,
    burials: u64,
}

impl Model {
    fn bury(&mut self, key: (String, u64), seq_max: u64, until: u64) {
        let (seq_max, until) = match self.tombs.remove(&key) {
            Some((s, u, _)) => (seq_max.max(s), until.max(u)),
            None => (seq_max, until),
        };
        while self.tombs.len() >= MODEL_TOMBSTONES_MAX {
            let oldest = (self.tombs.iter())
                .min_by_key(|(_, (_, _, order))| *order)
                .map(|(k, _)| k.clone())
                .expect("not empty");
            self.tombs.remove(&oldest);
        }
        self.burials += 1;
        self.tombs.insert(key, (seq_max, until, self.burials));
    }

    fn apply(&mut self, now: u64, peer: PeerId, h: Heartbeat) -> Result<Applied, Rejected> {
        if h.sent_ms().abs_diff(now) > WINDOW_MS {
            let sent_ms = h.sent_ms();
            return Err(Rejected::NotFresh {
                sent_ms,
                now_ms: now,
            });
        }
        let tomb_key = (peer.to_string(), h.instance());
        let buried = (self.tombs.get(&tomb_key))
            .filter(|(seq_max, _, _)| h.seq() <= *seq_max)
            .map(|(seq_max, _, _)| *seq_max);
        let tombstoned = |seq_max| Rejected::Tombstoned {
            instance: h.instance(),
            seq: h.seq(),
            seq_max,
        };
        let deadline_ms = now + u64::from(h.ttl_ms());
        let fresh = |h: Heartbeat| Record {
            peer,
            heartbeat: h,
            deadline_ms,
            joined_ms: now,
            updated_ms: now,
        };
        let full = self.peers.len() >= MODEL_PEERS_MAX;
        let Some((rec, retired)) = self.peers.get_mut(&peer.to_string()) else {
            if let Some(seq_max) = buried {
                return Err(tombstoned(seq_max));
            }
            if full {
                return Err(Rejected::TableFull {
                    peers_max: MODEL_PEERS_MAX,
                });
            }
            self.tombs.remove(&tomb_key);
            self.peers.insert(peer.to_string(), (fresh(h), Vec::new()));
            return Ok(Applied::Joined);
        };
        let old = rec.heartbeat.clone();
        if h.instance() == old.instance() {
            if h.seq() <= old.seq() {
                let (instance, seq, stored_seq) = (h.instance(), h.seq(), old.seq());
                return Err(Rejected::Stale {
                    instance,
                    seq,
                    stored_seq,
                });
            }
            rec.heartbeat = h;
            rec.deadline_ms = deadline_ms;
            rec.updated_ms = now;
            return Ok(Applied::Updated);
        }
        if retired.contains(&h.instance()) {
            let instance = h.instance();
            return Err(Rejected::RetiredInstance { instance });
        }
        if let Some(seq_max) = buried {
            return Err(tombstoned(seq_max));
        }
        // Runs are ordered by their sender's clock: one stamped no later than
        // the held heartbeat is an earlier run's (buried when strictly earlier).
        if h.sent_ms() <= old.sent_ms() {
            let refused = Rejected::EarlierRun {
                instance: h.instance(),
                sent_ms: h.sent_ms(),
                held_instance: old.instance(),
                held_sent_ms: old.sent_ms(),
            };
            if h.sent_ms() < old.sent_ms() {
                self.bury(tomb_key, h.seq(), now + 2 * WINDOW_MS);
            }
            return Err(refused);
        }
        retired.push(old.instance());
        if retired.len() > 8 {
            retired.remove(0);
        }
        *rec = fresh(h);
        self.bury(
            (peer.to_string(), old.instance()),
            u64::MAX,
            now + 2 * WINDOW_MS,
        );
        self.tombs.remove(&tomb_key);
        Ok(Applied::Replaced {
            old_instance: old.instance(),
        })
    }

    fn expire(&mut self, now: u64) -> Vec<Left> {
        self.tombs.retain(|_, (_, until, _)| *until > now);
        let due: Vec<String> = (self.peers.iter())
            .filter(|(_, (r, _))| r.deadline_ms <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let mut left = Vec::new();
        for key in due {
            if let Some((r, _)) = self.peers.remove(&key) {
                let (peer, instance) = (r.peer, r.heartbeat.instance());
                let seq = r.heartbeat.seq();
                self.bury((key.clone(), instance), seq, now + 2 * WINDOW_MS);
                let reason = LeaveReason::Expired;
                left.push(Left {
                    peer,
                    instance,
                    reason,
                });
            }
        }
        left
    }

    fn records(&self) -> Vec<Record> {
        self.peers.values().map(|(r, _)| r.clone()).collect()
    }
}

/// Replays events onto a view, checking each one makes sense for the view so far.
fn replay(view: &mut BTreeMap<String, Record>, events: Vec<ViewEvent>) {
    for event in events {
        match event {
            ViewEvent::Joined(r) => {
                let old = view.insert(r.peer.to_string(), r);
                assert!(old.is_none(), "joined a peer already in view");
            }
            ViewEvent::Updated(r) => {
                let old = view.insert(r.peer.to_string(), r.clone());
                let old = old.expect("updated a peer not in view");
                assert_eq!(old.heartbeat.instance(), r.heartbeat.instance());
            }
            ViewEvent::Left { peer, instance, .. } => {
                let old = view
                    .remove(&peer.to_string())
                    .expect("left but not in view");
                assert_eq!(old.heartbeat.instance(), instance);
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Peer, instance, seq, ttl and sender skew (indexes into the constants).
    Apply(u8, usize, u64, usize, usize),
    Expire,
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    let skew = prop_oneof![4 => Just(0usize), 1 => 1..SKEWS.len()];
    prop_oneof![
        6 => (0..PEERS, 0..3usize, 0..6u64, 0..3usize, skew)
            .prop_map(|(p, i, s, t, k)| Op::Apply(p, i, s, t, k)),
        2 => Just(Op::Expire),
        3 => (0..5000u64).prop_map(Op::Advance),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn table_matches_model(ops in prop::collection::vec(op(), 1..60)) {
        let config = TableConfig {
            peers_max: MODEL_PEERS_MAX,
            tombstones_max: MODEL_TOMBSTONES_MAX,
            freshness_window_ms: WINDOW_MS,
            ..TableConfig::default()
        };
        let mut table = RoutingTable::new(config);
        let mut model = Model::default();
        let mut view = BTreeMap::new();
        let mut now = START_MS;
        for op in ops {
            match op {
                Op::Apply(p, i, seq, t, k) => {
                    let sent_ms = now.saturating_add_signed(SKEWS[k]);
                    let h = hb_at(sent_ms, TTLS[t], INSTANCES[i], seq);
                    let got = table.apply(now, peer(p), h.clone());
                    prop_assert_eq!(got, model.apply(now, peer(p), h));
                }
                Op::Expire => {
                    prop_assert_eq!(table.expire(now), model.expire(now));
                    prop_assert!(table.iter().all(|r| r.deadline_ms > now));
                }
                Op::Advance(ms) => now += ms,
            }
            prop_assert_eq!(table.query(&Query::all()), model.records());
            prop_assert_eq!(table.len(), model.peers.len());
            prop_assert_eq!(table.tombstones(), model.tombs.len());
            for p in 0..PEERS {
                let want = model.peers.get(&peer(p).to_string()).map(|(r, _)| r);
                prop_assert_eq!(table.get(&peer(p)), want);
                prop_assert_eq!(table.contains(&peer(p)), want.is_some());
            }
            let next = model.peers.values().map(|(r, _)| r.deadline_ms).min();
            prop_assert_eq!(table.next_deadline_ms(), next);
            replay(&mut view, table.drain_events());
            prop_assert_eq!(view.values().cloned().collect::<Vec<_>>(), model.records());
        }
        prop_assert_eq!(table.events_dropped(), 0);
    }

    #[test]
    fn live_peer_never_leaves(steps in prop::collection::vec((1..1000u64, prop::collection::vec(0..1000u64, 0..3)), 1..40)) {
        let (live, silent) = (peer(1), peer(2));
        let mut table = RoutingTable::default();
        table.apply(0, live, hb(1000, 9, 0)).expect("join");
        table.apply(0, silent, hb(1000, 9, 0)).expect("join");
        // The live peer's clock is its own: a little ahead, within the window.
        let skew = 2_000;
        let (mut last, mut seq) = (0u64, 0u64);
        for (interval, expiries) in steps {
            for at in expiries {
                // Expire anywhere in [last, last + interval], i.e. before the next beat.
                let left = table.expire(last + at % (interval + 1));
                prop_assert!(left.iter().all(|l| l.peer != live));
            }
            last += interval;
            seq += 1;
            let beat = hb_at(last + skew, 1000, 9, seq);
            prop_assert_eq!(table.apply(last, live, beat), Ok(Applied::Updated));
        }
        table.expire(last.max(1000));
        prop_assert!(table.contains(&live));
        prop_assert!(!table.contains(&silent), "a silent peer must leave after its ttl");
        let lefts = table.drain_events().into_iter().filter(|e| matches!(e, ViewEvent::Left { .. }));
        prop_assert_eq!(lefts.count(), 1);
    }

    #[test]
    fn codec_round_trips(
        ttl_ms in 100..=3_600_000u32, instance: u64, seq: u64, host in "\\PC{0,40}",
        pairs in prop::collection::vec(("[a-z0-9._-]{1,64}", "\\PC{0,20}"), 0..=20),
    ) {
        let h = Heartbeat::new(ttl_ms, instance, seq, host, pairs).expect("valid").with_sent_ms(seq ^ instance);
        let bytes = h.encode();
        prop_assert_eq!(bytes.len(), h.encoded_len());
        prop_assert_eq!(Heartbeat::decode(&bytes), Ok(h));
    }

    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(h) = Heartbeat::decode(&bytes) {
            prop_assert_eq!(Heartbeat::decode(&h.encode()), Ok(h));
        }
    }
}

// ---------- table ----------

#[test]
fn restarted_node_replaces_its_old_instance_whatever_the_seq() {
    let mut table = RoutingTable::default();
    let p = peer(1);
    assert_eq!(table.apply(0, p, hb(1000, 1, 50)), Ok(Applied::Joined));
    // The Go original refused a new instance unless its seq was lower. A new
    // run is stamped later than the old one's heartbeats (its host's clock).
    let replaced = table.apply(10, p, hb_at(10, 3000, 2, 60));
    assert_eq!(replaced, Ok(Applied::Replaced { old_instance: 1 }));
    let record = table.get(&p).unwrap();
    assert_eq!((record.heartbeat.instance(), record.joined_ms), (2, 10));
    assert_eq!(record.deadline_ms, 3010);
    assert_eq!(
        table.apply(20, p, hb_at(20, 1000, 3, 0)),
        Ok(Applied::Replaced { old_instance: 2 })
    );
    // A delayed heartbeat from a retired instance never flips the entry back.
    for old in [1, 2] {
        let got = table.apply(30, p, hb(1000, old, 999));
        assert_eq!(got, Err(Rejected::RetiredInstance { instance: old }));
    }
    assert_eq!(table.get(&p).unwrap().heartbeat.instance(), 3);
    let events = table.drain_events();
    let left = ViewEvent::Left {
        peer: p,
        instance: 1,
        reason: LeaveReason::Replaced,
    };
    assert_eq!(events[1], left);
    assert!(matches!(&events[2], ViewEvent::Joined(r) if r.heartbeat.instance() == 2));
    assert_eq!(
        events.len(),
        5,
        "join, left+join, left+join; rejections add none"
    );
}

#[test]
fn an_earlier_run_is_refused_and_buried_a_tie_only_refused() {
    let mut table = RoutingTable::default();
    let p = peer(1);
    // This node never saw run 1: the first heartbeat it hears is run 2's.
    assert_eq!(
        table.apply(105, p, hb_at(100, 1000, 2, 1)),
        Ok(Applied::Joined)
    );
    let late = table.apply(110, p, hb_at(90, 1000, 1, 17));
    let earlier = Rejected::EarlierRun {
        instance: 1,
        sent_ms: 90,
        held_instance: 2,
        held_sent_ms: 100,
    };
    assert_eq!(late, Err(earlier));
    assert!(earlier.to_string().contains("unchanged"), "{earlier}");
    assert_eq!(table.tombstones(), 1, "run 1 is buried up to seq 17");
    // Stamped in the same millisecond, two runs cannot be ordered: refused,
    // remembered nowhere.
    let tie = table.apply(110, p, hb_at(100, 1000, 3, 1));
    assert!(matches!(tie, Err(Rejected::EarlierRun { instance: 3, .. })));
    assert_eq!(table.tombstones(), 1);
    assert_eq!(
        table.apply(200, p, hb_at(200, 1000, 2, 2)),
        Ok(Applied::Updated)
    );
    // Run 3 stamped later is a restart after all.
    assert_eq!(
        table.apply(300, p, hb_at(300, 1000, 3, 2)),
        Ok(Applied::Replaced { old_instance: 2 })
    );
    let events = table.drain_events();
    assert_eq!(events.len(), 4, "join, update, left+join: {events:?}");
    // Once run 3 has left, run 1's refused heartbeat is refused again.
    table.expire(1300);
    assert_eq!(
        table.apply(1300, p, hb_at(90, 1000, 1, 17)),
        Err(Rejected::Tombstoned {
            instance: 1,
            seq: 17,
            seq_max: 17
        })
    );
    assert!(table.is_empty());
}

#[test]
fn only_the_last_eight_retired_instances_are_remembered() {
    let mut table = RoutingTable::default();
    let p = peer(1);
    for instance in 0..10u64 {
        table
            .apply(instance, p, hb_at(instance, 1000, instance, 0))
            .unwrap();
    }
    // Retired now: 1..=8 (0 was pushed out); the current instance is 9.
    let got = table.apply(20, p, hb(1000, 1, 0));
    assert_eq!(got, Err(Rejected::RetiredInstance { instance: 1 }));
    // 0 left the retired list, but its tombstone still refuses it...
    assert_eq!(
        table.apply(20, p, hb(1000, 0, 0)),
        Err(Rejected::Tombstoned {
            instance: 0,
            seq: 0,
            seq_max: u64::MAX
        })
    );
    // ...until the tombstone's time (buried at 1, kept 2 × 30 s) has passed.
    let later = 60_010;
    table.apply(later, p, hb_at(later, 1000, 9, 1)).unwrap();
    table.expire(later);
    assert_eq!(table.tombstones(), 0);
    let got = table.apply(later, p, hb_at(later, 1000, 1, 0));
    assert_eq!(got, Err(Rejected::RetiredInstance { instance: 1 }));
    assert_eq!(
        table.apply(later, p, hb_at(later + 1, 1000, 0, 0)),
        Ok(Applied::Replaced { old_instance: 9 })
    );
}

#[test]
fn a_replayed_heartbeat_cannot_revive_an_expired_instance() {
    let mut table = RoutingTable::default();
    let p = peer(1);
    let captured = hb_at(0, 1000, 7, 3);
    for seq in 1..=3 {
        table.apply(0, p, hb_at(0, 1000, 7, seq)).unwrap();
    }
    assert_eq!(table.expire(1000).len(), 1);
    assert_eq!(table.tombstones(), 1);
    // Replayed after expiry, still inside the freshness window: refused.
    let replay = table.apply(1500, p, captured.clone());
    let buried = Rejected::Tombstoned {
        instance: 7,
        seq: 3,
        seq_max: 3,
    };
    assert_eq!(replay, Err(buried));
    assert!(replay.unwrap_err().to_string().contains("unchanged"));
    assert!(table.is_empty());
    // The same instance's newer heartbeat (a partition healed) is welcome, and
    // lifts the tombstone.
    assert_eq!(
        table.apply(2000, p, hb_at(2000, 1000, 7, 4)),
        Ok(Applied::Joined)
    );
    assert_eq!(table.tombstones(), 0);
    // Once the tombstone is gone, freshness refuses the old heartbeat instead.
    table.expire(3000);
    table.expire(3000 + 60_000);
    assert_eq!(table.tombstones(), 0);
    assert_eq!(
        table.apply(63_001, p, captured),
        Err(Rejected::NotFresh {
            sent_ms: 0,
            now_ms: 63_001
        })
    );
}

#[test]
fn heartbeats_outside_the_freshness_window_are_refused_either_way() {
    let mut table = RoutingTable::default();
    let now = 1_000_000;
    for sent_ms in [now - 30_001, now + 30_001, 0, u64::MAX] {
        let got = table.apply(now, peer(1), hb_at(sent_ms, 1000, 1, 1));
        assert_eq!(
            got,
            Err(Rejected::NotFresh {
                sent_ms,
                now_ms: now
            })
        );
    }
    assert!(table.is_empty() && table.drain_events().is_empty());
    for (seq, sent_ms) in [(1, now - 30_000), (2, now + 30_000)] {
        assert!(table
            .apply(now, peer(1), hb_at(sent_ms, 1000, 1, seq))
            .is_ok());
    }
}

#[test]
fn tombstones_are_bounded_oldest_first() {
    let mut table = RoutingTable::new(TableConfig {
        tombstones_max: 2,
        ..TableConfig::default()
    });
    for n in 1..=3 {
        table.apply(u64::from(n), peer(n), hb(1000, 1, 5)).unwrap();
    }
    table.expire(1001);
    table.expire(1002);
    table.expire(1003);
    assert_eq!((table.tombstones(), table.tombstones_evicted()), (2, 1));
    // Peer 1's tombstone was evicted first: its replay gets in, the others' do not.
    assert_eq!(
        table.apply(1003, peer(1), hb(1000, 1, 5)),
        Ok(Applied::Joined)
    );
    assert!(matches!(
        table.apply(1003, peer(2), hb(1000, 1, 5)),
        Err(Rejected::Tombstoned { .. })
    ));
}

#[test]
fn stale_and_duplicate_heartbeats_change_nothing() {
    let mut table = RoutingTable::default();
    let p = peer(1);
    table.apply(0, p, hb(1000, 1, 5)).unwrap();
    table.drain_events();
    for seq in [5, 4, 0] {
        let err = table.apply(100, p, hb(10000, 1, seq)).unwrap_err();
        assert_eq!(
            err,
            Rejected::Stale {
                instance: 1,
                seq,
                stored_seq: 5
            }
        );
        assert!(err.to_string().contains("unchanged"), "{err}");
    }
    assert_eq!(table.get(&p).unwrap().deadline_ms, 1000);
    assert!(table.drain_events().is_empty());
}

#[test]
fn full_table_refuses_new_peers_but_serves_known_ones() {
    let mut table = RoutingTable::new(TableConfig {
        peers_max: 2,
        ..TableConfig::default()
    });
    table.apply(0, peer(1), hb(1000, 1, 0)).unwrap();
    table.apply(0, peer(2), hb(1000, 1, 0)).unwrap();
    assert_eq!(
        table.apply(0, peer(3), hb(1000, 1, 0)),
        Err(Rejected::TableFull { peers_max: 2 })
    );
    assert_eq!(
        table.apply(1, peer(1), hb(1000, 1, 1)),
        Ok(Applied::Updated)
    );
    assert_eq!(
        table.apply(1, peer(2), hb_at(1, 1000, 2, 0)),
        Ok(Applied::Replaced { old_instance: 1 })
    );
    assert_eq!(table.len(), 2);
    table.expire(1001);
    assert_eq!(
        table.apply(1001, peer(3), hb(1000, 1, 0)),
        Ok(Applied::Joined)
    );
}

#[test]
fn event_overflow_drops_the_oldest_and_counts_them() {
    let mut table = RoutingTable::new(TableConfig {
        events_max: 3,
        ..TableConfig::default()
    });
    for n in 1..=5 {
        table.apply(0, peer(n), hb(1000, 1, 0)).unwrap();
    }
    assert_eq!(table.events_dropped(), 2);
    let events = table.drain_events();
    let peers: Vec<PeerId> = (events.iter())
        .map(|e| match e {
            ViewEvent::Joined(r) => r.peer,
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(peers, vec![peer(3), peer(4), peer(5)]);
    assert!(table.drain_events().is_empty());
}

#[test]
fn expiry_is_inclusive_ordered_and_tracks_the_next_deadline() {
    let mut table = RoutingTable::default();
    assert_eq!(table.next_deadline_ms(), None);
    for n in 1..=4 {
        table.apply(0, peer(n), hb(1000, 1, 0)).unwrap();
    }
    table.apply(0, peer(5), hb(3000, 1, 0)).unwrap();
    assert_eq!(table.next_deadline_ms(), Some(1000));
    assert!(table.expire(999).is_empty());
    let left = table.expire(1000);
    let mut want: Vec<PeerId> = (1..=4).map(peer).collect();
    want.sort_by_key(|p| p.to_string());
    assert_eq!(left.iter().map(|l| l.peer).collect::<Vec<_>>(), want);
    assert!(left
        .iter()
        .all(|l| l.reason == LeaveReason::Expired && l.instance == 1));
    assert_eq!(table.next_deadline_ms(), Some(3000));
}

// ---------- queries ----------

/// Five peers: hosts `web-1`, `web-10`, `web-2`, `db`, `web`; meta `role`, `zone`.
fn query_table() -> (RoutingTable, Vec<PeerId>) {
    let mut table = RoutingTable::default();
    let hosts = ["web-1", "web-10", "web-2", "db", "web"];
    for (n, host) in (1..=5).zip(hosts) {
        let role = if host.starts_with("web") {
            "frontend"
        } else {
            "store"
        };
        let m = meta(&[
            ("role", role),
            ("zone", if n % 2 == 0 { "eu-west" } else { "us" }),
        ]);
        let h = Heartbeat::new(1000, 0xabc0 + u64::from(n), 0, host, m).unwrap();
        table.apply(0, peer(n), h).unwrap();
    }
    let mut ids: Vec<PeerId> = (1..=5).map(peer).collect();
    ids.sort_by_key(|p| p.to_string());
    (table, ids)
}

fn hosts(table: &RoutingTable, selector: Selector, limit: Option<usize>) -> Vec<String> {
    let records = table.query(&Query { selector, limit });
    records
        .iter()
        .map(|r| r.heartbeat.host().to_string())
        .collect()
}

#[test]
fn host_exact_and_prefix_are_not_swapped() {
    let (table, _) = query_table();
    assert_eq!(
        hosts(&table, Selector::Host(Match::exact("web")), None),
        vec!["web"]
    );
    let mut all_web = hosts(&table, Selector::Host(Match::prefix("web")), None);
    all_web.sort();
    assert_eq!(all_web, vec!["web", "web-1", "web-10", "web-2"]);
    assert!(hosts(&table, Selector::Host(Match::exact("we")), None).is_empty());
}

#[test]
fn every_selector_honours_order_and_limit() {
    let (table, ids) = query_table();
    let peers = |q: Query| table.query(&q).iter().map(|r| r.peer).collect::<Vec<_>>();
    assert_eq!(peers(Query::all()), ids);
    assert_eq!(peers(Query::all().with_limit(2)), ids[..2].to_vec());
    assert!(peers(Query::all().with_limit(0)).is_empty());
    let first = ids[0];
    assert_eq!(
        peers(Query::new(Selector::Peer(Match::exact(first.to_string())))),
        vec![first]
    );
    // Every id shares the multihash prefix "12D3KooW"; a longer one picks out a single id.
    let common = Query::new(Selector::Peer(Match::prefix("12D3KooW")));
    assert_eq!(peers(common.clone()), ids);
    assert_eq!(peers(common.with_limit(3)), ids[..3].to_vec());
    let text = ids[2].to_string();
    let unique = Query::new(Selector::Peer(Match::prefix(&text[..text.len() - 1])));
    assert_eq!(peers(unique), vec![ids[2]]);
    assert!(peers(Query::new(Selector::Peer(Match::prefix("zzz")))).is_empty());
    let instance = format!("{:016x}", 0xabc3u64);
    let by_instance = Query::new(Selector::Instance(Match::exact(instance)));
    assert_eq!(peers(by_instance), vec![peer(3)]);
    let by_prefix = Query::new(Selector::Instance(Match::prefix("000000000000abc")));
    assert_eq!(peers(by_prefix.clone()), ids);
    assert_eq!(peers(by_prefix.with_limit(1)), vec![ids[0]]);
    let store = Query::new(Selector::Meta(Match::exact("role=store")));
    assert_eq!(peers(store), vec![peer(4)]);
    let eu = Query::new(Selector::Meta(Match::prefix("zone=eu")));
    let mut want: Vec<PeerId> = vec![peer(2), peer(4)];
    want.sort_by_key(|p| p.to_string());
    assert_eq!(peers(eu.clone()), want);
    assert_eq!(peers(eu.with_limit(1)), want[..1].to_vec());
    assert!(peers(Query::new(Selector::Meta(Match::exact("zone=eu")))).is_empty());
    assert!(peers(Query::new(Selector::Meta(Match::prefix("role=x")))).is_empty());
    assert_eq!(
        hosts(&table, Selector::Host(Match::prefix("web-1")), Some(5)).len(),
        2
    );
}

#[test]
fn selector_text_parses_every_kind() {
    let id = peer(1).to_string();
    let ok = |text: &str| parse_selector(text).expect(text);
    assert_eq!(ok("all"), Selector::All);
    assert_eq!(
        ok(&format!("peer={id}")),
        Selector::Peer(Match::exact(id.clone()))
    );
    assert_eq!(ok("peer^=12D3"), Selector::Peer(Match::prefix("12D3")));
    let hex = "00000000ABCDEF01";
    assert_eq!(
        ok(&format!("instance={hex}")),
        Selector::Instance(Match::exact(hex.to_lowercase()))
    );
    assert_eq!(
        ok("instance^=00ab"),
        Selector::Instance(Match::prefix("00ab"))
    );
    assert_eq!(ok("host=web"), Selector::Host(Match::exact("web")));
    assert_eq!(ok("host^=we"), Selector::Host(Match::prefix("we")));
    assert_eq!(
        ok("meta=zone=eu=1"),
        Selector::Meta(Match::exact("zone=eu=1"))
    );
    assert_eq!(ok("meta^=zone=e"), Selector::Meta(Match::prefix("zone=e")));
}

#[test]
fn selector_text_errors_say_what_is_wrong() {
    let err = |text: &str| parse_selector(text).expect_err(text);
    assert_eq!(err(""), SelectorError::Empty);
    assert!(matches!(err("everything"), SelectorError::Unknown { .. }));
    assert!(matches!(err("port=1"), SelectorError::Unknown { .. }));
    assert_eq!(err("host="), SelectorError::MissingValue { kind: "host" });
    assert!(matches!(
        err("peer=notapeer"),
        SelectorError::InvalidPeer { .. }
    ));
    assert!(matches!(
        err("instance=abc"),
        SelectorError::InvalidInstance { .. }
    ));
    assert!(matches!(
        err("instance^=xyz"),
        SelectorError::InvalidInstance { .. }
    ));
    assert!(matches!(
        err("meta=zone"),
        SelectorError::InvalidMeta { .. }
    ));
    assert!(matches!(
        err("meta^==eu"),
        SelectorError::InvalidMeta { .. }
    ));
    let long = format!("host={}", "a".repeat(600));
    assert!(matches!(err(&long), SelectorError::TooLong { .. }));
}
