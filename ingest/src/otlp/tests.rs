//! The mapping on a request the official OpenTelemetry Python SDK sent
//! (recorded byte for byte: `ingest/tests/fixtures/agentgateway_logs.binpb`,
//! from `agentgateway_logs.json` by `tests/e2e/otlp_emit.py --record`), and
//! on hand-made requests for what that one does not show.

use super::proto::any_value::Value as Any;
use super::proto::{
    AnyValue, ExportTraceServiceRequest, KeyValue, Resource, ResourceSpans, ScopeSpans, Span,
    Status,
};
use serde_json::Value;
use tooltrail_schemas::{Decision, ToolCallEvent, decode};

use super::*;
use crate::config::OtlpMapping;

const RECORDED: &[u8] = include_bytes!("../../tests/fixtures/agentgateway_logs.binpb");
const SENT: &str = include_str!("../../tests/fixtures/agentgateway_logs.json");
/// The same request in OTLP/JSON (from the protobuf by protobuf's json_format,
/// ids as hex, as OTLP/JSON has them).
const RECORDED_JSON: &[u8] = include_bytes!("../../tests/fixtures/agentgateway_logs.otlp.json");

fn mapper() -> Mapper {
    Mapper::new(&OtlpMapping::default())
}

/// What the SDK was asked to send.
fn sent() -> Value {
    serde_json::from_str(SENT).expect("the fixture's spec is JSON")
}

fn events(mapped: &Mapped) -> Vec<Result<ToolCallEvent, DecodeError>> {
    mapped
        .records
        .iter()
        .map(|r| match &r.unmapped {
            Some(problem) => Err(problem.clone()),
            None => decode(&mapped.body[r.range.clone()]),
        })
        .collect()
}

/// Each mapped record's `event_id`.
fn event_ids(mapped: &Mapped) -> Vec<String> {
    mapped
        .records
        .iter()
        .map(|r| {
            let object: Value =
                serde_json::from_slice(&mapped.body[r.range.clone()]).expect("JSON");
            object["event_id"].as_str().expect("an id").to_owned()
        })
        .collect()
}

fn ip_of(address: &str) -> String {
    match address.parse::<std::net::SocketAddr>() {
        Ok(socket) => socket.ip().to_string(),
        Err(_) => address.to_owned(),
    }
}

#[test]
fn the_recorded_sdk_request_maps_every_agentgateway_field() {
    let request = decode_logs(RECORDED, Encoding::Protobuf).expect("the SDK's request decodes");
    let mapped = mapper().logs(&request, None);
    let sent = sent();
    let records = sent["records"].as_array().expect("records");
    assert_eq!(mapped.records.len(), records.len());
    let tenant = sent["resource"]["tenant.id"].as_str().expect("a tenant");
    for (event, record) in events(&mapped).iter().zip(records) {
        let a = &record["attributes"];
        let s = |key: &str| a[key].as_str().map(str::to_owned);
        if a.get("jwt.sub").is_none() {
            // Anonymous: the user cannot be mapped.
            let error = event.as_ref().expect_err("no user to map");
            assert_eq!(error.reason(), "missing_field");
            assert_eq!(error.field_name(), Some("user_id"));
            let message = error.to_string();
            for name in [
                "`jwt.sub`",
                "`user.id`",
                "`enduser.id`",
                "[otlp.mapping] user_id",
            ] {
                assert!(message.contains(name), "{message}");
            }
            continue;
        }
        let event = event.as_ref().expect("mapped and valid");
        assert_eq!(event.tenant_id, tenant);
        assert_eq!(Some(event.user_id.clone()), s("jwt.sub"));
        assert_eq!(Some(event.server.clone()), s("mcp.target"));
        assert_eq!(Some(event.method.clone()), s("mcp.method.name"));
        assert_eq!(event.tool, s("gen_ai.tool.name"));
        assert_eq!(event.resource, s("mcp.resource.uri"));
        assert_eq!(event.session_id, s("mcp.session.id"));
        let status = a["http.status"].as_i64().expect("a status");
        assert_eq!(i64::from(event.status), status);
        let denied = status == 401 || status == 403;
        assert_eq!(event.decision == Decision::Deny, denied, "{status}");
        assert_eq!(
            event.source_ip.map(|ip| ip.to_string()),
            s("src.addr").map(|a| ip_of(&a))
        );
        assert_eq!(event.trace_id, s("trace.id"));
        assert_eq!(
            event.jsonrpc_error_code,
            a.get("mcp.error.code").and_then(Value::as_i64)
        );
        assert_eq!(event.reason, s("mcp.error.message"));
        let duration = s("duration").expect("a duration");
        let ms: f64 = duration.trim_end_matches("ms").parse().expect("ms");
        assert_eq!(event.latency_ms, Some(ms));
        let nanos = record["time_ns"].as_i64().expect("a time");
        assert_eq!(event.time.timestamp_micros(), nanos / 1000);
        assert!(event.gateway_id.is_some(), "the SDK's service.instance.id");
        // The rest of the record's attributes, as strings; mapped ones are not copied.
        let kept = event.attributes.clone().unwrap_or_default();
        for (key, value) in a.as_object().expect("attributes") {
            let mapped_from = [
                "jwt.sub",
                "mcp.target",
                "mcp.method.name",
                "gen_ai.tool.name",
                "mcp.resource.uri",
                "mcp.session.id",
                "http.status",
                "src.addr",
                "trace.id",
                "mcp.error.code",
                "mcp.error.message",
                "duration",
            ];
            if mapped_from.contains(&key.as_str()) {
                assert!(!kept.contains_key(key), "{key} copied");
            } else {
                let text = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned);
                assert_eq!(kept.get(key), Some(&text), "{key}");
            }
        }
    }
    assert_eq!(mapped.unmapped(), 1);
}

