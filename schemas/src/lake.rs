//! The lake's Arrow schemas and the builders that fill them: events (from
//! decoded events), quarantine, and, in submodules, `alerts`,
//! `alert_triage` and `query_audit`.
//!
//! Columns carry the contract's names. Ingest adds `received_at` and where the
//! event came from (`source_*`). Hive partition columns (`dt`, `hour`) live in
//! the path, never in the file. This schema is a persisted format: columns are
//! only ever added, at the end, nullable.

use std::fmt::Write as _;
use std::sync::{Arc, LazyLock};

use arrow::array::{
    ArrayRef, BinaryBuilder, Float64Builder, Int16Builder, Int32Builder, Int64Builder, ListBuilder,
    MapBuilder, MapFieldNames, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use chrono::{DateTime, Utc};

use crate::error::DecodeError;
use crate::event::{SCHEMA_VERSION, ToolCallEvent};
use crate::view::{EventView, Ip};

mod alert_triage;
mod alerts;
mod query_audit;
mod rows;
pub use alert_triage::{
    AlertTriageBatchBuilder, AlertTriageRow, TRIAGE_VERSION, alert_triage_schema,
};
pub use alerts::{AlertBatchBuilder, AlertRow, alerts_schema};
pub use query_audit::{QueryAuditBatchBuilder, QueryAuditRow, query_audit_schema};
pub use rows::{DETECTOR_COLUMNS, EventRows};

/// Where an event entered tooltrail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// A Kafka record.
    Kafka {
        topic: &'a str,
        partition: i32,
        offset: i64,
    },
    /// One line (0-based `index`) of an HTTP ingest request.
    Http { request_id: &'a str, index: i64 },
    /// One line (1-based) of a file import.
    File { path: &'a str, line: i64 },
}

impl Source<'_> {
    /// The value of the `source_kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Kafka { .. } => "kafka",
            Source::Http { .. } => "http",
            Source::File { .. } => "file",
        }
    }
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn string_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

fn string_map() -> DataType {
    let entries = Field::new(
        "entries",
        DataType::Struct(
            vec![
                Field::new("key", DataType::Utf8, false),
                Field::new("value", DataType::Utf8, true),
            ]
            .into(),
        ),
        false,
    );
    DataType::Map(Arc::new(entries), false)
}

static EVENTS_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("schema_version", DataType::Int16, false),
        Field::new("event_id", DataType::Utf8, false),
        Field::new("time", utc_micros(), false),
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("server", DataType::Utf8, false),
        Field::new("method", DataType::Utf8, false),
        Field::new("decision", DataType::Utf8, false),
        Field::new("status", DataType::Int16, false),
        Field::new("tool", DataType::Utf8, true),
        Field::new("resource", DataType::Utf8, true),
        Field::new("arguments", DataType::Utf8, true),
        Field::new("scopes", string_list(), true),
        Field::new("required_scope", DataType::Utf8, true),
        Field::new("policy_id", DataType::Utf8, true),
        Field::new("reason", DataType::Utf8, true),
        Field::new("error_type", DataType::Utf8, true),
        Field::new("jsonrpc_error_code", DataType::Int64, true),
        Field::new("latency_ms", DataType::Float64, true),
        Field::new("client_id", DataType::Utf8, true),
        Field::new("agent_id", DataType::Utf8, true),
        Field::new("session_id", DataType::Utf8, true),
        Field::new("gateway_id", DataType::Utf8, true),
        Field::new("source_ip", DataType::Utf8, true),
        Field::new("user_agent", DataType::Utf8, true),
        Field::new("trace_id", DataType::Utf8, true),
        Field::new("principal_type", DataType::Utf8, true),
        Field::new("attributes", string_map(), true),
        Field::new("extra", DataType::Utf8, true),
        Field::new("received_at", utc_micros(), false),
        Field::new("source_kind", DataType::Utf8, false),
        Field::new("source_name", DataType::Utf8, true),
        Field::new("source_partition", DataType::Int32, true),
        Field::new("source_offset", DataType::Int64, true),
        Field::new("source_request_id", DataType::Utf8, true),
    ]))
});

/// The Arrow schema of `<lake>/events` Parquet files.
pub fn events_schema() -> SchemaRef {
    EVENTS_SCHEMA.clone()
}

