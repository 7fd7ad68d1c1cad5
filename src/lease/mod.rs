//! Leases for several gateways sharing one linearizable store (issue 16, part 4).
//!
//! Leases are per gateway, ownership is per task. A gateway registers (a new
//! epoch), renews its lease every `lease_ms / 4`, and acts (acknowledges,
//! starts runs, claims) only until `sent_at + lease_ms - margin_ms` of its last
//! successful renewal, measured on its own clock from when it SENT that renewal:
//! the store set the expiry after that send, so the gateway stops before the
//! store lets anyone take its tasks. Every write names `(gateway, epoch)` and the
//! store refuses it unless that gateway still owns the task under a valid lease
//! (fencing). See `docs/ARCHITECTURE.md`, "Several gateways: leases".
//!
//! Everything here is sans-IO: no clock, no socket, no task. [`model::Store`] is
//! the reference semantics of the store (the PostgreSQL implementation mirrors
//! it); [`keeper::LeaseKeeper`] is a gateway's lease; [`gateway::LeaseGateway`]
//! is a gateway's tasks on top of it, turning time, client requests, store
//! replies and worker results into store requests and decisions.
//!
//! Wiring (as the simulation does, and the PostgreSQL gateway will): one
//! `LeaseGateway` per process, fed its monotonic clock in ms; call
//! `handle_timeout` when `poll_timeout` comes due, `submit` and `cancel` from
//! the API, `handle_reply` when a store transaction returns, `run_finished`
//! when a worker reports; after each call drain `poll_output`, running every
//! `Output::Send` as one transaction with [`model::Store::apply`]'s semantics
//! (the store's own `now()`), dispatching and stopping runs, and answering
//! clients.

pub mod gateway;
pub mod keeper;
pub mod model;

use serde::{Deserialize, Serialize};

/// A gateway's stable identity (its row in the store's gateway table).
pub type GatewayId = u32;
/// A gateway's registration count: a new epoch forgets every task it held.
pub type Epoch = u64;
/// A task's identity: the scheduler's, parsed like every other.
pub use crate::sched::TaskId;

/// The protocol's timing, in milliseconds of each party's own clock: one
/// rule for the sans-IO [`gateway::LeaseGateway`] and the shipped gateway on
/// PostgreSQL (`gateway::lease_keeping`), both keeping their lease with
/// [`keeper::LeaseKeeper`].
///
/// Clocks may be offset from each other but must advance at the same rate
/// (the margin absorbs the transit of a dispatch and any small drift).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseConfig {
    /// How long a registration or renewal keeps a gateway's lease at the store.
    pub lease_ms: u64,
    /// How long before its lease could end at the store a gateway stops acting.
    pub margin_ms: u64,
    /// How often a gateway renews (default `lease_ms / 4`).
    pub renew_every_ms: u64,
    /// How soon a renewal that failed (an error, not a refusal) is tried again.
    pub renew_retry_ms: u64,
    /// How often a gateway tries to claim orphaned tasks (the sans-IO gateway
    /// also asks then which of its tasks were cancelled).
    pub poll_ms: u64,
    /// How often the shipped gateway reads the cancels other gateways were
    /// asked for its tasks.
    pub cancel_poll_ms: u64,
    /// How often the shipped gateway compares the tasks the store says it
    /// owns with those it holds (a claim whose answer was lost leaves some
    /// unheld).
    pub owned_check_ms: u64,
    /// How soon after a failed claim the shipped gateway compares them: past
    /// the store's job deadline (6 s), so a claim that still committed has.
    pub owned_recheck_ms: u64,
    /// A request unanswered this long is given up (and retried if needed);
    /// lease requests are waited for `lease_ms - margin_ms`.
    pub request_timeout_ms: u64,
    /// A run whose start commit is answered later than this after it was sent
    /// is not dispatched; a canceller waits as long before acknowledging.
    pub dispatch_window_ms: u64,
    /// Runs a gateway keeps in flight (starting or on a worker) at once.
    pub slots: usize,
    /// Tasks a gateway claims at most per claim.
    pub claim_max: usize,
}

impl Default for LeaseConfig {
    /// A 10 s lease renewed every 2.5 s (every 250 ms after a failure);
    /// acting stops 3 s before the earliest expiry (the shipped gateway exits
    /// 1 s after it stops, inside the margin); claims every second, at most
    /// 256 tasks; cancels read every 250 ms; owned tasks compared every
    /// minute and 7 s after a failed claim.
    fn default() -> Self {
        LeaseConfig {
            lease_ms: 10_000,
            margin_ms: 3_000,
            renew_every_ms: 2_500,
            renew_retry_ms: 250,
            poll_ms: 1_000,
            cancel_poll_ms: 250,
            owned_check_ms: 60_000,
            owned_recheck_ms: 7_000,
            request_timeout_ms: 2_000,
            dispatch_window_ms: 1_000,
            slots: 8,
            claim_max: 256,
        }
    }
}

impl LeaseConfig {
    /// Whether the timing keeps the rule: positive intervals, renewals well
    /// within the lease, and a margin that leaves time for two renewals.
    pub fn check(&self) -> Result<(), String> {
        let intervals = [
            self.renew_every_ms,
            self.renew_retry_ms,
            self.poll_ms,
            self.cancel_poll_ms,
            self.owned_check_ms,
            self.owned_recheck_ms,
        ];
        if intervals.contains(&0) {
            return Err(
                "renew, retry, claim, cancel and owned-check intervals must be positive".into(),
            );
        }
        if self.margin_ms + 2 * self.renew_every_ms > self.lease_ms {
            return Err(format!(
                "lease of {} ms leaves no room for two renewals every {} ms and a margin of {} ms",
                self.lease_ms, self.renew_every_ms, self.margin_ms
            ));
        }
        Ok(())
    }

    /// The longest a crashed gateway's tasks wait before another gateway can
    /// claim them, plus one claim period: the lease, then the next poll.
    pub fn takeover_bound_ms(&self) -> u64 {
        self.lease_ms + self.poll_ms
    }

    /// The longest a run in flight keeps going after its task's cancel was
    /// committed, with the owner up and connected: one poll, the round trip
    /// left to the caller.
    pub fn cancel_stop_bound_ms(&self) -> u64 {
        self.poll_ms
    }
}

/// One run of a task.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RunRef {
    /// The task.
    pub task: TaskId,
    /// The run's index within the task, `0..runs`.
    pub index: u32,
    /// Which try of that run (from 1; each start is a new attempt).
    pub attempt: u32,
}

/// How a run ended on its worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RunOutcome {
    /// It succeeded.
    Succeeded,
    /// It failed.
    Failed,
}

#[cfg(test)]
mod tests {
    use super::LeaseConfig;

    #[test]
    fn the_default_timing_keeps_the_rule_and_a_tight_one_is_refused() {
        let config = LeaseConfig::default();
        assert_eq!(config.check(), Ok(()));
        assert_eq!(config.takeover_bound_ms(), 11_000);
        let tight = LeaseConfig {
            margin_ms: 6_000,
            ..config
        };
        assert!(tight.check().unwrap_err().contains("no room"));
        let zero = LeaseConfig {
            renew_every_ms: 0,
            ..config
        };
        assert!(zero.check().is_err());
    }
}
