//! The clock a gateway runs on real hosts.
//!
//! Stored times (submitted, started, finished) must be wall-clock times, so
//! they mean something after a restart; run deadlines must not move when the
//! system clock is stepped (NTP, an operator), or a step forward would time
//! out every run in flight. So the wall clock is read once, at start, and the
//! clock then advances by a monotonic clock only.

use std::rc::Rc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::Clock;

/// Milliseconds since the Unix epoch, now (0 if the system clock is before it).
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A clock that reads `wall_ms_at_start` at `started`, and advances with the
/// monotonic clock from there.
pub fn anchored(wall_ms_at_start: u64, started: Instant) -> Clock {
    Rc::new(move || {
        let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        wall_ms_at_start.saturating_add(elapsed)
    })
}

/// The gateway's clock on a real host: the wall clock now, advancing
/// monotonically (see the module's documentation).
pub fn host_clock() -> Clock {
    anchored(wall_ms(), Instant::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anchored_clock_follows_the_monotonic_clock_not_the_wall() {
        // Anchored an hour in the past: a wall clock stepped an hour forward
        // since. The clock still reads the anchor plus elapsed monotonic time.
        let started = Instant::now();
        let anchor = wall_ms() - 3_600_000;
        let clock = anchored(anchor, started);
        let first = clock();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let second = clock();
        assert!(second >= first + 20, "{first} then {second}");
        assert!(second < anchor + 3_600_000, "the wall clock leaked in");
        let ceiling = anchor + u64::try_from(started.elapsed().as_millis()).unwrap();
        assert!(second <= ceiling);
    }
}
