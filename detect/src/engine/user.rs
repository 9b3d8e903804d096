//! Per-user state: what one (tenant, user) has done, kept small (a few KiB)
//! and serializable for checkpoints.

use serde::{Deserialize, Serialize};

use crate::alert::{Alert, DetectorKind};
use crate::baseline::{HourProfile, Moments};
use crate::seen::{RotatingBloom, SeenSet};

/// Minutes of per-minute counts kept (windows are at most 10 minutes, and
/// lateness at most 5).
pub const RING_MINUTES: usize = 16;
/// Recent events kept for evidence.
pub const RECENT_EVENTS: usize = 20;
/// Minutes per block of the long windows.
pub const BLOCK_MINUTES: i64 = 5;
/// Blocks kept: the longest window, an hour.
pub const BLOCKS: usize = 12;
/// The long windows judged besides `window` (when longer than it), in
/// minutes: a sustained rise is judged over the stretch it lasts.
pub const LONG_WINDOWS: [i64; 2] = [15, 60];

/// Event flags, for evidence and window counts.
pub mod flag {
    pub const DENIED: u8 = 1;
    pub const MALFORMED: u8 = 2;
    pub const NEW_RESOURCE: u8 = 4;
    pub const OFF_HOURS: u8 = 8;
    pub const RESOURCE: u8 = 16;
    /// Denied for want of access (not rate-limited, not an expired token).
    pub const REFUSED: u8 = 32;
    /// Kept longest as evidence: what the spike and off-hours detectors
    /// count. New resources are not among them: they are common (a busy
    /// user's every other call), and a sweep is all new resources anyway.
    pub const NOTABLE: u8 = DENIED | MALFORMED | OFF_HOURS | REFUSED;
}

/// Counts for one minute of event time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Minute {
    pub minute: i64,
    pub total: u16,
    pub denied: u16,
    pub malformed: u16,
    pub resources: u16,
    pub new_resources: u16,
    pub off_hours: u16,
}

/// An event id kept without an allocation when it is a UUID or short.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CompactId {
    Uuid([u8; 16]),
    Text(Box<str>),
}

impl CompactId {
    pub fn new(id: &str) -> Self {
        match uuid::Uuid::try_parse(id) {
            // Only the canonical form (36 chars, lower case) renders back as given.
            Ok(u) if id.len() == 36 && !id.bytes().any(|b| b.is_ascii_uppercase()) => {
                CompactId::Uuid(u.into_bytes())
            }
            _ => CompactId::Text(id.into()),
        }
    }

    pub fn render(&self) -> String {
        match self {
            CompactId::Uuid(u) => uuid::Uuid::from_bytes(*u).hyphenated().to_string(),
            CompactId::Text(s) => s.to_string(),
        }
    }
}

/// The counts of one block of [`BLOCK_MINUTES`] minutes (`sum.minute` is
/// its first minute), and how many of its minutes had calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Block {
    pub sum: Minute,
    pub active: u8,
}

/// A recent event, for evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recent {
    pub secs: i64,
    pub id: CompactId,
    /// Hash of the tool (or method) called.
    pub tool: u32,
    pub flags: u8,
}

impl Minute {
    /// Adds another span's counts (saturating: a window of an hour can
    /// hold more than a minute's counts).
    pub fn add(&mut self, other: &Minute) {
        self.total = self.total.saturating_add(other.total);
        self.denied = self.denied.saturating_add(other.denied);
        self.malformed = self.malformed.saturating_add(other.malformed);
        self.resources = self.resources.saturating_add(other.resources);
        self.new_resources = self.new_resources.saturating_add(other.new_resources);
        self.off_hours = self.off_hours.saturating_add(other.off_hours);
    }
}

/// What an alert says, before suppression and ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub detector: DetectorKind,
    /// The value the alert is about ("" for window detectors); suppression
    /// and the alert id key on it.
    pub value: String,
    pub severity: crate::alert::Severity,
    pub score: u8,
    pub title: String,
    pub explanation: String,
    pub evidence: crate::alert::Evidence,
    /// Event-time seconds.
    pub window: (i64, i64),
    pub time: i64,
}

/// A weak signal waiting for corroboration (see `judge::corroborate`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    pub secs: i64,
    pub detector: DetectorKind,
    pub value: u64,
    pub weight: f32,
    /// The alert it would raise; `None` once raised or for strong alerts,
    /// which corroborate but are raised on their own.
    pub finding: Option<Box<Finding>>,
}

