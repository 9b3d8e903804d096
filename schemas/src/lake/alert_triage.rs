//! The lake's `alert_triage` table: one row per triage change of an alert
//! (acknowledged, closed with a reason, reopened, assigned, commented), made
//! by an analyst or admin through the alerts API. Append-only: an alert's
//! current triage state is its latest row, and the rows before it are its
//! history. A persisted format: columns are only ever added, at the end,
//! nullable.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, Int16Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use chrono::{DateTime, Utc};

use super::utc_micros;

/// The version of the row format, in `triage_version`.
pub const TRIAGE_VERSION: i16 = 1;

static ALERT_TRIAGE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("triage_version", DataType::Int16, false),
        Field::new("triage_id", DataType::Utf8, false),
        Field::new("alert_id", DataType::Utf8, false),
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("time", utc_micros(), false),
        Field::new("status", DataType::Utf8, false),
        Field::new("assignee", DataType::Utf8, true),
        Field::new("close_reason", DataType::Utf8, true),
        Field::new("comment", DataType::Utf8, true),
        Field::new("actor", DataType::Utf8, false),
    ]))
});

/// The Arrow schema of the lake's `alert_triage` table (data columns; `dt`,
/// the UTC day of `time`, is the partition).
pub fn alert_triage_schema() -> SchemaRef {
    ALERT_TRIAGE_SCHEMA.clone()
}

/// One triage change as the table stores it.
#[derive(Debug, Clone, Copy)]
pub struct AlertTriageRow<'a> {
    /// Unique per row (a UUID).
    pub triage_id: &'a str,
    pub alert_id: &'a str,
    /// The alert's tenant and user, so that triage is tenant-filtered and
    /// joins a user's alerts without reading `alerts`.
    pub tenant_id: &'a str,
    pub user_id: &'a str,
    /// When the change was made; the row's `dt`.
    pub time: DateTime<Utc>,
    /// `open`, `acknowledged` or `closed`.
    pub status: &'a str,
    pub assignee: Option<&'a str>,
    /// Only when `status` is `closed`.
    pub close_reason: Option<&'a str>,
    pub comment: Option<&'a str>,
    /// The name of the token that made the change.
    pub actor: &'a str,
}

/// Accumulates triage rows into one [`RecordBatch`] of
/// [`alert_triage_schema`].
pub struct AlertTriageBatchBuilder {
    triage_version: Int16Builder,
    triage_id: StringBuilder,
    alert_id: StringBuilder,
    tenant_id: StringBuilder,
    user_id: StringBuilder,
    time: TimestampMicrosecondBuilder,
    status: StringBuilder,
    assignee: StringBuilder,
    close_reason: StringBuilder,
    comment: StringBuilder,
    actor: StringBuilder,
    len: usize,
}

impl Default for AlertTriageBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl AlertTriageBatchBuilder {
    pub fn new() -> Self {
        AlertTriageBatchBuilder {
            triage_version: Int16Builder::new(),
            triage_id: StringBuilder::new(),
            alert_id: StringBuilder::new(),
            tenant_id: StringBuilder::new(),
            user_id: StringBuilder::new(),
            time: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            status: StringBuilder::new(),
            assignee: StringBuilder::new(),
            close_reason: StringBuilder::new(),
            comment: StringBuilder::new(),
            actor: StringBuilder::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn append(&mut self, row: &AlertTriageRow<'_>) {
        self.triage_version.append_value(TRIAGE_VERSION);
        self.triage_id.append_value(row.triage_id);
        self.alert_id.append_value(row.alert_id);
        self.tenant_id.append_value(row.tenant_id);
        self.user_id.append_value(row.user_id);
        self.time.append_value(row.time.timestamp_micros());
        self.status.append_value(row.status);
        self.assignee.append_option(row.assignee);
        self.close_reason.append_option(row.close_reason);
        self.comment.append_option(row.comment);
        self.actor.append_value(row.actor);
        self.len += 1;
    }

    /// Takes the rows appended so far as a batch and resets the builder.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.triage_version.finish()),
            Arc::new(self.triage_id.finish()),
            Arc::new(self.alert_id.finish()),
            Arc::new(self.tenant_id.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.time.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.assignee.finish()),
            Arc::new(self.close_reason.finish()),
            Arc::new(self.comment.finish()),
            Arc::new(self.actor.finish()),
        ];
        self.len = 0;
        RecordBatch::try_new(alert_triage_schema(), columns)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};

    use super::*;

    #[test]
    fn triage_rows_fill_every_column_of_the_schema() {
        let ack = AlertTriageRow {
            triage_id: "t1",
            alert_id: "a1",
            tenant_id: "acme",
            user_id: "u1",
            time: DateTime::from_timestamp(1_795_334_400, 0).unwrap(),
            status: "acknowledged",
            assignee: Some("ana"),
            close_reason: None,
            comment: None,
            actor: "ana",
        };
        let mut builder = AlertTriageBatchBuilder::new();
        builder.append(&ack);
        builder.append(&AlertTriageRow {
            triage_id: "t2",
            status: "closed",
            close_reason: Some("false_positive"),
            comment: Some("known job"),
            ..ack
        });
        let batch = builder.finish().unwrap();
        assert!(builder.is_empty());
        assert_eq!(batch.schema(), alert_triage_schema());
        assert_eq!(batch.num_rows(), 2);
        let reason = batch
            .column_by_name("close_reason")
            .unwrap()
            .as_string::<i32>();
        assert!(reason.is_null(0));
        assert_eq!(reason.value(1), "false_positive");
    }
}
