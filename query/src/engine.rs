//! The engine every transport shares (HTTP, Postgres wire, the CLI): admits a
//! query under the limits, audits it, checks it ([`inspect`]), plans it
//! read-only in the principal's session and streams its batches under a
//! deadline.
//!
//! Parsing, planning and execution run on the engine's own runtime
//! ([`runtime`]), in one task per query that hands batches back over a small
//! bounded channel. The deadline is kept on the caller's runtime, so a busy
//! query runtime cannot delay a timeout; when the deadline passes or the
//! caller drops the stream, the task is aborted, which drops DataFusion's
//! stream and with it the tasks DataFusion spawned for the query.

mod inspect;
mod probes;
mod recursion;
mod runtime;
mod shares;
mod slices;

use shares::Share;

pub use inspect::TOKEN_FACTOR;
pub use runtime::STACK_BYTES;

use std::collections::HashMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use chrono::Utc;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::sqlparser::dialect::dialect_from_str;
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::runtime::Handle;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::AbortHandle;
use tokio_util::task::TaskTracker;

use crate::audit::{AuditLog, AuditRecord, describe};
use crate::auth::{Principal, Role, TokenStore};
use crate::config::QueryConfig;
use crate::error::QueryError;
use crate::functions;
use crate::metrics::QueryMetrics;
use crate::optimizer;
use crate::session::Sessions;
use crate::tables::{LakeTables, Table};
use tooltrail_lake::Location;

/// Where a query came from, as the audit records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Http,
    Pgwire,
    Cli,
    /// A signed compliance export ([`crate::export`]).
    Export,
    /// A read of the alerts API or the console ([`crate::alerts`]).
    Api,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Pgwire => "pgwire",
            Transport::Cli => "cli",
            Transport::Export => "export",
            Transport::Api => "api",
        }
    }
}

/// The shared query engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: QueryConfig,
    tokens: TokenStore,
    sessions: Arc<Sessions>,
    runtime: runtime::QueryRuntime,
    /// Running queries' accounts: the one with the least work goes first.
    lanes: Arc<shares::Lanes>,
    audit: Arc<AuditLog>,
    /// The end records being appended; [`Engine::settle_audit`] waits for them.
    audit_writes: TaskTracker,
    running: Arc<Semaphore>,
    per_principal: Mutex<HashMap<String, Arc<Semaphore>>>,
    metrics: QueryMetrics,
}

