//! `[leases]`: several gateways over one linearizable store, run by the
//! seeded discrete-event driver in [`super::leases`].

use serde::Deserialize;
use ww_sched::lease::LeaseConfig;

/// Tasks a `[leases]` gateway claims at most per claim.
const CLAIM_MAX: usize = 8;

/// The store's host name in a `[leases]` scenario, and the name a
/// shared-store `[gateway]` scenario gives the gateways' store links.
pub const STORE_HOST: &str = "store";

/// Gateway `i`'s host name in a `[leases]` scenario.
pub fn lease_gateway_name(i: usize) -> String {
    format!("gw-{i}")
}

/// `[leases]`: hosts `store` and `gw-0` .. `gw-<n-1>`; a client submits tasks
/// through running gateways at seeded times and cancels some through others.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeasesSpec {
    /// How many gateways (1..=8).
    pub gateways: usize,
    /// How many tasks.
    pub tasks: usize,
    /// Submissions at seeded times in `[submit_from_s, submit_until_s]`.
    #[serde(default = "default_submit_from_s")]
    pub submit_from_s: f64,
    /// See `submit_from_s`.
    pub submit_until_s: f64,
    /// Each task has 1..=`runs_max` runs, all due at submission.
    #[serde(default = "default_runs_max")]
    pub runs_max: u32,
    /// A run takes `run_ms_min..=run_ms_max` on its worker.
    #[serde(default = "default_run_ms_min")]
    pub run_ms_min: u64,
    /// See `run_ms_min`.
    #[serde(default = "default_run_ms_max")]
    pub run_ms_max: u64,
    /// Share of runs that fail.
    #[serde(default = "default_fail_percent")]
    pub fail_percent: u32,
    /// Share of tasks cancelled, at a seeded moment within `2 * run_ms_max`
    /// of their submission, through a seeded gateway.
    #[serde(default = "default_cancel_percent")]
    pub cancel_percent: u32,
    /// Runs a gateway keeps in flight.
    #[serde(default = "default_slots")]
    pub slots: usize,
    /// The lease (`LeaseConfig::lease_ms`).
    #[serde(default = "default_lease_ms")]
    pub lease_ms: u64,
    /// The safety margin (`LeaseConfig::margin_ms`).
    #[serde(default = "default_margin_ms")]
    pub margin_ms: u64,
    /// The cancel poll and claim period (`LeaseConfig::poll_ms`).
    #[serde(default = "default_poll_ms")]
    pub poll_ms: u64,
    /// Each gateway's clock is offset from the store's by a seeded amount up
    /// to this (same rate): the protocol must not depend on agreeing clocks.
    #[serde(default = "default_clock_offset_ms_max")]
    pub clock_offset_ms_max: u64,
}

fn default_submit_from_s() -> f64 {
    1.0
}
fn default_runs_max() -> u32 {
    3
}
fn default_run_ms_min() -> u64 {
    200
}
fn default_run_ms_max() -> u64 {
    3_000
}
fn default_fail_percent() -> u32 {
    10
}
fn default_cancel_percent() -> u32 {
    20
}
fn default_slots() -> usize {
    4
}
fn default_lease_ms() -> u64 {
    10_000
}
fn default_margin_ms() -> u64 {
    LeaseConfig::default().margin_ms
}
fn default_poll_ms() -> u64 {
    1_000
}
fn default_clock_offset_ms_max() -> u64 {
    60_000
}

impl LeasesSpec {
    /// The gateways' protocol configuration.
    pub fn config(&self) -> LeaseConfig {
        LeaseConfig {
            lease_ms: self.lease_ms,
            margin_ms: self.margin_ms,
            renew_every_ms: self.lease_ms / 4,
            poll_ms: self.poll_ms,
            slots: self.slots,
            // Small claims: a busy gateway must not hoard the orphans of a
            // few dozen tasks.
            claim_max: CLAIM_MAX,
            ..LeaseConfig::default()
        }
    }

    /// Every host: the store and the gateways.
    pub fn hosts(&self) -> Vec<String> {
        std::iter::once(STORE_HOST.to_string())
            .chain((0..self.gateways).map(lease_gateway_name))
            .collect()
    }

    /// What is wrong with the section, if anything.
    pub fn problem(&self, duration_s: f64) -> Option<String> {
        if !(1..=8).contains(&self.gateways) {
            return Some(format!(
                "leases.gateways must be in 1..=8, got {}",
                self.gateways
            ));
        }
        if !(1..=5_000).contains(&self.tasks) {
            return Some(format!(
                "leases.tasks must be in 1..=5000, got {}",
                self.tasks
            ));
        }
        if !(self.submit_from_s.is_finite()
            && self.submit_from_s >= 0.0
            && self.submit_until_s >= self.submit_from_s
            && self.submit_until_s <= duration_s)
        {
            return Some("leases: need 0 <= submit_from_s <= submit_until_s <= duration_s".into());
        }
        if !(1..=100).contains(&self.runs_max) {
            return Some("leases.runs_max must be in 1..=100".into());
        }
        if self.run_ms_min == 0 || self.run_ms_max < self.run_ms_min {
            return Some("leases: need 0 < run_ms_min <= run_ms_max".into());
        }
        if self.fail_percent > 100 || self.cancel_percent > 100 {
            return Some("leases.fail_percent and cancel_percent must be at most 100".into());
        }
        if !(1..=64).contains(&self.slots) {
            return Some("leases.slots must be in 1..=64".into());
        }
        if self.lease_ms < 100 {
            return Some("leases: need lease_ms >= 100".into());
        }
        // The one timing rule of every gateway, simulated or shipped.
        self.config().check().err().map(|e| format!("leases: {e}"))
    }
}
