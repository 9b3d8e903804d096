//! Running one export: the query in a session scoped to the requested
//! tenant, its batches into part files on a blocking thread (a channel of
//! two batches between them keeps memory bounded), the scanned lake files
//! hashed alongside, then the signed manifest.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow::array::RecordBatch;
use chrono::{DateTime, Utc};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::ExecutionPlan;
use futures::StreamExt;
use parquet::file::reader::{FileReader, SerializedFileReader};
use sha2::{Digest, Sha256};
use tooltrail_lake::Location;
use tooltrail_lake::digest::hash_object;
use tooltrail_schemas::signing::Signer;

use super::ExportError;
use super::manifest::{
    ALGORITHM, MANIFEST_VERSION, Manifest, RequestedBy, Scope, SourceFile, Totals,
};
use super::parts::PartWriter;
use super::request::ExportRequest;
use crate::auth::{Principal, Tenants};
use crate::engine::Engine;
use crate::error::QueryError;

/// How far an export has got; shared with whoever shows it.
#[derive(Debug, Default)]
pub struct Progress {
    pub rows: AtomicU64,
    pub bytes: AtomicU64,
    pub parts: AtomicU64,
    /// Lake files the query scans (known once it is planned).
    pub source_files: AtomicU64,
    /// Rows in those files' Parquet footers, over every tenant and the whole
    /// of each file: an upper bound for a progress bar. Only counted when
    /// [`ExportJob::count_source_rows`] is set (the CLI), since it describes
    /// rows outside the principal's tenant.
    pub source_rows: AtomicU64,
}

impl Progress {
    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// One export to run.
pub struct ExportJob<'a> {
    pub engine: &'a Engine,
    /// The lake the engine reads.
    pub lake: &'a Location,
    pub signer: &'a Signer,
    pub export_id: &'a str,
    pub request: &'a ExportRequest,
    /// Who asked; the query runs as this name and role, restricted to the
    /// request's tenant.
    pub requested_by: &'a Principal,
    pub requested_at: DateTime<Utc>,
    /// The export directory: exists and is empty.
    pub dir: &'a Path,
    pub part_max_rows: u64,
    pub timeout: Duration,
    pub count_source_rows: bool,
}

/// Runs `job`; the signed manifest when every file is in place. On failure
/// the directory is emptied.
pub async fn run_export(
    job: ExportJob<'_>,
    progress: Arc<Progress>,
) -> Result<Manifest, ExportError> {
    let result = write_export(&job, progress).await;
    if result.is_err() {
        remove_contents(job.dir);
    }
    result
}

async fn write_export(
    job: &ExportJob<'_>,
    progress: Arc<Progress>,
) -> Result<Manifest, ExportError> {
    let request = job.request;
    let scoped = Principal {
        name: job.requested_by.name.clone(),
        role: job.requested_by.role,
        tenants: Tenants::Only([request.tenant_id.clone()].into()),
    };
    let sql = request.sql(job.export_id);
    let started_at = Utc::now();
    let mut stream = job
        .engine
        .execute_export(&scoped, &sql, job.timeout)
        .await
        .map_err(|e| timeout_as_export(e, job.timeout))?;
    let query_id = stream.query_id().to_owned();

    let sources = scanned_files(stream.physical_plan(), job.lake)?;
    progress
        .source_files
        .store(sources.len() as u64, Ordering::Relaxed);
    // Footers are read from the disk of a local lake only: the count is a
    // progress bar's bound, not worth a request per file to object storage.
    if let Some(dir) = job.lake.local_dir().filter(|_| job.count_source_rows) {
        let (files, progress) = (sources.clone(), Arc::clone(&progress));
        tokio::task::spawn_blocking(move || {
            for (path, _) in files {
                let rows = fs::File::open(dir.join(&path))
                    .ok()
                    .and_then(|f| SerializedFileReader::new(f).ok())
                    .map_or(0, |r| r.metadata().file_metadata().num_rows().max(0) as u64);
                progress.source_rows.fetch_add(rows, Ordering::Relaxed);
            }
        });
    }
    let hashing = tokio::spawn(hash_sources(job.lake.clone(), sources));

    let (tx, mut rx) = tokio::sync::mpsc::channel::<RecordBatch>(2);
    let writer = {
        let (dir, format, max_rows) = (job.dir.to_owned(), request.format, job.part_max_rows);
        let (schema, progress) = (stream.schema(), Arc::clone(&progress));
        tokio::task::spawn_blocking(move || {
            let mut parts = PartWriter::new(&dir, format, max_rows, &schema);
            while let Some(batch) = rx.blocking_recv() {
                parts.write(&batch)?;
                progress.rows.store(parts.rows(), Ordering::Relaxed);
                progress.bytes.store(parts.bytes(), Ordering::Relaxed);
                progress
                    .parts
                    .store(parts.parts() as u64, Ordering::Relaxed);
            }
            parts.finish()
        })
    };
    let mut failed = None;
    while let Some(batch) = stream.next().await {
        match batch {
            Ok(batch) if batch.num_rows() == 0 => {}
            Ok(batch) => {
                if tx.send(batch).await.is_err() {
                    break; // the writer failed: its error follows
                }
            }
            Err(e) => {
                failed = Some(timeout_as_export(e, job.timeout));
                break;
            }
        }
    }
    drop(tx);
    let parts = writer
        .await
        .map_err(|e| ExportError::Internal(format!("part writer: {e}")))?;
    if let Some(e) = failed {
        return Err(e);
    }
    let parts = parts?;
    drop(stream);
    let source_files = hashing
        .await
        .map_err(|e| ExportError::Internal(format!("hashing source files: {e}")))??;
    progress.parts.store(parts.len() as u64, Ordering::Relaxed);

    let manifest = Manifest {
        manifest_version: MANIFEST_VERSION,
        export_id: job.export_id.to_owned(),
        requested_by: RequestedBy {
            principal: job.requested_by.name.clone(),
            role: job.requested_by.role.to_string(),
        },
        scope: Scope {
            tenant_id: request.tenant_id.clone(),
            from: tooltrail_schemas::format_time(&request.from),
            to: tooltrail_schemas::format_time(&request.to),
        },
        predicate: request.predicate.clone(),
        format: request.format,
        sql_sha256: hex::encode(Sha256::digest(sql.as_bytes())),
        sql,
        query_id,
        tooltrail_version: env!("CARGO_PKG_VERSION").to_owned(),
        source_files,
        totals: Totals::of(&parts),
        parts,
        requested_at: tooltrail_schemas::format_time(&job.requested_at),
        started_at: tooltrail_schemas::format_time(&started_at),
        finished_at: tooltrail_schemas::format_time(&Utc::now()),
        key_id: job.signer.key_id().to_string(),
        signature_algorithm: ALGORITHM.to_owned(),
    };
    let (dir, signer, signed) = (job.dir.to_owned(), job.signer.clone(), manifest.clone());
    tokio::task::spawn_blocking(move || signed.write_signed(&dir, &signer))
        .await
        .map_err(|e| ExportError::Internal(format!("writing the manifest: {e}")))??;
    Ok(manifest)
}

