//! Reconnect delays: exponential backoff with full jitter.
//!
//! Attempt `n` (1-based) waits a uniformly random time in
//! `[0, min(cap, base × 2^(n-1))]` ("full jitter"), so a fleet that lost its
//! broker at the same instant spreads its reconnects instead of arriving in
//! waves. The randomness comes from the caller's `rand_core::RngCore`; the
//! arithmetic saturates and never panics.
//!
//! This module does not sleep and does not count attempts: the driver does.

use crate::time::Duration;

/// How the client spaces its reconnect attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first attempt's delay.
    pub base: Duration,
    /// The largest ceiling, however many attempts failed.
    pub cap: Duration,
    /// The most reconnect attempts in a row: after a failure the driver
    /// retries up to this many times, and when those fail too it gives up
    /// and returns the last failure (`Some(0)`: give up at the first
    /// failure). A link accepted by CONNACK resets the count. `None`
    /// retries for ever.
    pub max_attempts: Option<u32>,
}

impl Backoff {
    /// 500 ms base, 60 s cap, retrying for ever.
    pub const DEFAULT: Backoff = Backoff {
        base: Duration::from_millis(500),
        cap: Duration::from_secs(60),
        max_attempts: None,
    };

    /// The ceiling of attempt `attempt` (1-based; 0 is treated as 1):
    /// `min(cap, base × 2^(attempt-1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let shift = attempt.saturating_sub(1).min(63);
        let factor = 1u64 << shift;
        let grown = self.base.as_millis().saturating_mul(factor);
        Duration::from_millis(grown.min(self.cap.as_millis()))
    }

    /// The delay before attempt `attempt`: uniform in `[0, ceiling]`.
    pub fn delay(&self, attempt: u32, rng: &mut impl rand_core::RngCore) -> Duration {
        Duration::from_millis(scale(rng.next_u64(), self.ceiling(attempt).as_millis()))
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Maps a uniform 64-bit `random` onto `[0, max]` by multiplication (Lemire),
/// without the modulo's division.
fn scale(random: u64, max: u64) -> u64 {
    let range = u128::from(max) + 1;
    let scaled = (u128::from(random) * range) >> 64;
    u64::try_from(scaled).unwrap_or(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic RngCore for the tests: a fixed sequence of words.
    struct Fixed(u64);
    impl rand_core::RngCore for Fixed {
        fn next_u32(&mut self) -> u32 {
            self.0 as u32
        }
        fn next_u64(&mut self) -> u64 {
            self.0
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            dest.fill(0);
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            dest.fill(0);
            Ok(())
        }
    }

    const B: Backoff = Backoff {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(5),
        max_attempts: None,
    };

    #[test]
    fn backoff_ceiling_doubles_per_attempt_until_the_cap() {
        let ceilings = [1, 2, 3, 4, 5, 6, 7, 8].map(|n| B.ceiling(n).as_millis());
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(B.ceiling(0), B.ceiling(1));
    }

    #[test]
    fn backoff_ceiling_saturates_for_huge_attempt_counts() {
        assert_eq!(B.ceiling(u32::MAX), B.cap);
        let huge = Backoff {
            base: Duration::from_millis(u64::MAX),
            cap: Duration::from_millis(u64::MAX),
            max_attempts: None,
        };
        assert_eq!(huge.ceiling(40).as_millis(), u64::MAX);
        assert_eq!(huge.delay(40, &mut Fixed(u64::MAX)).as_millis(), u64::MAX);
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling_inclusive() {
        assert_eq!(B.delay(3, &mut Fixed(0)), Duration::ZERO);
        assert_eq!(B.delay(3, &mut Fixed(u64::MAX)).as_millis(), 400);
        assert_eq!(B.delay(3, &mut Fixed(u64::MAX / 2)).as_millis(), 200);
        for r in [1u64, 12_345, 1 << 40, u64::MAX - 7] {
            for n in 1..20 {
                assert!(B.delay(n, &mut Fixed(r)) <= B.ceiling(n));
            }
        }
    }

    #[test]
    fn full_jitter_is_roughly_uniform_over_the_ceiling() {
        // 10 000 draws from a seeded generator into 5 buckets of [0, 800].
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut buckets = [0u32; 5];
        for _ in 0..10_000 {
            // xorshift64*
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D);
            let d = B.delay(4, &mut Fixed(r)).as_millis();
            buckets[(d * 5 / 801) as usize] += 1;
        }
        for b in buckets {
            assert!((1700..2300).contains(&b), "{buckets:?}");
        }
    }

    #[test]
    fn zero_base_never_waits() {
        let b = Backoff {
            base: Duration::ZERO,
            ..B
        };
        assert_eq!(b.delay(10, &mut Fixed(u64::MAX)), Duration::ZERO);
    }
}
