//! Triage: `POST /v1/alerts/{id}/triage` and its bulk form. A change is a row
//! of the lake's `alert_triage` table holding the alert's whole new state
//! (status, assignee, close reason) with the comment and who made it; what
//! the request leaves out is carried over from the alert's latest row.
//!
//! Invariants:
//! - Only analysts and admins triage; auditors read.
//! - A change is answered only once its row is committed ([`TriageLog`]
//!   goes through the lake's group-commit appender), so a `GET` after the
//!   answer sees it.
//! - A change names an alert the caller can read: the alert is looked up
//!   with the caller's tenant filter, and an id outside it is "not found".
//! - `close_reason` is set exactly when the status is `closed`.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;
use tooltrail_lake::appender::{AppendError, Appender, AppenderOptions, AppenderTask};
use tooltrail_lake::{Location, Metrics, Partition, tables};
use tooltrail_schemas::lake::{AlertTriageBatchBuilder, AlertTriageRow};

use super::list::{STATUSES, severity_rank};
use super::{AlertsError, AlertsService, Row, literal, plausible_id};
use crate::{Principal, Role};

/// Why an alert was closed.
pub const CLOSE_REASONS: [&str; 6] = [
    "false_positive",
    "true_positive_benign",
    "true_positive_malicious",
    "duplicate",
    "testing",
    "other",
];
/// Most alerts one bulk request changes.
pub const MAX_BULK: usize = 500;
const MAX_ASSIGNEE: usize = 128;
const MAX_COMMENT: usize = 4096;
/// A change of an alert raised at most this long before is sent to the
/// destinations that follow triage (older ones are history, not news).
pub const FRESH: chrono::Duration = chrono::Duration::hours(24);

/// One triage change as the destinations that follow triage are told of it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TriageChange {
    /// Unique per change (a UUID).
    pub triage_id: String,
    pub alert_id: String,
    pub tenant_id: String,
    pub user_id: String,
    pub detector: String,
    pub severity: String,
    pub title: String,
    pub status: String,
    pub assignee: Option<String>,
    pub close_reason: Option<String>,
    pub comment: Option<String>,
    pub actor: String,
    #[serde(serialize_with = "utc")]
    pub time: DateTime<Utc>,
    /// The alert's whole record as the detector published it (JSON).
    #[serde(skip)]
    pub record: String,
}

fn utc<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&tooltrail_schemas::format_time(t))
}

/// Told of each committed change of a fresh alert ([`FRESH`]). Must not
/// block: queue the work.
pub trait TriageNotifier: Send + Sync {
    fn notify(&self, change: &TriageChange);
}

/// The body of a triage request: every field optional, at least one given.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriageBody {
    status: Option<String>,
    /// Absent: unchanged; `null` or `""`: nobody.
    #[serde(default, deserialize_with = "present")]
    assignee: Option<Option<String>>,
    close_reason: Option<String>,
    comment: Option<String>,
}

/// The body of a bulk request: the ids and one change for all of them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkBody {
    alert_ids: Vec<String>,
    status: Option<String>,
    #[serde(default, deserialize_with = "present")]
    assignee: Option<Option<String>>,
    close_reason: Option<String>,
    comment: Option<String>,
}

/// `Some(value)` for a field that is there, `null` included.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// A checked change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    status: Option<&'static str>,
    assignee: Option<Option<String>>,
    close_reason: Option<&'static str>,
    comment: Option<String>,
}

impl TriageBody {
    pub fn check(self) -> Result<Change, AlertsError> {
        let status = match self.status.as_deref() {
            None => None,
            Some(s) => Some(STATUSES.into_iter().find(|x| *x == s).ok_or_else(|| {
                AlertsError::invalid(
                    "status",
                    format!("{s:?} is not one of open, acknowledged, closed"),
                )
            })?),
        };
        let close_reason = match self.close_reason.as_deref() {
            None => None,
            Some(r) => Some(CLOSE_REASONS.into_iter().find(|x| *x == r).ok_or_else(|| {
                AlertsError::invalid(
                    "close_reason",
                    format!("{r:?} is not one of {}", CLOSE_REASONS.join(", ")),
                )
            })?),
        };
        match (status, close_reason) {
            (Some("closed"), None) => {
                return Err(AlertsError::invalid(
                    "close_reason",
                    format!(
                        "is required to close an alert: one of {}",
                        CLOSE_REASONS.join(", ")
                    ),
                ));
            }
            (status, Some(_)) if status != Some("closed") => {
                return Err(AlertsError::invalid(
                    "close_reason",
                    "is given only with \"status\": \"closed\"",
                ));
            }
            _ => {}
        }
        let assignee = match self.assignee {
            None => None,
            Some(None) => Some(None),
            Some(Some(a)) => {
                let a = a.trim();
                check_text("assignee", a, MAX_ASSIGNEE, false)?;
                Some(Some(a.to_owned()).filter(|a| !a.is_empty()))
            }
        };
        let comment = match self.comment {
            None => None,
            Some(c) => {
                let c = c.trim();
                check_text("comment", c, MAX_COMMENT, true)?;
                Some(c.to_owned()).filter(|c| !c.is_empty())
            }
        };
        if status.is_none() && assignee.is_none() && comment.is_none() {
            return Err(AlertsError::invalid(
                "body",
                "says nothing to change: give status, assignee or comment",
            ));
        }
        Ok(Change {
            status,
            assignee,
            close_reason,
            comment,
        })
    }
}

