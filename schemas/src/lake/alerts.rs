//! The lake's `alerts` table: one row per version of an alert (the first,
//! and each update carrying a higher `repeats`), written by the detector.
//!
//! The columns are the alert record's fields (detect's `Alert`), with the
//! names and types the query side has always shown. `evidence.details` has
//! no fixed shape and so no column of its own: the whole record, as
//! published (its JSON, the bytes webhooks and the alerts topic carry), is
//! kept in `record`, so nothing of an alert is lost and a reader can rebuild
//! it exactly. A persisted format: columns are only ever added, at the end,
//! nullable.

use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, Float64Builder, Int16Builder, Int64Builder, ListBuilder, RecordBatch, StringBuilder,
    StructArray, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use arrow::error::ArrowError;
use chrono::{DateTime, Utc};

use super::{string_list, utc_micros};

fn evidence_fields() -> Fields {
    vec![
        Field::new("observed", DataType::Float64, true),
        Field::new("expected", DataType::Float64, true),
        Field::new("p_value", DataType::Float64, true),
        Field::new("new_values", string_list(), true),
        Field::new("event_ids", string_list(), true),
    ]
    .into()
}

static ALERTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("alert_version", DataType::Int16, true),
        Field::new("alert_id", DataType::Utf8, false),
        Field::new("time", utc_micros(), false),
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("detector", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("score", DataType::Int16, true),
        Field::new("title", DataType::Utf8, true),
        Field::new("explanation", DataType::Utf8, true),
        Field::new("evidence", DataType::Struct(evidence_fields()), true),
        Field::new("window_start", utc_micros(), true),
        Field::new("window_end", utc_micros(), true),
        Field::new("repeats", DataType::Int64, true),
        Field::new("record", DataType::Utf8, true),
    ]))
});

/// The Arrow schema of the lake's `alerts` table (data columns; `dt` is
/// the partition).
pub fn alerts_schema() -> SchemaRef {
    ALERTS_SCHEMA.clone()
}

/// One alert version as the `alerts` table stores it: detect's `Alert`, by
/// reference (this crate does not know the detector's types).
#[derive(Debug, Clone, Copy)]
pub struct AlertRow<'a> {
    pub alert_version: i16,
    pub alert_id: &'a str,
    /// Event time at which the detector had its evidence; the row's `dt`.
    pub time: DateTime<Utc>,
    pub tenant_id: &'a str,
    pub user_id: &'a str,
    pub detector: &'a str,
    pub severity: &'a str,
    pub score: i16,
    pub title: &'a str,
    pub explanation: &'a str,
    pub observed: Option<f64>,
    pub expected: Option<f64>,
    pub p_value: Option<f64>,
    /// Stored as null when empty, as the record leaves it out.
    pub new_values: &'a [String],
    pub event_ids: &'a [String],
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub repeats: i64,
    /// The whole alert record as published (JSON).
    pub record: &'a str,
}

/// Accumulates alert rows into one [`RecordBatch`] of [`alerts_schema`].
pub struct AlertBatchBuilder {
    alert_version: Int16Builder,
    alert_id: StringBuilder,
    time: TimestampMicrosecondBuilder,
    tenant_id: StringBuilder,
    user_id: StringBuilder,
    detector: StringBuilder,
    severity: StringBuilder,
    score: Int16Builder,
    title: StringBuilder,
    explanation: StringBuilder,
    observed: Float64Builder,
    expected: Float64Builder,
    p_value: Float64Builder,
    new_values: ListBuilder<StringBuilder>,
    event_ids: ListBuilder<StringBuilder>,
    window_start: TimestampMicrosecondBuilder,
    window_end: TimestampMicrosecondBuilder,
    repeats: Int64Builder,
    record: StringBuilder,
    rows: usize,
}

