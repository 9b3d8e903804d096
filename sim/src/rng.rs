//! Seeded random streams and the few distributions the model needs.
//!
//! Every random decision comes from a [`ChaCha8Rng`] derived from the
//! simulation seed plus a stream tag and coordinates (user, day, ...). Streams
//! are independent of each other, so generating one user-day never shifts the
//! numbers another user-day sees, and the output does not depend on
//! generation order.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What a stream is used for; part of its derivation so that streams with the
/// same coordinates but different purposes are independent.
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub(crate) enum Stream {
    Population = 1,
    Traffic = 2,
    LocalDay = 3,
    Schedule = 4,
    Incident = 5,
    Drift = 6,
    /// Draws that only a non-default [`crate::Shape`] knob makes.
    Shape = 7,
}

/// SplitMix64's finaliser: a cheap, well-mixed 64-bit hash step.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Hashes a seed, a stream and coordinates into one 64-bit value.
pub(crate) fn hash(seed: u64, stream: Stream, a: u64, b: u64) -> u64 {
    mix(mix(mix(seed ^ (stream as u64).rotate_left(56)) ^ a) ^ b.rotate_left(17))
}

/// A ChaCha8 stream for `(seed, stream, a, b)`.
pub(crate) fn stream(seed: u64, stream: Stream, a: u64, b: u64) -> ChaCha8Rng {
    let h = hash(seed, stream, a, b);
    let mut key = [0u8; 32];
    for (i, chunk) in key.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&mix(h ^ (i as u64)).to_le_bytes());
    }
    ChaCha8Rng::from_seed(key)
}

/// What a knob's side stream decides, for [`side_stream`].
#[derive(Debug, Clone, Copy)]
#[repr(u64)]
pub(crate) enum Side {
    Zone = 1,
    IpChange = 2,
    ClientChange = 3,
    Travel = 4,
    TeamAdoption = 5,
    OnCall = 6,
}

/// The side stream of a [`crate::Shape`] knob for one thing (a user, a
/// tenant): drawn from only when the knob is not 1.
pub(crate) fn side_stream(seed: u64, side: Side, a: u64) -> ChaCha8Rng {
    stream(seed, Stream::Shape, a, side as u64)
}

/// A uniform float in [0, 1) for a knob's decision about `(a, b)`, without
/// a stream.
pub(crate) fn side_unit(seed: u64, side: Side, a: u64, b: u64) -> f64 {
    unit(hash(seed, Stream::Shape, a, (b << 8) | side as u64))
}

/// What a [`crate::Shape`] knob makes of a yes/no that today's simulator
/// draws with probability `base`.
pub(crate) enum Reshaped {
    No,
    /// Yes, as today (its details come from the main stream, as today).
    Today,
    /// Yes, added by the knob; its details come from this side stream.
    Added(Box<ChaCha8Rng>),
}

/// Decides again, for a knob, a yes/no that today's simulator drew with
/// probability `base` (`today`): the share of yeses becomes `base * knob`
/// (at most 1) by keeping every one of today's (knob >= 1) or a `knob` share
/// of them, and adding new ones from `side`. Today's draw is made either way,
/// so the main stream, and everything else drawn from it, stays as it is.
/// Knob 1 draws nothing.
pub(crate) fn reshape(
    today: bool,
    base: f64,
    knob: f64,
    side: impl FnOnce() -> ChaCha8Rng,
) -> Reshaped {
    if knob == 1.0 {
        return if today { Reshaped::Today } else { Reshaped::No };
    }
    let mut side = side();
    if today {
        if knob >= 1.0 || side.random_bool(knob.clamp(0.0, 1.0)) {
            Reshaped::Today
        } else {
            Reshaped::No
        }
    } else if knob > 1.0 && base < 1.0 {
        let extra = ((base * knob).min(1.0) - base) / (1.0 - base);
        if side.random_bool(extra.clamp(0.0, 1.0)) {
            Reshaped::Added(Box::new(side))
        } else {
            Reshaped::No
        }
    } else {
        Reshaped::No
    }
}

