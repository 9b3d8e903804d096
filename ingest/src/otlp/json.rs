//! OTLP's JSON encoding (OTLP/HTTP `application/json`) into the protobuf
//! messages of [`super::proto`].
//!
//! As the specification asks: field names in lowerCamelCase (the protobuf
//! names are taken too), trace and span ids as hex, enums as integers,
//! 64-bit integers as strings or numbers, `bytesValue` as base64, unknown
//! fields ignored. An error names the path of the value at fault, e.g.
//! `resourceLogs[0].scopeLogs[1].logRecords[2].timeUnixNano: expected an integer`.

use serde_json::{Map, Value};

use super::proto::{
    AnyValue, ArrayValue, ExportLogsServiceRequest, ExportTraceServiceRequest,
    InstrumentationScope, KeyValue, KeyValueList, LogRecord, Resource, ResourceLogs, ResourceSpans,
    ScopeLogs, ScopeSpans, Span, Status, any_value,
};

type Result<T> = std::result::Result<T, String>;

/// A JSON object being read, and where it is.
struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

impl<'a> Obj<'a> {
    fn of(value: &'a Value, path: String) -> Result<Obj<'a>> {
        match value {
            Value::Object(map) => Ok(Obj { map, path }),
            _ => Err(format!("{}: expected an object", shown(&path))),
        }
    }

    /// A field by its JSON name, or its protobuf name; `null` is absent.
    fn get(&self, camel: &str, snake: &str) -> Option<(&'a Value, String)> {
        let (name, value) = [camel, snake]
            .into_iter()
            .find_map(|n| self.map.get(n).map(|v| (n, v)))?;
        (!value.is_null()).then(|| (value, join(&self.path, name)))
    }

    fn list<T>(
        &self,
        camel: &str,
        snake: &str,
        item: impl Fn(&'a Value, String) -> Result<T>,
    ) -> Result<Vec<T>> {
        let Some((value, path)) = self.get(camel, snake) else {
            return Ok(Vec::new());
        };
        let Value::Array(items) = value else {
            return Err(format!("{path}: expected an array"));
        };
        items
            .iter()
            .enumerate()
            .map(|(i, v)| item(v, format!("{path}[{i}]")))
            .collect()
    }

    fn object<T>(
        &self,
        camel: &str,
        snake: &str,
        read: impl Fn(Obj<'a>) -> Result<T>,
    ) -> Result<Option<T>> {
        match self.get(camel, snake) {
            None => Ok(None),
            Some((value, path)) => read(Obj::of(value, path)?).map(Some),
        }
    }

    fn string(&self, camel: &str, snake: &str) -> Result<String> {
        match self.get(camel, snake) {
            None => Ok(String::new()),
            Some((Value::String(s), _)) => Ok(s.clone()),
            Some((_, path)) => Err(format!("{path}: expected a string")),
        }
    }

    /// An integer, as a number or a string.
    fn int(&self, camel: &str, snake: &str) -> Result<i128> {
        match self.get(camel, snake) {
            None => Ok(0),
            Some((value, path)) => {
                integer(value).ok_or_else(|| format!("{path}: expected an integer"))
            }
        }
    }

    fn u64(&self, camel: &str, snake: &str) -> Result<u64> {
        let n = self.int(camel, snake)?;
        u64::try_from(n).map_err(|_| format!("{}: out of range", join(&self.path, camel)))
    }

    fn u32(&self, camel: &str, snake: &str) -> Result<u32> {
        let n = self.int(camel, snake)?;
        u32::try_from(n).map_err(|_| format!("{}: out of range", join(&self.path, camel)))
    }

    fn i32(&self, camel: &str, snake: &str) -> Result<i32> {
        let n = self.int(camel, snake)?;
        i32::try_from(n).map_err(|_| format!("{}: out of range", join(&self.path, camel)))
    }

    /// Hex-encoded bytes (trace and span ids).
    fn hex(&self, camel: &str, snake: &str) -> Result<Vec<u8>> {
        match self.get(camel, snake) {
            None => Ok(Vec::new()),
            Some((Value::String(s), path)) => {
                hex::decode(s).map_err(|e| format!("{path}: expected hex ({e})"))
            }
            Some((_, path)) => Err(format!("{path}: expected a hex string")),
        }
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn shown(path: &str) -> &str {
    if path.is_empty() { "the body" } else { path }
}

fn integer(value: &Value) -> Option<i128> {
    match value {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An `ExportLogsServiceRequest`.
pub fn logs(body: &[u8]) -> Result<ExportLogsServiceRequest> {
    let value = parse(body)?;
    let top = Obj::of(&value, String::new())?;
    Ok(ExportLogsServiceRequest {
        resource_logs: top.list("resourceLogs", "resource_logs", |v, path| {
            let o = Obj::of(v, path)?;
            Ok(ResourceLogs {
                resource: o.object("resource", "resource", resource)?,
                scope_logs: o.list("scopeLogs", "scope_logs", |v, path| {
                    let o = Obj::of(v, path)?;
                    Ok(ScopeLogs {
                        scope: o.object("scope", "scope", scope)?,
                        log_records: o.list("logRecords", "log_records", |v, path| {
                            log_record(Obj::of(v, path)?)
                        })?,
                        schema_url: o.string("schemaUrl", "schema_url")?,
                    })
                })?,
                schema_url: o.string("schemaUrl", "schema_url")?,
            })
        })?,
    })
}

/// An `ExportTraceServiceRequest`.
pub fn traces(body: &[u8]) -> Result<ExportTraceServiceRequest> {
    let value = parse(body)?;
    let top = Obj::of(&value, String::new())?;
    Ok(ExportTraceServiceRequest {
        resource_spans: top.list("resourceSpans", "resource_spans", |v, path| {
            let o = Obj::of(v, path)?;
            Ok(ResourceSpans {
                resource: o.object("resource", "resource", resource)?,
                scope_spans: o.list("scopeSpans", "scope_spans", |v, path| {
                    let o = Obj::of(v, path)?;
                    Ok(ScopeSpans {
                        scope: o.object("scope", "scope", scope)?,
                        spans: o.list("spans", "spans", |v, path| span(Obj::of(v, path)?))?,
                        schema_url: o.string("schemaUrl", "schema_url")?,
                    })
                })?,
                schema_url: o.string("schemaUrl", "schema_url")?,
            })
        })?,
    })
}

fn parse(body: &[u8]) -> Result<Value> {
    serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))
}

fn resource(o: Obj<'_>) -> Result<Resource> {
    Ok(Resource {
        attributes: attributes(&o)?,
        dropped_attributes_count: o.u32("droppedAttributesCount", "dropped_attributes_count")?,
        // Entity references are not mapped.
        ..Resource::default()
    })
}

fn scope(o: Obj<'_>) -> Result<InstrumentationScope> {
    Ok(InstrumentationScope {
        name: o.string("name", "name")?,
        version: o.string("version", "version")?,
        attributes: attributes(&o)?,
        dropped_attributes_count: o.u32("droppedAttributesCount", "dropped_attributes_count")?,
    })
}

fn log_record(o: Obj<'_>) -> Result<LogRecord> {
    Ok(LogRecord {
        time_unix_nano: o.u64("timeUnixNano", "time_unix_nano")?,
        observed_time_unix_nano: o.u64("observedTimeUnixNano", "observed_time_unix_nano")?,
        severity_number: o.i32("severityNumber", "severity_number")?,
        severity_text: o.string("severityText", "severity_text")?,
        body: o.object("body", "body", any_value)?.flatten(),
        attributes: attributes(&o)?,
        dropped_attributes_count: o.u32("droppedAttributesCount", "dropped_attributes_count")?,
        flags: o.u32("flags", "flags")?,
        trace_id: o.hex("traceId", "trace_id")?,
        span_id: o.hex("spanId", "span_id")?,
        event_name: o.string("eventName", "event_name")?,
    })
}

fn span(o: Obj<'_>) -> Result<Span> {
    Ok(Span {
        trace_id: o.hex("traceId", "trace_id")?,
        span_id: o.hex("spanId", "span_id")?,
        trace_state: o.string("traceState", "trace_state")?,
        parent_span_id: o.hex("parentSpanId", "parent_span_id")?,
        flags: o.u32("flags", "flags")?,
        name: o.string("name", "name")?,
        kind: o.i32("kind", "kind")?,
        start_time_unix_nano: o.u64("startTimeUnixNano", "start_time_unix_nano")?,
        end_time_unix_nano: o.u64("endTimeUnixNano", "end_time_unix_nano")?,
        attributes: attributes(&o)?,
        dropped_attributes_count: o.u32("droppedAttributesCount", "dropped_attributes_count")?,
        status: o.object("status", "status", |o| {
            Ok(Status {
                message: o.string("message", "message")?,
                code: o.i32("code", "code")?,
            })
        })?,
        // A span's events and links are not mapped.
        ..Span::default()
    })
}

fn attributes(o: &Obj<'_>) -> Result<Vec<KeyValue>> {
    o.list("attributes", "attributes", |v, path| {
        key_value(Obj::of(v, path)?)
    })
}

fn key_value(o: Obj<'_>) -> Result<KeyValue> {
    Ok(KeyValue {
        key: o.string("key", "key")?,
        value: o.object("value", "value", any_value)?.flatten(),
        // Profiles only: a receiver of logs and traces ignores it.
        key_strindex: 0,
    })
}

/// An `AnyValue`; an empty one (`{}`) is an absent value, as in protobuf.
fn any_value(o: Obj<'_>) -> Result<Option<AnyValue>> {
    use any_value::Value as V;
    let value = if let Some((v, path)) = o.get("stringValue", "string_value") {
        match v {
            Value::String(s) => V::StringValue(s.clone()),
            _ => return Err(format!("{path}: expected a string")),
        }
    } else if let Some((v, path)) = o.get("boolValue", "bool_value") {
        match v {
            Value::Bool(b) => V::BoolValue(*b),
            _ => return Err(format!("{path}: expected true or false")),
        }
    } else if let Some((v, path)) = o.get("intValue", "int_value") {
        let n = integer(v).and_then(|n| i64::try_from(n).ok());
        V::IntValue(n.ok_or_else(|| format!("{path}: expected a 64-bit integer"))?)
    } else if let Some((v, path)) = o.get("doubleValue", "double_value") {
        let d = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        V::DoubleValue(d.ok_or_else(|| format!("{path}: expected a number"))?)
    } else if let Some((v, path)) = o.get("arrayValue", "array_value") {
        let a = Obj::of(v, path)?;
        let values = a.list("values", "values", |v, path| {
            Ok(any_value(Obj::of(v, path)?)?.unwrap_or(AnyValue { value: None }))
        })?;
        V::ArrayValue(ArrayValue { values })
    } else if let Some((v, path)) = o.get("kvlistValue", "kvlist_value") {
        let kv = Obj::of(v, path)?;
        V::KvlistValue(KeyValueList {
            values: attributes_named(&kv, "values")?,
        })
    } else if let Some((v, path)) = o.get("bytesValue", "bytes_value") {
        match v {
            Value::String(s) => {
                V::BytesValue(base64(s).ok_or_else(|| format!("{path}: expected base64"))?)
            }
            _ => return Err(format!("{path}: expected a base64 string")),
        }
    } else {
        return Ok(None);
    };
    Ok(Some(AnyValue { value: Some(value) }))
}

fn attributes_named(o: &Obj<'_>, name: &str) -> Result<Vec<KeyValue>> {
    o.list(name, name, |v, path| key_value(Obj::of(v, path)?))
}

/// Standard base64, with or without padding.
fn base64(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes().filter(|c| *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_with_or_without_padding() {
        assert_eq!(base64("aGVsbG8=").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64("aGVsbG8").as_deref(), Some(&b"hello"[..]));
        assert_eq!(base64("").as_deref(), Some(&b""[..]));
        assert_eq!(base64("a*b"), None);
    }

    #[test]
    fn an_error_names_the_path_of_the_bad_value() {
        let body = br#"{"resourceLogs":[{"scopeLogs":[{},{"logRecords":[{},{},{"timeUnixNano":true}]}]}]}"#;
        let error = logs(body).expect_err("a bad time");
        assert_eq!(
            error,
            "resourceLogs[0].scopeLogs[1].logRecords[2].timeUnixNano: expected an integer"
        );
        let error = traces(br#"{"resourceSpans":{}}"#).expect_err("not a list");
        assert_eq!(error, "resourceSpans: expected an array");
    }
}
