//! One OTLP record (a log record or a span, with its scope and resource)
//! into the contract's JSON object.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::proto::any_value::Value;
use super::proto::{
    AnyValue, ExportLogsServiceRequest, ExportTraceServiceRequest, InstrumentationScope, KeyValue,
    LogRecord, Resource, STATUS_CODE_ERROR, Span,
};
use tooltrail_schemas::{DecodeError, Problem};

use super::{Mapped, MappedRecord, Signal};
use crate::config::OtlpMapping;

/// `[otlp.mapping]`, ready to map with. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Mapper {
    mapping: Arc<OtlpMapping>,
    numbers: Arc<Numbers>,
    /// Each field's attribute names by number, in the order of
    /// [`OtlpMapping::fields`] (indexed by [`Field`]): a record's lookups
    /// hash no name.
    fields: Arc<[Vec<usize>]>,
    /// Each field's name in the contract, indexed by [`Field`].
    names: Arc<[&'static str]>,
}

/// A field of `[otlp.mapping]`: its place in [`OtlpMapping::fields`].
#[derive(Debug, Clone, Copy)]
pub(super) enum Field {
    TenantId,
    UserId,
    Server,
    Method,
    Tool,
    Resource,
    SessionId,
    SourceIp,
    Status,
    Decision,
    TraceId,
    Arguments,
    LatencyMs,
    Reason,
    ErrorType,
    JsonrpcErrorCode,
    ClientId,
    AgentId,
    GatewayId,
    UserAgent,
    PolicyId,
}

impl Field {
    /// Every field, in order.
    #[cfg(test)]
    pub(super) const ALL: [Field; 21] = [
        Field::TenantId,
        Field::UserId,
        Field::Server,
        Field::Method,
        Field::Tool,
        Field::Resource,
        Field::SessionId,
        Field::SourceIp,
        Field::Status,
        Field::Decision,
        Field::TraceId,
        Field::Arguments,
        Field::LatencyMs,
        Field::Reason,
        Field::ErrorType,
        Field::JsonrpcErrorCode,
        Field::ClientId,
        Field::AgentId,
        Field::GatewayId,
        Field::UserAgent,
        Field::PolicyId,
    ];
}

/// Every attribute name `[otlp.mapping]` looks for, numbered (Fx: names
/// are short and the operator's own, nothing an attacker gains by
/// colliding).
type Numbers = FxHashMap<String, usize>;

/// The attributes of a record, a scope or a resource that the mapping names,
/// by the name's number, each with its position: looked up by key once
/// each, not once per name and field.
struct Found<'a> {
    slots: Vec<Option<(&'a AnyValue, usize)>>,
}

impl<'a> Found<'a> {
    fn new(numbers: &Numbers) -> Self {
        Found {
            slots: vec![None; numbers.len()],
        }
    }

    /// Finds the named ones among `attributes`, forgetting the last ones.
    fn fill(&mut self, numbers: &Numbers, attributes: &'a [KeyValue]) {
        self.slots.fill(None);
        for (at, kv) in attributes.iter().enumerate() {
            if let (Some(value), Some(&n)) = (&kv.value, numbers.get(kv.key.as_str())) {
                // The first of a repeated key wins, as in the SDKs.
                self.slots[n].get_or_insert((value, at));
            }
        }
    }
}

/// What a record carries besides its attributes.
struct Own<'a> {
    signal: Signal,
    /// When it happened, in nanoseconds since the epoch; 0: unknown.
    time_nanos: u64,
    trace_id: &'a [u8],
    latency_ms: Option<f64>,
    /// A span's status was ERROR (`None` for log records).
    failed: Option<bool>,
    body: Option<&'a AnyValue>,
}

/// Where attributes are looked up: the record's, its scope's, its resource's.
struct Scopes<'s, 'a> {
    numbers: &'s Numbers,
    record: &'s Found<'a>,
    scope: &'s Found<'a>,
    resource: &'s Found<'a>,
}

