//! Scenario files: a membership cluster, a fault schedule over simulated time and
//! the invariants to check, read from TOML (see `scenarios/README.md`), and the
//! runner that simulates one under a given seed and returns a [`Verdict`].

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use ww_sched::cluster::{LeaveReason, EXPIRY_TICK_MS};
use ww_sched::transport::PeerId;

use crate::cluster::{add_members, peer_of, SharedObservations, SAMPLE_INTERVAL};
use crate::Trace;

/// The simulation's tick.
pub const TICK: Duration = Duration::from_millis(10);
/// Datagrams queued per host (turmoil's default of 64 drops survey bursts).
pub const UDP_CAPACITY: usize = 4096;
/// Slack added to a node's TTL when deciding whether a leave was excused by a
/// fault: the membership expires on a tick of `EXPIRY_TICK_MS`, plus one second.
const EXCUSE_SLACK: Duration = Duration::from_millis(EXPIRY_TICK_MS + 1_000);

/// A parsed scenario file.
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
    /// The cluster's shape.
    pub cluster: ClusterSpec,
    /// Network conditions for the whole run.
    #[serde(default)]
    pub network: NetworkSpec,
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
    /// How many membership nodes.
    pub nodes: usize,
    /// Their heartbeat TTL in milliseconds.
    #[serde(default = "default_ttl_ms")]
    pub ttl_ms: u32,
}

fn default_ttl_ms() -> u32 {
    10_000
}

/// `[network]`: turmoil's message loss model, set on the builder for the whole run.
/// A link breaks with `fail_rate` per message and mends with `repair_rate` per
/// message (turmoil can change only the fail rate during a run: see `loss`).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSpec {
    /// Probability per message that a healthy link breaks.
    #[serde(default)]
    pub fail_rate: f64,
    /// Probability per message that a broken link mends.
    #[serde(default = "one")]
    pub repair_rate: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for NetworkSpec {
    fn default() -> Self {
        NetworkSpec {
            fail_rate: 0.0,
            repair_rate: 1.0,
        }
    }
}

/// The kinds of fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultKind {
    /// Drop every message between each x in `a` and y in `b`.
    Partition,
    /// Undo a partition (or hold) between `a` and `b`.
    Repair,
    /// Hold (queue, do not deliver) messages between `a` and `b`.
    Hold,
    /// Deliver held messages between `a` and `b` and resume.
    Release,
    /// Stop the software on `nodes`.
    Crash,
    /// Start `nodes` again (a new instance under the same peer id).
    Restart,
    /// Set the global per-message link failure rate to `fail_rate`.
    Loss,
}

/// One `[[faults]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Simulated time, in seconds from the start.
    pub at_s: f64,
    /// What happens.
    pub kind: FaultKind,
    /// One side (partition, repair, hold, release).
    #[serde(default)]
    pub a: Vec<String>,
    /// The other side (partition, repair, hold, release).
    #[serde(default)]
    pub b: Vec<String>,
    /// The nodes (crash, restart).
    #[serde(default)]
    pub nodes: Vec<String>,
    /// The new failure rate (loss).
    pub fail_rate: Option<f64>,
}

/// `[invariants]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Invariants {
    /// Safety: no node reports a peer as expired while that peer was running and
    /// the link between them was open for the whole TTL (+ slack) before.
    #[serde(default)]
    pub no_false_leave: bool,
    /// Liveness: this long after the last fault, and again at the end of the
    /// run, every running node's view is exactly the running set.
    pub views_complete_within_s: Option<f64>,
}

/// A scenario that could not be read, or a run that could not be carried out.
#[derive(Debug)]
pub struct ScenarioError(pub String);

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScenarioError {}

fn err<T>(message: impl Into<String>) -> Result<T, ScenarioError> {
    Err(ScenarioError(message.into()))
}

/// The result of one run.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    /// Safety invariants broken, one line each.
    pub safety_violations: Vec<String>,
    /// Liveness invariants broken, one line each.
    pub liveness_violations: Vec<String>,
    /// One line per fault and per invariant check, stamped with simulated time.
    pub timeline: Vec<String>,
    /// SHA-256 of the run's trace (every `tracing` event, faults included).
    pub digest: String,
}

impl Verdict {
    /// Whether no invariant was broken.
    pub fn is_clean(&self) -> bool {
        self.safety_violations.is_empty() && self.liveness_violations.is_empty()
    }
}

