//! Labelled attacks: when, against whom, and the events each one adds.
//!
//! Incidents are planned up front (scenario, intensity, victim, start) and
//! generated on the day they start, from their own random stream, next to the
//! victim's normal sessions of that day. Sizes and spreads are drawn from wide
//! ranges; nothing here knows what a detector's thresholds are.

mod access;
mod misuse;

use std::collections::BTreeMap;

use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::call::{Call, HOUR, MINUTE, Origin, SECOND, format_event_id, to_datetime};
use crate::catalog::{ROLES, ToolId};
use crate::label::{Incident, Intensity, Scenario};
use crate::population::{User, World};
use crate::rng::{Stream, pick_weighted, stream};
use crate::traffic::{SessionCtx, origin};

/// Share of incidents drawn as low-and-slow.
const LOW_AND_SLOW_SHARE: f64 = 0.3;
/// The shortest span `attack_pace` packs a normal incident into.
const MIN_PACED_SPAN: i64 = 2 * SECOND;
/// The longest span `attack_pace` spreads a normal incident over: still one
/// working day, well short of a low-and-slow incident.
const MAX_PACED_SPAN: i64 = 8 * HOUR;

/// An incident decided in advance.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Planned {
    pub index: u32,
    pub scenario: Scenario,
    pub intensity: Intensity,
    pub user: u32,
    pub start: i64,
}

/// Planned incidents by (start day, victim).
pub(crate) type Schedule = BTreeMap<(u32, u32), Vec<Planned>>;

/// Plans `rate` incidents per 100 users per week of attack window; once there
/// are at least eight, every scenario appears.
pub(crate) fn plan(world: &World, rate: f64) -> Schedule {
    let mut schedule = Schedule::new();
    let window_days = world.days - world.window_day;
    let expected = rate * world.users.len() as f64 / 100.0 * f64::from(window_days) / 7.0;
    let count = expected.round() as usize;
    if count == 0 {
        return schedule;
    }
    let mut rng = stream(world.seed, Stream::Schedule, 0, 0);
    let mut scenarios: Vec<Scenario> = Scenario::ALL.to_vec();
    scenarios.shuffle(&mut rng);
    scenarios.truncate(count);
    while scenarios.len() < count {
        scenarios.push(Scenario::ALL[rng.random_range(0..Scenario::ALL.len())]);
    }
    scenarios.shuffle(&mut rng);
    let mut pools = Pools {
        world,
        pools: BTreeMap::new(),
        used: Default::default(),
    };
    for (i, scenario) in scenarios.into_iter().enumerate() {
        let intensity = if rng.random_bool(LOW_AND_SLOW_SHARE) {
            Intensity::LowAndSlow
        } else {
            Intensity::Normal
        };
        let Some(user) = pools.pick(scenario, &mut rng) else {
            continue;
        };
        let slow = intensity == Intensity::LowAndSlow;
        let start = pick_start(world, &world.users[user as usize], scenario, slow, &mut rng);
        let planned = Planned {
            index: i as u32,
            scenario,
            intensity,
            user,
            start,
        };
        schedule
            .entry((world.day_of(start), user))
            .or_default()
            .push(planned);
    }
    schedule
}

/// Whether `user` can be the victim; `strict` asks for a week of clean
/// history before the window.
fn eligible(world: &World, user: &User, scenario: Scenario, strict: bool) -> bool {
    let history = if strict {
        user.join_day + 7 <= world.window_day
    } else {
        user.join_day + 1 < world.days
    };
    let role = &ROLES[usize::from(user.role)];
    let base = !user.is_service() && history;
    match scenario {
        Scenario::OffHours => base && !role.on_call && !user.night_owl,
        Scenario::Exfiltration => base && access::has_sensitive_kind(user),
        Scenario::CrossTenant => base && world.tenants.len() >= 2,
        _ => base,
    }
}

/// Victim candidates per scenario, computed once.
struct Pools<'w> {
    world: &'w World,
    pools: BTreeMap<Scenario, Vec<u32>>,
    used: std::collections::BTreeSet<u32>,
}

