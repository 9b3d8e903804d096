//! Result encodings. Each [`Encoder`] turns batches into bytes as they come,
//! so a result is never held whole in memory.
//!
//! | format | content type | after a mid-stream failure |
//! | --- | --- | --- |
//! | `json` | `application/json`: `{"columns":[…],"rows":[{…},…],"row_count":n,"truncated":b}` | the body breaks off (no closing bracket, chunked body aborted) |
//! | `ndjson` | `application/x-ndjson`: one object per row | a last line `{"error":"<code>","message":"…"}` |
//! | `csv` | `text/csv` with a header row; lists, maps and structs as JSON text | the body breaks off |
//! | `arrow` | `application/vnd.apache.arrow.stream` (IPC stream) | the body breaks off (no end-of-stream marker) |
//! | `parquet` | `application/vnd.apache.parquet` | the body breaks off (no footer) |
//!
//! A result cut by the row cap says so: `"truncated":true` in json, a last
//! ndjson line `{"truncated":true,"row_cap":n}`, and the
//! `X-Tooltrail-Row-Cap` response header for every format.

use std::str::FromStr;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::json::writer::{EncoderOptions, make_encoder};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

/// A result format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Ndjson,
    Csv,
    Arrow,
    Parquet,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Ndjson => "application/x-ndjson",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Arrow => "application/vnd.apache.arrow.stream",
            Format::Parquet => "application/vnd.apache.parquet",
        }
    }

    /// Interactive formats are subject to the row cap; arrow and parquet are
    /// for exports and are not.
    pub fn interactive(self) -> bool {
        matches!(self, Format::Json | Format::Ndjson | Format::Csv)
    }

    /// The format an `Accept` header asks for, if it names one.
    pub fn from_accept(accept: &str) -> Option<Format> {
        accept.split(',').find_map(|part| {
            let media = part.split(';').next().unwrap_or("").trim();
            match media {
                "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
                    Some(Format::Ndjson)
                }
                "application/json" => Some(Format::Json),
                "text/csv" => Some(Format::Csv),
                "application/vnd.apache.arrow.stream" => Some(Format::Arrow),
                "application/vnd.apache.parquet" => Some(Format::Parquet),
                _ => None,
            }
        })
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_ascii_lowercase())).map_err(|_| {
            format!("unknown format {s:?}: expected json, ndjson, csv, arrow or parquet")
        })
    }
}

/// Encodes one result.
pub enum Encoder {
    Json { started: bool, rows: u64 },
    Ndjson,
    Csv { header: bool },
    Arrow(Box<arrow::ipc::writer::StreamWriter<Vec<u8>>>),
    Parquet(Box<ArrowWriter<Vec<u8>>>),
}

