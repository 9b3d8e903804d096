//! Decoding untrusted bytes into a [`ToolCallEvent`], with one error that names
//! the field and the problem.
//!
//! The decoder walks the JSON object once with typed visitors (no intermediate
//! `serde_json::Value`) and borrows every string that has no escapes, so it is
//! cheap enough for the ingest hot path: [`decode_view`] allocates nothing per
//! field; [`decode`] copies the view into an owned [`ToolCallEvent`].

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, NaiveDate, Utc};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::error::{DecodeError, Problem};
use crate::event::{Decision, FIELDS, PrincipalType, SCHEMA_VERSION, ToolCallEvent};
use crate::view::{EventView, Extra, Ip, StrList, StrMap};

/// The largest event accepted, in bytes.
pub const MAX_EVENT_BYTES: usize = 1 << 20;
/// The longest id or name (`*_id`, `server`, `method`, `tool`, scopes), in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// The largest `arguments` object, serialized, in bytes.
pub const MAX_ARGUMENTS_BYTES: usize = 64 << 10;

/// Decodes and validates one event from raw bytes (a Kafka record value or an
/// NDJSON line without its newline).
pub fn decode(bytes: &[u8]) -> Result<ToolCallEvent, DecodeError> {
    decode_view(bytes).map(EventView::into_event)
}

/// Decodes and validates one event like [`decode`], borrowing its strings
/// from `bytes` instead of copying them.
pub fn decode_view(bytes: &[u8]) -> Result<EventView<'_>, DecodeError> {
    let text = object_text(bytes)?;
    match fast::scan(text) {
        Some(raw) => raw.finish(),
        None => decode_serde(text),
    }
}

/// The input as text that starts like a JSON object, or why it is not one.
fn object_text(bytes: &[u8]) -> Result<&str, DecodeError> {
    if bytes.len() > MAX_EVENT_BYTES {
        return Err(DecodeError::TooLarge {
            size: bytes.len(),
            limit: MAX_EVENT_BYTES,
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|e| DecodeError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    match text.trim_start().as_bytes().first() {
        Some(b'{') => {}
        Some(&c) => {
            // Valid JSON of another type, or not JSON at all?
            return Err(match serde_json::from_str::<de::IgnoredAny>(text) {
                Ok(_) => DecodeError::NotObject {
                    found: json_kind(c),
                },
                Err(e) => DecodeError::NotJson {
                    message: e.to_string(),
                },
            });
        }
        None => {
            return Err(DecodeError::NotJson {
                message: "empty input".into(),
            });
        }
    }
    Ok(text)
}

/// The serde walk: handles everything, and is the authority on errors.
fn decode_serde(text: &str) -> Result<EventView<'_>, DecodeError> {
    let failure = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(text);
    let raw = EventSeed { failure: &failure }
        .deserialize(&mut de)
        .and_then(|raw| de.end().map(|()| raw));
    match raw {
        Ok(raw) => raw.finish(),
        Err(e) => match (e.classify(), failure.into_inner()) {
            (serde_json::error::Category::Data, Some(field_error)) => Err(field_error),
            _ => Err(DecodeError::NotJson {
                message: e.to_string(),
            }),
        },
    }
}

fn json_kind(first: u8) -> &'static str {
    match first {
        b'[' => "an array",
        b'"' => "a string",
        b't' | b'f' => "a boolean",
        b'n' => "null",
        b'-' | b'0'..=b'9' => "a number",
        _ => "something that is not JSON",
    }
}

type Text<'a> = Cow<'a, str>;

/// Fields as they came off the wire, before the contract's rules are checked.
#[derive(Default)]
struct RawEvent<'a> {
    schema_version: Option<i64>,
    event_id: Option<Text<'a>>,
    time: Option<Text<'a>>,
    tenant_id: Option<Text<'a>>,
    user_id: Option<Text<'a>>,
    server: Option<Text<'a>>,
    method: Option<Text<'a>>,
    decision: Option<Text<'a>>,
    status: Option<i64>,
    tool: Option<Text<'a>>,
    resource: Option<Text<'a>>,
    arguments: Option<&'a RawValue>,
    scopes: Option<Vec<Text<'a>>>,
    required_scope: Option<Text<'a>>,
    policy_id: Option<Text<'a>>,
    reason: Option<Text<'a>>,
    error_type: Option<Text<'a>>,
    jsonrpc_error_code: Option<i64>,
    latency_ms: Option<f64>,
    client_id: Option<Text<'a>>,
    agent_id: Option<Text<'a>>,
    session_id: Option<Text<'a>>,
    gateway_id: Option<Text<'a>>,
    source_ip: Option<Text<'a>>,
    user_agent: Option<Text<'a>>,
    trace_id: Option<Text<'a>>,
    principal_type: Option<Text<'a>>,
    attributes: Option<BTreeMap<Text<'a>, Text<'a>>>,
    extra: BTreeMap<Text<'a>, &'a RawValue>,
    /// Optional fields whose value broke the contract, set aside.
    invalid: Vec<Invalid<'a>>,
}