/// Host names of a cluster of `count` nodes.
pub fn node_names(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("node-{i:03}")).collect()
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn stamp(at: Duration) -> String {
    format!("{:>9.3}s", at.as_secs_f64())
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

    fn validate(&self) -> Result<(), ScenarioError> {
        let finite_nonneg = |what: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                err(format!("{what} must be a finite number >= 0, got {v}"))
            }
        };
        let rate = |what: &str, v: f64| {
            if (0.0..=1.0).contains(&v) {
                Ok(())
            } else {
                err(format!("{what} must be within 0..=1, got {v}"))
            }
        };
        finite_nonneg("duration_s", self.duration_s)?;
        if self.duration_s <= 0.0 || self.duration_s > 3_600.0 {
            return err(format!(
                "duration_s must be in (0, 3600], got {}",
                self.duration_s
            ));
        }
        if self.cluster.nodes == 0 || self.cluster.nodes > 1_000 {
            return err(format!(
                "cluster.nodes must be in 1..=1000, got {}",
                self.cluster.nodes
            ));
        }
        if self.cluster.ttl_ms < 600 {
            return err(format!(
                "cluster.ttl_ms must be >= 600, got {}",
                self.cluster.ttl_ms
            ));
        }
        rate("network.fail_rate", self.network.fail_rate)?;
        rate("network.repair_rate", self.network.repair_rate)?;
        let names: BTreeSet<String> = node_names(self.cluster.nodes).into_iter().collect();
        let mut running = names.clone();
        let mut last = 0.0;
        for (i, fault) in self.faults.iter().enumerate() {
            let at = format!("faults[{i}] ({:?} at {}s)", fault.kind, fault.at_s);
            finite_nonneg(&format!("{at}: at_s"), fault.at_s)?;
            if fault.at_s < last {
                return err(format!("{at}: faults must be in time order"));
            }
            if fault.at_s > self.duration_s {
                return err(format!("{at}: after duration_s {}", self.duration_s));
            }
            last = fault.at_s;
            for name in fault.a.iter().chain(&fault.b).chain(&fault.nodes) {
                if !names.contains(name) {
                    return err(format!(
                        "{at}: unknown node {name:?} (nodes are node-000..node-{:03})",
                        self.cluster.nodes - 1
                    ));
                }
            }
            let link = matches!(
                fault.kind,
                FaultKind::Partition | FaultKind::Repair | FaultKind::Hold | FaultKind::Release
            );
            let node = matches!(fault.kind, FaultKind::Crash | FaultKind::Restart);
            if link && (fault.a.is_empty() || fault.b.is_empty()) {
                return err(format!("{at}: needs non-empty `a` and `b`"));
            }
            if link && fault.a.iter().any(|x| fault.b.contains(x)) {
                return err(format!("{at}: a node is on both sides"));
            }
            if !link && (!fault.a.is_empty() || !fault.b.is_empty()) {
                return err(format!("{at}: `a`/`b` only apply to link faults"));
            }
            if node && fault.nodes.is_empty() {
                return err(format!("{at}: needs non-empty `nodes`"));
            }
            if !node && !fault.nodes.is_empty() {
                return err(format!("{at}: `nodes` only applies to crash and restart"));
            }
            match (fault.kind, fault.fail_rate) {
                (FaultKind::Loss, Some(v)) => rate(&format!("{at}: fail_rate"), v)?,
                (FaultKind::Loss, None) => return err(format!("{at}: needs `fail_rate`")),
                (_, Some(_)) => return err(format!("{at}: `fail_rate` only applies to loss")),
                _ => {}
            }
            for name in &fault.nodes {
                match fault.kind {
                    FaultKind::Crash if !running.remove(name) => {
                        return err(format!("{at}: {name} is already crashed"))
                    }
                    FaultKind::Restart => {
                        running.insert(name.clone());
                    }
                    _ => {}
                }
            }
        }
        if let Some(bound) = self.invariants.views_complete_within_s {
            finite_nonneg("invariants.views_complete_within_s", bound)?;
            let needed = self.quiet_from() + secs(bound) + SAMPLE_INTERVAL;
            if needed > secs(self.duration_s) {
                return err(format!(
                    "duration_s {} is too short: views_complete_within_s needs the run to last \
                     until {:.3}s (last fault + bound + one {:?} sample)",
                    self.duration_s,
                    needed.as_secs_f64(),
                    SAMPLE_INTERVAL
                ));
            }
        }
        Ok(())
    }
}

/// A time interval during which a node, or a link between two nodes, was disturbed.
#[derive(Clone, Copy, Debug)]
struct Span {
    from: Duration,
    until: Option<Duration>,
}

impl Span {
    fn overlaps(&self, from: Duration, until: Duration) -> bool {
        self.from <= until && self.until.is_none_or(|end| end >= from)
    }
}

