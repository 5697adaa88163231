//! The clock of the async layers: read the time, sleep until a deadline.
//!
//! The sans-IO layers take `now` as an argument ([`crate::time`]); the async
//! driver is the one place that reads a clock, and it does so only through
//! [`Clock`]. Two implementations are provided:
//!
//! - `EmbassyClock` (feature `embassy-time`): embassy-time on devices. The
//!   board supplies the time driver (and picks the tick rate) at link time.
//! - `TokioClock` (feature `tokio`): tokio's timer on hosts, so a fleet of
//!   ten thousand simulated clients rides tokio's timer wheel instead of a
//!   bounded timer queue. It also follows tokio's paused/auto-advanced time in
//!   tests that use it.
//!
//! Times are whole milliseconds ([`Instant`]). A clock rounds the deadline up
//! to its own tick, so `sleep_until(at)` never returns while `now() < at`.
//!
//! This module deliberately offers no wall-clock time, no time zones and no
//! timeouts of its own: selecting between I/O and a sleep is the driver's job
//! (embassy-futures `select`, which runs under both runtimes).

use core::future::Future;

use crate::time::Instant;

/// A monotonic millisecond clock and a sleep until a deadline.
///
/// `now` never goes backwards. `sleep_until(at)` completes at or after `at`
/// (immediately when `at` has passed); dropping the future cancels the sleep.
pub trait Clock {
    /// The current time, in milliseconds since this clock's epoch.
    fn now(&self) -> Instant;

    /// Waits until `now() >= at`.
    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()>;
}

impl<C: Clock + ?Sized> Clock for &C {
    fn now(&self) -> Instant {
        (**self).now()
    }

    fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> {
        (**self).sleep_until(at)
    }
}

#[cfg(feature = "embassy-time")]
pub use self::embassy::EmbassyClock;

#[cfg(feature = "embassy-time")]
mod embassy {
    use core::future::Future;

    use super::Clock;
    use crate::time::Instant;

    /// The embassy-time clock; its epoch is boot.
    ///
    /// The time driver (RTC, SYSTIMER, ...) and the tick rate come from the
    /// board's HAL and embassy-time features at link time.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct EmbassyClock;

    impl EmbassyClock {
        /// The clock (it has no state: embassy-time has one global driver).
        pub const fn new() -> Self {
            EmbassyClock
        }
    }