/// Accumulates events into one [`RecordBatch`] of [`events_schema`].
pub struct EventBatchBuilder {
    schema_version: Int16Builder,
    event_id: StringBuilder,
    time: TimestampMicrosecondBuilder,
    tenant_id: StringBuilder,
    user_id: StringBuilder,
    server: StringBuilder,
    method: StringBuilder,
    decision: StringBuilder,
    status: Int16Builder,
    tool: StringBuilder,
    resource: StringBuilder,
    arguments: StringBuilder,
    scopes: ListBuilder<StringBuilder>,
    required_scope: StringBuilder,
    policy_id: StringBuilder,
    reason: StringBuilder,
    error_type: StringBuilder,
    jsonrpc_error_code: Int64Builder,
    latency_ms: Float64Builder,
    client_id: StringBuilder,
    agent_id: StringBuilder,
    session_id: StringBuilder,
    gateway_id: StringBuilder,
    source_ip: StringBuilder,
    user_agent: StringBuilder,
    trace_id: StringBuilder,
    principal_type: StringBuilder,
    attributes: MapBuilder<StringBuilder, StringBuilder>,
    extra: StringBuilder,
    received_at: TimestampMicrosecondBuilder,
    source: SourceColumns,
    rows: usize,
}

impl Default for EventBatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// How big a builder grew: its rows and the bytes of each text column. A
/// builder made [`with_sizes`](EventBatchBuilder::with_sizes) of them holds
/// that much without growing (and copying) its buffers on the way.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BuilderSizes {
    pub rows: usize,
    text: [usize; TEXT_COLUMNS],
}

impl BuilderSizes {
    /// These sizes plus a quarter, for a batch somewhat bigger than the last.
    pub fn with_headroom(&self) -> Self {
        let grow = |n: usize| n + n / 4;
        BuilderSizes {
            rows: grow(self.rows),
            text: self.text.map(grow),
        }
    }
}

/// Lists the builder's text columns once, for sizing them.
macro_rules! text_columns {
    ($($name:ident),* $(,)?) => {
        const TEXT_COLUMNS: usize = [$(stringify!($name)),*].len();

        impl EventBatchBuilder {
            fn text_columns(&self) -> [&StringBuilder; TEXT_COLUMNS] {
                [$(&self.$name),*]
            }

            fn text_columns_mut(&mut self) -> [&mut StringBuilder; TEXT_COLUMNS] {
                [$(&mut self.$name),*]
            }
        }
    };
}

text_columns!(
    event_id,
    tenant_id,
    user_id,
    server,
    method,
    decision,
    tool,
    resource,
    arguments,
    required_scope,
    policy_id,
    reason,
    error_type,
    client_id,
    agent_id,
    session_id,
    gateway_id,
    source_ip,
    user_agent,
    trace_id,
    principal_type,
    extra,
);

impl EventBatchBuilder {
    pub fn new() -> Self {
        Self::with_sizes(&BuilderSizes::default())
    }

    /// A builder with room for `sizes` (see [`sizes`](Self::sizes)).
    pub fn with_sizes(sizes: &BuilderSizes) -> Self {
        let map_names = MapFieldNames {
            entry: "entries".into(),
            key: "key".into(),
            value: "value".into(),
        };
        let rows = sizes.rows;
        let mut builder = Self {
            schema_version: Int16Builder::with_capacity(rows),
            event_id: StringBuilder::new(),
            time: TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            tenant_id: StringBuilder::new(),
            user_id: StringBuilder::new(),
            server: StringBuilder::new(),
            method: StringBuilder::new(),
            decision: StringBuilder::new(),
            status: Int16Builder::with_capacity(rows),
            tool: StringBuilder::new(),
            resource: StringBuilder::new(),
            arguments: StringBuilder::new(),
            scopes: ListBuilder::with_capacity(StringBuilder::new(), rows),
            required_scope: StringBuilder::new(),
            policy_id: StringBuilder::new(),
            reason: StringBuilder::new(),
            error_type: StringBuilder::new(),
            jsonrpc_error_code: Int64Builder::with_capacity(rows),
            latency_ms: Float64Builder::with_capacity(rows),
            client_id: StringBuilder::new(),
            agent_id: StringBuilder::new(),
            session_id: StringBuilder::new(),
            gateway_id: StringBuilder::new(),
            source_ip: StringBuilder::new(),
            user_agent: StringBuilder::new(),
            trace_id: StringBuilder::new(),
            principal_type: StringBuilder::new(),
            attributes: MapBuilder::with_capacity(
                Some(map_names),
                StringBuilder::new(),
                StringBuilder::new(),
                rows,
            ),
            extra: StringBuilder::new(),
            received_at: TimestampMicrosecondBuilder::with_capacity(rows).with_timezone("UTC"),
            source: SourceColumns::with_capacity(rows),
            rows: 0,
        };
        if rows > 0 {
            for (column, bytes) in builder.text_columns_mut().into_iter().zip(sizes.text) {
                *column = StringBuilder::with_capacity(rows, bytes);
            }
        }
        builder
    }