fn timeout_as_export(e: QueryError, timeout: Duration) -> ExportError {
    match e {
        QueryError::Timeout(_) => ExportError::Timeout(timeout),
        e => ExportError::Query(e),
    }
}

/// The files the plan's scans read: (path relative to the lake, size the
/// plan saw), sorted, each once.
pub fn scanned_files(
    plan: &Arc<dyn ExecutionPlan>,
    lake: &Location,
) -> Result<Vec<(String, u64)>, ExportError> {
    let mut found = BTreeMap::new();
    let mut stack = vec![plan];
    while let Some(node) = stack.pop() {
        if let Some(scan) = node
            .downcast_ref::<DataSourceExec>()
            .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
        {
            for group in &scan.file_groups {
                for file in group.files() {
                    let object = file.object_meta.location.as_ref();
                    let relative = lake.relative(object).ok_or_else(|| {
                        ExportError::Internal(format!(
                            "the plan reads {object}, outside the lake {lake}"
                        ))
                    })?;
                    found.insert(relative, file.object_meta.size);
                }
            }
        }
        stack.extend(node.children());
    }
    Ok(found.into_iter().collect())
}

/// Each file's SHA-256, read back from the lake's store; a file that is
/// gone or changed since the plan fails the export.
async fn hash_sources(
    lake: Location,
    files: Vec<(String, u64)>,
) -> Result<Vec<SourceFile>, ExportError> {
    let store = lake.root_store().map_err(lake_error)?;
    let mut out = Vec::with_capacity(files.len());
    for (path, planned) in files {
        let hashed = hash_object(store.as_ref(), &path)
            .await
            .map_err(|e| ExportError::Internal(format!("hashing lake file {path}: {e}")))?
            .ok_or_else(|| {
                ExportError::Internal(format!("lake file {path} vanished while it was exported"))
            })?;
        if hashed.bytes != planned {
            return Err(ExportError::Internal(format!(
                "lake file {path} changed while it was exported ({planned} bytes when planned, {} now)",
                hashed.bytes
            )));
        }
        out.push(SourceFile {
            path,
            bytes: hashed.bytes,
            sha256: hashed.sha256,
        });
    }
    Ok(out)
}

fn lake_error(e: tooltrail_lake::Error) -> ExportError {
    ExportError::Internal(format!("reading the lake: {e}"))
}

/// Empties a failed export's directory.
fn remove_contents(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if let Err(e) = fs::remove_file(entry.path()) {
            tracing::warn!(path = %entry.path().display(), error = %e, "could not remove a failed export's file");
        }
    }
}