impl Pools<'_> {
    /// A victim for `scenario`, preferring users not yet attacked.
    fn pick(&mut self, scenario: Scenario, rng: &mut ChaCha8Rng) -> Option<u32> {
        let world = self.world;
        let pool = self.pools.entry(scenario).or_insert_with(|| {
            let candidates = |strict| -> Vec<u32> {
                let ok = |u: &&User| eligible(world, u, scenario, strict);
                world.users.iter().filter(ok).map(|u| u.idx).collect()
            };
            let strict = candidates(true);
            if strict.is_empty() {
                candidates(false)
            } else {
                strict
            }
        });
        if pool.is_empty() {
            return None;
        }
        let mut user = pool[rng.random_range(0..pool.len())];
        for _ in 0..32 {
            if !self.used.contains(&user) {
                break;
            }
            user = pool[rng.random_range(0..pool.len())];
        }
        self.used.insert(user);
        Some(user)
    }
}

/// When an incident starts: local night for off-hours, any time for probing,
/// the victim's usual hours on a local weekday otherwise. Always inside the
/// window, an hour or more before the period ends; low-and-slow incidents
/// start early enough to spread out, where the window allows.
fn pick_start(
    world: &World,
    user: &User,
    scenario: Scenario,
    slow: bool,
    rng: &mut ChaCha8Rng,
) -> i64 {
    let lo = world.window_start().max(world.day_start(user.join_day));
    let mut hi = world.end() - HOUR;
    if slow {
        hi = hi.min(world.end() - 3 * crate::call::DAY).max(lo + HOUR);
    }
    let tz = i64::from(user.tz_min) * MINUTE;
    let mut candidate = lo + rng.random_range(0..(hi - lo).max(1));
    if scenario == Scenario::Probing {
        return candidate;
    }
    for _ in 0..40 {
        let day = world.day_of(lo + rng.random_range(0..(hi - lo).max(1)));
        let local_day = (world.day_start(day) + 12 * HOUR + tz).div_euclid(crate::call::DAY);
        let local_midnight = local_day * crate::call::DAY - tz;
        let t = if scenario == Scenario::OffHours {
            local_midnight + rng.random_range(30 * MINUTE..4 * HOUR + 30 * MINUTE)
        } else {
            if crate::population::weekday(local_day) >= 5 {
                continue;
            }
            let hour = pick_weighted(rng, &user.hour_weights) as i64;
            local_midnight + hour * HOUR + rng.random_range(0..HOUR)
        };
        candidate = t;
        if (lo..hi).contains(&t) {
            return t;
        }
    }
    candidate.clamp(lo, hi.max(lo))
}

/// Generates a planned incident: its calls go to `out`, its label is returned.
pub(crate) fn generate(
    world: &World,
    planned: &Planned,
    sessions: &[SessionCtx],
    out: &mut Vec<Call>,
) -> Incident {
    let rng = stream(world.seed, Stream::Incident, u64::from(planned.index), 0);
    let mut attack = Attack {
        world,
        index: planned.index,
        user: &world.users[planned.user as usize],
        day: world.day_of(planned.start),
        start: planned.start,
        normal: planned.intensity == Intensity::Normal,
        sessions,
        rng,
        calls: Vec::new(),
    };
    let summary = match planned.scenario {
        Scenario::Probing => access::probing(&mut attack),
        Scenario::Enumeration => access::enumeration(&mut attack),
        Scenario::Exfiltration => access::exfiltration(&mut attack),
        Scenario::CrossTenant => access::cross_tenant(&mut attack),
        Scenario::PromptInjection => misuse::prompt_injection(&mut attack),
        Scenario::OffHours => misuse::off_hours(&mut attack),
        Scenario::SensitiveTool => misuse::sensitive_tool(&mut attack),
        Scenario::SessionHijack => misuse::session_hijack(&mut attack),
    };
    let mut calls = std::mem::take(&mut attack.calls);
    calls.sort_by_key(Call::key);
    let user = attack.user;
    let incident = Incident {
        scenario: planned.scenario,
        intensity: planned.intensity,
        tenant_id: world.tenant_of(user).id.clone(),
        user_id: user.id.clone(),
        start: to_datetime(calls.first().map_or(planned.start, |c| c.time)),
        end: to_datetime(calls.last().map_or(planned.start, |c| c.time)),
        event_ids: calls.iter().map(|c| format_event_id(c.id)).collect(),
        summary,
    };
    out.extend(calls);
    incident
}