    /// How big this builder has grown since the last [`finish`](Self::finish).
    pub fn sizes(&self) -> BuilderSizes {
        BuilderSizes {
            rows: self.rows,
            text: self.text_columns().map(|c| c.values_slice().len()),
        }
    }

    /// Rows appended since the last [`finish`](Self::finish).
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one event with where and when ingest received it.
    pub fn append(
        &mut self,
        event: &ToolCallEvent,
        received_at: DateTime<Utc>,
        source: Source<'_>,
    ) {
        self.append_view(&event.view(), received_at, source);
    }

    /// Appends one event view (see [`crate::decode_view`]) with where and
    /// when ingest received it.
    pub fn append_view(
        &mut self,
        event: &EventView<'_>,
        received_at: DateTime<Utc>,
        source: Source<'_>,
    ) {
        self.schema_version.append_value(i16::from(SCHEMA_VERSION));
        self.event_id.append_value(&event.event_id);
        self.time.append_value(event.time_micros());
        self.tenant_id.append_value(&event.tenant_id);
        self.user_id.append_value(&event.user_id);
        self.server.append_value(&event.server);
        self.method.append_value(&event.method);
        self.decision.append_value(event.decision.as_str());
        self.status.append_value(event.status as i16);
        self.tool.append_option(event.tool.as_deref());
        self.resource.append_option(event.resource.as_deref());
        self.arguments
            .append_option(event.arguments.map(|a| a.get()));
        match &event.scopes {
            Some(scopes) => {
                for s in scopes.iter() {
                    self.scopes.values().append_value(s);
                }
                self.scopes.append(true);
            }
            None => self.scopes.append(false),
        }
        self.required_scope
            .append_option(event.required_scope.as_deref());
        self.policy_id.append_option(event.policy_id.as_deref());
        self.reason.append_option(event.reason.as_deref());
        self.error_type.append_option(event.error_type.as_deref());
        self.jsonrpc_error_code
            .append_option(event.jsonrpc_error_code);
        self.latency_ms.append_option(event.latency_ms);
        self.client_id.append_option(event.client_id.as_deref());
        self.agent_id.append_option(event.agent_id.as_deref());
        self.session_id.append_option(event.session_id.as_deref());
        self.gateway_id.append_option(event.gateway_id.as_deref());
        match &event.source_ip {
            Some(Ip {
                canonical_text: Some(text),
                ..
            }) => self.source_ip.append_value(text),
            Some(ip) => {
                // Formats straight into the column's buffer.
                write!(self.source_ip, "{}", ip.addr).expect("writing to a buffer cannot fail");
                self.source_ip.append_value("");
            }
            None => self.source_ip.append_null(),
        }
        self.user_agent.append_option(event.user_agent.as_deref());
        self.trace_id.append_option(event.trace_id.as_deref());
        self.principal_type
            .append_option(event.principal_type.map(|p| p.as_str()));
        match &event.attributes {
            Some(attrs) => {
                for (k, v) in attrs.iter() {
                    self.attributes.keys().append_value(k);
                    self.attributes.values().append_value(v);
                }
                self.attributes
                    .append(true)
                    .expect("keys and values are appended in pairs");
            }
            None => self
                .attributes
                .append(false)
                .expect("keys and values are appended in pairs"),
        }
        if event.extra.is_empty() {
            self.extra.append_null();
        } else {
            self.extra.append_value(event.extra.to_json());
        }
        self.received_at
            .append_value(received_at.timestamp_micros());
        self.source.append(source);
        self.rows += 1;
    }

