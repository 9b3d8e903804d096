//! Exports as asynchronous jobs (the HTTP API): a queue in front of at most
//! `max_concurrent` running exports, status that survives a restart (see
//! [`super::store`]), and deletion of exports older than `keep_for`.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tooltrail_schemas::signing::{PublicKey, Signer};

use super::job::{ExportJob, Progress, run_export};
use super::manifest::{Manifest, RequestedBy};
use super::metrics::{ExportMetrics, OutcomeLabel};
use super::request::ExportRequest;
use super::store::{JOB_SUFFIX, Job, JobRecord, Status, now, parse_time, recover, write_record};
use super::{ExportError, MANIFEST, MANIFEST_SIG};
use crate::auth::{Principal, Role, Tenants};
use crate::config::ExportConfig;
use crate::engine::Engine;
use crate::error::QueryError;

/// What the service needs; `up` builds it.
pub struct ServiceSettings {
    pub engine: Engine,
    /// The lake the engine reads.
    pub lake: tooltrail_lake::Location,
    /// Where exports are written (`<data-dir>/exports`).
    pub dir: PathBuf,
    pub signer: Signer,
    /// Earlier keys whose signatures still verify, published as not current.
    pub previous_keys: Vec<PublicKey>,
    pub config: ExportConfig,
    pub metrics: ExportMetrics,
}

/// The export jobs. Cheap to clone.
#[derive(Clone)]
pub struct ExportService {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ServiceSettings,
    jobs: Mutex<BTreeMap<String, Job>>,
    slots: Arc<Semaphore>,
}

/// Whether `principal` may export, or read the exports of, `tenant`.
pub fn authorize(principal: &Principal, tenant: Option<&str>) -> Result<(), ExportError> {
    if principal.role < Role::Auditor {
        return Err(ExportError::Forbidden(format!(
            "{} ({}) may not export: exports need the auditor or admin role",
            principal.name, principal.role
        )));
    }
    if let Some(tenant) = tenant
        && !principal.tenants.allows(tenant)
    {
        return Err(ExportError::Forbidden(format!(
            "{} ({}) may not export tenant {tenant:?}: the token covers {}",
            principal.name,
            principal.role,
            principal.tenants.names().join(", ")
        )));
    }
    Ok(())
}

