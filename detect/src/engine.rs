//! The streaming detector: `observe(event) -> alerts`, by event time, with
//! no IO and no clock of its own.
//!
//! Each event updates its user's state and may raise an immediate alert
//! (cross-tenant, sensitive tool, first-seen values). Counts go into the
//! user's per-minute ring; a sliding window of `window` minutes ending at a
//! minute boundary is judged once the watermark (the newest event time minus
//! the allowed lateness) passes its end, so within the lateness the order of
//! arrival does not matter. Only users with activity in a window are
//! visited: a timer queue holds the next window end per active user.
//!
//! After a window is judged, its oldest minute leaves it and is folded into
//! the user's baselines, unless it was part of a window that alerted.

mod judge;
mod user;

use std::collections::BTreeMap;

use rustc_hash::FxHashMap as HashMap;

use tooltrail_schemas::{Decision, ToolCallEvent};

use crate::alert::Alert;
use crate::baseline::{DAY, HourProfile, Moments, Prior, decay};
use crate::config::Settings;
use crate::seen::{Sighting, value_hash};
use crate::sigma::SigmaDetector;

use user::{CompactId, Recent, flag};
pub use user::{RECENT_EVENTS, UserState};

/// Kinds of values, for [`value_hash`].
mod kind {
    pub const TOOL: u8 = 1;
    pub const SERVER: u8 = 2;
    pub const CLIENT: u8 = 3;
    pub const IP: u8 = 4;
    pub const RESOURCE: u8 = 5;
    pub const TENANT: u8 = 6;
}

/// What a tenant's users have in common: how many use each value, and the
/// pooled rates that serve as priors for users with little history.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TenantState {
    /// Value hash to the number of users who have used it.
    pub peers: HashMap<u64, u32>,
    pub denied: Moments,
    pub malformed: Moments,
    pub new_resources: Moments,
    /// Calls per active window.
    pub volume: Moments,
    /// Calls per active clock hour.
    #[serde(default)]
    pub volume_hour: Moments,
    /// Denials per active minute of identities in their first two days: the
    /// prior a new identity's denials are judged against.
    #[serde(default)]
    pub newcomer_denied: Moments,
    /// Day of the tenant's first event: until it has `min_history` days, no
    /// one in it can be judged against peers either.
    pub first_day: Option<u32>,
    pub decayed_day: u32,
}

/// Counters for metrics and reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Stats {
    pub events: u64,
    /// Events behind the watermark when they arrived: counted for baselines
    /// and first-seen values, but their windows were already judged.
    pub late: u64,
    pub alerts: u64,
    pub suppressed: u64,
    /// Users dropped after `forget_after` without events.
    #[serde(default)]
    pub forgotten: u64,
}

/// The detector over one stream (a Kafka partition, a file, the HTTP path).
pub struct Engine {
    settings: Settings,
    /// Boxed: right after the table grows, more than half its slots are
    /// empty, and a slot holding the state itself (over a kilobyte) would
    /// make each empty one that big.
    users: HashMap<u64, Box<UserState>>,
    tenants: HashMap<Box<str>, TenantState>,
    /// Newest event time seen (Unix seconds).
    max_secs: i64,
    /// Windows ending at or before this minute have been judged.
    watermark_minute: i64,
    /// Window end minute to the users to judge then.
    timers: BTreeMap<i64, Vec<u64>>,
    stats: Stats,
    /// The watermark's day when idle users were last looked for.
    swept_day: u32,
    /// Sigma rules, when the settings carry some. Not checkpointed: a
    /// restart begins their correlation windows anew.
    sigma: Option<SigmaDetector>,
}

/// The rule engine the settings ask for.
fn sigma_for(settings: &Settings) -> Option<SigmaDetector> {
    let source = settings.rules.clone()?;
    Some(SigmaDetector::new(source, settings.suppression_secs))
}

/// Everything an engine holds but its settings (which come from
/// configuration when it is restored): what a checkpoint stores.
#[derive(serde::Serialize)]
pub(crate) struct StateRef<'a> {
    users: &'a HashMap<u64, Box<UserState>>,
    tenants: &'a HashMap<Box<str>, TenantState>,
    max_secs: i64,
    watermark_minute: i64,
    timers: &'a BTreeMap<i64, Vec<u64>>,
    stats: Stats,
}