    /// Takes the rows appended so far as a batch and resets the builder.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.schema_version.finish()),
            Arc::new(self.event_id.finish()),
            Arc::new(self.time.finish()),
            Arc::new(self.tenant_id.finish()),
            Arc::new(self.user_id.finish()),
            Arc::new(self.server.finish()),
            Arc::new(self.method.finish()),
            Arc::new(self.decision.finish()),
            Arc::new(self.status.finish()),
            Arc::new(self.tool.finish()),
            Arc::new(self.resource.finish()),
            Arc::new(self.arguments.finish()),
            Arc::new(self.scopes.finish()),
            Arc::new(self.required_scope.finish()),
            Arc::new(self.policy_id.finish()),
            Arc::new(self.reason.finish()),
            Arc::new(self.error_type.finish()),
            Arc::new(self.jsonrpc_error_code.finish()),
            Arc::new(self.latency_ms.finish()),
            Arc::new(self.client_id.finish()),
            Arc::new(self.agent_id.finish()),
            Arc::new(self.session_id.finish()),
            Arc::new(self.gateway_id.finish()),
            Arc::new(self.source_ip.finish()),
            Arc::new(self.user_agent.finish()),
            Arc::new(self.trace_id.finish()),
            Arc::new(self.principal_type.finish()),
            Arc::new(self.attributes.finish()),
            Arc::new(self.extra.finish()),
            Arc::new(self.received_at.finish()),
        ];
        columns.extend(self.source.finish());
        self.rows = 0;
        RecordBatch::try_new(events_schema(), columns)
    }
}

static QUARANTINE_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("received_at", utc_micros(), false),
        Field::new("reason", DataType::Utf8, false),
        Field::new("error", DataType::Utf8, false),
        Field::new("field", DataType::Utf8, true),
        Field::new("raw", DataType::Binary, false),
        Field::new("source_kind", DataType::Utf8, false),
        Field::new("source_name", DataType::Utf8, true),
        Field::new("source_partition", DataType::Int32, true),
        Field::new("source_offset", DataType::Int64, true),
        Field::new("source_request_id", DataType::Utf8, true),
    ]))
});

/// The Arrow schema of `<lake>/quarantine` Parquet files: records that failed
/// validation, with their raw bytes, why, and where they came from.
pub fn quarantine_schema() -> SchemaRef {
    QUARANTINE_SCHEMA.clone()
}

/// The source columns shared by events and quarantine.
#[derive(Default)]
struct SourceColumns {
    kind: StringBuilder,
    name: StringBuilder,
    partition: Int32Builder,
    offset: Int64Builder,
    request_id: StringBuilder,
}

impl SourceColumns {
    fn with_capacity(rows: usize) -> Self {
        SourceColumns {
            kind: StringBuilder::with_capacity(rows, rows * 4),
            name: StringBuilder::with_capacity(rows, 0),
            partition: Int32Builder::with_capacity(rows),
            offset: Int64Builder::with_capacity(rows),
            request_id: StringBuilder::with_capacity(rows, 0),
        }
    }

    fn append(&mut self, source: Source<'_>) {
        self.kind.append_value(source.kind());
        match source {
            Source::Kafka {
                topic,
                partition,
                offset,
            } => {
                self.name.append_value(topic);
                self.partition.append_value(partition);
                self.offset.append_value(offset);
                self.request_id.append_null();
            }
            Source::Http { request_id, index } => {
                self.name.append_null();
                self.partition.append_null();
                self.offset.append_value(index);
                self.request_id.append_value(request_id);
            }
            Source::File { path, line } => {
                self.name.append_value(path);
                self.partition.append_null();
                self.offset.append_value(line);
                self.request_id.append_null();
            }
        }
    }

    fn finish(&mut self) -> [ArrayRef; 5] {
        [
            Arc::new(self.kind.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.partition.finish()),
            Arc::new(self.offset.finish()),
            Arc::new(self.request_id.finish()),
        ]
    }
}

/// Accumulates rejected records into one [`RecordBatch`] of [`quarantine_schema`].
#[derive(Default)]
pub struct QuarantineBatchBuilder {
    received_at: TimestampMicrosecondBuilder,
    reason: StringBuilder,
    error: StringBuilder,
    field: StringBuilder,
    raw: BinaryBuilder,
    source: SourceColumns,
    rows: usize,
}

