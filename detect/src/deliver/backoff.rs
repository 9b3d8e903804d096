//! Pure timing rules: exponential backoff with full jitter, `Retry-After`, and
//! the per-destination sliding-window rate limit. No clock is read here: callers
//! pass `now` and a random unit, so every rule is testable without waiting.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// Upper bound of the wait before retry number `attempt` (from 0):
/// `min(cap, base * 2^attempt)`, without overflow.
pub fn backoff_ceiling(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let factor = 1u32.checked_shl(attempt).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(cap).min(cap)
}

/// The wait before retry number `attempt` with full jitter: `unit` (drawn
/// uniformly from `[0, 1)`) times [`backoff_ceiling`].
pub fn backoff_delay(attempt: u32, base: Duration, cap: Duration, unit: f64) -> Duration {
    let unit = if unit.is_finite() {
        unit.clamp(0.0, 1.0)
    } else {
        0.0
    };
    backoff_ceiling(attempt, base, cap).mul_f64(unit)
}

/// A `Retry-After` header value: delta-seconds or an HTTP date. A date in the
/// past means now.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&Utc) - now)
            .to_std()
            .unwrap_or(Duration::ZERO),
    )
}

/// At most `max` sends in any `window`: remembers the times of recent sends.
#[derive(Debug)]
pub struct RateLimiter {
    max: usize,
    window: Duration,
    sent: VecDeque<Instant>,
}

impl RateLimiter {
    pub fn per_minute(max: u32) -> Self {
        Self::new(max, Duration::from_secs(60))
    }

    pub fn new(max: u32, window: Duration) -> Self {
        let max = usize::try_from(max.max(1)).unwrap_or(usize::MAX);
        Self {
            max,
            window,
            sent: VecDeque::with_capacity(max.min(1024)),
        }
    }

    /// `None` if a send may go now, otherwise the instant it may.
    pub fn next_slot(&mut self, now: Instant) -> Option<Instant> {
        while let Some(&oldest) = self.sent.front() {
            if now.saturating_duration_since(oldest) >= self.window {
                self.sent.pop_front();
            } else {
                break;
            }
        }
        if self.sent.len() < self.max {
            None
        } else {
            self.sent.front().map(|&oldest| oldest + self.window)
        }
    }

    /// Records a send at `now`.
    pub fn record(&mut self, now: Instant) {
        self.sent.push_back(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const BASE: Duration = Duration::from_secs(1);
    const CAP: Duration = Duration::from_secs(300);

    #[test]
    fn the_ceiling_doubles_from_base_up_to_the_cap() {
        let ceilings: Vec<u64> = (0..11)
            .map(|n| backoff_ceiling(n, BASE, CAP).as_secs())
            .collect();
        assert_eq!(ceilings, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]);
        assert_eq!(backoff_ceiling(u32::MAX, BASE, CAP), CAP);
    }

    proptest! {
        #[test]
        fn backoff_never_exceeds_the_cap_or_its_ceiling(
            attempt in 0u32..200,
            base_ms in 1u64..120_000,
            cap_extra_ms in 0u64..10_000_000,
            unit in 0.0f64..1.0,
        ) {
            let base = Duration::from_millis(base_ms);
            let cap = base + Duration::from_millis(cap_extra_ms);
            let delay = backoff_delay(attempt, base, cap, unit);
            prop_assert!(delay <= cap);
            prop_assert!(delay <= backoff_ceiling(attempt, base, cap));
        }

        #[test]
        fn the_backoff_ceiling_never_decreases(
            attempt in 0u32..200,
            base_ms in 1u64..120_000,
            cap_extra_ms in 0u64..10_000_000,
        ) {
            let base = Duration::from_millis(base_ms);
            let cap = base + Duration::from_millis(cap_extra_ms);
            let now = backoff_ceiling(attempt, base, cap);
            prop_assert!(now <= backoff_ceiling(attempt + 1, base, cap));
            prop_assert!(now >= base.min(cap));
        }

        #[test]
        fn odd_jitter_units_stay_within_bounds(unit in proptest::num::f64::ANY) {
            prop_assert!(backoff_delay(3, BASE, CAP, unit) <= Duration::from_secs(8));
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = DateTime::parse_from_rfc3339("2026-10-20T09:35:00Z")
            .expect("valid")
            .with_timezone(&Utc);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Tue, 20 Oct 2026 09:35:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Tue, 20 Oct 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn the_rate_limiter_allows_max_per_window_then_names_the_next_slot() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::new(2, Duration::from_secs(60));
        assert_eq!(limiter.next_slot(t0), None);
        limiter.record(t0);
        let t1 = t0 + Duration::from_secs(10);
        assert_eq!(limiter.next_slot(t1), None);
        limiter.record(t1);
        let t2 = t0 + Duration::from_secs(20);
        assert_eq!(limiter.next_slot(t2), Some(t0 + Duration::from_secs(60)));
        // Once the first send leaves the window, one more may go.
        let t3 = t0 + Duration::from_secs(60);
        assert_eq!(limiter.next_slot(t3), None);
        limiter.record(t3);
        assert_eq!(limiter.next_slot(t3), Some(t1 + Duration::from_secs(60)));
    }
}
