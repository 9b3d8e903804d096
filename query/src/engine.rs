//! The engine every transport shares (HTTP, Postgres wire, the CLI): admits a
//! query under the limits, audits it, plans it read-only in the principal's
//! session and streams its batches under a deadline.

use std::collections::HashMap;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use chrono::Utc;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use futures::Stream;
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::audit::{AuditLog, AuditRecord};
use crate::auth::{Principal, TokenStore};
use crate::config::QueryConfig;
use crate::error::QueryError;
use crate::functions;
use crate::metrics::QueryMetrics;
use crate::optimizer;
use crate::pg_catalog::PgCatalog;
use crate::session::Sessions;
use crate::tables::{LakeTables, Table};

/// Where a query came from, as the audit records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Http,
    Pgwire,
    Cli,
    /// A signed compliance export ([`crate::export`]).
    Export,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::Pgwire => "pgwire",
            Transport::Cli => "cli",
            Transport::Export => "export",
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
    sessions: Sessions,
    audit: Arc<AuditLog>,
    running: Arc<Semaphore>,
    per_principal: Mutex<HashMap<String, Arc<Semaphore>>>,
    metrics: QueryMetrics,
}

impl Engine {
    /// An engine over the lake at `lake`, spilling under `spill_dir`.
    /// `config` must have passed [`QueryConfig::validate`].
    pub fn open(
        lake: &Path,
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
            .with_cache_manager(
                CacheManagerConfig::default().with_list_files_cache_ttl(Some(config.listing_ttl)),
            )
            .build_arc()?;
        let mut session = SessionConfig::new().with_information_schema(true);
        {
            let options = session.options_mut();
            options.execution.parquet.pushdown_filters = true;
            options.execution.parquet.reorder_filters = true;
            options.explain.show_statistics = false;
        }
        let builder = SessionStateBuilder::new()
            .with_config(session)
            .with_runtime_env(runtime)
            .with_default_features();
        let mut base = optimizer::install(builder).build();
        functions::restrict(&mut base, config.max_function_output)?;
        let statistics = base.runtime_env().cache_manager.get_file_statistic_cache();
        let tables = LakeTables::new(lake, statistics)?;
        let audit =
            AuditLog::open(lake).map_err(|e| QueryError::Internal(format!("query audit: {e}")))?;
        Ok(Engine {
            inner: Arc::new(Inner {
                config: config.clone(),
                tokens: TokenStore::new(&config.tokens),
                sessions: Sessions::new(base, tables)?,
                audit: Arc::new(audit),
                running: Arc::new(Semaphore::new(config.max_concurrent)),
                per_principal: Mutex::new(HashMap::new()),
                metrics,
            }),
        })
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
        use datafusion::catalog::TableProvider;
        Ok(self.inner.sessions.tables().provider(table).schema())
    }

