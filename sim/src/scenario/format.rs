//! The scenario file format (see `scenarios/README.md`): the cluster's shape, the
//! workloads, faults over simulated time and the invariants to check, read from
//! TOML and validated before anything runs.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::ScenarioError;

/// A parsed, validated scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Short name (conventionally the file name without `.toml`).
    pub name: String,
    /// What the scenario exercises.
    #[serde(default)]
    pub description: String,
    /// Simulated length of the run, in seconds.
    pub duration_s: f64,
    /// At most this many seeds in a swarm (a costly scenario caps its share).
    pub swarm_seeds_max: Option<u64>,
    /// Seeds `cargo test` runs it under (default 2).
    #[serde(default = "default_test_seeds")]
    pub test_seeds: u64,
    /// Membership nodes.
    #[serde(default)]
    pub cluster: ClusterSpec,
    /// A boot server the membership nodes meet through instead of multicast.
    pub boot: Option<BootSpec>,
    /// Network conditions for the whole run.
    #[serde(default)]
    pub network: NetworkSpec,
    /// A gateway and its workers.
    pub gateway: Option<GatewaySpec>,
    /// Task submissions through the gateway's REST API (needs `[gateway]`).
    pub tasks: Option<TasksSpec>,
    /// Channel traffic: a channel server, senders and receivers.
    pub channel: Option<ChannelSpec>,
    /// Pubsub traffic among the membership nodes.
    pub pubsub: Option<PubsubSpec>,
    /// The nodes run the records DHT; host `dht-client` puts and reads back.
    pub records: Option<RecordsSpec>,
    /// The nodes serve anchors; hosts `aclient-i` set and get them.
    pub anchors: Option<AnchorsSpec>,
    /// Several gateways over one store under the lease protocol (run by its
    /// own seeded event driver, alone).
    pub leases: Option<crate::workload::leases_spec::LeasesSpec>,
    /// The cluster's swarm key and hostile hosts.
    #[serde(default)]
    pub security: SecuritySpec,
    /// Faults, in time order.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// Which invariants to check.
    pub invariants: Invariants,
}

/// `[cluster]`: membership nodes `node-000` .. `node-<n-1>`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// How many membership nodes (0 when the scenario is about other hosts).
    #[serde(default)]
    pub nodes: usize,
    /// Their heartbeat TTL in milliseconds.
    #[serde(default = "default_ttl_ms")]
    pub ttl_ms: u32,
}

impl Default for ClusterSpec {
    fn default() -> Self {
        ClusterSpec {
            nodes: 0,
            ttl_ms: default_ttl_ms(),
        }
    }
}

/// `[boot]`: host `boot` runs a boot server (`ww::boot::BootService`,
/// default limits: TTLs cut to 30 s), and every membership node discovers through
/// it (`BootClient`) instead of the multicast survey, its topics a mesh of the
/// peers it connected to (`SimConfig::mesh`) rather than a broadcast to all. No
/// keys yet: the section's presence is the switch.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootSpec {}

fn default_test_seeds() -> u64 {
    2
}

fn default_ttl_ms() -> u32 {
    10_000
}

/// `[network]`: turmoil's link model for the whole run.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Probability per message that a healthy link breaks.
    #[serde(default)]
    pub fail_rate: f64,
    /// Probability per message that a broken link mends.
    #[serde(default = "one")]
    pub repair_rate: f64,
    /// Largest random per-message latency, in milliseconds (turmoil's default 100).
    pub max_latency_ms: Option<u64>,
}

fn one() -> f64 {
    1.0
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            fail_rate: 0.0,
            repair_rate: 1.0,
            max_latency_ms: None,
        }
    }
}

