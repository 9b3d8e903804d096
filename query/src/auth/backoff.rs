//! Back-off on failed logins, per source address, shared by the Postgres wire
//! and the HTTP API (`[query.login_backoff]`).
//!
//! [`Backoff`] is the deterministic core: every call takes `now`, so tests
//! need no clock and no sleeps. [`LoginLimiter`] wraps it in a mutex with the
//! real clock and the metrics.
//!
//! Invariants:
//! - An address is refused only after `max_failures` failures, each less than
//!   `window` after the previous one; the refusal lasts `initial`, doubled for
//!   each further failure, never more than `max`.
//! - A refused attempt is not checked and not counted: it neither extends the
//!   refusal nor learns whether its token was right.
//! - A success forgets the address; so does `window` without a failure once
//!   its refusal has passed.
//! - At most `max_addresses` addresses are remembered; a new one evicts the
//!   one whose last failure is oldest. IPv6 addresses count by their /64, the
//!   block one host usually holds, so that one host cannot spray addresses.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::config::LoginBackoffConfig;

/// The key an address is remembered by: IPv4 addresses (and IPv4-mapped
/// IPv6) as they are, IPv6 by their /64 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Source(IpAddr);

impl From<IpAddr> for Source {
    fn from(ip: IpAddr) -> Source {
        match ip {
            IpAddr::V4(_) => Source(ip),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Source(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Source(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

/// What a failure did to its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Counted; the address may still try.
    Counted,
    /// The address is now refused for this long.
    Refused(Duration),
}

#[derive(Debug, Clone)]
struct Entry {
    /// Failures in the current run (each within `window` of the previous).
    failures: u32,
    last_failure: Instant,
    refused_until: Option<Instant>,
    /// Position in [`Backoff::order`].
    seq: u64,
}

/// Per-address failure counts and refusals, with time passed in.
#[derive(Debug)]
pub struct Backoff {
    config: LoginBackoffConfig,
    entries: HashMap<Source, Entry>,
    /// Addresses by the sequence number of their last failure: the first is
    /// the one to evict.
    order: BTreeMap<u64, Source>,
    next_seq: u64,
    evictions: u64,
}

impl Backoff {
    pub fn new(config: LoginBackoffConfig) -> Backoff {
        Backoff {
            config,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            evictions: 0,
        }
    }

    /// How long `source` is still refused at `now`, if it is.
    pub fn refused(&self, source: Source, now: Instant) -> Option<Duration> {
        let until = self.entries.get(&source)?.refused_until?;
        (until > now).then(|| until - now)
    }

    /// Records a failed login from `source` at `now`.
    pub fn failure(&mut self, source: Source, now: Instant) -> Failure {
        if self.config.max_failures == 0 {
            return Failure::Counted;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        if !self.entries.contains_key(&source) {
            self.make_room(now);
        }
        let entry = self.entries.entry(source).or_insert(Entry {
            failures: 0,
            last_failure: now,
            refused_until: None,
            seq,
        });
        self.order.remove(&entry.seq);
        if expired(&self.config, entry, now) {
            entry.failures = 0;
            entry.refused_until = None;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        entry.seq = seq;
        self.order.insert(seq, source);
        let over = entry.failures.checked_sub(self.config.max_failures);
        match over {
            Some(doublings) => {
                let delay = doubled(self.config.initial, doublings).min(self.config.max);
                entry.refused_until = Some(now + delay);
                Failure::Refused(delay)
            }
            None => Failure::Counted,
        }
    }

    /// Records a successful login from `source`: its failures are forgotten.
    pub fn success(&mut self, source: Source) {
        if let Some(entry) = self.entries.remove(&source) {
            self.order.remove(&entry.seq);
        }
    }

    /// Addresses remembered now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Addresses forgotten to make room, since the start.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Before a new address is added: forgets expired addresses, oldest
    /// first, and if the map is still full, the oldest one.
    fn make_room(&mut self, now: Instant) {
        while self.entries.len() >= self.config.max_addresses {
            let Some((&seq, &oldest)) = self.order.iter().next() else {
                break;
            };
            let expired = self
                .entries
                .get(&oldest)
                .is_some_and(|entry| expired(&self.config, entry, now));
            self.order.remove(&seq);
            self.entries.remove(&oldest);
            if !expired {
                self.evictions += 1;
            }
        }
    }
}

/// Whether `entry`'s run is over: its refusal has passed and its last
/// failure is `window` old.
fn expired(config: &LoginBackoffConfig, entry: &Entry, now: Instant) -> bool {
    entry.refused_until.is_none_or(|until| until <= now)
        && now.saturating_duration_since(entry.last_failure) >= config.window
}

/// `base * 2^doublings`, saturating.
fn doubled(base: Duration, doublings: u32) -> Duration {
    let factor = 1u32.checked_shl(doublings).unwrap_or(u32::MAX);
    base.checked_mul(factor).unwrap_or(Duration::MAX)
}

/// Where a login was tried, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct TransportLabel {
    pub transport: &'static str,
}

/// `tooltrail_query_login_*`. Labels are bounded: the transport only, never
/// an address.
#[derive(Debug, Clone, Default)]
pub struct LoginMetrics {
    /// Logins refused because their address was backing off.
    pub refused: Family<TransportLabel, Counter>,
    /// Failures that started or lengthened a refusal.
    pub backoffs: Family<TransportLabel, Counter>,
    /// Addresses remembered.
    pub addresses: Gauge,
    /// Addresses forgotten before their time to keep memory bounded.
    pub evictions: Counter,
}

impl LoginMetrics {
    pub fn register(registry: &mut Registry) -> LoginMetrics {
        let m = LoginMetrics::default();
        let r = registry.sub_registry_with_prefix("tooltrail_query_login");
        r.register(
            "refused",
            "Logins refused because their source address is backing off after failed logins",
            m.refused.clone(),
        );
        r.register(
            "backoffs",
            "Failed logins that started or lengthened a source address's back-off",
            m.backoffs.clone(),
        );
        r.register(
            "backoff_addresses",
            "Source addresses with recent failed logins, remembered for the back-off",
            m.addresses.clone(),
        );
        r.register(
            "backoff_evictions",
            "Source addresses forgotten early to keep the back-off's memory bounded",
            m.evictions.clone(),
        );
        m
    }
}

/// A login refused by the back-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// When the address may try again.
    pub retry_after: Duration,
}

impl From<Refused> for crate::error::QueryError {
    fn from(refused: Refused) -> Self {
        let wait = refused.retry_after;
        crate::error::QueryError::LoginsRefused {
            // Whole seconds, up: a client that waits this long is let in.
            retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
        }
    }
}

/// The back-off of one process, shared by its listeners.
#[derive(Debug)]
pub struct LoginLimiter {
    state: Mutex<Backoff>,
    metrics: LoginMetrics,
}

impl LoginLimiter {
    pub fn new(config: &LoginBackoffConfig, metrics: LoginMetrics) -> LoginLimiter {
        LoginLimiter {
            state: Mutex::new(Backoff::new(config.clone())),
            metrics,
        }
    }

    /// With the defaults and metrics exposed nowhere (the CLI, tests).
    pub fn unregistered() -> LoginLimiter {
        LoginLimiter::new(&LoginBackoffConfig::default(), LoginMetrics::default())
    }

    /// Whether a login from `ip` may be tried now; a refusal is counted.
    pub fn check(&self, ip: IpAddr, transport: &'static str) -> Result<(), Refused> {
        let refused = self.lock().refused(Source::from(ip), Instant::now());
        match refused {
            Some(retry_after) => {
                self.metrics
                    .refused
                    .get_or_create(&TransportLabel { transport })
                    .inc();
                Err(Refused { retry_after })
            }
            None => Ok(()),
        }
    }

    /// Records a failed login from `ip`.
    pub fn failure(&self, ip: IpAddr, transport: &'static str) -> Failure {
        let mut state = self.lock();
        let evictions = state.evictions();
        let failure = state.failure(Source::from(ip), Instant::now());
        self.metrics.addresses.set(state.len() as i64);
        self.metrics.evictions.inc_by(state.evictions() - evictions);
        drop(state);
        if let Failure::Refused(delay) = failure {
            self.metrics
                .backoffs
                .get_or_create(&TransportLabel { transport })
                .inc();
            tracing::warn!(
                peer = %ip,
                transport,
                refused_for_ms = delay.as_millis() as u64,
                "too many failed logins: refusing the address for a while"
            );
        }
        failure
    }

    /// Records a successful login from `ip`.
    pub fn success(&self, ip: IpAddr) {
        let mut state = self.lock();
        state.success(Source::from(ip));
        self.metrics.addresses.set(state.len() as i64);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Backoff> {
        // The state is a cache of counts: after a panic elsewhere it is
        // still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: Duration = Duration::from_secs(1);

    fn config() -> LoginBackoffConfig {
        LoginBackoffConfig {
            max_failures: 5,
            window: 600 * S,
            initial: S,
            max: 300 * S,
            max_addresses: 4,
        }
    }

    fn ip(last: u8) -> Source {
        Source::from(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn the_fifth_failure_refuses_for_the_initial_delay_then_each_one_doubles_it_up_to_the_cap() {
        let mut b = Backoff::new(config());
        let t0 = Instant::now();
        for i in 0..4 {
            assert_eq!(b.failure(ip(1), t0 + i * S), Failure::Counted);
            assert_eq!(b.refused(ip(1), t0 + i * S), None);
        }
        let mut now = t0 + 4 * S;
        assert_eq!(b.failure(ip(1), now), Failure::Refused(S));
        assert_eq!(b.refused(ip(1), now), Some(S));
        assert_eq!(b.refused(ip(1), now + S / 2), Some(S / 2));
        assert_eq!(
            b.refused(ip(2), now),
            None,
            "other addresses are not refused"
        );
        let mut delays = Vec::new();
        for _ in 0..12 {
            now += b.refused(ip(1), now).unwrap_or_default();
            assert_eq!(b.refused(ip(1), now), None, "the refusal ends on time");
            match b.failure(ip(1), now) {
                Failure::Refused(d) => delays.push(d.as_secs()),
                Failure::Counted => panic!("a failure after the threshold is refused"),
            }
        }
        assert_eq!(delays, [2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300, 300]);
    }

    #[test]
    fn a_success_or_a_quiet_window_forgets_the_failures() {
        let mut b = Backoff::new(config());
        let t0 = Instant::now();
        for i in 0..4 {
            b.failure(ip(1), t0 + i * S);
        }
        b.success(ip(1));
        assert!(b.is_empty());
        for i in 0..4 {
            assert_eq!(b.failure(ip(1), t0 + i * S), Failure::Counted);
        }
        // The fifth failure comes a whole window after the fourth: a new run.
        assert_eq!(b.failure(ip(1), t0 + 3 * S + 600 * S), Failure::Counted);
        // Refused, then quiet for a window after the refusal: a new run too.
        let mut now = t0 + 1000 * S;
        for _ in 0..5 {
            b.failure(ip(1), now);
        }
        assert!(b.refused(ip(1), now).is_some());
        now += 601 * S;
        assert_eq!(b.failure(ip(1), now), Failure::Counted);
    }

    #[test]
    fn a_spray_of_addresses_keeps_the_map_bounded_by_evicting_the_oldest() {
        let mut b = Backoff::new(config());
        let t0 = Instant::now();
        for _ in 0..5 {
            b.failure(ip(1), t0);
        }
        assert!(b.refused(ip(1), t0).is_some());
        for last in 2..=4 {
            b.failure(ip(last), t0 + S / 10);
        }
        assert_eq!(b.len(), 4);
        // ip(1) failed again later than ip(2..4): they go first.
        b.failure(ip(1), t0 + S / 5);
        for last in 5..=200 {
            b.failure(ip(last), t0 + S / 2);
            assert!(b.len() <= 4);
        }
        assert_eq!(b.evictions(), 196);
        // The spray has pushed even the refused address out: bounded memory
        // wins over a perfect memory, and the eviction is counted.
        assert_eq!(b.refused(ip(1), t0 + S / 2), None);
        assert_eq!(b.entries.len(), b.order.len());
    }

    #[test]
    fn expired_addresses_make_room_without_counting_as_evictions() {
        let mut b = Backoff::new(config());
        let t0 = Instant::now();
        for last in 1..=4 {
            b.failure(ip(last), t0);
        }
        b.failure(ip(5), t0 + 601 * S);
        assert_eq!((b.len(), b.evictions()), (4, 0));
    }

    #[test]
    fn ipv6_addresses_count_by_their_64_prefix_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Source::from(a), Source::from(b));
        assert_ne!(Source::from(a), Source::from(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(Source::from(mapped), ip(1));
    }

    #[test]
    fn zero_max_failures_turns_the_backoff_off() {
        let mut b = Backoff::new(LoginBackoffConfig {
            max_failures: 0,
            ..config()
        });
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(b.failure(ip(1), now), Failure::Counted);
        }
        assert!(b.is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Fail(u8),
        Succeed(u8),
        Wait(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u8..12).prop_map(Op::Fail),
            1 => (0u8..12).prop_map(Op::Succeed),
            3 => (0u64..400_000).prop_map(Op::Wait),
        ]
    }

    proptest! {
        /// Against a model of one address's rules: the map never outgrows its
        /// cap, a refusal never exceeds `max`, and an address is refused only
        /// right after at least `max_failures` failures.
        #[test]
        fn refusals_follow_the_rules_whatever_the_sequence(ops in proptest::collection::vec(op(), 1..300)) {
            let config = config();
            let mut b = Backoff::new(config.clone());
            let mut now = Instant::now();
            // Consecutive failures per address since its last success, ignoring
            // the window: an upper bound on what the back-off may have counted.
            let mut model: HashMap<u8, u32> = HashMap::new();
            for op in ops {
                match op {
                    Op::Wait(ms) => now += Duration::from_millis(ms),
                    Op::Succeed(a) => {
                        b.success(ip(a));
                        model.remove(&a);
                        prop_assert_eq!(b.refused(ip(a), now), None);
                    }
                    Op::Fail(a) => {
                        if b.refused(ip(a), now).is_some() {
                            continue; // a refused attempt is never checked
                        }
                        let n = model.entry(a).or_default();
                        *n += 1;
                        match b.failure(ip(a), now) {
                            Failure::Refused(d) => {
                                prop_assert!(*n >= config.max_failures);
                                prop_assert!(d >= config.initial && d <= config.max);
                                prop_assert_eq!(b.refused(ip(a), now), Some(d));
                            }
                            Failure::Counted => prop_assert_eq!(b.refused(ip(a), now), None),
                        }
                    }
                }
                prop_assert!(b.len() <= config.max_addresses);
                prop_assert_eq!(b.entries.len(), b.order.len());
            }
        }
    }
}
