//! Baselines: decayed Gamma-Poisson rates, an hour-of-week profile and the
//! tail probabilities the detectors test against.
//!
//! Counts are small and bursty, so a z-score is the wrong tool: 3 denials
//! when 0.2 are expected is not "15 standard deviations". Instead a rate's
//! uncertainty is a Gamma posterior, and the count in a window is judged by
//! the tail of the posterior predictive, a negative binomial (statrs):
//!
//! ```text
//! rate λ ~ Gamma(α0 + K, β0 + T)         K events over T units of exposure
//! X | a units ~ NegBin(r = α0 + K, p = (β0 + T) / (β0 + T + a))
//! p-value = P(X >= x)
//! ```
//!
//! The prior (α0, β0) is the tenant's pooled rate with a weight of a few
//! units, so a user with little history is judged mostly by their peers and a
//! user with much history by themselves.

use serde::{Deserialize, Serialize};
use statrs::distribution::{DiscreteCDF, NegativeBinomial};

/// Seconds in a day.
pub const DAY: i64 = 86_400;

/// `0.5^(days / half_life_days)`.
pub fn decay(days: f64, half_life_days: f64) -> f64 {
    if days <= 0.0 {
        1.0
    } else {
        (-std::f64::consts::LN_2 * days / half_life_days).exp()
    }
}

/// A Gamma prior expressed as a mean rate per unit and a weight in units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prior {
    pub mean: f64,
    pub weight: f64,
    /// Burstiness (variance over mean) to assume until the user has enough
    /// history of their own: the tenant's.
    pub dispersion: f64,
}

/// Decayed counts per unit of exposure (an active minute, an active
/// window): how many units, and the sum and sum of squares of the counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    /// Units observed (decayed).
    pub n: f32,
    /// Sum of counts.
    pub s1: f32,
    /// Sum of squared counts.
    pub s2: f32,
}

/// Burstiness is estimated only from this many units of history.
const MIN_UNITS_FOR_DISPERSION: f64 = 30.0;
/// ... and never taken above this.
const MAX_DISPERSION: f64 = 50.0;

impl Moments {
    pub fn add(&mut self, count: f64) {
        self.n += 1.0;
        self.s1 += count as f32;
        self.s2 += (count * count) as f32;
    }

    pub fn scale(&mut self, factor: f64) {
        self.n = (f64::from(self.n) * factor) as f32;
        self.s1 = (f64::from(self.s1) * factor) as f32;
        self.s2 = (f64::from(self.s2) * factor) as f32;
    }

    /// Mean count per unit, if any unit was observed.
    pub fn mean(&self) -> Option<f64> {
        (self.n > 0.0).then(|| f64::from(self.s1) / f64::from(self.n))
    }

    /// Variance over mean of the count per unit (1 for Poisson traffic),
    /// once there is enough history to say.
    pub fn dispersion(&self) -> Option<f64> {
        let n = f64::from(self.n);
        if n < MIN_UNITS_FOR_DISPERSION {
            return None;
        }
        let mean = f64::from(self.s1) / n;
        let var = (f64::from(self.s2) / n - mean * mean).max(0.0);
        Some((var / mean.max(1e-3)).clamp(1.0, MAX_DISPERSION))
    }

    /// The predictive distribution of the count over `exposure` units, the
    /// mean scaled by `factor` (e.g. for the hour of the week).
    pub fn predict(&self, prior: Prior, exposure: f64, factor: f64) -> Predictive {
        // A floor on the prior mean keeps "never happened" from meaning
        // "impossible": one event in a thousand units.
        let alpha = prior.mean.max(1e-3) * prior.weight + f64::from(self.s1);
        let beta = prior.weight + f64::from(self.n);
        let mu = (alpha / beta * exposure.max(1e-9) * factor).max(1e-9);
        // Observed burstiness times Poisson, plus the Gamma's own uncertainty.
        let dispersion = self.dispersion().unwrap_or(prior.dispersion.max(1.0));
        let var = mu * dispersion + mu * mu / alpha;
        Predictive {
            expected: mu,
            r: mu * mu / (var - mu),
            p: mu / var,
        }
    }
}

/// A negative binomial predictive for a count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Predictive {
    /// Expected count.
    pub expected: f64,
    r: f64,
    p: f64,
}

impl Predictive {
    /// P(X >= x).
    pub fn tail(&self, x: u64) -> f64 {
        if x == 0 {
            return 1.0;
        }
        match NegativeBinomial::new(self.r, self.p) {
            Ok(nb) => nb.sf(x - 1).clamp(0.0, 1.0),
            Err(_) => 1.0,
        }
    }
}

