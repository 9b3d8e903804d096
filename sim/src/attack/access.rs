//! Attacks on access: probing, enumeration, exfiltration, cross-tenant reads.

use std::collections::BTreeSet;

use rand::Rng;

use super::{Attack, span_text};
use crate::call::{Call, HOUR, Method, Origin, Outcome, Principal, ResRef, flags};
use crate::catalog::{Access, CLIENTS, ClientClass, Kind, ServerId, ToolId, pick_client};
use crate::population::{User, attacker_ip};
use crate::rng::between;
use crate::traffic::pick_resource;

/// Share of normal enumerations that are a smaller sweep (15-40 resources
/// rather than 40-300).
const SMALL_SWEEP_SHARE: f64 = 0.25;
/// Share of normal exfiltrations that raise the user's own rate for most of
/// an hour rather than burst at a fixed size.
const SUSTAINED_EXFIL_SHARE: f64 = 0.5;

/// Whether the user can read some kind of sensitive resource.
pub(crate) fn has_sensitive_kind(user: &User) -> bool {
    !sensitive_kinds(user).is_empty()
}

fn sensitive_kinds(user: &User) -> Vec<(ServerId, Kind)> {
    user.servers
        .iter()
        .filter(|s| s.from_day == 0)
        .flat_map(|s| s.server.get().kinds.iter().map(move |&k| (s.server, k)))
        .filter(|&(_, k)| k.sensitive_index(0).is_some())
        .collect()
}

/// An outsider's context: a new session from a hosting address, with a
/// scripting client or the victim's own client id replayed.
fn outsider_origin(a: &mut Attack<'_>, new_ip: bool) -> Origin {
    let mut o = a.fresh_victim_origin();
    o.session = a.rng.random();
    if new_ip {
        o.ip = attacker_ip(&mut a.rng);
    }
    if a.rng.random_bool(0.5) {
        o.client = pick_client(&mut a.rng, ClientClass::Attacker);
        let uas = CLIENTS[usize::from(o.client)].user_agents.len();
        o.ua = a.rng.random_range(0..uas) as u8;
    }
    o.principal = Principal::User;
    o
}

/// With probability `own`, a new session of the victim's own (their
/// address and client); otherwise an outsider's from a new address.
fn own_or_outsider_origin(a: &mut Attack<'_>, own: f64) -> Origin {
    if a.rng.random_bool(own) {
        let mut o = a.fresh_victim_origin();
        o.session = a.rng.random();
        o
    } else {
        outsider_origin(a, true)
    }
}

/// A uniformly random resource of `kind` in a tenant.
fn any_resource(a: &mut Attack<'_>, kind: Kind, tenant: u16) -> ResRef {
    let members = &a.world.tenants[usize::from(tenant)].users;
    let owner = members[a.rng.random_range(0..members.len())];
    ResRef {
        kind,
        tenant,
        idx: a.rng.random_range(0..kind.pool()),
        owner,
    }
}

/// The read tool that names a resource of `kind`, if the server has one.
fn read_tool(server: ServerId, kind: Kind) -> Option<ToolId> {
    server
        .tools()
        .find(|t| t.get().kind == Some(kind) && t.get().access == Access::Read)
}