/// The prefix of the `attributes` keys that hold an optional field's invalid
/// value: `tooltrail.invalid.<field>`.
pub const INVALID_PREFIX: &str = "tooltrail.invalid.";

/// The optional field an `attributes` key marks as invalid, if it is one of
/// ours: `tooltrail.invalid.<field>` for a field [`FIELDS`] does not require.
///
/// An invalid value in an optional field does not reject the event: the
/// field is left empty, and its raw value and the reason go to
/// `attributes["tooltrail.invalid.<field>"]`. (`tool` is required when
/// `method` is `tools/call`, and then rejects as before.) An invalid value
/// in a required field quarantines the event.
pub fn invalid_field(key: &str) -> Option<&'static str> {
    let field = key.strip_prefix(INVALID_PREFIX)?;
    FIELDS
        .iter()
        .find(|f| !f.required && f.name == field)
        .map(|f| f.name)
}

/// The most of an invalid value kept in `attributes`, in bytes of its JSON text.
const MAX_INVALID_VALUE_BYTES: usize = 1024;

/// An optional field's value that broke the contract.
struct Invalid<'a> {
    field: &'static str,
    problem: Problem,
    /// The value's JSON text as it arrived.
    value: Text<'a>,
}

impl Invalid<'_> {
    /// What `attributes["tooltrail.invalid.<field>"]` holds: a JSON object
    /// with the reason and the raw value (its first 1 KiB, as a string, when
    /// it is longer).
    fn record(&self) -> String {
        let reason = self.problem.to_string();
        let mut out = serde_json::Map::new();
        out.insert("reason".into(), reason.into());
        let text: &str = &self.value;
        let short = (text.len() <= MAX_INVALID_VALUE_BYTES)
            .then(|| serde_json::from_str::<serde_json::Value>(text).ok())
            .flatten();
        match short {
            Some(value) => {
                out.insert("value".into(), value);
            }
            None => {
                let mut end = text.len().min(MAX_INVALID_VALUE_BYTES);
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                out.insert("value_prefix".into(), text[..end].into());
                out.insert("value_bytes".into(), text.len().into());
            }
        }
        serde_json::Value::Object(out).to_string()
    }
}

/// A string value as JSON text, for [`Invalid::value`].
fn json_text(value: &str) -> Text<'static> {
    Cow::Owned(serde_json::to_string(value).expect("a string serializes"))
}

fn required<T>(field: &str, value: Option<T>) -> Result<T, DecodeError> {
    value.ok_or_else(|| DecodeError::field(field, Problem::Missing))
}

/// What is wrong with an id or a name, if anything.
fn id_problem(value: &str) -> Option<Problem> {
    (value.len() > MAX_ID_BYTES).then_some(Problem::TooLong {
        len: value.len(),
        limit: MAX_ID_BYTES,
    })
}

fn check_id(field: &str, value: &str) -> Result<(), DecodeError> {
    match id_problem(value) {
        Some(problem) => Err(DecodeError::field(field, problem)),
        None => Ok(()),
    }
}

fn required_id<'a>(field: &str, value: Option<Text<'a>>) -> Result<Text<'a>, DecodeError> {
    let value = required(field, value)?;
    if value.is_empty() {
        return Err(DecodeError::field(field, Problem::Empty));
    }
    check_id(field, &value)?;
    Ok(value)
}

