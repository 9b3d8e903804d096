//! Normal traffic: sessions of calls shaped by working hours, the weekly
//! cycle, and each user's habits; plus background noise (a misconfigured
//! agent's steady denials, on-call night pages).
//!
//! A user-day is generated from its own random stream, so it does not depend
//! on other users, on attacks, or on generation order.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use crate::call::{
    Call, DAY, HOUR, MINUTE, Method, Origin, Outcome, Principal, ResRef, SECOND, event_id_bits,
};
use crate::catalog::{Access, Kind, ROLES, ServerId};
use crate::population::{LocalDay, User, UserServer, World, home_ip, on_call};
use crate::rng::{Stream, hash, lognormal, poisson, stream};

/// Mean over median of a session length (log-normal, sigma 0.8).
const SESSION_MEAN_FACTOR: f64 = 1.377;
/// Agent sessions are this much longer than a person's.
const AGENT_SESSION_LEN: f64 = 2.5;
/// Night sessions per on-call day, on average.
const ONCALL_SESSIONS: f64 = 1.3;
/// Servers an on-call engineer works at night.
const ONCALL_SERVERS: &[&str] = &["pagerduty", "datadog", "kubernetes"];

/// A session as later code (attacks) sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SessionCtx {
    pub start: i64,
    pub end: i64,
    pub origin: Origin,
}

/// Where a session's calls go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Focus {
    Habitual,
    OnCall,
}

impl Call {
    /// A successful `tools/call` skeleton; callers fill in the rest.
    pub(crate) fn base(
        rng: &mut ChaCha8Rng,
        time: i64,
        user: u32,
        origin: Origin,
        server: ServerId,
    ) -> Call {
        Call {
            time,
            id: event_id_bits(time, rng.random()),
            detail: rng.random(),
            user,
            origin,
            method: Method::ToolsCall,
            server,
            tool: 0,
            resource: None,
            outcome: Outcome::Ok,
            flags: 0,
            prompt: 0,
        }
    }
}

/// Appends one user's normal calls for period day `day` (sessions that start
/// that day; their calls may run into the next) and the sessions' contexts.
pub(crate) fn user_day(
    world: &World,
    user: &User,
    day: u32,
    calls: &mut Vec<Call>,
    sessions: &mut Vec<SessionCtx>,
) {
    if day < user.join_day {
        return;
    }
    let mut rng = stream(
        world.seed,
        Stream::Traffic,
        u64::from(user.idx),
        u64::from(day),
    );
    let day_start = world.day_start(day);
    let agent_len = 1.0 + user.agent_share * (AGENT_SESSION_LEN - 1.0);
    // Burstier traffic: longer sessions, fewer of them, the same volume.
    let mean_len = user.session_len * SESSION_MEAN_FACTOR * agent_len * world.shape.burstiness;
    let mut cached: Option<LocalDay> = None;
    for slot in 0..24 {
        let t0 = day_start + slot * HOUR;
        let (epoch_day, hour) = user.local(t0, day);
        let ld = match cached {
            Some(ld) if ld.epoch_day == epoch_day => ld,
            _ => *cached.insert(world.local_day(user, epoch_day)),
        };
        let mut expected = user.calls_per_day * ld.mult * f64::from(user.hour_weights[hour]);
        if ld.weekend {
            expected *= user.weekend_factor;
        }
        for _ in 0..poisson(&mut rng, expected / mean_len) {
            let start = t0 + rng.random_range(0..HOUR);
            let origin = origin(user, day, ld.office, &mut rng);
            session(
                world,
                user,
                day,
                start,
                origin,
                Focus::Habitual,
                &mut rng,
                calls,
                sessions,
            );
        }
    }
    local_extras(world, user, day, calls, sessions);
}

/// A fresh session's origin: client, network, principal.
pub(crate) fn origin(user: &User, day: u32, office: bool, rng: &mut ChaCha8Rng) -> Origin {
    let agent = user.agent_share > 0.0 && rng.random_bool(user.agent_share);
    let principal = match (user.principal, agent) {
        (Principal::Service, _) => Principal::Service,
        (_, true) => Principal::Agent,
        _ => Principal::User,
    };
    let client = if agent {
        user.agent_client
    } else {
        user.client_on(day, rng)
    };
    let mut ip = user.ip_on(day, office);
    if principal != Principal::Service && rng.random_bool(0.005) {
        ip = home_ip(rng); // tethering, a café
    }
    let gateway = if rng.random_bool(0.97) {
        user.gateway
    } else {
        1 - user.gateway
    };
    Origin {
        session: rng.random(),
        ip,
        client,
        ua: user.ua_on(client, day),
        gateway,
        principal,
    }
}

