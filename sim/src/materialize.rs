//! Turning a planned [`Call`] into a [`ToolCallEvent`].
//!
//! Everything not fixed at planning time (trace id, latency, argument values)
//! comes from the call's `detail` seed, so materializing is a pure function.

mod args;

use std::collections::BTreeMap;

use tooltrail_schemas::{Decision, PrincipalType, RawJson, SCHEMA_VERSION, ToolCallEvent};

use crate::call::{
    Call, Method, Outcome, Principal, format_event_id, format_session_id, push_hex, to_datetime,
};
use crate::catalog::{Access, CLIENTS};
use crate::population::{World, scopes};
use crate::rng::SplitMix;

/// What an outcome looks like on the wire.
struct Fields {
    decision: Decision,
    status: u16,
    error_type: Option<&'static str>,
    jsonrpc: Option<i64>,
    policy: Option<(&'static str, &'static str)>,
}

fn fields(outcome: Outcome) -> Fields {
    let allow = |status, error_type, jsonrpc| Fields {
        decision: Decision::Allow,
        status,
        error_type,
        jsonrpc,
        policy: None,
    };
    let deny = |status, policy: &'static str, reason: &'static str| Fields {
        decision: Decision::Deny,
        status,
        error_type: None,
        jsonrpc: None,
        policy: Some((policy, reason)),
    };
    match outcome {
        Outcome::Ok => allow(200, None, None),
        Outcome::ToolError => allow(200, Some("tool_error"), None),
        Outcome::Internal => allow(500, Some("-32603"), Some(-32603)),
        Outcome::Timeout => allow(504, Some("-32001"), Some(-32001)),
        Outcome::Malformed => allow(400, Some("-32602"), Some(-32602)),
        Outcome::NotFound => allow(404, Some("-32002"), Some(-32002)),
        Outcome::DenyScope => deny(403, "pol-scope-enforcement", ""),
        Outcome::DenyTenant => deny(
            403,
            "pol-tenant-isolation",
            "resource belongs to another tenant",
        ),
        Outcome::DenyEgress => deny(403, "pol-dlp-egress", "recipient outside the organization"),
        Outcome::DenySensitive => deny(
            403,
            "pol-sensitive-tools",
            "tool requires an approved change request",
        ),
        Outcome::RateLimited => deny(429, "pol-rate-limit", "rate limit exceeded"),
        Outcome::Unauthenticated => deny(401, "pol-authn", "token expired"),
    }
}

/// Builds the event a gateway would have emitted for `call`.
pub(crate) fn materialize(world: &World, call: &Call) -> ToolCallEvent {
    let user = &world.users[call.user as usize];
    let tenant = world.tenant_of(user);
    let server = call.server.get();
    let mut detail = SplitMix::new(call.detail);
    let f = fields(call.outcome);

    let tool = (call.method == Method::ToolsCall).then(|| call.tool_id().get());
    let required = tool.map_or(Access::Read, |t| t.access);
    let required_scope = server.scopes[required as usize];
    let resource = call.resource.map(|r| {
        let mut uri = String::with_capacity(72);
        let tenant = &world.tenants[usize::from(r.tenant)].id;
        let owner = &world.users[r.owner as usize].id;
        r.kind.write_uri(&mut uri, tenant, r.idx, owner);
        uri
    });
    let arguments = match (call.method, tool) {
        (Method::ToolsCall, Some(tool)) => Some(RawJson::from(args::tool_args(
            world,
            user,
            tool,
            resource.as_deref(),
            call.flags,
            &mut detail,
        ))),
        (Method::PromptsGet, _) => Some(RawJson::from(args::prompt_args(&mut detail))),
        _ => None,
    };
    let reason = f.policy.map(|(_, reason)| {
        if call.outcome == Outcome::DenyScope {
            format!("token lacks scope {required_scope}")
        } else {
            reason.to_owned()
        }
    });
    let client = &CLIENTS[usize::from(call.origin.client)];
    let agent_id = match call.origin.principal {
        Principal::Agent => user.agent_id.clone(),
        _ => None,
    };
    let mut trace = String::with_capacity(32);
    push_hex(
        &mut trace,
        u128::from(detail.next_u64()) << 64 | u128::from(detail.next_u64()),
        32,
    );
    let attributes = (call.method == Method::PromptsGet).then(|| {
        let name = server.prompts[usize::from(call.prompt) % server.prompts.len().max(1)];
        BTreeMap::from([("mcp.prompt.name".to_owned(), name.to_owned())])
    });

    ToolCallEvent {
        schema_version: SCHEMA_VERSION,
        event_id: format_event_id(call.id),
        time: to_datetime(call.time),
        tenant_id: tenant.id.clone(),
        user_id: user.id.clone(),
        server: server.name.to_owned(),
        method: call.method.as_str().to_owned(),
        decision: f.decision,
        status: f.status,
        tool: tool.map(|t| t.name.to_owned()),
        resource,
        arguments,
        scopes: Some(scopes(call.server, user.access[usize::from(call.server.0)])),
        required_scope: Some(required_scope.to_owned()),
        policy_id: f.policy.map(|(p, _)| p.to_owned()),
        reason,
        error_type: f.error_type.map(str::to_owned),
        jsonrpc_error_code: f.jsonrpc,
        latency_ms: Some(latency(call, server.latency_ms, &mut detail)),
        client_id: Some(client.id.to_owned()),
        agent_id,
        session_id: Some(format_session_id(call.origin.session)),
        gateway_id: Some(tenant.gateways[usize::from(call.origin.gateway)].clone()),
        source_ip: Some(call.origin.ip),
        user_agent: Some(client.user_agents[usize::from(call.origin.ua)].to_owned()),
        trace_id: Some(trace),
        principal_type: Some(match call.origin.principal {
            Principal::User => PrincipalType::User,
            Principal::Agent => PrincipalType::Agent,
            Principal::Service => PrincipalType::Service,
        }),
        attributes,
        extra: BTreeMap::new(),
    }
}

/// Log-normal latency around the server's median; gateway-side outcomes are
/// fast, timeouts slow. Rounded to microseconds.
fn latency(call: &Call, median_ms: f64, detail: &mut SplitMix) -> f64 {
    let lognormal = |median: f64, sigma: f64, d: &mut SplitMix| median * (sigma * d.normal()).exp();
    let ms = match call.outcome {
        Outcome::DenyScope
        | Outcome::DenyTenant
        | Outcome::DenyEgress
        | Outcome::DenySensitive
        | Outcome::RateLimited
        | Outcome::Unauthenticated => lognormal(1.2, 0.5, detail),
        Outcome::Timeout => 30_000.0 + detail.unit() * 400.0,
        Outcome::Malformed => lognormal(6.0, 0.5, detail),
        _ => match call.method {
            Method::ToolsList => lognormal(18.0, 0.4, detail),
            Method::ResourcesRead => lognormal(median_ms * 0.6, 0.6, detail),
            _ if call.flags & crate::call::flags::BULK != 0 => {
                lognormal(median_ms * 8.0, 0.5, detail)
            }
            _ => lognormal(median_ms, 0.6, detail),
        },
    };
    (ms * 1000.0).round() / 1000.0
}