#[test]
fn the_same_record_gets_the_same_event_id_in_protobuf_and_json_and_per_tenant() {
    let request = decode_logs(RECORDED, Encoding::Protobuf).expect("decodes");
    let again = decode_logs(RECORDED_JSON, Encoding::Json).expect("OTLP/JSON decodes");
    let ids = event_ids;
    let first = ids(&mapper().logs(&request, None));
    assert_eq!(first, ids(&mapper().logs(&again, None)));
    assert_eq!(
        first,
        ids(&mapper().logs(&request, Some("other"))),
        "the record names its tenant"
    );
    let unique: std::collections::HashSet<_> = first.iter().collect();
    assert_eq!(unique.len(), first.len());
    assert!(
        first
            .iter()
            .all(|id| id.starts_with("otlp-") && id.len() == 37)
    );

    // Without a tenant attribute, the tenant is the token's, and part of the id.
    let mut anonymous = request.clone();
    for r in &mut anonymous.resource_logs {
        if let Some(resource) = &mut r.resource {
            resource.attributes.retain(|kv| kv.key != "tenant.id");
        }
    }
    let acme = mapper().logs(&anonymous, Some("acme"));
    let globex = mapper().logs(&anonymous, Some("globex"));
    assert_ne!(ids(&acme), ids(&globex));
    let event = events(&globex).remove(0).expect("valid");
    assert_eq!(event.tenant_id, "globex");
    let nobody = events(&mapper().logs(&anonymous, None)).remove(0);
    let error = nobody.expect_err("no tenant");
    assert_eq!(error.field_name(), Some("tenant_id"));
    assert!(error.to_string().contains("`tenant.id`"), "{error}");
}

