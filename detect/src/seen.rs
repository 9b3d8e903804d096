//! Memory of the values a user has used: small exact sets for tools,
//! servers, clients and addresses; a pair of rotating Bloom filters for
//! resources, whose working sets run to hundreds per user.
//!
//! Values are kept as stable 64-bit hashes (xxh3), never as strings, so state
//! stays a few KiB per user and checkpoints are compact. A hash collision can
//! only hide a first sighting, never invent one.

use serde::{Deserialize, Serialize};

use crate::prefetch::prefetch;

/// A stable hash of a value of a given kind (so `github` the server and
/// `github` the client differ).
pub fn value_hash(kind: u8, value: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(value.as_bytes(), u64::from(kind))
}

/// Values with the day each was last used.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SeenSet {
    /// (hash, last day used), unordered. The hash is cut to 32 bits: with a
    /// few dozen values per user a collision is a one-in-millions event.
    entries: Vec<(u32, u32)>,
}

/// What [`SeenSet::touch`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sighting {
    /// Used within the window.
    Known,
    /// Used before, but not within the window.
    Lapsed,
    /// Never used (as far as this set remembers).
    New,
}

impl SeenSet {
    /// Records a use of `hash` on `day` and says whether it was new within
    /// `window_days`. Entries older than `forget_days` are dropped.
    pub fn touch(&mut self, hash: u64, day: u32, window_days: u32, forget_days: u32) -> Sighting {
        let hash = hash as u32;
        if let Some(entry) = self.entries.iter_mut().find(|(h, _)| *h == hash) {
            let last = entry.1;
            entry.1 = entry.1.max(day);
            return if day.saturating_sub(last) > window_days {
                Sighting::Lapsed
            } else {
                Sighting::Known
            };
        }
        if self.entries.len() >= 8 && self.entries.len() == self.entries.capacity() {
            self.entries
                .retain(|(_, last)| day.saturating_sub(*last) <= forget_days);
        }
        self.entries.push((hash, day));
        Sighting::New
    }

    /// Whether `hash` was used within `window_days` of `day`, without
    /// recording anything.
    pub fn contains(&self, hash: u64, day: u32, window_days: u32) -> bool {
        let hash = hash as u32;
        self.entries
            .iter()
            .any(|(h, last)| *h == hash && day.saturating_sub(*last) <= window_days)
    }

    /// Starts loading the entries into cache.
    pub fn prefetch(&self) {
        prefetch(self.entries.as_ptr());
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * std::mem::size_of::<(u32, u32)>()
    }
}

/// Bits per Bloom filter (512 bytes).
const BLOOM_BITS: usize = 4096;
const BLOOM_WORDS: usize = BLOOM_BITS / 64;
const BLOOM_HASHES: u32 = 4;

/// Resources seen in roughly the last `window` days: two Bloom filters, the
/// current one and the previous one, swapped every `window / 2` days. A value
/// counts as seen if either filter holds it, so memory reaches back between
/// `window / 2` and `window` days. At 300 resources per half-window the
/// false "seen" rate is about 0.7% (one new resource in 150 goes unnoticed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RotatingBloom {
    /// The day the current filter started.
    epoch_day: u32,
    current: Vec<u64>,
    previous: Vec<u64>,
}

impl Default for RotatingBloom {
    fn default() -> Self {
        RotatingBloom {
            epoch_day: 0,
            current: vec![0; BLOOM_WORDS],
            previous: vec![0; BLOOM_WORDS],
        }
    }
}

impl RotatingBloom {
    /// Records `hash` on `day`; true if it was new.
    pub fn touch(&mut self, hash: u64, day: u32, window_days: u32) -> bool {
        let half = (window_days / 2).max(1);
        if day >= self.epoch_day + 2 * half {
            self.current.iter_mut().for_each(|w| *w = 0);
            self.previous.iter_mut().for_each(|w| *w = 0);
            self.epoch_day = day;
        } else if day >= self.epoch_day + half {
            std::mem::swap(&mut self.current, &mut self.previous);
            self.current.iter_mut().for_each(|w| *w = 0);
            self.epoch_day += half;
        }
        let seen = probe(&self.current, hash) || probe(&self.previous, hash);
        set(&mut self.current, hash);
        !seen
    }

    /// Starts loading the bits `hash` will probe into cache.
    pub fn prefetch(&self, hash: u64) {
        for b in bits(hash) {
            prefetch(&self.current[b / 64]);
            prefetch(&self.previous[b / 64]);
        }
    }

    /// Whether `hash` is (probably) held, without recording it.
    pub fn contains(&self, hash: u64) -> bool {
        probe(&self.current, hash) || probe(&self.previous, hash)
    }

    pub fn heap_bytes(&self) -> usize {
        (self.current.capacity() + self.previous.capacity()) * 8
    }
}

fn bits(hash: u64) -> impl Iterator<Item = usize> {
    // Kirsch-Mitzenmacher: k probes from two halves of one hash.
    let h1 = hash as u32;
    let h2 = (hash >> 32) as u32 | 1;
    (0..BLOOM_HASHES).map(move |i| (h1.wrapping_add(i.wrapping_mul(h2)) as usize) % BLOOM_BITS)
}

fn probe(words: &[u64], hash: u64) -> bool {
    bits(hash).all(|b| words[b / 64] & (1 << (b % 64)) != 0)
}

fn set(words: &mut [u64], hash: u64) {
    for b in bits(hash) {
        words[b / 64] |= 1 << (b % 64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_new_once_then_known_then_lapsed_after_the_window() {
        let mut s = SeenSet::default();
        let h = value_hash(1, "search_issues");
        assert_eq!(s.touch(h, 10, 30, 90), Sighting::New);
        assert_eq!(s.touch(h, 20, 30, 90), Sighting::Known);
        assert_eq!(s.touch(h, 60, 30, 90), Sighting::Lapsed);
        assert!(s.contains(h, 60, 30));
        assert!(!s.contains(value_hash(2, "search_issues"), 60, 30));
    }

    #[test]
    fn forgotten_values_are_pruned_when_the_set_grows() {
        let mut s = SeenSet::default();
        for i in 0..64 {
            s.touch(i, 0, 30, 90);
        }
        for i in 100..200 {
            s.touch(i, 200, 30, 90);
        }
        assert!(s.len() <= 100 + 8, "{}", s.len());
        assert_eq!(s.touch(1, 200, 30, 90), Sighting::New);
    }

    #[test]
    fn the_bloom_remembers_within_the_window_and_forgets_after() {
        let mut b = RotatingBloom::default();
        let r = value_hash(3, "gdrive://acme/docs/plan");
        assert!(b.touch(r, 100, 30));
        assert!(!b.touch(r, 110, 30));
        // Not touched again: gone after two rotations.
        assert!(b.touch(value_hash(3, "other"), 118, 30));
        assert!(b.touch(r, 146, 30));
    }

    #[test]
    fn the_bloom_rarely_claims_an_unseen_resource() {
        let mut b = RotatingBloom::default();
        for i in 0..300u64 {
            b.touch(value_hash(3, &format!("res-{i}")), 5, 30);
        }
        let false_seen = (0..100_000u64)
            .filter(|i| b.contains(value_hash(3, &format!("probe-{i}"))))
            .count();
        // About 0.7% expected; allow 1%.
        assert!(false_seen < 1000, "{false_seen}");
    }
}