impl ExportService {
    /// Opens the exports directory and recovers the jobs it records.
    pub fn open(settings: ServiceSettings) -> Result<ExportService, ExportError> {
        let dir = &settings.dir;
        fs::create_dir_all(dir).map_err(ExportError::io(dir))?;
        let jobs = recover(dir)?;
        let slots = Arc::new(Semaphore::new(settings.config.max_concurrent));
        Ok(ExportService {
            inner: Arc::new(Inner {
                settings,
                jobs: Mutex::new(jobs),
                slots,
            }),
        })
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Job>> {
        self.inner.jobs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.settings.engine
    }

    /// Checks and queues an export; its status.
    pub async fn create(&self, principal: &Principal, body: &[u8]) -> Result<Value, ExportError> {
        let s = &self.inner.settings;
        authorize(principal, None)?;
        let request = ExportRequest::from_json(body)?;
        authorize(principal, Some(&request.tenant_id))?;
        let export_id = super::new_export_id();
        // Plan it now, so that a predicate naming no column or not boolean
        // is a 400 rather than a failed job.
        let scoped = Principal {
            tenants: Tenants::Only([request.tenant_id.clone()].into()),
            ..principal.clone()
        };
        s.engine
            .describe(&scoped, &request.sql(&export_id))
            .await
            .map_err(|e| match e {
                QueryError::Sql(problem) | QueryError::ReadOnly(problem)
                    if request.predicate.is_some() =>
                {
                    ExportError::Invalid {
                        field: "where",
                        problem,
                    }
                }
                e => ExportError::Query(e),
            })?;
        let record = JobRecord {
            job_version: 1,
            export_id: export_id.clone(),
            requested_by: RequestedBy {
                principal: principal.name.clone(),
                role: principal.role.to_string(),
            },
            request: request.record(),
            status: Status::Queued,
            error: None,
            requested_at: now(),
            started_at: None,
            finished_at: None,
        };
        {
            let mut jobs = self.jobs();
            let queued = jobs
                .values()
                .filter(|j| j.record.status == Status::Queued)
                .count();
            if self.inner.slots.available_permits() == 0 && queued >= s.config.max_queued {
                return Err(ExportError::Busy(format!(
                    "{} exports are running and {queued} are queued (query.exports.max_concurrent, max_queued); retry later",
                    s.config.max_concurrent
                )));
            }
            write_record(&s.dir, &record)?;
            let job = Job {
                record: record.clone(),
                progress: Arc::new(Progress::default()),
            };
            jobs.insert(export_id.clone(), job.clone());
            s.metrics.queued.inc();
        }
        let service = self.clone();
        let principal = principal.clone();
        tokio::spawn(async move { service.run_job(export_id, request, principal).await });
        Ok(self.view(&record, &Progress::default(), None))
    }

    async fn run_job(&self, id: String, request: ExportRequest, principal: Principal) {
        let s = &self.inner.settings;
        let permit = Arc::clone(&self.inner.slots).acquire_owned().await;
        s.metrics.queued.dec();
        let started = tokio::time::Instant::now();
        let Some(progress) = self.update(&id, |r| {
            r.status = Status::Running;
            r.started_at = Some(now());
        }) else {
            return;
        };
        s.metrics.running.inc();
        let requested_at = self
            .jobs()
            .get(&id)
            .and_then(|j| parse_time(&j.record.requested_at))
            .unwrap_or_else(Utc::now);
        let dir = s.dir.join(&id);
        let result = async {
            fs::create_dir_all(&dir).map_err(ExportError::io(&dir))?;
            loop {
                let job = ExportJob {
                    engine: &s.engine,
                    lake: &s.lake,
                    signer: &s.signer,
                    export_id: &id,
                    request: &request,
                    requested_by: &principal,
                    requested_at,
                    dir: &dir,
                    part_max_rows: s.config.part_max_rows,
                    timeout: s.config.timeout.saturating_sub(started.elapsed()),
                    count_source_rows: false,
                };
                match run_export(job, Arc::clone(&progress)).await {
                    // The query slots are taken: wait for one, within the timeout.
                    Err(ExportError::Query(QueryError::Busy(_)))
                        if started.elapsed() + Duration::from_secs(1) < s.config.timeout =>
                    {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    other => return other,
                }
            }
        }
        .await;
        drop(permit);
        s.metrics.running.dec();
        match &result {
            Ok(manifest) => {
                s.metrics
                    .exports
                    .get_or_create(&OutcomeLabel { outcome: "done" })
                    .inc();
                s.metrics.rows.inc_by(manifest.totals.rows);
                s.metrics.bytes.inc_by(manifest.totals.bytes);
                tracing::info!(export_id = %id, rows = manifest.totals.rows, parts = manifest.totals.parts, "export done");
            }
            Err(e) => {
                s.metrics
                    .exports
                    .get_or_create(&OutcomeLabel {
                        outcome: e.outcome(),
                    })
                    .inc();
                tracing::warn!(export_id = %id, error = %e, "export failed");
            }
        }
        self.update(&id, |r| {
            r.finished_at = Some(now());
            match &result {
                Ok(_) => r.status = Status::Done,
                Err(e) => {
                    r.status = Status::Failed;
                    r.error = Some(e.to_string());
                }
            }
        });
    }

    /// Changes a job's record, in memory and on disk; its progress.
    fn update(&self, id: &str, change: impl FnOnce(&mut JobRecord)) -> Option<Arc<Progress>> {
        let mut jobs = self.jobs();
        let job = jobs.get_mut(id)?;
        change(&mut job.record);
        if let Err(e) = write_record(&self.inner.settings.dir, &job.record) {
            tracing::error!(export_id = id, error = %e, "export status not written");
        }
        Some(Arc::clone(&job.progress))
    }

    /// The status of export `id`, with its manifest once done.
    ///
    /// A finished export's status also says whether it verifies now: its
    /// manifest's signature by a key of this server (current or previous)
    /// and every part's size and SHA-256 (`verification`: `ok` and the
    /// findings, as `tooltrail export --verify` prints them).
    pub async fn status(&self, principal: &Principal, id: &str) -> Result<Value, ExportError> {
        let job = self.visible(principal, id)?;
        let checked = match job.record.status {
            Status::Done => {
                let dir = self.inner.settings.dir.join(id);
                let settings = &self.inner.settings;
                let keyring = tooltrail_schemas::signing::Keyring::new(
                    std::iter::once(settings.signer.public_key().clone())
                        .chain(settings.previous_keys.iter().cloned())
                        .collect(),
                );
                let read = tokio::task::spawn_blocking(move || {
                    Manifest::read(&dir).map(|m| (m, crate::export::verify_dir(&dir, &keyring)))
                })
                .await
                .map_err(|e| ExportError::Internal(e.to_string()))?;
                Some(read.map_err(ExportError::Internal)?)
            }
            _ => None,
        };
        let mut view = self.view(
            &job.record,
            &job.progress,
            checked.as_ref().map(|(manifest, _)| manifest),
        );
        if let Some((_, verification)) = &checked {
            let findings: Vec<String> = verification
                .findings
                .iter()
                .map(ToString::to_string)
                .collect();
            view["verification"] = json!({"ok": verification.is_ok(), "findings": findings});
        }
        Ok(view)
    }

    /// The exports `principal` may read, newest first, without manifests.
    pub fn list(&self, principal: &Principal) -> Result<Value, ExportError> {
        authorize(principal, None)?;
        let jobs: Vec<Job> = self.jobs().values().rev().cloned().collect();
        let views: Vec<Value> = jobs
            .iter()
            .filter(|j| principal.tenants.allows(&j.record.request.tenant_id))
            .map(|j| self.view(&j.record, &j.progress, None))
            .collect();
        Ok(json!({ "exports": views }))
    }

    /// The path of file `name` of export `id`: a part, the manifest or its
    /// signature, once the export is done.
    pub async fn file(
        &self,
        principal: &Principal,
        id: &str,
        name: &str,
    ) -> Result<PathBuf, ExportError> {
        let job = self.visible(principal, id)?;
        if job.record.status != Status::Done {
            return Err(ExportError::NotFound(format!(
                "export {id} is {:?}: its files are available once it is done",
                job.record.status
            )));
        }
        let dir = self.inner.settings.dir.join(id);
        let listed = name == MANIFEST || name == MANIFEST_SIG || {
            let manifest = dir.join(MANIFEST);
            let bytes = tokio::fs::read(&manifest)
                .await
                .map_err(ExportError::io(&manifest))?;
            let manifest: Manifest = serde_json::from_slice(&bytes)
                .map_err(|e| ExportError::Internal(format!("{}: {e}", manifest.display())))?;
            manifest.parts.iter().any(|p| p.name == name)
        };
        if !listed {
            return Err(ExportError::NotFound(format!(
                "export {id} has no file {name:?}"
            )));
        }
        Ok(dir.join(name))
    }

    /// `GET /v1/keys`: the public keys that verify manifests.
    pub fn keys(&self) -> Value {
        let s = &self.inner.settings;
        let entry = |key: &PublicKey, current: bool| {
            json!({
                "key_id": key.key_id().to_string(),
                "algorithm": super::manifest::ALGORITHM,
                "public_key_pem": key.to_pem(),
                "public_key_hex": key.to_hex(),
                "current": current,
            })
        };
        let mut keys = vec![entry(s.signer.public_key(), true)];
        keys.extend(
            s.previous_keys
                .iter()
                .filter(|k| k.key_id() != s.signer.key_id())
                .map(|k| entry(k, false)),
        );
        json!({ "keys": keys })
    }

    fn visible(&self, principal: &Principal, id: &str) -> Result<Job, ExportError> {
        authorize(principal, None)?;
        let job = self
            .jobs()
            .get(id)
            .cloned()
            .ok_or_else(|| ExportError::NotFound(format!("no export {id:?}")))?;
        let tenant = &job.record.request.tenant_id;
        if !principal.tenants.allows(tenant) {
            return Err(ExportError::Forbidden(format!(
                "{} ({}) may not read export {id}: it is of tenant {tenant:?}",
                principal.name, principal.role
            )));
        }
        Ok(job)
    }

    fn view(&self, r: &JobRecord, progress: &Progress, manifest: Option<&Manifest>) -> Value {
        let id = &r.export_id;
        let base = format!("/v1/exports/{id}");
        let mut files = serde_json::Map::new();
        if let Some(m) = manifest {
            for name in m
                .parts
                .iter()
                .map(|p| p.name.as_str())
                .chain([MANIFEST, MANIFEST_SIG])
            {
                files.insert(name.to_owned(), json!(format!("{base}/files/{name}")));
            }
        }
        let (rows, bytes, parts) = match manifest {
            Some(m) => (m.totals.rows, m.totals.bytes, m.totals.parts),
            None => (
                progress.rows(),
                progress.bytes(),
                progress.parts.load(Ordering::Relaxed),
            ),
        };
        let mut view = json!({
            "id": id,
            "status": r.status,
            "request": r.request,
            "requested_by": r.requested_by,
            "requested_at": r.requested_at,
            "started_at": r.started_at,
            "finished_at": r.finished_at,
            "progress": {"rows": rows, "bytes": bytes, "parts": parts},
            "links": {"self": base, "files": files},
        });
        if let Some(error) = &r.error {
            view["error"] = json!(error);
        }
        if let Some(m) = manifest {
            view["manifest"] = serde_json::to_value(m).expect("a manifest serializes");
        }
        view
    }

    /// Deletes finished exports older than `keep_for`.
    pub fn sweep(&self) {
        let s = &self.inner.settings;
        let keep = chrono::Duration::from_std(s.config.keep_for).unwrap_or(chrono::Duration::MAX);
        let now = Utc::now();
        let old: Vec<String> = self
            .jobs()
            .values()
            .filter(|j| matches!(j.record.status, Status::Done | Status::Failed))
            .filter(|j| {
                j.record
                    .finished_at
                    .as_deref()
                    .and_then(parse_time)
                    .is_some_and(|t| now.signed_duration_since(t) > keep)
            })
            .map(|j| j.record.export_id.clone())
            .collect();
        for id in old {
            let dir = s.dir.join(&id);
            let removed = match fs::remove_dir_all(&dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => match fs::remove_file(s.dir.join(format!("{id}{JOB_SUFFIX}"))) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                    _ => Ok(()),
                },
            };
            match removed {
                Ok(()) => {
                    self.jobs().remove(&id);
                    tracing::info!(export_id = %id, "deleted an export past query.exports.keep_for");
                }
                Err(e) => {
                    tracing::warn!(export_id = %id, error = %e, "could not delete an old export")
                }
            }
        }
    }

    /// Sweeps old exports now and then until `shutdown`.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let every = (self.inner.settings.config.keep_for / 10)
            .clamp(Duration::from_secs(10), Duration::from_secs(600));
        tokio::pin!(shutdown);
        loop {
            let service = self.clone();
            let _ = tokio::task::spawn_blocking(move || service.sweep()).await;
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_auditors_and_admins_of_the_tenant_may_export() {
        let principal = |role, tenants: &[&str]| Principal {
            name: "p".into(),
            role,
            tenants: Tenants::Only(tenants.iter().map(|t| t.to_string()).collect()),
        };
        assert!(authorize(&principal(Role::Analyst, &["acme"]), Some("acme")).is_err());
        assert!(authorize(&principal(Role::Auditor, &["acme"]), Some("acme")).is_ok());
        let err = authorize(&principal(Role::Admin, &["globex"]), Some("acme")).unwrap_err();
        assert_eq!(err.http_status(), 403);
        assert!(err.to_string().contains("covers globex"), "{err}");
        let all = Principal::local_operator();
        assert!(authorize(&all, Some("anyone")).is_ok());
    }
}
