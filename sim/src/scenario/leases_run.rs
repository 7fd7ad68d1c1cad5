//! The runner of `[leases]` scenarios: the seeded event driver of
//! [`crate::workload::leases`] under the scenario's faults, then the checks.

use super::faults::describe;
use super::format::{secs, Scenario};
use super::verdict::{stamp, Verdict};
use super::ScenarioError;
use crate::sabotage::Sabotage;
use crate::workload::leases::simulate;
use crate::workload::leases_check::judge;
use crate::Trace;

/// turmoil's default random latency cap, kept for the same meaning of
/// `[network] max_latency_ms`.
const MAX_LATENCY_MS_DEFAULT: u64 = 100;

/// Set, `ww-sim run` prints a `[leases]` run's event trace (every store
/// operation, gateway action and fault, in order) on stderr.
pub const TRACE_ENV: &str = "WW_SIM_LEASE_TRACE";

/// Runs a `[leases]` scenario under `seed`, with `sabotage` armed (the lease
/// bugs are made by the simulation's clocks and store; any other changes
/// nothing here).
pub(super) fn run(
    scenario: &Scenario,
    seed: u64,
    sabotage: Option<Sabotage>,
) -> Result<Verdict, ScenarioError> {
    let spec = scenario
        .leases
        .as_ref()
        .ok_or_else(|| ScenarioError("not a [leases] scenario".into()))?;
    let end = secs(scenario.duration_s);
    let log = simulate(
        spec,
        &scenario.faults,
        end.as_millis() as u64,
        scenario
            .network
            .max_latency_ms
            .unwrap_or(MAX_LATENCY_MS_DEFAULT),
        scenario.network.fail_rate,
        seed,
        sabotage,
    );
    let mut verdict = Verdict::default();
    for fault in &scenario.faults {
        verdict.timeline.push(format!(
            "{} fault {}",
            stamp(secs(fault.at_s)),
            describe(fault)
        ));
    }
    if std::env::var_os(TRACE_ENV).is_some() {
        for line in &log.trace {
            eprintln!("{line}");
        }
    }
    let trace = Trace::new();
    for line in &log.trace {
        trace.record(line.as_str());
    }
    let findings = judge(&log, spec.lease_ms);
    let inv = &scenario.invariants;
    let ms = |s: f64| (s * 1e3) as u64;
    if inv.lease_one_terminal {
        verdict.record(end, findings.one_terminal());
    }
    if inv.lease_runs_once {
        verdict.record(end, findings.runs_once());
    }
    if inv.lease_cancel_stops_runs {
        verdict.record(end, findings.cancel_stops_runs());
    }
    if inv.lease_valid_when_acting {
        verdict.record(end, findings.valid_when_acting());
    }
    if let Some(bound) = inv.lease_tasks_final_within_s {
        let quiet = scenario.quiet_from().as_millis() as u64;
        verdict.record(end, findings.tasks_final_within(quiet, ms(bound)));
    }
    if let Some(bound) = inv.lease_takeover_within_s {
        verdict.record(end, findings.takeover_within(ms(bound)));
    }
    verdict.simulated = end;
    verdict.digest = trace.digest();
    Ok(verdict)
}
