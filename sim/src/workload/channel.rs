//! The channel workload: host `channel` serves one channel (the real
//! `ChannelServer` behind `rpc::serve`); `sender-i` hosts send numbered values
//! until a deadline, never resending (a timed-out value is simply not
//! acknowledged); `receiver-i` hosts receive until the end. Everything they see
//! goes into a [`ChannelLog`] for the checks in `channel_check`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use ww::csp::{ChanConfig, ChannelServer};
use ww::rpc::{self, Connection, RpcConfig, RpcError};
use ww::schema::channel_capnp::{recver, sender};
use ww::transport::{Address, PeerId, SimConfig, SimTransport, Transport};
use ww_sched::schema::worker_capnp::worker::assign_results;

use crate::cluster::{node_address, now, peer_of};
use crate::derive_seed;
use crate::scenario::format::{receiver_name, sender_name, ChannelSpec, CHANNEL_HOST};

type HostResult = Result<(), Box<dyn std::error::Error>>;

/// The channel's export name.
const EXPORT: &str = "jobs";
/// A send's deadline.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(2);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A receive's deadline: longer than any hold, so a receiver never abandons a
/// reply in flight (which would lose its value: the channel's documented limit).
const RECV_TIMEOUT: Duration = Duration::from_secs(600);
/// Wait before redialling.
const RETRY: Duration = Duration::from_millis(200);
/// How often the channel host samples its buffer length.
const SAMPLE: Duration = Duration::from_millis(100);

/// The value sender `sender` sends as its `seq`-th.
pub fn value_of(sender: usize, seq: u64) -> String {
    format!("s{sender}-{seq}")
}

/// `"s<sender>-<seq>"` back into its parts.
pub fn parse_value(value: &str) -> Option<(usize, u64)> {
    let (sender, seq) = value.strip_prefix('s')?.split_once('-')?;
    Some((sender.parse().ok()?, seq.parse().ok()?))
}

fn channel_peer(seed: u64) -> PeerId {
    peer_of(seed, CHANNEL_HOST)
}

fn channel_address() -> Address {
    node_address(CHANNEL_HOST)
}

/// `capnp` is not a dependency of ww-sim, so `capnp::text::Reader` cannot be
/// named here. This pins the type parameter of `value` to what `getter` returns
/// (a generated text getter returns exactly a text reader).
fn typed_like<R, T, E>(_getter: fn(R) -> Result<T, E>, value: Result<T, E>) -> Result<T, E> {
    value
}

/// How one send ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// The channel took the value (at capacity 0: a receiver took it).
    Acked,
    /// No answer within the deadline.
    Timeout,
    /// Any other failure, with its text.
    Failed(String),
}

/// One send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendRecord {
    /// Which sender.
    pub sender: usize,
    /// Its sequence number at that sender.
    pub seq: u64,
    /// When the call was made.
    pub started: Duration,
    /// When it ended.
    pub finished: Duration,
    /// How.
    pub outcome: SendOutcome,
}

/// One value received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecvRecord {
    /// Which receiver.
    pub receiver: usize,
    /// The value.
    pub value: String,
    /// When the receive call was made.
    pub issued: Duration,
    /// When its answer arrived.
    pub at: Duration,
}

/// Everything the channel hosts observed, in the order it happened.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ChannelLog {
    /// Every send.
    pub sends: Vec<SendRecord>,
    /// Every value received.
    pub receives: Vec<RecvRecord>,
    /// Failed receive calls: (receiver, when, error).
    pub recv_errors: Vec<(usize, Duration, String)>,
    /// Failed connects: (host, when, error).
    pub connect_errors: Vec<(String, Duration, String)>,
    /// When each sender finished.
    pub senders_done: BTreeMap<usize, Duration>,
    /// The channel's buffer length, sampled: (when, length), on change.
    pub buffered: Vec<(Duration, usize)>,
}

/// Shared, lockable channel log.
pub type SharedChannelLog = Arc<Mutex<ChannelLog>>;

fn lock(log: &SharedChannelLog) -> MutexGuard<'_, ChannelLog> {
    log.lock().unwrap_or_else(|p| p.into_inner())
}

