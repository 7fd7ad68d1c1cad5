//! The records workload: host `dht-client` puts seeded content records into the
//! DHT the membership nodes run, and reads every acknowledged one back at each
//! checkpoint; `records_intact` and `records_survive` judge what it saw.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ww::records::{self, Record, RecordKey, REPLICAS};
use ww::transport::{PeerId, SimTransport, Transport};

use crate::cluster::{node_address, now, peer_of, sim_wall_clock};
use crate::scenario::format::{node_names, secs, RecordsSpec, DHT_CLIENT_HOST};
use crate::scenario::verdict::{Check, Class};
use crate::{derive_seed, host_config};

type HostResult = Result<(), Box<dyn std::error::Error>>;

/// Attempts of one read before a miss is recorded.
const READ_ATTEMPTS: usize = 3;
/// Pause between attempts.
const READ_RETRY: Duration = Duration::from_secs(1);

/// One planned record: its payload and when it is put.
#[derive(Clone, Debug)]
pub struct Planned {
    /// Seeded bytes (led by the record's index, so no two are equal).
    pub payload: Vec<u8>,
    /// When the client puts it.
    pub put_at: Duration,
}

/// An acknowledged put: the record is on at least one host.
#[derive(Clone, Debug)]
pub struct Acked {
    /// The planned record's index.
    pub index: usize,
    /// Its key.
    pub key: RecordKey,
    /// The bytes put.
    pub payload: Vec<u8>,
    /// When the put was acknowledged.
    pub at: Duration,
    /// The hosts that took it (peer ids).
    pub holders: Vec<PeerId>,
}

/// What one read of an acknowledged record answered.
#[derive(Clone, Debug)]
pub enum ReadOutcome {
    /// A record that checked out under the key, with its payload and publisher.
    Found {
        /// The payload read.
        payload: Vec<u8>,
        /// Who signed it.
        publisher: PeerId,
    },
    /// No host held it.
    Missing(String),
}

/// One read of an acknowledged record.
#[derive(Clone, Debug)]
pub struct Read {
    /// The record's index.
    pub index: usize,
    /// Which checkpoint (index into `read_at_s`).
    pub round: usize,
    /// When the read was issued and answered.
    pub started: Duration,
    /// When it answered.
    pub finished: Duration,
    /// What it answered.
    pub outcome: ReadOutcome,
}

/// Everything the client did.
#[derive(Default)]
pub struct RecordsLog {
    /// The plan.
    pub planned: Vec<Planned>,
    /// Acknowledged puts, by index.
    pub acked: BTreeMap<usize, Acked>,
    /// Puts that failed, by index, with the error.
    pub failed: BTreeMap<usize, String>,
    /// Every read, in order.
    pub reads: Vec<Read>,
    /// Rounds the client finished, with when.
    pub rounds_done: Vec<Duration>,
}

/// The shared log.
pub type SharedRecordsLog = Arc<Mutex<RecordsLog>>;

fn lock(log: &SharedRecordsLog) -> std::sync::MutexGuard<'_, RecordsLog> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

/// The seeded plan: `count` payloads put at sorted seeded times.
pub fn plan(seed: u64, spec: &RecordsSpec) -> Vec<Planned> {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, "records/plan"));
    let from = secs(spec.put_from_s).as_millis() as u64;
    let until = secs(spec.put_until_s).as_millis() as u64;
    let mut times: Vec<u64> = (0..spec.count)
        .map(|_| from + rng.next_u64() % (until - from + 1))
        .collect();
    times.sort_unstable();
    times
        .into_iter()
        .enumerate()
        .map(|(index, ms)| {
            let mut payload = format!("r{index}:").into_bytes();
            let mut random = vec![0u8; spec.payload_bytes];
            rng.fill_bytes(&mut random);
            payload.extend(random);
            Planned {
                payload,
                put_at: Duration::from_millis(ms),
            }
        })
        .collect()
}

