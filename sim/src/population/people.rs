//! Tenants and their users: roles, habits, clients, networks.

use std::collections::BTreeSet;

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::network::{REGIONS, cloud_ip, home_ip, office_ip};
use super::{Tenant, User, UserServer, World};
use crate::call::{Principal, push_hex};
use crate::catalog::{
    Access, CLIENTS, ClientClass, FIRST_NAMES, LAST_NAMES, ROLES, Role, SERVERS, SERVICE_NAMES,
    ServerId, TENANT_NAMES, pick_client,
};
use crate::rng::{
    Reshaped, Side, between, lognormal, pick_weighted, reshape, side_stream, zipf_cumulative,
};

/// Users per tenant, roughly.
const TENANT_SIZE: usize = 150;
/// Log-space sigma of a user's daily volume around their role's median.
const VOLUME_SIGMA: f64 = 0.75;
/// Share of users who live in a region other than their tenant's: a fifth
/// draw a region at random, and four in five of those land elsewhere.
const AWAY_SHARE: f64 = 0.2 * 4.0 / 5.0;

pub(super) fn populate(world: &mut World, users: usize, rng: &mut ChaCha8Rng) {
    let tenants = users.div_ceil(TENANT_SIZE).max(3).min(users);
    let region_offset = rng.random_range(0..REGIONS.len());
    for i in 0..tenants {
        world
            .tenants
            .push(new_tenant(i, (i + region_offset) % REGIONS.len(), rng));
    }
    // Uneven tenant sizes: a few big customers, a tail of small ones.
    let weights: Vec<f32> = (0..tenants)
        .map(|i| (lognormal(rng, 1.0, 0.3) / ((i + 1) as f64).powf(0.5)) as f32)
        .collect();
    let role_weights: Vec<f32> = ROLES.iter().map(|r| r.share).collect();
    let mut names: Vec<BTreeSet<String>> = vec![BTreeSet::new(); tenants];
    for idx in 0..users {
        let tenant = if idx < tenants {
            idx
        } else {
            pick_weighted(rng, &weights)
        };
        let role = pick_weighted(rng, &role_weights);
        let id = unique_name(&mut names[tenant], &ROLES[role], rng);
        let user = new_user(world, idx as u32, tenant, role, id, rng);
        world.tenants[tenant].users.push(user.idx);
        if ROLES[role].on_call {
            world.tenants[tenant].oncall.push(user.idx);
        }
        world.users.push(user);
    }
}

fn new_tenant(i: usize, region: usize, rng: &mut ChaCha8Rng) -> Tenant {
    let base = TENANT_NAMES[i % TENANT_NAMES.len()];
    let id = match i / TENANT_NAMES.len() {
        0 => base.to_owned(),
        n => format!("{base}{}", n + 1),
    };
    let code = REGIONS[region].code;
    let gateways = vec![format!("gw-{id}-{code}-a"), format!("gw-{id}-{code}-b")];
    let office_ips = (0..rng.random_range(1..=3))
        .map(|_| office_ip(rng))
        .collect();
    Tenant {
        id,
        region,
        gateways,
        office_ips,
        users: Vec::new(),
        oncall: Vec::new(),
    }
}

fn unique_name(taken: &mut BTreeSet<String>, role: &Role, rng: &mut ChaCha8Rng) -> String {
    let base = if role.service {
        format!(
            "svc-{}",
            SERVICE_NAMES[rng.random_range(0..SERVICE_NAMES.len())]
        )
    } else {
        let first = FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())];
        let last = LAST_NAMES[rng.random_range(0..LAST_NAMES.len())];
        format!("{first}.{last}")
    };
    let mut name = base.clone();
    let mut n = 1;
    while taken.contains(&name) {
        n += 1;
        name = format!("{base}{n}");
    }
    taken.insert(name.clone());
    name
}

