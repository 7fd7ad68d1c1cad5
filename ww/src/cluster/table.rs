//! The routing table: soft membership state built from heartbeats, with TTL leases.
//!
//! Sans-IO: every method takes `now_ms` from the caller's clock, so a driver (or a
//! test) decides what time it is. That clock is a wall clock (Unix ms, as
//! heartbeats' `sent_ms`): a heartbeat sent further than the freshness window from
//! `now_ms` is refused. A record stays until [`RoutingTable::expire`] removes it,
//! even past its deadline; drivers call `expire` before reading.
//!
//! An instance that leaves (expired or replaced) is buried: a tombstone refuses
//! its heartbeats up to the highest seq seen, for twice the freshness window, by
//! when freshness refuses them anyway. So a captured heartbeat replayed after the
//! node died cannot revive it, while the same instance's newer heartbeats (after a
//! partition heals) are accepted.
//!
//! Instances of one peer are runs of one process, one after another on one
//! host's clock, so they are ordered by `sent_ms`: another instance's heartbeat
//! replaces the held one only if stamped later. One stamped earlier is an
//! earlier run's, late or replayed, and is refused (and buried up to its seq).
//! Without that order, a node that had not seen the earlier run (it had just
//! restarted itself, or had expired that run) took a late heartbeat of it for a
//! restart, retired the live instance and refused it for a minute
//! (`scenarios/cluster-256.toml`, swarm seed 7). Burying only up to the refused
//! seq (not the whole instance, as a replaced one is) bounds what a host clock
//! stepped back across a restart costs: its new run is refused only until the
//! earlier run's record expires, within a TTL.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use thiserror::Error;

use super::tombstones::{Tombstones, TOMBSTONES_MAX};
use super::Heartbeat;
use crate::boot::FRESHNESS_WINDOW_MS;
use crate::transport::PeerId;

/// Default bound on how many peers the table holds.
pub const PEERS_MAX_DEFAULT: usize = 4096;
/// Default bound on undrained events.
pub const EVENTS_MAX_DEFAULT: usize = 65_536;
/// How many replaced instance ids are remembered per peer.
pub const RETIRED_PER_PEER_MAX: usize = 8;

/// Bounds of a [`RoutingTable`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableConfig {
    /// Most peers held; a heartbeat from another unknown peer is refused.
    pub peers_max: usize,
    /// Most undrained events; beyond this the oldest are dropped and counted.
    pub events_max: usize,
    /// How far a heartbeat's `sent_ms` may be from `now_ms`, either way.
    pub freshness_window_ms: u64,
    /// Most buried instances; beyond this the oldest tombstone is forgotten.
    pub tombstones_max: usize,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            peers_max: PEERS_MAX_DEFAULT,
            events_max: EVENTS_MAX_DEFAULT,
            freshness_window_ms: FRESHNESS_WINDOW_MS,
            tombstones_max: TOMBSTONES_MAX,
        }
    }
}

impl TableConfig {
    /// How long a tombstone is kept. A heartbeat accepted at `r` has `sent_ms <=
    /// r + window`, so from `sent_ms + window <= r + 2 × window` on, freshness
    /// refuses its replay; every accepted heartbeat was accepted before burial.
    pub fn tombstone_ms(&self) -> u64 {
        self.freshness_window_ms.saturating_mul(2)
    }
}

/// What the table knows about one peer: its latest accepted heartbeat and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The peer that sent the heartbeat.
    pub peer: PeerId,
    /// The latest accepted heartbeat.
    pub heartbeat: Heartbeat,
    /// `now_ms + ttl_ms` at the latest accepted heartbeat; expired at or after it.
    pub deadline_ms: u64,
    /// When this instance was first accepted.
    pub joined_ms: u64,
    /// When the latest heartbeat was accepted.
    pub updated_ms: u64,
}

/// How an accepted heartbeat changed the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The peer was unknown and is now in the table.
    Joined,
    /// A newer heartbeat from the same instance refreshed the record.
    Updated,
    /// The peer restarted: a new instance replaced the old one.
    Replaced {
        /// The instance that was replaced (and is now refused if it reappears).
        old_instance: u64,
    },
}

