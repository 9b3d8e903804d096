//! Events for the lake's unit tests.

use chrono::{DateTime, Utc};
use tooltrail_schemas::ToolCallEvent;

/// A valid `resources/read` event of tenant `t`.
pub(crate) fn event(id: &str, time: DateTime<Utc>, user: &str) -> ToolCallEvent {
    let line = serde_json::json!({
        "schema_version": 1,
        "event_id": id,
        "time": time.to_rfc3339(),
        "tenant_id": "t",
        "user_id": user,
        "server": "s",
        "method": "resources/read",
        "decision": "allow",
        "status": 200,
    });
    tooltrail_schemas::decode(line.to_string().as_bytes()).expect("a valid event")
}