/// Stolen-credential probing: calls across many tools, mostly ones the token
/// has no scope for, from somewhere new.
pub(super) fn probing(a: &mut Attack<'_>) -> String {
    let (n, span) = if a.normal {
        (between(&mut a.rng, 8, 60), a.minutes(2, 15))
    } else {
        (between(&mut a.rng, 3, 10), a.hours(6, 48))
    };
    let (n, span) = (a.scaled(n), a.paced(span));
    let new_ip = a.rng.random_bool(0.7);
    let mut origin = outsider_origin(a, new_ip);
    let user = a.user;
    let denied_tools: Vec<ToolId> = ToolId::all()
        .filter(|t| !user.can(t.server, t.get().access))
        .collect();
    let allowed_tools: Vec<ToolId> = ToolId::all()
        .filter(|t| user.can(t.server, t.get().access))
        .collect();
    let times = a.times(n, span);
    let mut tools = BTreeSet::new();
    let mut denied = 0;
    for &t in &times {
        if !a.normal {
            origin.session = a.rng.random();
        }
        let pool =
            if allowed_tools.is_empty() || (!denied_tools.is_empty() && a.rng.random_bool(0.85)) {
                &denied_tools
            } else {
                &allowed_tools
            };
        let tool = pool[a.rng.random_range(0..pool.len())];
        let mut c = a.call(t, origin, tool);
        c.resource = tool.get().kind.map(|k| any_resource(a, k, user.tenant));
        c.outcome = if !user.can(tool.server, tool.get().access) {
            denied += 1;
            Outcome::DenyScope
        } else if a.rng.random_bool(0.15) {
            Outcome::Malformed
        } else {
            Outcome::Ok
        };
        tools.insert(tool);
        a.calls.push(c);
    }
    format!(
        "{n} calls across {} tools from {} ({denied} denied) over {}",
        tools.len(),
        origin.ip,
        span_text(&times)
    )
}

/// Many distinct resources in a short time, read one after the other.
pub(super) fn enumeration(a: &mut Attack<'_>) -> String {
    let (mut n, span) = if a.normal {
        (between(&mut a.rng, 40, 300), a.minutes(3, 20))
    } else {
        (between(&mut a.rng, 15, 40), a.hours(24, 72))
    };
    if a.normal {
        let mut side = a.side_stream();
        if side.random_bool(SMALL_SWEEP_SHARE) {
            n = between(&mut side, 15, 40);
        }
    }
    let (n, span) = (a.scaled(n), a.paced(span));
    let origin = own_or_outsider_origin(a, 0.5);
    let user = a.user;
    let mut kinds: Vec<(ServerId, Kind)> = user
        .servers
        .iter()
        .filter(|s| s.from_day <= a.day)
        .flat_map(|s| s.server.get().kinds.iter().map(move |&k| (s.server, k)))
        .collect();
    if kinds.is_empty() {
        let gdrive = ServerId::by_name("gdrive").expect("gdrive is in the catalog");
        kinds.push((gdrive, Kind::GdriveDoc));
    }
    // Shared resources (documents, tickets, repositories) before mailboxes.
    if kinds.iter().any(|(_, k)| !k.owned() && k.pool() >= 100) {
        kinds.retain(|(_, k)| !k.owned() && k.pool() >= 100);
    }
    let first = a.rng.random_range(0..kinds.len());
    kinds.swap(0, first);
    let take = if kinds.len() > 1 && a.rng.random_bool(0.4) {
        2
    } else {
        1
    };
    let kinds = &kinds[..take];
    let times = a.times(n, span);
    let mut seen = BTreeSet::new();
    for &t in &times {
        let (server, kind) = a.pick(kinds);
        let mut res = any_resource(a, kind, user.tenant);
        for _ in 0..8 {
            if seen.insert((kind, res.idx, res.owner)) {
                break;
            }
            res = any_resource(a, kind, user.tenant);
        }
        let tool = read_tool(server, kind);
        let mut c = a.call(t, origin, tool.unwrap_or(ToolId { server, index: 0 }));
        match tool {
            Some(_) if a.rng.random_bool(0.5) => {}
            _ => c.method = Method::ResourcesRead,
        }
        c.resource = Some(res);
        c.outcome = if !user.can(server, Access::Read) {
            Outcome::DenyScope
        } else if a.rng.random_bool(0.05) {
            Outcome::NotFound
        } else {
            Outcome::Ok
        };
        a.calls.push(c);
    }
    let mut names: Vec<&str> = kinds.iter().map(|(_, k)| k.scheme()).collect();
    names.dedup();
    format!(
        "{} distinct {} resources over {}",
        seen.len(),
        names.join("+"),
        span_text(&times)
    )
}

