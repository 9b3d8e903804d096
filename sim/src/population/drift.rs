//! Benign drift: changes a detector must live with, never labelled as
//! incidents. Each is also listed as a [`Drift`] record.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::network::{cloud_ip, home_ip};
use super::people::user_server;
use super::{Misconfig, Travel, World};
use crate::call::to_datetime;
use crate::catalog::{ADOPTIONS, Access, ClientClass, ROLES, ServerId, ToolId, pick_client};
use crate::label::{Drift, DriftKind};
use crate::rng::{Reshaped, Side, Stream, reshape, side_stream, side_unit, stream};

/// Share of people who move to a new network for good, before the
/// `adoption` knob.
const IP_CHANGE_SHARE: f64 = 0.03;
/// Share of people who switch to a new client for good, before `adoption`.
const CLIENT_CHANGE_SHARE: f64 = 0.02;
/// Share of people who travel once in the period, before the `travel` knob.
const TRAVEL_SHARE: f64 = 0.02;

pub(super) fn plan(world: &mut World) {
    let mut rng = stream(world.seed, Stream::Drift, 0, 0);
    personal(world, &mut rng);
    misconfigured_agents(world, &mut rng);
    team_adoptions(world, &mut rng);
    oncall_weeks(world);
}

fn record(
    world: &mut World,
    kind: DriftKind,
    user: usize,
    from: u32,
    to: Option<u32>,
    detail: String,
) {
    let u = &world.users[user];
    let tenant_id = world.tenants[usize::from(u.tenant)].id.clone();
    world.drifts.push(Drift {
        kind,
        tenant_id,
        user_ids: vec![u.id.clone()],
        start: to_datetime(world.day_start(from)),
        end: to.map(|d| to_datetime(world.day_start(d))),
        detail,
    });
}

/// New joiners, network and client changes, travel.
fn personal(world: &mut World, rng: &mut ChaCha8Rng) {
    let days = world.days;
    let (seed, shape) = (world.seed, world.shape);
    for i in 0..world.users.len() {
        let service = world.users[i].is_service();
        if days >= 3 && rng.random_bool(0.06) {
            let day = rng.random_range(1..days);
            world.users[i].join_day = day;
            record(
                world,
                DriftKind::NewUser,
                i,
                day,
                None,
                "joins with no history".into(),
            );
        }
        if service {
            continue;
        }
        let join = world.users[i].join_day;
        let side = |side| move || side_stream(seed, side, i as u64);
        let ip_change = (days >= 4 && join + 2 < days)
            .then(|| {
                shaped(
                    rng,
                    IP_CHANGE_SHARE,
                    shape.adoption,
                    side(Side::IpChange),
                    |rng| {
                        let day = rng.random_range(join + 2..days);
                        let ip = if rng.random_bool(0.5) {
                            cloud_ip(rng)
                        } else {
                            home_ip(rng)
                        };
                        (day, ip)
                    },
                )
            })
            .flatten();
        if let Some((day, ip)) = ip_change {
            world.users[i].ip_change = Some((day, ip));
            record(
                world,
                DriftKind::IpChange,
                i,
                day,
                None,
                format!("moves to {ip} for good"),
            );
        }
        let clients = world.users[i].clients;
        let client_change = (days >= 4 && join + 2 < days)
            .then(|| {
                let side = side(Side::ClientChange);
                shaped(rng, CLIENT_CHANGE_SHARE, shape.adoption, side, |rng| {
                    let day = rng.random_range(join + 2..days);
                    let mut client = pick_client(rng, ClientClass::Human);
                    if client == clients[0] {
                        client = clients[1];
                    }
                    (day, client)
                })
            })
            .flatten();
        if let Some((day, client)) = client_change
            && client != clients[0]
        {
            world.users[i].client_change = Some((day, client));
            let name = crate::catalog::CLIENTS[usize::from(client)].id;
            record(
                world,
                DriftKind::ClientChange,
                i,
                day,
                None,
                format!("switches to {name}"),
            );
        }
        let travel = (days >= 5 && join + 3 < days)
            .then(|| {
                shaped(rng, TRAVEL_SHARE, shape.travel, side(Side::Travel), |rng| {
                    let from = rng.random_range(join + 1..days - 2);
                    let to = (from + rng.random_range(3..=6)).min(days);
                    let hours = rng.random_range(3..=9) * if rng.random_bool(0.5) { 1 } else { -1 };
                    Travel {
                        from_day: from,
                        to_day: to,
                        tz_shift_min: hours * 60,
                        ip: home_ip(rng),
                    }
                })
            })
            .flatten();
        if let Some(travel) = travel {
            world.users[i].travel = Some(travel);
            let (hours, ip) = (travel.tz_shift_min / 60, travel.ip);
            let detail = format!("travels {hours:+}h from home time, works from {ip}");
            record(
                world,
                DriftKind::Travel,
                i,
                travel.from_day,
                Some(travel.to_day),
                detail,
            );
        }
    }
}