/// What the faults did, to judge leaves by.
#[derive(Default)]
struct Disturbances {
    /// Per node: spans while it was down (a restart closes the span at the restart,
    /// and a restart of a running node is a zero-length span).
    node: BTreeMap<String, Vec<Span>>,
    /// Per unordered pair: spans while a partition or hold was in effect.
    link: BTreeMap<(String, String), Vec<Span>>,
}

fn pair(x: &str, y: &str) -> (String, String) {
    if x <= y {
        (x.to_owned(), y.to_owned())
    } else {
        (y.to_owned(), x.to_owned())
    }
}

impl Disturbances {
    fn open(spans: &mut Vec<Span>, at: Duration) {
        if spans.last().is_none_or(|s| s.until.is_some()) {
            spans.push(Span {
                from: at,
                until: None,
            });
        }
    }

    fn close(spans: &mut [Span], at: Duration) {
        if let Some(last) = spans.last_mut() {
            if last.until.is_none() {
                last.until = Some(at);
            }
        }
    }

    fn apply(&mut self, fault: &Fault, at: Duration) {
        match fault.kind {
            FaultKind::Partition | FaultKind::Hold => {
                for x in &fault.a {
                    for y in &fault.b {
                        Self::open(self.link.entry(pair(x, y)).or_default(), at);
                    }
                }
            }
            FaultKind::Repair | FaultKind::Release => {
                for x in &fault.a {
                    for y in &fault.b {
                        Self::close(self.link.entry(pair(x, y)).or_default(), at);
                    }
                }
            }
            FaultKind::Crash => {
                for n in &fault.nodes {
                    Self::open(self.node.entry(n.clone()).or_default(), at);
                }
            }
            FaultKind::Restart => {
                for n in &fault.nodes {
                    let spans = self.node.entry(n.clone()).or_default();
                    Self::open(spans, at);
                    Self::close(spans, at);
                }
            }
            FaultKind::Loss => {}
        }
    }

    fn excused(&self, observer: &str, peer: &str, from: Duration, until: Duration) -> bool {
        let hit = |spans: Option<&Vec<Span>>| {
            spans.is_some_and(|spans| spans.iter().any(|s| s.overlaps(from, until)))
        };
        hit(self.node.get(peer)) || hit(self.link.get(&pair(observer, peer)))
    }
}

fn describe(fault: &Fault) -> String {
    let kind = format!("{:?}", fault.kind).to_lowercase();
    match fault.kind {
        FaultKind::Crash | FaultKind::Restart => format!("{kind} {}", fault.nodes.join(",")),
        FaultKind::Loss => format!("{kind} fail_rate={}", fault.fail_rate.unwrap_or_default()),
        _ => format!("{kind} [{}] x [{}]", fault.a.join(","), fault.b.join(",")),
    }
}

/// Steps `sim` until simulated time `until`.
fn run_until(sim: &mut turmoil::Sim<'_>, until: Duration) -> Result<(), ScenarioError> {
    while sim.elapsed() < until {
        if let Err(e) = sim.step() {
            return err(format!("simulation failed at {:?}: {e}", sim.elapsed()));
        }
    }
    Ok(())
}

/// Running hosts whose latest sampled view differs from the running set.
fn wrong_views(
    observations: &SharedObservations,
    running: &BTreeSet<String>,
    expected: &BTreeSet<PeerId>,
) -> Vec<String> {
    let observations = observations.lock().unwrap_or_else(|p| p.into_inner());
    running
        .iter()
        .filter_map(|host| match observations.views.get(host) {
            Some((_, view)) if view == expected => None,
            Some((at, view)) => Some(format!(
                "{host} (sampled at {:.3}s) sees {} of {} ({} missing, {} extra)",
                at.as_secs_f64(),
                view.intersection(expected).count(),
                expected.len(),
                expected.difference(view).count(),
                view.difference(expected).count()
            )),
            None => Some(format!("{host} has no view yet")),
        })
        .collect()
}