/// A uniform float in [0, 1) from a hash value.
pub(crate) fn unit(h: u64) -> f64 {
    (h >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A tiny generator for per-event details (trace ids, latency, argument
/// values), seeded from one `u64` drawn at planning time.
pub(crate) struct SplitMix(u64);

impl SplitMix {
    pub(crate) fn new(seed: u64) -> Self {
        SplitMix(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    pub(crate) fn unit(&mut self) -> f64 {
        unit(self.next_u64())
    }

    /// Uniform integer in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    pub(crate) fn normal(&mut self) -> f64 {
        box_muller(self.unit(), self.unit())
    }
}

fn box_muller(u1: f64, u2: f64) -> f64 {
    let u1 = u1.max(f64::MIN_POSITIVE);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A standard normal draw.
pub(crate) fn normal<R: Rng>(rng: &mut R) -> f64 {
    box_muller(rng.random::<f64>(), rng.random::<f64>())
}

/// A log-normal draw with the given median and log-space sigma.
pub(crate) fn lognormal<R: Rng>(rng: &mut R, median: f64, sigma: f64) -> f64 {
    median * (sigma * normal(rng)).exp()
}

/// A Poisson draw (Knuth for small means, a rounded normal above 30).
pub(crate) fn poisson<R: Rng>(rng: &mut R, mean: f64) -> u32 {
    if mean <= 0.0 {
        return 0;
    }
    if mean > 30.0 {
        let x = mean + mean.sqrt() * normal(rng);
        return x.round().max(0.0) as u32;
    }
    let limit = (-mean).exp();
    let mut product = rng.random::<f64>();
    let mut count = 0;
    while product > limit {
        product *= rng.random::<f64>();
        count += 1;
    }
    count
}

/// A uniform integer in `lo..=hi` as a `usize`.
pub(crate) fn between<R: Rng>(rng: &mut R, lo: usize, hi: usize) -> usize {
    rng.random_range(lo..=hi)
}

/// Picks an index from cumulative weights (last element is the total).
pub(crate) fn pick_cumulative<R: Rng>(rng: &mut R, cumulative: &[f32]) -> usize {
    let total = cumulative.last().copied().unwrap_or(0.0);
    let x = rng.random::<f32>() * total;
    cumulative
        .partition_point(|&c| c <= x)
        .min(cumulative.len().saturating_sub(1))
}

/// Picks an index with probability proportional to `weights`.
pub(crate) fn pick_weighted<R: Rng>(rng: &mut R, weights: &[f32]) -> usize {
    let total: f32 = weights.iter().sum();
    let mut x = rng.random::<f32>() * total;
    for (i, &w) in weights.iter().enumerate() {
        if x < w {
            return i;
        }
        x -= w;
    }
    weights.len().saturating_sub(1)
}

/// Zipf-like weights `1 / (rank + 1)^s` as a cumulative table.
pub(crate) fn zipf_cumulative(n: usize, s: f64) -> Vec<f32> {
    let mut total = 0.0f32;
    (0..n)
        .map(|rank| {
            total += (1.0 / ((rank + 1) as f64).powf(s)) as f32;
            total
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_with_different_coordinates_differ() {
        let a: u64 = stream(1, Stream::Traffic, 3, 4).random();
        let b: u64 = stream(1, Stream::Traffic, 4, 3).random();
        let c: u64 = stream(1, Stream::Drift, 3, 4).random();
        let again: u64 = stream(1, Stream::Traffic, 3, 4).random();
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, again);
    }

    #[test]
    fn poisson_mean_is_close_to_requested() {
        let mut rng = stream(7, Stream::Population, 0, 0);
        for mean in [0.5, 4.0, 60.0] {
            let n = 20_000;
            let sum: u64 = (0..n).map(|_| u64::from(poisson(&mut rng, mean))).sum();
            let got = sum as f64 / n as f64;
            assert!(
                (got - mean).abs() < mean * 0.05 + 0.05,
                "mean {mean}, got {got}"
            );
        }
    }

    #[test]
    fn zipf_favours_low_ranks() {
        let table = zipf_cumulative(20, 1.1);
        let mut rng = stream(7, Stream::Population, 1, 0);
        let mut counts = [0u32; 20];
        for _ in 0..10_000 {
            counts[pick_cumulative(&mut rng, &table)] += 1;
        }
        assert!(counts[0] > counts[5] && counts[5] > counts[19]);
    }

    #[test]
    fn reshape_multiplies_the_share_and_keeps_todays_yeses() {
        let side = |i: u64| move || stream(9, Stream::Shape, i, 0);
        let mut main = stream(9, Stream::Drift, 0, 0);
        let (n, base) = (20_000u64, 0.1);
        let today: Vec<bool> = (0..n).map(|_| main.random_bool(base)).collect();
        for knob in [0.5, 1.0, 3.0] {
            let mut yes = 0;
            for (i, &t) in today.iter().enumerate() {
                match reshape(t, base, knob, side(i as u64)) {
                    Reshaped::No => {}
                    Reshaped::Today => {
                        assert!(t);
                        yes += 1;
                    }
                    Reshaped::Added(_) => {
                        assert!(!t);
                        yes += 1;
                    }
                }
                if t && knob >= 1.0 {
                    assert!(matches!(
                        reshape(t, base, knob, side(i as u64)),
                        Reshaped::Today
                    ));
                }
            }
            let share = f64::from(yes) / n as f64;
            assert!((share - base * knob).abs() < 0.01, "{knob}: {share}");
        }
    }

    #[test]
    fn splitmix_below_stays_in_range() {
        let mut r = SplitMix::new(3);
        assert!((0..1000).all(|_| r.below(7) < 7));
    }
}