/// A drift that today happens with probability `base`, drawn from `main`
/// as today, then made `knob` times as common by [`reshape`]: today's details
/// are drawn either way, so the rest of `main` is unmoved.
fn shaped<T>(
    main: &mut ChaCha8Rng,
    base: f64,
    knob: f64,
    side: impl FnOnce() -> ChaCha8Rng,
    mut draw: impl FnMut(&mut ChaCha8Rng) -> T,
) -> Option<T> {
    let today = main.random_bool(base);
    let drawn = today.then(|| draw(main));
    match reshape(today, base, knob, side) {
        Reshaped::No => None,
        Reshaped::Today => drawn,
        Reshaped::Added(mut side) => Some(draw(&mut side)),
    }
}

/// Some agents keep calling a tool their token lacks the scope for: a steady
/// trickle of harmless denials.
fn misconfigured_agents(world: &mut World, rng: &mut ChaCha8Rng) {
    for user in world.users.iter_mut() {
        if !rng.random_bool(0.12) {
            continue;
        }
        let over_grant: Vec<ToolId> = user
            .servers
            .iter()
            .flat_map(|s| s.server.tools())
            .filter(|t| !t.get().sensitive && !user.can(t.server, t.get().access))
            .collect();
        let tool = if !over_grant.is_empty() && rng.random_bool(0.7) {
            over_grant[rng.random_range(0..over_grant.len())]
        } else {
            let foreign: Vec<ToolId> = ToolId::all()
                .filter(|t| user.access[usize::from(t.server.0)].is_none() && !t.get().sensitive)
                .collect();
            if foreign.is_empty() {
                continue;
            }
            foreign[rng.random_range(0..foreign.len())]
        };
        user.misconfig = Some(Misconfig {
            tool,
            per_day: rng.random_range(0.5..4.0),
        });
    }
}

/// One team per tenant (times the `adoption` knob: 2.5 is two or three
/// teams, 0.5 one team in half the tenants) starts using a new server, all
/// members on the same day.
fn team_adoptions(world: &mut World, rng: &mut ChaCha8Rng) {
    if world.days < 4 {
        return;
    }
    let k = world.shape.adoption;
    for t in 0..world.tenants.len() {
        let mut teams: Vec<u8> = (0..ROLES.len() as u8)
            .filter(|&r| !ROLES[usize::from(r)].service)
            .filter(|&r| {
                world.tenants[t]
                    .users
                    .iter()
                    .filter(|&&u| world.users[u as usize].role == r)
                    .count()
                    >= 3
            })
            .collect();
        if teams.is_empty() {
            continue;
        }
        teams.sort_unstable();
        // Today's team, drawn from the main stream whatever the knob, so
        // that the tenants after this one see the same draws.
        let role = teams.remove(rng.random_range(0..teams.len()));
        if k == 1.0 {
            adopt(world, t, role, rng, true);
            continue;
        }
        let mut side = side_stream(world.seed, Side::TeamAdoption, t as u64);
        let keep = k >= 1.0 || side.random_bool(k);
        adopt(world, t, role, rng, keep);
        let extra = (k - 1.0).max(0.0);
        let whole = extra.floor();
        let more = whole as usize + usize::from(side.random_bool(extra - whole));
        for _ in 0..more.min(teams.len()) {
            let role = teams.remove(side.random_range(0..teams.len()));
            adopt(world, t, role, &mut side, true);
        }
    }
}

