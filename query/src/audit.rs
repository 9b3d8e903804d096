//! The query audit: every query's principal, time, SQL, tenants, rows, bytes,
//! duration and outcome, in the lake's Delta table `query_audit`
//! ([`tooltrail_lake::tables::QUERY_AUDIT`], partitioned by the UTC day of
//! each record's `time`).
//!
//! Each query writes two records with the same `query_id`: `phase: "start"`
//! before any result leaves the server, and `phase: "end"` with the outcome.
//! A query whose end record is missing was cut off by a crash.
//!
//! Invariant: [`AuditLog::append`] returns `Ok` only once the commit holding
//! the record exists, so no result of a query leaves before its start
//! record is durable (the engine plans and starts the query meanwhile, and
//! aborts and refuses it when the record fails).
//! Records go through a group-commit [`Appender`]: those of concurrent
//! queries share one commit, and the table's log grows by at most one
//! version per [`AppenderOptions::interval`] over time, not one per query
//! (after a short burst: a few queries on a quiet server wait for no
//! interval).

use chrono::{DateTime, Utc};
use serde::Serialize;
use tooltrail_lake::appender::{AppendError, Appender, AppenderOptions, AppenderTask};
use tooltrail_lake::{Committed, Location, Metrics, Partition, tables};
use tooltrail_schemas::lake::{QueryAuditBatchBuilder, QueryAuditRow};

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

impl AuditRecord {
    /// The record as a one-row batch of the table, and its partition.
    fn batch(&self) -> Result<(Partition, arrow::array::RecordBatch), AppendError> {
        let count = |n: Option<u64>| n.map(|n| i64::try_from(n).unwrap_or(i64::MAX));
        let mut builder = QueryAuditBatchBuilder::new();
        builder.append(&QueryAuditRow {
            query_id: &self.query_id,
            phase: self.phase,
            time: self.time,
            principal: &self.principal,
            role: &self.role,
            tenants: &self.tenants,
            transport: self.transport,
            sql: &self.sql,
            sql_sha256: &self.sql_sha256,
            outcome: self.outcome,
            error: self.error.as_deref(),
            rows: count(self.rows),
            bytes: count(self.bytes),
            duration_ms: self.duration_ms,
        });
        let batch = builder.finish().map_err(|e| AppendError::Mismatch {
            table: tables::QUERY_AUDIT.name,
            problem: e.to_string(),
        })?;
        Ok((Partition::day(self.time.date_naive()), batch))
    }
}

/// Appends audit records to the lake. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AuditLog {
    appender: Appender,
}

impl AuditLog {
    /// Opens (or creates) the `query_audit` table of the lake at `lake` now.
    /// Spawn the returned task ([`AppenderTask::run`]) and cancel its token
    /// after the last query has ended (it then commits what is queued).
    pub async fn open(
        lake: &Location,
        options: AppenderOptions,
        metrics: Metrics,
    ) -> tooltrail_lake::Result<(AuditLog, AppenderTask)> {
        let (appender, task) = Appender::open(lake, &tables::QUERY_AUDIT, options, metrics).await?;
        Ok((Self::with(appender), task))
    }

    /// Like [`AuditLog::open`] without IO: the task opens the table before
    /// its first commit (for a caller that cannot wait).
    pub fn new(
        lake: &Location,
        options: AppenderOptions,
        metrics: Metrics,
    ) -> (AuditLog, AppenderTask) {
        let (appender, task) = Appender::new(lake, &tables::QUERY_AUDIT, options, metrics);
        (Self::with(appender), task)
    }

    fn with(appender: Appender) -> AuditLog {
        AuditLog { appender }
    }

    /// Appends `record` and waits until it is committed to the lake.
    pub async fn append(&self, record: &AuditRecord) -> Result<Committed, AppendError> {
        let (partition, batch) = record.batch()?;
        self.appender.append(partition, batch).await
    }

    /// [`AuditLog::append`] from a thread outside any async runtime (the
    /// appender's task runs elsewhere). Panics if called from async code.
    pub fn blocking_append(&self, record: &AuditRecord) -> Result<Committed, AppendError> {
        let (partition, batch) = record.batch()?;
        self.appender.blocking_append(partition, batch)
    }
}

/// `error` and its sources, for a message.
pub(crate) fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
