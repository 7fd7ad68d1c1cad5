//! The channel (`ChannelServer` behind `rpc::serve`) under a seeded turmoil
//! simulation: several senders and receivers on their own hosts, senders cut off
//! by partitions, receiver links held (delayed) for a while. Checked afterwards:
//! - every value whose send was acknowledged is received exactly once, no value
//!   is received twice, every received value was sent;
//! - each sender's values arrive in the order sent, within each receiver's log and
//!   across receivers;
//! - a sender cut off by a partition gets a `Timeout` within its call deadline, not
//!   a hang, and carries on (with a new connection) after the repair;
//! - the same seed gives the same trace and the same logs; another seed does not.
//!
//! Run at capacity 0 (rendezvous) and capacity 8 (buffered).
//!
//! What the network can and cannot do to this test, and why the faults are
//! chosen as they are:
//! - A partition in turmoil drops segments, so a connection that crossed one
//!   stays stuck after the repair; a sender that timed out drops its connection
//!   and dials anew. Its timed-out send may or may not have entered the channel
//!   (the request may have been dropped, or the reply): it is not acknowledged, so
//!   it may be received at most once, never twice. The server never hears that the
//!   stuck connection is gone, so a send that did arrive stays in the channel and
//!   is delivered later, still in its place in the entry order.
//! - Receivers are never partitioned, only held. A receive is committed when the
//!   server writes the value into the reply; if that reply were then cut off by a
//!   partition the value would be lost, and nothing can tell the server (the
//!   documented limit of the channel's two-phase receive: it protects against a
//!   receiver that leaves *before* the hand-over, not against a reply lost after
//!   it). A held link only delays, so holding receivers is fair, and a receiver's
//!   call timeout is far longer than any hold so it never abandons a reply in
//!   flight. A receive error of any kind therefore fails the test.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Duration;

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ww_sched::csp::{ChanConfig, ChannelServer};
use ww_sched::rpc::{self, Connection, RpcConfig, RpcError};
use ww_sched::schema::channel_capnp::{recver, sender};
use ww_sched::schema::worker_capnp::worker::assign_results;
use ww_sched::transport::{Address, PeerId, SimConfig, SimTransport, Transport};
use ww_sim::{derive_seed, root_seed, Trace};

type HostResult = Result<(), Box<dyn std::error::Error>>;

const CHANNEL_HOST: &str = "channel";
const CHANNEL_PORT: u16 = 7000;
/// The name the channel is exported under.
const EXPORT: &str = "jobs";
const SENDERS: usize = 4;
const RECEIVERS: usize = 3;
/// The send deadline under test: a partitioned send must fail within it.
const SEND_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Far longer than any hold (and than the quiet drain at the end), so a
/// receiver never abandons a reply in flight (see the module docs).
const RECV_TIMEOUT: Duration = Duration::from_secs(40);
/// Pause before dialing again after a failed connect.
const RETRY: Duration = Duration::from_millis(200);
/// Senders start no new send after this simulated time.
const SEND_UNTIL: Duration = Duration::from_secs(24);
/// Quiet time after the senders finish, for replies and buffered values to land.
const DRAIN: Duration = Duration::from_secs(3);
/// The simulation fails if the senders have not finished by then.
const SIM_LIMIT: Duration = Duration::from_secs(60);
/// Slack for the simulated clock's tick granularity when checking a deadline.
const TICK_SLACK: Duration = Duration::from_millis(50);
/// Longest pause a sender takes between two sends (seeded).
const THINK_MAX_MS: u64 = 30;
/// Largest seeded delay added to each scheduled fault.
const FAULT_JITTER_MS: u64 = 300;
/// Fewest acknowledged values a run must have, so it cannot pass vacuously.
const ACKED_MIN: usize = 100;

fn sender_name(index: usize) -> String {
    format!("sender-{index}")
}

fn receiver_name(index: usize) -> String {
    format!("receiver-{index}")
}

fn value_of(sender: usize, seq: u64) -> String {
    format!("s{sender}-{seq}")
}

/// `"s<sender>-<seq>"` back into its parts.
fn parse_value(value: &str) -> Option<(usize, u64)> {
    let (sender, seq) = value.strip_prefix('s')?.split_once('-')?;
    Some((sender.parse().ok()?, seq.parse().ok()?))
}

fn now() -> Duration {
    turmoil::sim_elapsed().unwrap_or_default()
}

