use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::event::{FIELDS, format_time};

fn valid() -> Value {
    json!({
        "schema_version": 1,
        "event_id": "evt-1",
        "time": "2026-11-22T09:30:00.123456789+01:00",
        "tenant_id": "acme",
        "user_id": "alice@acme.com",
        "server": "github",
        "method": "tools/call",
        "tool": "create_issue",
        "decision": "allow",
        "status": 200,
    })
}

fn decode_value(v: &Value) -> Result<ToolCallEvent, DecodeError> {
    decode(serde_json::to_string(v).unwrap().as_bytes())
}

fn with(field: &str, value: Value) -> Value {
    let mut v = valid();
    v[field] = value;
    v
}

fn without(field: &str) -> Value {
    let mut v = valid();
    v.as_object_mut().unwrap().remove(field);
    v
}

#[track_caller]
fn assert_field_error(v: &Value, field: &str, reason: &str) {
    let err = decode_value(v).unwrap_err();
    assert_eq!(err.field_name(), Some(field), "{err}");
    assert_eq!(err.reason(), reason, "{err}");
    assert!(
        err.to_string().contains(field),
        "message should name the field: {err}"
    );
}

#[test]
fn decodes_a_full_event_and_normalizes_time_to_utc_micros() {
    let mut v = valid();
    let o = v.as_object_mut().unwrap();
    o.insert("resource".into(), json!("repo://acme/api"));
    o.insert("arguments".into(), json!({"title": "x", "labels": ["a"]}));
    o.insert("scopes".into(), json!(["repo:read", "repo:write"]));
    o.insert("latency_ms".into(), json!(12));
    o.insert("source_ip".into(), json!("2001:db8::1"));
    o.insert("trace_id".into(), json!("4BF92F3577B34DA6A3CE929D0E0E4736"));
    o.insert("principal_type".into(), json!("agent"));
    o.insert("attributes".into(), json!({"env": "prod"}));
    o.insert("jsonrpc_error_code".into(), Value::Null);
    let e = decode_value(&v).unwrap();
    assert_eq!(format_time(&e.time), "2026-11-22T08:30:00.123456Z");
    assert_eq!(e.decision, Decision::Allow);
    assert_eq!(e.latency_ms, Some(12.0));
    assert_eq!(
        e.trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    assert_eq!(e.jsonrpc_error_code, None, "null means absent");
    assert_eq!(
        e.arguments.as_ref().unwrap().get(),
        r#"{"labels":["a"],"title":"x"}"#
    );
    assert_eq!(e.kafka_key(), "acme/alice@acme.com");
}

#[test]
fn keeps_unknown_fields_verbatim_and_round_trips() {
    let v = with("vendor", json!({"region": "eu", "n": 3}));
    let e = decode_value(&v).unwrap();
    assert_eq!(e.extra["vendor"].get(), r#"{"n":3,"region":"eu"}"#);
    let again = decode(e.to_json().as_bytes()).unwrap();
    assert_eq!(again, e);
}

#[test]
fn rejects_bytes_that_are_not_an_object() {
    assert_eq!(decode(b"\xff\xfe{}").unwrap_err().reason(), "not_utf8");
    assert_eq!(decode(b"").unwrap_err().reason(), "not_json");
    assert_eq!(
        decode(b"{\"schema_version\": 1,").unwrap_err().reason(),
        "not_json"
    );
    assert_eq!(decode(b"{} trailing").unwrap_err().reason(), "not_json");
    assert_eq!(
        decode(b"[1,2]").unwrap_err(),
        DecodeError::NotObject { found: "an array" }
    );
    assert_eq!(
        decode(b"  42").unwrap_err(),
        DecodeError::NotObject { found: "a number" }
    );
    assert_eq!(
        decode(b"null").unwrap_err(),
        DecodeError::NotObject { found: "null" }
    );
    assert_eq!(decode(b"not json").unwrap_err().reason(), "not_json");
}

#[test]
fn a_syntax_error_inside_a_value_is_reported_as_not_json() {
    let err = decode(br#"{"schema_version":1,"status":2x}"#).unwrap_err();
    assert_eq!(err.reason(), "not_json", "{err}");
}

#[test]
fn names_each_missing_or_null_required_field() {
    for spec in FIELDS.iter().filter(|f| f.required) {
        assert_field_error(&without(spec.name), spec.name, "missing_field");
        assert_field_error(&with(spec.name, Value::Null), spec.name, "missing_field");
    }
}

#[test]
fn names_the_field_of_a_wrong_type() {
    assert_field_error(&with("status", json!("200")), "status", "wrong_type");
    assert_field_error(&with("status", json!(200.5)), "status", "wrong_type");
    assert_field_error(&with("event_id", json!(7)), "event_id", "wrong_type");
    assert_field_error(&with("user_id", json!(["alice"])), "user_id", "wrong_type");
}

/// The event decoded from `v`, which must be accepted with `field` empty and
/// its raw value and reason kept under `tooltrail.invalid.<field>`.
#[track_caller]
fn assert_set_aside(v: &Value, field: &str, reason: &str) -> ToolCallEvent {
    let event = decode_value(v).unwrap_or_else(|e| panic!("{field}: rejected: {e}"));
    let as_json: Value = serde_json::from_str(&event.to_json()).unwrap();
    assert!(
        as_json.get(field).is_none_or(Value::is_null) || field == "attributes",
        "{field} should be empty: {as_json}"
    );
    let key = format!("{INVALID_PREFIX}{field}");
    let attributes = event
        .attributes
        .as_ref()
        .expect("attributes hold the invalid value");
    let record: Value = serde_json::from_str(&attributes[&key]).unwrap();
    let text = record["reason"].as_str().unwrap();
    assert!(
        text.contains(reason),
        "{field}: reason {text:?} should say {reason:?}"
    );
    assert_eq!(invalid_field(&key), Some(field));
    event
}

#[test]
fn an_optional_field_of_the_wrong_type_is_set_aside_with_its_raw_value() {
    for (field, value) in [
        ("scopes", json!(["a", 1])),
        ("arguments", json!([1])),
        ("arguments", json!("q=1")),
        ("latency_ms", json!("fast")),
        ("jsonrpc_error_code", json!(1.5)),
        ("source_ip", json!(167772161)),
        ("session_id", json!({"id": "s"})),
        ("resource", json!(true)),
    ] {
        let event = assert_set_aside(&with(field, value.clone()), field, "");
        let record: Value = serde_json::from_str(
            &event.attributes.as_ref().unwrap()[&format!("{INVALID_PREFIX}{field}")],
        )
        .unwrap();
        assert_eq!(
            record["value"], value,
            "{field}: the raw value is kept as JSON"
        );
    }
    // The event's own attributes stay beside the record.
    let mut v = with("latency_ms", json!("fast"));
    v["attributes"] = json!({"team": "red"});
    let event = assert_set_aside(&v, "latency_ms", "wrong type");
    assert_eq!(event.attributes.as_ref().unwrap()["team"], "red");
    // Attributes that are not an object of strings are themselves set aside.
    let event = assert_set_aside(
        &with("attributes", json!({"a": 1})),
        "attributes",
        "wrong type",
    );
    assert_eq!(event.attributes.as_ref().unwrap().len(), 1);
}

#[test]
fn an_address_that_is_a_service_name_keeps_the_event() {
    // 12% of a real cloud audit log had `source_ip: "AWS Internal"`.
    let event = assert_set_aside(
        &with("source_ip", json!("AWS Internal")),
        "source_ip",
        "not an IPv4 or IPv6 address",
    );
    assert_eq!(event.source_ip, None);
    assert_eq!(event.event_id, "evt-1");
    let record = &event.attributes.as_ref().unwrap()["tooltrail.invalid.source_ip"];
    assert_eq!(
        record,
        r#"{"reason":"not an IPv4 or IPv6 address","value":"AWS Internal"}"#
    );
}

#[test]
fn several_invalid_optional_fields_are_each_kept() {
    let mut v = with("source_ip", json!("10.0.0.300"));
    v["trace_id"] = json!("abc");
    v["principal_type"] = json!("robot");
    v["client_id"] = json!("c".repeat(MAX_ID_BYTES + 1));
    let event = decode_value(&v).unwrap();
    let keys: Vec<&str> = event
        .attributes
        .as_ref()
        .unwrap()
        .keys()
        .filter_map(|k| invalid_field(k))
        .collect();
    assert_eq!(
        keys,
        ["client_id", "principal_type", "source_ip", "trace_id"]
    );
    assert!(event.client_id.is_none() && event.trace_id.is_none());
}

#[test]
fn a_key_outside_the_optional_fields_is_not_an_invalid_marker() {
    assert_eq!(invalid_field("tooltrail.invalid.tenant_id"), None);
    assert_eq!(invalid_field("tooltrail.invalid.nonsense"), None);
    assert_eq!(invalid_field("source_ip"), None);
    assert_eq!(
        invalid_field("tooltrail.invalid.source_ip"),
        Some("source_ip")
    );
}

#[test]
fn checks_values_against_the_contract() {
    assert_field_error(&with("time", json!("yesterday")), "time", "bad_time");
    assert_field_error(
        &with("time", json!("2026-11-22T09:30:00")),
        "time",
        "bad_time",
    );
    assert_field_error(&with("status", json!(600)), "status", "out_of_range");
    assert_field_error(&with("status", json!(99)), "status", "out_of_range");
    assert_field_error(&with("decision", json!("maybe")), "decision", "bad_value");
    assert_field_error(
        &with("schema_version", json!(2)),
        "schema_version",
        "unsupported_version",
    );
    assert_field_error(&with("tenant_id", json!("")), "tenant_id", "empty_field");
    // Optional fields: the event stays, the value is set aside.
    assert_set_aside(&with("latency_ms", json!(-1)), "latency_ms", "0 or more");
    assert_set_aside(
        &with("source_ip", json!("10.0.0.300")),
        "source_ip",
        "address",
    );
    assert_set_aside(
        &with("trace_id", json!("abc")),
        "trace_id",
        "32 hexadecimal",
    );
    assert_set_aside(
        &with("principal_type", json!("robot")),
        "principal_type",
        "agent",
    );
}

#[test]
fn tools_call_needs_a_tool_but_other_methods_do_not() {
    assert_field_error(&without("tool"), "tool", "missing_field");
    assert_field_error(&with("tool", json!("")), "tool", "missing_field");
    let mut read = without("tool");
    read["method"] = json!("resources/read");
    assert!(decode_value(&read).is_ok());
    // A tool that breaks the contract is fatal only where it is required.
    let long = json!("t".repeat(MAX_ID_BYTES + 1));
    assert_field_error(&with("tool", long.clone()), "tool", "too_long");
    assert_field_error(&with("tool", json!(7)), "tool", "wrong_type");
    read["tool"] = long;
    assert_set_aside(&read, "tool", "over the 256-byte limit");
}

#[test]
fn enforces_length_caps() {
    let long_id = "x".repeat(MAX_ID_BYTES + 1);
    assert_set_aside(
        &with("session_id", json!(long_id)),
        "session_id",
        "256-byte limit",
    );
    let at_cap = decode_value(&with("session_id", json!("x".repeat(MAX_ID_BYTES)))).unwrap();
    assert!(at_cap.attributes.is_none());
    let big_args = json!({"blob": "a".repeat(MAX_ARGUMENTS_BYTES)});
    let event = assert_set_aside(&with("arguments", big_args), "arguments", "byte limit");
    // Only the value's first KiB is kept.
    let record: Value =
        serde_json::from_str(&event.attributes.unwrap()["tooltrail.invalid.arguments"]).unwrap();
    assert_eq!(record["value_prefix"].as_str().unwrap().len(), 1024);
    assert!(record["value_bytes"].as_u64().unwrap() > MAX_ARGUMENTS_BYTES as u64);
    let huge = with("reason", json!("r".repeat(MAX_EVENT_BYTES)));
    assert_eq!(decode_value(&huge).unwrap_err().reason(), "too_large");
}

#[test]
fn rejects_duplicate_fields() {
    let err = decode(
        br#"{"schema_version":1,"event_id":"a","event_id":"b","time":"2026-11-22T09:30:00Z"}"#,
    )
    .unwrap_err();
    assert_eq!(err.field_name(), Some("event_id"));
    assert_eq!(err.reason(), "duplicate_field");
    // An optional field twice is ambiguous too, valid or not.
    for text in [
        r#"{"schema_version":1,"source_ip":"10.0.0.1","source_ip":"10.0.0.2"}"#,
        r#"{"schema_version":1,"source_ip":7,"source_ip":"10.0.0.2"}"#,
        r#"{"schema_version":1,"arguments":[],"arguments":{}}"#,
    ] {
        let err = decode(text.as_bytes()).unwrap_err();
        assert_eq!(err.reason(), "duplicate_field", "{text}: {err}");
    }
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[ -~]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Events with each contract field either valid, absent, or replaced by junk.
fn arb_event_like() -> impl Strategy<Value = Value> {
    let fields: Vec<&'static str> = FIELDS.iter().map(|f| f.name).collect();
    prop::collection::vec((0..3u8, arb_json()), fields.len()).prop_map(move |choices| {
        let base = valid();
        let mut out = serde_json::Map::new();
        for (name, (choice, junk)) in fields.iter().zip(choices) {
            match choice {
                0 => {
                    if let Some(v) = base.get(*name) {
                        out.insert((*name).into(), v.clone());
                    }
                }
                1 => {}
                _ => {
                    out.insert((*name).into(), junk);
                }
            }
        }
        Value::Object(out)
    })
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_and_every_rejection_explains_itself(
        bytes in prop::collection::vec(any::<u8>(), 0..512)
    ) {
        if let Err(e) = decode(&bytes) {
            prop_assert!(!e.to_string().is_empty());
            prop_assert!(!e.reason().is_empty());
        }
    }

    #[test]
    fn mangled_events_are_rejected_with_a_named_field_or_accepted_and_round_trip(
        v in arb_event_like()
    ) {
        let text = serde_json::to_string(&v).unwrap();
        match decode(text.as_bytes()) {
            Ok(event) => {
                let again = decode(event.to_json().as_bytes()).unwrap();
                prop_assert_eq!(again, event);
            }
            Err(e) => {
                prop_assert!(e.field_name().is_some(), "object input must fail on a field: {}", e);
            }
        }
    }
}

/// What the serde walk alone makes of `text`, for comparing with the fast path.
/// Debug output tells `-0.0` from `0.0`, which `PartialEq` does not.
fn both_paths(text: &str) -> (String, String) {
    let full = format!("{:?}", decode(text.as_bytes()));
    let serde = format!(
        "{:?}",
        object_text(text.as_bytes())
            .and_then(decode_serde)
            .map(EventView::into_event)
    );
    (full, serde)
}

/// A realistic event as gateways send it, with every kind of field.
const FULL: &str = r#"{"schema_version":1,"event_id":"01a1095c-3eeb-786f-a70c-eed3ce346d08","time":"2026-10-05T00:00:02.795546Z","tenant_id":"hooli","user_id":"quinn.kim","server":"gdrive","method":"tools/call","decision":"allow","status":200,"tool":"read_sheet","resource":"gdrive://hooli/sheets/legal/policy-guide-2","arguments":{"id":"policy-guide-2","n":[1,2.5,{"x":null}]},"scopes":["drive:read","drive:write"],"required_scope":"drive:read","latency_ms":199.445,"client_id":"claude-desktop","session_id":"mcp-0fc3bbc821a92fcf","gateway_id":"gw-hooli-apne1-a","source_ip":"81.114.106.82","user_agent":"Claude/0.14.3 (Windows NT 10.0; Win64; x64)","trace_id":"acf90d8a4bf45de8ea6c8819c60bef2a","principal_type":"user","jsonrpc_error_code":-32601,"attributes":{"a":"1","b":"2"},"vendor":{"k":[true,false]}}"#;

#[test]
fn the_fast_path_takes_well_formed_events_and_agrees_with_serde() {
    assert!(
        fast::scan(FULL).is_some(),
        "a plain event takes the fast path"
    );
    let (full, serde) = both_paths(FULL);
    assert_eq!(full, serde);
    assert!(full.starts_with("Ok("), "{full}");
    // Whitespace everywhere JSON allows it.
    let v: Value = serde_json::from_str(FULL).unwrap();
    let spaced = serde_json::to_string_pretty(&v)
        .unwrap()
        .replace('\n', "\r\n\t");
    assert!(fast::scan(&spaced).is_some());
    let (full, serde) = both_paths(&spaced);
    assert_eq!(full, serde);
    assert!(full.starts_with("Ok("), "{full}");
}

#[test]
fn the_fast_path_leaves_odd_input_to_serde() {
    let odd = [
        // An escape in a string value or a key.
        FULL.replace("quinn.kim", r#"quinn\u002ekim"#),
        FULL.replace("\"tool\"", r#""to\u006fl""#),
        // A duplicate key, even after a null.
        FULL.replace("\"tool\":\"read_sheet\"", r#""tool":null,"tool":"x""#),
        // Numbers outside the simple forms.
        FULL.replace("199.445", "1.99445e2"),
        FULL.replace("199.445", "-0.0"),
        FULL.replace("199.445", "0.1234567890123456"),
        FULL.replace("\"status\":200", "\"status\":200.0"),
        // Trailing bytes after the object.
        format!("{FULL} x"),
    ];
    for text in &odd {
        assert!(fast::scan(text).is_none(), "{text}");
        let (full, serde) = both_paths(text);
        assert_eq!(full, serde, "{text}");
    }
}

/// Mutates a valid event's text: the fast path must still never disagree.
fn arb_mutated() -> impl Strategy<Value = String> {
    let edits = prop::collection::vec(
        (
            0..FULL.len(),
            prop_oneof![
                Just(None),
                prop::sample::select(
                    &[
                        '"', '\\', '{', '}', '[', ']', ',', ':', ' ', '0', '9', '-', '.', 'e', 'n',
                        'u', 'l', 'x', '\n', '\u{1}', 'é',
                    ][..]
                )
                .prop_map(Some),
            ],
        ),
        1..4,
    );
    edits.prop_map(|edits| {
        let mut text: Vec<char> = FULL.chars().collect();
        for (at, edit) in edits {
            let at = at % text.len();
            match edit {
                None => {
                    text.remove(at);
                }
                Some(c) => text.insert(at, c),
            }
        }
        text.into_iter().collect()
    })
}

/// Numbers as they may appear in the numeric fields.
fn arb_number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<f64>().prop_map(|f| f.to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        (0u64..1_000_000_000, 0u32..16).prop_map(|(n, k)| {
            let s = format!("{n:0>width$}", width = k as usize + 1);
            let (a, b) = s.split_at(s.len() - k as usize);
            if k == 0 {
                a.to_owned()
            } else {
                format!("{a}.{b}")
            }
        }),
        "-?[0-9]{1,20}(\\.[0-9]{0,20})?([eE][-+]?[0-9]{1,3})?",
    ]
}

proptest! {
    #[test]
    fn the_fast_path_agrees_with_serde_on_mangled_events(v in arb_event_like()) {
        let text = serde_json::to_string(&v).unwrap();
        let (full, serde) = both_paths(&text);
        prop_assert_eq!(full, serde);
    }

    #[test]
    fn the_fast_path_agrees_with_serde_on_mutated_text(text in arb_mutated()) {
        let (full, serde) = both_paths(&text);
        prop_assert_eq!(full, serde);
    }

    #[test]
    fn the_fast_path_reads_numbers_exactly_as_serde_does(n in arb_number_text()) {
        for field in ["latency_ms", "status", "jsonrpc_error_code"] {
            let text = FULL.replacen(&format!("\"{field}\":"), &format!("\"{field}\":{n},\"_{field}\":"), 1);
            let (full, serde) = both_paths(&text);
            prop_assert_eq!(full, serde);
        }
    }
}

#[test]
fn hex_case_agrees_with_the_byte_by_byte_definition_for_every_byte() {
    for b in 0..=255u8 {
        let text = format!("0a{}F", char::from(b));
        // The `F` at the end makes every all-hex text mixed.
        let expected = b.is_ascii_hexdigit().then_some(HexCase::Mixed);
        // Only ASCII bytes make a one-byte char; the others are not hex either.
        if b.is_ascii() {
            assert_eq!(hex_case(&text), expected, "byte {b:#04x}");
            let lower = format!("0a{}f", char::from(b));
            let expected_lower = match b {
                b'0'..=b'9' | b'a'..=b'f' => Some(HexCase::Lower),
                b'A'..=b'F' => Some(HexCase::Mixed),
                _ => None,
            };
            assert_eq!(hex_case(&lower), expected_lower, "byte {b:#04x}");
        }
    }
    assert_eq!(hex_case("é"), None);
    assert_eq!(hex_case(""), Some(HexCase::Lower));
}

#[test]
fn an_upper_case_trace_id_is_stored_in_lower_case_and_a_short_one_is_set_aside() {
    let e = decode_value(&with("trace_id", json!("4BF92F3577B34DA6A3CE929D0E0E4736"))).unwrap();
    assert_eq!(
        e.trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    let e = decode_value(&with("trace_id", json!("4bf92f3577b34da6a3ce929d0e0e4736"))).unwrap();
    assert_eq!(
        e.trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    for bad in [
        "4bf92f3577b34da6a3ce929d0e0e473",
        "4bf92f3577b34da6a3ce929d0e0e473g",
        "4bf92f3577b34da6a3ce929d0e0e4736a",
    ] {
        assert_set_aside(&with("trace_id", json!(bad)), "trace_id", "32 hexadecimal");
    }
}

/// `parse_time` through chrono alone, as it was before the fast path.
fn chrono_time(text: &str) -> Option<DateTime<chrono::Utc>> {
    let parsed = DateTime::parse_from_rfc3339(text).ok()?;
    DateTime::from_timestamp_micros(parsed.timestamp_micros())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// The fast path for `...Z` times gives chrono's answer whenever it
    /// answers, and leaves everything chrono refuses to chrono.
    #[test]
    fn the_utc_fast_path_agrees_with_chrono(
        year in 0u32..=10_000,
        month in 0u32..=13,
        day in 0u32..=32,
        hour in 0u32..=25,
        minute in 0u32..=61,
        second in 0u32..=61,
        fraction in proptest::option::of("[0-9]{0,11}"),
        end in prop_oneof![Just("Z"), Just("z"), Just("+00:00"), Just("")],
    ) {
        let fraction = fraction.map(|f| format!(".{f}")).unwrap_or_default();
        let text = format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}{end}");
        if let Some(fast) = utc_time(text.as_bytes()) {
            prop_assert_eq!(Some(fast), chrono_time(&text), "{}", text);
        }
        prop_assert_eq!(parse_time(&text).ok(), chrono_time(&text), "{}", text);
    }
}

#[test]
fn the_utc_fast_path_takes_the_usual_forms_and_leaves_the_rest() {
    for text in [
        "2026-10-05T00:00:02.514282Z",
        "2026-10-05T00:00:02Z",
        "2024-02-29T23:59:59.999999999Z",
        "0001-01-01T00:00:00.1Z",
    ] {
        assert_eq!(utc_time(text.as_bytes()), chrono_time(text), "{text}");
        assert!(utc_time(text.as_bytes()).is_some(), "{text}");
    }
    for text in [
        "2026-10-05T00:00:02.514282+01:00",
        "2026-12-31T23:59:60Z",
        "2025-02-29T00:00:00Z",
        "2026-10-05 00:00:02Z",
        "2026-10-05T00:00:02.Z",
        "2026-10-05T00:00:02.1234567890Z",
        "+2026-10-05T00:00:02Z",
    ] {
        assert_eq!(utc_time(text.as_bytes()), None, "{text}");
    }
    // Edges the random years rarely reach: the fast path may take them, but
    // only with chrono's answer.
    for text in ["0000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"] {
        if let Some(fast) = utc_time(text.as_bytes()) {
            assert_eq!(Some(fast), chrono_time(text), "{text}");
        }
        assert_eq!(parse_time(text).ok(), chrono_time(text), "{text}");
    }
}