impl<'a> Scopes<'_, 'a> {
    /// The attribute numbered `n` if present, and, when it is the record's
    /// own, its position among the record's attributes.
    fn get(&self, n: usize) -> Option<(&'a AnyValue, Option<usize>)> {
        if let Some((value, at)) = self.record.slots[n] {
            Some((value, Some(at)))
        } else {
            self.scope.slots[n]
                .or(self.resource.slots[n])
                .map(|(value, _)| (value, None))
        }
    }
}

/// The contract object being written.
struct Object<'b> {
    out: &'b mut Vec<u8>,
    first: bool,
}

impl Object<'_> {
    fn key(&mut self, key: &str) {
        self.out.push(if self.first { b'{' } else { b',' });
        self.first = false;
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    fn string(&mut self, key: &str, value: &str) {
        self.key(key);
        json_string(self.out, value);
    }

    fn raw(&mut self, key: &str, json: &str) {
        self.key(key);
        self.out.extend_from_slice(json.as_bytes());
    }

    fn close(self) {
        if self.first {
            self.out.push(b'{');
        }
        self.out.push(b'}');
    }
}

fn json_string(out: &mut Vec<u8>, value: &str) {
    serde_json::to_writer(out, value).expect("writing a string to a Vec cannot fail");
}

/// An attribute value as text: strings as they are (borrowed), the rest as
/// JSON.
fn text(value: &AnyValue) -> Option<Cow<'_, str>> {
    Some(match value.value.as_ref()? {
        Value::StringValue(s) => Cow::Borrowed(s),
        Value::BoolValue(b) => Cow::Owned(b.to_string()),
        Value::IntValue(i) => Cow::Owned(i.to_string()),
        Value::DoubleValue(d) => Cow::Owned(d.to_string()),
        Value::BytesValue(b) => Cow::Owned(hex::encode(b)),
        Value::ArrayValue(_) | Value::KvlistValue(_) => Cow::Owned(to_json(value).to_string()),
        // A reference into a profile's string table: absent outside profiles.
        Value::StringValueStrindex(_) => return None,
    })
}

/// An attribute value as a JSON value.
fn to_json(value: &AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match &value.value {
        None | Some(Value::StringValueStrindex(_)) => J::Null,
        Some(Value::StringValue(s)) => J::String(s.clone()),
        Some(Value::BoolValue(b)) => J::Bool(*b),
        Some(Value::IntValue(i)) => J::from(*i),
        Some(Value::DoubleValue(d)) => J::from(*d),
        Some(Value::BytesValue(b)) => J::String(hex::encode(b)),
        Some(Value::ArrayValue(a)) => J::Array(a.values.iter().map(to_json).collect()),
        Some(Value::KvlistValue(kv)) => J::Object(
            kv.values
                .iter()
                .map(|kv| {
                    let v = kv.value.as_ref().map_or(J::Null, to_json);
                    (kv.key.clone(), v)
                })
                .collect(),
        ),
    }
}

