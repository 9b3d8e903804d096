//! Rows for the lake's unit tests.

use arrow::array::RecordBatch;
use chrono::{DateTime, Utc};
use tooltrail_schemas::ToolCallEvent;
use tooltrail_schemas::lake::{AlertBatchBuilder, AlertRow};

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

/// One `alerts` file of one alert per `(tenant, alert id)` at `time`.
pub(crate) fn alerts(time: DateTime<Utc>, alerts: &[(&str, &str)]) -> RecordBatch {
    let mut builder = AlertBatchBuilder::new();
    for (tenant, id) in alerts {
        builder.append(&AlertRow {
            alert_version: 1,
            alert_id: id,
            time,
            tenant_id: tenant,
            user_id: "u1",
            detector: "denial_spike",
            severity: "high",
            score: 80,
            title: "t",
            explanation: "e",
            observed: None,
            expected: None,
            p_value: None,
            new_values: &[],
            event_ids: &[],
            window_start: time,
            window_end: time,
            repeats: 0,
            record: "{}",
        });
    }
    builder.finish().unwrap()
}
