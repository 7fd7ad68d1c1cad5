//! The wall clock discovery packets and heartbeats are stamped and checked with.
//!
//! Freshness compares a sender's `sent_ms` with the receiver's clock, so both must
//! be wall-clock times (Unix milliseconds). On real hosts the system clock is read
//! once, when the clock is made, and it then advances with the monotonic clock, so
//! a stepped system clock (NTP, an operator) cannot age every packet at once; a
//! simulation passes its own clock (virtual time from a fixed epoch), so nothing
//! on a simulated path reads the system clock.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// How far a packet's or heartbeat's `sent_ms` may be from the receiver's clock,
/// either way, before it is refused: it bounds both the clock skew a cluster
/// tolerates and how long a captured packet can be replayed.
pub const FRESHNESS_WINDOW_MS: u64 = 30_000;

/// Milliseconds since the Unix epoch, as the sender and receiver of a packet see it.
#[derive(Clone)]
pub struct WallClock(Arc<dyn Fn() -> u64 + Send + Sync>);

impl WallClock {
    /// A clock that reads `now` (Unix milliseconds) on every call.
    pub fn new(now: impl Fn() -> u64 + Send + Sync + 'static) -> Self {
        WallClock(Arc::new(now))
    }

    /// The host's clock: the system clock as first read (at the first call, so a
    /// default replaced before use never reads it), advancing by tokio's
    /// monotonic clock from there (see the module's documentation).
    pub fn host() -> Self {
        let anchor = std::sync::OnceLock::new();
        WallClock::new(move || {
            let (at_start, started) = *anchor.get_or_init(|| {
                let at_start = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                    .unwrap_or(0);
                (at_start, tokio::time::Instant::now())
            });
            let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            at_start.saturating_add(elapsed)
        })
    }

    /// A clock that reads `epoch_ms` now and advances with tokio's clock (virtual
    /// under turmoil or a paused runtime).
    pub fn anchored(epoch_ms: u64) -> Self {
        let started = tokio::time::Instant::now();
        WallClock::new(move || {
            let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            epoch_ms.saturating_add(elapsed)
        })
    }

    /// The time now, in Unix milliseconds.
    pub fn now_ms(&self) -> u64 {
        (self.0)()
    }
}

impl Default for WallClock {
    /// [`WallClock::host`].
    fn default() -> Self {
        Self::host()
    }
}

impl fmt::Debug for WallClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WallClock({} ms)", self.now_ms())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_anchored_clock_starts_at_its_epoch_and_advances() {
        let clock = WallClock::anchored(1_000_000);
        let first = clock.now_ms();
        assert!((1_000_000..1_000_100).contains(&first), "{first}");
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(clock.now_ms() >= first + 20);
        let host = WallClock::host();
        let (first, second) = (host.now_ms(), host.now_ms());
        assert!(first > 1_600_000_000_000 && second >= first);
        let fixed = WallClock::new(|| 42);
        assert_eq!(fixed.clone().now_ms(), 42);
    }
}
