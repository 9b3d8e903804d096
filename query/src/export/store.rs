//! The job files: `<exports>/<id>.job.json` records an export's request,
//! who made it and its status (`job_version: 1`), written to a temporary
//! name, fsynced and renamed. They sit beside the export directories, not in
//! them, so an export directory holds only what its manifest lists.
//!
//! After a restart ([`recover`]), a job whose directory holds a valid
//! manifest is `done`; one that was queued or running is `failed`
//! (interrupted) and its partial files are removed; a directory with a
//! manifest but no job file (copied in, or written by `tooltrail export`)
//! is listed as done.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ExportError;
use super::job::Progress;
use super::manifest::{Manifest, RequestedBy};
use super::request::RequestRecord;

pub(super) const JOB_SUFFIX: &str = ".job.json";

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Queued,
    Running,
    Done,
    Failed,
}

/// `<id>.job.json` (`job_version: 1`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub job_version: u32,
    pub export_id: String,
    pub requested_by: RequestedBy,
    pub request: RequestRecord,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub requested_at: String,
    #[serde(default)]
    pub started_at: Option<String>,
    #[serde(default)]
    pub finished_at: Option<String>,
}

/// A job as the service holds it.
#[derive(Clone)]
pub(super) struct Job {
    pub(super) record: JobRecord,
    pub(super) progress: Arc<Progress>,
}

pub(super) fn now() -> String {
    tooltrail_schemas::format_time(&Utc::now())
}

pub(super) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub(super) fn write_record(dir: &Path, record: &JobRecord) -> Result<(), ExportError> {
    let name = format!("{}{JOB_SUFFIX}", record.export_id);
    let tmp = dir.join(format!(".{name}.tmp"));
    let bytes = serde_json::to_vec_pretty(record).expect("a job record serializes");
    fs::write(&tmp, bytes).map_err(ExportError::io(&tmp))?;
    fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(ExportError::io(&tmp))?;
    let path = dir.join(name);
    fs::rename(&tmp, &path).map_err(ExportError::io(&path))
}

/// The jobs recorded in `dir`, settled: a valid manifest means done;
/// anything else unfinished was interrupted.
pub(super) fn recover(dir: &Path) -> Result<BTreeMap<String, Job>, ExportError> {
    let mut jobs = BTreeMap::new();
    let mut dirs = Vec::new();
    for entry in fs::read_dir(dir).map_err(ExportError::io(dir))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if name.starts_with('.') && name.ends_with(".tmp") {
            let _ = fs::remove_file(&path);
        } else if let Some(id) = name.strip_suffix(JOB_SUFFIX) {
            let record: JobRecord = match fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            {
                Ok(record) => record,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable export job file");
                    continue;
                }
            };
            jobs.insert(id.to_owned(), record);
        } else if path.is_dir() {
            dirs.push(name);
        }
    }
    let mut settled = BTreeMap::new();
    for (id, mut record) in jobs {
        let export = dir.join(&id);
        let progress = Progress::default();
        match Manifest::read(&export) {
            Ok(manifest) => {
                progress.rows.store(manifest.totals.rows, Ordering::Relaxed);
                progress
                    .bytes
                    .store(manifest.totals.bytes, Ordering::Relaxed);
                progress
                    .parts
                    .store(manifest.totals.parts, Ordering::Relaxed);
                if record.status != Status::Done {
                    record.status = Status::Done;
                    record.error = None;
                    record.finished_at = Some(manifest.finished_at.clone());
                    write_record(dir, &record)?;
                }
            }
            Err(_) if record.status != Status::Failed => {
                record.status = Status::Failed;
                record.error = Some(
                    "interrupted: tooltrail stopped before the export finished; start it again"
                        .into(),
                );
                record.finished_at = Some(now());
                if let Ok(entries) = fs::read_dir(&export) {
                    for entry in entries.flatten() {
                        let _ = fs::remove_file(entry.path());
                    }
                }
                write_record(dir, &record)?;
            }
            Err(_) => {}
        }
        settled.insert(
            id,
            Job {
                record,
                progress: Arc::new(progress),
            },
        );
    }
    dirs.retain(|d| !settled.contains_key(d));
    for id in dirs {
        // An export without a job file (copied in, or written by the CLI).
        if let Ok(m) = Manifest::read(&dir.join(&id)) {
            let record = JobRecord {
                job_version: 1,
                export_id: id.clone(),
                requested_by: m.requested_by.clone(),
                request: RequestRecord {
                    tenant_id: m.scope.tenant_id.clone(),
                    from: m.scope.from.clone(),
                    to: m.scope.to.clone(),
                    predicate: m.predicate.clone(),
                    format: m.format,
                },
                status: Status::Done,
                error: None,
                requested_at: m.requested_at.clone(),
                started_at: Some(m.started_at.clone()),
                finished_at: Some(m.finished_at.clone()),
            };
            let progress = Progress::default();
            progress.rows.store(m.totals.rows, Ordering::Relaxed);
            settled.insert(
                id,
                Job {
                    record,
                    progress: Arc::new(progress),
                },
            );
        }
    }
    Ok(settled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::ExportFormat;

    fn record(id: &str, status: Status) -> JobRecord {
        JobRecord {
            job_version: 1,
            export_id: id.into(),
            requested_by: RequestedBy {
                principal: "aud".into(),
                role: "auditor".into(),
            },
            request: RequestRecord {
                tenant_id: "acme".into(),
                from: "2025-01-01T00:00:00.000000Z".into(),
                to: "2025-01-02T00:00:00.000000Z".into(),
                predicate: None,
                format: ExportFormat::Csv,
            },
            status,
            error: None,
            requested_at: now(),
            started_at: None,
            finished_at: None,
        }
    }

    #[test]
    fn after_a_restart_an_unfinished_export_is_failed_and_its_partial_files_removed() {
        let dir = tempfile::tempdir().unwrap();
        write_record(dir.path(), &record("running-one", Status::Running)).unwrap();
        write_record(dir.path(), &record("queued-one", Status::Queued)).unwrap();
        fs::create_dir(dir.path().join("running-one")).unwrap();
        fs::write(dir.path().join("running-one/part-00000.csv"), "a\n1\n").unwrap();
        fs::write(dir.path().join("running-one/.part-00001.csv.tmp"), "a\n").unwrap();
        fs::write(dir.path().join(".x.job.json.tmp"), "{").unwrap();

        let jobs = recover(dir.path()).unwrap();
        for id in ["running-one", "queued-one"] {
            let r = &jobs[id].record;
            assert_eq!(r.status, Status::Failed, "{id}");
            assert!(
                r.error.as_deref().unwrap().starts_with("interrupted"),
                "{id}"
            );
        }
        assert_eq!(
            fs::read_dir(dir.path().join("running-one"))
                .unwrap()
                .count(),
            0
        );
        assert!(!dir.path().join(".x.job.json.tmp").exists());
        // And it stays failed across the next restart.
        let again = recover(dir.path()).unwrap();
        assert_eq!(again["running-one"].record.status, Status::Failed);
    }
}
