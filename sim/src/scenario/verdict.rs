//! The outcome of one run: each invariant checked, with its violations, the
//! timeline and the trace digest.

use std::time::Duration;

/// Whether an invariant is about safety (nothing bad happens) or liveness
/// (something good happens within a bound once faults stop).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// Must hold at every moment, faults or not.
    Safety,
    /// Must hold within a stated bound of the quiet phase.
    Liveness,
}

/// One invariant, checked on one run.
#[derive(Clone, Debug)]
pub struct Check {
    /// The invariant's key in `[invariants]`.
    pub invariant: &'static str,
    /// Safety or liveness.
    pub class: Class,
    /// What broke it, one line each (empty when it held).
    pub violations: Vec<String>,
    /// What was checked, in a few words (counts).
    pub summary: String,
}

impl Check {
    /// A check of `invariant` with its findings.
    pub fn new(
        invariant: &'static str,
        class: Class,
        violations: Vec<String>,
        summary: impl Into<String>,
    ) -> Check {
        Check {
            invariant,
            class,
            violations,
            summary: summary.into(),
        }
    }

    /// Whether the invariant held.
    pub fn held(&self) -> bool {
        self.violations.is_empty()
    }
}

/// The result of one run.
#[derive(Clone, Debug, Default)]
pub struct Verdict {
    /// Every invariant checked, in the order checked.
    pub checks: Vec<Check>,
    /// Safety violations, one line each, prefixed with the invariant.
    pub safety_violations: Vec<String>,
    /// Liveness violations, one line each, prefixed with the invariant.
    pub liveness_violations: Vec<String>,
    /// One line per fault and per invariant check, stamped with simulated time.
    pub timeline: Vec<String>,
    /// SHA-256 of the run's trace (every `tracing` event, faults included).
    pub digest: String,
    /// How much simulated time the run covered.
    pub simulated: Duration,
}

/// A timeline stamp.
pub(crate) fn stamp(at: Duration) -> String {
    format!("{:>9.3}s", at.as_secs_f64())
}

impl Verdict {
    /// Whether no invariant was broken.
    pub fn is_clean(&self) -> bool {
        self.safety_violations.is_empty() && self.liveness_violations.is_empty()
    }

    /// Records `check`, made at simulated time `at`, in the timeline and trace.
    pub fn record(&mut self, at: Duration, check: Check) {
        let result = if check.held() {
            format!("ok ({})", check.summary)
        } else {
            format!(
                "VIOLATED ({} violations; {})",
                check.violations.len(),
                check.summary
            )
        };
        tracing::info!(target: "ww_sim::scenario", invariant = check.invariant, %result, "check");
        self.timeline
            .push(format!("{} check {}: {result}", stamp(at), check.invariant));
        let list = match check.class {
            Class::Safety => &mut self.safety_violations,
            Class::Liveness => &mut self.liveness_violations,
        };
        list.extend(
            check
                .violations
                .iter()
                .map(|v| format!("{}: {v}", check.invariant)),
        );
        self.checks.push(check);
    }
}