/// Activity per hour of the week (hour 0 = Monday 00:00 UTC), decayed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HourProfile {
    #[serde(with = "serde_hours")]
    counts: [f32; 168],
    /// Sum of `counts`, kept up to date.
    total: f32,
}

impl Default for HourProfile {
    fn default() -> Self {
        HourProfile {
            counts: [0.0; 168],
            total: 0.0,
        }
    }
}

impl HourProfile {
    /// Hour of the week of a Unix time, Monday 00:00 UTC = 0.
    pub fn hour_of_week(secs: i64) -> usize {
        // 1970-01-01 was a Thursday: shift by three days.
        ((secs + 3 * DAY).div_euclid(3600)).rem_euclid(168) as usize
    }

    pub fn add(&mut self, hour: usize, count: f64) {
        self.counts[hour] += count as f32;
        self.total += count as f32;
    }

    pub fn scale(&mut self, factor: f64) {
        for c in &mut self.counts {
            *c = (f64::from(*c) * factor) as f32;
        }
        self.total = self.counts.iter().sum();
    }

    pub fn total(&self) -> f64 {
        f64::from(self.total)
    }

    /// Starts loading `hour`'s count into cache.
    pub fn prefetch(&self, hour: usize) {
        crate::prefetch::prefetch(&self.counts[hour.min(167)]);
    }

    /// The share of activity expected in `hour`, smoothed: the hour itself
    /// (half) and its neighbours (a quarter each), blended 1:4 with the same
    /// hour of the day on every day of the week. A few weeks of data hold
    /// only a few samples of each hour of the week; the hour of the day
    /// generalizes (a Saturday afternoon is not a night).
    pub fn share(&self, hour: usize) -> f64 {
        let total = self.total();
        if total <= 0.0 {
            return 1.0 / 168.0;
        }
        let at = |h: isize| f64::from(self.counts[h.rem_euclid(168) as usize]);
        let h = hour as isize;
        let local = 0.5 * at(h) + 0.25 * (at(h - 1) + at(h + 1));
        let daily: f64 = (0..7).map(|d| at((h % 24) + 24 * d)).sum::<f64>() / 7.0;
        (0.2 * local + 0.8 * daily) / total
    }

    /// How many hours of the day lie between `hour` and the nearest hour of
    /// the day that holds at least `usual` of the user's activity (that hour
    /// on every day of the week together), either way round the clock; 12 if
    /// none does. An hour just past someone's usual evening is 1; the
    /// middle of their night is several.
    pub fn hours_from_usual(&self, hour: usize, usual: f64) -> u32 {
        let total = self.total();
        if total <= 0.0 {
            return 0;
        }
        let of_day = |h: usize| -> f64 {
            (0..7)
                .map(|d| f64::from(self.counts[h % 24 + 24 * d]))
                .sum::<f64>()
                / total
        };
        let h = hour % 24;
        (0..=12u32)
            .find(|&k| {
                let k = k as usize;
                of_day((h + k) % 24) >= usual || of_day((h + 24 - k) % 24) >= usual
            })
            .unwrap_or(12)
    }

    /// [`share`](Self::share) as it would be without `mass` of the counts:
    /// exact if `mass` was added to `hour` itself, and otherwise smaller
    /// than the true share (mass added elsewhere weighs less in `hour`).
    pub fn share_without(&self, hour: usize, mass: f64) -> f64 {
        let total = self.total();
        if mass <= 0.0 || total <= mass {
            return self.share(hour);
        }
        let weighted = self.share(hour) * total - (0.2 * 0.5 + 0.8 / 7.0) * mass;
        (weighted / (total - mass)).max(0.0)
    }
}

