//! [`EventView`]: a validated event that borrows its strings, from the input
//! bytes it was decoded from ([`crate::decode_view`]) or from a
//! [`ToolCallEvent`] ([`ToolCallEvent::view`]).
//!
//! Ingest decodes each record into a view and appends it straight to the
//! lake's Arrow builders, so the hot path allocates nothing per field. A view
//! satisfies the same contract rules as a [`ToolCallEvent`];
//! [`EventView::into_event`] turns one into the other.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

use crate::decode::{INVALID_PREFIX, invalid_field};
use crate::event::{Decision, PrincipalType, RawJson, SCHEMA_VERSION, ToolCallEvent};

/// A validated event whose strings borrow from its source where they can.
#[derive(Debug, Clone)]
pub struct EventView<'a> {
    pub event_id: Cow<'a, str>,
    /// UTC, at microsecond precision.
    pub time: DateTime<Utc>,
    pub tenant_id: Cow<'a, str>,
    pub user_id: Cow<'a, str>,
    pub server: Cow<'a, str>,
    pub method: Cow<'a, str>,
    pub decision: Decision,
    pub status: u16,
    pub tool: Option<Cow<'a, str>>,
    pub resource: Option<Cow<'a, str>>,
    /// The JSON object text, verbatim.
    pub arguments: Option<&'a RawValue>,
    pub scopes: Option<StrList<'a>>,
    pub required_scope: Option<Cow<'a, str>>,
    pub policy_id: Option<Cow<'a, str>>,
    pub reason: Option<Cow<'a, str>>,
    pub error_type: Option<Cow<'a, str>>,
    pub jsonrpc_error_code: Option<i64>,
    pub latency_ms: Option<f64>,
    pub client_id: Option<Cow<'a, str>>,
    pub agent_id: Option<Cow<'a, str>>,
    pub session_id: Option<Cow<'a, str>>,
    pub gateway_id: Option<Cow<'a, str>>,
    pub source_ip: Option<Ip<'a>>,
    pub user_agent: Option<Cow<'a, str>>,
    /// 32 lowercase hex digits.
    pub trace_id: Option<Cow<'a, str>>,
    pub principal_type: Option<PrincipalType>,
    pub attributes: Option<StrMap<'a>>,
    /// Top-level fields the contract does not know, verbatim.
    pub extra: Extra<'a>,
}

/// An IP address, with its text when that text is already canonical.
#[derive(Debug, Clone, Copy)]
pub struct Ip<'a> {
    pub addr: IpAddr,
    /// The address as it arrived, when it is the canonical form (IPv4).
    pub canonical_text: Option<&'a str>,
}

/// The `scopes` array.
#[derive(Debug, Clone)]
pub enum StrList<'a> {
    Decoded(Vec<Cow<'a, str>>),
    Event(&'a [String]),
}

impl StrList<'_> {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let (decoded, event) = match self {
            StrList::Decoded(v) => (v.as_slice(), &[][..]),
            StrList::Event(v) => (&[][..], *v),
        };
        decoded
            .iter()
            .map(|s| s.as_ref())
            .chain(event.iter().map(String::as_str))
    }
}

/// The `attributes` object, in key order.
#[derive(Debug, Clone)]
pub enum StrMap<'a> {
    Decoded(BTreeMap<Cow<'a, str>, Cow<'a, str>>),
    Event(&'a BTreeMap<String, String>),
}

impl StrMap<'_> {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let (decoded, event) = match self {
            StrMap::Decoded(m) => (Some(m), None),
            StrMap::Event(m) => (None, Some(*m)),
        };
        let decoded = decoded
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_ref(), v.as_ref()));
        let event = event
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        decoded.chain(event)
    }

    /// The optional fields whose invalid values ingest set aside in this map
    /// (its `tooltrail.invalid.<field>` keys), in key order.
    pub fn invalid_fields(&self) -> impl Iterator<Item = &'static str> {
        use std::ops::Bound;
        let from = (Bound::Included(INVALID_PREFIX), Bound::Unbounded);
        let (decoded, event) = match self {
            StrMap::Decoded(m) => (Some(m.range::<str, _>(from)), None),
            StrMap::Event(m) => (None, Some(m.range::<str, _>(from))),
        };
        let decoded = decoded.into_iter().flatten().map(|(k, _)| k.as_ref());
        let event = event.into_iter().flatten().map(|(k, _)| k.as_str());
        decoded
            .chain(event)
            .take_while(|k| k.starts_with(INVALID_PREFIX))
            .filter_map(invalid_field)
    }
}