impl Engine {
    /// An engine over the lake at `lake`, spilling under `spill_dir`.
    /// `config` must have passed [`QueryConfig::validate`].
    pub fn open(
        lake: &Location,
        config: &QueryConfig,
        spill_dir: &Path,
        metrics: QueryMetrics,
    ) -> Result<Engine, QueryError> {
        std::fs::create_dir_all(spill_dir)
            .map_err(|e| QueryError::Internal(format!("{}: {e}", spill_dir.display())))?;
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(config.memory_limit_bytes)))
            .with_disk_manager_builder(
                DiskManagerBuilder::default()
                    .with_mode(DiskManagerMode::Directories(vec![spill_dir.to_owned()])),
            )
            .build_arc()?;
        let mut session = SessionConfig::new().with_information_schema(true);
        {
            let options = session.options_mut();
            options.execution.parquet.pushdown_filters = true;
            options.execution.parquet.reorder_filters = true;
            // Every hash join builds one table from its whole build side
            // (`CollectLeft`), whose keys' bounds and values then prune the
            // probe side's files, row groups and pages as it is read (the
            // join's dynamic filter). A partitioned join's filter routes
            // each row by a hash of its key (`CASE hash(key) % n WHEN …`),
            // which no statistics can prune with, and DataFusion partitions
            // any join whose build side it cannot size: alerts' evidence
            // joined to events read all of a tenant's events (970 ms, now
            // 130 ms). The build side takes the same memory either way; it
            // is hashed on one thread.
            options.optimizer.repartition_joins = false;
            options.explain.show_statistics = false;
        }
        let builder = SessionStateBuilder::new()
            .with_config(session)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(recursion::LimitRecursion {
                max: config.max_recursion_depth,
            }))
            .with_physical_optimizer_rule(Arc::new(probes::ChunkProbes))
            .with_physical_optimizer_rule(Arc::new(slices::TimeSlices));
        let mut base = optimizer::install(builder).build();
        functions::restrict(&mut base, config.max_function_output)?;
        let tables = LakeTables::new(lake)?;
        let threads = config.threads.unwrap_or_else(runtime::default_threads);
        let query_runtime = runtime::QueryRuntime::new(threads)?;
        let audit = open_audit(lake, &query_runtime)?;
        Ok(Engine {
            inner: Arc::new(Inner {
                config: config.clone(),
                tokens: TokenStore::new(&config.tokens),
                sessions: Arc::new(Sessions::new(base, tables)?),
                runtime: query_runtime,
                lanes: Arc::default(),
                audit: Arc::new(audit),
                audit_writes: TaskTracker::new(),
                running: Arc::new(Semaphore::new(config.max_concurrent)),
                per_principal: Mutex::new(HashMap::new()),
                metrics,
            }),
        })
    }

    /// Waits until the end record of every query that has finished is
    /// committed to the query audit: for a shutdown, or a command that
    /// exits after its query.
    pub async fn settle_audit(&self) {
        let writes = &self.inner.audit_writes;
        writes.close();
        writes.wait().await;
        writes.reopen();
    }

    pub fn config(&self) -> &QueryConfig {
        &self.inner.config
    }

    pub fn metrics(&self) -> &QueryMetrics {
        &self.inner.metrics
    }

    /// The principal holding `token`.
    pub fn authenticate(&self, token: &str) -> Result<Principal, QueryError> {
        let found = self.inner.tokens.authenticate(token);
        if found.is_none() {
            self.inner.metrics.auth_failures.inc();
        }
        found.ok_or(QueryError::Unauthorized)
    }

    /// The tables `principal` may query.
    pub fn tables(&self, principal: &Principal) -> Vec<Table> {
        Table::ALL
            .into_iter()
            .filter(|t| Sessions::may_read(principal, *t))
            .collect()
    }

    /// The schema of `name`, as `principal` sees it.
    pub fn table_schema(&self, principal: &Principal, name: &str) -> Result<SchemaRef, QueryError> {
        let table = Table::from_name(name)
            .ok_or_else(|| QueryError::NotFound(format!("no table named {name:?}")))?;
        if !Sessions::may_read(principal, table) {
            return Err(forbidden_table(principal, table));
        }
        Ok(self.inner.sessions.schema(table))
    }

    /// The schema `sql` would return, without running it (the Postgres
    /// wire's Describe). Not audited: nothing is read.
    pub async fn describe(
        &self,
        principal: &Principal,
        sql: &str,
    ) -> Result<SchemaRef, QueryError> {
        self.check_len(sql)?;
        let job = self.job(principal, sql, true);
        let runtime = self.inner.runtime.handle();
        let task = runtime.spawn(runtime::off_workers(runtime.clone(), async move {
            let ctx = job.session()?;
            let plan = job.plan(&ctx).await?;
            Ok(Arc::new(plan.schema().as_arrow().clone()) as SchemaRef)
        }));
        let _abort = AbortOnDrop(task.abort_handle());
        match tokio::time::timeout(self.inner.config.timeout, task).await {
            Ok(Ok(schema)) => schema,
            Ok(Err(e)) => Err(task_failed(e)),
            Err(_) => Err(QueryError::Timeout(self.inner.config.timeout)),
        }
    }

    /// Runs `sql` for `principal`. The start of the query is in the audit
    /// before this returns; the end is recorded when the stream finishes, fails
    /// or is dropped. `capped` applies the interactive row cap.
    pub async fn execute(
        &self,
        principal: &Principal,
        sql: &str,
        transport: Transport,
        capped: bool,
    ) -> Result<QueryStream, QueryError> {
        let row_cap = capped.then_some(self.inner.config.max_rows);
        self.start(
            principal,
            sql,
            transport,
            row_cap,
            self.inner.config.timeout,
        )
        .await
    }

    /// Runs `sql` for an export: like [`Engine::execute`], uncapped, under
    /// `timeout` rather than `query.timeout`, audited with transport `export`.
    /// [`QueryStream::physical_plan`] tells which lake files it reads.
    pub async fn execute_export(
        &self,
        principal: &Principal,
        sql: &str,
        timeout: std::time::Duration,
    ) -> Result<QueryStream, QueryError> {
        self.start(principal, sql, Transport::Export, None, timeout)
            .await
    }

    async fn start(
        &self,
        principal: &Principal,
        sql: &str,
        transport: Transport,
        row_cap: Option<usize>,
        timeout: std::time::Duration,
    ) -> Result<QueryStream, QueryError> {
        let inner = &self.inner;
        let admitted = self.check_len(sql).and_then(|()| self.admit(principal));
        let mut finish = self.audit_begin(principal, sql, transport);
        let permits = match admitted {
            Ok(permits) => permits,
            Err(e) => {
                // A refused query is recorded too, with why.
                self.audit_start(&finish).await?;
                finish.end(Err(&e), 0, 0);
                return Err(e);
            }
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let job = self.job(principal, sql, transport == Transport::Pgwire);
        let (opened_tx, opened) = oneshot::channel();
        let (batches_tx, batches) = mpsc::channel(2);
        let task = inner.runtime.handle().spawn(job.run(opened_tx, batches_tx));
        let task = AbortOnDrop(task.abort_handle());
        // The query plans and starts reading while its start record
        // commits, and no result leaves before that commit exists: no
        // unaudited query. If the record fails, the task is aborted.
        let (started, opened) = tokio::join!(
            self.audit_start(&finish),
            tokio::time::timeout_at(deadline, opened)
        );
        started?;
        let (schema, physical) = match opened {
            Ok(Ok(Ok(opened))) => opened,
            Ok(Ok(Err(e))) => {
                finish.end(Err(&e), 0, 0);
                return Err(e);
            }
            Ok(Err(_)) => {
                let e = QueryError::Internal(
                    "the query's task ended without an answer (see the log)".into(),
                );
                finish.end(Err(&e), 0, 0);
                return Err(e);
            }
            Err(_) => {
                let e = QueryError::Timeout(timeout);
                finish.end(Err(&e), 0, 0);
                return Err(e);
            }
        };
        inner.metrics.running.inc();
        Ok(QueryStream {
            schema,
            batches: Some(batches),
            task,
            physical,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
            timeout,
            row_cap,
            rows: 0,
            bytes: 0,
            truncated: false,
            finish,
            _permits: permits,
        })
    }

    /// Records a query refused before it reached [`Engine::execute`] (the
    /// HTTP body was over the size limit): start and end, with `error`.
    /// `sql` is what was read of it.
    pub async fn audit_refused(
        &self,
        principal: &Principal,
        sql: &str,
        transport: Transport,
        error: &QueryError,
    ) -> Result<(), QueryError> {
        let mut finish = self.audit_begin(principal, sql, transport);
        self.audit_start(&finish).await?;
        finish.end(Err(error), 0, 0);
        Ok(())
    }

    /// The audit records of a query about to start: what writes its end,
    /// holding the start record for [`Engine::audit_start`].
    fn audit_begin(&self, principal: &Principal, sql: &str, transport: Transport) -> Finish {
        let inner = &self.inner;
        Finish {
            audit: Arc::clone(&inner.audit),
            writes: inner.audit_writes.clone(),
            runtime: inner.runtime.handle().clone(),
            metrics: inner.metrics.clone(),
            record: AuditRecord {
                query_id: uuid::Uuid::now_v7().to_string(),
                phase: "start",
                time: Utc::now(),
                principal: principal.name.clone(),
                role: principal.role.to_string(),
                tenants: principal.tenants.names(),
                transport: transport.name(),
                sql: audit_text(sql, inner.config.max_sql_bytes),
                sql_sha256: hex::encode(Sha256::digest(sql.as_bytes())),
                outcome: None,
                error: None,
                rows: None,
                bytes: None,
                duration_ms: None,
            },
            started: Instant::now(),
            transport,
            done: false,
        }
    }

    /// Writes the start record of `finish`'s query; returns once it is
    /// durable.
    async fn audit_start(&self, finish: &Finish) -> Result<(), QueryError> {
        self.inner.audit.append(&finish.record).await.map_err(|e| {
            QueryError::Internal(format!("query audit is not writable: {}", describe(&e)))
        })?;
        Ok(())
    }

    /// What the query runtime needs to plan `sql` for `principal`.
    fn job(&self, principal: &Principal, sql: &str, pgwire: bool) -> Job {
        Job {
            sessions: Arc::clone(&self.inner.sessions),
            share: self.inner.lanes.join(),
            principal: principal.clone(),
            sql: sql.to_owned(),
            pgwire,
            max_depth: self.inner.config.max_expr_depth,
        }
    }

    fn check_len(&self, sql: &str) -> Result<(), QueryError> {
        let max = self.inner.config.max_sql_bytes;
        if sql.len() > max {
            return Err(QueryError::SqlTooLarge {
                len: sql.len(),
                max,
            });
        }
        Ok(())
    }

    fn admit(&self, principal: &Principal) -> Result<[OwnedSemaphorePermit; 2], QueryError> {
        let inner = &self.inner;
        let mine = {
            let mut map = inner
                .per_principal
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            Arc::clone(map.entry(principal.name.clone()).or_insert_with(|| {
                Arc::new(Semaphore::new(inner.config.max_concurrent_per_principal))
            }))
        };
        let own = mine.try_acquire_owned().map_err(|_| {
            QueryError::Busy(format!(
                "{} already runs {} queries (query.max_concurrent_per_principal); retry when one finishes",
                principal.name, inner.config.max_concurrent_per_principal
            ))
        })?;
        let global = Arc::clone(&inner.running)
            .try_acquire_owned()
            .map_err(|_| {
                QueryError::Busy(format!(
                    "{} queries are running (query.max_concurrent); retry shortly",
                    inner.config.max_concurrent
                ))
            })?;
        Ok([own, global])
    }
}