/// Runs `scenario` under `seed`. `Err` is a harness error (the simulation itself
/// failed); invariant violations are in the [`Verdict`].
pub fn run(scenario: &Scenario, seed: u64) -> Result<Verdict, ScenarioError> {
    let names = node_names(scenario.cluster.nodes);
    let host_of: BTreeMap<PeerId, String> = names
        .iter()
        .map(|n| (peer_of(seed, n), n.clone()))
        .collect();
    let mut builder = turmoil::Builder::new();
    builder
        .rng_seed(seed)
        .simulation_duration(secs(scenario.duration_s) + Duration::from_secs(1))
        .tick_duration(TICK)
        .udp_capacity(UDP_CAPACITY)
        .fail_rate(scenario.network.fail_rate)
        .repair_rate(scenario.network.repair_rate);
    let mut sim = builder.build();
    let observations = add_members(&mut sim, seed, &names, scenario.cluster.ttl_ms);
    let trace = Trace::new();
    let mut verdict = Verdict::default();
    let mut disturbances = Disturbances::default();
    let mut running: BTreeSet<String> = names.iter().cloned().collect();

    trace.capture(|| -> Result<(), ScenarioError> {
        for fault in &scenario.faults {
            run_until(&mut sim, secs(fault.at_s))?;
            let at = sim.elapsed();
            let pairs = || {
                fault
                    .a
                    .iter()
                    .flat_map(|x| fault.b.iter().map(move |y| (x.as_str(), y.as_str())))
            };
            match fault.kind {
                FaultKind::Partition => pairs().for_each(|(x, y)| sim.partition(x, y)),
                FaultKind::Repair => pairs().for_each(|(x, y)| sim.repair(x, y)),
                FaultKind::Hold => pairs().for_each(|(x, y)| sim.hold(x, y)),
                FaultKind::Release => pairs().for_each(|(x, y)| sim.release(x, y)),
                FaultKind::Crash => {
                    for n in &fault.nodes {
                        sim.crash(n.as_str());
                        running.remove(n);
                    }
                }
                FaultKind::Restart => {
                    for n in &fault.nodes {
                        sim.bounce(n.as_str());
                        running.insert(n.clone());
                    }
                }
                FaultKind::Loss => sim.set_fail_rate(fault.fail_rate.unwrap_or_default()),
            }
            disturbances.apply(fault, at);
            let line = describe(fault);
            tracing::info!(target: "ww_sim::scenario", fault = %line, "fault");
            verdict.timeline.push(format!("{} fault {line}", stamp(at)));
        }

        let expected: BTreeSet<PeerId> = running.iter().map(|n| peer_of(seed, n)).collect();
        let end = secs(scenario.duration_s);
        if let Some(bound) = scenario.invariants.views_complete_within_s {
            let deadline = scenario.quiet_from() + secs(bound) + SAMPLE_INTERVAL;
            run_until(&mut sim, deadline)?;
            let check = |when: &str, at: Duration, verdict: &mut Verdict| {
                let wrong = wrong_views(&observations, &running, &expected);
                let result = if wrong.is_empty() {
                    format!("ok ({} running nodes)", running.len())
                } else {
                    let v = format!(
                        "views_complete_within_s={bound} ({when}): {} of {} running nodes \
                         wrong at {:.3}s: {}",
                        wrong.len(),
                        running.len(),
                        at.as_secs_f64(),
                        wrong.join("; ")
                    );
                    verdict.liveness_violations.push(v);
                    format!("VIOLATED ({} nodes wrong)", wrong.len())
                };
                tracing::info!(target: "ww_sim::scenario", check = when, %result, "check");
                verdict.timeline.push(format!(
                    "{} check views_complete_within_s={bound} ({when}): {result}",
                    stamp(at)
                ));
            };
            check("bound after last fault", sim.elapsed(), &mut verdict);
            run_until(&mut sim, end)?;
            check("end of run", sim.elapsed(), &mut verdict);
        } else {
            run_until(&mut sim, end)?;
        }

        if scenario.invariants.no_false_leave {
            let window = Duration::from_millis(u64::from(scenario.cluster.ttl_ms)) + EXCUSE_SLACK;
            let observations = observations.lock().unwrap_or_else(|p| p.into_inner());
            let mut checked = 0usize;
            let mut false_leaves = Vec::new();
            for leave in &observations.leaves {
                if leave.reason != LeaveReason::Expired {
                    continue;
                }
                checked += 1;
                let peer = host_of
                    .get(&leave.peer)
                    .cloned()
                    .unwrap_or_else(|| leave.peer.to_string());
                if !disturbances.excused(
                    &leave.observer,
                    &peer,
                    leave.at.saturating_sub(window),
                    leave.at,
                ) {
                    false_leaves.push(format!(
                        "{} reported {peer} expired at {:.3}s, though {peer} was running and \
                         the link was open for the {:?} before",
                        leave.observer,
                        leave.at.as_secs_f64(),
                        window
                    ));
                }
            }
            let result = if false_leaves.is_empty() {
                format!("ok ({checked} expiries, each excused by a fault)")
            } else {
                format!("VIOLATED ({} false leaves)", false_leaves.len())
            };
            tracing::info!(target: "ww_sim::scenario", %result, "check no_false_leave");
            verdict.timeline.push(format!(
                "{} check no_false_leave: {result}",
                stamp(sim.elapsed())
            ));
            verdict.safety_violations.extend(
                false_leaves
                    .into_iter()
                    .map(|v| format!("no_false_leave: {v}")),
            );
        }
        Ok(())
    })?;
    verdict.digest = trace.digest();
    Ok(verdict)
}