/// Why a heartbeat was refused. The view is unchanged in every case; only
/// [`Rejected::EarlierRun`] may bury the refused instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Rejected {
    /// Same instance, sequence number not above the stored one (duplicate or reordered).
    #[error("stale heartbeat: instance {instance:016x} seq {seq} is not above stored seq {stored_seq}; table unchanged")]
    Stale {
        /// The instance of both heartbeats.
        instance: u64,
        /// The refused sequence number.
        seq: u64,
        /// The sequence number already stored.
        stored_seq: u64,
    },
    /// The heartbeat comes from an instance this peer has already been replaced by a newer one.
    #[error("heartbeat from retired instance {instance:016x} (the peer restarted since); table unchanged")]
    RetiredInstance {
        /// The retired instance.
        instance: u64,
    },
    /// The heartbeat comes from another instance than the one held, stamped no
    /// later than the held heartbeat: an earlier run's heartbeat arriving late
    /// (or replayed), not a restart. One stamped strictly earlier also buries its
    /// instance up to its seq, as an expiry would; in the same millisecond the
    /// two runs cannot be ordered, and nothing is remembered (the live run's next
    /// heartbeat, stamped later, settles it).
    #[error("heartbeat from instance {instance:016x} sent at {sent_ms} ms, not after the held instance {held_instance:016x}'s at {held_sent_ms} ms: an earlier run's; view unchanged")]
    EarlierRun {
        /// The refused instance.
        instance: u64,
        /// Its heartbeat's send time.
        sent_ms: u64,
        /// The instance held.
        held_instance: u64,
        /// The send time of the held heartbeat.
        held_sent_ms: u64,
    },
    /// `sent_ms` is further than the freshness window from our clock.
    #[error("heartbeat sent at {sent_ms} ms is outside the freshness window of now ({now_ms} ms); table unchanged")]
    NotFresh {
        /// The heartbeat's send time.
        sent_ms: u64,
        /// The receiver's time.
        now_ms: u64,
    },
    /// The instance left the view and this heartbeat is no newer than its last (a replay).
    #[error("heartbeat from buried instance {instance:016x} seq {seq} (at most {seq_max} refused); table unchanged")]
    Tombstoned {
        /// The buried instance.
        instance: u64,
        /// The refused sequence number.
        seq: u64,
        /// The highest refused sequence number.
        seq_max: u64,
    },
    /// The peer is unknown and the table already holds `peers_max` peers.
    #[error("routing table full ({peers_max} peers); new peer refused, table unchanged")]
    TableFull {
        /// The bound that was reached.
        peers_max: usize,
    },
}

/// Why a peer left the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LeaveReason {
    /// No heartbeat arrived before its deadline.
    Expired,
    /// A new instance of the same peer replaced it.
    Replaced,
}

/// A peer instance that left the view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Left {
    /// The peer.
    pub peer: PeerId,
    /// The instance that left.
    pub instance: u64,
    /// Why it left.
    pub reason: LeaveReason,
}

/// One change to the table, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ViewEvent {
    /// A peer instance entered the view.
    Joined(Record),
    /// A peer's record was refreshed by a newer heartbeat.
    Updated(Record),
    /// A peer instance left the view.
    Left {
        /// The peer.
        peer: PeerId,
        /// The instance that left.
        instance: u64,
        /// Why it left.
        reason: LeaveReason,
    },
}

/// A record plus the instances it replaced, newest last.
#[derive(Debug, Clone)]
struct Entry {
    record: Record,
    retired: VecDeque<u64>,
}

/// The local membership view: one record per peer, keyed by peer id text.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    config: TableConfig,
    // Keyed by base58 text so iteration order is the original's `All()` order and a
    // peer-id prefix query is a range scan.
    entries: BTreeMap<String, Entry>,
    // (deadline, key) of every entry, so expiry and the next deadline need no scan.
    deadlines: BTreeSet<(u64, String)>,
    events: VecDeque<ViewEvent>,
    events_dropped: u64,
    tombstones: Tombstones,
}

impl Default for RoutingTable {
    fn default() -> Self {
        Self::new(TableConfig::default())
    }
}

impl RoutingTable {
    /// An empty table with the given bounds.
    pub fn new(config: TableConfig) -> Self {
        RoutingTable {
            config,
            entries: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            events: VecDeque::new(),
            events_dropped: 0,
            tombstones: Tombstones::new(config.tombstones_max),
        }
    }

    /// The table's bounds.
    pub fn config(&self) -> TableConfig {
        self.config
    }

