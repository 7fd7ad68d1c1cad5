//! Validation of a scenario beyond its syntax: workloads, faults and invariants
//! must fit together before anything runs.

mod fault_checks;
mod invariant_checks;
mod workload_checks;

use std::collections::BTreeSet;

use super::format::Scenario;
use super::ScenarioError;

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
}

/// The hosts, for an error message: the membership nodes as one range.
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