/// Unknown top-level fields, in key order.
#[derive(Debug, Clone)]
pub enum Extra<'a> {
    Decoded(BTreeMap<Cow<'a, str>, &'a RawValue>),
    Event(&'a BTreeMap<String, RawJson>),
}

impl Extra<'_> {
    pub fn is_empty(&self) -> bool {
        match self {
            Extra::Decoded(m) => m.is_empty(),
            Extra::Event(m) => m.is_empty(),
        }
    }

    /// The fields as one JSON object, keys in order (the lake's `extra` column).
    pub fn to_json(&self) -> String {
        match self {
            Extra::Decoded(m) => serde_json::to_string(m),
            Extra::Event(m) => serde_json::to_string(m),
        }
        .expect("raw JSON values serialize")
    }
}

fn owned(s: Cow<'_, str>) -> String {
    s.into_owned()
}

impl EventView<'_> {
    /// Event time as microseconds since the Unix epoch (UTC).
    pub fn time_micros(&self) -> i64 {
        self.time.timestamp_micros()
    }

    /// Copies what the view borrows into an owned event.
    pub fn into_event(self) -> ToolCallEvent {
        ToolCallEvent {
            schema_version: SCHEMA_VERSION,
            event_id: owned(self.event_id),
            time: self.time,
            tenant_id: owned(self.tenant_id),
            user_id: owned(self.user_id),
            server: owned(self.server),
            method: owned(self.method),
            decision: self.decision,
            status: self.status,
            tool: self.tool.map(owned),
            resource: self.resource.map(owned),
            arguments: self.arguments.map(|a| RawJson::from(a.to_owned())),
            scopes: self.scopes.map(|s| match s {
                StrList::Decoded(v) => v.into_iter().map(owned).collect(),
                StrList::Event(v) => v.to_vec(),
            }),
            required_scope: self.required_scope.map(owned),
            policy_id: self.policy_id.map(owned),
            reason: self.reason.map(owned),
            error_type: self.error_type.map(owned),
            jsonrpc_error_code: self.jsonrpc_error_code,
            latency_ms: self.latency_ms,
            client_id: self.client_id.map(owned),
            agent_id: self.agent_id.map(owned),
            session_id: self.session_id.map(owned),
            gateway_id: self.gateway_id.map(owned),
            source_ip: self.source_ip.map(|ip| ip.addr),
            user_agent: self.user_agent.map(owned),
            trace_id: self.trace_id.map(owned),
            principal_type: self.principal_type,
            attributes: self.attributes.map(|a| match a {
                StrMap::Decoded(m) => m.into_iter().map(|(k, v)| (owned(k), owned(v))).collect(),
                StrMap::Event(m) => m.clone(),
            }),
            extra: match self.extra {
                Extra::Decoded(m) => m
                    .into_iter()
                    .map(|(k, v)| (owned(k), RawJson::from(v.to_owned())))
                    .collect(),
                Extra::Event(m) => m.clone(),
            },
        }
    }
}

fn borrow(s: &str) -> Cow<'_, str> {
    Cow::Borrowed(s)
}

fn borrow_opt(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(Cow::Borrowed)
}

impl ToolCallEvent {
    /// A view of this event, borrowing every string.
    pub fn view(&self) -> EventView<'_> {
        EventView {
            event_id: borrow(&self.event_id),
            time: self.time,
            tenant_id: borrow(&self.tenant_id),
            user_id: borrow(&self.user_id),
            server: borrow(&self.server),
            method: borrow(&self.method),
            decision: self.decision,
            status: self.status,
            tool: borrow_opt(&self.tool),
            resource: borrow_opt(&self.resource),
            arguments: self.arguments.as_ref().map(RawJson::raw),
            scopes: self.scopes.as_deref().map(StrList::Event),
            required_scope: borrow_opt(&self.required_scope),
            policy_id: borrow_opt(&self.policy_id),
            reason: borrow_opt(&self.reason),
            error_type: borrow_opt(&self.error_type),
            jsonrpc_error_code: self.jsonrpc_error_code,
            latency_ms: self.latency_ms,
            client_id: borrow_opt(&self.client_id),
            agent_id: borrow_opt(&self.agent_id),
            session_id: borrow_opt(&self.session_id),
            gateway_id: borrow_opt(&self.gateway_id),
            source_ip: self.source_ip.map(|addr| Ip {
                addr,
                canonical_text: None,
            }),
            user_agent: borrow_opt(&self.user_agent),
            trace_id: borrow_opt(&self.trace_id),
            principal_type: self.principal_type,
            attributes: self.attributes.as_ref().map(StrMap::Event),
            extra: Extra::Event(&self.extra),
        }
    }
}