impl QuarantineBatchBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one rejected record: its raw bytes, why, and where it came from.
    pub fn append(
        &mut self,
        raw: &[u8],
        error: &DecodeError,
        received_at: DateTime<Utc>,
        source: Source<'_>,
    ) {
        self.received_at
            .append_value(received_at.timestamp_micros());
        self.reason.append_value(error.reason());
        self.error.append_value(error.to_string());
        self.field.append_option(error.field_name());
        self.raw.append_value(raw);
        self.source.append(source);
        self.rows += 1;
    }

    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.received_at.finish().with_timezone("UTC")),
            Arc::new(self.reason.finish()),
            Arc::new(self.error.finish()),
            Arc::new(self.field.finish()),
            Arc::new(self.raw.finish()),
        ];
        columns.extend(self.source.finish());
        self.rows = 0;
        RecordBatch::try_new(quarantine_schema(), columns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{decode, decode_view};

    #[test]
    fn a_view_and_its_owned_event_build_the_same_rows() {
        let lines: [&[u8]; 3] = [
            br#"{"schema_version":1,"event_id":"e1","time":"2026-11-22T10:00:00Z","tenant_id":"acme","user_id":"al\u0069ce","server":"github","method":"tools/call","tool":"create_issue","decision":"deny","status":403,"arguments":{"q":"a \"b\""},"scopes":["repo:write","x"],"attributes":{"z":"1","a":"2"},"source_ip":"2001:DB8::1","trace_id":"4BF92F3577B34DA6A3CE929D0E0E4736","principal_type":"agent","latency_ms":-0,"vendor":[1,{"k":null}]}"#,
            br#"{"schema_version":1,"event_id":"e2","time":"2026-11-22T10:00:01.5+01:00","tenant_id":"acme","user_id":"bob","server":"s","method":"resources/read","decision":"allow","status":200,"source_ip":"10.0.0.1","latency_ms":12.25,"jsonrpc_error_code":-32601}"#,
            br#"{"schema_version":1,"event_id":"e3","time":"2026-11-22T10:00:02Z","tenant_id":"acme","user_id":"bob","server":"s","method":"m","decision":"allow","status":200,"scopes":[],"attributes":{}}"#,
        ];
        let (mut owned, mut viewed) = (EventBatchBuilder::new(), EventBatchBuilder::new());
        let at = DateTime::from_timestamp_micros(1).unwrap();
        for (i, line) in lines.iter().enumerate() {
            let source = Source::File {
                path: "f",
                line: i as i64,
            };
            owned.append(&decode(line).unwrap(), at, source);
            viewed.append_view(&decode_view(line).unwrap(), at, source);
        }
        let (owned, viewed) = (owned.finish().unwrap(), viewed.finish().unwrap());
        assert_eq!(owned, viewed);
        let ip = viewed
            .column_by_name("source_ip")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        assert_eq!(ip.value(0), "2001:db8::1", "IPv6 in canonical form");
        assert_eq!(ip.value(1), "10.0.0.1");
    }

    #[test]
    fn builder_output_matches_the_schema_and_keeps_every_field() {
        let line = br#"{"schema_version":1,"event_id":"e1","time":"2026-11-22T10:00:00+02:00","tenant_id":"acme","user_id":"alice","server":"github","method":"tools/call","tool":"create_issue","decision":"allow","status":200,"scopes":["repo:write"],"attributes":{"env":"prod"},"source_ip":"10.0.0.1","vendor_flag":true}"#;
        let event = decode(line).unwrap();
        let mut builder = EventBatchBuilder::new();
        builder.append(
            &event,
            event.time,
            Source::Kafka {
                topic: "t",
                partition: 3,
                offset: 42,
            },
        );
        builder.append(
            &event,
            event.time,
            Source::Http {
                request_id: "r1",
                index: 0,
            },
        );
        assert_eq!(builder.len(), 2);
        let batch = builder.finish().unwrap();
        assert_eq!(batch.num_rows(), 2);
        assert_eq!(batch.schema(), events_schema());
        assert!(builder.is_empty());
        let extra = batch
            .column_by_name("extra")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .unwrap();
        assert_eq!(extra.value(0), r#"{"vendor_flag":true}"#);
        let time = batch
            .column_by_name("time")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
            .unwrap();
        // 10:00 at +02:00 is 08:00 UTC.
        assert_eq!(time.value(0), 1_795_334_400_000_000);
    }
}
