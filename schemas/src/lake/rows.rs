//! Lake rows back into events: how a detector is warmed from the lake's
//! history without going through text. The columns are the lake's own
//! (see [`events_schema`](super::events_schema)); a batch may hold any
//! subset that includes the required ones (a reader projects only what it
//! needs, e.g. [`DETECTOR_COLUMNS`]), and the fields of columns it lacks
//! are left empty.
//!
//! Rows were validated when they were written, so they are not decoded
//! again; a value that cannot be what the writer wrote is an error that
//! names the column and the row.

use std::str::FromStr;

use arrow::array::{Array, AsArray, ListArray, MapArray, RecordBatch, StringArray};
use arrow::datatypes::{Float64Type, Int16Type, Int64Type, TimestampMicrosecondType};
use arrow::error::ArrowError;
use chrono::DateTime;

use crate::event::{Decision, PrincipalType, RawJson, ToolCallEvent};

/// The columns the detector reads: what a warm-up projects.
pub const DETECTOR_COLUMNS: [&str; 18] = [
    "schema_version",
    "event_id",
    "time",
    "tenant_id",
    "user_id",
    "server",
    "method",
    "decision",
    "status",
    "tool",
    "resource",
    "required_scope",
    "error_type",
    "jsonrpc_error_code",
    "client_id",
    "agent_id",
    "session_id",
    "source_ip",
];