    /// Offers a heartbeat received from `peer` at `now_ms`.
    pub fn apply(
        &mut self,
        now_ms: u64,
        peer: PeerId,
        heartbeat: Heartbeat,
    ) -> Result<Applied, Rejected> {
        if heartbeat.sent_ms().abs_diff(now_ms) > self.config.freshness_window_ms {
            return Err(Rejected::NotFresh {
                sent_ms: heartbeat.sent_ms(),
                now_ms,
            });
        }
        let key = peer.to_string();
        let offer = Offer {
            deadline_ms: now_ms.saturating_add(u64::from(heartbeat.ttl_ms())),
            buried: self
                .tombstones
                .refuses(&key, heartbeat.instance(), heartbeat.seq()),
            peer,
            heartbeat,
            now_ms,
        };
        let deadline_ms = offer.deadline_ms;
        let Some(entry) = self.entries.get_mut(&key) else {
            return self.join(key, offer);
        };
        let stored = &entry.record.heartbeat;
        let old_deadline_ms = entry.record.deadline_ms;
        let applied = if offer.heartbeat.instance() == stored.instance() {
            if offer.heartbeat.seq() <= stored.seq() {
                return Err(Rejected::Stale {
                    instance: offer.heartbeat.instance(),
                    seq: offer.heartbeat.seq(),
                    stored_seq: stored.seq(),
                });
            }
            entry.record.heartbeat = offer.heartbeat;
            entry.record.deadline_ms = deadline_ms;
            entry.record.updated_ms = now_ms;
            Applied::Updated
        } else {
            let tombstone_ms = self.config.tombstone_ms();
            restart(entry, &mut self.tombstones, tombstone_ms, &key, offer)?
        };
        let record = entry.record.clone();
        self.deadlines.remove(&(old_deadline_ms, key.clone()));
        self.deadlines.insert((deadline_ms, key));
        match applied {
            Applied::Replaced { old_instance } => {
                self.push_event(ViewEvent::Left {
                    peer,
                    instance: old_instance,
                    reason: LeaveReason::Replaced,
                });
                self.push_event(ViewEvent::Joined(record));
            }
            _ => self.push_event(ViewEvent::Updated(record)),
        }
        Ok(applied)
    }

    /// A heartbeat from a peer the table does not hold: it joins, unless its
    /// instance is buried or the table is full.
    fn join(&mut self, key: String, offer: Offer) -> Result<Applied, Rejected> {
        let (instance, seq) = (offer.heartbeat.instance(), offer.heartbeat.seq());
        if let Some(seq_max) = offer.buried {
            return Err(Rejected::Tombstoned {
                instance,
                seq,
                seq_max,
            });
        }
        if self.entries.len() >= self.config.peers_max {
            return Err(Rejected::TableFull {
                peers_max: self.config.peers_max,
            });
        }
        let deadline_ms = offer.deadline_ms;
        let record = offer.record();
        self.tombstones.lift(&key, instance);
        self.deadlines.insert((deadline_ms, key.clone()));
        self.entries.insert(
            key,
            Entry {
                record: record.clone(),
                retired: VecDeque::new(),
            },
        );
        self.push_event(ViewEvent::Joined(record));
        Ok(Applied::Joined)
    }

    /// Removes every record whose deadline is at or before `now_ms`, in peer
    /// order, burying each instance; forgets tombstones whose time has come.
    pub fn expire(&mut self, now_ms: u64) -> Vec<Left> {
        let mut due = Vec::new();
        while let Some(first) = self.deadlines.first() {
            if first.0 > now_ms {
                break;
            }
            if let Some((_, key)) = self.deadlines.pop_first() {
                due.push(key);
            }
        }
        due.sort();
        let mut left = Vec::with_capacity(due.len());
        let until_ms = now_ms.saturating_add(self.config.tombstone_ms());
        self.tombstones.expire(now_ms);
        for key in due {
            if let Some(entry) = self.entries.remove(&key) {
                let heartbeat = &entry.record.heartbeat;
                self.tombstones
                    .bury(&key, heartbeat.instance(), heartbeat.seq(), until_ms);
                let gone = Left {
                    peer: entry.record.peer,
                    instance: entry.record.heartbeat.instance(),
                    reason: LeaveReason::Expired,
                };
                self.push_event(ViewEvent::Left {
                    peer: gone.peer,
                    instance: gone.instance,
                    reason: gone.reason,
                });
                left.push(gone);
            }
        }
        left
    }

    /// Takes every pending event, oldest first.
    pub fn drain_events(&mut self) -> Vec<ViewEvent> {
        self.events.drain(..).collect()
    }