mod serde_hours {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[f32; 168], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[f32; 168], D::Error> {
        let v = Vec::<f32>::deserialize(d)?;
        v.try_into()
            .map_err(|v: Vec<f32>| serde::de::Error::invalid_length(v.len(), &"168 hours"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steady(n: usize, per_unit: impl Fn(usize) -> f64) -> Moments {
        let mut m = Moments::default();
        for i in 0..n {
            m.add(per_unit(i));
        }
        m
    }

    #[test]
    fn a_burst_far_above_a_low_rate_has_a_tiny_tail() {
        // 0.4 denials per unit, Poisson-like, over a thousand units.
        let m = steady(1000, |i| if i % 5 < 2 { 1.0 } else { 0.0 });
        let pred = m.predict(
            Prior {
                mean: 0.1,
                weight: 10.0,
                dispersion: 1.0,
            },
            1.0,
            1.0,
        );
        assert!((pred.expected - 0.397).abs() < 0.01, "{pred:?}");
        assert!(pred.tail(37) < 1e-12);
        assert!(pred.tail(1) > 0.3);
        assert_eq!(pred.tail(0), 1.0);
    }

    #[test]
    fn little_history_leans_on_the_prior() {
        let prior = Prior {
            mean: 0.5,
            weight: 20.0,
            dispersion: 1.0,
        };
        let fresh = Moments::default().predict(prior, 1.0, 1.0);
        assert!((fresh.expected - 0.5).abs() < 1e-9);
        // With no history, a count of 3 is not extreme: the prior is wide.
        assert!(fresh.tail(3) > 1e-3);
    }

    #[test]
    fn a_habitual_rate_makes_the_same_count_unremarkable() {
        let prior = Prior {
            mean: 0.05,
            weight: 10.0,
            dispersion: 1.0,
        };
        let quiet = steady(2000, |i| if i == 7 { 1.0 } else { 0.0 }).predict(prior, 5.0, 1.0);
        let noisy = steady(2000, |i| (i % 3) as f64).predict(prior, 5.0, 1.0);
        assert!(quiet.tail(8) < 1e-9);
        assert!(noisy.tail(8) > 0.1);
    }

    #[test]
    fn bursty_history_needs_a_bigger_jump() {
        let poissonish = steady(1000, |i| (1 + i % 3) as f64 - 1.0);
        let bursty = steady(1000, |i| if i % 10 == 0 { 10.0 } else { 0.0 });
        let (a, b) = (
            poissonish.mean().expect("some"),
            bursty.mean().expect("some"),
        );
        assert!((a - b).abs() < 1e-2, "{a} vs {b}");
        let prior = Prior {
            mean: 1.0,
            weight: 10.0,
            dispersion: 1.0,
        };
        let p1 = poissonish.predict(prior, 5.0, 1.0).tail(30);
        let p2 = bursty.predict(prior, 5.0, 1.0).tail(30);
        assert!(p1 < 1e-6, "{p1}");
        assert!(p2 > p1 * 1e3, "{p2} vs {p1}");
    }

    #[test]
    fn hour_of_week_starts_on_monday() {
        // 2026-10-05 is a Monday.
        let monday = chrono::NaiveDate::from_ymd_opt(2026, 10, 5)
            .expect("date")
            .and_hms_opt(0, 30, 0)
            .expect("time")
            .and_utc()
            .timestamp();
        assert_eq!(HourProfile::hour_of_week(monday), 0);
        assert_eq!(HourProfile::hour_of_week(monday + 25 * 3600), 25);
        assert_eq!(HourProfile::hour_of_week(monday + 7 * DAY), 0);
    }

    /// Ten calls an hour, 9 to 17, Monday to Friday.
    fn office_hours() -> HourProfile {
        let mut p = HourProfile::default();
        for day in 0..5 {
            for h in 9..17 {
                p.add(day * 24 + h, 10.0);
            }
        }
        p
    }

    #[test]
    fn hours_from_usual_measures_how_deep_into_the_night_an_hour_is() {
        let p = office_hours();
        assert_eq!(p.hours_from_usual(10, 0.02), 0);
        // 17:00, the first hour after work; 03:00, six before it starts.
        assert_eq!(p.hours_from_usual(17, 0.02), 1);
        assert_eq!(p.hours_from_usual(3, 0.02), 6);
        // Saturday 03:00 is as deep as any other night.
        assert_eq!(p.hours_from_usual(5 * 24 + 3, 0.02), 6);
        assert_eq!(HourProfile::default().hours_from_usual(3, 0.02), 0);
    }

    #[test]
    fn the_profile_is_near_zero_where_nothing_happens() {
        let p = office_hours();
        assert!(p.share(3) < 1e-9);
        assert!(p.share(10) > 0.01);
        // The same working hour on a Saturday borrows from the weekdays.
        assert!(p.share(5 * 24 + 10) > 0.001);
    }

    #[test]
    fn the_share_without_some_counts_is_the_share_before_they_came() {
        let mut p = office_hours();
        let before = p.share(26);
        p.add(26, 7.0);
        assert!(p.share(26) > before);
        assert!((p.share_without(26, 7.0) - before).abs() < 1e-12);
        // Counts added in another hour: never more than the true share.
        p.add(27, 3.0);
        assert!(p.share_without(26, 10.0) <= p.share_without(26, 7.0));
    }

    #[test]
    fn decay_halves_at_the_half_life() {
        assert!((decay(14.0, 14.0) - 0.5).abs() < 1e-12);
        assert_eq!(decay(-1.0, 14.0), 1.0);
    }
}
