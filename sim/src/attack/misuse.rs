//! Attacks through the victim's own tools: prompt injection, off-hours use,
//! first use of sensitive tools, session hijack.

use rand::Rng;

use super::{Attack, span_text};
use crate::call::{DAY, HOUR, MINUTE, Origin, Outcome, Principal, flags};
use crate::catalog::{CLIENTS, ClientClass, ToolId, pick_client};
use crate::population::attacker_ip;
use crate::rng::between;
use crate::traffic::{normal_call, pick_resource};

/// Local time by which a paced off-hours session is over.
const NIGHT_END: i64 = 6 * HOUR;

/// Reads that can carry injected instructions, in order of preference.
const CONTENT_READS: &[(&str, &str)] = &[
    ("gmail", "read_email"),
    ("zendesk", "get_ticket"),
    ("github", "get_issue"),
    ("gdrive", "read_file"),
    ("jira", "get_issue"),
    ("slack", "read_channel_history"),
];

/// Outward-facing tools whose `arguments` point outside the tenant.
fn egress_tools() -> Vec<ToolId> {
    ToolId::all().filter(|t| t.get().egress).collect()
}

/// A habitual call of the victim at `t`.
fn habitual(a: &mut Attack<'_>, t: i64, origin: Origin) -> crate::call::Call {
    let server = a.user.pick_server(a.day, &mut a.rng);
    normal_call(a.world, a.user, a.day, server, origin, t, &mut a.rng)
}

/// Sets the outcome of a sensitive call: denied without the scope, otherwise
/// sometimes stopped by policy.
fn guarded(a: &mut Attack<'_>, c: &mut crate::call::Call, policy: Outcome, stop: f64) {
    let tool = c.tool_id().get();
    c.outcome = if !a.user.can(c.server, tool.access) {
        Outcome::DenyScope
    } else if a.rng.random_bool(stop) {
        policy
    } else {
        Outcome::Ok
    };
}

/// An agent reads poisoned content, then goes off script: malformed calls,
/// tool errors, and outward sends the user never makes.
pub(super) fn prompt_injection(a: &mut Attack<'_>) -> String {
    let (n, span) = if a.normal {
        (between(&mut a.rng, 5, 25), a.minutes(1, 10))
    } else {
        (between(&mut a.rng, 2, 5), a.hours(1, 6))
    };
    let (n, span) = (a.scaled(n), a.paced(span));
    // The victim's agent if they run one (the session in progress if it is
    // the agent's), else the assistant in their usual client.
    let mut origin = a.victim_origin();
    if a.user.agent_id.is_some() && origin.principal != Principal::Agent {
        origin.session = a.rng.random();
        origin.principal = Principal::Agent;
        origin.client = a.user.agent_client;
        origin.ua = a.user.ua_on(origin.client, a.day);
    }
    let user = a.user;
    let trigger = CONTENT_READS
        .iter()
        .filter_map(|&(s, t)| ToolId::by_name(s, t))
        .find(|t| user.can(t.server, t.get().access));
    let times = a.times(n + 1, span);
    let mut rest = &times[..];
    if let Some(tool) = trigger {
        let mut c = a.call(times[0], origin, tool);
        c.resource = tool
            .get()
            .kind
            .map(|k| pick_resource(a.world, user, k, a.day, &mut a.rng));
        a.calls.push(c);
        rest = &times[1..];
    }
    let egress = egress_tools();
    let (malformed, errors) = if a.normal { (0.35, 0.55) } else { (0.15, 0.25) };
    let mut sends = 0;
    for &t in rest {
        let r: f64 = a.rng.random();
        if r < errors {
            let mut c = habitual(a, t, origin);
            if c.outcome == Outcome::Ok {
                c.outcome = if r < malformed {
                    Outcome::Malformed
                } else {
                    Outcome::ToolError
                };
            }
            a.calls.push(c);
        } else {
            let usable: Vec<ToolId> = egress
                .iter()
                .copied()
                .filter(|t| user.can(t.server, t.get().access))
                .collect();
            let tool = if !usable.is_empty() && a.rng.random_bool(0.8) {
                a.pick(&usable)
            } else {
                a.pick(&egress)
            };
            let mut c = a.call(t, origin, tool);
            c.flags |= flags::EXTERNAL;
            c.resource = tool
                .get()
                .kind
                .map(|k| pick_resource(a.world, user, k, a.day, &mut a.rng));
            guarded(a, &mut c, Outcome::DenyEgress, 0.45);
            sends += 1;
            a.calls.push(c);
        }
    }
    format!(
        "agent went off script after a content read: {n} calls, {sends} outward sends, over {}",
        span_text(&times)
    )
}