impl BulkBody {
    /// The ids (each once, in order) and the change.
    pub fn check(self) -> Result<(Vec<String>, Change), AlertsError> {
        if self.alert_ids.is_empty() || self.alert_ids.len() > MAX_BULK {
            return Err(AlertsError::invalid(
                "alert_ids",
                format!("must list 1 to {MAX_BULK} alert ids"),
            ));
        }
        let mut ids: Vec<String> = Vec::with_capacity(self.alert_ids.len());
        for id in self.alert_ids {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let change = TriageBody {
            status: self.status,
            assignee: self.assignee,
            close_reason: self.close_reason,
            comment: self.comment,
        }
        .check()?;
        Ok((ids, change))
    }
}

fn check_text(field: &'static str, text: &str, max: usize, lines: bool) -> Result<(), AlertsError> {
    if text.chars().count() > max {
        return Err(AlertsError::invalid(
            field,
            format!("is longer than {max} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !(lines && matches!(c, '\n' | '\t')))
    {
        return Err(AlertsError::invalid(field, "holds control characters"));
    }
    Ok(())
}

/// A triage row as the API answers it.
fn row_json(row: &AlertTriageRow<'_>) -> Value {
    serde_json::json!({
        "status": row.status,
        "assignee": row.assignee,
        "close_reason": row.close_reason,
        "comment": row.comment,
        "actor": row.actor,
        "time": tooltrail_schemas::format_time(&row.time),
    })
}

/// Appends triage rows to the lake's `alert_triage` table. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct TriageLog {
    appender: Appender,
}

impl TriageLog {
    /// Without IO: the task opens (or creates) the table before its first
    /// commit.
    pub(crate) fn new(
        lake: &Location,
        options: AppenderOptions,
        metrics: Metrics,
    ) -> (TriageLog, AppenderTask) {
        let (appender, task) = Appender::new(lake, &tables::ALERT_TRIAGE, options, metrics);
        (TriageLog { appender }, task)
    }

    /// Appends `rows` as one group and waits for their commit.
    async fn append(
        &self,
        rows: &[AlertTriageRow<'_>],
        now: DateTime<Utc>,
    ) -> Result<(), AppendError> {
        let mut builder = AlertTriageBatchBuilder::new();
        for row in rows {
            builder.append(row);
        }
        let batch = builder.finish().map_err(|e| AppendError::Mismatch {
            table: tables::ALERT_TRIAGE.name,
            problem: e.to_string(),
        })?;
        self.appender
            .append(Partition::day(now.date_naive()), batch)
            .await
            .map(|_| ())
    }
}

/// What a bulk change did.
#[derive(Debug)]
pub struct BulkOutcome {
    pub triaged: Vec<String>,
    pub not_found: Vec<String>,
}

impl AlertsService {
    /// Applies `change` to the alert `id`; answers the committed row.
    pub async fn triage(
        &self,
        principal: &Principal,
        id: &str,
        change: Change,
    ) -> Result<Value, AlertsError> {
        let outcome = self.apply(principal, &[id.to_owned()], change).await?;
        outcome
            .into_iter()
            .next()
            .ok_or_else(|| AlertsError::NotFound(format!("no alert {id:?}")))
    }

    /// Applies `change` to each of `ids` the caller can read, in one commit.
    pub async fn triage_bulk(
        &self,
        principal: &Principal,
        ids: &[String],
        change: Change,
    ) -> Result<BulkOutcome, AlertsError> {
        let rows = self.apply(principal, ids, change).await?;
        let triaged: Vec<String> = rows
            .iter()
            .filter_map(|r| r.get("alert_id").and_then(Value::as_str).map(str::to_owned))
            .collect();
        let not_found = ids
            .iter()
            .filter(|id| !triaged.contains(id))
            .cloned()
            .collect();
        Ok(BulkOutcome { triaged, not_found })
    }

    /// The committed rows (each with its `alert_id`), for the ids found.
    async fn apply(
        &self,
        principal: &Principal,
        ids: &[String],
        change: Change,
    ) -> Result<Vec<Value>, AlertsError> {
        may_triage(principal)?;
        let ids: Vec<&String> = ids.iter().filter(|id| plausible_id(id)).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // In pieces: a bulk change's ids as literals stay well within
        // `query.max_sql_bytes`.
        let mut current = Vec::with_capacity(ids.len());
        for piece in ids.chunks(100) {
            current.extend(self.current(principal, piece).await?);
        }
        let now = Utc::now();
        let triage_ids: Vec<String> = current
            .iter()
            .map(|_| uuid::Uuid::now_v7().to_string())
            .collect();
        let rows: Vec<AlertTriageRow<'_>> = current
            .iter()
            .zip(&triage_ids)
            .map(|(alert, triage_id)| change.row(alert, triage_id, &principal.name, now))
            .collect();
        self.triage
            .append(&rows, now)
            .await
            .map_err(AlertsError::Triage)?;
        let mut answers = Vec::with_capacity(rows.len());
        for (row, alert) in rows.iter().zip(&current) {
            if let Some(notifier) = &self.notifier
                && now - alert.time <= FRESH
            {
                notifier.notify(&alert.change(row));
            }
            let mut answer = row_json(row);
            answer["alert_id"] = Value::from(row.alert_id);
            answers.push(answer);
        }
        Ok(answers)
    }

    /// The alerts of `ids` the caller can read, with their triage state.
    async fn current(
        &self,
        principal: &Principal,
        ids: &[&String],
    ) -> Result<Vec<Current>, AlertsError> {
        let ids = ids
            .iter()
            .map(|id| literal(id))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "WITH t AS ({latest}) \
             SELECT a.alert_id, a.tenant_id, a.user_id, a.time, a.detector, a.severity, a.title, \
                    {rank} AS severity_rank, t.status, t.assignee, t.close_reason, a.record \
             FROM alerts a LEFT JOIN t ON t.alert_id = a.alert_id AND t.n = 1 \
             WHERE a.alert_id IN ({ids})",
            latest = latest_rows(&format!(" WHERE alert_id IN ({ids})")),
            rank = severity_rank("a.severity"),
        );
        let rows = self.rows(principal, &sql).await?;
        Ok(rows.iter().filter_map(Current::from_row).collect())
    }
}

/// Every alert's triage rows (those `filter` keeps), numbered newest first
/// in `n`: an alert's state is its row with `n = 1`, the latest by (`time`,
/// `triage_id`).
pub(crate) fn latest_rows(filter: &str) -> String {
    format!(
        "SELECT alert_id, status, assignee, close_reason, time AS triaged_at, actor AS triaged_by, \
                row_number() OVER (PARTITION BY alert_id ORDER BY time DESC, triage_id DESC) AS n \
         FROM alert_triage{filter}"
    )
}

fn may_triage(principal: &Principal) -> Result<(), AlertsError> {
    match principal.role {
        Role::Analyst | Role::Admin => Ok(()),
        Role::Auditor => Err(AlertsError::Forbidden(
            "auditors may read alerts and their triage, not change them".into(),
        )),
    }
}

/// An alert as a change finds it.
#[derive(Debug)]
struct Current {
    alert_id: String,
    tenant_id: String,
    user_id: String,
    time: DateTime<Utc>,
    detector: String,
    severity: String,
    title: String,
    status: Option<String>,
    assignee: Option<String>,
    close_reason: Option<String>,
    record: String,
}

impl Current {
    fn from_row(row: &Row) -> Option<Current> {
        let text = |k: &str| row.get(k).and_then(Value::as_str).map(str::to_owned);
        Some(Current {
            alert_id: text("alert_id")?,
            tenant_id: text("tenant_id")?,
            user_id: text("user_id")?,
            time: DateTime::parse_from_rfc3339(&text("time")?)
                .ok()?
                .with_timezone(&Utc),
            detector: text("detector").unwrap_or_default(),
            severity: text("severity").unwrap_or_default(),
            title: text("title").unwrap_or_default(),
            status: text("status"),
            assignee: text("assignee"),
            close_reason: text("close_reason"),
            record: text("record").unwrap_or_default(),
        })
    }

    fn change(&self, row: &AlertTriageRow<'_>) -> TriageChange {
        TriageChange {
            triage_id: row.triage_id.to_owned(),
            alert_id: self.alert_id.clone(),
            tenant_id: self.tenant_id.clone(),
            user_id: self.user_id.clone(),
            detector: self.detector.clone(),
            severity: self.severity.clone(),
            title: self.title.clone(),
            status: row.status.to_owned(),
            assignee: row.assignee.map(str::to_owned),
            close_reason: row.close_reason.map(str::to_owned),
            comment: row.comment.map(str::to_owned),
            actor: row.actor.to_owned(),
            time: row.time,
            record: self.record.clone(),
        }
    }
}

impl Change {
    /// The new row of `alert`: what the change says, the rest carried over.
    fn row<'a>(
        &'a self,
        alert: &'a Current,
        triage_id: &'a str,
        actor: &'a str,
        now: DateTime<Utc>,
    ) -> AlertTriageRow<'a> {
        let status = self
            .status
            .or_else(|| {
                STATUSES
                    .into_iter()
                    .find(|s| Some(*s) == alert.status.as_deref())
            })
            .unwrap_or("open");
        let assignee = match &self.assignee {
            Some(new) => new.as_deref(),
            None => alert.assignee.as_deref(),
        };
        let close_reason = match (status, self.close_reason) {
            ("closed", Some(reason)) => Some(reason),
            ("closed", None) => alert.close_reason.as_deref(),
            _ => None,
        };
        AlertTriageRow {
            triage_id,
            alert_id: &alert.alert_id,
            tenant_id: &alert.tenant_id,
            user_id: &alert.user_id,
            time: now,
            status,
            assignee,
            close_reason,
            comment: self.comment.as_deref(),
            actor,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> Result<Change, AlertsError> {
        serde_json::from_str::<TriageBody>(json).unwrap().check()
    }

    fn field(result: Result<Change, AlertsError>) -> &'static str {
        match result {
            Err(AlertsError::Invalid { field, .. }) => field,
            other => panic!("expected a bad field, got {other:?}"),
        }
    }

    #[test]
    fn a_close_needs_a_reason_and_only_a_close_takes_one() {
        assert_eq!(field(body(r#"{"status":"closed"}"#)), "close_reason");
        assert_eq!(
            field(body(
                r#"{"status":"acknowledged","close_reason":"duplicate"}"#
            )),
            "close_reason"
        );
        assert_eq!(
            field(body(r#"{"close_reason":"duplicate"}"#)),
            "close_reason"
        );
        assert_eq!(
            field(body(r#"{"status":"closed","close_reason":"meh"}"#)),
            "close_reason"
        );
        assert_eq!(field(body(r#"{"status":"done"}"#)), "status");
        assert_eq!(field(body(r#"{}"#)), "body");
        assert_eq!(field(body("{\"comment\":\"a\\u0000b\"}")), "comment");
        let closed = body(r#"{"status":"closed","close_reason":"false_positive"}"#).unwrap();
        assert_eq!(closed.close_reason, Some("false_positive"));
    }

    #[test]
    fn what_a_change_leaves_out_is_carried_over() {
        let alert = Current {
            alert_id: "a1".into(),
            tenant_id: "acme".into(),
            user_id: "u1".into(),
            time: Utc::now(),
            detector: "denial_spike".into(),
            severity: "high".into(),
            title: "t".into(),
            status: Some("closed".into()),
            assignee: Some("bo".into()),
            close_reason: Some("duplicate".into()),
            record: String::new(),
        };
        let now = Utc::now();
        let comment = body(r#"{"comment":"seen it"}"#).unwrap();
        let row = comment.row(&alert, "t1", "ana", now);
        assert_eq!(
            (row.status, row.assignee, row.close_reason, row.comment),
            ("closed", Some("bo"), Some("duplicate"), Some("seen it"))
        );
        let reopen = body(r#"{"status":"open","assignee":null}"#).unwrap();
        let row = reopen.row(&alert, "t2", "ana", now);
        assert_eq!(
            (row.status, row.assignee, row.close_reason),
            ("open", None, None)
        );
        let fresh = Current {
            status: None,
            assignee: None,
            close_reason: None,
            ..alert
        };
        let ack = body(r#"{"status":"acknowledged","assignee":"ana"}"#).unwrap();
        let row = ack.row(&fresh, "t3", "ana", now);
        assert_eq!((row.status, row.assignee), ("acknowledged", Some("ana")));
    }
}
