//! The query audit: every query's principal, time, SQL, tenants, rows, bytes,
//! duration and outcome, appended durably to the lake's `query_audit` table.
//!
//! Each query writes two records with the same `query_id`: `phase: "start"`
//! before any result leaves the server, and `phase: "end"` with the outcome.
//! A query whose end record is missing was cut off by a crash.
//!
//! Files: `<lake>/query_audit/dt=YYYY-MM-DD/part-<opened-micros>-<pid>.ndjson`,
//! one per process and day, appended a line at a time and fsynced after each.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// One `query_audit` row.
#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    pub query_id: String,
    /// `start` or `end`.
    pub phase: &'static str,
    #[serde(serialize_with = "utc")]
    pub time: DateTime<Utc>,
    pub principal: String,
    pub role: String,
    pub tenants: Vec<String>,
    /// `http`, `pgwire` or `cli`.
    pub transport: &'static str,
    pub sql: String,
    pub sql_sha256: String,
    /// End records: `ok`, `error`, `timeout`, `cancelled`, `rejected`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<f64>,
}

fn utc<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&tooltrail_schemas::format_time(t))
}

/// Appends audit records.
#[derive(Debug)]
pub struct AuditLog {
    dir: PathBuf,
    current: Mutex<Option<(String, File)>>,
}

impl AuditLog {
    pub fn open(lake: &Path) -> io::Result<AuditLog> {
        let dir = lake.join("query_audit");
        fs::create_dir_all(&dir)?;
        Ok(AuditLog {
            dir,
            current: Mutex::new(None),
        })
    }

    /// Appends `record` and waits until it is on disk. Blocking: call it
    /// from a blocking thread.
    pub fn append(&self, record: &AuditRecord) -> io::Result<()> {
        let mut line = serde_json::to_vec(record).map_err(io::Error::other)?;
        line.push(b'\n');
        let day = record.time.format("%Y-%m-%d").to_string();
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if current.as_ref().is_none_or(|(d, _)| *d != day) {
            let dir = self.dir.join(format!("dt={day}"));
            fs::create_dir_all(&dir)?;
            let name = format!(
                "part-{}-{}.ndjson",
                Utc::now().timestamp_micros(),
                std::process::id()
            );
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(name))?;
            File::open(&dir)?.sync_all()?;
            File::open(&self.dir)?.sync_all()?;
            *current = Some((day, file));
        }
        let (_, file) = current.as_mut().expect("opened above");
        file.write_all(&line)?;
        file.sync_data()
    }
}
