//! Signed compliance exports: one tenant's events over a time range, with an
//! optional SQL predicate, written as part files and described by a signed
//! manifest that an outside auditor can check without tooltrail's code.
//!
//! - [`request`]: the request (`tenant_id`, `from`, `to`, `where`, `format`),
//!   its validation (the predicate is parsed as exactly one SQL expression,
//!   without subqueries), and the SQL an export runs.
//! - [`job`]: runs one export through [`crate::Engine::execute_export`] with
//!   a principal scoped to the requested tenant only (so the query audit gets
//!   its start and end records, transport `export`), streams the result into
//!   part files ([`parts`]), hashes the lake files the plan scans, and writes
//!   `manifest.json` and its detached Ed25519 signature `manifest.json.sig`.
//! - [`manifest`]: the manifest format (`manifest_version: 1`) and
//!   [`manifest::verify_dir`], which lists everything wrong with an export.
//! - [`service`]: the asynchronous jobs behind the HTTP API: a queue, at most
//!   `max_concurrent` running, and deletion of exports older than `keep_for`;
//!   [`store`]: their status files, and what a restart makes of them.
//! - [`http`]: `POST /v1/exports`, `GET /v1/exports[/{id}[/files/{name}]]`,
//!   `GET /v1/keys`.
//!
//! Layout of one export:
//!
//! ```text
//! <exports>/<export_id>/part-00000.parquet   (or .csv, .ndjson, .ocsf.ndjson)
//! <exports>/<export_id>/part-00001.parquet
//! <exports>/<export_id>/manifest.json
//! <exports>/<export_id>/manifest.json.sig    raw 64-byte Ed25519 signature of manifest.json
//! <exports>/<export_id>.job.json             the job's request and status (not part of the export)
//! ```
//!
//! Every file is written under a hidden temporary name, fsynced and renamed;
//! `manifest.json` is written last, so a directory with a valid manifest is a
//! finished export and one without is not.

pub mod http;
pub mod job;
pub mod manifest;
pub mod metrics;
pub mod parts;
pub mod request;
pub mod service;
pub mod store;

use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::QueryError;

pub use job::{Progress, run_export};
pub use manifest::{Finding, Manifest, Verification, verify_dir};
pub use metrics::ExportMetrics;
pub use request::ExportRequest;
pub use service::ExportService;

/// The name of the manifest in an export directory.
pub const MANIFEST: &str = "manifest.json";
/// The name of the manifest's detached signature.
pub const MANIFEST_SIG: &str = "manifest.json.sig";

/// A new export id: a UUIDv7, so that ids sort by creation time.
pub fn new_export_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// How the rows of an export are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// Apache Parquet, zstd-compressed; the lake's column types.
    Parquet,
    /// CSV with a header row in every part; lists, maps and structs as JSON text.
    Csv,
    /// One JSON object per line.
    Ndjson,
    /// One OCSF API Activity record (class 6003) per line, NDJSON: each event
    /// as `tooltrail_lake::ocsf::API_ACTIVITY` defines it, as the
    /// `ocsf_api_activity` view shows it.
    Ocsf,
}

impl ExportFormat {
    /// The format's name in requests and manifests.
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Parquet => "parquet",
            ExportFormat::Csv => "csv",
            ExportFormat::Ndjson => "ndjson",
            ExportFormat::Ocsf => "ocsf",
        }
    }

    /// The extension of part files.
    pub fn extension(self) -> &'static str {
        match self {
            ExportFormat::Parquet => "parquet",
            ExportFormat::Csv => "csv",
            ExportFormat::Ndjson => "ndjson",
            ExportFormat::Ocsf => "ocsf.ndjson",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ExportFormat::Parquet => "application/vnd.apache.parquet",
            ExportFormat::Csv => "text/csv; charset=utf-8",
            ExportFormat::Ndjson | ExportFormat::Ocsf => "application/x-ndjson",
        }
    }
}

impl FromStr for ExportFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "parquet" => Ok(ExportFormat::Parquet),
            "csv" => Ok(ExportFormat::Csv),
            "ndjson" => Ok(ExportFormat::Ndjson),
            "ocsf" => Ok(ExportFormat::Ocsf),
            _ => Err(format!(
                "unknown format {s:?}: expected parquet, csv, ndjson or ocsf"
            )),
        }
    }
}

impl std::fmt::Display for ExportFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How an export fails. Over HTTP: `{"error": code, "message"}` (and
/// `"field"` for a bad request) with [`ExportError::http_status`].
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// A field of the request is missing or wrong.
    #[error("{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    /// The queue is full.
    #[error("{0}")]
    Busy(String),
    /// The export's query failed.
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error("the export ran longer than {0:?} (query.exports.timeout) and was cancelled")]
    Timeout(std::time::Duration),
    #[error("export io error on {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Internal(String),
}

impl ExportError {
    /// The `error` field of the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            ExportError::Invalid { .. } => "invalid_request",
            ExportError::Forbidden(_) => "forbidden",
            ExportError::NotFound(_) => "not_found",
            ExportError::Busy(_) => "too_many_exports",
            ExportError::Query(e) => e.code(),
            ExportError::Timeout(_) => "timeout",
            ExportError::Io { .. } | ExportError::Internal(_) => "internal",
        }
    }

    pub fn http_status(&self) -> u16 {
        match self {
            ExportError::Invalid { .. } => 400,
            ExportError::Forbidden(_) => 403,
            ExportError::NotFound(_) => 404,
            ExportError::Busy(_) => 429,
            ExportError::Query(e) => e.http_status(),
            ExportError::Timeout(_) => 504,
            ExportError::Io { .. } | ExportError::Internal(_) => 500,
        }
    }

    /// The `outcome` label of `tooltrail_exports_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            ExportError::Timeout(_) => "timeout",
            ExportError::Query(QueryError::Timeout(_)) => "timeout",
            _ => "error",
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ExportError {
        let path = path.into();
        move |source| ExportError::Io { path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_case_insensitively_and_name_the_choices() {
        assert_eq!("CSV".parse::<ExportFormat>(), Ok(ExportFormat::Csv));
        assert_eq!("ocsf".parse::<ExportFormat>(), Ok(ExportFormat::Ocsf));
        let err = "xlsx".parse::<ExportFormat>().unwrap_err();
        assert!(err.contains("parquet, csv, ndjson or ocsf"), "{err}");
    }
}
