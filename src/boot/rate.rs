//! A token bucket for outgoing packets (sans-IO: the caller passes `now`).

use std::time::Duration;

use tokio::time::Instant;

/// Allows `rate_per_s` packets per second on average and `burst` at once.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    cost_ns: u64,
    credit_max_ns: u64,
    credit_ns: u64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`; `None` if `rate_per_s` or `burst` is zero.
    pub fn new(rate_per_s: u32, burst: u32, now: Instant) -> Option<Self> {
        if rate_per_s == 0 || burst == 0 {
            return None;
        }
        let cost_ns = 1_000_000_000 / u64::from(rate_per_s);
        let credit_max_ns = cost_ns.saturating_mul(u64::from(burst));
        Some(TokenBucket {
            cost_ns,
            credit_max_ns,
            credit_ns: credit_max_ns,
            last: now,
        })
    }

    /// Takes a token at `now`, or says how long until one is available.
    pub fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed_ns = now.saturating_duration_since(self.last).as_nanos();
        let elapsed_ns = u64::try_from(elapsed_ns).unwrap_or(u64::MAX);
        // Time never runs backwards for the bucket: an older `now` adds nothing.
        if now > self.last {
            self.last = now;
        }
        self.credit_ns = self
            .credit_ns
            .saturating_add(elapsed_ns)
            .min(self.credit_max_ns);
        if self.credit_ns >= self.cost_ns {
            self.credit_ns -= self.cost_ns;
            Ok(())
        } else {
            Err(Duration::from_nanos(self.cost_ns - self.credit_ns))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_rate_or_burst_is_refused() {
        let now = Instant::now();
        assert!(TokenBucket::new(0, 4, now).is_none());
        assert!(TokenBucket::new(4, 0, now).is_none());
    }

    #[test]
    fn burst_then_steady_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 3, start).expect("valid");
        for _ in 0..3 {
            assert!(bucket.try_take(start).is_ok());
        }
        let wait = bucket.try_take(start).expect_err("bucket is empty");
        assert_eq!(wait, Duration::from_millis(100));
        assert!(bucket.try_take(start + Duration::from_millis(99)).is_err());
        assert!(bucket.try_take(start + Duration::from_millis(100)).is_ok());
        assert!(bucket.try_take(start + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn idle_time_refills_only_up_to_burst() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(100, 2, start).expect("valid");
        let later = start + Duration::from_secs(60);
        assert!(bucket.try_take(later).is_ok());
        assert!(bucket.try_take(later).is_ok());
        assert!(bucket.try_take(later).is_err());
    }

    #[test]
    fn rate_over_a_second_is_bounded() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(256, 16, start).expect("valid");
        let mut taken = 0;
        for ms in 0..1000 {
            while bucket.try_take(start + Duration::from_millis(ms)).is_ok() {
                taken += 1;
            }
        }
        // 16 at once, then 256 per second.
        assert!((256..=16 + 256).contains(&taken), "took {taken}");
    }
}
