//! The lake's `query_audit` table: two rows per query run against the query
//! endpoint (`phase` `start`, then `end` with the outcome), written by the
//! query engine. A persisted format: columns are only ever added, at the
//! end, nullable.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, Float64Builder, Int64Builder, ListBuilder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::error::ArrowError;
use chrono::{DateTime, Utc};

use super::{string_list, utc_micros};

static QUERY_AUDIT_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("query_id", DataType::Utf8, false),
        Field::new("phase", DataType::Utf8, false),
        Field::new("time", utc_micros(), false),
        Field::new("principal", DataType::Utf8, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("tenants", string_list(), false),
        Field::new("transport", DataType::Utf8, false),
        Field::new("sql", DataType::Utf8, false),
        Field::new("sql_sha256", DataType::Utf8, false),
        Field::new("outcome", DataType::Utf8, true),
        Field::new("error", DataType::Utf8, true),
        Field::new("rows", DataType::Int64, true),
        Field::new("bytes", DataType::Int64, true),
        Field::new("duration_ms", DataType::Float64, true),
    ]))
});

/// The Arrow schema of the lake's `query_audit` table (data columns; `dt`
/// is the partition).
pub fn query_audit_schema() -> SchemaRef {
    QUERY_AUDIT_SCHEMA.clone()
}

/// One audit record as the table stores it (the query crate's
/// `AuditRecord`, by reference).
#[derive(Debug, Clone, Copy)]
pub struct QueryAuditRow<'a> {
    pub query_id: &'a str,
    pub phase: &'a str,
    /// When the record was made; the row's `dt`.
    pub time: DateTime<Utc>,
    pub principal: &'a str,
    pub role: &'a str,
    pub tenants: &'a [String],
    pub transport: &'a str,
    pub sql: &'a str,
    pub sql_sha256: &'a str,
    pub outcome: Option<&'a str>,
    pub error: Option<&'a str>,
    pub rows: Option<i64>,
    pub bytes: Option<i64>,
    pub duration_ms: Option<f64>,
}

/// Accumulates audit rows into one [`RecordBatch`] of [`query_audit_schema`].
pub struct QueryAuditBatchBuilder {
    query_id: StringBuilder,
    phase: StringBuilder,
    time: TimestampMicrosecondBuilder,
    principal: StringBuilder,
    role: StringBuilder,
    tenants: ListBuilder<StringBuilder>,
    transport: StringBuilder,
    sql: StringBuilder,
    sql_sha256: StringBuilder,
    outcome: StringBuilder,
    error: StringBuilder,
    rows: Int64Builder,
    bytes: Int64Builder,
    duration_ms: Float64Builder,
    len: usize,
}

impl Default for QueryAuditBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl QueryAuditBatchBuilder {
    pub fn new() -> Self {
        QueryAuditBatchBuilder {
            query_id: StringBuilder::new(),
            phase: StringBuilder::new(),
            time: TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            principal: StringBuilder::new(),
            role: StringBuilder::new(),
            tenants: ListBuilder::new(StringBuilder::new()),
            transport: StringBuilder::new(),
            sql: StringBuilder::new(),
            sql_sha256: StringBuilder::new(),
            outcome: StringBuilder::new(),
            error: StringBuilder::new(),
            rows: Int64Builder::new(),
            bytes: Int64Builder::new(),
            duration_ms: Float64Builder::new(),
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn append(&mut self, row: &QueryAuditRow<'_>) {
        self.query_id.append_value(row.query_id);
        self.phase.append_value(row.phase);
        self.time.append_value(row.time.timestamp_micros());
        self.principal.append_value(row.principal);
        self.role.append_value(row.role);
        for tenant in row.tenants {
            self.tenants.values().append_value(tenant);
        }
        self.tenants.append(true);
        self.transport.append_value(row.transport);
        self.sql.append_value(row.sql);
        self.sql_sha256.append_value(row.sql_sha256);
        self.outcome.append_option(row.outcome);
        self.error.append_option(row.error);
        self.rows.append_option(row.rows);
        self.bytes.append_option(row.bytes);
        self.duration_ms.append_option(row.duration_ms);
        self.len += 1;
    }

    /// Takes the rows appended so far as a batch and resets the builder.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.query_id.finish()),
            Arc::new(self.phase.finish()),
            Arc::new(self.time.finish()),
            Arc::new(self.principal.finish()),
            Arc::new(self.role.finish()),
            Arc::new(self.tenants.finish()),
            Arc::new(self.transport.finish()),
            Arc::new(self.sql.finish()),
            Arc::new(self.sql_sha256.finish()),
            Arc::new(self.outcome.finish()),
            Arc::new(self.error.finish()),
            Arc::new(self.rows.finish()),
            Arc::new(self.bytes.finish()),
            Arc::new(self.duration_ms.finish()),
        ];
        self.len = 0;
        RecordBatch::try_new(query_audit_schema(), columns)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};

    use super::*;

    #[test]
    fn audit_rows_fill_every_column_of_the_schema() {
        let tenants = vec!["acme".to_owned(), "globex".to_owned()];
        let start = QueryAuditRow {
            query_id: "q1",
            phase: "start",
            time: DateTime::from_timestamp(1_795_334_400, 0).unwrap(),
            principal: "analyst",
            role: "analyst",
            tenants: &tenants,
            transport: "http",
            sql: "SELECT 1",
            sql_sha256: "ab",
            outcome: None,
            error: None,
            rows: None,
            bytes: None,
            duration_ms: None,
        };
        let mut builder = QueryAuditBatchBuilder::new();
        builder.append(&start);
        builder.append(&QueryAuditRow {
            phase: "end",
            outcome: Some("ok"),
            rows: Some(1),
            bytes: Some(8),
            duration_ms: Some(1.5),
            ..start
        });
        let batch = builder.finish().unwrap();
        assert!(builder.is_empty());
        assert_eq!(batch.schema(), query_audit_schema());
        assert_eq!(batch.num_rows(), 2);
        let outcome = batch.column_by_name("outcome").unwrap().as_string::<i32>();
        assert!(outcome.is_null(0));
        assert_eq!(outcome.value(1), "ok");
        let tenants = batch.column_by_name("tenants").unwrap().as_list::<i32>();
        assert_eq!(tenants.value(0).len(), 2);
    }
}