/// `[gateway]`: host `gateway` (REST on port 8080, its store on disk, kept across
/// restarts) and workers `worker-0` .. `worker-<n-1>` registering through it.
/// With `store = "shared"`, `gateways` gateways (`gateway`, `gateway-1`, ...)
/// share one store (the in-memory store with PostgreSQL's sharing rules,
/// behind links named `store` in faults) under leases, and worker `i`
/// registers with gateway `i % gateways`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewaySpec {
    /// How many workers.
    pub workers: usize,
    /// Runs each worker takes at once.
    #[serde(default = "default_slots")]
    pub slots: u32,
    /// How many gateways (more than one needs `store = "shared"`).
    #[serde(default = "default_gateways")]
    pub gateways: usize,
    /// Where the gateways keep their tasks.
    #[serde(default)]
    pub store: StoreKind,
}

/// The gateways' task store in a scenario.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// The embedded store on the gateway's simulated disk.
    #[default]
    Embedded,
    /// One store every gateway shares, reached over links named `store`.
    Shared,
}

fn default_gateways() -> usize {
    1
}

fn default_slots() -> u32 {
    2
}

/// `[tasks]`: host `client` submits hash-puzzle tasks over HTTP at seeded times,
/// cancels some, and polls every task until the end.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TasksSpec {
    /// How many tasks.
    pub count: usize,
    /// Submissions happen at seeded times in `[submit_from_s, submit_until_s]`.
    #[serde(default = "default_submit_from_s")]
    pub submit_from_s: f64,
    /// See `submit_from_s`.
    pub submit_until_s: f64,
    /// Each task runs 1..=`repeats_max` times.
    #[serde(default = "default_repeats_max")]
    pub repeats_max: u32,
    /// The first run's delay after submission is 0..`start_ms_max`.
    #[serde(default = "default_start_ms_max")]
    pub start_ms_max: u64,
    /// The interval between runs is 200..200+`interval_ms_max`.
    #[serde(default = "default_interval_ms_max")]
    pub interval_ms_max: u64,
    /// Percentage of tasks cancelled at a seeded point of their lives.
    #[serde(default = "default_cancel_percent")]
    pub cancel_percent: u32,
}

fn default_submit_from_s() -> f64 {
    1.0
}
fn default_repeats_max() -> u32 {
    3
}
fn default_start_ms_max() -> u64 {
    4_000
}
fn default_interval_ms_max() -> u64 {
    2_000
}
fn default_cancel_percent() -> u32 {
    20
}

impl TasksSpec {
    /// The latest a run of any task can fall due, in ms of simulated time.
    pub fn last_due_ms(&self) -> u64 {
        secs(self.submit_until_s).as_millis() as u64
            + self.start_ms_max
            + u64::from(self.repeats_max) * (200 + self.interval_ms_max)
    }
}

/// `[channel]`: host `channel` serves one channel; `sender-i` hosts send numbered
/// values until `send_until_s`, `receiver-i` hosts receive until the end.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    /// 0 for a rendezvous channel, else its buffer size.
    pub capacity: usize,
    /// How many senders.
    pub senders: usize,
    /// How many receivers.
    pub receivers: usize,
    /// When senders stop.
    pub send_until_s: f64,
    /// A sender waits 0..`think_ms_max` between sends.
    #[serde(default = "default_think_ms_max")]
    pub think_ms_max: u64,
}

fn default_think_ms_max() -> u64 {
    30
}

/// `[pubsub]`: every membership node publishes on one topic and records what it
/// receives.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubsubSpec {
    /// How often each node publishes, in milliseconds.
    pub interval_ms: u64,
}

/// `[records]`: every membership node runs a record service and takes part in
/// the DHT; host `dht-client` puts `count` content records at seeded times and
/// reads every acknowledged one back at each of `read_at_s`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordsSpec {
    /// How many records.
    pub count: usize,
    /// Puts happen at seeded times in `[put_from_s, put_until_s]`.
    #[serde(default = "default_submit_from_s")]
    pub put_from_s: f64,
    /// See `put_from_s`.
    pub put_until_s: f64,
    /// Seeded payload bytes per record.
    #[serde(default = "default_payload_bytes")]
    pub payload_bytes: usize,
    /// How often each holder passes its records on (`RecordsConfig::republish_every`).
    #[serde(default = "default_republish_every_s")]
    pub republish_every_s: f64,
    /// When the client reads every acknowledged record back (checkpoints; the
    /// last is the final read).
    pub read_at_s: Vec<f64>,
}