fn channel_peer(seed: u64) -> PeerId {
    SimConfig::from_seed(seed, CHANNEL_HOST).identity.peer_id()
}

fn channel_address() -> Address {
    Address::new(format!("/dns4/{CHANNEL_HOST}/tcp/{CHANNEL_PORT}"))
}

/// `capnp` is not a dependency of ww-sim, so `capnp::text::Reader` cannot be
/// named here. This pins the type parameter of `value` to what `getter` returns
/// (a generated text getter returns exactly a text reader).
fn typed_like<R, T, E>(_getter: fn(R) -> Result<T, E>, value: Result<T, E>) -> Result<T, E> {
    value
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum SendOutcome {
    Acked,
    Timeout,
    /// Any other failure, with its text.
    Failed(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct SendRecord {
    sender: usize,
    seq: u64,
    started: Duration,
    finished: Duration,
    outcome: SendOutcome,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct RecvRecord {
    receiver: usize,
    value: String,
    /// When the receive call was made.
    issued: Duration,
    /// When its answer arrived.
    at: Duration,
}

/// Everything the hosts observed, in the order it happened.
#[derive(Debug, Default, PartialEq, Eq)]
struct Log {
    sends: Vec<SendRecord>,
    receives: Vec<RecvRecord>,
    /// Failed receive calls: (receiver, when, error). Must stay empty.
    recv_errors: Vec<(usize, Duration, String)>,
    /// Failed connects: (host, when, error). Expected under partition.
    connect_errors: Vec<(String, Duration, String)>,
    /// Senders that ran to the end.
    senders_done: usize,
    /// Values buffered in the channel when the run ended.
    buffered_at_end: Option<usize>,
}

type SharedLog = Rc<RefCell<Log>>;

#[derive(Clone, Copy, Debug)]
enum FaultKind {
    Partition,
    Repair,
    Hold,
    Release,
}

#[derive(Clone, Debug)]
struct Fault {
    at: Duration,
    kind: FaultKind,
    /// The host whose link with the channel host is affected.
    host: String,
}

/// The fault schedule: each sender is partitioned at least once (two at once in
/// one window, sender-0 twice), each receiver held at least once, some holds
/// overlapping partitions. Every partition lasts longer than the send deadline.
/// Each event is delayed by a seeded jitter; the gaps keep the order of events.
fn faults(seed: u64) -> Vec<Fault> {
    use FaultKind::*;
    let plan: &[(u64, FaultKind, &[&str])] = &[
        (2_000, Partition, &["sender-0"]),
        (3_000, Hold, &["receiver-0"]),
        (5_000, Release, &["receiver-0"]),
        (6_000, Repair, &["sender-0"]),
        (7_000, Partition, &["sender-1"]),
        (7_500, Hold, &["receiver-1"]),
        (9_500, Release, &["receiver-1"]),
        (11_000, Repair, &["sender-1"]),
        (12_000, Partition, &["sender-2", "sender-3"]),
        (12_500, Hold, &["receiver-0", "receiver-2"]),
        (15_000, Release, &["receiver-0", "receiver-2"]),
        (16_000, Repair, &["sender-2", "sender-3"]),
        (17_000, Partition, &["sender-0"]),
        (17_500, Hold, &["receiver-1"]),
        (19_000, Release, &["receiver-1"]),
        (21_000, Repair, &["sender-0"]),
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, "faults"));
    let mut out = Vec::new();
    for (at_ms, kind, hosts) in plan {
        let jitter = rng.next_u64() % FAULT_JITTER_MS;
        for host in hosts.iter() {
            out.push(Fault {
                at: Duration::from_millis(at_ms + jitter),
                kind: *kind,
                host: host.to_string(),
            });
        }
    }
    out
}

async fn run_channel(seed: u64, capacity: usize, log: SharedLog) -> HostResult {
    let transport = SimTransport::new(SimConfig::from_seed(seed, CHANNEL_HOST));
    let server = ChannelServer::new(ChanConfig {
        capacity,
        ..ChanConfig::default()
    })?;
    let protocol = rpc::export_protocol(EXPORT)?;
    let _serving = rpc::serve(&transport, &protocol, server.client().client)?;
    transport.listen(channel_address()).await?;
    // Report how many values are buffered, for the end-of-run check.
    loop {
        log.borrow_mut().buffered_at_end = Some(server.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Dials the channel (through `dial`) until connected; every failure is logged.
async fn connect<C, F>(
    name: &str,
    log: &SharedLog,
    trace: &Trace,
    dial: impl Fn() -> F,
) -> Connection<C>
where
    F: std::future::Future<Output = Result<Connection<C>, RpcError>>,
{
    loop {
        match dial().await {
            Ok(connection) => {
                trace.record(format!("{name}: connected"));
                return connection;
            }
            Err(e) => {
                trace.record(format!("{name}: connect failed: {e}"));
                log.borrow_mut()
                    .connect_errors
                    .push((name.to_string(), now(), e.to_string()));
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

fn rpc_config(call_timeout: Duration) -> RpcConfig {
    RpcConfig {
        connect_timeout: CONNECT_TIMEOUT,
        call_timeout,
    }
}

async fn run_sender(seed: u64, index: usize, log: SharedLog, trace: Trace) -> HostResult {
    let name = sender_name(index);
    let transport = SimTransport::new(SimConfig::from_seed(seed, &name));
    let channel = channel_peer(seed);
    transport.add_peer_address(channel, channel_address())?;
    let protocol = rpc::export_protocol(EXPORT)?;
    let mut think = ChaCha8Rng::seed_from_u64(derive_seed(seed, &format!("{name}/think")));
    let mut connection: Option<Connection<sender::Client>> = None;
    let mut seq = 0u64;
    while now() < SEND_UNTIL {
        let conn = match connection.take() {
            Some(conn) => conn,
            None => {
                connect(&name, &log, &trace, || {
                    rpc::connect(&transport, channel, &protocol, rpc_config(SEND_TIMEOUT))
                })
                .await
            }
        };
        let value = value_of(index, seq);
        let mut request = conn.client().send_request();
        request.get().init_value().set_as(value.as_str())?;
        let started = now();
        let result = conn
            .call(
                "send",
                async move { request.send().promise.await.map(drop) },
            )
            .await;
        let finished = now();
        let outcome = match &result {
            Ok(()) => SendOutcome::Acked,
            Err(RpcError::Timeout { .. }) => SendOutcome::Timeout,
            Err(e) => SendOutcome::Failed(e.to_string()),
        };
        trace.record(format!(
            "{name}: send {value} -> {outcome:?} after {:?}",
            finished - started
        ));
        log.borrow_mut().sends.push(SendRecord {
            sender: index,
            seq,
            started,
            finished,
            outcome,
        });
        match result {
            Err(e) if e.is_connection_lost() || conn.is_lost() => drop(conn),
            _ if conn.is_lost() => drop(conn),
            _ => connection = Some(conn),
        }
        // Never resend: the next value gets the next sequence number.
        seq += 1;
        tokio::time::sleep(Duration::from_millis(think.next_u64() % THINK_MAX_MS)).await;
    }
    trace.record(format!("{name}: done after {seq} sends"));
    log.borrow_mut().senders_done += 1;
    Ok(())
}

async fn run_receiver(seed: u64, index: usize, log: SharedLog, trace: Trace) -> HostResult {
    let name = receiver_name(index);
    let transport = SimTransport::new(SimConfig::from_seed(seed, &name));
    let channel = channel_peer(seed);
    transport.add_peer_address(channel, channel_address())?;
    let protocol = rpc::export_protocol(EXPORT)?;
    let mut connection: Option<Connection<recver::Client>> = None;
    loop {
        let conn = match connection.take() {
            Some(conn) => conn,
            None => {
                connect(&name, &log, &trace, || {
                    rpc::connect(&transport, channel, &protocol, rpc_config(RECV_TIMEOUT))
                })
                .await
            }
        };
        let request = conn.client().recv_request();
        let issued = now();
        let result = conn.call("recv", request.send().promise).await;
        let at = now();
        let value = result.map_err(|e| e.to_string()).and_then(|response| {
            let results = response.get().map_err(|e| e.to_string())?;
            let text = typed_like(
                assign_results::Reader::get_result,
                results.get_value().get_as(),
            )
            .map_err(|e| e.to_string())?;
            text.to_string().map_err(|e| e.to_string())
        });
        match value {
            Ok(value) => {
                trace.record(format!("{name}: got {value}"));
                log.borrow_mut().receives.push(RecvRecord {
                    receiver: index,
                    value,
                    issued,
                    at,
                });
                connection = Some(conn);
            }
            Err(e) => {
                trace.record(format!("{name}: recv failed: {e}"));
                log.borrow_mut()
                    .recv_errors
                    .push((index, at, e.to_string()));
                if !conn.is_lost() {
                    connection = Some(conn);
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

fn replay(seed: u64, test: &str) -> String {
    format!("replay: WW_SIM_SEED={seed} cargo test -p ww-sim --test channels {test}")
}

/// One run: its trace, what the hosts logged, and the faults applied.
struct Run {
    trace: Trace,
    log: Log,
    faults: Vec<Fault>,
}

/// Runs the scenario at `capacity` under `seed`: faults on schedule, until every
/// sender has finished, then a quiet drain.
fn run_scenario(seed: u64, capacity: usize, test: &str) -> Run {
    let trace = Trace::new();
    let log = SharedLog::default();
    let schedule = faults(seed);
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(SIM_LIMIT)
        .build();
    {
        let log = log.clone();
        sim.host(CHANNEL_HOST, move || {
            run_channel(seed, capacity, log.clone())
        });
    }
    for index in 0..RECEIVERS {
        let (log, trace) = (log.clone(), trace.clone());
        sim.host(receiver_name(index), move || {
            run_receiver(seed, index, log.clone(), trace.clone())
        });
    }
    for index in 0..SENDERS {
        sim.client(
            sender_name(index),
            run_sender(seed, index, log.clone(), trace.clone()),
        );
    }
    let outcome = trace.capture(|| {
        let mut next = 0;
        loop {
            while let Some(fault) = schedule.get(next).filter(|f| sim.elapsed() >= f.at) {
                let (a, b) = (fault.host.as_str(), CHANNEL_HOST);
                match fault.kind {
                    FaultKind::Partition => sim.partition(a, b),
                    FaultKind::Repair => sim.repair(a, b),
                    FaultKind::Hold => sim.hold(a, b),
                    FaultKind::Release => sim.release(a, b),
                }
                trace.record(format!(
                    "driver at {:?}: {:?} {a} <-> {b}",
                    sim.elapsed(),
                    fault.kind
                ));
                next += 1;
            }
            if sim.step()? && next == schedule.len() {
                break;
            }
        }
        let end = sim.elapsed() + DRAIN;
        while sim.elapsed() < end {
            sim.step()?;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    });
    if let Err(e) = outcome {
        panic!(
            "simulation failed under seed {seed} (capacity {capacity}): {e}\n{}\ntrace:\n{}",
            replay(seed, test),
            trace.lines().join("\n")
        );
    }
    let log = Rc::try_unwrap(log)
        .map(RefCell::into_inner)
        .unwrap_or_else(|shared| std::mem::take(&mut *shared.borrow_mut()));
    Run {
        trace,
        log,
        faults: schedule,
    }
}

/// Every guarantee the issue names, checked on one run's log. Returns the
/// violations found (empty when all hold) and a one-line summary.
fn check(run: &Run, capacity: usize) -> (Vec<String>, String) {
    let log = &run.log;
    let mut problems = Vec::new();

    if log.senders_done != SENDERS {
        problems.push(format!(
            "{} of {SENDERS} senders finished",
            log.senders_done
        ));
    }
    if !log.recv_errors.is_empty() {
        problems.push(format!(
            "receive calls failed (no receiver is partitioned and holds are shorter \
             than the receive deadline, so none should): {:?}",
            log.recv_errors
        ));
    }

    // What was sent: every attempt by (sender, seq).
    let sends: BTreeMap<(usize, u64), &SendRecord> =
        log.sends.iter().map(|s| ((s.sender, s.seq), s)).collect();
    let acked: BTreeSet<(usize, u64)> = log
        .sends
        .iter()
        .filter(|s| s.outcome == SendOutcome::Acked)
        .map(|s| (s.sender, s.seq))
        .collect();

    // What was received: each value once, and each one sent.
    let mut received: BTreeMap<(usize, u64), &RecvRecord> = BTreeMap::new();
    for record in &log.receives {
        let Some(key) = parse_value(&record.value) else {
            problems.push(format!("received a value never sent: {record:?}"));
            continue;
        };
        if !sends.contains_key(&key) {
            problems.push(format!("received a value never sent: {record:?}"));
        }
        if let Some(first) = received.insert(key, record) {
            problems.push(format!("received twice: {first:?} and {record:?}"));
        }
    }
    for key in &acked {
        if !received.contains_key(key) {
            problems.push(format!("acknowledged but never received: {:?}", sends[key]));
        }
    }

    // Order within each receiver's log: per sender, sequence numbers increase.
    for receiver in 0..RECEIVERS {
        let mut last: BTreeMap<usize, u64> = BTreeMap::new();
        for record in log.receives.iter().filter(|r| r.receiver == receiver) {
            let Some((sender, seq)) = parse_value(&record.value) else {
                continue;
            };
            if let Some(prev) = last.insert(sender, seq) {
                if prev >= seq {
                    problems.push(format!(
                        "{} got s{sender}-{seq} after s{sender}-{prev}",
                        receiver_name(receiver)
                    ));
                }
            }
        }
    }
    // Order across receivers. A held link delays a reply, so arrival times of
    // different receivers do not give the channel's delivery order; the sound
    // check is by intervals: value j > i of a sender must not have *arrived*
    // before the receive that got value i was even *issued* (j was then
    // committed before i's receive reached the channel, i.e. out of order).
    for sender in 0..SENDERS {
        let mut latest_issue: Option<(Duration, &RecvRecord)> = None;
        for (_, record) in received.range((sender, 0)..=(sender, u64::MAX)) {
            if let Some((issued, earlier)) = latest_issue {
                if record.at < issued {
                    problems.push(format!(
                        "out of order across receivers: {record:?} arrived before \
                         the receive of the earlier {earlier:?} was issued"
                    ));
                }
            }
            if latest_issue.is_none_or(|(issued, _)| record.issued > issued) {
                latest_issue = Some((record.issued, record));
            }
        }
    }
    // Capacity 0: a send completes only when a receive has taken its value, so
    // the receive that got it was issued before the acknowledgement arrived.
    if capacity == 0 {
        for key in &acked {
            if let Some(record) = received.get(key) {
                if record.issued > sends[key].finished {
                    problems.push(format!(
                        "rendezvous send acknowledged before any receive took it: {:?} / {record:?}",
                        sends[key]
                    ));
                }
            }
        }
    }

    // No hang: every send call returned within its deadline.
    for send in &log.sends {
        if send.finished - send.started > SEND_TIMEOUT + TICK_SLACK {
            problems.push(format!("send took longer than its deadline: {send:?}"));
        }
    }
    // Each partition window of a sender shows a timeout of that sender, and
    // the sender acknowledges sends again after the repair.
    let mut timeouts_in_partitions = 0;
    for fault in run
        .faults
        .iter()
        .filter(|f| matches!(f.kind, FaultKind::Partition))
    {
        let repair = run
            .faults
            .iter()
            .find(|f| {
                matches!(f.kind, FaultKind::Repair) && f.host == fault.host && f.at > fault.at
            })
            .map_or(SIM_LIMIT, |f| f.at);
        let sender = log
            .sends
            .iter()
            .filter(|s| sender_name(s.sender) == fault.host);
        let timeouts = sender
            .clone()
            .filter(|s| {
                s.outcome == SendOutcome::Timeout && s.finished >= fault.at && s.finished <= repair
            })
            .count();
        if timeouts == 0 {
            problems.push(format!(
                "{} saw no send timeout while partitioned from {:?} to {repair:?}",
                fault.host, fault.at
            ));
        }
        timeouts_in_partitions += timeouts;
        if !sender
            .clone()
            .any(|s| s.outcome == SendOutcome::Acked && s.started >= repair)
        {
            problems.push(format!(
                "{} acknowledged nothing after its repair at {repair:?}",
                fault.host
            ));
        }
    }

    // Enough flowed for the checks to mean something.
    if acked.len() < ACKED_MIN {
        problems.push(format!(
            "only {} values acknowledged (at least {ACKED_MIN} expected)",
            acked.len()
        ));
    }
    for receiver in 0..RECEIVERS {
        if !log.receives.iter().any(|r| r.receiver == receiver) {
            problems.push(format!("{} received nothing", receiver_name(receiver)));
        }
    }
    if log.buffered_at_end != Some(0) {
        problems.push(format!(
            "values left in the channel after the drain: {:?}",
            log.buffered_at_end
        ));
    }

    let timeouts = log
        .sends
        .iter()
        .filter(|s| s.outcome == SendOutcome::Timeout)
        .count();
    let other_failures = log.sends.len() - acked.len() - timeouts;
    let unacked_received = received.keys().filter(|k| !acked.contains(k)).count();
    let summary = format!(
        "capacity {capacity}: {} sends, {} acked, {timeouts} timed out \
         ({timeouts_in_partitions} inside partition windows), {other_failures} other failures, \
         {} received ({unacked_received} of them unacknowledged), {} failed connects",
        log.sends.len(),
        acked.len(),
        received.len(),
        log.connect_errors.len()
    );
    (problems, summary)
}

/// Runs `capacity` twice under the root seed and once under another seed, and
/// checks the guarantees and determinism.
fn scenario(capacity: usize, default_seed: u64, test: &str) {
    let seed = root_seed(default_seed);
    eprintln!("seed {seed} ({})", replay(seed, test));
    let first = run_scenario(seed, capacity, test);
    let (problems, summary) = check(&first, capacity);
    eprintln!("{summary}; trace digest {}", first.trace.digest());
    assert!(
        problems.is_empty(),
        "channel guarantees broken under seed {seed}, {summary}:\n  {}\n{}\ntrace:\n{}",
        problems.join("\n  "),
        replay(seed, test),
        first.trace.lines().join("\n")
    );

    let second = run_scenario(seed, capacity, test);
    assert!(
        first.log == second.log,
        "same seed {seed}, different logs\n{}",
        replay(seed, test)
    );
    assert_eq!(
        first.trace.lines(),
        second.trace.lines(),
        "same seed {seed}, different traces\n{}",
        replay(seed, test)
    );
    assert_eq!(first.trace.digest(), second.trace.digest());

    let other_seed = seed.wrapping_add(1);
    let other = run_scenario(other_seed, capacity, test);
    assert_ne!(
        first.trace.digest(),
        other.trace.digest(),
        "seeds {seed} and {other_seed} gave the same trace"
    );
}

#[test]
fn rendezvous_channel_under_partitions_and_holds() {
    scenario(0, 11, "rendezvous");
}

#[test]
fn buffered_channel_under_partitions_and_holds() {
    scenario(8, 12, "buffered");
}

/// Keeps the checks honest: a log with each kind of violation is caught.
#[test]
fn checks_catch_each_violation() {
    let ms = Duration::from_millis;
    let send = |sender, seq, outcome| SendRecord {
        sender,
        seq,
        started: ms(seq * 100),
        finished: ms(seq * 100 + 50),
        outcome,
    };
    let got = |receiver, value: &str, issued, at| RecvRecord {
        receiver,
        value: value.to_string(),
        issued: ms(issued),
        at: ms(at),
    };
    let log = Log {
        sends: vec![
            send(0, 0, SendOutcome::Acked),
            send(0, 1, SendOutcome::Acked),
            send(0, 2, SendOutcome::Acked),
            send(0, 3, SendOutcome::Acked),
            send(1, 0, SendOutcome::Acked),
            send(1, 1, SendOutcome::Acked),
            send(1, 2, SendOutcome::Timeout),
        ],
        receives: vec![
            // s0-1 before s0-0 in one receiver's log.
            got(0, "s0-1", 0, 10),
            got(0, "s0-0", 20, 30),
            // s1-1 arrived at receiver 1 before receiver 2 even asked for s1-0.
            got(1, "s1-1", 0, 10),
            got(2, "s1-0", 20, 30),
            // Received twice; s0-3 never; a value nobody sent.
            got(1, "s0-2", 40, 50),
            got(2, "s0-2", 60, 70),
            got(2, "s7-0", 80, 90),
        ],
        senders_done: SENDERS,
        buffered_at_end: Some(0),
        ..Log::default()
    };
    let run = Run {
        trace: Trace::new(),
        log,
        faults: Vec::new(),
    };
    let (problems, _) = check(&run, 8);
    let found = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(found("receiver-0 got s0-0 after s0-1"), "{problems:#?}");
    assert!(found("out of order across receivers"), "{problems:#?}");
    assert!(found("received twice"), "{problems:#?}");
    assert!(found("acknowledged but never received"), "{problems:#?}");
    assert!(found("never sent"), "{problems:#?}");
    assert!(found("values acknowledged"), "{problems:#?}");
}