fn new_user(
    world: &World,
    idx: u32,
    tenant: usize,
    role_idx: usize,
    id: String,
    rng: &mut ChaCha8Rng,
) -> User {
    let role = &ROLES[role_idx];
    let t = &world.tenants[tenant];
    let service = role.service;
    let region = &REGIONS[pick_region(world, idx, t.region, rng)];
    let tz_min = region.pick_offset(rng);
    let night_owl = !service && rng.random_bool(0.08);
    let work_start = between(rng, 7, 10);
    let work_len = between(rng, 8, 10);
    let hour_weights = hour_profile(service, night_owl, work_start, work_len);

    let agent_share = if rng.random_bool(role.agent_prob) {
        rng.random_range(0.15..0.7)
    } else {
        0.0
    };
    // A wider spread lowers the median so that the mean volume stays put:
    // users more unequal, not busier (the factor is exactly 1 by default).
    let sigma = VOLUME_SIGMA * world.shape.rate_spread;
    let median = role.calls_median * 0.9 * ((VOLUME_SIGMA.powi(2) - sigma.powi(2)) / 2.0).exp();
    let calls_per_day = (lognormal(rng, median, sigma) * (1.0 + agent_share)).clamp(5.0, 900.0);
    let weekend_factor = if service {
        0.9
    } else {
        lognormal(rng, 0.05, 0.8).min(0.4)
    };
    let (session_len, gap_s) = if service {
        (lognormal(rng, 6.0, 0.4), lognormal(rng, 1.0, 0.3))
    } else {
        (lognormal(rng, 8.0, 0.4), lognormal(rng, 12.0, 0.3))
    };

    let mut access = vec![None; SERVERS.len()];
    let servers = habitual_servers(role, &mut access, rng);

    let (clients, second_client_p) = if service {
        let c = pick_client(rng, ClientClass::Service);
        ([c, c], 0.0)
    } else {
        let a = pick_client(rng, ClientClass::Human);
        let mut b = pick_client(rng, ClientClass::Human);
        if b == a {
            b = pick_client(rng, ClientClass::Human);
        }
        let p = if b != a && rng.random_bool(0.5) {
            rng.random_range(0.05..0.3)
        } else {
            0.0
        };
        ([a, b], p)
    };
    let agent_client = pick_client(rng, ClientClass::Agent);
    let agent_id = (agent_share > 0.0).then(|| {
        let mut s = String::from("agt_");
        push_hex(&mut s, u128::from(rng.random::<u64>()), 12);
        s
    });
    let versions = CLIENTS[usize::from(clients[0])].user_agents.len();
    let ua_version = rng.random_range(0..versions) as u8;
    let ua_upgrade_day = rng.random_range(0..world.days.saturating_mul(3).max(1));

    let office = t.office_ips[rng.random_range(0..t.office_ips.len())];
    let (ips, office_p) = if service {
        (vec![cloud_ip(rng)], 1.0)
    } else {
        match rng.random_range(0..10) {
            0..3 => (vec![office], 1.0),
            3..8 => (vec![office, home_ip(rng)], rng.random_range(0.3..0.85)),
            _ => (vec![home_ip(rng)], 1.0),
        }
    };

    User {
        idx,
        tenant: tenant as u16,
        id,
        role: role_idx as u8,
        principal: if service {
            Principal::Service
        } else {
            Principal::User
        },
        tz_min,
        hour_weights,
        calls_per_day,
        weekend_factor,
        session_len,
        gap_s,
        agent_share,
        agent_id,
        agent_client,
        servers,
        access,
        clients,
        second_client_p,
        ua_version,
        ua_upgrade_day,
        ips,
        office_p,
        gateway: u8::from(rng.random_bool(0.15)),
        join_day: 0,
        res_shift: rng.random_range(0..60),
        night_owl,
        misconfig: None,
        ip_change: None,
        client_change: None,
        travel: None,
    }
}

/// The region a new user of a tenant based in `home` lives in: away from
/// it for [`AWAY_SHARE`] of users, times the `zones` knob.
fn pick_region(world: &World, idx: u32, home: usize, rng: &mut ChaCha8Rng) -> usize {
    // Today's draw: a fifth from anywhere, home included.
    let today = if rng.random_bool(0.8) {
        home
    } else {
        rng.random_range(0..REGIONS.len())
    };
    let side = || side_stream(world.seed, Side::Zone, u64::from(idx));
    match reshape(today != home, AWAY_SHARE, world.shape.zones, side) {
        Reshaped::Today => today,
        Reshaped::No => home,
        Reshaped::Added(mut side) => {
            let other = side.random_range(0..REGIONS.len() - 1);
            if other >= home { other + 1 } else { other }
        }
    }
}

