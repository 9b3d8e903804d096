//! The lake's tables. Every component that reads or writes one names it
//! here; nothing else knows a table's directory, partitioning or schema.

use tooltrail_schemas::lake::{
    alert_triage_schema, alerts_schema, events_schema, quarantine_schema, query_audit_schema,
};

use crate::table::TableSpec;

/// Every table of the lake. Retention, the digest chain and vacuum cover
/// each of them.
pub static ALL: &[&TableSpec] = &[&EVENTS, &QUARANTINE, &ALERTS, &ALERT_TRIAGE, &QUERY_AUDIT];

/// Every event that passed validation, partitioned by the hour of its `time`.
pub static EVENTS: TableSpec = TableSpec {
    name: "events",
    schema: events_schema,
    partitions: &["dt", "hour"],
    stats_columns: &[
        "schema_version",
        "time",
        "tenant_id",
        "user_id",
        "server",
        "method",
        "decision",
        "status",
        "tool",
        "client_id",
        "agent_id",
        "session_id",
        "gateway_id",
        "source_ip",
        "received_at",
        "source_kind",
        "source_name",
        "source_partition",
        "source_offset",
    ],
};

/// Input that failed validation, with its reason, partitioned by the day it
/// arrived.
pub static QUARANTINE: TableSpec = TableSpec {
    name: "quarantine",
    schema: quarantine_schema,
    partitions: &["dt"],
    stats_columns: &[
        "received_at",
        "reason",
        "field",
        "source_kind",
        "source_name",
        "source_partition",
        "source_offset",
    ],
};

/// Every version of every alert the detector published (the first, and each
/// update with a higher `repeats`), partitioned by the UTC day of the
/// alert's event `time`. The whole record is in `record`.
pub static ALERTS: TableSpec = TableSpec {
    name: "alerts",
    schema: alerts_schema,
    partitions: &["dt"],
    stats_columns: &[
        "alert_id",
        "time",
        "tenant_id",
        "user_id",
        "detector",
        "severity",
        "score",
        "window_start",
        "window_end",
        "repeats",
    ],
};

/// Every triage change of an alert (status, assignee, close reason,
/// comment, who), partitioned by the UTC day of the change's `time`. An
/// alert's current state is its latest row.
pub static ALERT_TRIAGE: TableSpec = TableSpec {
    name: "alert_triage",
    schema: alert_triage_schema,
    partitions: &["dt"],
    stats_columns: &[
        "triage_id",
        "alert_id",
        "tenant_id",
        "user_id",
        "time",
        "status",
        "actor",
    ],
};

/// Every query run against the query endpoint, a `start` and an `end` row
/// each, partitioned by the UTC day of the record's `time`.
pub static QUERY_AUDIT: TableSpec = TableSpec {
    name: "query_audit",
    schema: query_audit_schema,
    partitions: &["dt"],
    stats_columns: &[
        "query_id",
        "phase",
        "time",
        "principal",
        "role",
        "transport",
        "sql_sha256",
        "outcome",
        "rows",
        "duration_ms",
    ],
};
