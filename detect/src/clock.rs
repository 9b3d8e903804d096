//! The wall clock a running detector reads to move a quiet stream's
//! watermark on, injected so that tests turn it by hand instead of waiting.
//!
//! The engine itself never reads a clock (event time drives it); only the
//! services around it do: a stream that goes quiet is judged at "its newest
//! event time plus the time since that event arrived".

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A monotonic clock.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> Instant;
}

/// The process's monotonic clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to; clones share the same time.
#[derive(Debug, Clone)]
pub struct ManualClock {
    start: Instant,
    elapsed_ms: Arc<AtomicU64>,
}

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock {
            start: Instant::now(),
            elapsed_ms: Arc::default(),
        }
    }
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        let ms =
            u64::try_from(by.as_millis()).expect("a test advances by less than 584 million years");
        self.elapsed_ms.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + Duration::from_millis(self.elapsed_ms.load(Ordering::SeqCst))
    }
}

/// A stream's newest event time and when it arrived: the watermark a quiet
/// stream has reached is that time plus what the clock says has passed since.
#[derive(Debug, Clone, Copy)]
pub struct QuietWatermark {
    newest: Option<(i64, Instant)>,
}

impl QuietWatermark {
    /// Starts from `newest` (Unix seconds), read at `now`.
    pub fn new(newest: Option<i64>, now: Instant) -> Self {
        QuietWatermark {
            newest: newest.map(|t| (t, now)),
        }
    }

    /// Notes an event of time `secs` read at `now`; older times change nothing.
    pub fn saw(&mut self, secs: i64, now: Instant) {
        if self.newest.is_none_or(|(t, _)| secs >= t) {
            self.newest = Some((secs, now));
        }
    }

    /// The watermark at `now`, if any event was seen.
    pub fn at(&self, now: Instant) -> Option<i64> {
        self.newest.map(|(t, at)| {
            t + i64::try_from(now.saturating_duration_since(at).as_secs()).unwrap_or(i64::MAX / 2)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_quiet_watermark_moves_with_the_clock_from_the_newest_event() {
        let clock = ManualClock::default();
        let mut mark = QuietWatermark::new(None, clock.now());
        assert_eq!(mark.at(clock.now()), None);
        mark.saw(1_000, clock.now());
        clock.advance(Duration::from_secs(30));
        assert_eq!(mark.at(clock.now()), Some(1_030));
        // An older event neither moves it back nor restarts the count.
        mark.saw(900, clock.now());
        assert_eq!(mark.at(clock.now()), Some(1_030));
        mark.saw(1_100, clock.now());
        clock.advance(Duration::from_secs(5));
        assert_eq!(mark.at(clock.now()), Some(1_105));
    }
}