/// A query's SQL and principal, planned and run on the query runtime.
struct Job {
    sessions: Arc<Sessions>,
    /// The query's account of work, open from admission on, so that
    /// heavier queries give way to it while it is planned.
    share: Arc<Share>,
    principal: Principal,
    sql: String,
    pgwire: bool,
    max_depth: usize,
}

type Opened = Result<(SchemaRef, Arc<dyn ExecutionPlan>), QueryError>;

/// One item of a running query: a batch, its failure, or `None` at its end
/// (so that a task that dies midway is not mistaken for a complete result).
type Item = Option<Result<RecordBatch, DataFusionError>>;

impl Job {
    /// Plans and runs the query, answering `opened` with its schema or why it
    /// failed, then sends its batches until the end, a failure, or the
    /// receiver going away.
    async fn run(self, opened: oneshot::Sender<Opened>, batches: mpsc::Sender<Item>) {
        let share = Arc::clone(&self.share);
        let planned = runtime::off_workers(Handle::current(), self.open()).await;
        share.planned();
        let (stream, physical) = match planned {
            Ok(started) => started,
            Err(e) => {
                let _ = opened.send(Err(e));
                return;
            }
        };
        let mut stream = stream;
        if opened
            .send(Ok((stream.schema(), Arc::clone(&physical))))
            .is_err()
        {
            return;
        }
        while let Some(item) = stream.next().await {
            let failed = item.is_err();
            // Waiting for the client is not work that heavy queries should
            // give way to.
            share.set_waiting(true);
            let sent = batches.send(Some(item)).await;
            share.set_waiting(false);
            if sent.is_err() || failed {
                return;
            }
        }
        let _ = batches.send(None).await;
    }