/// One incident being generated.
pub(crate) struct Attack<'a> {
    pub world: &'a World,
    /// The incident's number in the plan; seeds its streams.
    pub index: u32,
    pub user: &'a User,
    /// Period day of the start.
    pub day: u32,
    pub start: i64,
    /// Normal intensity (a burst) rather than low-and-slow.
    pub normal: bool,
    pub sessions: &'a [SessionCtx],
    pub rng: ChaCha8Rng,
    pub calls: Vec<Call>,
}

impl Attack<'_> {
    /// `n` event times: the first at the start, the rest spread over `span`,
    /// compressed if needed so that all fall before the period ends.
    pub(crate) fn times(&mut self, n: usize, span: i64) -> Vec<i64> {
        let room = self.world.end() - self.start - SECOND;
        let span = span.min(room).max(1);
        let mut offsets: Vec<i64> = (1..n).map(|_| self.rng.random_range(0..span)).collect();
        offsets.push(0);
        offsets.sort_unstable();
        offsets.into_iter().map(|o| self.start + o).collect()
    }

    /// A normal incident's count of calls times the `attack_scale` knob,
    /// rounded, at least 1; low-and-slow counts are left as drawn.
    pub(crate) fn scaled(&self, n: usize) -> usize {
        let scale = self.scale();
        if scale == 1.0 {
            return n;
        }
        ((n as f64 * scale).round() as usize).max(1)
    }

    /// The `attack_scale` knob for a normal incident, 1 for low-and-slow.
    pub(crate) fn scale(&self) -> f64 {
        if self.normal {
            self.world.shape.attack_scale
        } else {
            1.0
        }
    }

    /// A normal incident's span times the `attack_pace` knob, kept between
    /// a few seconds and a working day; low-and-slow spans are left as drawn.
    pub(crate) fn paced(&self, span: i64) -> i64 {
        let pace = self.world.shape.attack_pace;
        if !self.normal || pace == 1.0 {
            return span;
        }
        ((span as f64 * pace) as i64).clamp(MIN_PACED_SPAN, MAX_PACED_SPAN)
    }

    /// A second stream of the incident, for choosing between a scenario's
    /// forms without moving the main stream: an incident that keeps today's
    /// form draws exactly what it always drew.
    pub(crate) fn side_stream(&self) -> ChaCha8Rng {
        stream(self.world.seed, Stream::Incident, u64::from(self.index), 1)
    }

    /// A span drawn in `lo..hi` minutes.
    pub(crate) fn minutes(&mut self, lo: i64, hi: i64) -> i64 {
        self.rng.random_range(lo * MINUTE..hi * MINUTE)
    }

    /// A span drawn in `lo..hi` hours.
    pub(crate) fn hours(&mut self, lo: i64, hi: i64) -> i64 {
        self.rng.random_range(lo * HOUR..hi * HOUR)
    }

    /// The victim's session running at the start (or the day's latest one
    /// before it), if any.
    pub(crate) fn current_session(&self) -> Option<SessionCtx> {
        self.sessions
            .iter()
            .filter(|s| s.start <= self.start)
            .max_by_key(|s| s.start)
            .copied()
    }

    /// The victim's own context: the current session if there is one, a fresh
    /// one from their usual client and network otherwise.
    pub(crate) fn victim_origin(&mut self) -> Origin {
        match self.current_session() {
            Some(s) => s.origin,
            None => origin(self.user, self.day, true, &mut self.rng),
        }
    }

    /// The victim's usual client and network, in a new session.
    pub(crate) fn fresh_victim_origin(&mut self) -> Origin {
        let mut o = origin(self.user, self.day, true, &mut self.rng);
        o.principal = crate::call::Principal::User;
        o.client = self.user.clients[0];
        o.ua = self.user.ua_on(o.client, self.day);
        o
    }

    pub(crate) fn call(&mut self, t: i64, origin: Origin, tool: ToolId) -> Call {
        let mut c = Call::base(&mut self.rng, t, self.user.idx, origin, tool.server);
        c.tool = tool.index;
        c
    }

    pub(crate) fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.random_range(0..items.len())]
    }
}

/// A short human-readable duration.
pub(crate) fn span_text(times: &[i64]) -> String {
    let span = times.last().copied().unwrap_or(0) - times.first().copied().unwrap_or(0);
    if span >= 2 * HOUR {
        format!("{:.1}h", span as f64 / HOUR as f64)
    } else {
        format!("{}m", span / MINUTE)
    }
}