    /// Events discarded because the queue was full (the view must then be re-read).
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped
    }

    /// How many left instances are buried (their replays refused).
    pub fn tombstones(&self) -> usize {
        self.tombstones.len()
    }

    /// Tombstones forgotten early to stay within `tombstones_max`.
    pub fn tombstones_evicted(&self) -> u64 {
        self.tombstones.evicted()
    }

    /// How many peers the table holds.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table holds no peers.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The record of `peer`, if held.
    pub fn get(&self, peer: &PeerId) -> Option<&Record> {
        self.entries
            .get(&peer.to_string())
            .map(|entry| &entry.record)
    }

    /// Whether `peer` is held.
    pub fn contains(&self, peer: &PeerId) -> bool {
        self.entries.contains_key(&peer.to_string())
    }

    /// The earliest deadline of any record, so a driver can sleep until then.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.deadlines.first().map(|(deadline_ms, _)| *deadline_ms)
    }

    /// Every record, in lexicographic order of peer id text.
    pub fn iter(&self) -> impl Iterator<Item = &Record> {
        self.entries.values().map(|entry| &entry.record)
    }

    /// Records whose peer id text starts with `prefix`, in order, by range scan.
    pub(super) fn with_peer_prefix<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = &'a Record> + 'a {
        self.entries
            .range::<str, _>((
                std::ops::Bound::Included(prefix),
                std::ops::Bound::Unbounded,
            ))
            .take_while(move |(key, _)| key.starts_with(prefix))
            .map(|(_, entry)| &entry.record)
    }

    /// The record whose peer id text is exactly `text`.
    pub(super) fn by_peer_text(&self, text: &str) -> Option<&Record> {
        self.entries.get(text).map(|entry| &entry.record)
    }

    fn push_event(&mut self, event: ViewEvent) {
        if self.config.events_max == 0 {
            self.events_dropped += 1;
            return;
        }
        if self.events.len() >= self.config.events_max {
            self.events.pop_front();
            self.events_dropped += 1;
        }
        self.events.push_back(event);
    }
}

/// A heartbeat offered to the table, with what `apply` derived from it.
struct Offer {
    peer: PeerId,
    heartbeat: Heartbeat,
    now_ms: u64,
    /// When the peer expires unless heard from again.
    deadline_ms: u64,
    /// The highest seq its instance is buried up to, if it is.
    buried: Option<u64>,
}

impl Offer {
    /// The record of a peer (re)joining with this heartbeat.
    fn record(self) -> Record {
        Record {
            peer: self.peer,
            heartbeat: self.heartbeat,
            deadline_ms: self.deadline_ms,
            joined_ms: self.now_ms,
            updated_ms: self.now_ms,
        }
    }
}

/// A heartbeat of another instance than the held one: the peer restarted and
/// replaces the held run, unless the heartbeat comes from a retired, buried or
/// earlier run.
fn restart(
    entry: &mut Entry,
    tombstones: &mut Tombstones,
    tombstone_ms: u64,
    key: &str,
    offer: Offer,
) -> Result<Applied, Rejected> {
    let stored = &entry.record.heartbeat;
    let (instance, seq) = (offer.heartbeat.instance(), offer.heartbeat.seq());
    if entry.retired.contains(&instance) {
        return Err(Rejected::RetiredInstance { instance });
    }
    if let Some(seq_max) = offer.buried {
        return Err(Rejected::Tombstoned {
            instance,
            seq,
            seq_max,
        });
    }
    // Runs of one peer follow each other on its clock, so only a heartbeat
    // stamped after the held one can come from a restart; seq counters of
    // different runs are unrelated, so (unlike the Go original) the seq
    // is not compared. A node that never saw the earlier run (it had just
    // restarted, or had expired that run) would otherwise take that run's
    // late heartbeat for a restart and retire the live instance.
    let sent_ms = offer.heartbeat.sent_ms();
    if sent_ms <= stored.sent_ms() {
        let rejected = Rejected::EarlierRun {
            instance,
            sent_ms,
            held_instance: stored.instance(),
            held_sent_ms: stored.sent_ms(),
        };
        if sent_ms < stored.sent_ms() {
            // That run is over: its replays must not revive it once the
            // live instance has left, as for an expired instance.
            let until_ms = offer.now_ms.saturating_add(tombstone_ms);
            tombstones.bury(key, instance, seq, until_ms);
        }
        return Err(rejected);
    }
    let old_instance = stored.instance();
    if entry.retired.len() >= RETIRED_PER_PEER_MAX {
        entry.retired.pop_front();
    }
    entry.retired.push_back(old_instance);
    // The old run is over: none of its heartbeats may bring it back,
    // even after this entry (and its retired list) expires.
    let until_ms = offer.now_ms.saturating_add(tombstone_ms);
    tombstones.bury(key, old_instance, u64::MAX, until_ms);
    tombstones.lift(key, instance);
    entry.record = offer.record();
    Ok(Applied::Replaced { old_instance })
}

#[cfg(test)]
#[path = "table_tests.rs"]
mod tests;
