//! Who gets the query threads: the query that has done the least work goes
//! first. A small query reads a file at a time and waits for each read;
//! with heavy queries taking turns of a [`SLICE`](super::slices::SLICE) on
//! the same threads, every wait cost it a round of their turns, and a count
//! over 125 fresh files took 9 s beside one heavy join.
//!
//! - Each query keeps an account of its work: the time it has been planned
//!   so far (on a planning thread: see [`super::runtime::off_workers`]), and
//!   the time its operators spend in their polls ([`Share::worked`]).
//! - A query whose turn ends while a running query has done less than half
//!   its work sleeps [`PAUSE`] before its next turn (its slices ask
//!   [`Share::gives_way`]), so the lighter query's reads are picked up at
//!   once. Below [`MIN_WORK`] a query never gives way.
//! - A query whose client has not taken its last batch yet is not running,
//!   so it holds no one back.
//!
//! This is least-attained-service scheduling, as in Trino's multilevel split
//! queue: a new heavy query shares the threads with a small one only until
//! it has done twice the small one's work. Lighter queries can hold heavier
//! ones back, but `query.max_concurrent` bounds how many run, every running
//! query's work grows, and a held-back query still ends at its timeout.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Work below which a query never gives way.
pub const MIN_WORK: Duration = Duration::from_millis(10);

/// How long a query that gives way sleeps before it looks again.
pub const PAUSE: Duration = Duration::from_millis(5);

/// `Share::planning_ns` while the query is planned.
const PLANNING: u64 = u64::MAX;

/// The engine's running queries.
#[derive(Debug, Default)]
pub struct Lanes {
    queries: Mutex<Vec<Weak<Share>>>,
}

impl Lanes {
    /// A new query's share, with no work done.
    pub fn join(self: &Arc<Self>) -> Arc<Share> {
        let share = Arc::new(Share {
            lanes: Arc::downgrade(self),
            admitted: Instant::now(),
            planning_ns: AtomicU64::new(PLANNING),
            worked_ns: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
        });
        let mut queries = self.queries.lock().unwrap_or_else(|p| p.into_inner());
        queries.retain(|q| q.strong_count() > 0);
        queries.push(Arc::downgrade(&share));
        share
    }

    /// Whether a running query has done less than `ns` of work.
    fn any_running_under(&self, ns: u64) -> bool {
        let queries = self.queries.lock().unwrap_or_else(|p| p.into_inner());
        queries
            .iter()
            .filter_map(Weak::upgrade)
            .any(|q| q.worked_ns() < ns && !q.is_waiting())
    }
}

/// One query's account: how long it was planned, how long its operators
/// worked, and whether it waits for its client. Reaches the query's plan as
/// a session config extension.
#[derive(Debug)]
pub struct Share {
    lanes: Weak<Lanes>,
    /// When planning began.
    admitted: Instant,
    /// Nanoseconds of planning, or [`PLANNING`] while it goes on.
    planning_ns: AtomicU64,
    worked_ns: AtomicU64,
    waiting: AtomicBool,
}

impl Share {
    /// Ends the planning: its time so far stays on the account. Until then
    /// the account grows with the time since admission, so that a query
    /// whose planning takes long (a constant of a million elements to fold)
    /// is not taken for a light one meanwhile.
    pub fn planned(&self) {
        self.planning_ns
            .store(nanos(self.admitted.elapsed()), Ordering::Relaxed);
    }

    /// Adds `work` to the query's account.
    pub fn worked(&self, work: Duration) {
        self.worked_ns.fetch_add(nanos(work), Ordering::Relaxed);
    }

    /// The work done so far.
    #[cfg(test)]
    pub fn work(&self) -> Duration {
        Duration::from_nanos(self.worked_ns())
    }

    fn worked_ns(&self) -> u64 {
        let planning = match self.planning_ns.load(Ordering::Relaxed) {
            PLANNING => nanos(self.admitted.elapsed()),
            planned => planned,
        };
        planning.saturating_add(self.worked_ns.load(Ordering::Relaxed))
    }

    /// Marks the query as waiting for its client to take a batch, or not.
    pub fn set_waiting(&self, waiting: bool) {
        self.waiting.store(waiting, Ordering::Relaxed);
    }

    fn is_waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Whether this query should sleep [`PAUSE`] before its next turn: a
    /// running query has done less than half its work.
    pub fn gives_way(&self) -> bool {
        let mine = self.worked_ns();
        mine >= MIN_WORK.as_nanos() as u64
            && self
                .lanes
                .upgrade()
                .is_some_and(|lanes| lanes.any_running_under(mine / 2))
    }
}

fn nanos(time: Duration) -> u64 {
    u64::try_from(time.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_gives_way_to_running_queries_with_less_than_half_its_work() {
        let ms = Duration::from_millis;
        let lanes = Arc::new(Lanes::default());
        let joined = |lanes: &Arc<Lanes>| {
            let share = lanes.join();
            // Planned at once: no planning time on the account.
            share.planning_ns.store(0, Ordering::Relaxed);
            share
        };
        let heavy = joined(&lanes);
        heavy.worked(ms(600));
        heavy.worked(ms(600));
        assert_eq!(heavy.work(), ms(1200));
        assert!(!heavy.gives_way(), "alone, a heavy query goes on");
        let small = joined(&lanes);
        assert!(heavy.gives_way(), "a new query runs");
        assert!(!small.gives_way(), "a query with no work never gives way");
        small.worked(ms(500));
        assert!(heavy.gives_way(), "500 ms is under half of 1.2 s");
        assert!(!small.gives_way(), "the heavier query is not lighter");
        small.set_waiting(true);
        assert!(!heavy.gives_way(), "the small query waits for its client");
        small.set_waiting(false);
        small.worked(ms(200));
        assert!(!heavy.gives_way(), "700 ms is more than half of 1.2 s");
        assert!(!small.gives_way(), "neither has twice the other's work");
        drop(small);
        let fresh = joined(&lanes);
        fresh.worked(MIN_WORK / 2);
        let other = joined(&lanes);
        assert!(!fresh.gives_way(), "under MIN_WORK a query never gives way");
        drop(other);
        assert!(heavy.gives_way());
        drop(fresh);
        assert!(!heavy.gives_way(), "the lighter queries ended");
    }

    #[test]
    fn planning_counts_as_work_while_it_goes_on() {
        let lanes = Arc::new(Lanes::default());
        let planning = lanes.join();
        let start = planning.work();
        std::thread::sleep(Duration::from_millis(2));
        assert!(planning.work() > start, "the account grows while it plans");
        planning.planned();
        let planned = planning.work();
        planning.worked(Duration::from_millis(3));
        assert_eq!(planning.work(), planned + Duration::from_millis(3));
    }
}
