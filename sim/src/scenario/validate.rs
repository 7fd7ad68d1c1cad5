//! Validation of a scenario beyond its syntax: workloads, faults and invariants
//! must fit together before anything runs.

use std::collections::BTreeSet;
use std::time::Duration;

use super::format::{
    receiver_name, secs, FaultKind, Scenario, CHANNEL_HOST, CLIENT_HOST, DHT_CLIENT_HOST,
    GATEWAY_HOST,
};
use super::ScenarioError;
use crate::cluster::SAMPLE_INTERVAL;
use crate::workload::leases_spec::STORE_HOST;

fn err<T>(message: impl Into<String>) -> Result<T, ScenarioError> {
    Err(ScenarioError(message.into()))
}

fn finite_nonneg(what: &str, v: f64) -> Result<(), ScenarioError> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        err(format!("{what} must be a finite number >= 0, got {v}"))
    }
}

fn rate(what: &str, v: f64) -> Result<(), ScenarioError> {
    if (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        err(format!("{what} must be within 0..=1, got {v}"))
    }
}

/// A workload's section, whether the file has it, and the invariants that judge
/// it, each with whether the file asks for it.
type Workload<'a> = (&'a str, bool, &'a [(bool, &'a str)]);

impl Scenario {
    /// Checks everything a run relies on; the error names the offending key.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        finite_nonneg("duration_s", self.duration_s)?;
        if self.duration_s <= 0.0 || self.duration_s > 3_600.0 {
            return err(format!(
                "duration_s must be in (0, 3600], got {}",
                self.duration_s
            ));
        }
        if !(1..=16).contains(&self.test_seeds) {
            return err(format!(
                "test_seeds must be in 1..=16, got {}",
                self.test_seeds
            ));
        }
        if self.swarm_seeds_max == Some(0) {
            return err("swarm_seeds_max must be at least 1");
        }
        if self.cluster.nodes > 1_000 {
            return err(format!(
                "cluster.nodes must be at most 1000, got {}",
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
        self.validate_workloads()?;
        if self.security.outsiders > 16
            || self.security.rogue_workers > 16
            || self.security.flood_per_s > 10_000
        {
            return err(
                "security.outsiders and rogue_workers must be at most 16, flood_per_s at most 10000",
            );
        }
        if self.boot.is_some() && self.cluster.nodes == 0 {
            return err("[boot] needs membership nodes ([cluster] nodes) to introduce");
        }
        if self.boot.is_some() && (self.security.outsiders > 0 || self.security.tap) {
            // Outsiders and the tap find the cluster by multicast, which a boot
            // cluster does not use: they would attack nothing.
            return err("[boot] cannot be combined with [security] outsiders or tap yet");
        }
        if self.security.rogue_workers > 0 && self.gateway.is_none() {
            return err("security.rogue_workers needs a [gateway]");
        }
        let hosts = self.hosts();
        if hosts.is_empty() {
            return err("nothing to simulate: give [cluster] nodes, [gateway] or [channel]");
        }
        self.validate_faults(&hosts)?;
        self.validate_invariants()
    }

    fn validate_workloads(&self) -> Result<(), ScenarioError> {
        if let Some(leases) = &self.leases {
            if let Some(problem) = leases.problem(self.duration_s) {
                return err(problem);
            }
            let alone = leases.hosts().len() == self.hosts().len();
            if !alone || self.pubsub.is_some() || self.records.is_some() {
                return err("[leases] runs alone: no other hosts or workloads in its file");
            }
            if let Some(fault) = self.faults.iter().find(|f| {
                f.kind.is_disk()
                    || (f.kind.takes_nodes() && f.nodes.iter().any(|n| n == STORE_HOST))
            }) {
                return err(format!(
                    "[leases]: the store (PostgreSQL's stand-in) neither crashes nor has a disk \
                     fault; {} refused",
                    fault.kind.name()
                ));
            }
        }
        if let Some(gateway) = &self.gateway {
            if gateway.workers == 0 || gateway.workers > 64 {
                return err(format!(
                    "gateway.workers must be in 1..=64, got {}",
                    gateway.workers
                ));
            }
            if gateway.slots == 0 || gateway.slots > 64 {
                return err(format!(
                    "gateway.slots must be in 1..=64, got {}",
                    gateway.slots
                ));
            }
        }
        if let Some(tasks) = &self.tasks {
            if self.gateway.is_none() {
                return err("[tasks] needs a [gateway] to submit to");
            }
            if tasks.count == 0 || tasks.count > 1_000 {
                return err(format!(
                    "tasks.count must be in 1..=1000, got {}",
                    tasks.count
                ));
            }
            if !(tasks.submit_from_s.is_finite()
                && tasks.submit_from_s >= 0.0
                && tasks.submit_until_s >= tasks.submit_from_s
                && tasks.submit_until_s <= self.duration_s)
            {
                return err(format!(
                    "tasks: need 0 <= submit_from_s ({}) <= submit_until_s ({}) <= duration_s",
                    tasks.submit_from_s, tasks.submit_until_s
                ));
            }
            if tasks.repeats_max == 0 || tasks.repeats_max > 100 {
                return err(format!(
                    "tasks.repeats_max must be in 1..=100, got {}",
                    tasks.repeats_max
                ));
            }
            if tasks.cancel_percent > 100 {
                return err(format!(
                    "tasks.cancel_percent must be at most 100, got {}",
                    tasks.cancel_percent
                ));
            }
        }
        if let Some(channel) = &self.channel {
            if channel.senders == 0 || channel.receivers == 0 {
                return err("channel: needs at least one sender and one receiver");
            }
            if channel.senders > 64 || channel.receivers > 64 || channel.capacity > 1_024 {
                return err("channel: at most 64 senders, 64 receivers, capacity 1024");
            }
            if !(channel.send_until_s > 0.0 && channel.send_until_s <= self.duration_s) {
                return err(format!(
                    "channel.send_until_s must be in (0, duration_s], got {}",
                    channel.send_until_s
                ));
            }
        }
        if let Some(records) = &self.records {
            if self.cluster.nodes == 0 {
                return err("[records] needs membership nodes ([cluster] nodes)");
            }
            if records.count == 0 || records.count > 1_000 {
                return err(format!(
                    "records.count must be in 1..=1000, got {}",
                    records.count
                ));
            }
            if records.payload_bytes == 0 || records.payload_bytes > 4_096 {
                return err("records.payload_bytes must be in 1..=4096");
            }
            if !(records.put_from_s.is_finite()
                && records.put_from_s >= 0.0
                && records.put_until_s >= records.put_from_s
                && records.put_until_s <= self.duration_s)
            {
                return err("records: need 0 <= put_from_s <= put_until_s <= duration_s");
            }
            if !(records.republish_every_s.is_finite() && records.republish_every_s >= 0.1) {
                return err("records.republish_every_s must be at least 0.1");
            }
            let mut last = records.put_until_s;
            if records.read_at_s.is_empty() {
                return err("records.read_at_s needs at least one read");
            }
            for &at in &records.read_at_s {
                if !(at.is_finite() && at >= last && at < self.duration_s) {
                    return err(format!(
                        "records.read_at_s must be in order, after put_until_s and before \
                         duration_s, got {at}"
                    ));
                }
                last = at;
            }
        }
        if let Some(anchors) = &self.anchors {
            if self.cluster.nodes == 0 {
                return err("[anchors] needs membership nodes ([cluster] nodes)");
            }
            if anchors.clients == 0
                || anchors.clients > 64
                || anchors.keys == 0
                || anchors.keys > 64
            {
                return err("anchors: clients and keys must be in 1..=64");
            }
            if anchors.interval_ms < 10 || anchors.set_percent > 100 {
                return err("anchors: interval_ms must be >= 10, set_percent at most 100");
            }
        }
        if let Some(pubsub) = &self.pubsub {
            if self.cluster.nodes == 0 {
                return err("[pubsub] needs membership nodes ([cluster] nodes)");
            }
            if pubsub.interval_ms < 10 {
                return err(format!(
                    "pubsub.interval_ms must be >= 10, got {}",
                    pubsub.interval_ms
                ));
            }
        }
        Ok(())
    }

    fn validate_faults(&self, hosts: &BTreeSet<String>) -> Result<(), ScenarioError> {
        let mut running = hosts.clone();
        let mut last = 0.0;
        let mut disk_fault: Option<FaultKind> = None;
        let receivers: BTreeSet<String> = self
            .channel
            .as_ref()
            .map(|c| (0..c.receivers).map(receiver_name).collect())
            .unwrap_or_default();
        for (i, fault) in self.faults.iter().enumerate() {
            let at = format!("faults[{i}] ({} at {}s)", fault.kind.name(), fault.at_s);
            if !(fault.at_s.is_finite() && fault.at_s >= 0.0) {
                return err(format!("{at}: at_s must be a finite number >= 0"));
            }
            if fault.at_s < last {
                return err(format!("{at}: faults must be in time order"));
            }
            if fault.at_s > self.duration_s {
                return err(format!("{at}: after duration_s {}", self.duration_s));
            }
            last = fault.at_s;
            if fault.kind.is_disk() {
                if self.gateway.is_none() {
                    return err(format!(
                        "{at}: disk faults act on the gateway's disk and need a [gateway] section"
                    ));
                }
                if fault.nodes != [GATEWAY_HOST] {
                    return err(format!(
                        "{at}: disk faults need nodes = [\"{GATEWAY_HOST}\"] (only the gateway \
                         has a disk), got {:?}",
                        fault.nodes
                    ));
                }
                match (fault.kind, disk_fault) {
                    (FaultKind::DiskHeal, _) => disk_fault = None,
                    (_, Some(armed)) => {
                        return err(format!(
                            "{at}: the gateway's disk already has {} armed: disk_heal first",
                            armed.name()
                        ))
                    }
                    (kind, None) => disk_fault = Some(kind),
                }
            }
            for name in fault.a.iter().chain(&fault.b).chain(&fault.nodes) {
                if !hosts.contains(name) {
                    return err(format!(
                        "{at}: unknown host {name:?} (this scenario has {})",
                        describe_hosts(hosts)
                    ));
                }
            }
            let link = fault.kind.is_link();
            let node = fault.kind.takes_nodes();
            if link && (fault.a.is_empty() || fault.b.is_empty()) {
                return err(format!("{at}: needs non-empty `a` and `b`"));
            }
            if link && fault.a.iter().any(|x| fault.b.contains(x)) {
                return err(format!("{at}: a host is on both sides"));
            }
            if !link && (!fault.a.is_empty() || !fault.b.is_empty()) {
                return err(format!("{at}: `a`/`b` only apply to link faults"));
            }
            if node && fault.nodes.is_empty() {
                return err(format!("{at}: needs non-empty `nodes`"));
            }
            if !node && !fault.nodes.is_empty() {
                return err(format!(
                    "{at}: `nodes` only applies to crash, restart, pause and disk faults"
                ));
            }
            let pauses = matches!(fault.kind, FaultKind::Pause | FaultKind::Resume);
            if pauses && self.leases.is_none() {
                return err(format!(
                    "{at}: pause and resume are for [leases] gateways only (turmoil has no pause)"
                ));
            }
            let takes_rate = matches!(fault.kind, FaultKind::Loss | FaultKind::LinkLoss);
            match (takes_rate, fault.fail_rate) {
                (true, Some(v)) => rate(&format!("{at}: fail_rate"), v)?,
                (true, None) => return err(format!("{at}: needs `fail_rate`")),
                (false, Some(_)) => {
                    return err(format!(
                        "{at}: `fail_rate` only applies to loss and link_loss"
                    ))
                }
                _ => {}
            }
            match (fault.kind == FaultKind::Latency, fault.latency_ms) {
                (true, None) => return err(format!("{at}: needs `latency_ms`")),
                (true, Some(ms)) if ms > 60_000 => {
                    return err(format!("{at}: latency_ms must be at most 60000"))
                }
                (false, Some(_)) => {
                    return err(format!("{at}: `latency_ms` only applies to latency"))
                }
                _ => {}
            }
            // Hosts whose loss would break a workload's own assumptions, not the
            // system's guarantees.
            for name in &fault.nodes {
                let driver = name == CLIENT_HOST
                    || name == DHT_CLIENT_HOST
                    || name.starts_with("aclient-")
                    || name == CHANNEL_HOST
                    || name.starts_with("sender-")
                    || name.starts_with("receiver-");
                if driver {
                    return err(format!(
                        "{at}: {name} cannot crash: it drives a workload (or holds the \
                         channel's values in memory)"
                    ));
                }
            }
            let cuts = matches!(
                fault.kind,
                FaultKind::Partition | FaultKind::PartitionOneway | FaultKind::LinkLoss
            );
            if cuts {
                if let Some(r) = fault
                    .a
                    .iter()
                    .chain(&fault.b)
                    .find(|h| receivers.contains(*h))
                {
                    return err(format!(
                        "{at}: {r} may only be held, not cut off: a receive reply lost on a \
                         cut link loses its value (the channel's documented limit)"
                    ));
                }
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
        Ok(())
    }

    fn validate_invariants(&self) -> Result<(), ScenarioError> {
        let inv = &self.invariants;
        let workloads: [Workload<'_>; 9] = [
            (
                "[leases]",
                self.leases.is_some(),
                &[
                    (inv.lease_one_terminal, "lease_one_terminal"),
                    (inv.lease_runs_once, "lease_runs_once"),
                    (inv.lease_cancel_stops_runs, "lease_cancel_stops_runs"),
                    (inv.lease_valid_when_acting, "lease_valid_when_acting"),
                    (
                        inv.lease_tasks_final_within_s.is_some(),
                        "lease_tasks_final_within_s",
                    ),
                    (
                        inv.lease_takeover_within_s.is_some(),
                        "lease_takeover_within_s",
                    ),
                ],
            ),
            (
                "[records]",
                self.records.is_some(),
                &[
                    (inv.records_intact, "records_intact"),
                    (inv.records_survive, "records_survive"),
                ],
            ),
            (
                "[anchors]",
                self.anchors.is_some(),
                &[
                    (inv.anchors_linearizable, "anchors_linearizable"),
                    (inv.anchors_available, "anchors_available"),
                    (
                        inv.anchors_reachable_within_s.is_some(),
                        "anchors_reachable_within_s",
                    ),
                ],
            ),
            (
                "[security] rogue_workers and [tasks]",
                self.security.rogue_workers > 0 && self.tasks.is_some(),
                &[(inv.forgeries_attributed, "forgeries_attributed")],
            ),
            (
                "[security] outsiders or tap",
                self.security.outsiders > 0 || self.security.tap,
                &[(inv.outsiders_excluded, "outsiders_excluded")],
            ),
            (
                "[cluster] nodes",
                self.cluster.nodes > 0,
                &[
                    (inv.no_false_leave, "no_false_leave"),
                    (
                        inv.views_complete_within_s.is_some(),
                        "views_complete_within_s",
                    ),
                ],
            ),
            (
                "[tasks]",
                self.tasks.is_some(),
                &[
                    (inv.no_task_lost, "no_task_lost"),
                    (inv.one_terminal_status, "one_terminal_status"),
                    (inv.cancel_stops_runs, "cancel_stops_runs"),
                    (inv.history_checked, "history_checked"),
                    (inv.refusals_explained, "refusals_explained"),
                    (inv.runs_finish_within_s.is_some(), "runs_finish_within_s"),
                ],
            ),
            (
                "[channel]",
                self.channel.is_some(),
                &[
                    (inv.channel_exactly_once, "channel_exactly_once"),
                    (inv.channel_order, "channel_order"),
                    (
                        inv.channel_drains_within_s.is_some(),
                        "channel_drains_within_s",
                    ),
                ],
            ),
            (
                "[pubsub]",
                self.pubsub.is_some(),
                &[
                    (inv.pubsub_integrity, "pubsub_integrity"),
                    (
                        inv.pubsub_delivery_within_s.is_some(),
                        "pubsub_delivery_within_s",
                    ),
                ],
            ),
        ];
        for (section, present, invariants) in workloads {
            if let Some((_, what)) = invariants.iter().find(|(asked, _)| *asked && !present) {
                return err(format!("invariants.{what} needs a {section} workload"));
            }
        }

        let quiet = self.quiet_from();
        let end = secs(self.duration_s);
        let bound = |what: &str, from: Duration, bound_s: Option<f64>, extra: Duration| {
            let Some(b) = bound_s else { return Ok(()) };
            if !(b.is_finite() && b >= 0.0) {
                return err(format!("invariants.{what} must be a finite number >= 0"));
            }
            let needed = from + secs(b) + extra;
            if needed > end {
                return err(format!(
                    "duration_s {} is too short: {what} needs the run to last until {:.3}s",
                    self.duration_s,
                    needed.as_secs_f64()
                ));
            }
            Ok(())
        };
        bound(
            "views_complete_within_s",
            quiet,
            inv.views_complete_within_s,
            SAMPLE_INTERVAL,
        )?;
        if let Some(tasks) = &self.tasks {
            let last_due = Duration::from_millis(tasks.last_due_ms());
            bound(
                "runs_finish_within_s",
                quiet.max(last_due),
                inv.runs_finish_within_s,
                Duration::from_secs(1),
            )?;
        }
        if let Some(leases) = &self.leases {
            bound(
                "lease_tasks_final_within_s",
                quiet.max(secs(leases.submit_until_s)),
                inv.lease_tasks_final_within_s,
                Duration::ZERO,
            )?;
            bound(
                "lease_takeover_within_s",
                Duration::ZERO,
                inv.lease_takeover_within_s,
                Duration::ZERO,
            )?;
        }
        if let Some(channel) = &self.channel {
            bound(
                "channel_drains_within_s",
                quiet.max(secs(channel.send_until_s)),
                inv.channel_drains_within_s,
                Duration::from_millis(200),
            )?;
        }
        // Operations invoked in [quiet + b, end - 1 s] are judged: some must be.
        bound(
            "anchors_reachable_within_s",
            quiet,
            inv.anchors_reachable_within_s,
            Duration::from_secs(2),
        )?;
        // Messages published in [quiet + b, end - b] are judged: that window
        // must exist.
        bound(
            "pubsub_delivery_within_s",
            quiet,
            inv.pubsub_delivery_within_s.map(|b| 2.0 * b),
            Duration::from_secs(1),
        )?;
        Ok(())
    }
}

fn describe_hosts(hosts: &BTreeSet<String>) -> String {
    let mut names: Vec<&str> = hosts
        .iter()
        .filter(|h| !h.starts_with("node-"))
        .map(String::as_str)
        .collect();
    let nodes = hosts.iter().filter(|h| h.starts_with("node-")).count();
    let range;
    if nodes > 0 {
        range = format!("node-000..node-{:03}", nodes - 1);
        names.insert(0, &range);
    }
    names.join(", ")
}