/// An attribute value as an integer: an integer, an integral double or a
/// numeric string.
fn integer(value: &AnyValue) -> Option<i64> {
    match value.value.as_ref()? {
        Value::IntValue(i) => Some(*i),
        Value::DoubleValue(d) if d.fract() == 0.0 && d.abs() < 9e15 => Some(*d as i64),
        Value::StringValue(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Milliseconds: a number, or a duration such as `"12ms"`, `"1.5s"`.
fn millis(value: &AnyValue) -> Option<f64> {
    match value.value.as_ref()? {
        Value::IntValue(i) => Some(*i as f64),
        Value::DoubleValue(d) => Some(*d),
        Value::StringValue(s) => {
            let s = s.trim();
            if let Ok(n) = s.parse::<f64>() {
                return Some(n);
            }
            let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
            let (number, unit) = s.split_at(split);
            let number: f64 = number.parse().ok()?;
            let scale = match unit.trim() {
                "ns" => 1e-6,
                "us" | "µs" => 1e-3,
                "ms" => 1.0,
                "s" => 1e3,
                "m" | "min" => 60e3,
                _ => return None,
            };
            Some(number * scale)
        }
        _ => None,
    }
}

/// An address, without the port it may carry (`10.0.0.7:51234`,
/// `[2001:db8::1]:443`); anything else as it is, for the decoder to judge.
fn address(value: &str) -> Cow<'_, str> {
    let value = value.trim();
    match value.parse::<IpAddr>() {
        // IPv4 has one text form (std refuses leading zeros): kept as sent.
        Ok(IpAddr::V4(_)) => Cow::Borrowed(value),
        Ok(ip) => Cow::Owned(ip.to_string()),
        Err(_) => match value.parse::<SocketAddr>() {
            Ok(socket) => Cow::Owned(socket.ip().to_string()),
            Err(_) => Cow::Borrowed(value),
        },
    }
}

/// RFC 3339 from nanoseconds since the epoch.
fn rfc3339(nanos: u64) -> Option<String> {
    let time = chrono::DateTime::from_timestamp_nanos(i64::try_from(nanos).ok()?);
    Some(time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
}

/// `a`, `b` or `c`, each in backticks.
fn listed(names: &[String]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.as_slice() {
        [] => "(none configured)".into(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// The usual `field `x`: ...` error for a field no attribute filled.
fn unmapped(signal: Signal, field: &str, names: &[String], also: &str) -> DecodeError {
    DecodeError::Field {
        field: field.to_owned(),
        problem: Problem::Unmapped(format!(
            "no OTLP attribute {} on the {}, its scope or its resource ([otlp.mapping] {field}){also}",
            listed(names),
            signal.record(),
        )),
    }
}

/// What an id hash is fed: the fields' values, the same whether the message
/// came as protobuf or JSON (an empty `AnyValue` is an absent one). They
/// are gathered in one buffer: the resource's and the scope's at its front,
/// hashed once for all of the scope's records ([`Feed::share`]), each
/// record's behind them, hashed at once.
struct Feed {
    buf: Vec<u8>,
    /// The hash of `buf[..shared_len]`, what every record of a scope starts with.
    shared: blake3::Hasher,
    shared_len: usize,
}

impl Feed {
    fn new(signal: Signal) -> Feed {
        let mut buf = Vec::with_capacity(1024);
        buf.extend_from_slice(b"tooltrail otlp event id v1\0");
        buf.extend_from_slice(signal.as_str().as_bytes());
        Feed {
            buf,
            shared: blake3::Hasher::new(),
            shared_len: 0,
        }
    }

    /// How much has been fed, to go back to with [`Feed::truncate`].
    fn len(&self) -> usize {
        self.buf.len()
    }

    fn truncate(&mut self, len: usize) -> &mut Self {
        self.buf.truncate(len);
        self
    }

    /// Hashes what has been fed so far, once, for the records that follow.
    fn share(&mut self) -> usize {
        self.shared = blake3::Hasher::new();
        self.shared.update(&self.buf);
        self.shared_len = self.buf.len();
        self.shared_len
    }

    /// The event id of what has been fed.
    fn id(&self) -> [u8; 16] {
        let mut hasher = self.shared.clone();
        hasher.update(&self.buf[self.shared_len..]);
        let mut id = [0; 16];
        id.copy_from_slice(&hasher.finalize().as_bytes()[..16]);
        id
    }

    fn u64(&mut self, n: u64) -> &mut Self {
        self.buf.extend_from_slice(&n.to_le_bytes());
        self
    }

    fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u64(b.len() as u64);
        self.buf.extend_from_slice(b);
        self
    }

    fn value(&mut self, value: Option<&AnyValue>) -> &mut Self {
        match value.and_then(|v| v.value.as_ref()) {
            None | Some(Value::StringValueStrindex(_)) => self.u64(0),
            Some(Value::StringValue(s)) => self.u64(1).bytes(s.as_bytes()),
            Some(Value::BoolValue(b)) => self.u64(2).u64(u64::from(*b)),
            Some(Value::IntValue(i)) => self.u64(3).u64(*i as u64),
            Some(Value::DoubleValue(d)) => self.u64(4).u64(d.to_bits()),
            Some(Value::BytesValue(b)) => self.u64(5).bytes(b),
            Some(Value::ArrayValue(a)) => {
                self.u64(6).u64(a.values.len() as u64);
                for v in &a.values {
                    self.value(Some(v));
                }
                self
            }
            Some(Value::KvlistValue(kv)) => self.u64(7).attributes(&kv.values),
        }
    }

    fn attributes(&mut self, attributes: &[KeyValue]) -> &mut Self {
        self.u64(attributes.len() as u64);
        for kv in attributes {
            self.bytes(kv.key.as_bytes()).value(kv.value.as_ref());
        }
        self
    }

    fn resource(&mut self, resource: Option<&Resource>) -> &mut Self {
        self.attributes(resource.map_or(&[][..], |r| &r.attributes[..]))
    }

    fn scope(&mut self, scope: Option<&InstrumentationScope>) -> &mut Self {
        match scope {
            None => self.u64(0),
            Some(s) => self
                .u64(1)
                .bytes(s.name.as_bytes())
                .bytes(s.version.as_bytes())
                .attributes(&s.attributes),
        }
    }

    fn log(&mut self, r: &LogRecord) -> &mut Self {
        self.u64(r.time_unix_nano)
            .u64(r.observed_time_unix_nano)
            .u64(r.severity_number as u64)
            .bytes(r.severity_text.as_bytes())
            .value(r.body.as_ref())
            .attributes(&r.attributes)
            .u64(u64::from(r.flags))
            .bytes(&r.trace_id)
            .bytes(&r.span_id)
            .bytes(r.event_name.as_bytes())
    }

    fn span(&mut self, s: &Span) -> &mut Self {
        let status = s.status.as_ref();
        self.bytes(&s.trace_id)
            .bytes(&s.span_id)
            .bytes(&s.parent_span_id)
            .bytes(s.name.as_bytes())
            .u64(s.kind as u64)
            .u64(s.start_time_unix_nano)
            .u64(s.end_time_unix_nano)
            .attributes(&s.attributes)
            .u64(status.map_or(0, |st| st.code as u64))
            .bytes(status.map_or(&b""[..], |st| st.message.as_bytes()))
    }
}

impl Mapper {
    pub fn new(mapping: &OtlpMapping) -> Mapper {
        let mut numbers = Numbers::default();
        let fields = mapping
            .fields()
            .iter()
            .map(|(_, names)| {
                names
                    .iter()
                    .map(|name| {
                        let next = numbers.len();
                        *numbers.entry(name.clone()).or_insert(next)
                    })
                    .collect()
            })
            .collect();
        Mapper {
            mapping: Arc::new(mapping.clone()),
            numbers: Arc::new(numbers),
            fields,
            names: mapping.fields().iter().map(|(name, _)| *name).collect(),
        }
    }

    /// `field`'s name in the contract.
    fn name(&self, field: Field) -> &'static str {
        self.names[field as usize]
    }

    /// Maps every log record of `request`. `default_tenant` is the tenant of
    /// records that name none (a token bound to one tenant).
    pub fn logs(&self, request: &ExportLogsServiceRequest, default_tenant: Option<&str>) -> Mapped {
        let mut mapped = Mapped::default();
        let numbers = &*self.numbers;
        let (mut resource, mut scope, mut record) = (
            Found::new(numbers),
            Found::new(numbers),
            Found::new(numbers),
        );
        let mut feed = Feed::new(Signal::Logs);
        let seeded = feed.len();
        for resource_logs in &request.resource_logs {
            let resource_attrs = resource_logs
                .resource
                .as_ref()
                .map_or(&[][..], |r| &r.attributes[..]);
            resource.fill(numbers, resource_attrs);
            let resourced = feed
                .truncate(seeded)
                .resource(resource_logs.resource.as_ref())
                .len();
            for scope_logs in &resource_logs.scope_logs {
                let scope_attrs = scope_logs
                    .scope
                    .as_ref()
                    .map_or(&[][..], |s| &s.attributes[..]);
                scope.fill(numbers, scope_attrs);
                let scoped = feed
                    .truncate(resourced)
                    .scope(scope_logs.scope.as_ref())
                    .share();
                for log in &scope_logs.log_records {
                    feed.truncate(scoped).log(log);
                    let time_nanos = if log.time_unix_nano != 0 {
                        log.time_unix_nano
                    } else {
                        log.observed_time_unix_nano
                    };
                    let own = Own {
                        signal: Signal::Logs,
                        time_nanos,
                        trace_id: &log.trace_id,
                        latency_ms: None,
                        failed: None,
                        body: log.body.as_ref(),
                    };
                    record.fill(numbers, &log.attributes);
                    let scopes = Scopes {
                        numbers,
                        record: &record,
                        scope: &scope,
                        resource: &resource,
                    };
                    self.record(
                        &scopes,
                        &log.attributes,
                        &own,
                        &mut feed,
                        default_tenant,
                        &mut mapped,
                    );
                }
            }
        }
        mapped
    }

    /// Maps every span of `request` that is an MCP call (has a `method`
    /// attribute); the others are counted in [`Mapped::skipped`].
    pub fn traces(
        &self,
        request: &ExportTraceServiceRequest,
        default_tenant: Option<&str>,
    ) -> Mapped {
        let mut mapped = Mapped::default();
        let numbers = &*self.numbers;
        let (mut resource, mut scope, mut record) = (
            Found::new(numbers),
            Found::new(numbers),
            Found::new(numbers),
        );
        let mut feed = Feed::new(Signal::Traces);
        let seeded = feed.len();
        for resource_spans in &request.resource_spans {
            let resource_attrs = resource_spans
                .resource
                .as_ref()
                .map_or(&[][..], |r| &r.attributes[..]);
            resource.fill(numbers, resource_attrs);
            let resourced = feed
                .truncate(seeded)
                .resource(resource_spans.resource.as_ref())
                .len();
            for scope_spans in &resource_spans.scope_spans {
                let scope_attrs = scope_spans
                    .scope
                    .as_ref()
                    .map_or(&[][..], |s| &s.attributes[..]);
                scope.fill(numbers, scope_attrs);
                let scoped = feed
                    .truncate(resourced)
                    .scope(scope_spans.scope.as_ref())
                    .share();
                for span in &scope_spans.spans {
                    record.fill(numbers, &span.attributes);
                    let scopes = Scopes {
                        numbers,
                        record: &record,
                        scope: &scope,
                        resource: &resource,
                    };
                    if !self.fields[Field::Method as usize]
                        .iter()
                        .any(|&n| scopes.get(n).is_some())
                    {
                        mapped.skipped += 1;
                        continue;
                    }
                    feed.truncate(scoped).span(span);
                    let latency_ms = (span.end_time_unix_nano >= span.start_time_unix_nano
                        && span.end_time_unix_nano != 0)
                        .then(|| {
                            (span.end_time_unix_nano - span.start_time_unix_nano) as f64 / 1e6
                        });
                    let own = Own {
                        signal: Signal::Traces,
                        time_nanos: span.start_time_unix_nano,
                        trace_id: &span.trace_id,
                        latency_ms,
                        failed: Some(
                            span.status
                                .as_ref()
                                .is_some_and(|s| s.code == STATUS_CODE_ERROR),
                        ),
                        body: None,
                    };
                    self.record(
                        &scopes,
                        &span.attributes,
                        &own,
                        &mut feed,
                        default_tenant,
                        &mut mapped,
                    );
                }
            }
        }
        mapped
    }

    /// Writes one record's object into `mapped`.
    fn record(
        &self,
        scopes: &Scopes<'_, '_>,
        attributes: &[KeyValue],
        own: &Own<'_>,
        feed: &mut Feed,
        default_tenant: Option<&str>,
        mapped: &mut Mapped,
    ) {
        let m = &*self.mapping;
        let signal = own.signal;
        let start = mapped.body.len();
        let mut problem: Option<DecodeError> = None;
        let mut lookup = Lookup {
            scopes,
            fields: &self.fields,
            used: Vec::new(),
        };
        let unmapped = |field: Field, also: &str| {
            let (name, names) = self.mapping.fields()[field as usize];
            unmapped(signal, name, names, also)
        };

        let tenant = lookup
            .first(Field::TenantId, text)
            .or_else(|| default_tenant.map(Cow::Borrowed));
        let id = feed.bytes(tenant.as_deref().unwrap_or("").as_bytes()).id();
        let mut event_id = *b"otlp-00000000000000000000000000000000";
        hex::encode_to_slice(id, &mut event_id[5..]).expect("16 bytes are 32 hex digits");

        let mut object = Object {
            out: &mut mapped.body,
            first: true,
        };
        object.raw("schema_version", "1");
        object.string(
            "event_id",
            std::str::from_utf8(&event_id).expect("hex is ASCII"),
        );
        match rfc3339(own.time_nanos).filter(|_| own.time_nanos != 0) {
            Some(time) => object.string("time", &time),
            None => fail(
                &mut problem,
                DecodeError::Field {
                    field: "time".into(),
                    problem: Problem::Unmapped(format!(
                        "the {} has no time ({})",
                        signal.record(),
                        match signal {
                            Signal::Logs => "time_unix_nano and observed_time_unix_nano are 0",
                            Signal::Traces => "start_time_unix_nano is 0",
                        }
                    )),
                },
            ),
        }
        match &tenant {
            Some(tenant) => object.string("tenant_id", tenant),
            None => fail(
                &mut problem,
                unmapped(
                    Field::TenantId,
                    ", and the credential is not bound to exactly one tenant",
                ),
            ),
        }
        for field in [Field::UserId, Field::Server] {
            match lookup.first(field, text) {
                Some(value) => object.string(self.name(field), &value),
                None => fail(&mut problem, unmapped(field, "")),
            }
        }
        let method = lookup.first(Field::Method, text);
        match &method {
            Some(value) => object.string("method", value),
            None => fail(&mut problem, unmapped(Field::Method, "")),
        }
        // The first status attribute that holds an HTTP-like status.
        let status = lookup
            .first(Field::Status, |v| {
                integer(v).filter(|s| (100..=599).contains(s))
            })
            .or_else(|| own.failed.map(|failed| if failed { 500 } else { 200 }));
        let decision = lookup.first(Field::Decision, text);
        let denied = status.is_some_and(|s| m.deny_statuses.iter().any(|d| i64::from(*d) == s));
        match (decision, denied) {
            (Some(decision), _) => object.string("decision", &decision),
            (None, true) => object.string("decision", "deny"),
            (None, false) => object.string("decision", "allow"),
        }
        match status {
            Some(status) => object.raw("status", &status.to_string()),
            None => fail(
                &mut problem,
                unmapped(Field::Status, " holding a status from 100 to 599"),
            ),
        }
        match lookup.first(Field::Tool, text) {
            Some(tool) => object.string("tool", &tool),
            None if method.as_deref() == Some("tools/call") => fail(
                &mut problem,
                unmapped(Field::Tool, " (required for tools/call)"),
            ),
            None => {}
        }
        for field in [
            Field::Resource,
            Field::SessionId,
            Field::Reason,
            Field::ErrorType,
            Field::ClientId,
            Field::AgentId,
            Field::GatewayId,
            Field::UserAgent,
            Field::PolicyId,
        ] {
            if let Some(value) = lookup.first(field, text) {
                object.string(self.name(field), &value);
            }
        }
        if let Some(ip) = lookup.first(Field::SourceIp, text) {
            object.string("source_ip", &address(&ip));
        }
        let trace_id = lookup.first(Field::TraceId, text).or_else(|| {
            own.trace_id
                .iter()
                .any(|b| *b != 0)
                .then(|| Cow::Owned(hex::encode(own.trace_id)))
        });
        if let Some(trace_id) = trace_id {
            object.string("trace_id", &trace_id);
        }
        if let Some(arguments) = lookup.first(Field::Arguments, Some) {
            match &arguments.value {
                // A JSON object sent as a string (the semantic conventions' form).
                Some(Value::StringValue(s)) if is_json_object(s) => {
                    object.raw("arguments", s.trim())
                }
                _ => object.raw("arguments", &to_json(arguments).to_string()),
            }
        }
        if let Some(ms) = lookup
            .first(Field::LatencyMs, millis)
            .or(own.latency_ms)
            .filter(|ms| ms.is_finite())
        {
            object.raw("latency_ms", &ms.to_string());
        }
        if let Some(code) = lookup.first(Field::JsonrpcErrorCode, integer) {
            object.raw("jsonrpc_error_code", &code.to_string());
        }
        // Everything else the record says, as strings: each key once, the
        // first time it comes with a value.
        let mut open = false;
        // SipHash, not a scan or Fx: the keys are the sender's, as many as
        // the body holds.
        let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
        let body = own.body.and_then(text).filter(|b| !b.is_empty());
        let rest = attributes
            .iter()
            .enumerate()
            // An empty key is a profile's string-table reference: absent here.
            .filter(|(_, kv)| !kv.key.is_empty())
            .filter_map(|(at, kv)| Some((at, kv.key.as_str(), text(kv.value.as_ref()?)?)))
            .chain(body.map(|b| (attributes.len(), "otlp.body", b)));
        for (at, key, value) in rest {
            let first_time = match scopes.numbers.get(key) {
                // A named key: its first occurrence, unless it filled a field
                // (none: the body, under a name no attribute has).
                Some(&n) => match scopes.record.slots[n] {
                    Some((_, first)) => first == at && !lookup.used.contains(&n),
                    None => true,
                },
                None => seen.insert(key),
            };
            if !first_time {
                continue;
            }
            if open {
                object.out.push(b',');
            } else {
                object.key("attributes");
                object.out.push(b'{');
                open = true;
            }
            json_string(object.out, key);
            object.out.push(b':');
            json_string(object.out, &value);
        }
        if open {
            object.out.push(b'}');
        }
        object.close();
        mapped.records.push(MappedRecord {
            range: start..mapped.body.len(),
            unmapped: problem,
        });
    }
}

/// Keeps the first problem found.
fn fail(problem: &mut Option<DecodeError>, error: DecodeError) {
    problem.get_or_insert(error);
}

fn is_json_object(s: &str) -> bool {
    s.trim_start().starts_with('{') && serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok()
}

/// Attribute lookups for one record, noting which of the record's own
/// attributes (by name number) filled a field.
struct Lookup<'s, 'a> {
    scopes: &'s Scopes<'s, 'a>,
    /// [`Mapper::fields`].
    fields: &'s [Vec<usize>],
    used: Vec<usize>,
}

impl<'a> Lookup<'_, 'a> {
    /// The first of `field`'s attributes present whose value `convert` takes.
    fn first<T>(&mut self, field: Field, convert: impl Fn(&'a AnyValue) -> Option<T>) -> Option<T> {
        self.fields[field as usize].iter().find_map(|&n| {
            let (value, at) = self.scopes.get(n)?;
            let converted = convert(value)?;
            if at.is_some() {
                self.used.push(n);
            }
            Some(converted)
        })
    }
}