#[allow(clippy::too_many_arguments)]
fn session(
    world: &World,
    user: &User,
    day: u32,
    start: i64,
    origin: Origin,
    focus: Focus,
    rng: &mut ChaCha8Rng,
    calls: &mut Vec<Call>,
    sessions: &mut Vec<SessionCtx>,
) {
    let agent = origin.principal == Principal::Agent;
    let len =
        user.session_len * if agent { AGENT_SESSION_LEN } else { 1.0 } * world.shape.burstiness;
    let n = lognormal(rng, len, 0.8).round().clamp(1.0, 400.0) as u32;
    let gap = if agent { user.gap_s / 5.0 } else { user.gap_s };
    let (primary, secondary) = match focus {
        Focus::Habitual => (user.pick_server(day, rng), user.pick_server(day, rng)),
        Focus::OnCall => {
            let tools: Vec<&UserServer> = user
                .servers
                .iter()
                .filter(|s| ONCALL_SERVERS.contains(&s.server.get().name))
                .collect();
            if tools.is_empty() {
                return;
            }
            (
                tools[rng.random_range(0..tools.len())],
                tools[rng.random_range(0..tools.len())],
            )
        }
    };
    let mut t = start;
    if rng.random_bool(0.4) {
        let mut c = Call::base(rng, t, user.idx, origin, primary.server);
        c.method = Method::ToolsList;
        calls.push(c);
        t += rng.random_range(50_000..400_000);
    }
    if rng.random_bool(0.006) {
        let mut c = Call::base(rng, t, user.idx, origin, primary.server);
        c.tool = primary.pick_tool(rng);
        c.outcome = Outcome::Unauthenticated;
        calls.push(c);
        t += rng.random_range(SECOND..5 * SECOND);
    }
    for _ in 0..n {
        let server = if rng.random_bool(0.8) {
            primary
        } else {
            secondary
        };
        calls.push(normal_call(world, user, day, server, origin, t, rng));
        let pause = if rng.random_bool(0.08) {
            lognormal(rng, 90.0, 0.6)
        } else {
            lognormal(rng, gap, 0.9)
        };
        t += (pause * SECOND as f64) as i64 + 1;
    }
    sessions.push(SessionCtx {
        start,
        end: t,
        origin,
    });
}

/// One habitual call on `server`: mostly a tool, sometimes a resource read or
/// a prompt.
pub(crate) fn normal_call(
    world: &World,
    user: &User,
    day: u32,
    server: &UserServer,
    origin: Origin,
    t: i64,
    rng: &mut ChaCha8Rng,
) -> Call {
    let id = server.server;
    let spec = id.get();
    let agent = origin.principal == Principal::Agent;
    let mut call = Call::base(rng, t, user.idx, origin, id);
    let r: f64 = rng.random();
    if !spec.kinds.is_empty() && r < 0.12 {
        let kind = spec.kinds[rng.random_range(0..spec.kinds.len())];
        call.method = Method::ResourcesRead;
        call.resource = Some(pick_resource(world, user, kind, day, rng));
        call.outcome = outcome(user, id, Access::Read, true, agent, rng);
    } else if !spec.prompts.is_empty() && r > 0.97 {
        call.method = Method::PromptsGet;
        call.prompt = rng.random_range(0..spec.prompts.len()) as u8;
        call.outcome = outcome(user, id, Access::Read, false, agent, rng);
    } else {
        call.tool = server.pick_tool(rng);
        let tool = call.tool_id().get();
        call.resource = tool.kind.map(|k| pick_resource(world, user, k, day, rng));
        call.outcome = outcome(user, id, tool.access, tool.kind.is_some(), agent, rng);
    }
    call
}

/// The outcome of an ordinary call: denied without the scope, otherwise a
/// small rate of malformed calls, tool errors, timeouts and rate limits.
pub(crate) fn outcome(
    user: &User,
    server: ServerId,
    access: Access,
    resource: bool,
    agent: bool,
    rng: &mut ChaCha8Rng,
) -> Outcome {
    if !user.can(server, access) {
        return Outcome::DenyScope;
    }
    let r: f64 = rng.random();
    match r {
        r if r < 0.005 => Outcome::Malformed,
        r if r < 0.015 => Outcome::ToolError,
        r if r < 0.018 => Outcome::Internal,
        r if r < 0.0195 => Outcome::Timeout,
        r if resource && r < 0.0235 => Outcome::NotFound,
        r if agent && r > 0.99 => Outcome::RateLimited,
        _ => Outcome::Ok,
    }
}

