//! Keeps `schemas/tool-call-event.v1.json` (what gateway authors validate
//! against) in step with the Rust decoder (what tooltrail enforces).

use serde_json::{Value, json};
use tooltrail_schemas::{FIELDS, JSON_SCHEMA_V1, WireType, decode, invalid_field};

fn schema() -> Value {
    serde_json::from_str(JSON_SCHEMA_V1).expect("the shipped JSON Schema is JSON")
}

fn validator() -> jsonschema::Validator {
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema())
        .expect("the shipped JSON Schema compiles")
}

fn base() -> Value {
    json!({
        "schema_version": 1, "event_id": "e1", "time": "2026-11-22T09:30:00Z",
        "tenant_id": "acme", "user_id": "alice", "server": "github",
        "method": "tools/call", "tool": "create_issue", "decision": "allow", "status": 200
    })
}

#[test]
fn schema_lists_exactly_the_contract_fields_with_their_requiredness() {
    let schema = schema();
    let props = schema["properties"].as_object().unwrap();
    let mut in_schema: Vec<&str> = props.keys().map(String::as_str).collect();
    let mut in_rust: Vec<&str> = FIELDS.iter().map(|f| f.name).collect();
    in_schema.sort_unstable();
    in_rust.sort_unstable();
    assert_eq!(in_schema, in_rust);

    let mut required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut rust_required: Vec<&str> = FIELDS
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name)
        .collect();
    required.sort_unstable();
    rust_required.sort_unstable();
    assert_eq!(required, rust_required);
}

/// A value of the right wire type for each field, and one of the wrong type.
fn samples(wire: WireType) -> (Value, Value) {
    match wire {
        WireType::Integer => (json!(200), json!("200")),
        WireType::Number => (json!(1.5), json!("fast")),
        WireType::String => (json!("x"), json!(5)),
        WireType::StringArray => (json!(["a"]), json!([1])),
        WireType::Object => (json!({"a": [1]}), json!([1])),
        WireType::StringMap => (json!({"a": "b"}), json!({"a": 1})),
    }
}

fn cases() -> Vec<(String, Value)> {
    let mut cases = vec![("base".to_owned(), base())];
    for field in FIELDS {
        let (_, wrong) = samples(field.wire);
        let mut v = base();
        v[field.name] = wrong;
        cases.push((format!("{} of the wrong type", field.name), v));
        let mut v = base();
        v.as_object_mut().unwrap().remove(field.name);
        cases.push((format!("{} absent", field.name), v));
        let mut v = base();
        v[field.name] = Value::Null;
        cases.push((format!("{} null", field.name), v));
    }
    let mut push = |name: &str, field: &str, value: Value| {
        let mut v = base();
        v[field] = value;
        cases.push((name.to_owned(), v));
    };
    push("status too high", "status", json!(600));
    push("status too low", "status", json!(99));
    push("status at the top", "status", json!(599));
    push("decision unknown", "decision", json!("maybe"));
    push("version 2", "schema_version", json!(2));
    push("time without offset", "time", json!("2026-11-22T09:30:00"));
    push(
        "time with offset",
        "time",
        json!("2026-11-22T09:30:00.5-07:00"),
    );
    push("time junk", "time", json!("yesterday"));
    push("ipv4", "source_ip", json!("192.0.2.1"));
    push("ipv6", "source_ip", json!("2001:db8::1"));
    push("bad ip", "source_ip", json!("192.0.2.300"));
    push(
        "trace id ok",
        "trace_id",
        json!("4bf92f3577b34da6a3ce929d0e0e4736"),
    );
    push("trace id short", "trace_id", json!("4bf92f35"));
    push("principal agent", "principal_type", json!("agent"));
    push("principal unknown", "principal_type", json!("robot"));
    push("negative latency", "latency_ms", json!(-3));
    push("empty tenant", "tenant_id", json!(""));
    push("long session id", "session_id", json!("s".repeat(257)));
    push(
        "session id at the cap",
        "session_id",
        json!("s".repeat(256)),
    );
    push("long scope", "scopes", json!(["s".repeat(257)]));
    push("empty tool on tools/call", "tool", json!(""));
    push(
        "unknown field kept",
        "vendor_extension",
        json!({"any": "thing"}),
    );
    let mut read = base();
    read["method"] = json!("resources/read");
    read.as_object_mut().unwrap().remove("tool");
    cases.push(("resources/read without tool".into(), read));
    cases
}

#[test]
fn schema_and_decoder_agree_on_every_case() {
    let validator = validator();
    let mut disagreements = Vec::new();
    for (name, value) in cases() {
        let by_schema = validator.is_valid(&value);
        // The decoder keeps an event whose optional field is invalid, with
        // that field set aside: valid by the contract means accepted whole.
        let by_decoder = decode(value.to_string().as_bytes()).map(|event| {
            let set_aside: Vec<&str> = event
                .attributes
                .iter()
                .flat_map(|a| a.keys())
                .filter_map(|k| invalid_field(k))
                .collect();
            set_aside
        });
        let whole = by_decoder.as_ref().is_ok_and(Vec::is_empty);
        if by_schema != whole {
            disagreements.push(format!(
                "{name}: schema says {by_schema}, decoder says {by_decoder:?}"
            ));
        }
    }
    assert!(disagreements.is_empty(), "{disagreements:#?}");
}

#[test]
fn the_right_type_for_each_field_is_accepted_by_both() {
    let validator = validator();
    for field in FIELDS {
        let (right, _) = samples(field.wire);
        let right = match field.name {
            "schema_version" => json!(1),
            "time" => json!("2026-11-22T09:30:00Z"),
            "decision" => json!("deny"),
            "source_ip" => json!("10.0.0.1"),
            "trace_id" => json!("0af7651916cd43dd8448eb211c80319c"),
            "principal_type" => json!("service"),
            _ => right,
        };
        let mut v = base();
        v[field.name] = right;
        assert!(
            validator.is_valid(&v),
            "schema rejects a valid {}",
            field.name
        );
        decode(v.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("decoder rejects a valid {}: {e}", field.name));
    }
}