fn default_payload_bytes() -> usize {
    64
}

fn default_republish_every_s() -> f64 {
    5.0
}

/// `[anchors]`: every membership node serves its anchors; hosts `aclient-0` ..
/// each set or get one of `keys` paths on a seeded node every `interval_ms`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnchorsSpec {
    /// How many clients.
    pub clients: usize,
    /// Paths per host the clients share (`/<peer>/sim/k<j>`).
    #[serde(default = "default_anchor_keys")]
    pub keys: usize,
    /// A client's pause between operations.
    #[serde(default = "default_anchor_interval_ms")]
    pub interval_ms: u64,
    /// Share of operations that are sets (the rest are gets).
    #[serde(default = "default_set_percent")]
    pub set_percent: u32,
}

fn default_anchor_keys() -> usize {
    2
}

fn default_anchor_interval_ms() -> u64 {
    250
}

fn default_set_percent() -> u32 {
    50
}

/// The records client's host name.
pub const DHT_CLIENT_HOST: &str = "dht-client";

/// Anchor client `i`'s host name.
pub fn anchor_client_name(i: usize) -> String {
    format!("aclient-{i}")
}

/// `[security]`: a private cluster and the hosts that attack it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySpec {
    /// Every cluster host (membership nodes, gateway, workers) holds the seed's
    /// swarm key.
    #[serde(default)]
    pub swarm_key: bool,
    /// Hosts `outsider-0` .. without the key (odd ones with another key): each
    /// joins membership claiming `role=gateway` and `role=worker` and keeps
    /// trying to register as a worker with the gateway.
    #[serde(default)]
    pub outsiders: usize,
    /// Host `tap` (no key): hears the cluster's broadcasts and replays each
    /// captured datagram `replay_after_ms` later, and sends `flood_per_s`
    /// garbage datagrams a second to the discovery and broadcast groups.
    #[serde(default)]
    pub tap: bool,
    /// How long the tap holds a captured datagram before replaying it.
    #[serde(default = "default_replay_after_ms")]
    pub replay_after_ms: u64,
    /// Garbage datagrams the tap sends per second (0: none).
    #[serde(default)]
    pub flood_per_s: u32,
    /// Hosts `rogue-0` .. holding the key (needs `[gateway]`): each registers
    /// a worker that runs nothing and answers every other run with a report
    /// that cannot be true (65 results) and the rest with a false result.
    #[serde(default)]
    pub rogue_workers: usize,
}

fn default_replay_after_ms() -> u64 {
    15_000
}

/// Host name of outsider `i`.
pub fn outsider_name(i: usize) -> String {
    format!("outsider-{i}")
}

/// Host name of rogue worker `i`.
pub fn rogue_name(i: usize) -> String {
    format!("rogue-{i}")
}

/// The tap's host name.
pub const TAP_HOST: &str = "tap";

/// The kinds of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Drop every message between each x in `a` and y in `b`.
    Partition,
    /// Undo a partition (or hold) between `a` and `b`.
    Repair,
    /// Drop messages from each x in `a` to each y in `b` (not the other way).
    PartitionOneway,
    /// Undo a one-way partition from `a` to `b`.
    RepairOneway,
    /// Hold (queue, do not deliver) messages between `a` and `b`.
    Hold,
    /// Deliver held messages between `a` and `b` and resume.
    Release,
    /// Set a fixed per-message latency (`latency_ms`) on the links `a` x `b`.
    Latency,
    /// Set the per-message break rate (`fail_rate`) of the links `a` x `b`.
    LinkLoss,
    /// Stop the software on `nodes`.
    Crash,
    /// Start `nodes` again (a new instance, same identity; a gateway keeps its store).
    Restart,
    /// Set the global per-message link failure rate to `fail_rate`.
    Loss,
    /// The gateway's disk fails every write, length change and sync (EIO)
    /// until `disk_heal`.
    DiskEio,
    /// The gateway's disk is full: writes and growth fail (ENOSPC) until
    /// `disk_heal`.
    DiskFull,
    /// The gateway's fsyncs fail (EIO) and lose what they should have made
    /// durable, until `disk_heal`.
    DiskFsyncFail,
    /// Clears the gateway's disk fault.
    DiskHeal,
    /// Freeze `nodes` (`[leases]` gateways only): a stop-the-world pause, as
    /// a GC or a stopped VM. What reaches them queues; their clocks run on.
    Pause,
    /// Unfreeze `nodes`: they handle what queued, in order, then time.
    Resume,
}