/// A resource from the user's working set: the team's area of the tenant's
/// pool, shifted per user, moving on as new tickets and mails arrive; now
/// and then anything in the tenant.
pub(crate) fn pick_resource(
    world: &World,
    user: &User,
    kind: Kind,
    day: u32,
    rng: &mut ChaCha8Rng,
) -> ResRef {
    let tenant = world.tenant_of(user);
    let owner = match kind {
        Kind::OktaUser => tenant.users[rng.random_range(0..tenant.users.len())],
        Kind::CalendarEvent if rng.random_bool(0.15) => {
            tenant.users[rng.random_range(0..tenant.users.len())]
        }
        _ => user.idx,
    };
    let pool = u64::from(kind.pool());
    let idx = if rng.random_bool(0.12) {
        rng.random_range(0..pool)
    } else {
        let team = (u64::from(user.tenant) << 8) | u64::from(user.role);
        let h = hash(world.seed, Stream::Population, team, kind as u64);
        let base = h % pool;
        let step = ((h >> 32) % pool) | 1;
        let rank = world.pick_rank(rng) as u64
            + u64::from(user.res_shift)
            + u64::from(day) * u64::from(kind.churn_per_day());
        (base + rank * step) % pool
    };
    ResRef {
        kind,
        tenant: user.tenant,
        idx: idx as u32,
        owner,
    }
}

/// Noise tied to the user's local calendar: the misconfigured agent's
/// denials during working hours and on-call night sessions. Each local day has
/// its own stream; only sessions starting in period day `day` are kept.
fn local_extras(
    world: &World,
    user: &User,
    day: u32,
    calls: &mut Vec<Call>,
    sessions: &mut Vec<SessionCtx>,
) {
    let oncall_role = ROLES[usize::from(user.role)].on_call;
    if user.misconfig.is_none() && !oncall_role {
        return;
    }
    let tz = i64::from(user.tz_min) * MINUTE;
    let (lo, hi) = (world.day_start(day), world.day_start(day + 1));
    for epoch_day in (lo + tz).div_euclid(DAY) - 1..=(hi + tz).div_euclid(DAY) {
        let local_midnight = epoch_day * DAY - tz;
        let ld = world.local_day(user, epoch_day);
        let home_day = world.day_of(local_midnight + 12 * HOUR);
        if home_day < user.join_day || ld.mult == 0.0 {
            continue;
        }
        let mut rng = stream(
            world.seed,
            Stream::LocalDay,
            u64::from(user.idx) | 1 << 40,
            epoch_day as u64,
        );
        if let Some(m) = user.misconfig
            && !ld.weekend
        {
            for _ in 0..poisson(&mut rng, m.per_day) {
                let hour = crate::rng::pick_weighted(&mut rng, &user.hour_weights);
                let t = local_midnight + hour as i64 * HOUR + rng.random_range(0..HOUR);
                let mut origin = origin(user, home_day, ld.office, &mut rng);
                if user.agent_id.is_some() {
                    origin.principal = Principal::Agent;
                    origin.client = user.agent_client;
                    origin.ua = user.ua_on(user.agent_client, home_day);
                }
                let mut c = Call::base(&mut rng, t, user.idx, origin, m.tool.server);
                c.tool = m.tool.index;
                // Denied until the grant changes (a team adoption may fix it).
                let allowed = user.can(m.tool.server, m.tool.get().access);
                c.outcome = if allowed {
                    Outcome::Ok
                } else {
                    Outcome::DenyScope
                };
                if (lo..hi).contains(&t) {
                    calls.push(c);
                }
            }
        }
        if oncall_role && on_call(world, user.idx, home_day) {
            for _ in 0..poisson(&mut rng, ONCALL_SESSIONS / world.shape.burstiness) {
                let start = local_midnight + 22 * HOUR + rng.random_range(0..8 * HOUR);
                let mut origin = origin(user, home_day, false, &mut rng);
                origin.principal = Principal::User;
                origin.client = user.clients[0];
                origin.ua = user.ua_on(origin.client, home_day);
                let mut night = Vec::new();
                let mut ctx = Vec::new();
                session(
                    world,
                    user,
                    home_day,
                    start,
                    origin,
                    Focus::OnCall,
                    &mut rng,
                    &mut night,
                    &mut ctx,
                );
                if (lo..hi).contains(&start) {
                    calls.append(&mut night);
                    sessions.append(&mut ctx);
                }
            }
        }
    }
}
