//! What the simulation supplies around the lease code, and the two deliberate
//! bugs it makes there (`--sabotage`): each gateway's clock, and the store.
//!
//! Neither bug is a switch in ww-sched: `lease-act-past-deadline` is a clock
//! fault the protocol assumes away, and `lease-start-cancelled` a store whose
//! start transaction lost its cancel check.

use ww_sched::lease::model::{Refusal, Reply, Request, Store};

/// A gateway's monotonic clock: the simulation's clock plus a fixed offset.
///
/// The protocol lets clocks be offset but needs them to advance at the same
/// rate (`LeaseConfig`). With `stops_when_paused` the clock breaks that: it
/// does not count the time its host was suspended, like a monotonic clock
/// that leaves out suspend (Linux's `CLOCK_MONOTONIC` next to
/// `CLOCK_BOOTTIME`). A gateway woken from a pause then thinks next to no
/// time passed, so its own deadline arithmetic lets it act on a reply it got
/// before the pause though the store let its lease go meanwhile:
/// `lease_valid_when_acting` must catch it.
#[derive(Clone, Copy, Debug)]
pub(super) struct LocalClock {
    offset_ms: u64,
    stops_when_paused: bool,
    /// Simulated time the clock did not count (pauses over).
    missed_ms: u64,
    /// When the current pause began, if paused.
    paused_at_ms: Option<u64>,
}

impl LocalClock {
    /// A clock `offset_ms` ahead of the simulation's; with
    /// `stops_when_paused`, one that leaves pauses out.
    pub(super) fn new(offset_ms: u64, stops_when_paused: bool) -> LocalClock {
        LocalClock {
            offset_ms,
            stops_when_paused,
            missed_ms: 0,
            paused_at_ms: None,
        }
    }

    /// The gateway's reading at simulated time `sim_ms`.
    pub(super) fn local(&self, sim_ms: u64) -> u64 {
        (sim_ms + self.offset_ms).saturating_sub(self.missed_ms)
    }

    /// The simulated time at which the gateway's clock reads `local_ms`.
    pub(super) fn sim(&self, local_ms: u64) -> u64 {
        (local_ms + self.missed_ms).saturating_sub(self.offset_ms)
    }

    /// The host was suspended at `sim_ms`.
    pub(super) fn pause(&mut self, sim_ms: u64) {
        self.paused_at_ms.get_or_insert(sim_ms);
    }

    /// The host resumed at `sim_ms`.
    pub(super) fn resume(&mut self, sim_ms: u64) {
        if let Some(at) = self.paused_at_ms.take() {
            if self.stops_when_paused {
                self.missed_ms += sim_ms.saturating_sub(at);
            }
        }
    }
}

/// The store as the simulation runs it: [`Store`]'s reference semantics,
/// or, with `starts_cancelled`, a store whose start transaction lost its
/// cancel check (a start of a run of a cancelled task, which the reference
/// refuses with [`Refusal::Cancelled`] after every other check passed, is
/// answered as started): `lease_cancel_stops_runs` must catch it.
#[derive(Clone, Debug)]
pub(super) struct SimStore {
    inner: Store,
    starts_cancelled: bool,
}

impl SimStore {
    /// A store whose leases last `lease_ms`.
    pub(super) fn new(lease_ms: u64, starts_cancelled: bool) -> SimStore {
        SimStore {
            inner: Store::new(lease_ms),
            starts_cancelled,
        }
    }

    /// Applies `request` atomically at the store's time `now_ms`.
    pub(super) fn apply(&mut self, now_ms: u64, request: &Request) -> Reply {
        let reply = self.inner.apply(now_ms, request);
        if !self.starts_cancelled {
            return reply;
        }
        match reply {
            Reply::Started(results) => Reply::Started(
                results
                    .into_iter()
                    .map(|(run, result)| {
                        // The reference checks the cancel before the attempt:
                        // the attempt check is still made here.
                        let newer = self.inner.task(run.task.as_str()).is_some_and(|row| {
                            row.runs
                                .get(&run.index)
                                .is_some_and(|slot| run.attempt > slot.attempt)
                        });
                        let result = match result {
                            Err(Refusal::Cancelled) if newer => Ok(()),
                            other => other,
                        };
                        (run, result)
                    })
                    .collect(),
            ),
            other => other,
        }
    }
}