/// An optional id or name: one over [`MAX_ID_BYTES`] is set aside in `invalid`.
fn optional_id<'a>(
    field: &'static str,
    value: Option<Text<'a>>,
    invalid: &mut Vec<Invalid<'a>>,
) -> Option<Text<'a>> {
    let value = value?;
    match id_problem(&value) {
        None => Some(value),
        Some(problem) => {
            invalid.push(Invalid {
                field,
                problem,
                value: json_text(&value),
            });
            None
        }
    }
}

/// Whether hexadecimal text has upper-case digits.
#[derive(Debug, PartialEq, Eq)]
enum HexCase {
    Lower,
    Mixed,
}

/// The case of `text` if every byte is a hexadecimal digit, else `None`.
///
/// One pass with no branch on the data: random hex mixes digits and letters,
/// and a branch per byte mispredicts often enough to be a visible share of
/// decoding an event.
fn hex_case(text: &str) -> Option<HexCase> {
    let (mut bad, mut upper) = (false, false);
    for &b in text.as_bytes() {
        let digit = b.wrapping_sub(b'0') < 10;
        // `| 0x20` folds `A`-`F` onto `a`-`f` and maps no other byte there.
        let letter = (b | 0x20).wrapping_sub(b'a') < 6;
        bad |= !(digit | letter);
        upper |= letter & (b & 0x20 == 0);
    }
    match (bad, upper) {
        (true, _) => None,
        (false, false) => Some(HexCase::Lower),
        (false, true) => Some(HexCase::Mixed),
    }
}

fn parse_time(value: &str) -> Result<DateTime<Utc>, DecodeError> {
    if let Some(time) = utc_time(value.as_bytes()) {
        return Ok(time);
    }
    let parsed = DateTime::parse_from_rfc3339(value).map_err(|e| {
        DecodeError::field(
            "time",
            Problem::BadTime {
                value: value.chars().take(64).collect(),
                message: e.to_string(),
            },
        )
    })?;
    let utc = parsed.with_timezone(&Utc);
    // The lake stores microseconds; finer precision is dropped here, once.
    DateTime::from_timestamp_micros(utc.timestamp_micros()).ok_or_else(|| {
        DecodeError::field(
            "time",
            Problem::BadTime {
                value: value.into(),
                message: "out of range".into(),
            },
        )
    })
}

/// The time of `YYYY-MM-DDTHH:MM:SS[.fraction]Z`, the form gateways send,
/// truncated to microseconds; `None` for anything else (another offset, a
/// leap second, a bad date), which chrono's RFC 3339 parser then decides.
/// That parser is general; this saves about 65 ns of the ~1 µs an event
/// takes to decode.
fn utc_time(text: &[u8]) -> Option<DateTime<Utc>> {
    let (main, fraction) = match text {
        [main @ .., b'Z'] if main.len() >= 19 => main.split_at(19),
        _ => return None,
    };
    let digits = |text: &[u8]| {
        text.iter().try_fold(0u32, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
        })
    };
    let number = |range: std::ops::Range<usize>| digits(&main[range]);
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(i, c)| main[i] != c) {
        return None;
    }
    let micros = match fraction {
        [] => 0,
        [b'.', tail @ ..] if (1..=9).contains(&tail.len()) => {
            // Scaled to nanoseconds, then truncated as chrono's path is.
            digits(tail)? * 10u32.pow(9 - tail.len() as u32) / 1000
        }
        _ => return None,
    };
    let date = NaiveDate::from_ymd_opt(number(0..4)? as i32, number(5..7)?, number(8..10)?)?;
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    // A leap second (`:60`) is refused here too, and left to chrono.
    let time = date.and_hms_micro_opt(hour, minute, second, micros)?;
    Some(time.and_utc())
}

impl<'a> RawEvent<'a> {
    fn finish(mut self) -> Result<EventView<'a>, DecodeError> {
        let version = required("schema_version", self.schema_version)?;
        if version != i64::from(SCHEMA_VERSION) {
            return Err(DecodeError::field(
                "schema_version",
                Problem::UnsupportedVersion(version),
            ));
        }
        let event_id = required_id("event_id", self.event_id)?;
        let time = parse_time(&required("time", self.time)?)?;
        let tenant_id = required_id("tenant_id", self.tenant_id)?;
        let user_id = required_id("user_id", self.user_id)?;
        let server = required_id("server", self.server)?;
        let method = required_id("method", self.method)?;
        let decision = required("decision", self.decision)?;
        let decision = Decision::parse(&decision).ok_or_else(|| {
            DecodeError::field(
                "decision",
                Problem::BadValue(format!("must be \"allow\" or \"deny\", got {decision:?}")),
            )
        })?;
        let status = required("status", self.status)?;
        if !(100..=599).contains(&status) {
            return Err(DecodeError::field(
                "status",
                Problem::OutOfRange(format!("must be from 100 to 599, got {status}")),
            ));
        }

