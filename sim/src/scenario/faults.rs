//! Applying faults to a running simulation, and remembering what they disturbed
//! so that a leave (or a refused request) can be judged excused or not.

use std::collections::BTreeMap;
use std::time::Duration;

use super::format::{Fault, FaultKind, STORE_HOST};
use crate::disk::{DiskFault, SimDisk};

/// A time interval during which a host, or a link between two hosts, was disturbed.
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

/// Latency at or above this disturbs a link for the membership (a heartbeat
/// that late is as good as lost).
const LATENCY_DISTURBS: Duration = Duration::from_millis(500);

/// What disturbed a host or a link, as a workload's checks see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    /// The host was down (from a crash to its restart; a restart of a running
    /// host is a zero-length span at the restart).
    Down,
    /// The host's disk had a fault armed (from the fault to `disk_heal`).
    Disk,
    /// The link was partitioned (either way), held, lossy or slow (>= 500 ms),
    /// or the whole network was lossy.
    Link,
}

impl Cause {
    /// A word for violation lines.
    pub fn name(self) -> &'static str {
        match self {
            Cause::Down => "crash/restart",
            Cause::Disk => "disk fault",
            Cause::Link => "link",
        }
    }
}

/// One disturbance: its cause and when (`until` is `None` while it lasts).
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// What it was.
    pub cause: Cause,
    /// When it began.
    pub from: Duration,
    /// When it ended, if it did.
    pub until: Option<Duration>,
}

/// What the faults did, to judge leaves (and refused requests) by.
#[derive(Default)]
pub struct Disturbances {
    /// Per host and cause (down, disk): spans while it was in effect.
    node: BTreeMap<(String, Cause), Vec<Span>>,
    /// Per unordered pair and kind of link disturbance (partition, one-way,
    /// hold, loss, latency): spans while it was in effect. Kept apart so that
    /// ending one kind (say, latency back to normal) does not end another.
    link: BTreeMap<((String, String), &'static str), Vec<Span>>,
    /// Spans of network-wide random loss (`[network] fail_rate`, `loss`).
    loss: Vec<Span>,
}

fn pair(x: &str, y: &str) -> (String, String) {
    if x <= y {
        (x.to_owned(), y.to_owned())
    } else {
        (y.to_owned(), x.to_owned())
    }
}

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

impl Disturbances {
    /// Records the network-wide loss of the whole run (`[network] fail_rate`).
    pub fn network_loss(&mut self, fail_rate: f64) {
        if fail_rate > 0.0 {
            open(&mut self.loss, Duration::ZERO);
        }
    }

    /// Records `fault`, applied at `at`.
    pub fn record(&mut self, fault: &Fault, at: Duration) {
        let (class, opens) = match fault.kind {
            FaultKind::Partition => ("partition", true),
            FaultKind::Repair => ("partition", false),
            FaultKind::PartitionOneway => ("oneway", true),
            FaultKind::RepairOneway => ("oneway", false),
            FaultKind::Hold => ("hold", true),
            FaultKind::Release => ("hold", false),
            FaultKind::LinkLoss => ("loss", fault.fail_rate.unwrap_or_default() > 0.0),
            FaultKind::Latency => (
                "latency",
                Duration::from_millis(fault.latency_ms.unwrap_or_default()) >= LATENCY_DISTURBS,
            ),
            FaultKind::Crash => {
                for n in &fault.nodes {
                    open(self.node.entry((n.clone(), Cause::Down)).or_default(), at);
                }
                return;
            }
            // A pause is a host down for as long, as its peers see it.
            FaultKind::Pause => {
                for n in &fault.nodes {
                    open(self.node.entry((n.clone(), Cause::Down)).or_default(), at);
                }
                return;
            }
            FaultKind::Resume => {
                for n in &fault.nodes {
                    close(self.node.entry((n.clone(), Cause::Down)).or_default(), at);
                }
                return;
            }
            FaultKind::Restart => {
                for n in &fault.nodes {
                    let spans = self.node.entry((n.clone(), Cause::Down)).or_default();
                    open(spans, at);
                    close(spans, at);
                }
                return;
            }
            FaultKind::DiskEio | FaultKind::DiskFull | FaultKind::DiskFsyncFail => {
                for n in &fault.nodes {
                    open(self.node.entry((n.clone(), Cause::Disk)).or_default(), at);
                }
                return;
            }
            FaultKind::DiskHeal => {
                for n in &fault.nodes {
                    close(self.node.entry((n.clone(), Cause::Disk)).or_default(), at);
                }
                return;
            }
            FaultKind::Loss => {
                if fault.fail_rate.unwrap_or_default() > 0.0 {
                    open(&mut self.loss, at);
                } else {
                    close(&mut self.loss, at);
                }
                return;
            }
        };
        for x in &fault.a {
            for y in &fault.b {
                let spans = self.link.entry((pair(x, y), class)).or_default();
                if opens {
                    open(spans, at);
                } else {
                    close(spans, at);
                }
            }
        }
    }

