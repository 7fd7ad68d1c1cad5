//! Validation of the fault schedule: in time order, on hosts the scenario
//! has, each with the parameters its kind takes.

use std::collections::BTreeSet;

use super::{describe_hosts, err, rate, ScenarioError};
use crate::scenario::format::{
    gateway_name, receiver_name, Fault, FaultKind, Scenario, CHANNEL_HOST, CLIENT_HOST,
    DHT_CLIENT_HOST, GATEWAY_HOST,
};

impl Scenario {
    /// The fault schedule against `hosts`, the scenario's hosts.
    pub(super) fn validate_faults(&self, hosts: &BTreeSet<String>) -> Result<(), ScenarioError> {
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
                disk_fault = self.validate_disk_fault(&at, fault, disk_fault)?;
            }
            validate_fault_hosts(&at, fault, hosts)?;
            self.validate_fault_parameters(&at, fault)?;
            validate_fault_targets(&at, fault, &receivers)?;
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

    /// A disk fault acts on the gateway's disk, one armed at a time (until a
    /// `disk_heal`); the fault armed after it.
    fn validate_disk_fault(
        &self,
        at: &str,
        fault: &Fault,
        armed: Option<FaultKind>,
    ) -> Result<Option<FaultKind>, ScenarioError> {
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
        match (fault.kind, armed) {
            (FaultKind::DiskHeal, _) => Ok(None),
            (_, Some(armed)) => err(format!(
                "{at}: the gateway's disk already has {} armed: disk_heal first",
                armed.name()
            )),
            (kind, None) => Ok(Some(kind)),
        }
    }

    /// Pause and resume only for gateways (`[leases]`, or `[gateway]`'s
    /// hosts); a rate for loss faults, a latency for latency faults, and
    /// neither elsewhere.
    fn validate_fault_parameters(&self, at: &str, fault: &Fault) -> Result<(), ScenarioError> {
        let pauses = matches!(fault.kind, FaultKind::Pause | FaultKind::Resume);
        let gateways: Vec<String> = (0..self.gateway.as_ref().map_or(0, |g| g.gateways))
            .map(gateway_name)
            .collect();
        let on_gateways = fault.nodes.iter().all(|n| gateways.contains(n));
        if pauses && self.leases.is_none() && !on_gateways {
            return err(format!(
                "{at}: pause and resume are for gateways only ([leases] gateways, or the \
                 [gateway] section's hosts), got {:?}",
                fault.nodes
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
            (false, Some(_)) => return err(format!("{at}: `latency_ms` only applies to latency")),
            _ => {}
        }
        Ok(())
    }
}

/// A fault names known hosts, in the fields its kind takes.
fn validate_fault_hosts(
    at: &str,
    fault: &Fault,
    hosts: &BTreeSet<String>,
) -> Result<(), ScenarioError> {
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
    Ok(())
}

/// Hosts whose loss would break a workload's own assumptions, not the
/// system's guarantees, are never crashed; a channel's receivers are never cut off.
fn validate_fault_targets(
    at: &str,
    fault: &Fault,
    receivers: &BTreeSet<String>,
) -> Result<(), ScenarioError> {
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
    Ok(())
}