        // Optional fields from here on: a bad value is set aside, not fatal.
        let invalid = &mut self.invalid;
        let tool = optional_id("tool", self.tool, invalid);
        if method == "tools/call" {
            // Required here: its problem rejects the event.
            if let Some(i) = invalid.iter().position(|i| i.field == "tool") {
                return Err(DecodeError::field("tool", invalid.swap_remove(i).problem));
            }
            if tool.as_deref().is_none_or(str::is_empty) {
                return Err(DecodeError::field(
                    "tool",
                    Problem::MissingWhen("method is tools/call"),
                ));
            }
        }
        let arguments = self.arguments.filter(|args| {
            let text = args.get();
            let problem = if !text.starts_with('{') {
                Problem::WrongType("expected a JSON object".into())
            } else if text.len() > MAX_ARGUMENTS_BYTES {
                Problem::TooLong {
                    len: text.len(),
                    limit: MAX_ARGUMENTS_BYTES,
                }
            } else {
                return true;
            };
            invalid.push(Invalid {
                field: "arguments",
                problem,
                value: Cow::Borrowed(text),
            });
            false
        });
        let scopes = self.scopes.filter(|scopes| {
            let Some(problem) = scopes.iter().find_map(|s| id_problem(s)) else {
                return true;
            };
            invalid.push(Invalid {
                field: "scopes",
                problem,
                value: Cow::Owned(serde_json::to_string(scopes).expect("strings serialize")),
            });
            false
        });
        let latency_ms = self.latency_ms.filter(|&latency| {
            if latency >= 0.0 {
                return true;
            }
            invalid.push(Invalid {
                field: "latency_ms",
                problem: Problem::OutOfRange(format!("must be 0 or more, got {latency}")),
                value: Cow::Owned(latency.to_string()),
            });
            false
        });
        let source_ip = self
            .source_ip
            .and_then(|text| match text.parse::<IpAddr>() {
                // IPv4 has one text form (std rejects leading zeros), so the input
                // is already canonical and can be kept as it came.
                Ok(addr) => Some(Ip {
                    addr,
                    canonical_text: match (text, addr) {
                        (Cow::Borrowed(text), IpAddr::V4(_)) => Some(text),
                        _ => None,
                    },
                }),
                Err(_) => {
                    invalid.push(Invalid {
                        field: "source_ip",
                        problem: Problem::BadValue("not an IPv4 or IPv6 address".into()),
                        value: json_text(&text),
                    });
                    None
                }
            });
        let trace_id = self.trace_id.and_then(|t| match (t.len(), hex_case(&t)) {
            (32, Some(HexCase::Lower)) => Some(t),
            (32, Some(HexCase::Mixed)) => Some(Cow::Owned(t.to_ascii_lowercase())),
            _ => {
                invalid.push(Invalid {
                    field: "trace_id",
                    problem: Problem::BadValue("must be 32 hexadecimal digits".into()),
                    value: json_text(&t),
                });
                None
            }
        });
        let principal_type = self.principal_type.and_then(|p| {
            let parsed = PrincipalType::parse(&p);
            if parsed.is_none() {
                invalid.push(Invalid {
                    field: "principal_type",
                    problem: Problem::BadValue("must be \"user\", \"service\" or \"agent\"".into()),
                    value: json_text(&p),
                });
            }
            parsed
        });
        let required_scope = optional_id("required_scope", self.required_scope, invalid);
        let policy_id = optional_id("policy_id", self.policy_id, invalid);
        let client_id = optional_id("client_id", self.client_id, invalid);
        let agent_id = optional_id("agent_id", self.agent_id, invalid);
        let session_id = optional_id("session_id", self.session_id, invalid);
        let gateway_id = optional_id("gateway_id", self.gateway_id, invalid);

        let mut attributes = self.attributes;
        if !self.invalid.is_empty() {
            let map = attributes.get_or_insert_with(BTreeMap::new);
            for invalid in &self.invalid {
                map.insert(
                    Cow::Owned(format!("{INVALID_PREFIX}{}", invalid.field)),
                    Cow::Owned(invalid.record()),
                );
            }
        }

