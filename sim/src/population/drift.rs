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
use crate::rng::{Stream, stream};

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
        if days >= 4 && join + 2 < days && rng.random_bool(0.03) {
            let day = rng.random_range(join + 2..days);
            let ip = if rng.random_bool(0.5) {
                cloud_ip(rng)
            } else {
                home_ip(rng)
            };
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
        if days >= 4 && join + 2 < days && rng.random_bool(0.02) {
            let day = rng.random_range(join + 2..days);
            let old = world.users[i].clients[0];
            let mut client = pick_client(rng, ClientClass::Human);
            if client == old {
                client = world.users[i].clients[1];
            }
            if client != old {
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
        }
        if days >= 5 && join + 3 < days && rng.random_bool(0.02) {
            let from = rng.random_range(join + 1..days - 2);
            let to = (from + rng.random_range(3..=6)).min(days);
            let hours = rng.random_range(3..=9) * if rng.random_bool(0.5) { 1 } else { -1 };
            let ip = home_ip(rng);
            world.users[i].travel = Some(Travel {
                from_day: from,
                to_day: to,
                tz_shift_min: hours * 60,
                ip,
            });
            let detail = format!("travels {hours:+}h from home time, works from {ip}");
            record(world, DriftKind::Travel, i, from, Some(to), detail);
        }
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

/// One team per tenant starts using a new server on the same day.
fn team_adoptions(world: &mut World, rng: &mut ChaCha8Rng) {
    if world.days < 4 {
        return;
    }
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
        let role = teams[rng.random_range(0..teams.len())];
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
            user.servers
                .push(user_server(server, weight, day, Access::Write, role, rng));
            user.access[usize::from(server.0)] = Some(Access::Write);
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
}

/// Weekly on-call rotation over each tenant's SREs.
fn oncall_weeks(world: &mut World) {
    let weeks = world.days.div_ceil(7);
    for t in 0..world.tenants.len() {
        for week in 0..weeks {
            let Some(user) = oncall_user(world, t, week) else {
                continue;
            };
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

/// Who is on call in a tenant during a week, if anyone.
pub(crate) fn oncall_user(world: &World, tenant: usize, week: u32) -> Option<u32> {
    let rota = &world.tenants[tenant].oncall;
    let joined: Vec<u32> = rota
        .iter()
        .copied()
        .filter(|&u| world.users[u as usize].join_day <= week * 7)
        .collect();
    (!joined.is_empty()).then(|| joined[week as usize % joined.len()])
}

/// Whether `user` is on call on period day `day`.
pub(crate) fn on_call(world: &World, user: u32, day: u32) -> bool {
    let tenant = usize::from(world.users[user as usize].tenant);
    oncall_user(world, tenant, day / 7) == Some(user)
}