    /// Plans the query and starts its plan (on a planning thread: see
    /// [`runtime::off_workers`]).
    async fn open(self) -> Result<(SendableRecordBatchStream, Arc<dyn ExecutionPlan>), QueryError> {
        let ctx = self.session()?;
        let plan = self.plan(&ctx).await?;
        let df = ctx.execute_logical_plan(plan).await?;
        let task = Arc::new(df.task_ctx());
        let physical = df.create_physical_plan().await?;
        let stream = execute_stream(Arc::clone(&physical), task)?;
        Ok((stream, physical))
    }

    /// The principal's session, with the query's account of work
    /// ([`shares`]). `EXPLAIN` shows a non-admin the logical plan only: the
    /// physical plan names the lake's files and directories, and which hours
    /// hold files (another tenant's among them).
    fn session(&self) -> Result<SessionContext, QueryError> {
        let ctx = self.sessions.for_principal(&self.principal)?;
        {
            let state = ctx.state_ref();
            let mut state = state.write();
            let config = state.config_mut();
            config.set_extension(Arc::clone(&self.share));
            if self.principal.role < Role::Admin {
                config.options_mut().explain.logical_plan_only = true;
            }
        }
        Ok(ctx)
    }

    /// Parses and plans the SQL as a single read-only statement. On the
    /// Postgres wire, a client's catalog query is rewritten first.
    async fn plan(&self, ctx: &SessionContext) -> Result<LogicalPlan, QueryError> {
        let state = ctx.state();
        let dialect = state.config().options().sql_parser.dialect;
        if let Some(tokens) = dialect_from_str(dialect) {
            inspect::check_tokens(&self.sql, tokens.as_ref(), self.max_depth)?;
        }
        let pg = self.pgwire.then(|| self.sessions.pg_catalog());
        let statement = match pg.and_then(|pg| pg.parse_catalog_query(&self.sql)) {
            Some(statement) => statement,
            None => state.sql_to_statement(&self.sql, &dialect)?,
        };
        inspect::check_statement(&statement, self.max_depth)?;
        let plan = match state.statement_to_plan(statement).await {
            Ok(plan) => plan,
            Err(e) => return Err(explain_missing_table(e.into(), &self.principal)),
        };
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| QueryError::ReadOnly(e.strip_backtrace()))?;
        Ok(plan)
    }
}