impl Default for AlertBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl AlertBatchBuilder {
    pub fn new() -> Self {
        let utc = || TimestampMicrosecondBuilder::new().with_timezone("UTC");
        AlertBatchBuilder {
            alert_version: Int16Builder::new(),
            alert_id: StringBuilder::new(),
            time: utc(),
            tenant_id: StringBuilder::new(),
            user_id: StringBuilder::new(),
            detector: StringBuilder::new(),
            severity: StringBuilder::new(),
            score: Int16Builder::new(),
            title: StringBuilder::new(),
            explanation: StringBuilder::new(),
            observed: Float64Builder::new(),
            expected: Float64Builder::new(),
            p_value: Float64Builder::new(),
            new_values: ListBuilder::new(StringBuilder::new()),
            event_ids: ListBuilder::new(StringBuilder::new()),
            window_start: utc(),
            window_end: utc(),
            repeats: Int64Builder::new(),
            record: StringBuilder::new(),
            rows: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    pub fn append(&mut self, row: &AlertRow<'_>) {
        self.alert_version.append_value(row.alert_version);
        self.alert_id.append_value(row.alert_id);
        self.time.append_value(row.time.timestamp_micros());
        self.tenant_id.append_value(row.tenant_id);
        self.user_id.append_value(row.user_id);
        self.detector.append_value(row.detector);
        self.severity.append_value(row.severity);
        self.score.append_value(row.score);
        self.title.append_value(row.title);
        self.explanation.append_value(row.explanation);
        self.observed.append_option(row.observed);
        self.expected.append_option(row.expected);
        self.p_value.append_option(row.p_value);
        if row.new_values.is_empty() {
            self.new_values.append_null();
        } else {
            for v in row.new_values {
                self.new_values.values().append_value(v);
            }
            self.new_values.append(true);
        }
        for id in row.event_ids {
            self.event_ids.values().append_value(id);
        }
        self.event_ids.append(true);
        self.window_start
            .append_value(row.window_start.timestamp_micros());
        self.window_end
            .append_value(row.window_end.timestamp_micros());
        self.repeats.append_value(row.repeats);
        self.record.append_value(row.record);
        self.rows += 1;
    }

    /// Takes the rows appended so far as a batch and resets the builder.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let evidence = StructArray::try_new(
            evidence_fields(),
            vec![
                Arc::new(self.observed.finish()) as ArrayRef,
                Arc::new(self.expected.finish()),
                Arc::new(self.p_value.finish()),
                Arc::new(self.new_values.finish()),
                Arc::new(self.event_ids.finish()),
            ],
            None,
        )?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.alert_version.finish()),
            Arc::new(self.alert_id.finish()),
            Arc::new(self.time.finish()),
            Arc::new(self.tenant_id.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.detector.finish()),
            Arc::new(self.severity.finish()),
            Arc::new(self.score.finish()),
            Arc::new(self.title.finish()),
            Arc::new(self.explanation.finish()),
            Arc::new(evidence),
            Arc::new(self.window_start.finish()),
            Arc::new(self.window_end.finish()),
            Arc::new(self.repeats.finish()),
            Arc::new(self.record.finish()),
        ];
        self.rows = 0;
        RecordBatch::try_new(alerts_schema(), columns)
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, AsArray};

    use super::*;

    #[test]
    fn alert_rows_fill_every_column_of_the_schema() {
        let time = DateTime::from_timestamp(1_795_334_400, 0).unwrap();
        let (new_values, event_ids) = (vec!["merge_pr".to_owned()], vec!["e1".to_owned()]);
        let row = AlertRow {
            alert_version: 1,
            alert_id: "a1",
            time,
            tenant_id: "acme",
            user_id: "alice",
            detector: "first_seen_tool",
            severity: "high",
            score: 80,
            title: "t",
            explanation: "x",
            observed: Some(3.0),
            expected: None,
            p_value: None,
            new_values: &new_values,
            event_ids: &event_ids,
            window_start: time,
            window_end: time,
            repeats: 2,
            record: r#"{"alert_id":"a1","evidence":{"details":{"k":1}}}"#,
        };
        let mut builder = AlertBatchBuilder::new();
        builder.append(&row);
        builder.append(&AlertRow {
            new_values: &[],
            ..row
        });
        assert_eq!(builder.len(), 2);
        let batch = builder.finish().unwrap();
        assert!(builder.is_empty());
        assert_eq!(batch.schema(), alerts_schema());
        let evidence = batch.column_by_name("evidence").unwrap().as_struct();
        let new_values = evidence
            .column_by_name("new_values")
            .unwrap()
            .as_list::<i32>();
        assert_eq!(new_values.value(0).as_string::<i32>().value(0), "merge_pr");
        assert!(new_values.is_null(1), "an empty list is left out");
        let record = batch.column_by_name("record").unwrap().as_string::<i32>();
        assert!(record.value(1).contains("details"));
    }
}
