//! Fuel and wall-clock accounting of one run, shared by the interpreter loop (between
//! fuel slices) and host calls (on every call), so a guest is stopped the same way
//! whether it spends its budget in instructions or inside WASI.

use super::error::{ErrorKind, ExecError};
use super::host::HostEnv;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Fuel handed out per slice; the deadline is checked between slices (a few ms of work).
pub const FUEL_SLICE: u64 = 4_000_000;

/// Fuel for a module's `start` section, which wasmi cannot pause to check the deadline.
pub const START_SECTION_FUEL: u64 = 100_000_000;

/// Fuel every host call costs before its bytes: its fixed work (dispatch, a clock
/// read for the deadline) takes about 70 ns, as long as about 64 guest instructions.
pub const HOST_CALL_FUEL: u64 = 64;

/// Fuel per byte of guest memory a host call reads or writes. Generating a random
/// byte takes 0.3-0.5 ns against about 1 ns per instruction, so this errs on the
/// side of charging more; bytes written to a full output buffer are charged too.
pub const HOST_FUEL_PER_BYTE: u64 = 1;

/// Bytes a host call handles between two checks of the deadline and cancellation,
/// so one call on a large buffer cannot outlast the wall-clock limit by much.
pub const HOST_CHUNK_BYTES: usize = 64 * 1024;

/// Fuel for `bytes` of guest memory touched by a host call.
pub(crate) fn bytes_fuel(bytes: u64) -> u64 {
    bytes.saturating_mul(HOST_FUEL_PER_BYTE)
}

/// Fuel for one host call touching `bytes` of guest memory.
pub(crate) fn call_fuel(bytes: u64) -> u64 {
    HOST_CALL_FUEL.saturating_add(bytes_fuel(bytes))
}

/// Hands out fuel in slices and says when the run must stop: fuel, deadline or cancel.
///
/// Fuel used is `granted` minus what is left in the store; functions here take the
/// store's fuel and return the new level, so the interpreter loop and host calls
/// (which see the store through a `Caller`) share one account.
pub(crate) struct Meter {
    fuel_max: u64,
    granted: u64,
    deadline_ns: u64,
    host: Arc<dyn HostEnv>,
    /// Set by the caller to stop the run at the next fuel slice or host call.
    cancel: Option<Arc<AtomicBool>>,
}

impl Meter {
    /// A meter whose deadline is `wall_time_ns` from now on `host`'s monotonic clock.
    pub(crate) fn new(
        fuel_max: u64,
        wall_time_ns: u64,
        host: Arc<dyn HostEnv>,
        cancel: Option<Arc<AtomicBool>>,
    ) -> Self {
        let deadline_ns = host.monotonic_ns().saturating_add(wall_time_ns);
        Self {
            fuel_max,
            granted: 0,
            deadline_ns,
            host,
            cancel,
        }
    }

    /// The run's fuel budget.
    pub(crate) fn fuel_max(&self) -> u64 {
        self.fuel_max
    }

    /// Records `fuel` as handed out in one piece (the start section's allowance).
    pub(crate) fn grant_all(&mut self, fuel: u64) {
        self.granted = fuel;
    }

    /// Takes back `fuel` that was handed out but is no longer in the store.
    pub(crate) fn give_back(&mut self, fuel: u64) {
        self.granted = self.granted.saturating_sub(fuel);
    }

    /// Fuel used so far, given what is `left` in the store.
    pub(crate) fn used(&self, left: u64) -> u64 {
        self.granted.saturating_sub(left)
    }

    /// Fails with `Cancelled` or `Deadline` if the run must stop now.
    pub(crate) fn check_stop(&self) -> Result<(), ExecError> {
        if self
            .cancel
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed))
        {
            return Err(ExecError::new(
                ErrorKind::Cancelled,
                "stopped at the caller's request",
            ));
        }
        if self.host.monotonic_ns() >= self.deadline_ns {
            return Err(ExecError::new(
                ErrorKind::Deadline,
                "wall-clock time limit exceeded",
            ));
        }
        Ok(())
    }

    fn exhausted(&self) -> ExecError {
        ExecError::new(
            ErrorKind::FuelExhausted,
            format!("fuel limit of {} exhausted", self.fuel_max),
        )
    }

    /// Adds a slice (at least `required`) to the `left` fuel, or says which limit is
    /// exhausted; returns the store's new fuel level.
    pub(crate) fn refill(&mut self, left: u64, required: u64) -> Result<u64, ExecError> {
        let budget = self.fuel_max.saturating_sub(self.granted);
        if budget == 0 || budget.saturating_add(left) < required {
            return Err(self.exhausted());
        }
        self.check_stop()?;
        let add = budget.min(FUEL_SLICE.max(required));
        self.granted += add;
        Ok(left.saturating_add(add))
    }

    /// Charges a host call `cost` fuel from the `left` in the store, first checking
    /// cancellation and the deadline; returns the store's new fuel level.
    ///
    /// A charge larger than what is left draws a new slice, as an instruction would.
    /// Nothing is charged when the call is refused, so the host must not do the work.
    pub(crate) fn charge(&mut self, left: u64, cost: u64) -> Result<u64, ExecError> {
        self.check_stop()?;
        if cost <= left {
            return Ok(left - cost);
        }
        let need = cost - left;
        let budget = self.fuel_max.saturating_sub(self.granted);
        if budget < need {
            return Err(self.exhausted());
        }
        let add = budget.min(FUEL_SLICE.max(need));
        self.granted += add;
        Ok(left + add - cost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::SeededHost;

    fn meter(fuel_max: u64) -> Meter {
        let host = Arc::new(SeededHost::new(0, Arc::new(|| 0)));
        Meter::new(fuel_max, 1_000, host, None)
    }

    #[test]
    fn charges_draw_slices_and_stop_at_the_budget() {
        let mut m = meter(10_000_000);
        m.grant_all(100);
        // Within what is left: no new fuel.
        assert_eq!(m.charge(100, 40), Ok(60));
        assert_eq!(m.used(60), 40);
        // Beyond it: a slice is drawn and the cost taken from it.
        let left = m.charge(60, 1_000).unwrap();
        assert_eq!(m.used(left), 1_040);
        // More than the whole budget: refused, and nothing is taken.
        let err = m.charge(left, 20_000_000).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FuelExhausted);
        assert_eq!(m.used(left), 1_040);
    }

    #[test]
    fn cancel_and_deadline_refuse_a_charge() {
        let flag = Arc::new(AtomicBool::new(true));
        let host = Arc::new(SeededHost::new(0, Arc::new(|| 0)));
        let m = &mut Meter::new(100, 1_000, host, Some(flag));
        assert_eq!(m.charge(10, 1).unwrap_err().kind(), ErrorKind::Cancelled);
        let host = Arc::new(SeededHost::new(0, Arc::new(|| 5)));
        let m = &mut Meter::new(100, 0, host, None);
        assert_eq!(m.charge(10, 1).unwrap_err().kind(), ErrorKind::Deadline);
    }
}