/// The directory an export may be written to: created if missing, refused
/// if it holds anything.
pub fn prepare_dir(dir: &Path) -> Result<(), ExportError> {
    fs::create_dir_all(dir).map_err(ExportError::io(dir))?;
    let mut entries = fs::read_dir(dir).map_err(ExportError::io(dir))?;
    if entries.next().is_some() {
        return Err(ExportError::Invalid {
            field: "out",
            problem: format!("{} is not empty", dir.display()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use tooltrail_ingest::batch::{Pending, TimeWindow};
    use tooltrail_ingest::metrics::Metrics;
    use tooltrail_lake::{Location, Writer};
    use tooltrail_schemas::lake::Source;
    use tooltrail_schemas::signing::Keyring;

    use super::*;
    use crate::config::QueryConfig;
    use crate::export::{ExportFormat, verify_dir};
    use crate::metrics::QueryMetrics;

    /// `n` events of `tenant` in `hour` of 2026-11-22, every 4th denied.
    async fn write_events(lake: &mut Writer, tenant: &str, n: usize, hour: u32) {
        let mut pending = Pending::new(TimeWindow {
            max_age: Duration::from_secs(10 * 365 * 86400),
            max_future: Duration::from_secs(365 * 86400),
        });
        let received = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
        for i in 0..n {
            let status = if i % 4 == 0 { 403 } else { 200 };
            let line = format!(
                r#"{{"schema_version":1,"event_id":"{tenant}-{hour}-{i}","time":"2026-11-22T{hour:02}:{:02}:00Z","tenant_id":"{tenant}","user_id":"u{}","server":"github","method":"tools/call","tool":"search","decision":"allow","status":{status},"scopes":["a"],"attributes":{{"k":"v"}}}}"#,
                i % 60,
                i % 3
            );
            let source = Source::File {
                path: "test",
                line: i as i64,
            };
            pending.push(line.as_bytes(), received, source).unwrap();
        }
        let metrics = Metrics::register(&mut Default::default());
        pending.commit_to(lake, &metrics, "file").await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exports_one_tenants_range_lists_only_the_files_scanned_and_verifies() {
        let lake_dir = tempfile::tempdir().unwrap();
        let location = Location::local(lake_dir.path()).unwrap();
        let mut lake = Writer::open(&location, 1, Default::default())
            .await
            .unwrap();
        for (tenant, hour) in [("acme", 9), ("globex", 9), ("acme", 10)] {
            write_events(&mut lake, tenant, 40, hour).await;
        }
        let spill = lake_dir.path().join("spill");
        let engine = Engine::open(
            &location,
            &QueryConfig::default(),
            &spill,
            QueryMetrics::unregistered(),
        )
        .unwrap();
        let request = ExportRequest::new(
            "acme",
            "2026-11-22T09:00:00Z",
            "2026-11-22T10:00:00Z",
            Some("status >= 400"),
            ExportFormat::Ndjson,
        )
        .unwrap();
        let out = tempfile::tempdir().unwrap();
        let signer = Signer::from_seed([9; 32]);
        let progress = Arc::new(Progress::default());
        let job = ExportJob {
            engine: &engine,
            lake: &location,
            signer: &signer,
            export_id: "test-export",
            request: &request,
            requested_by: &Principal::local_operator(),
            requested_at: Utc::now(),
            dir: out.path(),
            part_max_rows: 4,
            timeout: Duration::from_secs(60),
            count_source_rows: true,
        };
        let manifest = run_export(job, Arc::clone(&progress)).await.unwrap();
        assert_eq!((manifest.totals.rows, manifest.totals.parts), (10, 3));
        assert_eq!(progress.rows(), 10);
        // Only hour 09 is scanned; its files hold globex's rows too.
        assert!(!manifest.source_files.is_empty());
        for file in &manifest.source_files {
            assert!(
                file.path.starts_with("events/dt=2026-11-22/hour=09/"),
                "{}",
                file.path
            );
            let (sha256, bytes) =
                super::super::parts::hash_file(&lake_dir.path().join(&file.path)).unwrap();
            assert_eq!((sha256, bytes), (file.sha256.clone(), file.bytes));
        }
        assert_eq!(
            progress.source_files.load(Ordering::Relaxed),
            manifest.source_files.len() as u64
        );
        for part in &manifest.parts {
            let text = fs::read_to_string(out.path().join(&part.name)).unwrap();
            for line in text.lines() {
                let row: serde_json::Value = serde_json::from_str(line).unwrap();
                assert_eq!(
                    (row["tenant_id"].as_str(), row["status"].as_i64()),
                    (Some("acme"), Some(403))
                );
            }
        }
        assert!(
            manifest
                .sql
                .starts_with("/* tooltrail export test-export */")
        );
        let keyring = Keyring::new(vec![signer.public_key().clone()]);
        let verification = verify_dir(out.path(), &keyring);
        assert!(verification.is_ok(), "{:?}", verification.findings);
    }
}