/// A batch of lake rows, its columns typed once, read row by row.
pub struct EventRows<'a> {
    schema_version: &'a arrow::array::PrimitiveArray<Int16Type>,
    time: &'a arrow::array::PrimitiveArray<TimestampMicrosecondType>,
    status: &'a arrow::array::PrimitiveArray<Int16Type>,
    jsonrpc_error_code: Option<&'a arrow::array::PrimitiveArray<Int64Type>>,
    required: [&'a StringArray; 6],
    optional: [Option<&'a StringArray>; 8],
    source_ip: Option<&'a StringArray>,
    /// The columns only a full read has (a hunt), in [`FULL`] order.
    full: [Option<&'a StringArray>; 7],
    latency_ms: Option<&'a arrow::array::PrimitiveArray<Float64Type>>,
    scopes: Option<&'a ListArray>,
    attributes: Option<&'a MapArray>,
    rows: usize,
}

/// The text columns beyond the detector's, read when the batch has them,
/// in [`EventRows::full`] order.
const FULL: [&str; 7] = [
    "arguments",
    "policy_id",
    "reason",
    "gateway_id",
    "trace_id",
    "principal_type",
    "extra",
];

/// The required text columns, in [`EventRows::required`] order.
const REQUIRED: [&str; 6] = [
    "event_id",
    "tenant_id",
    "user_id",
    "server",
    "method",
    "decision",
];
/// The optional text columns the detector reads, in [`EventRows::optional`] order.
const OPTIONAL: [&str; 8] = [
    "tool",
    "resource",
    "required_scope",
    "error_type",
    "client_id",
    "agent_id",
    "session_id",
    "user_agent",
];

fn missing(name: &str) -> ArrowError {
    ArrowError::SchemaError(format!("lake batch has no `{name}` column"))
}

fn bad(name: &str, row: usize, problem: impl std::fmt::Display) -> ArrowError {
    ArrowError::InvalidArgumentError(format!("column `{name}`, row {row}: {problem}"))
}

impl<'a> EventRows<'a> {
    /// Types the batch's columns; fails naming a required column it lacks
    /// or one of the wrong type.
    pub fn new(batch: &'a RecordBatch) -> Result<Self, ArrowError> {
        let column = |name: &str| batch.column_by_name(name);
        let required = |name: &str| column(name).ok_or_else(|| missing(name));
        let text = |name: &str| -> Result<Option<&'a StringArray>, ArrowError> {
            batch
                .column_by_name(name)
                .map(|c| {
                    c.as_string_opt::<i32>()
                        .ok_or_else(|| bad(name, 0, "not a text column"))
                })
                .transpose()
        };
        let primitive_error = |name: &str| bad(name, 0, "of the wrong type");
        let mut strings = Vec::with_capacity(REQUIRED.len());
        for name in REQUIRED {
            strings.push(text(name)?.ok_or_else(|| missing(name))?);
        }
        let mut optional = [None; 8];
        for (slot, name) in optional.iter_mut().zip(OPTIONAL) {
            *slot = text(name)?;
        }
        let mut full = [None; 7];
        for (slot, name) in full.iter_mut().zip(FULL) {
            *slot = text(name)?;
        }
        Ok(EventRows {
            schema_version: required("schema_version")?
                .as_primitive_opt::<Int16Type>()
                .ok_or_else(|| primitive_error("schema_version"))?,
            time: required("time")?
                .as_primitive_opt::<TimestampMicrosecondType>()
                .ok_or_else(|| primitive_error("time"))?,
            status: required("status")?
                .as_primitive_opt::<Int16Type>()
                .ok_or_else(|| primitive_error("status"))?,
            jsonrpc_error_code: column("jsonrpc_error_code")
                .map(|c| {
                    c.as_primitive_opt::<Int64Type>()
                        .ok_or_else(|| primitive_error("jsonrpc_error_code"))
                })
                .transpose()?,
            required: strings.try_into().expect("one array per required column"),
            optional,
            source_ip: text("source_ip")?,
            full,
            latency_ms: column("latency_ms")
                .map(|c| {
                    c.as_primitive_opt::<Float64Type>()
                        .ok_or_else(|| primitive_error("latency_ms"))
                })
                .transpose()?,
            scopes: column("scopes")
                .map(|c| {
                    c.as_list_opt::<i32>()
                        .ok_or_else(|| primitive_error("scopes"))
                })
                .transpose()?,
            attributes: column("attributes")
                .map(|c| c.as_map_opt().ok_or_else(|| primitive_error("attributes")))
                .transpose()?,
            rows: batch.num_rows(),
        })
    }

    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The row's event time, in microseconds since the epoch.
    pub fn time_micros(&self, row: usize) -> i64 {
        self.time.value(row)
    }

    /// The event in `row`.
    pub fn event(&self, row: usize) -> Result<ToolCallEvent, ArrowError> {
        let [event_id, tenant_id, user_id, server, method, decision] =
            self.required.map(|c| c.value(row).to_owned());
        let optional = |i: usize| {
            self.optional[i]
                .filter(|c| c.is_valid(row))
                .map(|c| c.value(row).to_owned())
        };
        let full = |i: usize| self.full_text(i, row);
        let micros = self.time.value(row);
        Ok(ToolCallEvent {
            schema_version: u8::try_from(self.schema_version.value(row))
                .map_err(|e| bad("schema_version", row, e))?,
            time: DateTime::from_timestamp_micros(micros)
                .ok_or_else(|| bad("time", row, format!("{micros} is out of range")))?,
            decision: Decision::parse(&decision).ok_or_else(|| {
                bad(
                    "decision",
                    row,
                    format!("`{decision}` is not allow or deny"),
                )
            })?,
            status: u16::try_from(self.status.value(row)).map_err(|e| bad("status", row, e))?,
            event_id,
            tenant_id,
            user_id,
            server,
            method,
            tool: optional(0),
            resource: optional(1),
            required_scope: optional(2),
            error_type: optional(3),
            client_id: optional(4),
            agent_id: optional(5),
            session_id: optional(6),
            user_agent: optional(7),
            jsonrpc_error_code: self
                .jsonrpc_error_code
                .filter(|c| c.is_valid(row))
                .map(|c| c.value(row)),
            source_ip: match self.source_ip.filter(|c| c.is_valid(row)) {
                None => None,
                Some(c) => Some(
                    std::net::IpAddr::from_str(c.value(row))
                        .map_err(|e| bad("source_ip", row, e))?,
                ),
            },
            arguments: full(0)
                .map(|text| {
                    RawJson::from_string(text.to_owned()).map_err(|e| bad("arguments", row, e))
                })
                .transpose()?,
            scopes: self.scopes.filter(|c| c.is_valid(row)).map(|c| {
                let items = c.value(row);
                let items = items.as_string::<i32>();
                items.iter().flatten().map(str::to_owned).collect()
            }),
            policy_id: full(1).map(str::to_owned),
            reason: full(2).map(str::to_owned),
            latency_ms: self
                .latency_ms
                .filter(|c| c.is_valid(row))
                .map(|c| c.value(row)),
            gateway_id: full(3).map(str::to_owned),
            trace_id: full(4).map(str::to_owned),
            principal_type: full(5)
                .map(|p| {
                    PrincipalType::parse(p).ok_or_else(|| {
                        bad(
                            "principal_type",
                            row,
                            format!("`{p}` is not a principal type"),
                        )
                    })
                })
                .transpose()?,
            attributes: self.attributes.filter(|c| c.is_valid(row)).map(|c| {
                let entries = c.value(row);
                let keys = entries.column(0).as_string::<i32>();
                let values = entries.column(1).as_string::<i32>();
                (0..entries.len())
                    .filter(|&i| values.is_valid(i))
                    .map(|i| (keys.value(i).to_owned(), values.value(i).to_owned()))
                    .collect()
            }),
            extra: match full(6) {
                None => Default::default(),
                Some(text) => serde_json::from_str::<
                    std::collections::BTreeMap<String, Box<serde_json::value::RawValue>>,
                >(text)
                .map_err(|e| bad("extra", row, e))?
                .into_iter()
                .map(|(k, v)| (k, RawJson::from(v)))
                .collect(),
            },
        })
    }

    fn full_text(&self, i: usize, row: usize) -> Option<&'a str> {
        self.full[i]
            .filter(|c| c.is_valid(row))
            .map(|c| c.value(row))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::{EventBatchBuilder, Source};

    fn event(line: &str) -> ToolCallEvent {
        crate::decode(line.as_bytes()).expect("a valid event")
    }

    #[test]
    fn a_row_reads_back_as_the_event_that_was_written_in_the_columns_it_has() {
        let written = [
            event(
                r#"{"schema_version":1,"event_id":"e1","time":"2026-11-22T09:30:00.123456Z","tenant_id":"acme","user_id":"alice","server":"github","method":"tools/call","tool":"create_issue","resource":"repo://x","decision":"deny","status":403,"required_scope":"repo:write","error_type":"-32001","jsonrpc_error_code":-32001,"client_id":"cursor","agent_id":"a1","session_id":"s1","source_ip":"2001:db8::1","user_agent":"ua","latency_ms":3.5}"#,
            ),
            event(
                r#"{"schema_version":1,"event_id":"e2","time":"2026-11-22T09:31:00Z","tenant_id":"acme","user_id":"bob","server":"gdrive","method":"resources/read","decision":"allow","status":200}"#,
            ),
        ];
        let mut builder = EventBatchBuilder::new();
        for e in &written {
            builder.append_view(
                &e.view(),
                chrono::Utc::now(),
                Source::File { path: "x", line: 1 },
            );
        }
        let batch = builder.finish().expect("batch");
        let indices: Vec<usize> = DETECTOR_COLUMNS
            .iter()
            .chain(["user_agent"].iter())
            .map(|name| batch.schema().index_of(name).expect("a lake column"))
            .collect();
        let projected = batch.project(&indices).expect("project");
        let rows = EventRows::new(&projected).expect("typed");
        assert_eq!(rows.len(), 2);
        for (row, expected) in written.iter().enumerate() {
            let back = rows.event(row).expect("an event");
            // Columns outside the projection come back empty.
            let expected = ToolCallEvent {
                latency_ms: None,
                ..expected.clone()
            };
            assert_eq!(back, expected);
        }
    }

    #[test]
    fn a_full_row_reads_back_as_the_whole_event() {
        let written = event(
            r#"{"schema_version":1,"event_id":"e1","time":"2026-11-22T09:30:00Z","tenant_id":"acme","user_id":"alice","server":"github","method":"tools/call","tool":"create_issue","decision":"allow","status":200,"arguments":{"repo":"acme/api","n":[1,2]},"scopes":["repo","read:org"],"policy_id":"p1","reason":"ok","latency_ms":3.5,"gateway_id":"gw","trace_id":"t1","principal_type":"agent","attributes":{"region":"eu"},"x_vendor":{"tag":"red"}}"#,
        );
        let mut builder = EventBatchBuilder::new();
        builder.append_view(
            &written.view(),
            chrono::Utc::now(),
            Source::File { path: "x", line: 1 },
        );
        let batch = builder.finish().expect("batch");
        let rows = EventRows::new(&batch).expect("typed");
        assert_eq!(rows.event(0).expect("an event"), written);
    }

    #[test]
    fn a_batch_without_a_required_column_is_refused_naming_it() {
        let batch = EventBatchBuilder::new().finish().expect("empty batch");
        let index = batch.schema().index_of("time").expect("time");
        let keep: Vec<usize> = (0..batch.num_columns()).filter(|&i| i != index).collect();
        let error = EventRows::new(&batch.project(&keep).expect("project"))
            .err()
            .expect("refused");
        assert!(error.to_string().contains("`time`"), "{error}");
    }
}
