//! The anchors workload: hosts `aclient-i` set and get values at shared paths
//! on seeded membership nodes, one call per connection, and record each call's
//! invocation, completion and answer; the checks judge that history against
//! what anchors promise (PA/EL: each host's anchors are a register per path at
//! that host, applied in arrival order, gone when it stops).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ww::anchor::anchor_protocol;
use ww::rpc::{connect, RpcConfig};
use ww::schema::anchor_capnp::{anchor, entry};
use ww::transport::{SimConfig, SimTransport, Transport};

use crate::cluster::{node_address, now, peer_of};
use crate::derive_seed;
use crate::scenario::faults::Disturbances;
use crate::scenario::format::{anchor_client_name, node_names, AnchorsSpec};
use crate::scenario::verdict::{Check, Class};

type HostResult = Result<(), Box<dyn std::error::Error>>;

/// A connect or a call waits this long at most.
const CALL_TIMEOUT: Duration = Duration::from_secs(1);

/// What a call asked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Set the path to this value.
    Set(String),
    /// Get the path.
    Get,
}

/// One call and its answer.
#[derive(Clone, Debug)]
pub struct Call {
    /// The client host.
    pub client: String,
    /// The node called.
    pub host: String,
    /// The path's key index (`sim/k<j>`).
    pub key: usize,
    /// What it asked.
    pub op: Op,
    /// When it was invoked.
    pub invoked: Duration,
    /// When it answered or failed.
    pub completed: Duration,
    /// `Ok(Some(value))` / `Ok(None)` (nothing there) for a get, `Ok(None)`
    /// for a set; `Err` when there was no answer.
    pub result: Result<Option<String>, String>,
}

/// Every call, in completion order.
pub type SharedAnchorLog = Arc<Mutex<Vec<Call>>>;

fn lock(log: &SharedAnchorLog) -> std::sync::MutexGuard<'_, Vec<Call>> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

/// Adds the anchor clients to `sim`; the membership nodes must serve anchors.
pub fn add_clients(
    sim: &mut turmoil::Sim<'_>,
    seed: u64,
    nodes: usize,
    spec: &AnchorsSpec,
) -> SharedAnchorLog {
    let log = SharedAnchorLog::default();
    for index in 0..spec.clients {
        let (log, spec) = (log.clone(), spec.clone());
        sim.host(anchor_client_name(index), move || {
            run_client(seed, index, nodes, spec.clone(), log.clone())
        });
    }
    log
}

async fn run_client(
    seed: u64,
    index: usize,
    nodes: usize,
    spec: AnchorsSpec,
    log: SharedAnchorLog,
) -> HostResult {
    let name = anchor_client_name(index);
    let transport = SimTransport::new(SimConfig::from_seed(seed, &name));
    let names = node_names(nodes);
    for node in &names {
        transport.add_peer_address(peer_of(seed, node), node_address(node))?;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, &format!("{name}/anchors")));
    let config = RpcConfig {
        connect_timeout: CALL_TIMEOUT,
        call_timeout: CALL_TIMEOUT,
    };
    let mut seq = 0u64;
    loop {
        tokio::time::sleep(Duration::from_millis(spec.interval_ms)).await;
        let host = names[rng.next_u64() as usize % names.len()].clone();
        let key = rng.next_u64() as usize % spec.keys;
        let op = if rng.next_u64() % 100 < u64::from(spec.set_percent) {
            seq += 1;
            Op::Set(format!("{name}/{seq}"))
        } else {
            Op::Get
        };
        let path = ["sim".to_string(), format!("k{key}")];
        let invoked = now();
        let result = async {
            let connection = connect::<_, anchor::Client>(
                &transport,
                peer_of(seed, &host),
                &anchor_protocol(),
                config,
            )
            .await
            .map_err(|e| e.to_string())?;
            match &op {
                Op::Set(value) => {
                    let mut request = connection.client().set_request();
                    let mut list = request.get().init_path(2);
                    list.set(0, path[0].as_str());
                    list.set(1, path[1].as_str());
                    request.get().set_value(value.as_bytes());
                    connection
                        .call("set", async { request.send().promise.await.map(|_| None) })
                        .await
                }
                Op::Get => {
                    let mut request = connection.client().get_request();
                    let mut list = request.get().init_path(2);
                    list.set(0, path[0].as_str());
                    list.set(1, path[1].as_str());
                    connection
                        .call("get", async {
                            let answer = match request.send().promise.await {
                                Ok(answer) => answer,
                                // The host answered: nothing was ever set there.
                                Err(e) if e.to_string().contains("no anchor at") => {
                                    return Ok(None)
                                }
                                Err(e) => return Err(e),
                            };
                            let entry = answer.get()?.get_entry()?;
                            Ok(match entry.which()? {
                                entry::Which::Value(bytes) => {
                                    Some(String::from_utf8_lossy(bytes?).into_owned())
                                }
                                _ => None,
                            })
                        })
                        .await
                }
            }
            .map_err(|e| e.to_string())
        }
        .await;
        tracing::info!(target: "ww_sim::workload", client = %name, %host, key, ?op, ?result, "anchor call");
        lock(&log).push(Call {
            client: name.clone(),
            host,
            key,
            op,
            invoked,
            completed: now(),
            result,
        });
    }
}