    /// Milliseconds to embassy ticks, rounded up so that a wake at the tick
    /// reads back as at least `ms`; saturates at the end of time.
    fn millis_to_ticks(ms: u64) -> u64 {
        let ticks = (u128::from(ms) * u128::from(embassy_time::TICK_HZ)).div_ceil(1000);
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    impl Clock for EmbassyClock {
        fn now(&self) -> Instant {
            Instant::from_millis(embassy_time::Instant::now().as_millis())
        }

        fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> {
            embassy_time::Timer::at(embassy_time::Instant::from_ticks(millis_to_ticks(
                at.as_millis(),
            )))
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn deadline_rounds_up_to_a_tick_that_reads_back_at_least_the_deadline() {
            for ms in [0, 1, 999, 1000, 123_456_789] {
                let ticks = millis_to_ticks(ms);
                assert!(embassy_time::Instant::from_ticks(ticks).as_millis() >= ms);
            }
            assert_eq!(millis_to_ticks(u64::MAX), u64::MAX);
        }

        // Runs on embassy-time's std driver (a dev-dependency feature), driven
        // by a tokio executor: the timer only needs a waker.
        #[cfg(feature = "tokio")]
        #[tokio::test]
        async fn sleep_until_wakes_at_or_after_the_deadline_on_embassy_time() {
            let clock = EmbassyClock::new();
            let mut last = clock.now();
            for step in [0, 1, 13] {
                let at = clock.now() + crate::time::Duration::from_millis(step);
                clock.sleep_until(at).await;
                let woke = clock.now();
                assert!(woke >= at && woke >= last, "woke {woke:?} deadline {at:?}");
                last = woke;
            }
        }
    }
}

#[cfg(feature = "tokio")]
pub use self::host::TokioClock;

#[cfg(feature = "tokio")]
mod host {
    use core::future::Future;

    use super::Clock;
    use crate::time::{Duration, Instant};

    /// The tokio clock; its epoch is the moment the clock was created.
    ///
    /// Copy it freely: copies share the epoch, so every client of a fleet
    /// reads the same time. Sleeps are tokio timers (one timer wheel entry
    /// each), and follow tokio's paused time in tests.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct TokioClock {
        epoch: tokio::time::Instant,
    }

    impl TokioClock {
        /// A clock whose epoch is now.
        pub fn new() -> Self {
            TokioClock {
                epoch: tokio::time::Instant::now(),
            }
        }

        /// A clock with the given epoch (to line several clocks up).
        pub fn with_epoch(epoch: tokio::time::Instant) -> Self {
            TokioClock { epoch }
        }

        /// The tokio instant this clock counts from.
        pub fn epoch(&self) -> tokio::time::Instant {
            self.epoch
        }

        /// The tokio instant for `at`, or `None` past what tokio can represent.
        fn deadline(&self, at: Instant) -> Option<tokio::time::Instant> {
            self.epoch
                .checked_add(core::time::Duration::from_millis(at.as_millis()))
        }
    }

    impl Default for TokioClock {
        fn default() -> Self {
            Self::new()
        }
    }

    impl Clock for TokioClock {
        fn now(&self) -> Instant {
            let elapsed = self.epoch.elapsed().as_millis();
            // Rounded down, so a sleep that ended at its deadline reads at
            // least that deadline (the timer rounds up to whole ms).
            Instant::ZERO + Duration::from_millis(u64::try_from(elapsed).unwrap_or(u64::MAX))
        }

        fn sleep_until(&self, at: Instant) -> impl Future<Output = ()> {
            let deadline = self.deadline(at);
            async move {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    // Further away than tokio's clock reaches: never.
                    None => core::future::pending().await,
                }
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[tokio::test]
        async fn sleep_until_wakes_at_or_after_the_deadline() {
            let clock = TokioClock::new();
            for step in [0, 1, 7, 30] {
                let at = clock.now() + Duration::from_millis(step);
                clock.sleep_until(at).await;
                let woke = clock.now();
                assert!(woke >= at, "woke at {woke:?}, deadline {at:?}");
            }
        }

        #[tokio::test]
        async fn sleep_until_a_past_deadline_returns_at_once() {
            let clock = TokioClock::new();
            tokio::time::sleep(core::time::Duration::from_millis(5)).await;
            let started = std::time::Instant::now();
            clock.sleep_until(Instant::ZERO).await;
            assert!(started.elapsed() < core::time::Duration::from_millis(500));
        }

        #[tokio::test]
        async fn sleep_until_the_end_of_time_stays_pending() {
            let clock = TokioClock::new();
            let far = Instant::from_millis(u64::MAX);
            let raced = tokio::time::timeout(
                core::time::Duration::from_millis(20),
                clock.sleep_until(far),
            )
            .await;
            assert!(raced.is_err(), "a sleep until u64::MAX ms must not finish");
        }

        #[tokio::test]
        async fn now_is_monotonic_and_copies_share_the_epoch() {
            let clock = TokioClock::new();
            let copy = clock;
            let mut last = clock.now();
            for _ in 0..50 {
                tokio::task::yield_now().await;
                let a = clock.now();
                let b = copy.now();
                assert!(a >= last && b >= a, "{last:?} {a:?} {b:?}");
                last = b;
            }
            tokio::time::sleep(core::time::Duration::from_millis(15)).await;
            assert!(clock.now().saturating_since(last) >= Duration::from_millis(15));
        }
    }
}
