//! OTLP's JSON encoding (OTLP/HTTP `application/json`) into the protobuf
//! messages, through `opentelemetry-proto`'s serde support.
//!
//! The specification lets 64-bit integers come as strings or as numbers;
//! the generated types take timestamps (`*UnixNano`) as strings only, so
//! numbers are turned into strings first. Ids are hex, enums integers, and
//! unknown fields are ignored, as the specification asks.

use serde::de::DeserializeOwned;
use serde_json::Value;

/// Decodes an OTLP/JSON export request whose list of resources is `list`
/// (`resourceLogs`, `resourceSpans`).
pub fn decode<T: DeserializeOwned>(body: &[u8], list: &str) -> Result<T, String> {
    let mut value: Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let Value::Object(top) = &mut value else {
        return Err("not a JSON object".into());
    };
    // An empty request is `{}`: the list is required by the generated type.
    if !top.contains_key(list) {
        top.insert(list.to_owned(), Value::Array(Vec::new()));
    }
    normalize(&mut value);
    serde_json::from_value(value).map_err(|e| e.to_string())
}

/// Turns integer timestamps into the strings the generated types take, and
/// drops empty `AnyValue`s (`"body": {}`, an attribute's `"value": {}`),
/// which the protobuf encoding sends as an absent value.
fn normalize(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|key, v| {
                !(matches!(key.as_str(), "body" | "value")
                    && v.as_object().is_some_and(|o| o.is_empty()))
            });
            for (key, v) in map.iter_mut() {
                if key.ends_with("UnixNano")
                    && let Value::Number(n) = v
                {
                    *v = Value::String(n.to_string());
                } else {
                    normalize(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize),
        _ => {}
    }
}
