//! Validation of each workload's section.

use super::{err, ScenarioError};
use crate::scenario::format::{Scenario, StoreKind, STORE_HOST};

impl Scenario {
    /// Every workload's section on its own.
    pub(super) fn validate_workloads(&self) -> Result<(), ScenarioError> {
        self.validate_leases()?;
        self.validate_gateway()?;
        self.validate_tasks()?;
        self.validate_channel()?;
        self.validate_records()?;
        self.validate_anchors()?;
        self.validate_pubsub()?;
        Ok(())
    }

    /// `[leases]` runs alone, and its store neither crashes nor has a disk fault.
    fn validate_leases(&self) -> Result<(), ScenarioError> {
        let Some(leases) = &self.leases else {
            return Ok(());
        };
        if let Some(problem) = leases.problem(self.duration_s) {
            return err(problem);
        }
        let alone = leases.hosts().len() == self.hosts().len();
        if !alone || self.pubsub.is_some() || self.records.is_some() {
            return err("[leases] runs alone: no other hosts or workloads in its file");
        }
        if let Some(fault) = self.faults.iter().find(|f| {
            f.kind.is_disk() || (f.kind.takes_nodes() && f.nodes.iter().any(|n| n == STORE_HOST))
        }) {
            return err(format!(
                "[leases]: the store (PostgreSQL's stand-in) neither crashes nor has a disk \
                 fault; {} refused",
                fault.kind.name()
            ));
        }
        Ok(())
    }

    /// `[gateway]`: its workers and slots.
    fn validate_gateway(&self) -> Result<(), ScenarioError> {
        let Some(gateway) = &self.gateway else {
            return Ok(());
        };
        if gateway.workers == 0 || gateway.workers > 64 {
            return err(format!(
                "gateway.workers must be in 1..=64, got {}",
                gateway.workers
            ));
        }
        if gateway.gateways == 0 || gateway.gateways > 8 {
            return err(format!(
                "gateway.gateways must be in 1..=8, got {}",
                gateway.gateways
            ));
        }
        if gateway.gateways > 1 && gateway.store != StoreKind::Shared {
            return err(
                "several gateways need store = \"shared\" (the embedded store is one gateway's)",
            );
        }
        if gateway.workers < gateway.gateways {
            return err(
                "every gateway needs a worker: gateway.workers must be at least gateway.gateways",
            );
        }
        let shared = gateway.store == StoreKind::Shared;
        if let Some(fault) = self.faults.iter().find(|f| {
            (shared && f.kind.is_disk())
                || (f.kind.takes_nodes() && f.nodes.iter().any(|n| n == STORE_HOST))
        }) {
            return err(format!(
                "[gateway]: the shared store is reached over links (partition, hold, link_loss \
                 with b = [\"{STORE_HOST}\"]); it has no node to crash and no disk: {} refused",
                fault.kind.name()
            ));
        }
        if gateway.slots == 0 || gateway.slots > 64 {
            return err(format!(
                "gateway.slots must be in 1..=64, got {}",
                gateway.slots
            ));
        }
        Ok(())
    }

    /// `[tasks]`: a gateway to submit to, counts and the submission window.
    fn validate_tasks(&self) -> Result<(), ScenarioError> {
        let Some(tasks) = &self.tasks else {
            return Ok(());
        };
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
        Ok(())
    }

    /// `[channel]`: its senders, receivers, capacity and sending window.
    fn validate_channel(&self) -> Result<(), ScenarioError> {
        let Some(channel) = &self.channel else {
            return Ok(());
        };
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
        Ok(())
    }

    /// `[records]`: membership nodes, counts, the put window and the reads after it.
    fn validate_records(&self) -> Result<(), ScenarioError> {
        let Some(records) = &self.records else {
            return Ok(());
        };
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
        Ok(())
    }

    /// `[anchors]`: membership nodes, clients, keys and pace.
    fn validate_anchors(&self) -> Result<(), ScenarioError> {
        let Some(anchors) = &self.anchors else {
            return Ok(());
        };
        if self.cluster.nodes == 0 {
            return err("[anchors] needs membership nodes ([cluster] nodes)");
        }
        if anchors.clients == 0 || anchors.clients > 64 || anchors.keys == 0 || anchors.keys > 64 {
            return err("anchors: clients and keys must be in 1..=64");
        }
        if anchors.interval_ms < 10 || anchors.set_percent > 100 {
            return err("anchors: interval_ms must be >= 10, set_percent at most 100");
        }
        Ok(())
    }

    /// `[pubsub]`: membership nodes and pace.
    fn validate_pubsub(&self) -> Result<(), ScenarioError> {
        let Some(pubsub) = &self.pubsub else {
            return Ok(());
        };
        if self.cluster.nodes == 0 {
            return err("[pubsub] needs membership nodes ([cluster] nodes)");
        }
        if pubsub.interval_ms < 10 {
            return err(format!(
                "pubsub.interval_ms must be >= 10, got {}",
                pubsub.interval_ms
            ));
        }
        Ok(())
    }
}