/// Habitual-looking work in the victim's local night: one long session, or
/// (low-and-slow) a few calls a night over several nights.
pub(super) fn off_hours(a: &mut Attack<'_>) -> String {
    let mut origin = a.fresh_victim_origin();
    if a.rng.random_bool(0.4) {
        origin.ip = attacker_ip(&mut a.rng);
    }
    let times = if a.normal {
        let n = between(&mut a.rng, 20, 120);
        let span = a.minutes(30, 120);
        let n = a.scaled(n);
        let span = night_bound(a, a.paced(span));
        a.times(n, span)
    } else {
        let last = a.world.end() - crate::call::SECOND;
        let mut times = Vec::new();
        for night in 0..between(&mut a.rng, 2, 4) as i64 {
            let base = a.start + night * crate::call::DAY;
            for call in 0..between(&mut a.rng, 1, 4) {
                let offset = if night == 0 && call == 0 {
                    0
                } else {
                    a.hours(0, 3)
                };
                if base + offset < last {
                    times.push(base + offset);
                }
            }
        }
        times.sort_unstable();
        times
    };
    let mut night = a.start;
    for &t in &times {
        if t - night > 6 * crate::call::HOUR {
            night = t;
            origin.session = a.rng.random();
        }
        let c = habitual(a, t, origin);
        a.calls.push(c);
    }
    let local = (a.start / crate::call::MINUTE + i64::from(a.user.tz_min)).rem_euclid(24 * 60);
    format!(
        "{} calls from {} starting {:02}:{:02} local time, over {}",
        times.len(),
        origin.ip,
        local / 60,
        local % 60,
        span_text(&times)
    )
}

/// A paced off-hours span, cut so that the session ends by 06:00 local
/// time; today's spans (pace 1) are left as drawn.
fn night_bound(a: &Attack<'_>, span: i64) -> i64 {
    if a.world.shape.attack_pace == 1.0 {
        return span;
    }
    let local = (a.start + i64::from(a.user.tz_min) * MINUTE).rem_euclid(DAY);
    if local < NIGHT_END {
        span.min(NIGHT_END - local)
    } else {
        span
    }
}

/// Destructive or bulk tools the user has never used.
pub(super) fn sensitive_tool(a: &mut Attack<'_>) -> String {
    let n = if a.normal {
        let n = between(&mut a.rng, 1, 6);
        a.scaled(n)
    } else {
        1
    };
    let span = a.minutes(1, 15);
    let span = a.paced(span);
    let origin = a.victim_origin();
    let user = a.user;
    let own: Vec<ToolId> = user
        .servers
        .iter()
        .flat_map(|s| s.server.tools())
        .filter(|&t| t.get().sensitive && !user.habitual(t))
        .collect();
    let any: Vec<ToolId> = ToolId::all()
        .filter(|&t| t.get().sensitive && !user.habitual(t))
        .collect();
    let times = a.times(n, span);
    let mut names = Vec::new();
    for &t in &times {
        let tool = if !own.is_empty() && a.rng.random_bool(0.8) {
            a.pick(&own)
        } else {
            a.pick(&any)
        };
        let mut c = a.call(t, origin, tool);
        let spec = tool.get();
        if spec.name.contains("export") {
            c.flags |= flags::BULK;
        }
        if spec.egress && a.rng.random_bool(0.5) {
            c.flags |= flags::EXTERNAL;
        }
        c.resource = spec
            .kind
            .map(|k| pick_resource(a.world, user, k, a.day, &mut a.rng));
        guarded(a, &mut c, Outcome::DenySensitive, 0.25);
        names.push(spec.name);
        a.calls.push(c);
    }
    names.sort_unstable();
    names.dedup();
    format!("first use of {}", names.join(", "))
}