/// [`StateRef`], read back.
#[derive(serde::Deserialize)]
pub(crate) struct State {
    users: HashMap<u64, Box<UserState>>,
    tenants: HashMap<Box<str>, TenantState>,
    max_secs: i64,
    watermark_minute: i64,
    timers: BTreeMap<i64, Vec<u64>>,
    stats: Stats,
}

impl Engine {
    /// The state to checkpoint, borrowed.
    pub(crate) fn state(&self) -> StateRef<'_> {
        StateRef {
            users: &self.users,
            tenants: &self.tenants,
            max_secs: self.max_secs,
            watermark_minute: self.watermark_minute,
            timers: &self.timers,
            stats: self.stats,
        }
    }

    /// An engine with checkpointed `state` and the current `settings`.
    pub(crate) fn restore(settings: Settings, state: State) -> Self {
        Engine {
            users: state.users,
            tenants: state.tenants,
            max_secs: state.max_secs,
            watermark_minute: state.watermark_minute,
            timers: state.timers,
            stats: state.stats,
            swept_day: 0,
            sigma: sigma_for(&settings),
            settings,
        }
    }

    pub fn new(settings: Settings) -> Self {
        Engine {
            sigma: sigma_for(&settings),
            settings,
            users: HashMap::default(),
            tenants: HashMap::default(),
            max_secs: i64::MIN,
            watermark_minute: i64::MIN,
            timers: BTreeMap::new(),
            stats: Stats::default(),
            swept_day: 0,
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Users with state.
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Approximate bytes of per-user state.
    pub fn user_state_bytes(&self) -> usize {
        self.users.values().map(|user| user.heap_bytes()).sum()
    }

    /// Bytes of the user table itself, beyond [`Engine::user_state_bytes`]:
    /// a key and a pointer per slot, empty ones included, and control bytes.
    pub fn user_table_bytes(&self) -> usize {
        let slots = (self.users.capacity() * 8 / 7).next_power_of_two();
        slots * (std::mem::size_of::<(u64, Box<UserState>)>() + 1)
    }

    /// The newest event time seen (Unix seconds).
    pub fn newest_secs(&self) -> Option<i64> {
        (self.max_secs != i64::MIN).then_some(self.max_secs)
    }

    /// The watermark: windows ending at or before it have been judged.
    pub fn watermark_secs(&self) -> Option<i64> {
        (self.watermark_minute != i64::MIN).then_some(self.watermark_minute * 60)
    }

    /// Takes one event; alerts it raises, and those of windows its time
    /// closes, are appended to `out`.
    pub fn observe(&mut self, event: &ToolCallEvent, out: &mut Vec<Alert>) {
        let secs = event.time.timestamp();
        self.stats.events += 1;
        if secs > self.max_secs {
            self.max_secs = secs;
            self.advance_to((secs - self.settings.lateness_secs).div_euclid(60), out);
        }
        if let Some(sigma) = &mut self.sigma {
            sigma.observe(event, out);
        }
        let minute = secs.div_euclid(60);
        if minute < self.watermark_minute {
            self.stats.late += 1;
        }
        let day = secs.div_euclid(DAY) as u32;
        let key = user_key(&event.tenant_id, &event.user_id);
        if !self.tenants.contains_key(event.tenant_id.as_str()) {
            self.tenants
                .insert(event.tenant_id.as_str().into(), TenantState::default());
        }
        let tenant = self
            .tenants
            .get_mut(event.tenant_id.as_str())
            .expect("inserted above");
        let user = self
            .users
            .entry(key)
            .or_insert_with(|| Box::new(UserState::new(&event.tenant_id, &event.user_id, day)));
        user.prefetch_for_event(secs);
        let resource = event
            .resource
            .as_deref()
            .map(|r| (r, value_hash(kind::RESOURCE, r)));
        if let Some((_, h)) = resource {
            user.resources.prefetch(h);
        }
        let tenant_day = *tenant.first_day.get_or_insert(day);
        decay_user(user, tenant, day, self.settings.half_life_days);
        let mut ctx = judge::Context {
            settings: &self.settings,
            tenant,
            user,
            stats: &mut self.stats,
            out,
            tail: None,
        };
        let tenant_settled = day.saturating_sub(tenant_day) >= self.settings.min_history_days;
        let (flags, tool_hash) = ctx.immediate(event, resource, secs, day, tenant_settled);

        let user = ctx.user;
        let Some(slot) = user.minute_mut(minute) else {
            self.stats.late += 1;
            return;
        };
        slot.total = slot.total.saturating_add(1);
        let count = |f: u8| u16::from(flags & f != 0);
        slot.denied = slot.denied.saturating_add(count(flag::DENIED));
        slot.malformed = slot.malformed.saturating_add(count(flag::MALFORMED));
        slot.resources = slot.resources.saturating_add(count(flag::RESOURCE));
        slot.new_resources = slot.new_resources.saturating_add(count(flag::NEW_RESOURCE));
        slot.off_hours = slot.off_hours.saturating_add(count(flag::OFF_HOURS));
        user.remember(Recent {
            secs,
            id: CompactId::new(&event.event_id),
            tool: tool_hash as u32,
            flags,
        });
        // Judge the first window that holds this minute and is still open.
        let end = (minute + 1).max(self.watermark_minute + 1);
        if user.next_eval.is_none_or(|next| end < next) {
            if let Some(next) = user.next_eval {
                remove_timer(&mut self.timers, next, key);
            }
            user.next_eval = Some(end);
            self.timers.entry(end).or_default().push(key);
        }
    }

    /// Moves the watermark on to `secs` without an event (a quiet stream's
    /// tick from the wall clock); judges the windows it closes.
    pub fn advance(&mut self, secs: i64, out: &mut Vec<Alert>) {
        self.advance_to((secs - self.settings.lateness_secs).div_euclid(60), out);
        if let Some(sigma) = &mut self.sigma {
            sigma.advance(secs - self.settings.lateness_secs, out);
        }
    }

    /// Judges every pending window: the end of a replay.
    pub fn finish(&mut self, out: &mut Vec<Alert>) {
        while let Some((&end, _)) = self.timers.first_key_value() {
            self.advance_to(end, out);
        }
        if let Some(sigma) = &mut self.sigma {
            sigma.finish(out);
        }
        let mut keys: Vec<u64> = self.users.keys().copied().collect();
        keys.sort_unstable();
        for key in keys {
            let user = self.users.get_mut(&key).expect("listed above");
            for open in user.suppressions.drain(..) {
                if open.alert.repeats > 0 {
                    out.push(*open.alert);
                }
            }
        }
    }

    fn advance_to(&mut self, watermark_minute: i64, out: &mut Vec<Alert>) {
        if watermark_minute <= self.watermark_minute {
            return;
        }
        self.watermark_minute = watermark_minute;
        while let Some(entry) = self.timers.first_entry() {
            let end = *entry.key();
            if end > watermark_minute {
                break;
            }
            let keys = entry.remove();
            for (i, &key) in keys.iter().enumerate() {
                // Users due together are scattered over memory: start loading
                // a later one's state while this one is judged.
                if let Some(ahead) = keys.get(i + PREFETCH_AHEAD).and_then(|k| self.users.get(k)) {
                    ahead.prefetch_for_window(end, self.settings.window_minutes);
                }
                let Some(user) = self.users.get_mut(&key) else {
                    continue;
                };
                if user.next_eval != Some(end) {
                    continue;
                }
                let tenant = self
                    .tenants
                    .get_mut(&*user.tenant_id)
                    .expect("a user's tenant exists");
                let mut ctx = judge::Context {
                    settings: &self.settings,
                    tenant,
                    user,
                    stats: &mut self.stats,
                    out,
                    tail: None,
                };
                let next = ctx.window(end);
                ctx.user.next_eval = next;
                if let Some(next) = next {
                    self.timers.entry(next).or_default().push(key);
                }
            }
        }
        let day = watermark_minute.saturating_mul(60).div_euclid(DAY).max(0) as u32;
        if day > self.swept_day {
            self.swept_day = day;
            self.forget_idle(day, out);
        }
    }

    /// Drops the users with no events for `forget_after` (their baselines are
    /// decayed to the day of their latest event) and no window pending,
    /// publishing the repeat counts of alerts they still hold open. Once a
    /// day of event time; the same users whenever it runs that day, so a
    /// restored engine forgets what the one before it would have.
    fn forget_idle(&mut self, day: u32, out: &mut Vec<Alert>) {
        let Some(cutoff) = day.checked_sub(self.settings.forget_after_days) else {
            return;
        };
        let mut idle: Vec<u64> = self
            .users
            .iter()
            .filter(|(_, u)| u.decayed_day < cutoff && u.next_eval.is_none())
            .map(|(&key, _)| key)
            .collect();
        idle.sort_unstable();
        for key in idle {
            let Some(user) = self.users.remove(&key) else {
                continue;
            };
            out.extend(
                user.suppressions
                    .into_iter()
                    .filter(|open| open.alert.repeats > 0)
                    .map(|open| *open.alert),
            );
            self.stats.forgotten += 1;
        }
    }
}

/// How many users ahead `advance_to` prefetches the state of.
const PREFETCH_AHEAD: usize = 4;

fn user_key(tenant: &str, user: &str) -> u64 {
    let h = value_hash(kind::TENANT, tenant);
    xxhash_rust::xxh3::xxh3_64_with_seed(user.as_bytes(), h)
}

fn remove_timer(timers: &mut BTreeMap<i64, Vec<u64>>, end: i64, key: u64) {
    if let Some(keys) = timers.get_mut(&end) {
        keys.retain(|k| *k != key);
        if keys.is_empty() {
            timers.remove(&end);
        }
    }
}

/// Ages a user's (and their tenant's) baselines to `day`.
fn decay_user(user: &mut UserState, tenant: &mut TenantState, day: u32, half_life: f64) {
    if day > user.decayed_day {
        let f = decay(f64::from(day - user.decayed_day), half_life);
        user.denied.scale(f);
        user.malformed.scale(f);
        user.new_resources.scale(f);
        user.volume.scale(f);
        user.volume_hour.scale(f);
        let peak = user
            .volume_peak
            .max(std::mem::take(&mut user.volume_day_peak));
        user.volume_peak = (f64::from(peak) * f) as f32;
        user.hours.scale(f);
        user.decayed_day = day;
    }
    if day > tenant.decayed_day {
        let f = decay(f64::from(day - tenant.decayed_day), half_life);
        tenant.denied.scale(f);
        tenant.malformed.scale(f);
        tenant.new_resources.scale(f);
        tenant.volume.scale(f);
        tenant.volume_hour.scale(f);
        tenant.newcomer_denied.scale(f);
        tenant.decayed_day = day;
    }
}

/// Whether the call was refused by policy.
fn is_denied(event: &ToolCallEvent) -> bool {
    event.decision == Decision::Deny || event.status == 403
}

/// Whether the call was denied for want of access: a denial that is not a
/// rate limit (429) or an expired or missing credential (401). Only these
/// say what an identity tried to reach and could not.
fn is_refused_access(event: &ToolCallEvent) -> bool {
    is_denied(event) && !matches!(event.status, 401 | 429)
}

/// A 400 or a tool/JSON-RPC error: what a confused or hijacked agent makes.
/// Not a rate limit (429), a miss (404) or a missing or expired credential
/// (401), though gateways give those an `error_type` too.
fn is_malformed(event: &ToolCallEvent) -> bool {
    !is_denied(event)
        && (event.status == 400
            || (event.error_type.is_some() && !matches!(event.status, 401 | 404 | 429)))
}

/// The pooled rate of a tenant as a prior, with a default when the tenant
/// is new too.
fn prior(pooled: &Moments, default: f64, weight: f64) -> Prior {
    Prior {
        mean: pooled
            .mean()
            .filter(|_| pooled.n > 100.0)
            .unwrap_or(default),
        weight,
        dispersion: pooled.dispersion().unwrap_or(DEFAULT_DISPERSION),
    }
}

/// Burstiness assumed before a tenant has history: tool calls come in
/// sessions, far from Poisson.
const DEFAULT_DISPERSION: f64 = 5.0;

/// The hour of the week, for callers outside the engine.
pub fn hour_of_week(secs: i64) -> usize {
    HourProfile::hour_of_week(secs)
}

/// A user's history gate, shared by the first-seen detectors.
fn established(user: &UserState, day: u32, min_days: u32) -> bool {
    user.history_days(day) >= min_days
}

/// Marks a value as used by one more user of the tenant; returns how many
/// other users had used it.
fn note_peer(tenant: &mut TenantState, hash: u64, sighting: Sighting) -> u32 {
    let users = tenant.peers.entry(hash).or_insert(0);
    let before = *users;
    if sighting == Sighting::New {
        *users += 1;
    }
    before
}

#[cfg(test)]
mod tests;