    /// Whether `peer` or the link (`observer`, `peer`) was disturbed at any
    /// moment of `[from, until]`.
    pub fn excused(&self, observer: &str, peer: &str, from: Duration, until: Duration) -> bool {
        let hit = |spans: Option<&Vec<Span>>| {
            spans.is_some_and(|spans| spans.iter().any(|s| s.overlaps(from, until)))
        };
        let link = pair(observer, peer);
        hit(self.node.get(&(peer.to_owned(), Cause::Down)))
            || LINK_CLASSES
                .iter()
                .any(|class| hit(self.link.get(&(link.clone(), *class))))
    }

    /// Every disturbance of `host` itself (down, disk) and of its link with
    /// `peer` (network-wide loss included), ordered by cause and start.
    pub fn windows(&self, host: &str, peer: &str) -> Vec<Window> {
        let window = |cause: Cause| {
            move |span: &Span| Window {
                cause,
                from: span.from,
                until: span.until,
            }
        };
        let mut windows = Vec::new();
        for cause in [Cause::Down, Cause::Disk] {
            if let Some(spans) = self.node.get(&(host.to_owned(), cause)) {
                windows.extend(spans.iter().map(window(cause)));
            }
        }
        let link = pair(host, peer);
        for class in LINK_CLASSES {
            if let Some(spans) = self.link.get(&(link.clone(), class)) {
                windows.extend(spans.iter().map(window(Cause::Link)));
            }
        }
        windows.extend(self.loss.iter().map(window(Cause::Link)));
        windows.sort_by_key(|w| (w.cause, w.from));
        windows
    }
}

/// The kinds of link disturbance, as recorded.
const LINK_CLASSES: [&str; 5] = ["partition", "oneway", "hold", "loss", "latency"];

/// One line describing `fault`.
pub fn describe(fault: &Fault) -> String {
    let kind = fault.kind.name();
    match fault.kind {
        FaultKind::Crash
        | FaultKind::Restart
        | FaultKind::Pause
        | FaultKind::Resume
        | FaultKind::DiskEio
        | FaultKind::DiskFull
        | FaultKind::DiskFsyncFail
        | FaultKind::DiskHeal => format!("{kind} {}", fault.nodes.join(",")),
        FaultKind::Loss => format!("{kind} fail_rate={}", fault.fail_rate.unwrap_or_default()),
        FaultKind::LinkLoss => format!(
            "{kind} fail_rate={} [{}] x [{}]",
            fault.fail_rate.unwrap_or_default(),
            fault.a.join(","),
            fault.b.join(",")
        ),
        FaultKind::Latency => format!(
            "{kind} {}ms [{}] x [{}]",
            fault.latency_ms.unwrap_or_default(),
            fault.a.join(","),
            fault.b.join(",")
        ),
        FaultKind::PartitionOneway | FaultKind::RepairOneway => {
            format!("{kind} [{}] -> [{}]", fault.a.join(","), fault.b.join(","))
        }
        _ => format!("{kind} [{}] x [{}]", fault.a.join(","), fault.b.join(",")),
    }
}

/// Applies `fault` to `sim` now (a disk fault to the gateway's `disk`); a
/// resumed host's clock jumps over its pause unless `stopped_clocks` (the
/// `lease-act-past-deadline` sabotage: a clock that leaves the pause out).
pub fn apply(sim: &mut turmoil::Sim<'_>, fault: &Fault, disk: &SimDisk, stopped_clocks: bool) {
    // Links with a shared store are not turmoil's: `StoreLinks` applies them.
    let pairs: Vec<(&str, &str)> = fault
        .a
        .iter()
        .flat_map(|x| fault.b.iter().map(move |y| (x.as_str(), y.as_str())))
        .filter(|(x, y)| *x != STORE_HOST && *y != STORE_HOST)
        .collect();
    for &(x, y) in &pairs {
        match fault.kind {
            FaultKind::Partition => sim.partition(x, y),
            FaultKind::Repair => sim.repair(x, y),
            FaultKind::PartitionOneway => sim.partition_oneway(x, y),
            FaultKind::RepairOneway => sim.repair_oneway(x, y),
            FaultKind::Hold => sim.hold(x, y),
            FaultKind::Release => sim.release(x, y),
            FaultKind::Latency => sim.set_link_latency(
                x,
                y,
                Duration::from_millis(fault.latency_ms.unwrap_or_default()),
            ),
            FaultKind::LinkLoss => {
                sim.set_link_fail_rate(x, y, fault.fail_rate.unwrap_or_default())
            }
            _ => {}
        }
    }
    match fault.kind {
        FaultKind::Crash => fault.nodes.iter().for_each(|n| sim.crash(n.as_str())),
        FaultKind::Restart => fault.nodes.iter().for_each(|n| sim.bounce(n.as_str())),
        FaultKind::Pause => fault.nodes.iter().for_each(|n| sim.pause(n.as_str())),
        FaultKind::Resume if stopped_clocks => fault
            .nodes
            .iter()
            .for_each(|n| sim.resume_with_stopped_clock(n.as_str())),
        FaultKind::Resume => fault.nodes.iter().for_each(|n| sim.resume(n.as_str())),
        FaultKind::Loss => sim.set_fail_rate(fault.fail_rate.unwrap_or_default()),
        FaultKind::DiskEio => disk.inject(DiskFault::Eio),
        FaultKind::DiskFull => disk.inject(DiskFault::Full),
        FaultKind::DiskFsyncFail => disk.inject(DiskFault::FsyncFail),
        FaultKind::DiskHeal => disk.heal(),
        _ => {}
    }
}
