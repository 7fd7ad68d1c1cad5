//! The clock and randomness seen by guests, injected so simulations stay deterministic.

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Source of time and randomness for WASI and for the sandbox's deadline.
pub trait HostEnv: Send + Sync + 'static {
    /// Nanoseconds since the Unix epoch (WASI realtime clock).
    fn wall_clock_ns(&self) -> u64;
    /// Nanoseconds from an arbitrary origin, never decreasing (WASI monotonic clock, deadlines).
    fn monotonic_ns(&self) -> u64;
    /// Fills `buf` with random bytes (WASI `random_get`).
    fn fill_random(&self, buf: &mut [u8]);
}

/// The real machine: `std::time` clocks and OS-seeded randomness.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealHost;

impl HostEnv for RealHost {
    fn wall_clock_ns(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    fn monotonic_ns(&self) -> u64 {
        // A process-wide origin keeps readings comparable across runs and threads.
        static ORIGIN: OnceLock<Instant> = OnceLock::new();
        let origin = ORIGIN.get_or_init(Instant::now);
        u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn fill_random(&self, buf: &mut [u8]) {
        rand::fill(buf);
    }
}

/// Clock closure of a [`SeededHost`]: returns nanoseconds.
pub type ClockFn = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Deterministic host for simulations: a seeded ChaCha RNG and an injected clock.
pub struct SeededHost {
    rng: Mutex<ChaCha20Rng>,
    clock: ClockFn,
}

impl SeededHost {
    /// Seeds the RNG from `seed`; `clock` gives nanoseconds for both WASI clocks and deadlines.
    pub fn new(seed: u64, clock: ClockFn) -> Self {
        Self {
            rng: Mutex::new(ChaCha20Rng::seed_from_u64(seed)),
            clock,
        }
    }
}

impl std::fmt::Debug for SeededHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeededHost").finish_non_exhaustive()
    }
}

impl HostEnv for SeededHost {
    fn wall_clock_ns(&self) -> u64 {
        (self.clock)()
    }

    fn monotonic_ns(&self) -> u64 {
        (self.clock)()
    }

    fn fill_random(&self, buf: &mut [u8]) {
        // A poisoned lock only means another run panicked mid-fill; the RNG state is still valid.
        let mut rng = self.rng.lock().unwrap_or_else(|e| e.into_inner());
        rng.fill_bytes(buf);
    }
}