impl FaultKind {
    /// The name used in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Partition => "partition",
            FaultKind::Repair => "repair",
            FaultKind::PartitionOneway => "partition_oneway",
            FaultKind::RepairOneway => "repair_oneway",
            FaultKind::Hold => "hold",
            FaultKind::Release => "release",
            FaultKind::Latency => "latency",
            FaultKind::LinkLoss => "link_loss",
            FaultKind::Crash => "crash",
            FaultKind::Restart => "restart",
            FaultKind::Loss => "loss",
            FaultKind::DiskEio => "disk_eio",
            FaultKind::DiskFull => "disk_full",
            FaultKind::DiskFsyncFail => "disk_fsync_fail",
            FaultKind::DiskHeal => "disk_heal",
            FaultKind::Pause => "pause",
            FaultKind::Resume => "resume",
        }
    }

    /// Whether it acts on the links `a` x `b`.
    pub fn is_link(self) -> bool {
        !matches!(
            self,
            FaultKind::Crash
                | FaultKind::Restart
                | FaultKind::Loss
                | FaultKind::Pause
                | FaultKind::Resume
        ) && !self.is_disk()
    }

    /// Whether it acts on the gateway's disk (`nodes = ["gateway"]`).
    pub fn is_disk(self) -> bool {
        matches!(
            self,
            FaultKind::DiskEio
                | FaultKind::DiskFull
                | FaultKind::DiskFsyncFail
                | FaultKind::DiskHeal
        )
    }

    /// Whether it acts on `nodes` (crash, restart, pause, resume, disk faults).
    pub fn takes_nodes(self) -> bool {
        matches!(
            self,
            FaultKind::Crash | FaultKind::Restart | FaultKind::Pause | FaultKind::Resume
        ) || self.is_disk()
    }

    /// The kind that undoes this one, if it is a disturbance with an end.
    pub fn undone_by(self) -> Option<FaultKind> {
        match self {
            FaultKind::Partition => Some(FaultKind::Repair),
            FaultKind::PartitionOneway => Some(FaultKind::RepairOneway),
            FaultKind::Hold => Some(FaultKind::Release),
            FaultKind::Crash => Some(FaultKind::Restart),
            FaultKind::Pause => Some(FaultKind::Resume),
            FaultKind::DiskEio | FaultKind::DiskFull | FaultKind::DiskFsyncFail => {
                Some(FaultKind::DiskHeal)
            }
            _ => None,
        }
    }
}

/// One `[[faults]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Simulated time, in seconds from the start.
    pub at_s: f64,
    /// What happens.
    pub kind: FaultKind,
    /// One side of a link fault (the sending side of a one-way one).
    #[serde(default)]
    pub a: Vec<String>,
    /// The other side of a link fault.
    #[serde(default)]
    pub b: Vec<String>,
    /// The hosts (crash, restart; `["gateway"]` for disk faults).
    #[serde(default)]
    pub nodes: Vec<String>,
    /// The new failure rate (loss, link_loss).
    pub fail_rate: Option<f64>,
    /// The fixed latency (latency).
    pub latency_ms: Option<u64>,
}