/// An open suppression: the alert that was sent and how often it recurred.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Suppression {
    pub detector: DetectorKind,
    pub value: u64,
    pub until: i64,
    pub alert: Box<Alert>,
}

/// Everything known about one user.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserState {
    pub tenant_id: Box<str>,
    pub user_id: Box<str>,
    /// Day (since the Unix epoch) of the first event seen.
    pub first_day: u32,
    /// Day baselines were last decayed to.
    pub decayed_day: u32,
    pub ring: Vec<Minute>,
    pub recent: std::collections::VecDeque<Recent>,
    /// Next window end (minute) to judge, if any is pending.
    pub next_eval: Option<i64>,
    /// Minutes before this one were part of a window that alerted; they are
    /// kept out of the baselines (an attack is not the user's habit).
    pub learn_from: i64,
    /// Denials per active minute.
    pub denied: Moments,
    /// 400s and tool errors per active minute.
    pub malformed: Moments,
    /// New resources per active minute.
    pub new_resources: Moments,
    /// Calls per active window.
    pub volume: Moments,
    /// The most calls in a window on the user's past days, decayed like the
    /// baselines. Only days that raised no alert count.
    #[serde(default)]
    pub volume_peak: f32,
    /// The most calls in a window so far today, or `judge::ALERTED_DAY`
    /// once a window today raised an alert; it joins `volume_peak` when the
    /// day is over.
    #[serde(default)]
    pub volume_day_peak: f32,
    pub hours: HourProfile,
    pub tools: SeenSet,
    pub servers: SeenSet,
    pub clients: SeenSet,
    pub ips: SeenSet,
    pub resources: RotatingBloom,
    /// Tools or resources denied recently that the user had never used:
    /// (hash, time).
    pub denied_new: Vec<(u64, i64)>,
    /// The current off-hours run: the time of one call per minute with
    /// off-hours calls, within `off_hours.window`.
    pub off_hours_calls: Vec<i64>,

    /// The smallest hour share among recent off-hours calls, for evidence.
    pub off_hours_share: f32,
    /// What the current off-hours run has taught the hour profile so far
    /// (its folded calls, at the learning rate): a run is judged against the
    /// profile without it.
    #[serde(default)]
    pub off_hours_run_mass: f32,
    /// How many hours from the user's usual hours the current off-hours
    /// run has gone, at its deepest (see `HourProfile::hours_from_usual`).
    #[serde(default)]
    pub off_hours_depth: u8,
    /// Weak signals of the last correlation window.
    pub signals: Vec<Signal>,
    pub suppressions: Vec<Suppression>,
    /// The last hour in blocks, for the long windows (empty until the
    /// user's first complete block).
    #[serde(default)]
    pub blocks: Vec<Block>,
    /// Calls per active clock hour.
    #[serde(default)]
    pub volume_hour: Moments,
    /// The clock hour in progress (its first minute) and its calls so far;
    /// learned into `volume_hour` once a block of a later hour closes.
    #[serde(default)]
    pub hour_stretch: (i64, u32),
}

impl UserState {
    pub fn new(tenant_id: &str, user_id: &str, day: u32) -> Self {
        UserState {
            tenant_id: tenant_id.into(),
            user_id: user_id.into(),
            first_day: day,
            decayed_day: day,
            ring: vec![Minute::default(); RING_MINUTES],
            ..UserState::default()
        }
    }

    /// Days of history before `day`.
    pub fn history_days(&self, day: u32) -> u32 {
        day.saturating_sub(self.first_day)
    }

    /// The counts of `minute`, or zeros.
    pub fn minute(&self, minute: i64) -> Minute {
        let slot = self.ring[minute.rem_euclid(RING_MINUTES as i64) as usize];
        if slot.minute == minute {
            slot
        } else {
            Minute {
                minute,
                ..Minute::default()
            }
        }
    }

    /// The counts of `minute`, for update; `None` if the minute has already
    /// left the ring (a very late event).
    pub fn minute_mut(&mut self, minute: i64) -> Option<&mut Minute> {
        let slot = &mut self.ring[minute.rem_euclid(RING_MINUTES as i64) as usize];
        if slot.minute == minute {
            return Some(slot);
        }
        if slot.minute > minute {
            return None;
        }
        *slot = Minute {
            minute,
            ..Minute::default()
        };
        Some(slot)
    }