/// Aborts a query's task when dropped.
struct AbortOnDrop(AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn task_failed(e: tokio::task::JoinError) -> QueryError {
    if e.is_panic() {
        tracing::error!(error = %e, "a query's task panicked");
    }
    QueryError::Internal("the query's task ended without an answer (see the log)".into())
}

/// The audit's copy of `sql`: whole up to `query.max_sql_bytes`; beyond, the
/// query was refused unread and its first [`AUDIT_PREFIX_BYTES`] are kept
/// (its SHA-256 still covers the whole text).
fn audit_text(sql: &str, max_sql_bytes: usize) -> String {
    if sql.len() <= max_sql_bytes {
        return sql.to_owned();
    }
    let mut end = AUDIT_PREFIX_BYTES.min(sql.len());
    while !sql.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &sql[..end])
}

/// How much of an oversized query's text the audit keeps.
pub const AUDIT_PREFIX_BYTES: usize = 4096;

/// A missing table that exists but is beyond the principal's role is a 403.
fn explain_missing_table(e: QueryError, principal: &Principal) -> QueryError {
    if let QueryError::Sql(message) = &e {
        for table in Table::ALL {
            let name = table.name();
            let named = message.contains(&format!("table '{name}' not found"))
                || message.contains(&format!(".{name}' not found"));
            if !Sessions::may_read(principal, table) && named {
                return forbidden_table(principal, table);
            }
        }
    }
    e
}

fn forbidden_table(principal: &Principal, table: Table) -> QueryError {
    QueryError::Forbidden(format!(
        "{} ({}) may not read table {}; it needs the {} role{}",
        principal.name,
        principal.role,
        table.name(),
        table.min_role(),
        if table == Table::Quarantine {
            " and a token for all tenants"
        } else {
            ""
        }
    ))
}

/// The audit of the engine over the lake at `lake`. Its appender task runs
/// on the caller's runtime, or on the query runtime when there is none; it
/// commits what is queued and ends when the last handle (the engine's, a
/// running query's) is dropped.
fn open_audit(
    lake: &Location,
    query_runtime: &runtime::QueryRuntime,
) -> Result<AuditLog, QueryError> {
    let (audit, task) = AuditLog::new(
        lake,
        tooltrail_lake::appender::AppenderOptions::default(),
        tooltrail_lake::Metrics::default(),
    );
    Handle::try_current()
        .unwrap_or_else(|_| query_runtime.handle().clone())
        .spawn(task.run(tokio_util::sync::CancellationToken::new()));
    Ok(audit)
}

/// Writes the end record once, however the query ends.
struct Finish {
    audit: Arc<AuditLog>,
    writes: TaskTracker,
    /// Where the end record is appended from when the query ends outside
    /// any runtime (the query runtime: always running while the engine is).
    runtime: Handle,
    metrics: QueryMetrics,
    record: AuditRecord,
    started: Instant,
    transport: Transport,
    done: bool,
}

impl Finish {
    fn end(&mut self, result: Result<(), &QueryError>, rows: u64, bytes: u64) {
        self.end_with(
            match result {
                Ok(()) => "ok",
                Err(e) => e.outcome(),
            },
            result.err().map(|e| e.to_string()),
            rows,
            bytes,
        );
    }