/// A spike of reads of sensitive resources, then exports; or (half the
/// normal ones) the user's own rate raised for most of an hour.
pub(super) fn exfiltration(a: &mut Attack<'_>) -> String {
    if a.normal && a.side_stream().random_bool(SUSTAINED_EXFIL_SHARE) {
        return sustained_exfiltration(a);
    }
    let (n, span) = if a.normal {
        (between(&mut a.rng, 100, 800), a.minutes(20, 120))
    } else {
        (between(&mut a.rng, 40, 150), a.hours(48, 120))
    };
    let (n, span) = (a.scaled(n), a.paced(span));
    let origin = own_or_outsider_origin(a, 0.6);
    let user = a.user;
    let kinds = sensitive_kinds(user);
    let exports: Vec<ToolId> = user
        .servers
        .iter()
        .flat_map(|s| s.server.tools())
        .filter(|t| t.get().name.starts_with("export_") || t.get().name.starts_with("bulk_export"))
        .collect();
    let n_exports = if exports.is_empty() {
        0
    } else {
        let n = between(&mut a.rng, 1, 3);
        a.scaled(n)
    };
    let times = a.times(n + n_exports, span);
    let (reads, tail) = times.split_at(n);
    for &t in reads {
        let (server, kind) = a.pick(&kinds);
        let idx = kind
            .sensitive_index(a.rng.random())
            .expect("only sensitive kinds are listed");
        let members = &a.world.tenants[usize::from(user.tenant)].users;
        let owner = members[a.rng.random_range(0..members.len())];
        let mut c = read_call(a, t, origin, server, kind);
        c.resource = Some(ResRef {
            kind,
            tenant: user.tenant,
            idx,
            owner,
        });
        a.calls.push(c);
    }
    exports_at(a, origin, &exports, tail);
    format!(
        "{n} sensitive reads and {n_exports} exports from {} over {}",
        origin.ip,
        span_text(&times)
    )
}

/// A read of a resource of `kind` on `server` by the victim's session, its
/// resource left to the caller: the server's read tool (or, without one or
/// now and then, `resources/read`), allowed if the user may read there.
fn read_call(a: &mut Attack<'_>, t: i64, origin: Origin, server: ServerId, kind: Kind) -> Call {
    let tool = read_tool(server, kind);
    let mut c = a.call(t, origin, tool.unwrap_or(ToolId { server, index: 0 }));
    if tool.is_none() || a.rng.random_bool(0.2) {
        c.method = Method::ResourcesRead;
    }
    if kind == Kind::PgTable && c.method == Method::ToolsCall {
        c.flags |= flags::BULK;
    }
    c.outcome = if a.user.can(server, Access::Read) {
        Outcome::Ok
    } else {
        Outcome::DenyScope
    };
    c
}

/// The bulk exports that end an exfiltration, one at each of `times`.
fn exports_at(a: &mut Attack<'_>, origin: Origin, exports: &[ToolId], times: &[i64]) {
    let user = a.user;
    for &t in times {
        let tool = a.pick(exports);
        let mut c = a.call(t, origin, tool);
        c.flags |= flags::BULK;
        c.resource = tool
            .get()
            .kind
            .map(|k| pick_resource(a.world, user, k, a.day, &mut a.rng));
        c.outcome = if user.can(tool.server, tool.get().access) {
            Outcome::Ok
        } else {
            Outcome::DenyScope
        };
        a.calls.push(c);
    }
}