impl Encoder {
    pub fn new(format: Format, schema: &SchemaRef) -> Result<Encoder, ArrowError> {
        Ok(match format {
            Format::Json => Encoder::Json {
                started: false,
                rows: 0,
            },
            Format::Ndjson => Encoder::Ndjson,
            Format::Csv => Encoder::Csv { header: true },
            Format::Arrow => Encoder::Arrow(Box::new(arrow::ipc::writer::StreamWriter::try_new(
                Vec::new(),
                schema,
            )?)),
            Format::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .build();
                Encoder::Parquet(Box::new(
                    ArrowWriter::try_new(Vec::new(), schema.clone(), Some(props))
                        .map_err(|e| ArrowError::ExternalError(Box::new(e)))?,
                ))
            }
        })
    }

    /// Bytes that go before the first row.
    pub fn begin(&mut self, schema: &SchemaRef) -> Vec<u8> {
        match self {
            Encoder::Json { started, .. } => {
                *started = true;
                let columns: Vec<serde_json::Value> = schema
                    .fields()
                    .iter()
                    .map(|f| serde_json::json!({"name": f.name(), "type": f.data_type().to_string()}))
                    .collect();
                let mut out = b"{\"columns\":".to_vec();
                out.extend(serde_json::to_vec(&columns).expect("json values serialize"));
                out.extend(b",\"rows\":[");
                out
            }
            Encoder::Arrow(w) => std::mem::take(w.get_mut()),
            _ => Vec::new(),
        }
    }

    /// The bytes for one batch.
    pub fn batch(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
        match self {
            Encoder::Json { rows, .. } => {
                let lines = ndjson(batch)?;
                let mut out = Vec::with_capacity(lines.len() + 1);
                for line in lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                    if *rows > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(line);
                    *rows += 1;
                }
                Ok(out)
            }
            Encoder::Ndjson => ndjson(batch),
            Encoder::Csv { header } => {
                let mut out = Vec::new();
                let flat = csv_batch(&csv_schema(&batch.schema()), batch)?;
                arrow::csv::WriterBuilder::new()
                    .with_header(*header)
                    .build(&mut out)
                    .write(&flat)?;
                *header = false;
                Ok(out)
            }
            Encoder::Arrow(w) => {
                w.write(batch)?;
                Ok(std::mem::take(w.get_mut()))
            }
            Encoder::Parquet(w) => {
                w.write(batch)
                    .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
                if w.in_progress_size() > 64 << 20 {
                    w.flush()
                        .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
                }
                Ok(std::mem::take(w.inner_mut()))
            }
        }
    }

    /// The bytes that close a complete result.
    pub fn finish(&mut self, truncated: Option<usize>) -> Result<Vec<u8>, ArrowError> {
        match self {
            Encoder::Json { rows, .. } => Ok(format!(
                "],\"row_count\":{rows},\"truncated\":{}}}\n",
                truncated.is_some()
            )
            .into_bytes()),
            Encoder::Ndjson => Ok(match truncated {
                Some(cap) => format!("{{\"truncated\":true,\"row_cap\":{cap}}}\n").into_bytes(),
                None => Vec::new(),
            }),
            Encoder::Csv { .. } => Ok(Vec::new()),
            Encoder::Arrow(w) => {
                w.finish()?;
                Ok(std::mem::take(w.get_mut()))
            }
            Encoder::Parquet(w) => {
                w.finish()
                    .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
                Ok(std::mem::take(w.inner_mut()))
            }
        }
    }

    /// What to send when the query fails after rows went out: a trailing
    /// error record for ndjson; `None` means break the body off.
    pub fn fail(&self, code: &'static str, message: &str) -> Option<Vec<u8>> {
        match self {
            Encoder::Ndjson => {
                // The status line went out with the first rows; only the body is left.
                let error = tooltrail_schemas::http::ApiError::new(
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                    code,
                    message,
                );
                let mut line = error.body();
                line.push(b'\n');
                Some(line)
            }
            _ => None,
        }
    }
}

fn ndjson(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let mut out = Vec::new();
    let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    Ok(out)
}

/// CSV has no nested values: lists, maps and structs become JSON text.
pub(crate) fn csv_schema(schema: &SchemaRef) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if f.data_type().is_nested() {
                Field::new(f.name(), DataType::Utf8, true)
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

pub(crate) fn csv_batch(
    schema: &SchemaRef,
    batch: &RecordBatch,
) -> Result<RecordBatch, ArrowError> {
    let columns = batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, array)| {
            if field.data_type().is_nested() {
                json_column(field, array.as_ref())
            } else {
                Ok(Arc::clone(array))
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
}

fn json_column(field: &FieldRef, array: &dyn Array) -> Result<ArrayRef, ArrowError> {
    let options = EncoderOptions::default();
    let mut encoder = make_encoder(field, array, &options)?;
    let mut out = StringBuilder::with_capacity(array.len(), array.len() * 16);
    let mut buf = Vec::new();
    for i in 0..array.len() {
        if array.is_null(i) {
            out.append_null();
            continue;
        }
        buf.clear();
        encoder.encode(i, &mut buf);
        let text = std::str::from_utf8(&buf)
            .map_err(|e| ArrowError::JsonError(format!("{}: {e}", field.name())))?;
        out.append_value(text);
    }
    Ok(Arc::new(out.finish()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_carries_lists_and_maps_as_json_text() {
        let mut scopes = arrow::array::ListBuilder::new(StringBuilder::new());
        scopes.values().append_value("repo:read");
        scopes.values().append_value("mail");
        scopes.append(true);
        scopes.append_null();
        let batch = RecordBatch::try_from_iter([
            (
                "event_id",
                Arc::new(arrow::array::StringArray::from(vec!["e1", "e2"])) as ArrayRef,
            ),
            ("scopes", Arc::new(scopes.finish()) as ArrayRef),
        ])
        .unwrap();
        let mut encoder = Encoder::new(Format::Csv, &batch.schema()).unwrap();
        let mut out = encoder.begin(&batch.schema());
        out.extend(encoder.batch(&batch).unwrap());
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            "event_id,scopes\ne1,\"[\"\"repo:read\"\",\"\"mail\"\"]\"\ne2,\n"
        );
    }
}
