//! The v1 tool-call event: one MCP call as a gateway saw it.
//!
//! Field names are the wire contract and never change; new fields are additive.
//! Decoding lives in [`crate::decode`]; this module holds the type and its
//! serialization back to canonical JSON.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;

/// The only `schema_version` this build reads and writes.
pub const SCHEMA_VERSION: u8 = 1;

/// Whether the gateway let the call through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    Allow,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "allow" => Some(Decision::Allow),
            "deny" => Some(Decision::Deny),
            _ => None,
        }
    }
}

/// What kind of principal made the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrincipalType {
    User,
    Service,
    Agent,
}

impl PrincipalType {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalType::User => "user",
            PrincipalType::Service => "service",
            PrincipalType::Agent => "agent",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "user" => Some(PrincipalType::User),
            "service" => Some(PrincipalType::Service),
            "agent" => Some(PrincipalType::Agent),
            _ => None,
        }
    }
}

/// One MCP tool call (or resource read, prompt get, ...) as recorded by a gateway.
///
/// Build one with [`crate::decode`] from untrusted bytes; every value of this
/// type satisfies the contract's rules (lengths, ranges, formats).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallEvent {
    /// Always [`SCHEMA_VERSION`].
    pub schema_version: u8,
    /// Unique per event; the idempotency key.
    pub event_id: String,
    /// When the call happened, in UTC, at microsecond precision.
    pub time: DateTime<Utc>,
    pub tenant_id: String,
    pub user_id: String,
    /// MCP server name.
    pub server: String,
    /// MCP method, e.g. `tools/call`, `resources/read`, `prompts/get`.
    pub method: String,
    pub decision: Decision,
    /// HTTP-like outcome, 100–599.
    pub status: u16,
    /// Tool name; always present when `method` is `tools/call`.
    pub tool: Option<String>,
    /// Resource URI.
    pub resource: Option<String>,
    /// The call's arguments as the gateway logged them: a JSON object, kept verbatim.
    pub arguments: Option<RawJson>,
    pub scopes: Option<Vec<String>>,
    pub required_scope: Option<String>,
    pub policy_id: Option<String>,
    pub reason: Option<String>,
    /// OpenTelemetry `error.type`: a JSON-RPC code as a string, or `tool_error`.
    pub error_type: Option<String>,
    pub jsonrpc_error_code: Option<i64>,
    pub latency_ms: Option<f64>,
    pub client_id: Option<String>,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub gateway_id: Option<String>,
    pub source_ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// W3C trace id, 32 lowercase hex digits.
    pub trace_id: Option<String>,
    pub principal_type: Option<PrincipalType>,
    pub attributes: Option<BTreeMap<String, String>>,
    /// Top-level fields this version does not know, kept verbatim.
    pub extra: BTreeMap<String, RawJson>,
}

/// A JSON value kept as the exact text it arrived as. Two values are equal
/// when their texts are.
#[derive(Debug, Clone)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// Wraps JSON text, checking that it is one valid JSON value.
    pub fn from_string(json: String) -> Result<Self, serde_json::Error> {
        RawValue::from_string(json).map(RawJson)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    pub(crate) fn raw(&self) -> &RawValue {
        &self.0
    }
}

impl From<Box<RawValue>> for RawJson {
    fn from(raw: Box<RawValue>) -> Self {
        RawJson(raw)
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Serialize for RawJson {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl ToolCallEvent {
    /// The Kafka record key, `<tenant_id>/<user_id>`: one user's events share a partition.
    pub fn kafka_key(&self) -> String {
        kafka_key(&self.tenant_id, &self.user_id)
    }

    /// Event time as microseconds since the Unix epoch (UTC).
    pub fn time_micros(&self) -> i64 {
        self.time.timestamp_micros()
    }

    /// The canonical JSON encoding (one line, no trailing newline).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a ToolCallEvent always serializes")
    }
}

/// The Kafka record key for a user: `<tenant_id>/<user_id>`.
pub fn kafka_key(tenant_id: &str, user_id: &str) -> String {
    let mut key = String::with_capacity(tenant_id.len() + user_id.len() + 1);
    key.push_str(tenant_id);
    key.push('/');
    key.push_str(user_id);
    key
}

/// Formats a timestamp the way events carry it: RFC 3339, UTC, microseconds.
pub fn format_time(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl Serialize for ToolCallEvent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("schema_version", &self.schema_version)?;
        map.serialize_entry("event_id", &self.event_id)?;
        map.serialize_entry("time", &format_time(&self.time))?;
        map.serialize_entry("tenant_id", &self.tenant_id)?;
        map.serialize_entry("user_id", &self.user_id)?;
        map.serialize_entry("server", &self.server)?;
        map.serialize_entry("method", &self.method)?;
        map.serialize_entry("decision", self.decision.as_str())?;
        map.serialize_entry("status", &self.status)?;
        macro_rules! opt {
            ($name:ident) => {
                if let Some(v) = &self.$name {
                    map.serialize_entry(stringify!($name), v)?;
                }
            };
        }
        opt!(tool);
        opt!(resource);
        opt!(arguments);
        opt!(scopes);
        opt!(required_scope);
        opt!(policy_id);
        opt!(reason);
        opt!(error_type);
        opt!(jsonrpc_error_code);
        opt!(latency_ms);
        opt!(client_id);
        opt!(agent_id);
        opt!(session_id);
        opt!(gateway_id);
        if let Some(ip) = &self.source_ip {
            map.serialize_entry("source_ip", &ip.to_string())?;
        }
        opt!(user_agent);
        opt!(trace_id);
        if let Some(p) = self.principal_type {
            map.serialize_entry("principal_type", p.as_str())?;
        }
        opt!(attributes);
        for (k, v) in &self.extra {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// The JSON type a contract field takes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireType {
    Integer,
    Number,
    String,
    StringArray,
    Object,
    StringMap,
}

/// One field of the contract, as documented for gateway authors.
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    pub name: &'static str,
    pub required: bool,
    pub wire: WireType,
}

const fn req(name: &'static str, wire: WireType) -> FieldSpec {
    FieldSpec {
        name,
        required: true,
        wire,
    }
}

const fn opt(name: &'static str, wire: WireType) -> FieldSpec {
    FieldSpec {
        name,
        required: false,
        wire,
    }
}

/// Every field of contract v1, in canonical order.
pub const FIELDS: &[FieldSpec] = &[
    req("schema_version", WireType::Integer),
    req("event_id", WireType::String),
    req("time", WireType::String),
    req("tenant_id", WireType::String),
    req("user_id", WireType::String),
    req("server", WireType::String),
    req("method", WireType::String),
    req("decision", WireType::String),
    req("status", WireType::Integer),
    opt("tool", WireType::String),
    opt("resource", WireType::String),
    opt("arguments", WireType::Object),
    opt("scopes", WireType::StringArray),
    opt("required_scope", WireType::String),
    opt("policy_id", WireType::String),
    opt("reason", WireType::String),
    opt("error_type", WireType::String),
    opt("jsonrpc_error_code", WireType::Integer),
    opt("latency_ms", WireType::Number),
    opt("client_id", WireType::String),
    opt("agent_id", WireType::String),
    opt("session_id", WireType::String),
    opt("gateway_id", WireType::String),
    opt("source_ip", WireType::String),
    opt("user_agent", WireType::String),
    opt("trace_id", WireType::String),
    opt("principal_type", WireType::String),
    opt("attributes", WireType::StringMap),
];