#[test]
fn otlp_json_takes_integers_as_numbers_or_strings_and_hex_ids() {
    let body = br#"{"resourceLogs":[{"resource":{"attributes":[{"key":"tenant.id","value":{"stringValue":"acme"}}]},
        "scopeLogs":[{"scope":{},"logRecords":[
          {"timeUnixNano":1795000000000000000,"observedTimeUnixNano":"1795000000000000000","severityNumber":9,
           "traceId":"4BF92F3577B34DA6A3CE929D0E0E4736","spanId":"00f067aa0ba902b7","body":{},
           "attributes":[{"key":"jwt.sub","value":{"stringValue":"alice"}},
                         {"key":"mcp.method.name","value":{"stringValue":"tools/list"}},
                         {"key":"server.address","value":{"stringValue":"github"}},
                         {"key":"http.response.status_code","value":{"intValue":"403"}},
                         {"key":"empty","value":{}},
                         {"key":"unknown.field.is.ignored","value":{"stringValue":"x"},"extra":1}]}]}]}],
        "somethingNew":true}"#;
    let request = decode_logs(body, Encoding::Json).expect("decodes");
    let event = events(&mapper().logs(&request, None))
        .remove(0)
        .expect("valid");
    assert_eq!(event.status, 403);
    assert_eq!(event.decision, Decision::Deny);
    assert_eq!(event.server, "github");
    assert_eq!(
        event.trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(event.time.timestamp(), 1_795_000_000);
    for bad in [
        &b"not json"[..],
        b"[]",
        br#"{"resourceLogs":[{"scopeLogs":7}]}"#,
    ] {
        assert!(decode_logs(bad, Encoding::Json).is_err());
    }
    assert!(
        decode_logs(b"{}", Encoding::Json)
            .expect("empty")
            .resource_logs
            .is_empty()
    );
}

fn kv(key: &str, value: Any) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..KeyValue::default()
    }
}

fn text(value: &str) -> Any {
    Any::StringValue(value.into())
}

/// `spans` in one scope of one resource, of tenant `acme`.
fn acme_spans(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("tenant.id", text("acme"))],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..ScopeSpans::default()
            }],
            ..ResourceSpans::default()
        }],
    }
}

#[test]
fn spans_of_mcp_calls_map_with_their_duration_and_status_and_the_rest_are_skipped() {
    let span = |name: &str, attributes: Vec<KeyValue>, error: bool| Span {
        trace_id: vec![0xab; 16],
        span_id: vec![1; 8],
        name: name.into(),
        start_time_unix_nano: 1_795_000_000_000_000_000,
        end_time_unix_nano: 1_795_000_000_250_000_000,
        attributes,
        status: error.then(|| Status {
            message: "boom".into(),
            code: 2,
        }),
        ..Span::default()
    };
    let mcp = |error| {
        vec![
            kv("mcp.method.name", text("tools/call")),
            kv("gen_ai.tool.name", text("search")),
            kv("enduser.id", text("alice")),
            kv("server.address", text("github")),
            kv(
                "rpc.response.status_code",
                text(if error { "-32602" } else { "0" }),
            ),
            kv("gen_ai.tool.call.arguments", text(r#"{"q":"x"}"#)),
        ]
    };
    let request = acme_spans(vec![
        span("tools/call search", mcp(false), false),
        span(
            "GET /healthz",
            vec![kv("http.route", text("/healthz"))],
            false,
        ),
        span("tools/call search", mcp(true), true),
    ]);
    let mapped = mapper().traces(&request, None);
    assert_eq!(mapped.skipped, 1);
    let events: Vec<ToolCallEvent> = events(&mapped)
        .into_iter()
        .map(|e| e.expect("valid"))
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].status, 200, "no HTTP status; the span is OK");
    assert_eq!(events[1].status, 500, "no HTTP status; the span failed");
    assert_eq!(events[1].jsonrpc_error_code, Some(-32602));
    assert_eq!(events[0].latency_ms, Some(250.0));
    assert_eq!(events[0].trace_id.as_deref(), Some(&"ab".repeat(16)[..]));
    let arguments = events[0].arguments.as_ref().expect("arguments");
    assert_eq!(arguments.get(), r#"{"q":"x"}"#);
}

#[test]
fn a_kafka_record_that_is_not_otlp_is_refused_as_such() {
    let error = mapper()
        .kafka_record(br#"{"schema_version":1}"#, None)
        .expect_err("JSON is not protobuf");
    assert_eq!(error.reason(), "not_otlp");
    let mapped = mapper()
        .kafka_record(RECORDED, None)
        .expect("the SDK's request");
    assert_eq!(
        mapped.records.len(),
        sent()["records"].as_array().map_or(0, Vec::len)
    );
}

#[test]
fn a_profile_string_table_reference_counts_as_absent_outside_profiles() {
    // OTLP 1.9 lets profiles name strings by index; in logs and traces the
    // spec says to treat such a value or key as absent, not to fail.
    let by_index = |key: &str| KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(Any::StringValueStrindex(3)),
        }),
        ..KeyValue::default()
    };
    let keyless = KeyValue {
        value: Some(AnyValue {
            value: Some(text("t")),
        }),
        key_strindex: 4,
        ..KeyValue::default()
    };
    let request = acme_spans(vec![Span {
        start_time_unix_nano: 1_795_000_000_000_000_000,
        attributes: vec![
            kv("mcp.method.name", text("tools/list")),
            by_index("jwt.sub"),
            kv("user.id", text("alice")),
            kv("server.address", text("github")),
            by_index("mcp.session.id"),
            keyless,
        ],
        ..Span::default()
    }]);
    let event = events(&mapper().traces(&request, None))
        .remove(0)
        .expect("valid");
    assert_eq!(event.user_id, "alice", "the indexed `jwt.sub` is skipped");
    assert_eq!(event.session_id, None);
    let kept = event.attributes.unwrap_or_default();
    assert!(
        kept.keys().all(|k| !k.is_empty()),
        "a key given by index is not copied: {kept:?}"
    );
}

