//! Validation of the invariants asked for: each needs its workload, and a
//! time bound needs a run long enough to judge it.

use std::time::Duration;

use super::{err, ScenarioError};
use crate::cluster::SAMPLE_INTERVAL;
use crate::scenario::format::{secs, Scenario, StoreKind};

/// Refuses the first invariant of `invariants` asked for (`true`) without its
/// workload's `section` in the file (`present`).
fn needs(section: &str, present: bool, invariants: &[(bool, &str)]) -> Result<(), ScenarioError> {
    if let Some((_, what)) = invariants.iter().find(|(asked, _)| *asked && !present) {
        return err(format!("invariants.{what} needs a {section} workload"));
    }
    Ok(())
}

impl Scenario {
    /// The invariants asked for: their workloads, and time bounds that fit.
    pub(super) fn validate_invariants(&self) -> Result<(), ScenarioError> {
        self.validate_service_invariants()?;
        self.validate_cluster_invariants()?;
        self.validate_invariant_bounds()
    }

    /// The invariants of leases, records, anchors and security need their sections.
    fn validate_service_invariants(&self) -> Result<(), ScenarioError> {
        let inv = &self.invariants;
        let shared = self
            .gateway
            .as_ref()
            .is_some_and(|g| g.store == StoreKind::Shared);
        needs(
            "[leases] or shared-store [gateway] (store = \"shared\")",
            self.leases.is_some() || (shared && self.tasks.is_some()),
            &[
                (inv.lease_cancel_stops_runs, "lease_cancel_stops_runs"),
                (inv.lease_valid_when_acting, "lease_valid_when_acting"),
            ],
        )?;
        needs(
            "shared-store [gateway] (store = \"shared\") and [tasks]",
            shared && self.tasks.is_some(),
            &[(inv.lease_one_owner_acting, "lease_one_owner_acting")],
        )?;
        needs(
            "[leases]",
            self.leases.is_some(),
            &[
                (inv.lease_one_terminal, "lease_one_terminal"),
                (inv.lease_runs_once, "lease_runs_once"),
                (
                    inv.lease_tasks_final_within_s.is_some(),
                    "lease_tasks_final_within_s",
                ),
                (
                    inv.lease_takeover_within_s.is_some(),
                    "lease_takeover_within_s",
                ),
            ],
        )?;
        needs(
            "[records]",
            self.records.is_some(),
            &[
                (inv.records_intact, "records_intact"),
                (inv.records_survive, "records_survive"),
            ],
        )?;
        needs(
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
        )?;
        needs(
            "[security] rogue_workers and [tasks]",
            self.security.rogue_workers > 0 && self.tasks.is_some(),
            &[(inv.forgeries_attributed, "forgeries_attributed")],
        )?;
        needs(
            "[security] outsiders or tap",
            self.security.outsiders > 0 || self.security.tap,
            &[(inv.outsiders_excluded, "outsiders_excluded")],
        )?;
        Ok(())
    }

    /// The invariants of membership, tasks, the channel and pubsub need their sections.
    fn validate_cluster_invariants(&self) -> Result<(), ScenarioError> {
        let inv = &self.invariants;
        needs(
            "[cluster] nodes",
            self.cluster.nodes > 0,
            &[
                (inv.no_false_leave, "no_false_leave"),
                (
                    inv.views_complete_within_s.is_some(),
                    "views_complete_within_s",
                ),
            ],
        )?;
        needs(
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
        )?;
        needs(
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
        )?;
        needs(
            "[pubsub]",
            self.pubsub.is_some(),
            &[
                (inv.pubsub_integrity, "pubsub_integrity"),
                (
                    inv.pubsub_delivery_within_s.is_some(),
                    "pubsub_delivery_within_s",
                ),
            ],
        )?;
        Ok(())
    }

    /// Each time bound asked for must fit in the run, after the faults end.
    fn validate_invariant_bounds(&self) -> Result<(), ScenarioError> {
        let inv = &self.invariants;
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