    /// Keeps the block of minutes `[end - BLOCK_MINUTES, end)`; `end` is
    /// a block boundary whose minutes are all final.
    /// `window` is the sum of the block's minutes if the caller has it.
    pub fn close_block(&mut self, end: i64, window: Option<(Minute, u32)>) -> Block {
        let (sum, active) = window.unwrap_or_else(|| self.window(end, BLOCK_MINUTES));
        if self.blocks.is_empty() {
            self.blocks = vec![Block::default(); BLOCKS];
        }
        let slot = (end / BLOCK_MINUTES).rem_euclid(BLOCKS as i64) as usize;
        let block = Block {
            sum,
            active: active as u8,
        };
        self.blocks[slot] = block;
        block
    }

    /// Sums the blocks in `[end - len, end)` (`end` and `len` multiples of
    /// [`BLOCK_MINUTES`], `len` at most an hour): counts and active minutes.
    pub fn long_window(&self, end: i64, len: i64) -> (Minute, u32) {
        let mut sum = Minute {
            minute: end - len,
            ..Minute::default()
        };
        let mut active = 0;
        let mut start = end - len;
        while start < end {
            let b = (start / BLOCK_MINUTES + 1).rem_euclid(BLOCKS as i64) as usize;
            if let Some(block) = self.blocks.get(b).filter(|b| b.sum.minute == start) {
                active += u32::from(block.active);
                sum.add(&block.sum);
            }
            start += BLOCK_MINUTES;
        }
        (sum, active)
    }

    /// Sums the minutes in `[end - len, end)`.
    pub fn window(&self, end: i64, len: i64) -> (Minute, u32) {
        let mut sum = Minute {
            minute: end - len,
            ..Minute::default()
        };
        let mut active = 0;
        for m in (end - len)..end {
            let c = self.minute(m);
            if c.total > 0 {
                active += 1;
            }
            sum.add(&c);
        }
        (sum, active)
    }

    /// Starts loading what judging the window of `len` minutes up to `end`
    /// will read: this state's own fields and the window's minute slots.
    pub fn prefetch_for_window(&self, end: i64, len: i64) {
        crate::prefetch::prefetch(self);
        for m in (end - len)..end {
            crate::prefetch::prefetch(&self.ring[m.rem_euclid(RING_MINUTES as i64) as usize]);
        }
    }

    /// Starts loading what one event at `secs` will touch (its minute's
    /// slot, the recent-events ring, the sets of known values, its hour of
    /// the week), so that these cache misses overlap instead of queueing.
    pub fn prefetch_for_event(&self, secs: i64) {
        let minute = secs.div_euclid(60);
        crate::prefetch::prefetch(&self.ring[minute.rem_euclid(RING_MINUTES as i64) as usize]);
        if let Some(r) = self.recent.front() {
            crate::prefetch::prefetch(r);
        }
        if let Some(r) = self.recent.back() {
            crate::prefetch::prefetch(r);
        }
        self.tools.prefetch();
        self.servers.prefetch();
        self.clients.prefetch();
        self.ips.prefetch();
        self.hours
            .prefetch(crate::baseline::HourProfile::hour_of_week(secs));
    }

    /// Keeps `recent` among the last [`RECENT_EVENTS`]. When full, the
    /// oldest plain event (none of the [`flag::NOTABLE`] flags) makes room
    /// before any flagged one: a denial burst followed by a run of ordinary
    /// calls still has its denials as evidence, at no extra memory.
    #[inline]
    pub fn remember(&mut self, recent: Recent) {
        if self.recent.len() >= RECENT_EVENTS {
            match self.recent.front() {
                Some(r) if r.flags & flag::NOTABLE != 0 => self.drop_oldest_plain(),
                _ => {
                    self.recent.pop_front();
                }
            }
        }
        // Exactly the ring's size: growing by doubling would leave room for
        // 32, a third of a user's state unused.
        self.recent.reserve_exact(RECENT_EVENTS - self.recent.len());
        self.recent.push_back(recent);
    }

    /// Makes room in a full ring whose oldest event is flagged: the oldest
    /// plain one goes, or the oldest if all are flagged.
    #[cold]
    fn drop_oldest_plain(&mut self) {
        match self
            .recent
            .iter()
            .position(|r| r.flags & flag::NOTABLE == 0)
        {
            Some(i) => {
                self.recent.remove(i);
            }
            None => {
                self.recent.pop_front();
            }
        }
    }