/// Resource URIs naming another tenant, mostly stopped by tenant isolation.
pub(super) fn cross_tenant(a: &mut Attack<'_>) -> String {
    let (n, span, leak) = if a.normal {
        (between(&mut a.rng, 5, 40), a.minutes(2, 20), 0.3)
    } else {
        (between(&mut a.rng, 1, 4), a.hours(2, 24), 0.5)
    };
    let (n, span) = (a.scaled(n), a.paced(span));
    let origin = a.victim_origin();
    let user = a.user;
    let tenants = a.world.tenants.len() as u16;
    let other = (user.tenant + a.rng.random_range(1..tenants.max(2))) % tenants.max(1);
    let mut kinds: Vec<(ServerId, Kind)> = user
        .servers
        .iter()
        .filter(|s| s.from_day <= a.day)
        .flat_map(|s| s.server.get().kinds.iter().map(move |&k| (s.server, k)))
        .collect();
    if kinds.is_empty() {
        let gdrive = ServerId::by_name("gdrive").expect("gdrive is in the catalog");
        kinds.push((gdrive, Kind::GdriveDoc));
    }
    let times = a.times(n, span);
    let mut leaked = 0;
    for &t in &times {
        let (server, kind) = a.pick(&kinds);
        let tool = read_tool(server, kind);
        let mut c = a.call(t, origin, tool.unwrap_or(ToolId { server, index: 0 }));
        if tool.is_none() || a.rng.random_bool(0.3) {
            c.method = Method::ResourcesRead;
        }
        c.resource = Some(any_resource(a, kind, other));
        c.outcome = if a.rng.random_bool(leak) {
            leaked += 1;
            Outcome::Ok
        } else {
            Outcome::DenyTenant
        };
        a.calls.push(c);
    }
    let other = &a.world.tenants[usize::from(other)].id;
    format!(
        "{n} reads of {other} resources ({leaked} allowed) over {}",
        span_text(&times)
    )
}

/// The user's own read rate raised several times over for half an hour to
/// two hours, on one of their usual servers, part of it on resources new to
/// them: the rise scales with the user, so a light user's exfiltration is a
/// few dozen calls and a heavy user's a few thousand.
fn sustained_exfiltration(a: &mut Attack<'_>) -> String {
    // The whole rate as a multiple of the usual one, before `attack_scale`.
    let multiple: f64 = a.rng.random_range(5.0..40.0);
    let span = a.minutes(25, 100);
    let new_share: f64 = a.rng.random_range(0.2..0.6);
    let origin = own_or_outsider_origin(a, 0.6);
    let user = a.user;
    let (server, kind) = a.pick(&sensitive_kinds(user));
    let (_, hour) = user.local(a.start, a.day);
    let usual_per_hour = user.calls_per_day * f64::from(user.hour_weights[hour]);
    let rise = (multiple - 1.0) * a.scale();
    let hours = span as f64 / HOUR as f64;
    let n = ((rise * usual_per_hour * hours).round() as usize).max(1);
    let exports: Vec<ToolId> = server
        .tools()
        .filter(|t| t.get().name.starts_with("export_") || t.get().name.starts_with("bulk_export"))
        .collect();
    let n_exports = if exports.is_empty() {
        0
    } else {
        between(&mut a.rng, 0, 2)
    };
    let times = a.times(n + n_exports, a.paced(span));
    let (reads, tail) = times.split_at(n);
    let mut new = 0;
    for &t in reads {
        let mut c = read_call(a, t, origin, server, kind);
        c.resource = Some(if a.rng.random_bool(new_share) {
            new += 1;
            let idx = kind
                .sensitive_index(a.rng.random())
                .expect("only sensitive kinds are listed");
            let members = &a.world.tenants[usize::from(user.tenant)].users;
            let owner = members[a.rng.random_range(0..members.len())];
            ResRef {
                kind,
                tenant: user.tenant,
                idx,
                owner,
            }
        } else {
            pick_resource(a.world, user, kind, a.day, &mut a.rng)
        });
        a.calls.push(c);
    }
    exports_at(a, origin, &exports, tail);
    format!(
        "{n} reads of {} ({new} new to the user) at {:.1}x the usual rate and {n_exports} exports from {} over {}",
        kind.scheme(),
        1.0 + rise,
        origin.ip,
        span_text(&times)
    )
}
