//! The compact plan of one event.
//!
//! Traffic and attacks plan [`Call`]s (about a hundred bytes, no heap); a day
//! of them is sorted by time and only then turned into
//! [`tooltrail_schemas::ToolCallEvent`]s one at a time, so memory stays
//! bounded by one day of compact plans.

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use crate::catalog::{Kind, ServerId, ToolId};

pub(crate) const SECOND: i64 = 1_000_000;
pub(crate) const MINUTE: i64 = 60 * SECOND;
pub(crate) const HOUR: i64 = 60 * MINUTE;
pub(crate) const DAY: i64 = 24 * HOUR;

/// The MCP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    ToolsCall,
    ResourcesRead,
    PromptsGet,
    ToolsList,
}

impl Method {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::ToolsCall => "tools/call",
            Method::ResourcesRead => "resources/read",
            Method::PromptsGet => "prompts/get",
            Method::ToolsList => "tools/list",
        }
    }
}

/// How the call ended; decides decision, status, error and policy fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    /// 200 with an MCP tool error result.
    ToolError,
    /// 500, JSON-RPC internal error.
    Internal,
    /// 504, the upstream server did not answer in time.
    Timeout,
    /// 400, JSON-RPC invalid params.
    Malformed,
    /// 404, resource not found.
    NotFound,
    /// 403, the token lacks the required scope.
    DenyScope,
    /// 403, the resource belongs to another tenant.
    DenyTenant,
    /// 403, data-loss prevention stopped an outward send.
    DenyEgress,
    /// 403, the tool needs an approval the caller does not have.
    DenySensitive,
    /// 429, rate limited by the gateway.
    RateLimited,
    /// 401, expired or invalid token.
    Unauthenticated,
}

/// Who is calling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Principal {
    User,
    Agent,
    Service,
}

/// A resource: a kind, the tenant whose URI it is, an index into the kind's
/// pool, and (for owned kinds) the owner's user index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResRef {
    pub kind: Kind,
    pub tenant: u16,
    pub idx: u32,
    pub owner: u32,
}

/// Flags on a call's arguments.
pub(crate) mod flags {
    /// Recipients or share targets outside the tenant.
    pub const EXTERNAL: u8 = 1;
    /// Bulk reads: large limits, `select *`.
    pub const BULK: u8 = 2;
}

/// Where a call comes from: the parts shared by a session's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Origin {
    pub session: u64,
    pub ip: IpAddr,
    pub client: u8,
    /// Index into the client's user agents.
    pub ua: u8,
    pub gateway: u8,
    pub principal: Principal,
}

/// One planned event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Call {
    /// Event time, microseconds since the Unix epoch.
    pub time: i64,
    /// The event id's 128 bits (UUIDv7 layout).
    pub id: u128,
    /// Seeds trace id, latency and argument values.
    pub detail: u64,
    pub user: u32,
    pub origin: Origin,
    pub method: Method,
    pub server: ServerId,
    /// Tool index within the server, for `tools/call`.
    pub tool: u8,
    pub resource: Option<ResRef>,
    pub outcome: Outcome,
    pub flags: u8,
    /// Prompt index within the server, for `prompts/get`.
    pub prompt: u8,
}

impl Call {
    pub(crate) fn tool_id(&self) -> ToolId {
        ToolId {
            server: self.server,
            index: self.tool,
        }
    }

    /// Sort key: time, then id (ids are unique).
    pub(crate) fn key(&self) -> (i64, u128) {
        (self.time, self.id)
    }
}

/// A UUIDv7 for an event at `time_micros`, from 74 random bits.
pub(crate) fn event_id_bits(time_micros: i64, random: u128) -> u128 {
    let millis = (time_micros.div_euclid(1000) as u128) & ((1 << 48) - 1);
    let rand_a = (random >> 62) & 0xfff;
    let rand_b = random & ((1 << 62) - 1);
    (millis << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b
}

/// Microseconds since the epoch as a timestamp.
pub(crate) fn to_datetime(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).expect("simulated times are within chrono's range")
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `bits` as `digits` lowercase hex digits.
pub(crate) fn push_hex(out: &mut String, bits: u128, digits: u32) {
    for i in (0..digits).rev() {
        out.push(char::from(HEX[((bits >> (i * 4)) & 0xf) as usize]));
    }
}

/// Formats event id bits as a hyphenated UUID.
pub(crate) fn format_event_id(bits: u128) -> String {
    let mut s = String::with_capacity(36);
    push_hex(&mut s, bits >> 96, 8);
    s.push('-');
    push_hex(&mut s, bits >> 80, 4);
    s.push('-');
    push_hex(&mut s, bits >> 64, 4);
    s.push('-');
    push_hex(&mut s, bits >> 48, 4);
    s.push('-');
    push_hex(&mut s, bits, 12);
    s
}

/// Formats a session id as gateways print `Mcp-Session-Id`s.
pub(crate) fn format_session_id(bits: u64) -> String {
    let mut s = String::with_capacity(21);
    s.push_str("mcp-");
    push_hex(&mut s, u128::from(bits), 16);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_uuid_v7_and_sort_by_time() {
        let early = event_id_bits(1_790_000_000_000_000, u128::MAX);
        let late = event_id_bits(1_790_000_000_001_000, 0);
        let (a, b) = (format_event_id(early), format_event_id(late));
        assert!(a < b, "{a} {b}");
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "7");
        assert!(matches!(&a[19..20], "8" | "9" | "a" | "b"), "{a}");
    }

    #[test]
    fn session_ids_have_a_fixed_shape() {
        assert_eq!(format_session_id(0xab), "mcp-00000000000000ab");
    }
}