/// Team `role` of tenant `t` starts using a new server; with `apply` false
/// the same draws are made and nothing changes.
fn adopt(world: &mut World, t: usize, role: u8, rng: &mut ChaCha8Rng, apply: bool) {
    let name = ADOPTIONS[rng.random_range(0..ADOPTIONS.len())];
    let server = ServerId::by_name(name).expect("adoptions are in the catalog");
    let day = rng.random_range(world.days / 4..world.days);
    let members: Vec<u32> = world.tenants[t]
        .users
        .iter()
        .copied()
        .filter(|&u| world.users[u as usize].role == role)
        .collect();
    for &u in &members {
        let user = &mut world.users[u as usize];
        if user.access[usize::from(server.0)].is_some() {
            continue;
        }
        let total: f32 = user.servers.iter().map(|s| s.weight).sum();
        let weight = total * rng.random_range(0.2..0.45);
        let role = &ROLES[usize::from(role)];
        let habits = user_server(server, weight, day, Access::Write, role, rng);
        if apply {
            user.servers.push(habits);
            user.access[usize::from(server.0)] = Some(Access::Write);
        }
    }
    if !apply {
        return;
    }
    let tenant_id = world.tenants[t].id.clone();
    let team = ROLES[usize::from(role)].name;
    world.drifts.push(Drift {
        kind: DriftKind::TeamAdoption,
        tenant_id,
        user_ids: members
            .iter()
            .map(|&u| world.users[u as usize].id.clone())
            .collect(),
        start: to_datetime(world.day_start(day)),
        end: None,
        detail: format!("the {team} team starts using {name}"),
    });
}

/// Weekly on-call rotation over each tenant's SREs.
fn oncall_weeks(world: &mut World) {
    let weeks = world.days.div_ceil(7);
    for t in 0..world.tenants.len() {
        for week in 0..weeks {
            for user in oncall_users(world, t, week) {
                let from = week * 7;
                let to = (from + 7).min(world.days);
                record(
                    world,
                    DriftKind::OnCallWeek,
                    user as usize,
                    from,
                    Some(to),
                    "on call: night pages".into(),
                );
            }
        }
    }
}

/// Who is on call in a tenant during a week: one engineer, in rotation,
/// times the `on_call` knob (2 is two at once; 0.5 is one in half the weeks).
pub(crate) fn oncall_users(world: &World, tenant: usize, week: u32) -> Vec<u32> {
    let rota = &world.tenants[tenant].oncall;
    let joined: Vec<u32> = rota
        .iter()
        .copied()
        .filter(|&u| world.users[u as usize].join_day <= week * 7)
        .collect();
    if joined.is_empty() {
        return joined;
    }
    let k = world.shape.on_call;
    let whole = k.floor();
    let frac = k - whole;
    let extra =
        frac > 0.0 && side_unit(world.seed, Side::OnCall, tenant as u64, u64::from(week)) < frac;
    let count = (whole as usize + usize::from(extra)).min(joined.len());
    let first = week as usize * k.ceil() as usize;
    (0..count)
        .map(|i| joined[(first + i) % joined.len()])
        .collect()
}

/// Whether `user` is on call on period day `day`.
pub(crate) fn on_call(world: &World, user: u32, day: u32) -> bool {
    let tenant = usize::from(world.users[user as usize].tenant);
    oncall_users(world, tenant, day / 7).contains(&user)
}