    fn end_with(&mut self, outcome: &'static str, error: Option<String>, rows: u64, bytes: u64) {
        if self.done {
            return;
        }
        self.done = true;
        let elapsed = self.started.elapsed();
        self.metrics.finished(self.transport, outcome);
        self.metrics.duration.observe(elapsed.as_secs_f64());
        self.metrics.rows.inc_by(rows);
        let mut record = self.record.clone();
        record.phase = "end";
        record.time = Utc::now();
        record.outcome = Some(outcome);
        record.error = error;
        record.rows = Some(rows);
        record.bytes = Some(bytes);
        record.duration_ms = Some(elapsed.as_secs_f64() * 1e3);
        let audit = Arc::clone(&self.audit);
        let write = async move {
            if let Err(e) = audit.append(&record).await {
                tracing::error!(
                    query_id = %record.query_id,
                    error = %describe(&e),
                    "query audit end record not written"
                );
            }
        };
        // The query does not wait for its end record; the appender commits
        // it with its group, and a shutdown waits for it (settle_audit).
        let runtime = Handle::try_current().unwrap_or_else(|_| self.runtime.clone());
        self.writes.spawn_on(write, &runtime);
    }
}

impl Drop for Finish {
    fn drop(&mut self) {
        // Dropped before the end: the client went away or the caller gave up.
        self.end_with("cancelled", None, 0, 0);
    }
}

/// A running query's batches. Ends with an error item on timeout or
/// failure; stops after the row cap with [`QueryStream::truncated`] set.
pub struct QueryStream {
    schema: SchemaRef,
    batches: Option<mpsc::Receiver<Item>>,
    task: AbortOnDrop,
    physical: Arc<dyn ExecutionPlan>,
    deadline: Pin<Box<tokio::time::Sleep>>,
    timeout: std::time::Duration,
    row_cap: Option<usize>,
    rows: u64,
    bytes: u64,
    truncated: bool,
    finish: Finish,
    _permits: [OwnedSemaphorePermit; 2],
}

impl QueryStream {
    pub fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Whether the row cap cut the result short.
    pub fn truncated(&self) -> bool {
        self.truncated
    }

    pub fn query_id(&self) -> &str {
        &self.finish.record.query_id
    }

    /// The physical plan being run (exports list the files it scans).
    pub fn physical_plan(&self) -> &Arc<dyn ExecutionPlan> {
        &self.physical
    }

    /// Rows returned so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    fn stop(&mut self, result: Result<(), &QueryError>) {
        if self.batches.take().is_some() {
            self.finish.metrics.running.dec();
            self.task.0.abort();
        }
        self.finish.end(result, self.rows, self.bytes);
    }
}

impl Stream for QueryStream {
    type Item = Result<RecordBatch, QueryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(batches) = this.batches.as_mut() else {
            return Poll::Ready(None);
        };
        if this.deadline.as_mut().poll(cx).is_ready() {
            let e = QueryError::Timeout(this.timeout);
            this.stop(Err(&e));
            return Poll::Ready(Some(Err(e)));
        }
        match batches.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(None)) => {
                this.stop(Ok(()));
                Poll::Ready(None)
            }
            Poll::Ready(None) => {
                let e = QueryError::Internal(
                    "the query's task ended before its result did (see the log)".into(),
                );
                this.stop(Err(&e));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Some(Err(e)))) => {
                let e = QueryError::from(e);
                this.stop(Err(&e));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Some(Ok(mut batch)))) => {
                if let Some(cap) = this.row_cap {
                    let left = cap.saturating_sub(this.rows as usize);
                    if batch.num_rows() >= left {
                        // Rows at or past the cap: keep what fits, and only
                        // call it truncated if something was left out.
                        let more = batch.num_rows() > left;
                        batch = batch.slice(0, left);
                        this.rows += batch.num_rows() as u64;
                        this.bytes += batch.get_array_memory_size() as u64;
                        if more {
                            this.truncated = true;
                            this.stop(Ok(()));
                        }
                        return Poll::Ready(Some(Ok(batch)));
                    }
                }
                this.rows += batch.num_rows() as u64;
                this.bytes += batch.get_array_memory_size() as u64;
                Poll::Ready(Some(Ok(batch)))
            }
        }
    }
}