    /// The schema `sql` would return, without running it (the Postgres
    /// wire's Describe). Not audited: nothing is read.
    pub async fn describe(
        &self,
        principal: &Principal,
        sql: &str,
    ) -> Result<SchemaRef, QueryError> {
        self.check_len(sql)?;
        let ctx = self.inner.sessions.for_principal(principal)?;
        let pg = Some(self.inner.sessions.pg_catalog());
        let plan = tokio::time::timeout(self.inner.config.timeout, plan(&ctx, principal, sql, pg))
            .await
            .map_err(|_| QueryError::Timeout(self.inner.config.timeout))??;
        Ok(Arc::new(plan.schema().as_arrow().clone()))
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
        self.check_len(sql)
            .inspect_err(|e| inner.metrics.finished(transport, e.outcome()))?;
        let permits = self
            .admit(principal)
            .inspect_err(|e| inner.metrics.finished(transport, e.outcome()))?;
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut finish = Finish {
            audit: Arc::clone(&inner.audit),
            metrics: inner.metrics.clone(),
            record: AuditRecord {
                query_id: uuid::Uuid::now_v7().to_string(),
                phase: "start",
                time: Utc::now(),
                principal: principal.name.clone(),
                role: principal.role.to_string(),
                tenants: principal.tenants.names(),
                transport: transport.name(),
                sql: sql.to_owned(),
                sql_sha256: hex::encode(Sha256::digest(sql.as_bytes())),
                outcome: None,
                error: None,
                rows: None,
                bytes: None,
                duration_ms: None,
            },
            started,
            transport,
            done: false,
        };
        // Durable before any result leaves: no unaudited query.
        let audit = Arc::clone(&inner.audit);
        let start = finish.record.clone();
        tokio::task::spawn_blocking(move || audit.append(&start))
            .await
            .map_err(|e| QueryError::Internal(format!("query audit: {e}")))?
            .map_err(|e| QueryError::Internal(format!("query audit is not writable: {e}")))?;

        let opened = async {
            let ctx = inner.sessions.for_principal(principal)?;
            let pg = (transport == Transport::Pgwire).then(|| inner.sessions.pg_catalog());
            let plan = plan(&ctx, principal, sql, pg).await?;
            let df = ctx.execute_logical_plan(plan).await?;
            let task = Arc::new(df.task_ctx());
            let physical = df.create_physical_plan().await?;
            let stream = execute_stream(Arc::clone(&physical), task)?;
            Ok::<_, QueryError>((stream, physical))
        };
        let (stream, physical) = match tokio::time::timeout_at(deadline, opened).await {
            Ok(Ok(opened)) => opened,
            Ok(Err(e)) => {
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
            schema: stream.schema(),
            inner: Some(stream),
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

/// Parses and plans `sql` as a single read-only statement. With `pg` (the
/// Postgres wire), a client's catalog query is rewritten first.
async fn plan(
    ctx: &SessionContext,
    principal: &Principal,
    sql: &str,
    pg: Option<&PgCatalog>,
) -> Result<LogicalPlan, QueryError> {
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    let statement = match pg.and_then(|pg| pg.parse_catalog_query(sql)) {
        Some(statement) => statement,
        None => state.sql_to_statement(sql, &dialect)?,
    };
    check_statement(&statement)?;
    let plan = match state.statement_to_plan(statement).await {
        Ok(plan) => plan,
        Err(e) => return Err(explain_missing_table(e.into(), principal)),
    };
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| QueryError::ReadOnly(e.strip_backtrace()))?;
    Ok(plan)
}

/// Only queries (and `EXPLAIN` of one, without `ANALYZE` or `VERBOSE`, whose
/// row counts would describe rows the principal may not see).
fn check_statement(statement: &DfStatement) -> Result<(), QueryError> {
    let read_only = || {
        QueryError::ReadOnly(
            "only SELECT, WITH, VALUES, SHOW and EXPLAIN queries are allowed: this endpoint is read-only".into(),
        )
    };
    match statement {
        DfStatement::Statement(s) => match s.as_ref() {
            SqlStatement::Query(_)
            | SqlStatement::ShowTables { .. }
            | SqlStatement::ShowColumns { .. } => Ok(()),
            _ => Err(read_only()),
        },
        DfStatement::Explain(explain) => {
            if explain.options.analyze || explain.options.verbose {
                return Err(QueryError::ReadOnly(
                    "EXPLAIN ANALYZE and EXPLAIN VERBOSE are not allowed: their row counts describe rows outside your tenants; use plain EXPLAIN".into(),
                ));
            }
            check_statement(&explain.statement)
        }
        _ => Err(read_only()),
    }
}

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

/// Writes the end record once, however the query ends.
struct Finish {
    audit: Arc<AuditLog>,
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
        let write = move || {
            if let Err(e) = audit.append(&record) {
                tracing::error!(error = %e, query_id = %record.query_id, "query audit end record not written");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn_blocking(write);
            }
            Err(_) => write(),
        }
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
    inner: Option<SendableRecordBatchStream>,
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
        if self.inner.take().is_some() {
            self.finish.metrics.running.dec();
        }
        self.finish.end(result, self.rows, self.bytes);
    }
}

impl Stream for QueryStream {
    type Item = Result<RecordBatch, QueryError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        if this.deadline.as_mut().poll(cx).is_ready() {
            let e = QueryError::Timeout(this.timeout);
            this.stop(Err(&e));
            return Poll::Ready(Some(Err(e)));
        }
        match inner.as_mut().poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.stop(Ok(()));
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => {
                let e = QueryError::from(e);
                this.stop(Err(&e));
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(Some(Ok(mut batch))) => {
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