/// `[invariants]`: each one needs the workload it watches.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invariants {
    /// Safety: no node reports a peer expired while that peer ran and their link
    /// was undisturbed for the TTL (+ slack) before.
    #[serde(default)]
    pub no_false_leave: bool,
    /// Liveness: this long after the last fault, and at the end, every running
    /// node's view is exactly the running set.
    pub views_complete_within_s: Option<f64>,
    /// Safety: every acknowledged task stays listed with all its runs.
    #[serde(default)]
    pub no_task_lost: bool,
    /// Safety: every run (and task) reaches exactly one terminal status and keeps it.
    #[serde(default)]
    pub one_terminal_status: bool,
    /// Safety: a task whose cancel was acknowledged starts no run after it.
    #[serde(default)]
    pub cancel_stops_runs: bool,
    /// Safety: the client's history of submissions, cancels and reads passes
    /// the history checker (`ww_sched::history`).
    #[serde(default)]
    pub history_checked: bool,
    /// Safety: every request the gateway did not serve (5xx, no answer, a
    /// refused submission) is explained by a disturbance of the gateway or of
    /// the client's link with it.
    #[serde(default)]
    pub refusals_explained: bool,
    /// Liveness: every task is final this long after the later of the last fault
    /// and its last due run.
    pub runs_finish_within_s: Option<f64>,
    /// Safety: every value acknowledged to a sender is received exactly once;
    /// nothing is received twice or invented.
    #[serde(default)]
    pub channel_exactly_once: bool,
    /// Safety: each sender's values are received in the order sent.
    #[serde(default)]
    pub channel_order: bool,
    /// Liveness: this long after the later of the last fault and `send_until_s`,
    /// every sender is done and the channel is empty.
    pub channel_drains_within_s: Option<f64>,
    /// Safety: every pubsub message received was published, by the origin it
    /// names, and no node receives one twice.
    #[serde(default)]
    pub pubsub_integrity: bool,
    /// Liveness: a message published this long after the last fault reaches
    /// every running node within this bound.
    pub pubsub_delivery_within_s: Option<f64>,
    /// Safety: no outsider (a host without the key) ever joins a member's view
    /// or gets a run.
    #[serde(default)]
    pub outsiders_excluded: bool,
    /// Safety: every recorded result that is not the true answer came from a
    /// rogue worker, and no report that cannot be true was recorded.
    #[serde(default)]
    pub forgeries_attributed: bool,
    /// Safety: every record read back has the bytes that were put under its key.
    #[serde(default)]
    pub records_intact: bool,
    /// Liveness (durability): every acknowledged record is found at every
    /// read, unless more of its holders were lost within one republish window
    /// than it had.
    #[serde(default)]
    pub records_survive: bool,
    /// Safety: per host and path, a get returns a value set there and not
    /// overwritten by a set acknowledged before the get began (nor lost in a
    /// restart), and nothing only when no such set exists.
    #[serde(default)]
    pub anchors_linearizable: bool,
    /// Liveness: every operation answers unless its host was down or its
    /// link to the client disturbed while it ran.
    #[serde(default)]
    pub anchors_available: bool,
    /// Liveness: this long after the last fault, every operation on every
    /// running host answers.
    pub anchors_reachable_within_s: Option<f64>,
    /// Safety: every task of `[leases]` gets at most one terminal record.
    #[serde(default)]
    pub lease_one_terminal: bool,
    /// Safety: every run of `[leases]` gets at most one final record, of its
    /// latest started attempt, and a task's status follows from its runs.
    #[serde(default)]
    pub lease_runs_once: bool,
    /// Safety: no run starts after its task's cancel committed, and none is
    /// dispatched after the cancel was acknowledged (with `[leases]`, or
    /// gateways on a shared store: there, no dispatch after the ack).
    #[serde(default)]
    pub lease_cancel_stops_runs: bool,
    /// Safety: a gateway dispatches and acknowledges only while its lease is
    /// valid at the store; claims, starts and outcomes are fenced (with
    /// `[leases]`, or gateways on a shared store: there, every dispatch).
    #[serde(default)]
    pub lease_valid_when_acting: bool,
    /// Safety (gateways on a shared store): no gateway dispatches a task
    /// while another gateway that dispatched it still holds the lease it
    /// did so under.
    #[serde(default)]
    pub lease_one_owner_acting: bool,
    /// Liveness: every acknowledged task is terminal this long after the
    /// later of its ack and the last fault.
    pub lease_tasks_final_within_s: Option<f64>,
    /// Liveness: this long after a gateway holding open tasks crashed or was
    /// cut off, another gateway started one of them.
    pub lease_takeover_within_s: Option<f64>,
}

