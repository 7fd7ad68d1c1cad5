//! Token buckets: one for outgoing packets, and one per source for incoming
//! datagrams (sans-IO: the caller passes `now`).

use std::collections::BTreeMap;
use std::net::IpAddr;
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

/// Sources a [`SourceLimits`] tracks at most; the least recently heard is forgotten first.
pub const SOURCES_MAX: usize = 1024;
/// Datagrams per second one source may send us on average (a node sends a few
/// per survey round; nodes on one machine share 127.0.0.1).
pub const SOURCE_RATE_PER_S: u32 = 64;
/// Datagrams one source may send us at once before its rate applies.
pub const SOURCE_BURST: u32 = 128;

/// A token bucket per source IP address, for a bounded number of sources.
///
/// A source forgotten to make room starts again with a full bucket, so a
/// spoofer cycling through addresses gains at most `burst` per address it
/// uses, and a legitimate source pushed out only gains credit.
#[derive(Clone, Debug)]
pub struct SourceLimits {
    rate_per_s: u32,
    burst: u32,
    sources_max: usize,
    // Each source's bucket and the recency stamp under which `recency` holds it.
    buckets: BTreeMap<IpAddr, (TokenBucket, u64)>,
    recency: BTreeMap<u64, IpAddr>,
    next_stamp: u64,
}

impl SourceLimits {
    /// Limits of `rate_per_s` and `burst` per source for up to `sources_max`
    /// sources; `None` if any is zero.
    pub fn new(rate_per_s: u32, burst: u32, sources_max: usize) -> Option<Self> {
        if rate_per_s == 0 || burst == 0 || sources_max == 0 {
            return None;
        }
        Some(SourceLimits {
            rate_per_s,
            burst,
            sources_max,
            buckets: BTreeMap::new(),
            recency: BTreeMap::new(),
            next_stamp: 0,
        })
    }

    /// Whether a datagram from `source` at `now` is within its rate (it then counts).
    pub fn allow(&mut self, source: IpAddr, now: Instant) -> bool {
        let stamp = self.next_stamp;
        self.next_stamp += 1;
        if let Some((bucket, old_stamp)) = self.buckets.get_mut(&source) {
            self.recency.remove(old_stamp);
            *old_stamp = stamp;
            self.recency.insert(stamp, source);
            return bucket.try_take(now).is_ok();
        }
        while self.buckets.len() >= self.sources_max {
            let Some((_, oldest)) = self.recency.pop_first() else {
                break;
            };
            self.buckets.remove(&oldest);
        }
        let Some(mut bucket) = TokenBucket::new(self.rate_per_s, self.burst, now) else {
            return true;
        };
        let allowed = bucket.try_take(now).is_ok();
        self.buckets.insert(source, (bucket, stamp));
        self.recency.insert(stamp, source);
        allowed
    }

    /// How many sources are tracked now.
    pub fn tracked(&self) -> usize {
        self.buckets.len()
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

    #[test]
    fn each_source_has_its_own_bucket() {
        let now = Instant::now();
        let mut limits = SourceLimits::new(10, 2, 8).expect("valid");
        let (a, b): (IpAddr, IpAddr) = ([10, 0, 0, 1].into(), [10, 0, 0, 2].into());
        assert!(limits.allow(a, now) && limits.allow(a, now));
        assert!(!limits.allow(a, now), "a's burst is spent");
        assert!(limits.allow(b, now), "b is not charged for a");
        assert!(limits.allow(a, now + Duration::from_millis(100)));
    }

    #[test]
    fn sources_are_bounded_and_the_least_recent_is_forgotten() {
        let now = Instant::now();
        let mut limits = SourceLimits::new(1, 1, 3).expect("valid");
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        for n in 1..=3 {
            assert!(limits.allow(ip(n), now));
        }
        // 1 is heard again, so 2 is now the least recent and makes room for 4.
        assert!(!limits.allow(ip(1), now));
        assert!(limits.allow(ip(4), now));
        assert_eq!(limits.tracked(), 3);
        assert!(
            !limits.allow(ip(1), now),
            "1 was kept, with its empty bucket"
        );
        assert!(limits.allow(ip(2), now), "2 was forgotten and starts full");
        assert!(SourceLimits::new(1, 1, 0).is_none());
    }
}
