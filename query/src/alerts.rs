//! The alerts API: the inbox, an alert with its evidence, a user's page, and
//! triage (issue 28). Analysts reach it over HTTP ([`http`]) and through the
//! console, which calls nothing else.
//!
//! | route | what |
//! | --- | --- |
//! | `GET /v1/alerts` | filters (`status`, `severity`, `detector`, `tenant`, `user`, `from`, `to`), `sort`, `limit`, `cursor` |
//! | `GET /v1/alerts/{id}` | the alert, its triage history, its evidence events, its series |
//! | `POST /v1/alerts/{id}/triage` | a triage change (analysts and admins) |
//! | `POST /v1/alerts/triage` | the same change of up to 500 alerts |
//! | `GET /v1/alerts/stream` | server-sent `changed` events when the caller's alerts or their triage change |
//! | `GET /v1/users/{tenant}/{user}` | a user's calls per hour, first-seen values, alerts and sessions |
//!
//! Every read is SQL run by the [`Engine`] for the caller: tenant isolation
//! is the session's ([`crate::session`]), the same as for `POST /v1/sql`,
//! and each read is in the query audit with transport `api`. Values from a
//! request reach that SQL only as literals ([`literal`]) or as values
//! checked against a fixed set.
//!
//! Triage is append-only ([`triage`]): each change is a row of the lake's
//! `alert_triage` table, committed before the request is answered, and an
//! alert's state is its latest row (an alert without one is `open`).

pub mod detail;
pub mod http;
pub mod list;
pub mod stream;
pub mod triage;

use std::sync::Arc;

use arrow::array::RecordBatch;
use futures::StreamExt;
use serde_json::{Map, Value};
use tooltrail_lake::appender::{AppendError, AppenderOptions, AppenderTask};
use tooltrail_lake::{Location, Metrics};

use crate::engine::{Engine, Transport};
use crate::{Principal, QueryError};

pub use triage::{TriageChange, TriageNotifier};

/// A JSON object: one row of a result.
pub type Row = Map<String, Value>;

/// Why an alerts request failed.
#[derive(Debug, thiserror::Error)]
pub enum AlertsError {
    /// A parameter or body field is wrong; `field` names it.
    #[error("{field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    /// No alert (or user) with that id among the caller's tenants.
    #[error("{0}")]
    NotFound(String),
    /// The caller's role may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// The triage row could not be committed; nothing was changed.
    #[error("the triage change was not saved")]
    Triage(#[source] AppendError),
    #[error(transparent)]
    Query(#[from] QueryError),
}

impl AlertsError {
    pub fn invalid(field: &'static str, problem: impl Into<String>) -> AlertsError {
        AlertsError::Invalid {
            field,
            problem: problem.into(),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            AlertsError::Invalid { .. } => "invalid_request",
            AlertsError::NotFound(_) => "not_found",
            AlertsError::Forbidden(_) => "forbidden",
            AlertsError::Triage(e) if e.is_retryable() => "unavailable",
            AlertsError::Triage(_) => "internal",
            AlertsError::Query(e) => e.code(),
        }
    }

    pub fn http_status(&self) -> u16 {
        match self {
            AlertsError::Invalid { .. } => 400,
            AlertsError::NotFound(_) => 404,
            AlertsError::Forbidden(_) => 403,
            AlertsError::Triage(e) if e.is_retryable() => 503,
            AlertsError::Triage(_) => 500,
            AlertsError::Query(e) => e.http_status(),
        }
    }
}

/// The alerts API's state. Cheap to clone.
#[derive(Clone)]
pub struct AlertsService {
    engine: Engine,
    triage: triage::TriageLog,
    notifier: Option<Arc<dyn TriageNotifier>>,
    changes: stream::Changes,
}

impl AlertsService {
    /// The API over `engine`'s lake at `lake`. Spawn the returned task
    /// ([`AppenderTask::run`]) and cancel its token once the HTTP server
    /// has stopped: it commits the triage changes still queued.
    pub fn new(engine: Engine, lake: &Location, metrics: Metrics) -> (AlertsService, AppenderTask) {
        let (triage, task) = triage::TriageLog::new(lake, AppenderOptions::default(), metrics);
        let changes = stream::Changes::new(lake);
        let service = AlertsService {
            engine,
            triage,
            notifier: None,
            changes,
        };
        (service, task)
    }

    /// Tells `notifier` of each triage change (chat threads, webhooks).
    pub fn with_notifier(mut self, notifier: Arc<dyn TriageNotifier>) -> AlertsService {
        self.notifier = Some(notifier);
        self
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Runs `sql` for `principal` (audited, transport `api`) and returns its
    /// rows as JSON objects: timestamps as RFC 3339 strings, nulls kept.
    pub(crate) async fn rows(
        &self,
        principal: &Principal,
        sql: &str,
    ) -> Result<Vec<Row>, QueryError> {
        let mut stream = self
            .engine
            .execute(principal, sql, Transport::Api, false)
            .await?;
        let mut batches = Vec::new();
        while let Some(batch) = stream.next().await {
            batches.push(batch?);
        }
        to_json(&batches)
    }
}

/// `batches` as JSON objects, one per row, with explicit nulls.
pub(crate) fn to_json(batches: &[RecordBatch]) -> Result<Vec<Row>, QueryError> {
    let mut out = Vec::new();
    {
        let mut writer = arrow::json::WriterBuilder::new()
            .with_explicit_nulls(true)
            .build::<_, arrow::json::writer::JsonArray>(&mut out);
        for batch in batches {
            writer
                .write(batch)
                .map_err(|e| QueryError::Internal(format!("encoding a result as JSON: {e}")))?;
        }
        writer
            .finish()
            .map_err(|e| QueryError::Internal(format!("encoding a result as JSON: {e}")))?;
    }
    if out.is_empty() {
        return Ok(Vec::new());
    }
    serde_json::from_slice(&out)
        .map_err(|e| QueryError::Internal(format!("reading a result back as JSON: {e}")))
}

/// A SQL string literal of `value`: single quotes doubled, nothing else
/// special (DataFusion's plain strings have no backslash escapes).
pub(crate) fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// A `TIMESTAMPTZ` literal of `time`, to the microsecond.
pub(crate) fn time_literal(time: chrono::DateTime<chrono::Utc>) -> String {
    format!("TIMESTAMPTZ '{}'", time.format("%Y-%m-%dT%H:%M:%S%.6fZ"))
}

/// Whether `id` looks like an alert id (detect's alert ids are UUIDs; any
/// short id of letters, digits and `-_.:` is taken, so a future format
/// still works). Anything else is "not found" without a query.
pub(crate) fn plausible_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

#[cfg(test)]
mod tests;