/// The scenario files (`*.toml`) in `dir`, sorted by name.
pub fn scenario_files(dir: &Path) -> Result<Vec<std::path::PathBuf>, ScenarioError> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| ScenarioError(format!("{}: {e}", dir.display())))?;
    let mut files: Vec<std::path::PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    Ok(files)
}

/// Host names of `count` membership nodes.
pub fn node_names(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("node-{i:03}")).collect()
}

/// The boot server's host name.
pub const BOOT_HOST: &str = "boot";
/// The gateway's host name (the first gateway's, when there are several).
pub const GATEWAY_HOST: &str = "gateway";
/// The shared store's name in faults (`a = ["gateway-1"], b = ["store"]`):
/// not a turmoil host; its links are the gateways' store calls.
pub use crate::workload::leases_spec::STORE_HOST;

/// Gateway `i`'s host name: [`GATEWAY_HOST`] for the first.
pub fn gateway_name(i: usize) -> String {
    if i == 0 {
        GATEWAY_HOST.to_string()
    } else {
        format!("{GATEWAY_HOST}-{i}")
    }
}
/// The task client's host name.
pub const CLIENT_HOST: &str = "client";
/// The channel server's host name.
pub const CHANNEL_HOST: &str = "channel";

/// Worker `i`'s host name.
pub fn worker_name(i: usize) -> String {
    format!("worker-{i}")
}

/// Sender `i`'s host name.
pub fn sender_name(i: usize) -> String {
    format!("sender-{i}")
}

/// Receiver `i`'s host name.
pub fn receiver_name(i: usize) -> String {
    format!("receiver-{i}")
}

/// Seconds as a duration.
pub(crate) fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

impl Scenario {
    /// Parses and validates a scenario from TOML text.
    pub fn from_toml_str(text: &str) -> Result<Scenario, ScenarioError> {
        let scenario: Scenario =
            toml::from_str(text).map_err(|e| ScenarioError(format!("bad scenario: {e}")))?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Reads, parses and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ScenarioError(format!("{}: {e}", path.display())))?;
        Scenario::from_toml_str(&text)
            .map_err(|e| ScenarioError(format!("{}: {}", path.display(), e.0)))
    }

    /// When the quiet phase starts: the last fault's time (0 without faults).
    pub fn quiet_from(&self) -> Duration {
        self.faults.last().map_or(Duration::ZERO, |f| secs(f.at_s))
    }

    /// Every host of the scenario, by name.
    pub fn hosts(&self) -> BTreeSet<String> {
        let mut hosts: BTreeSet<String> = node_names(self.cluster.nodes).into_iter().collect();
        if self.boot.is_some() {
            hosts.insert(BOOT_HOST.into());
        }
        if let Some(gateway) = &self.gateway {
            hosts.extend((0..gateway.gateways).map(gateway_name));
            hosts.extend((0..gateway.workers).map(worker_name));
            if gateway.store == StoreKind::Shared {
                hosts.insert(STORE_HOST.into());
            }
        }
        if self.tasks.is_some() {
            hosts.insert(CLIENT_HOST.into());
        }
        hosts.extend((0..self.security.outsiders).map(outsider_name));
        hosts.extend((0..self.security.rogue_workers).map(rogue_name));
        if self.security.tap {
            hosts.insert(TAP_HOST.into());
        }
        if self.records.is_some() {
            hosts.insert(DHT_CLIENT_HOST.into());
        }
        if let Some(anchors) = &self.anchors {
            hosts.extend((0..anchors.clients).map(anchor_client_name));
        }
        if let Some(leases) = &self.leases {
            hosts.extend(leases.hosts());
        }
        if let Some(channel) = &self.channel {
            hosts.insert(CHANNEL_HOST.into());
            hosts.extend((0..channel.senders).map(sender_name));
            hosts.extend((0..channel.receivers).map(receiver_name));
        }
        hosts
    }
}