        Ok(EventView {
            event_id,
            time,
            tenant_id,
            user_id,
            server,
            method,
            decision,
            status: u16::try_from(status).expect("status was range-checked"),
            tool,
            resource: self.resource,
            arguments,
            scopes: scopes.map(StrList::Decoded),
            required_scope,
            policy_id,
            reason: self.reason,
            error_type: self.error_type,
            jsonrpc_error_code: self.jsonrpc_error_code,
            latency_ms,
            client_id,
            agent_id,
            session_id,
            gateway_id,
            source_ip,
            user_agent: self.user_agent,
            trace_id,
            principal_type,
            attributes: attributes.map(StrMap::Decoded),
            extra: Extra::Decoded(self.extra),
        })
    }
}

/// Walks the top-level object. A field-level failure is parked in `failure`
/// (serde's error type cannot carry it) and the walk stops.
struct EventSeed<'a> {
    failure: &'a RefCell<Option<DecodeError>>,
}

impl<'de> DeserializeSeed<'de> for EventSeed<'_> {
    type Value = RawEvent<'de>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<RawEvent<'de>, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EventSeed<'_> {
    type Value = RawEvent<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a tool-call event object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawEvent<'de>, A::Error> {
        let mut raw = RawEvent::default();
        let record = |field: &str, problem: Problem| {
            *self.failure.borrow_mut() = Some(DecodeError::field(field, problem));
        };
        let fail = |field: &str, problem: Problem| -> A::Error {
            let message = format!("field `{field}`: {problem}");
            record(field, problem);
            de::Error::custom(message)
        };
        // Reads the value of a known field into its slot, rejecting duplicates
        // and naming the field on a type error.
        macro_rules! read {
            ($key:expr, $slot:expr, $ty:ty, $conv:expr) => {{
                if $slot.is_some() {
                    return Err(fail($key, Problem::Duplicate));
                }
                // The original error goes back up so that a syntax error is
                // still reported as one; a type error is reported as the field's.
                let value: Option<$ty> = map.next_value().map_err(|e: A::Error| {
                    record($key, Problem::WrongType(e.to_string()));
                    e
                })?;
                $slot = value.map($conv);
            }};
        }
        // An optional field: a value of the wrong type is set aside in
        // `raw.invalid` (the field stays empty) instead of failing the event.
        macro_rules! read_optional {
            ($key:expr, $slot:expr, $ty:ty, $conv:expr) => {{
                if $slot.is_some() || raw.invalid.iter().any(|i| i.field == $key) {
                    return Err(fail($key, Problem::Duplicate));
                }
                let value: &'de RawValue = map.next_value()?;
                if value.get() != "null" {
                    match serde_json::from_str::<$ty>(value.get()) {
                        Ok(v) => $slot = Some(convert::<$ty, _>(v, $conv)),
                        Err(e) => raw.invalid.push(Invalid {
                            field: $key,
                            problem: Problem::WrongType(type_error(&e)),
                            value: Cow::Borrowed(value.get()),
                        }),
                    }
                }
            }};
        }
        while let Some(key) = map.next_key::<Str<'de>>()? {
            match key.0.as_ref() {
                "schema_version" => read!("schema_version", raw.schema_version, Int, |v| v.0),
                "event_id" => read!("event_id", raw.event_id, Str<'de>, |v| v.0),
                "time" => read!("time", raw.time, Str<'de>, |v| v.0),
                "tenant_id" => read!("tenant_id", raw.tenant_id, Str<'de>, |v| v.0),
                "user_id" => read!("user_id", raw.user_id, Str<'de>, |v| v.0),
                "server" => read!("server", raw.server, Str<'de>, |v| v.0),
                "method" => read!("method", raw.method, Str<'de>, |v| v.0),
                "decision" => read!("decision", raw.decision, Str<'de>, |v| v.0),
                "status" => read!("status", raw.status, Int, |v| v.0),
                "tool" => read_optional!("tool", raw.tool, Str<'de>, |v| v.0),
                "resource" => read_optional!("resource", raw.resource, Str<'de>, |v| v.0),
                "arguments" => {
                    if raw.arguments.is_some() || raw.invalid.iter().any(|i| i.field == "arguments")
                    {
                        return Err(fail("arguments", Problem::Duplicate));
                    }
                    let value: &'de RawValue = map.next_value()?;
                    raw.arguments = (value.get() != "null").then_some(value);
                }
                "scopes" => read_optional!("scopes", raw.scopes, Strs<'de>, |v| v.0),
                "required_scope" => {
                    read_optional!("required_scope", raw.required_scope, Str<'de>, |v| v.0)
                }
                "policy_id" => read_optional!("policy_id", raw.policy_id, Str<'de>, |v| v.0),
                "reason" => read_optional!("reason", raw.reason, Str<'de>, |v| v.0),
                "error_type" => read_optional!("error_type", raw.error_type, Str<'de>, |v| v.0),
                "jsonrpc_error_code" => {
                    read_optional!("jsonrpc_error_code", raw.jsonrpc_error_code, Int, |v| v.0)
                }
                "latency_ms" => read_optional!("latency_ms", raw.latency_ms, Num, |v| v.0),
                "client_id" => read_optional!("client_id", raw.client_id, Str<'de>, |v| v.0),
                "agent_id" => read_optional!("agent_id", raw.agent_id, Str<'de>, |v| v.0),
                "session_id" => read_optional!("session_id", raw.session_id, Str<'de>, |v| v.0),
                "gateway_id" => read_optional!("gateway_id", raw.gateway_id, Str<'de>, |v| v.0),
                "source_ip" => read_optional!("source_ip", raw.source_ip, Str<'de>, |v| v.0),
                "user_agent" => read_optional!("user_agent", raw.user_agent, Str<'de>, |v| v.0),
                "trace_id" => read_optional!("trace_id", raw.trace_id, Str<'de>, |v| v.0),
                "principal_type" => {
                    read_optional!("principal_type", raw.principal_type, Str<'de>, |v| v.0)
                }
                "attributes" => {
                    read_optional!("attributes", raw.attributes, StrObject<'de>, |v| v.0)
                }
                other => {
                    if raw.extra.contains_key(other) {
                        return Err(fail(other, Problem::Duplicate));
                    }
                    let value: &'de RawValue = map.next_value()?;
                    raw.extra.insert(key.0, value);
                }
            }
        }
        Ok(raw)
    }
}

/// `conv(value)`, with the closure's argument type taken from `T`.
fn convert<T, U>(value: T, conv: impl FnOnce(T) -> U) -> U {
    conv(value)
}

/// A type error without serde_json's position, which is the position in the
/// field's own value and would mislead.
fn type_error(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.find(" at line ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}

/// A JSON string (a value or an object key), borrowed from the input when
/// it has no escapes.
struct Str<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_string(V)
    }
}

/// A JSON integer (no fraction, fits in i64).
struct Int(i64);

impl<'de> de::Deserialize<'de> for Int {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Int;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Int, E> {
                Ok(Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Int, E> {
                i64::try_from(v)
                    .map(Int)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
        }
        d.deserialize_i64(V)
    }
}

/// A JSON number.
struct Num(f64);

impl<'de> de::Deserialize<'de> for Num {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Num;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Num, E> {
                Ok(Num(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Num, E> {
                Ok(Num(v))
            }
        }
        d.deserialize_f64(V)
    }
}

/// A JSON array of strings.
struct Strs<'de>(Vec<Text<'de>>);

impl<'de> de::Deserialize<'de> for Strs<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Strs<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of strings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Strs<'de>, A::Error> {
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(4).min(64));
                while let Some(Str(s)) = seq.next_element()? {
                    out.push(s);
                }
                Ok(Strs(out))
            }
        }
        d.deserialize_seq(V)
    }
}

/// A JSON object whose values are all strings.
struct StrObject<'de>(BTreeMap<Text<'de>, Text<'de>>);

impl<'de> de::Deserialize<'de> for StrObject<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrObject<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrObject<'de>, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((Str(k), Str(v))) = map.next_entry::<Str<'de>, Str<'de>>()? {
                    if out.insert(k, v).is_some() {
                        return Err(de::Error::custom("duplicate key in attributes"));
                    }
                }
                Ok(StrObject(out))
            }
        }
        d.deserialize_map(V)
    }
}

mod fast;

#[cfg(test)]
#[path = "decode_tests.rs"]
mod tests;
