//! The lake's tables. Every component that reads or writes one names it
//! here; nothing else knows a table's directory, partitioning or schema.

use tooltrail_schemas::lake::{events_schema, quarantine_schema};

use crate::table::TableSpec;

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
