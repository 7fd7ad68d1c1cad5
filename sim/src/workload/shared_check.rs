//! The lease invariants of real gateways sharing one store, judged on every
//! run they dispatched (each gateway's "run started" event, with the worker
//! it went to: a worker registers with one gateway only, so the worker names
//! the gateway) against the store's lease timeline (every registration,
//! renewal and resignation the store applied, on its clock).

use std::collections::BTreeMap;

use super::tasks::{LeaseTimeline, TaskObservations};
use crate::scenario::verdict::{Check, Class};

/// One run a gateway handed to a worker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dispatch {
    /// Simulated ms.
    pub at_ms: u64,
    /// The task.
    pub task: String,
    /// The run's index.
    pub index: u64,
    /// The attempt.
    pub attempt: u64,
    /// The gateway that dispatched it (its host name).
    pub gateway: String,
}

/// The dispatches in `lines` (the trace's run-start lines), each attributed
/// to the gateway of its worker by `gateway_of_worker` (worker peer id to
/// gateway host); a line that does not parse, or names an unknown worker,
/// is returned as an error line (the checks then fail: the log format
/// changed and they would see nothing).
pub fn dispatches(
    lines: &[String],
    gateway_of_worker: &BTreeMap<String, String>,
) -> (Vec<Dispatch>, Vec<String>) {
    let mut found = Vec::with_capacity(lines.len());
    let mut unreadable = Vec::new();
    for line in lines {
        match parse(line, gateway_of_worker) {
            Some(dispatch) => found.push(dispatch),
            None => unreadable.push(format!("unreadable run-start line: {line}")),
        }
    }
    (found, unreadable)
}

fn parse(line: &str, gateway_of_worker: &BTreeMap<String, String>) -> Option<Dispatch> {
    let stamp = line.trim_start().split("ms ").next()?;
    let at_ms = stamp.parse::<f64>().ok()? as u64;
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
    };
    Some(Dispatch {
        at_ms,
        task: field("task")?.to_string(),
        index: field("index")?.parse().ok()?,
        attempt: field("attempt")?.parse().ok()?,
        gateway: gateway_of_worker.get(field("worker")?)?.clone(),
    })
}

/// Lines shown per violated check (the rest are counted).
const SHOWN_MAX: usize = 8;

fn shown(mut wrong: Vec<String>) -> Vec<String> {
    if wrong.len() > SHOWN_MAX {
        let more = wrong.len() - SHOWN_MAX;
        wrong.truncate(SHOWN_MAX);
        wrong.push(format!("... and {more} more"));
    }
    wrong
}

/// Safety `lease_valid_when_acting`: a gateway dispatches a run only while
/// its lease is live at the store.
pub fn valid_when_acting(
    dispatches: &[Dispatch],
    unreadable: &[String],
    leases: &LeaseTimeline,
) -> Check {
    let mut wrong = unreadable.to_vec();
    for d in dispatches {
        if !leases.live(&d.gateway, d.at_ms) {
            let term = leases.term_at(&d.gateway, d.at_ms);
            wrong.push(format!(
                "{}/{} attempt {}: dispatched by {} at {} ms, its lease not live at the store \
                 (registration, live until: {term:?})",
                d.task, d.index, d.attempt, d.gateway, d.at_ms
            ));
        }
    }
    let summary = format!("{} runs dispatched", dispatches.len());
    Check::new(
        "lease_valid_when_acting",
        Class::Safety,
        shown(wrong),
        summary,
    )
}