/// Share of a working day's calls per local hour.
fn hour_profile(service: bool, night_owl: bool, start: usize, len: usize) -> [f32; 24] {
    let mut w = [0f32; 24];
    for (h, slot) in w.iter_mut().enumerate() {
        let since = (h + 24 - start) % 24;
        *slot = if service {
            1.0
        } else if since < len {
            match since {
                0 => 0.75,
                4 => 0.55,
                s if s + 1 == len => 0.6,
                _ => 1.0,
            }
        } else if since >= 22 {
            0.05
        } else if since < len + 4 {
            if night_owl { 0.35 } else { 0.12 }
        } else if night_owl {
            0.05
        } else {
            0.008
        };
    }
    let total: f32 = w.iter().sum();
    w.map(|x| x / total)
}

/// The role's servers this user uses, with grants and tool preferences.
fn habitual_servers(
    role: &Role,
    access: &mut [Option<Access>],
    rng: &mut ChaCha8Rng,
) -> Vec<UserServer> {
    let mut chosen: Vec<(ServerId, f32, Access)> = role
        .servers
        .iter()
        .filter_map(|&(name, weight, share, grant)| {
            let keep = rng.random_bool(f64::from(share));
            let server = ServerId::by_name(name).expect("role servers are in the catalog");
            keep.then(|| (server, weight * lognormal(rng, 1.0, 0.5) as f32, grant))
        })
        .collect();
    if chosen.is_empty() {
        let &(name, weight, _, grant) = &role.servers[rng.random_range(0..role.servers.len())];
        let server = ServerId::by_name(name).expect("role servers are in the catalog");
        chosen.push((server, weight, grant));
    }
    if role.service {
        chosen.truncate(2);
    }
    chosen
        .into_iter()
        .map(|(server, weight, grant)| {
            let grant = if grant == Access::Read && rng.random_bool(0.1) {
                Access::Write
            } else {
                grant
            };
            access[usize::from(server.0)] = Some(grant);
            user_server(server, weight, 0, grant, role, rng)
        })
        .collect()
}

/// Tool preferences on one server: a shuffled-by-taste, Zipf-weighted subset.
pub(super) fn user_server(
    server: ServerId,
    weight: f32,
    from_day: u32,
    grant: Access,
    role: &Role,
    rng: &mut ChaCha8Rng,
) -> UserServer {
    let name = server.get().name;
    let mut scored: Vec<(f64, u8)> = server
        .tools()
        .filter(|t| {
            let tool = t.get();
            tool.access <= grant
                && (!tool.sensitive || role.habitual_sensitive.contains(&(name, tool.name)))
        })
        .map(|t| {
            (
                f64::from(t.get().popularity) * lognormal(rng, 1.0, 0.7),
                t.index,
            )
        })
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    let keep = if role.service {
        between(rng, 1, 3)
    } else {
        between(rng, 3, scored.len().max(3))
    };
    scored.truncate(keep.max(1));
    let s = if role.service {
        2.0
    } else {
        rng.random_range(0.8..1.5)
    };
    UserServer {
        server,
        weight,
        from_day,
        tools: scored.iter().map(|x| x.1).collect(),
        cumulative: zipf_cumulative(scored.len(), s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn office_hours_dominate_a_human_profile() {
        let w = hour_profile(false, false, 9, 9);
        let day: f32 = w[9..18].iter().sum();
        assert!(day > 0.85, "{day}");
        assert!((w.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        assert!(w[3] < w[12] / 20.0);
    }

    #[test]
    fn more_zones_puts_more_users_outside_their_tenants_region() {
        let away = |zones: f64| {
            let cfg = crate::SimConfig {
                users: 2000,
                days: 1,
                shape: crate::Shape {
                    zones,
                    ..crate::Shape::default()
                },
                ..crate::SimConfig::default()
            };
            let world = World::build(&cfg);
            let away = world
                .users
                .iter()
                .filter(|u| {
                    let home = &REGIONS[world.tenants[usize::from(u.tenant)].region];
                    !home.offsets.iter().any(|o| o.0 == u.tz_min)
                })
                .count();
            away as f64 / world.users.len() as f64
        };
        let (today, more, all) = (away(1.0), away(3.0), away(100.0));
        assert!((0.12..0.2).contains(&today), "{today}");
        assert!((0.4..0.56).contains(&more), "{more}");
        assert_eq!(all, 1.0);
    }

    #[test]
    fn service_profile_is_flat() {
        let w = hour_profile(true, false, 9, 9);
        assert!(w.iter().all(|&x| (x - 1.0 / 24.0).abs() < 1e-6));
    }
}