/// Safety `anchors_linearizable`: judged per host and path, a register that a
/// restart empties. A get's value must come from a set of that value at that
/// path on that host invoked before the get completed (never invented, never
/// another host's or path's), not lost to a crash of the host between the
/// set's completion and the get's start, and not overwritten by a set invoked
/// after that set was acknowledged and itself acknowledged before the get
/// began (calls apply in arrival order). A get that finds nothing is wrong
/// when an acknowledged set preceded it with no crash of the host between.
/// Unanswered sets may have been applied: they may justify a read but
/// oblige none.
pub fn linearizable(calls: &[Call], crashes: &[(Duration, String)]) -> Check {
    let mut by_register: BTreeMap<(&str, usize), Vec<&Call>> = BTreeMap::new();
    for call in calls {
        by_register
            .entry((call.host.as_str(), call.key))
            .or_default()
            .push(call);
    }
    let crashed_between = |host: &str, from: Duration, until: Duration| {
        crashes
            .iter()
            .any(|(at, h)| h == host && *at > from && *at < until)
    };
    let mut wrong = Vec::new();
    let mut gets = 0usize;
    for ((host, key), calls) in &by_register {
        let sets: Vec<&&Call> = calls
            .iter()
            .filter(|c| matches!(c.op, Op::Set(_)))
            .collect();
        for get in calls.iter().filter(|c| c.op == Op::Get) {
            let Ok(answer) = &get.result else { continue };
            gets += 1;
            // Acknowledged sets that completed before the get began and were
            // not lost to a crash since: the get must see one of them or later.
            let binding: Vec<&&&Call> = sets
                .iter()
                .filter(|s| {
                    // A crash after the set's invocation may have come
                    // before or after it was applied (an answer in flight
                    // arrives after the crash), and one before the get's
                    // answer may have come before the get was served: either
                    // way the set binds no more.
                    s.result.is_ok()
                        && s.completed < get.invoked
                        && !crashed_between(host, s.invoked, get.completed)
                })
                .collect();
            let where_ = format!(
                "{} got {answer:?} from {host} /sim/k{key} ({:.3}s..{:.3}s)",
                get.client,
                get.invoked.as_secs_f64(),
                get.completed.as_secs_f64()
            );
            match answer {
                None => {
                    if let Some(s) = binding.last() {
                        wrong.push(format!(
                            "{where_}, though the set of {:?} was acknowledged at {:.3}s and no \
                             crash of the host followed",
                            s.op,
                            s.completed.as_secs_f64()
                        ));
                    }
                }
                Some(value) => {
                    let source = sets
                        .iter()
                        .find(|s| s.op == Op::Set(value.clone()) && s.invoked < get.completed);
                    let Some(source) = source else {
                        wrong.push(format!("{where_}: no set of that value there preceded it"));
                        continue;
                    };
                    if source.result.is_ok() && crashed_between(host, source.completed, get.invoked)
                    {
                        wrong.push(format!(
                            "{where_}: set at {:.3}s, but the host crashed between",
                            source.completed.as_secs_f64()
                        ));
                        continue;
                    }
                    // A later acknowledged set, wholly after the source's
                    // completion (or the source unanswered: after its
                    // invocation's end is unknown, so it cannot be judged stale).
                    if source.result.is_ok() {
                        if let Some(newer) = binding.iter().find(|s| s.invoked > source.completed) {
                            wrong.push(format!(
                                "{where_}: stale, the set of {:?} ({:.3}s..{:.3}s) came after \
                                 the set of {value:?} and was acknowledged before the get",
                                newer.op,
                                newer.invoked.as_secs_f64(),
                                newer.completed.as_secs_f64()
                            ));
                        }
                    }
                }
            }
        }
    }
    Check::new(
        "anchors_linearizable",
        Class::Safety,
        wrong,
        format!("{gets} answered gets over {} calls", calls.len()),
    )
}

