//! Time as the protocol layers see it: plain millisecond counts handed in by
//! the caller.
//!
//! The session state machine never reads a clock: every input takes `now` as
//! an [`Instant`] and it answers with the [`Instant`] at which it next wants
//! to be woken. The async driver converts from its runtime's clock
//! (embassy-time on devices, tokio on hosts) in one place. Milliseconds in a
//! `u64` cover 584 million years, so arithmetic saturates rather than wraps
//! and never panics.
//!
//! This module does not read a clock and does not sleep.

use core::fmt;
use core::ops::{Add, Sub};

/// A point in time, in milliseconds since an arbitrary epoch chosen by the
/// driver (boot, process start, or virtual time zero in tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

/// A span of time in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(u64);

impl Instant {
    /// The epoch itself.
    pub const ZERO: Instant = Instant(0);

    /// An instant `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: u64) -> Self {
        Instant(ms)
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// Whole seconds since the epoch, rounded down.
    pub const fn as_secs(self) -> u64 {
        div_1000(self.0).0
    }

    /// Seconds since the epoch, rounded up to the next whole second.
    pub const fn as_secs_ceil(self) -> u64 {
        let (secs, rest) = div_1000(self.0);
        if rest == 0 { secs } else { secs + 1 }
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub const fn saturating_since(self, earlier: Instant) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at the end of time. Out of line on devices:
    /// the 64-bit saturating add was repeated at each deadline.
    #[cfg_attr(target_os = "none", inline(never))]
    pub const fn saturating_add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(d.0))
    }
}

impl Duration {
    /// No time at all.
    pub const ZERO: Duration = Duration(0);

    /// `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Duration(ms)
    }

    /// `s` seconds (saturating).
    pub const fn from_secs(s: u64) -> Self {
        Duration(s.saturating_mul(1000))
    }

    /// The span in milliseconds.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// The span in whole seconds, rounded down.
    pub const fn as_secs(self) -> u64 {
        div_1000(self.0).0
    }

    /// `self * n / d` in integer arithmetic, saturating (e.g. 1.5 × keepalive
    /// is `mul_div(3, 2)`); a zero divisor yields zero.
    pub const fn mul_div(self, n: u64, d: u64) -> Duration {
        if d == 0 {
            return Duration(0);
        }
        Duration(self.0.saturating_mul(n) / d)
    }
}

/// `ms / 1000` and `ms % 1000` without a 64-bit division: 32-bit targets
/// (Cortex-M, RISC-V) have none in hardware, and the library routine costs
/// about a kilobyte of flash. Long division in 16-bit digits: every partial
/// dividend is below `1000 << 16`, so each step is one 32-bit division.
const fn div_1000(ms: u64) -> (u64, u32) {
    let mut quotient = 0u64;
    let mut rest = 0u32;
    let mut shift = 64;
    while shift > 0 {
        shift -= 16;
        let part = (rest << 16) | ((ms >> shift) as u32 & 0xffff);
        quotient = (quotient << 16) | (part / 1000) as u64;
        rest = part % 1000;
    }
    (quotient, rest)
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        self.saturating_add(rhs)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_since(rhs)
    }
}

impl Add for Duration {
    type Output = Duration;
    fn add(self, rhs: Duration) -> Duration {
        Duration(self.0.saturating_add(rhs.0))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_multiple_of(1000) {
            write!(f, "{}s", self.as_secs())
        } else {
            write!(f, "{}ms", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates_instead_of_panicking() {
        let end = Instant::from_millis(u64::MAX);
        assert_eq!(end + Duration::from_secs(1), end);
        assert_eq!(Instant::ZERO - end, Duration::ZERO);
        assert_eq!(
            Duration::from_secs(u64::MAX),
            Duration::from_millis(u64::MAX)
        );
        assert_eq!(
            Duration::from_secs(10).mul_div(3, 2),
            Duration::from_secs(15)
        );
        assert_eq!(Duration::from_secs(10).mul_div(3, 0), Duration::ZERO);
    }

    #[test]
    fn seconds_without_64_bit_division_match_the_division() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        let edges = [
            0,
            1,
            999,
            1000,
            1001,
            65_535_999,
            u64::from(u32::MAX) * 1000,
            u64::MAX - 1,
            u64::MAX,
        ];
        for ms in edges.into_iter().chain((0..10_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x >> (x % 64)
        })) {
            let t = Instant::from_millis(ms);
            assert_eq!(t.as_secs(), ms / 1000, "{ms}");
            assert_eq!(t.as_secs_ceil(), ms.div_ceil(1000), "{ms}");
            assert_eq!(Duration::from_millis(ms).as_secs(), ms / 1000, "{ms}");
        }
    }

    #[test]
    fn display_uses_seconds_when_whole() {
        assert_eq!(std::format!("{}", Duration::from_secs(60)), "60s");
        assert_eq!(std::format!("{}", Duration::from_millis(1500)), "1500ms");
    }
}