/// A retried export is deduplicated by its records' ids, also across an
/// upgrade: the ids of the recorded request never change.
#[test]
fn the_recorded_requests_event_ids_are_the_ones_earlier_versions_gave() {
    let request = decode_logs(RECORDED, Encoding::Protobuf).expect("decodes");
    let ids = event_ids(&mapper().logs(&request, None));
    assert_eq!(
        ids,
        [
            "otlp-3c4a7188965cc874c79c77837f93eea3",
            "otlp-102cfb79438857b4a10db6b02e3223b0",
            "otlp-093e2a01369dee8d4e8fe12b45e294b6",
            "otlp-b14ffbeafdb4318aeaa8abdad38764a8",
        ]
    );
}

/// A key sent twice counts once, with its first value: in a field, or under
/// `attributes` if it filled none.
#[test]
fn a_repeated_attribute_key_keeps_its_first_value() {
    let mut request = decode_logs(RECORDED, Encoding::Protobuf).expect("decodes");
    let record = &mut request.resource_logs[0].scope_logs[0].log_records[0];
    let user = record
        .attributes
        .iter()
        .find(|kv| kv.key == "jwt.sub")
        .cloned()
        .expect("the fixture names the user");
    record.attributes.extend([
        kv("x.note", text("first")),
        kv("x.note", text("second")),
        kv("jwt.sub", text("mallory")),
        kv("user.id", text("u-1")),
        kv("user.id", text("u-2")),
    ]);
    let event = events(&mapper().logs(&request, None))
        .remove(0)
        .expect("maps");
    let Some(Any::StringValue(user)) = user.value.and_then(|v| v.value) else {
        panic!("jwt.sub is a string");
    };
    assert_eq!(event.user_id, user);
    let attributes = event.attributes.expect("attributes");
    assert_eq!(attributes.get("x.note").map(String::as_str), Some("first"));
    assert_eq!(attributes.get("user.id").map(String::as_str), Some("u-1"));
    assert!(!attributes.contains_key("jwt.sub"), "{attributes:?}");
}

/// `Field`'s variants stand for the fields of `[otlp.mapping]` by place: a
/// variant out of order would fill one field from another's attributes.
#[test]
fn each_mapping_field_is_looked_up_under_its_own_name() {
    let mapping = OtlpMapping::default();
    let names: Vec<&str> = mapping.fields().iter().map(|(name, _)| *name).collect();
    let variants: Vec<String> = super::map::Field::ALL
        .iter()
        .map(|field| {
            let mut snake = String::new();
            for (i, c) in format!("{field:?}").chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    snake.push('_');
                }
                snake.push(c.to_ascii_lowercase());
            }
            snake
        })
        .collect();
    assert_eq!(variants, names);
}