/// Adds host `dht-client` to `sim`; the membership nodes must run the DHT.
pub fn add_client(
    sim: &mut turmoil::Sim<'_>,
    seed: u64,
    nodes: usize,
    spec: &RecordsSpec,
) -> SharedRecordsLog {
    let log = SharedRecordsLog::default();
    lock(&log).planned = plan(seed, spec);
    let (client_log, spec) = (log.clone(), spec.clone());
    sim.host(DHT_CLIENT_HOST, move || {
        run_client(seed, nodes, spec.clone(), client_log.clone())
    });
    log
}

async fn run_client(
    seed: u64,
    nodes: usize,
    spec: RecordsSpec,
    log: SharedRecordsLog,
) -> HostResult {
    let config = host_config(seed, DHT_CLIENT_HOST, false);
    let identity = config.identity.clone();
    let transport = SimTransport::new(config);
    // The client knows every node's address but follows no membership: it
    // asks all of them, nearest first, and a down one is passed over.
    let mut hosts = BTreeSet::new();
    for name in node_names(nodes) {
        let peer = peer_of(seed, &name);
        transport.add_peer_address(peer, node_address(&name))?;
        hosts.insert(peer);
    }
    let planned = lock(&log).planned.clone();
    let wall = sim_wall_clock();
    for (index, item) in planned.iter().enumerate() {
        tokio::time::sleep(item.put_at.saturating_sub(now())).await;
        let record = Record::content(&identity, wall.now_ms(), item.payload.clone())?;
        let key = record.key();
        match records::put(&transport, &hosts, &record, REPLICAS).await {
            Ok(holders) => {
                tracing::info!(target: "ww_sim::workload", index, copies = holders.len(), "record put");
                lock(&log).acked.insert(
                    index,
                    Acked {
                        index,
                        key,
                        payload: item.payload.clone(),
                        at: now(),
                        holders,
                    },
                );
            }
            Err(e) => {
                tracing::info!(target: "ww_sim::workload", index, error = %e, "record put failed");
                lock(&log).failed.insert(index, e.to_string());
            }
        }
    }
    for (round, at) in spec.read_at_s.iter().enumerate() {
        tokio::time::sleep(secs(*at).saturating_sub(now())).await;
        let acked: Vec<(usize, RecordKey)> = lock(&log)
            .acked
            .values()
            .map(|a| (a.index, a.key))
            .collect();
        // All of a round's reads at once: one that waits out a connection
        // stuck on a restarted host (turmoil's TCP does not retransmit) must
        // not delay the others past the end of the run.
        let reads = acked.into_iter().map(|(index, key)| {
            let (transport, hosts, log) = (&transport, &hosts, &log);
            async move {
                let started = now();
                let mut outcome = ReadOutcome::Missing(String::new());
                // A miss is tried again: a connection lost on the way (one
                // stuck on a restarted host) hides a holder for a moment;
                // a record lost stays lost.
                for attempt in 0..READ_ATTEMPTS {
                    if attempt > 0 {
                        tokio::time::sleep(READ_RETRY).await;
                    }
                    match records::get(transport, hosts, &key).await {
                        Ok(record) => {
                            outcome = ReadOutcome::Found {
                                payload: record.payload,
                                publisher: record.publisher,
                            };
                            break;
                        }
                        Err(e) => outcome = ReadOutcome::Missing(e.to_string()),
                    }
                }
                let found = matches!(outcome, ReadOutcome::Found { .. });
                tracing::info!(target: "ww_sim::workload", index, round, found, "record read");
                lock(log).reads.push(Read {
                    index,
                    round,
                    started,
                    finished: now(),
                    outcome,
                });
            }
        });
        futures::future::join_all(reads).await;
        lock(&log).rounds_done.push(now());
    }
    std::future::pending().await
}