/// The victim's session replayed from a new network and client, then
/// sensitive actions.
pub(super) fn session_hijack(a: &mut Attack<'_>) -> String {
    let (n, span, actions) = if a.normal {
        (
            between(&mut a.rng, 10, 60),
            a.minutes(5, 40),
            between(&mut a.rng, 1, 4),
        )
    } else {
        (between(&mut a.rng, 3, 8), a.hours(1, 4), 1)
    };
    let (n, span, actions) = (a.scaled(n), a.paced(span), a.scaled(actions));
    if a.current_session().is_none()
        && let Some(first) = a.sessions.iter().min_by_key(|s| s.start)
    {
        let t = first.start + a.rng.random_range(0..first.end - first.start + 1);
        a.start = t.min(a.world.end() - crate::call::MINUTE).max(first.start);
    }
    let stolen = a.victim_origin();
    let mut origin = stolen;
    origin.ip = attacker_ip(&mut a.rng);
    origin.principal = if stolen.principal == Principal::Agent {
        Principal::User
    } else {
        stolen.principal
    };
    if a.normal {
        let class = if a.rng.random_bool(0.5) {
            ClientClass::Attacker
        } else {
            ClientClass::Human
        };
        let mut client = pick_client(&mut a.rng, class);
        while client == stolen.client {
            client = pick_client(&mut a.rng, ClientClass::Attacker);
        }
        origin.client = client;
        let uas = CLIENTS[usize::from(client)].user_agents.len();
        origin.ua = a.rng.random_range(0..uas) as u8;
    } else {
        // Same client id, spoofed; only the user agent gives it away, if anything.
        let uas = CLIENTS[usize::from(stolen.client)].user_agents.len() as u8;
        origin.ua = (stolen.ua + 1) % uas;
    }
    let user = a.user;
    let sensitive: Vec<ToolId> = ToolId::all()
        .filter(|&t| t.get().sensitive && user.access[usize::from(t.server.0)].is_some())
        .collect();
    let sensitive = if sensitive.is_empty() {
        ToolId::all().filter(|t| t.get().egress).collect()
    } else {
        sensitive
    };
    let times = a.times(n + actions, span);
    let recon = (n * 3 / 10).max(1);
    for (i, &t) in times.iter().enumerate() {
        if i < recon || (i < times.len() - actions && a.rng.random_bool(0.5)) {
            let c = habitual(a, t, origin);
            a.calls.push(c);
        } else if i < times.len() - actions {
            let server = user.pick_server(a.day, &mut a.rng);
            let mut c = normal_call(a.world, user, a.day, server, origin, t, &mut a.rng);
            if let Some(r) = c.resource.as_mut()
                && let Some(idx) = r.kind.sensitive_index(a.rng.random())
            {
                r.idx = idx;
            }
            a.calls.push(c);
        } else {
            let tool = a.pick(&sensitive);
            let mut c = a.call(t, origin, tool);
            let spec = tool.get();
            if spec.egress {
                c.flags |= flags::EXTERNAL;
            }
            if spec.name.contains("export") {
                c.flags |= flags::BULK;
            }
            c.resource = spec
                .kind
                .map(|k| pick_resource(a.world, user, k, a.day, &mut a.rng));
            guarded(a, &mut c, Outcome::DenySensitive, 0.2);
            a.calls.push(c);
        }
    }
    let client = CLIENTS[usize::from(origin.client)].id;
    format!(
        "session reused from {} with {client}: {} calls, {actions} sensitive actions, over {}",
        origin.ip,
        times.len(),
        span_text(&times)
    )
}