    /// Event ids of recent events in `[from, to)` with any of `flags` (all
    /// if 0), oldest first.
    pub fn samples(&self, from: i64, to: i64, flags: u8) -> Vec<String> {
        let mut v: Vec<&Recent> = self
            .recent
            .iter()
            .filter(|r| r.secs >= from && r.secs < to && (flags == 0 || r.flags & flags != 0))
            .collect();
        v.sort_by_key(|r| r.secs);
        v.into_iter()
            .take(crate::alert::MAX_SAMPLE_EVENTS)
            .map(|r| r.id.render())
            .collect()
    }

    /// Distinct tools among recent events in `[from, to)` with `flags`.
    pub fn distinct_tools(&self, from: i64, to: i64, flags: u8) -> usize {
        let mut tools: Vec<u32> = self
            .recent
            .iter()
            .filter(|r| r.secs >= from && r.secs < to && (flags == 0 || r.flags & flags != 0))
            .map(|r| r.tool)
            .collect();
        tools.sort_unstable();
        tools.dedup();
        tools.len()
    }

    /// Approximate bytes held, for the memory benchmark.
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.tenant_id.len()
            + self.user_id.len()
            + self.ring.capacity() * std::mem::size_of::<Minute>()
            + self.recent.capacity() * std::mem::size_of::<Recent>()
            + self
                .recent
                .iter()
                .map(|r| match &r.id {
                    CompactId::Text(s) => s.len(),
                    CompactId::Uuid(_) => 0,
                })
                .sum::<usize>()
            + self.tools.heap_bytes()
            + self.servers.heap_bytes()
            + self.clients.heap_bytes()
            + self.ips.heap_bytes()
            + self.resources.heap_bytes()
            + self.denied_new.capacity() * 16
            + self.off_hours_calls.capacity() * 8
            + self.blocks.capacity() * std::mem::size_of::<Block>()
            + self.signals.len() * (std::mem::size_of::<Signal>() + 1024)
            + self.suppressions.len() * 1024
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_kept_compactly_and_render_back() {
        let id = "01a1532f-2ba9-7d47-95a1-eec13dfdfac6";
        assert!(matches!(CompactId::new(id), CompactId::Uuid(_)));
        assert_eq!(CompactId::new(id).render(), id);
        // Upper case is not canonical: kept as text so it renders as given.
        let upper = id.to_uppercase();
        assert_eq!(CompactId::new(&upper).render(), upper);
        assert_eq!(CompactId::new("evt-1").render(), "evt-1");
    }

    #[test]
    fn flagged_events_outlive_plain_ones_as_evidence() {
        let mut u = UserState::new("acme", "alice", 0);
        let event = |secs: i64, flags: u8| Recent {
            secs,
            id: CompactId::new(&format!("e{secs}")),
            tool: 0,
            flags,
        };
        for s in 0..5 {
            u.remember(event(s, flag::DENIED));
        }
        for s in 5..100 {
            u.remember(event(s, 0));
        }
        assert_eq!(u.recent.len(), RECENT_EVENTS);
        // The five denials are still there, with the latest plain calls.
        assert_eq!(
            u.samples(0, 5, flag::DENIED),
            ["e0", "e1", "e2", "e3", "e4"]
        );
        assert_eq!(u.recent.back().map(|r| r.secs), Some(99));
        assert_eq!(u.recent[5].secs, 85);
        // Once the ring holds only flagged events, the oldest goes.
        for s in 100..125 {
            u.remember(event(s, flag::MALFORMED));
        }
        assert_eq!(u.recent.front().map(|r| r.secs), Some(105));
        assert!(u.recent.iter().all(|r| r.flags != 0));
    }

    #[test]
    fn the_ring_forgets_old_minutes_and_refuses_very_late_ones() {
        let mut u = UserState::new("acme", "alice", 0);
        u.minute_mut(100).expect("fresh").total = 3;
        assert_eq!(u.minute(100).total, 3);
        u.minute_mut(116).expect("newer").total = 1;
        assert_eq!(u.minute(100).total, 0);
        assert!(u.minute_mut(100).is_none());
        let (sum, active) = u.window(117, 5);
        assert_eq!((sum.total, active), (1, 1));
    }
}