/// Liveness `anchors_available` (PA): every call answers unless, while it
/// ran, its host was down or the link between the client and the host was
/// disturbed (a partition on the other side does not excuse it).
/// `faults` is when the faults were in effect (first to last), to count the
/// calls answered meanwhile: the check says nothing if none were.
pub fn available(
    calls: &[Call],
    disturbances: &Disturbances,
    faults: (Duration, Duration),
) -> Check {
    let mut wrong = Vec::new();
    let mut excused = 0usize;
    for call in calls {
        let Err(error) = &call.result else { continue };
        if disturbances.excused(&call.client, &call.host, call.invoked, call.completed) {
            excused += 1;
            continue;
        }
        wrong.push(format!(
            "{} {:?} on {} /sim/k{} ({:.3}s..{:.3}s) failed: {error}; the host ran and the link \
             was undisturbed",
            call.client,
            call.op,
            call.host,
            call.key,
            call.invoked.as_secs_f64(),
            call.completed.as_secs_f64()
        ));
    }
    let answered = calls.iter().filter(|c| c.result.is_ok()).count();
    let during = calls
        .iter()
        .filter(|c| c.result.is_ok() && c.invoked >= faults.0 && c.completed <= faults.1)
        .count();
    Check::new(
        "anchors_available",
        Class::Liveness,
        wrong,
        format!(
            "{answered} of {} calls answered ({during} between the first and last fault), \
             {excused} failures excused by a fault",
            calls.len()
        ),
    )
}

/// Liveness `anchors_reachable_within_s`: every call invoked from `from` on
/// to a running host answers, and every running host got at least one.
pub fn reachable_after(
    calls: &[Call],
    running: &std::collections::BTreeSet<String>,
    from: Duration,
) -> Check {
    let mut wrong = Vec::new();
    let mut answered: BTreeMap<&str, usize> = running.iter().map(|h| (h.as_str(), 0)).collect();
    let mut judged = 0usize;
    for call in calls.iter().filter(|c| c.invoked >= from) {
        if !running.contains(&call.host) {
            continue;
        }
        judged += 1;
        match &call.result {
            Ok(_) => *answered.entry(call.host.as_str()).or_default() += 1,
            Err(e) => wrong.push(format!(
                "{} {:?} on {} at {:.3}s failed after the bound: {e}",
                call.client,
                call.op,
                call.host,
                call.invoked.as_secs_f64()
            )),
        }
    }
    for (host, count) in &answered {
        if *count == 0 {
            wrong.push(format!(
                "{host} answered no call from {:.3}s on",
                from.as_secs_f64()
            ));
        }
    }
    Check::new(
        "anchors_reachable_within_s",
        Class::Liveness,
        wrong,
        format!("{judged} calls from {:.3}s on", from.as_secs_f64()),
    )
}