/// Safety `lease_one_owner_acting`: no gateway dispatches a task while
/// another gateway that dispatched it still holds the registration it did
/// so under (a split brain: two owners acting on one task).
pub fn one_owner_acting(
    dispatches: &[Dispatch],
    unreadable: &[String],
    leases: &LeaseTimeline,
) -> Check {
    let mut wrong = unreadable.to_vec();
    // Per task, the latest dispatch by each gateway, with its epoch then.
    let mut acting: BTreeMap<&str, BTreeMap<&str, (u64, Option<u64>)>> = BTreeMap::new();
    for d in dispatches {
        let epoch = leases.term_at(&d.gateway, d.at_ms).map(|(epoch, _)| epoch);
        let owners = acting.entry(&d.task).or_default();
        for (other, (at_ms, other_epoch)) in owners.iter() {
            if *other == d.gateway {
                continue;
            }
            let same_term = leases.term_at(other, d.at_ms).map(|(e, _)| e) == *other_epoch;
            if same_term && leases.live(other, d.at_ms) {
                wrong.push(format!(
                    "{}/{}: dispatched by {} at {} ms while {} (which dispatched it at \
                     {at_ms} ms) still held that lease",
                    d.task, d.index, d.gateway, d.at_ms, other
                ));
            }
        }
        owners.insert(&d.gateway, (d.at_ms, epoch));
    }
    let handed_over = acting.values().filter(|owners| owners.len() > 1).count();
    let summary = format!(
        "{} runs dispatched, {} tasks, {handed_over} of them by more than one gateway",
        dispatches.len(),
        acting.len()
    );
    Check::new(
        "lease_one_owner_acting",
        Class::Safety,
        shown(wrong),
        summary,
    )
}

/// Safety `lease_cancel_stops_runs`: no gateway dispatches a run of a task
/// after a cancel of it was acknowledged with status `cancelled`.
pub fn cancel_stops_dispatch(obs: &TaskObservations, dispatches: &[Dispatch]) -> Check {
    let mut wrong = Vec::new();
    let mut checked = 0;
    for (id, cancel) in &obs.cancels {
        if cancel.status != "cancelled" {
            continue;
        }
        checked += 1;
        for d in dispatches.iter().filter(|d| &d.task == id) {
            if d.at_ms > cancel.acked_ms {
                wrong.push(format!(
                    "{id}/{}: dispatched by {} at {} ms, after the cancel was acknowledged at {} ms",
                    d.index, d.gateway, d.at_ms, cancel.acked_ms
                ));
            }
        }
    }
    let summary = format!("{checked} cancelled tasks, no dispatch after their cancel");
    Check::new(
        "lease_cancel_stops_runs",
        Class::Safety,
        shown(wrong),
        summary,
    )
}

/// The shared-store invariants `inv` asks for, judged on the run's
/// run-start lines, the store's lease timeline and the client's view.
pub fn judge(
    inv: &crate::scenario::format::Invariants,
    run_starts: &[String],
    gateway_of_worker: &BTreeMap<String, String>,
    leases: &LeaseTimeline,
    obs: &TaskObservations,
) -> Vec<Check> {
    let (dispatches, unreadable) = dispatches(run_starts, gateway_of_worker);
    let mut checks = Vec::new();
    if inv.lease_valid_when_acting {
        checks.push(valid_when_acting(&dispatches, &unreadable, leases));
    }
    if inv.lease_one_owner_acting {
        checks.push(one_owner_acting(&dispatches, &unreadable, leases));
    }
    if inv.lease_cancel_stops_runs {
        checks.push(cancel_stops_dispatch(obs, &dispatches));
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workers() -> BTreeMap<String, String> {
        BTreeMap::from([("w0".to_string(), "gateway".to_string())])
    }

    #[test]
    fn a_run_start_line_is_read_and_a_changed_one_is_reported() {
        let line = "  18000.000ms DEBUG ww_sched::gateway::core::driver: run started \
                    task=task-002 index=1 attempt=0 worker=w0"
            .to_string();
        let (found, unreadable) = dispatches(&[line], &workers());
        assert!(unreadable.is_empty(), "{unreadable:?}");
        assert_eq!(
            found,
            [Dispatch {
                at_ms: 18_000,
                task: "task-002".into(),
                index: 1,
                attempt: 0,
                gateway: "gateway".into(),
            }]
        );
        let renamed = "  1.000ms DEBUG ww_sched::gateway::core::driver: run started \
                       job=task-002 index=1 attempt=0 worker=w0"
            .to_string();
        let (found, unreadable) = dispatches(&[renamed], &workers());
        assert!(found.is_empty());
        assert_eq!(unreadable.len(), 1);
        let check = valid_when_acting(&found, &unreadable, &LeaseTimeline::default());
        assert!(!check.held(), "an unreadable log fails the check");
    }
}