/// Adds the channel, its senders and receivers to `sim`.
pub fn add_hosts(sim: &mut turmoil::Sim<'_>, seed: u64, spec: &ChannelSpec) -> SharedChannelLog {
    let log = SharedChannelLog::default();
    {
        let (log, capacity) = (log.clone(), spec.capacity);
        sim.host(CHANNEL_HOST, move || {
            run_channel(seed, capacity, log.clone())
        });
    }
    for index in 0..spec.receivers {
        let log = log.clone();
        sim.host(receiver_name(index), move || {
            run_receiver(seed, index, log.clone())
        });
    }
    for index in 0..spec.senders {
        let (log, spec) = (log.clone(), spec.clone());
        sim.host(sender_name(index), move || {
            run_sender(seed, index, spec.clone(), log.clone())
        });
    }
    log
}

async fn run_channel(seed: u64, capacity: usize, log: SharedChannelLog) -> HostResult {
    let transport = SimTransport::new(SimConfig::from_seed(seed, CHANNEL_HOST));
    let server = ChannelServer::new(ChanConfig {
        capacity,
        ..ChanConfig::default()
    })?;
    let protocol = rpc::export_protocol(EXPORT)?;
    let _serving = rpc::serve(&transport, &protocol, server.client().client)?;
    transport.listen(channel_address()).await?;
    loop {
        let len = server.len();
        {
            let mut log = lock(&log);
            if log.buffered.last().map(|(_, l)| *l) != Some(len) {
                log.buffered.push((now(), len));
            }
        }
        tokio::time::sleep(SAMPLE).await;
    }
}

/// Dials the channel (through `dial`) until connected; every failure is logged.
async fn connect<C, F>(name: &str, log: &SharedChannelLog, dial: impl Fn() -> F) -> Connection<C>
where
    F: std::future::Future<Output = Result<Connection<C>, RpcError>>,
{
    loop {
        match dial().await {
            Ok(connection) => {
                tracing::info!(target: "ww_sim::workload", host = name, "channel connected");
                return connection;
            }
            Err(e) => {
                tracing::info!(target: "ww_sim::workload", host = name, error = %e, "channel connect failed");
                lock(log)
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

async fn run_sender(
    seed: u64,
    index: usize,
    spec: ChannelSpec,
    log: SharedChannelLog,
) -> HostResult {
    let name = sender_name(index);
    let transport = SimTransport::new(SimConfig::from_seed(seed, &name));
    let channel = channel_peer(seed);
    transport.add_peer_address(channel, channel_address())?;
    let protocol = rpc::export_protocol(EXPORT)?;
    let mut think = ChaCha8Rng::seed_from_u64(derive_seed(seed, &format!("{name}/think")));
    let send_until = Duration::from_secs_f64(spec.send_until_s);
    let mut connection: Option<Connection<sender::Client>> = None;
    let mut seq = 0u64;
    while now() < send_until {
        let conn = match connection.take() {
            Some(conn) => conn,
            None => {
                connect(&name, &log, || {
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
        tracing::info!(target: "ww_sim::workload", host = %name, %value, ?outcome, "send");
        lock(&log).sends.push(SendRecord {
            sender: index,
            seq,
            started,
            finished,
            outcome,
        });
        let lost = matches!(&result, Err(e) if e.is_connection_lost());
        if !lost && !conn.is_lost() {
            connection = Some(conn);
        }
        // Never resend: the next value gets the next sequence number.
        seq += 1;
        let pause = think.next_u64() % spec.think_ms_max.max(1);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    tracing::info!(target: "ww_sim::workload", host = %name, sends = seq, "sender done");
    lock(&log).senders_done.insert(index, now());
    // A host that returns ends its software; stay up (idle) so faults on it
    // still mean what they say.
    std::future::pending::<()>().await;
    Ok(())
}

async fn run_receiver(seed: u64, index: usize, log: SharedChannelLog) -> HostResult {
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
                connect(&name, &log, || {
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
                tracing::info!(target: "ww_sim::workload", host = %name, %value, "received");
                lock(&log).receives.push(RecvRecord {
                    receiver: index,
                    value,
                    issued,
                    at,
                });
                connection = Some(conn);
            }
            Err(e) => {
                tracing::info!(target: "ww_sim::workload", host = %name, error = %e, "receive failed");
                lock(&log).recv_errors.push((index, at, e));
                if !conn.is_lost() {
                    connection = Some(conn);
                }
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}
