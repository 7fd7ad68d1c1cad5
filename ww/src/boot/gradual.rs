//! Gradual survey: distances 0, 1, 2, … with jittered backoff, until a peer is found.

use std::cell::Cell;
use std::time::Duration;

use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::stream::PeerStream;
use super::survey::MulticastSurvey;
use super::{BootError, Discovery, DiscoveryStats};

/// The distance at which every peer answers; the schedule stays there.
const DISTANCE_ALL: u8 = 32;

/// Settings of a [`GradualSurvey`]'s schedule.
#[derive(Clone, Debug)]
pub struct GradualConfig {
    /// The shortest wait between surveys.
    pub backoff_min_ms: u64,
    /// The longest wait between surveys.
    pub backoff_max_ms: u64,
    /// How much the longest possible wait grows per attempt.
    pub backoff_factor: f64,
    /// Seeds the jitter (each stream derives its own generator from it).
    pub seed: u64,
}

impl Default for GradualConfig {
    fn default() -> Self {
        GradualConfig {
            backoff_min_ms: 1_000,
            backoff_max_ms: 30_000,
            backoff_factor: 1.5,
            seed: 0,
        }
    }
}

impl GradualConfig {
    fn validate(&self) -> Result<(), BootError> {
        let factor_ok = self.backoff_factor.is_finite() && self.backoff_factor >= 1.0;
        if self.backoff_min_ms == 0 || self.backoff_min_ms > self.backoff_max_ms || !factor_ok {
            return Err(BootError::Config(format!(
                "gradual backoff needs 0 < min ({}) <= max ({}) and a finite factor >= 1 ({})",
                self.backoff_min_ms, self.backoff_max_ms, self.backoff_factor
            )));
        }
        Ok(())
    }
}

/// A jittered exponential backoff whose waits always lie in `[min, max]`.
#[derive(Clone, Debug)]
pub struct Backoff {
    min_ms: u64,
    max_ms: u64,
    factor: f64,
    attempt: i32,
    rng: ChaCha8Rng,
}

impl Backoff {
    /// A schedule from `config`, with jitter seeded by `seed`.
    pub fn new(config: &GradualConfig, seed: u64) -> Result<Self, BootError> {
        config.validate()?;
        Ok(Backoff {
            min_ms: config.backoff_min_ms,
            max_ms: config.backoff_max_ms,
            factor: config.backoff_factor,
            attempt: 0,
            rng: ChaCha8Rng::seed_from_u64(seed),
        })
    }

    /// The next wait: uniform in `[min, min(max, min * factor^attempt)]`.
    pub fn next_wait(&mut self) -> Duration {
        let grown = self.min_ms as f64 * self.factor.powi(self.attempt);
        let ceiling_ms = grown.min(self.max_ms as f64) as u64;
        let ceiling_ms = ceiling_ms.clamp(self.min_ms, self.max_ms);
        // Stop growing the exponent once it can no longer matter.
        if grown < self.max_ms as f64 {
            self.attempt = self.attempt.saturating_add(1);
        }
        let span = ceiling_ms - self.min_ms;
        let jitter = match span.checked_add(1) {
            Some(range) => self.rng.next_u64() % range,
            None => self.rng.next_u64(),
        };
        Duration::from_millis(self.min_ms + jitter)
    }
}

/// What a gradual search does next (sans-IO: the driver sleeps and sends).
#[derive(Clone, Debug)]
pub struct GradualSchedule {
    backoff: Backoff,
    next_distance: u8,
    stopped: bool,
}

impl GradualSchedule {
    /// A schedule starting at distance 0.
    pub fn new(backoff: Backoff) -> Self {
        GradualSchedule {
            backoff,
            next_distance: 0,
            stopped: false,
        }
    }

    /// The distance to survey next, given how many peers were found so far; `None`
    /// once any peer has been found (and forever after).
    pub fn next_survey(&mut self, found: usize) -> Option<u8> {
        if found > 0 {
            self.stopped = true;
        }
        if self.stopped {
            return None;
        }
        let distance = self.next_distance;
        self.next_distance = distance.saturating_add(1).min(DISTANCE_ALL);
        Some(distance)
    }

    /// How long to wait before the next survey.
    pub fn wait(&mut self) -> Duration {
        self.backoff.next_wait()
    }
}

