//! Result encodings. Each [`Encoder`] turns batches into bytes as they come,
//! so a result is never held whole in memory.
//!
//! | format | content type | after a mid-stream failure |
//! | --- | --- | --- |
//! | `json` | `application/json`: `{"columns":[…],"rows":[{…},…],"row_count":n,"truncated":b}` | the body breaks off (no closing bracket, chunked body aborted) |
//! | `ndjson` | `application/x-ndjson`: one object per row | a last line `{"error":"<code>","message":"…"}` |
//! | `csv` | `text/csv` with a header row | the body breaks off |
//! | `arrow` | `application/vnd.apache.arrow.stream` (IPC stream) | the body breaks off (no end-of-stream marker) |
//! | `parquet` | `application/vnd.apache.parquet` | the body breaks off (no footer) |
//!
//! A result cut by the row cap says so: `"truncated":true` in json, a last
//! ndjson line `{"truncated":true,"row_cap":n}`, and the
//! `X-Tooltrail-Row-Cap` response header for every format.

use std::str::FromStr;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
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
                arrow::csv::WriterBuilder::new()
                    .with_header(*header)
                    .build(&mut out)
                    .write(batch)?;
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
    pub fn fail(&self, code: &str, message: &str) -> Option<Vec<u8>> {
        match self {
            Encoder::Ndjson => {
                let mut line =
                    serde_json::to_vec(&serde_json::json!({"error": code, "message": message}))
                        .expect("json values serialize");
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
