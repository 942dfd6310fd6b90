//! Retry policy for callouts that got no decision: a bounded count, exponential backoff with full
//! jitter, and a total time budget per request.

use std::time::Duration;

/// Retry settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first callout; 0 turns retries off.
    pub max_retries: u32,
    /// Upper bound of the first backoff.
    pub base_interval: Duration,
    /// Upper bound of any backoff.
    pub max_interval: Duration,
}

impl RetryPolicy {
    pub const DISABLED: RetryPolicy = RetryPolicy {
        max_retries: 0,
        base_interval: Duration::from_millis(25),
        max_interval: Duration::from_millis(250),
    };

    /// Returns the wait before retry number `retry` (0 for the first retry).
    ///
    /// The wait is drawn uniformly from `[0, min(max_interval, base_interval * 2^retry)]`, as in
    /// Envoy's jittered exponential backoff. `jitter` is a random number in `[0, 1)`.
    pub fn backoff(&self, retry: u32, jitter: f64) -> Duration {
        let ceiling = self
            .base_interval
            .checked_mul(1u32.checked_shl(retry).unwrap_or(u32::MAX))
            .unwrap_or(self.max_interval)
            .min(self.max_interval);
        // `mul_f64` panics on NaN, so NaN counts as 0.
        let jitter = if jitter.is_nan() {
            0.0
        } else {
            jitter.clamp(0.0, 1.0)
        };
        ceiling.mul_f64(jitter)
    }
}

/// A small pseudo-random generator (SplitMix64) for backoff jitter, seeded by the target from its
/// clock. Jitter only spreads retries apart, so it needs no cryptographic quality.
#[derive(Debug, Clone)]
pub struct Jitter(u64);

impl Jitter {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Returns the next number in `[0, 1)`.
    pub fn next_unit(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        // The top 53 bits fill an f64 mantissa exactly.
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            base_interval: Duration::from_millis(20),
            max_interval: Duration::from_millis(100),
        }
    }

    #[test]
    fn backoff_doubles_per_retry() {
        let policy = policy();
        assert_eq!(policy.backoff(0, 1.0), Duration::from_millis(20));
        assert_eq!(policy.backoff(1, 1.0), Duration::from_millis(40));
        assert_eq!(policy.backoff(2, 1.0), Duration::from_millis(80));
    }

    #[test]
    fn backoff_capped_at_max_interval() {
        let policy = policy();
        assert_eq!(policy.backoff(3, 1.0), Duration::from_millis(100));
        assert_eq!(policy.backoff(40, 1.0), Duration::from_millis(100));
        assert_eq!(policy.backoff(u32::MAX, 1.0), Duration::from_millis(100));
    }

    #[test]
    fn jitter_scales_backoff() {
        let policy = policy();
        assert_eq!(policy.backoff(1, 0.0), Duration::ZERO);
        assert_eq!(policy.backoff(1, 0.5), Duration::from_millis(20));
    }

    #[test]
    fn jitter_in_unit_interval() {
        let mut jitter = Jitter::new(42);
        let samples: Vec<f64> = (0..1000).map(|_| jitter.next_unit()).collect();
        assert!(samples.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        assert!((0.4..0.6).contains(&mean), "mean {mean}");
    }

    #[test]
    fn jitter_seeds_differ() {
        assert_ne!(Jitter::new(1).next_unit(), Jitter::new(2).next_unit());
    }

    #[test]
    fn out_of_range_jitter_clamped() {
        let policy = policy();
        assert_eq!(policy.backoff(0, 7.0), Duration::from_millis(20));
        assert_eq!(policy.backoff(0, -1.0), Duration::ZERO);
        assert_eq!(policy.backoff(0, f64::NAN), Duration::ZERO);
    }
}