/// Surveys at growing distances so that only nearby peers answer at first, and stops
/// surveying once a peer is found (the stream stays open for ambient answers).
pub struct GradualSurvey {
    survey: MulticastSurvey,
    config: GradualConfig,
    streams_started: Cell<u64>,
}

impl GradualSurvey {
    /// Wraps a started survey.
    pub fn new(survey: MulticastSurvey, config: GradualConfig) -> Result<Self, BootError> {
        config.validate()?;
        Ok(GradualSurvey {
            survey,
            config,
            streams_started: Cell::new(0),
        })
    }
}

impl Discovery for GradualSurvey {
    async fn advertise(&self, namespace: &str, ttl: Duration) -> Result<Duration, BootError> {
        self.survey.advertise(namespace, ttl).await
    }

    async fn find_peers(
        &self,
        namespace: &str,
        limit: Option<usize>,
    ) -> Result<PeerStream, BootError> {
        let seed = super::stream_seed(self.config.seed, &self.streams_started);
        let mut schedule = GradualSchedule::new(Backoff::new(&self.config, seed)?);
        let (stream, progress) = self.survey.subscribe(namespace, limit)?;
        let surveyor = self.survey.surveyor();
        let namespace = namespace.to_string();
        let task = tokio::task::spawn_local(async move {
            while let Some(distance) = schedule.next_survey(progress.found()) {
                if progress.is_closed() || !surveyor.survey(&namespace, distance) {
                    return;
                }
                tokio::time::sleep(schedule.wait()).await;
            }
            tracing::debug!(%namespace, found = progress.found(), "gradual survey done");
        });
        Ok(stream.owning(task))
    }

    fn stats(&self) -> DiscoveryStats {
        self.survey.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bad_configs_are_refused() {
        let min_over_max = GradualConfig {
            backoff_min_ms: 5,
            backoff_max_ms: 4,
            ..GradualConfig::default()
        };
        let shrinking = GradualConfig {
            backoff_factor: 0.5,
            ..GradualConfig::default()
        };
        let nan = GradualConfig {
            backoff_factor: f64::NAN,
            ..GradualConfig::default()
        };
        for config in [min_over_max, shrinking, nan] {
            assert!(matches!(
                Backoff::new(&config, 1),
                Err(BootError::Config(_))
            ));
        }
    }

    proptest! {
        #[test]
        fn waits_stay_within_bounds(
            min_ms in 1u64..10_000,
            extra_ms in 0u64..100_000,
            factor in 1.0f64..4.0,
            seed in any::<u64>(),
        ) {
            let config = GradualConfig {
                backoff_min_ms: min_ms,
                backoff_max_ms: min_ms + extra_ms,
                backoff_factor: factor,
                seed,
            };
            let mut backoff = Backoff::new(&config, seed).expect("valid");
            for _ in 0..200 {
                let wait = backoff.next_wait();
                prop_assert!(wait >= Duration::from_millis(min_ms));
                prop_assert!(wait <= Duration::from_millis(min_ms + extra_ms));
            }
        }
    }

    #[test]
    fn min_is_not_max_and_waits_grow() {
        // The original set Min to Max; here early waits stay near the minimum.
        let mut backoff = Backoff::new(&GradualConfig::default(), 7).expect("valid");
        let first = backoff.next_wait();
        assert!(first <= Duration::from_millis(1_000), "{first:?}");
        let late: Vec<_> = (0..40).map(|_| backoff.next_wait()).collect();
        assert!(late.iter().any(|w| *w > Duration::from_secs(5)));
    }

    #[test]
    fn same_seed_same_waits() {
        let config = GradualConfig::default();
        let mut a = Backoff::new(&config, 3).expect("valid");
        let mut b = Backoff::new(&config, 3).expect("valid");
        for _ in 0..20 {
            assert_eq!(a.next_wait(), b.next_wait());
        }
    }

    #[test]
    fn distances_climb_then_stop_after_a_find() {
        let backoff = Backoff::new(&GradualConfig::default(), 1).expect("valid");
        let mut schedule = GradualSchedule::new(backoff);
        let distances: Vec<_> = (0..40).map_while(|_| schedule.next_survey(0)).collect();
        assert_eq!(&distances[..4], &[0, 1, 2, 3]);
        assert_eq!(distances.last(), Some(&DISTANCE_ALL));
        assert_eq!(schedule.next_survey(1), None);
        // Stays stopped even if the count were to read zero again.
        assert_eq!(schedule.next_survey(0), None);
    }
}