/// Safety `records_intact`: every record read back is the one put, byte for
/// byte and signed by the client (the reader checked the key; a wrong payload
/// would mean a forged or altered record got past that check).
pub fn intact(log: &RecordsLog, client: PeerId) -> Check {
    let mut wrong = Vec::new();
    let mut found = 0usize;
    for read in &log.reads {
        let ReadOutcome::Found { payload, publisher } = &read.outcome else {
            continue;
        };
        found += 1;
        let Some(acked) = log.acked.get(&read.index) else {
            wrong.push(format!(
                "record {} read back but never acknowledged",
                read.index
            ));
            continue;
        };
        if payload != &acked.payload || *publisher != client {
            wrong.push(format!(
                "record {} ({}) read at {:.3}s: {} bytes from {publisher}, not the {} bytes put by \
                 {client}",
                read.index,
                acked.key.to_hex(),
                read.finished.as_secs_f64(),
                payload.len(),
                acked.payload.len()
            ));
        }
    }
    Check::new(
        "records_intact",
        Class::Safety,
        wrong,
        format!("{found} records read back"),
    )
}

/// How long after a loss the records it held are back on `REPLICAS` hosts:
/// the holders' views drop the lost host (TTL plus the expiry tick), then one
/// republish round passes them on (one period, plus the round's own calls).
pub fn republish_window(ttl: Duration, republish_every: Duration) -> Duration {
    ttl + Duration::from_secs(1) + 2 * republish_every + Duration::from_secs(5)
}

/// Liveness (durability) `records_survive`: every acknowledged record is found
/// at every read after its ack. A miss is excused only when the faults
/// removed as many hosts as held it within one republish `window`: as many
/// crashes as it had copies within `window` of its ack, or `REPLICAS` crashes
/// within any `window` after that (a restarted host comes back empty).
pub fn survive(
    log: &RecordsLog,
    crashes: &[(Duration, String)],
    window: Duration,
    rounds_expected: usize,
) -> Check {
    let mut wrong = Vec::new();
    let mut excused = 0usize;
    let lost_within = |from: Duration, until: Duration| -> usize {
        crashes
            .iter()
            .filter(|(at, _)| *at >= from && *at <= until)
            .map(|(_, host)| host.clone())
            .collect::<BTreeSet<_>>()
            .len()
    };
    let mut reads_of: BTreeMap<usize, usize> = BTreeMap::new();
    for read in &log.reads {
        *reads_of.entry(read.index).or_default() += 1;
        let ReadOutcome::Missing(error) = &read.outcome else {
            continue;
        };
        let Some(acked) = log.acked.get(&read.index) else {
            continue;
        };
        let early = lost_within(acked.at, acked.at + window) >= acked.holders.len();
        let later = crashes
            .iter()
            .filter(|(at, _)| *at >= acked.at && *at <= read.started)
            .any(|(at, _)| lost_within(*at, *at + window) >= REPLICAS);
        if early || later {
            excused += 1;
            continue;
        }
        wrong.push(format!(
            "record {} ({}), acknowledged at {:.3}s on {} hosts, missing at read round {} \
             ({:.3}s): {error}; no {} hosts were lost within {window:?} of each other since",
            read.index,
            acked.key.to_hex(),
            acked.at.as_secs_f64(),
            acked.holders.len(),
            read.round,
            read.started.as_secs_f64(),
            REPLICAS
        ));
    }
    // Every acknowledged record must have been read in every round (a read
    // never issued proves nothing).
    let rounds = log.rounds_done.len();
    for (index, acked) in &log.acked {
        let reads = reads_of.get(index).copied().unwrap_or(0);
        if reads < rounds {
            wrong.push(format!(
                "record {index} ({}) read {reads} times in {rounds} rounds",
                acked.key.to_hex()
            ));
        }
    }
    if rounds < rounds_expected {
        wrong.push(format!(
            "the client finished {rounds} of {rounds_expected} read rounds by the end"
        ));
    }
    // How long the slowest round took, from its due time: what the schedule
    // of read_at_s must leave room for.
    let slowest = log
        .reads
        .iter()
        .map(|r| r.finished.saturating_sub(r.started))
        .max()
        .unwrap_or_default();
    Check::new(
        "records_survive",
        Class::Liveness,
        wrong,
        format!(
            "{} of {} puts acknowledged, {} reads in {rounds} rounds (slowest read {:.3}s), \
             {excused} misses excused",
            log.acked.len(),
            log.planned.len(),
            log.reads.len(),
            slowest.as_secs_f64()
        ),
    )
}
