//! `GET /v1/alerts/{id}` (an alert with its triage history, evidence events
//! and the series of the user's calls around it) and `GET
//! /v1/users/{tenant}/{user}` (a user's page).

use chrono::{DateTime, Duration, DurationRound, Utc};
use serde_json::{Value, json};

use super::list::{ListRequest, severity_rank};
use super::{AlertsError, AlertsService, Row, literal, plausible_id, time_literal};
use crate::Principal;

/// Buckets of the series before the alert's window, and after it.
const BUCKETS_BEFORE: i64 = 24;
const BUCKETS_AFTER: i64 = 6;
/// Most evidence events listed.
const MAX_EVIDENCE: usize = 500;
/// How far back a user's page looks for first-seen values.
pub const FIRST_SEEN_DAYS: i64 = 90;

/// The evidence and sample columns, in the order an analyst reads them.
const EVENT_COLUMNS: &str = "time, server, method, tool, resource, decision, status, error_type, \
     latency_ms, source_ip, client_id, session_id, event_id";

/// An alert's lake row and its times.
struct Alert {
    row: Row,
    tenant: String,
    user: String,
    detector: String,
    window_start: DateTime<Utc>,
    window_end: DateTime<Utc>,
    expected: Option<f64>,
    event_ids: Vec<String>,
}

impl AlertsService {
    /// The alert `id` as `principal` may see it.
    pub async fn detail(&self, principal: &Principal, id: &str) -> Result<Value, AlertsError> {
        let not_found = || AlertsError::NotFound(format!("no alert {id:?}"));
        if !plausible_id(id) {
            return Err(not_found());
        }
        let alert = self.alert(principal, id).await?.ok_or_else(not_found)?;
        // One read at a time: each holds one of the caller's
        // `max_concurrent_per_principal` slots while it runs.
        let triage = self
            .rows(
                principal,
                &format!(
                    "SELECT status, assignee, close_reason, comment, actor, time FROM alert_triage \
                     WHERE alert_id = {} ORDER BY time, triage_id",
                    literal(id)
                ),
            )
            .await?;
        let events = self.evidence(principal, &alert).await?;
        let series = self.series(principal, &alert).await?;
        let sql = investigation_sql(&alert);
        let mut body = alert.row;
        if let Some(latest) = triage.last() {
            body.insert("status".into(), latest["status"].clone());
            body.insert("assignee".into(), latest["assignee"].clone());
            body.insert("close_reason".into(), latest["close_reason"].clone());
            body.insert("triaged_at".into(), latest["time"].clone());
            body.insert("triaged_by".into(), latest["actor"].clone());
        } else {
            body.insert("status".into(), "open".into());
            for key in ["assignee", "close_reason", "triaged_at", "triaged_by"] {
                body.insert(key.into(), Value::Null);
            }
        }
        if let Some(Value::String(record)) = body.get("record") {
            let parsed = serde_json::from_str(record).unwrap_or(Value::Null);
            body.insert("record".into(), parsed);
        }
        Ok(json!({
            "alert": body,
            "triage": triage,
            "events": events,
            "series": series,
            "sql": sql,
        }))
    }

    async fn alert(&self, principal: &Principal, id: &str) -> Result<Option<Alert>, AlertsError> {
        let sql = format!(
            "SELECT alert_id, time, tenant_id, user_id, detector, severity, score, title, repeats, \
                    window_start, window_end, explanation, evidence.observed AS observed, \
                    evidence.expected AS expected, evidence.p_value AS p_value, \
                    evidence.new_values AS new_values, evidence.event_ids AS event_ids, \
                    {rank} AS severity_rank, record \
             FROM alerts WHERE alert_id = {id}",
            rank = severity_rank("severity"),
            id = literal(id),
        );
        let Some(mut row) = self.rows(principal, &sql).await?.into_iter().next() else {
            return Ok(None);
        };
        row.remove("severity_rank");
        for list in ["new_values", "event_ids"] {
            if row.get(list).is_none_or(Value::is_null) {
                row.insert(list.into(), json!([]));
            }
        }
        let text = |k: &str| {
            row.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let time = |k: &str| {
            DateTime::parse_from_rfc3339(&text(k))
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| {
                    AlertsError::Query(crate::QueryError::Internal(format!("alert {k}: {e}")))
                })
        };
        let alert = Alert {
            tenant: text("tenant_id"),
            user: text("user_id"),
            detector: text("detector"),
            window_start: time("window_start")?,
            window_end: time("window_end")?,
            expected: row.get("expected").and_then(Value::as_f64),
            event_ids: row["event_ids"]
                .as_array()
                .map(|ids| {
                    ids.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            row,
        };
        Ok(Some(alert))
    }

    /// The alert's sample events; with none, the user's events in its window.
    async fn evidence(&self, principal: &Principal, alert: &Alert) -> Result<Value, AlertsError> {
        let from = alert.window_start - Duration::days(1);
        let to = alert.window_end + Duration::hours(1);
        // The events the alert names, whoever's they are (a cross-tenant or
        // shared-session alert names others'); without names, the user's
        // events in the window.
        let which = if alert.event_ids.is_empty() {
            format!(
                "user_id = {} AND time >= {} AND time <= {}",
                literal(&alert.user),
                time_literal(alert.window_start),
                time_literal(alert.window_end)
            )
        } else {
            let ids: Vec<String> = alert.event_ids.iter().map(|id| literal(id)).collect();
            format!("event_id IN ({})", ids.join(", "))
        };
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE tenant_id = {tenant} AND dt >= '{from_day}' AND dt <= '{to_day}' \
               AND time >= {from} AND time <= {to} AND {which} \
             ORDER BY time, event_id LIMIT {MAX_EVIDENCE}",
            tenant = literal(&alert.tenant),
            from_day = from.format("%Y-%m-%d"),
            to_day = to.format("%Y-%m-%d"),
            from = time_literal(from),
            to = time_literal(to),
        );
        let rows = self.rows(principal, &sql).await?;
        let columns: Vec<Value> = EVENT_COLUMNS
            .split(", ")
            .map(|c| json!({"name": c}))
            .collect();
        Ok(json!({"columns": columns, "rows": rows}))
    }

    /// The user's calls and denials per bucket around the alert's window.
    async fn series(&self, principal: &Principal, alert: &Alert) -> Result<Value, AlertsError> {
        let window = alert.window_end - alert.window_start;
        let bucket = if window >= Duration::minutes(1) && window <= Duration::days(1) {
            window
        } else {
            Duration::hours(1)
        };
        let origin = alert.window_start;
        let from = origin - bucket * BUCKETS_BEFORE as i32;
        let buckets_in_window = ((window.num_seconds() / bucket.num_seconds().max(1)) + 1).max(1);
        let count = BUCKETS_BEFORE + buckets_in_window + BUCKETS_AFTER;
        let to = from + bucket * count as i32;
        let sql = format!(
            "SELECT date_bin(INTERVAL '{secs} seconds', time, {origin}) AS bucket, count(*) AS calls, \
                    sum(CASE WHEN decision = 'deny' THEN 1 ELSE 0 END) AS denials \
             FROM events \
             WHERE tenant_id = {tenant} AND user_id = {user} AND dt >= '{from_day}' AND dt <= '{to_day}' \
               AND time >= {from} AND time < {to} \
             GROUP BY 1 ORDER BY 1",
            secs = bucket.num_seconds(),
            origin = time_literal(origin),
            tenant = literal(&alert.tenant),
            user = literal(&alert.user),
            from_day = from.format("%Y-%m-%d"),
            to_day = to.format("%Y-%m-%d"),
            from = time_literal(from),
            to = time_literal(to),
        );
        let counted = self.rows(principal, &sql).await?;
        let points = fill(&counted, from, bucket, count, "bucket");
        let measure = if alert.detector == "denial_spike" {
            "denials"
        } else {
            "calls"
        };
        // The baseline's expectation is for the detector's own window.
        let expected = match alert.detector.as_str() {
            "denial_spike" | "volume_spike" if bucket == window => alert.expected,
            _ => None,
        };
        Ok(json!({
            "measure": measure,
            "bucket_seconds": bucket.num_seconds(),
            "expected": expected,
            "points": points,
            "window_start": tooltrail_schemas::format_time(&alert.window_start),
            "window_end": tooltrail_schemas::format_time(&alert.window_end),
        }))
    }

    /// A user's page: calls per hour over `days`, first-seen values, alerts
    /// and recent sessions.
    pub async fn user(
        &self,
        principal: &Principal,
        tenant: &str,
        user: &str,
        days: i64,
        now: DateTime<Utc>,
    ) -> Result<Value, AlertsError> {
        if !principal.tenants.allows(tenant) {
            return Err(AlertsError::NotFound(format!(
                "no user {user:?} in tenant {tenant:?}"
            )));
        }
        let hour = Duration::hours(1);
        let to = now.duration_trunc(hour).unwrap_or(now) + hour;
        let from = to - Duration::days(days);
        let scope = |since: DateTime<Utc>| {
            format!(
                "tenant_id = {} AND user_id = {} AND dt >= '{}' AND time >= {}",
                literal(tenant),
                literal(user),
                since.format("%Y-%m-%d"),
                time_literal(since)
            )
        };
        let hourly = self
            .rows(
                principal,
                &format!(
                    "SELECT date_trunc('hour', time) AS hour, count(*) AS calls, \
                            sum(CASE WHEN decision = 'deny' THEN 1 ELSE 0 END) AS denials \
                     FROM events WHERE {} GROUP BY 1 ORDER BY 1",
                    scope(from)
                ),
            )
            .await?;
        let hours = (to - from).num_hours();
        let hourly = fill(&hourly, from, hour, hours, "hour");
        let since = to - Duration::days(FIRST_SEEN_DAYS.max(days));
        let kinds = ["tool", "server", "source_ip", "client_id"];
        let union: Vec<String> = kinds
            .iter()
            .map(|k| {
                format!(
                    "SELECT '{k}' AS kind, CAST({k} AS VARCHAR) AS value, min(time) AS first_seen, count(*) AS calls \
                     FROM events WHERE {} AND {k} IS NOT NULL GROUP BY {k}",
                    scope(since)
                )
            })
            .collect();
        let seen = self
            .rows(
                principal,
                &format!("{} ORDER BY first_seen DESC", union.join(" UNION ALL ")),
            )
            .await?;
        let mut first_seen = serde_json::Map::new();
        for kind in kinds {
            let values: Vec<Value> = seen
                .iter()
                .filter(|r| r.get("kind").and_then(Value::as_str) == Some(kind))
                .take(50)
                .map(|r| json!({"value": r["value"], "first_seen": r["first_seen"], "calls": r["calls"]}))
                .collect();
            first_seen.insert(kind.into(), Value::Array(values));
        }
        let sessions = self
            .rows(
                principal,
                &format!(
                    "SELECT session_id, min(time) AS start, max(time) AS \"end\", count(*) AS calls, \
                            sum(CASE WHEN decision = 'deny' THEN 1 ELSE 0 END) AS denials, \
                            count(DISTINCT tool) AS tools \
                     FROM events WHERE {} AND session_id IS NOT NULL \
                     GROUP BY session_id ORDER BY start DESC LIMIT 50",
                    scope(from)
                ),
            )
            .await?;
        let alerts = self
            .list(
                principal,
                &ListRequest {
                    tenant: Some(tenant.to_owned()),
                    user: Some(user.to_owned()),
                    limit: 100,
                    ..ListRequest::default()
                },
            )
            .await?;
        Ok(json!({
            "tenant_id": tenant,
            "user_id": user,
            "days": days,
            "first_seen_since": tooltrail_schemas::format_time(&since),
            "hourly": hourly,
            "first_seen": first_seen,
            "alerts": alerts.alerts,
            "sessions": sessions,
        }))
    }
}

/// `count` points from `from`, one per `step`, with the counts of `rows`
/// (keyed by their `key` time) and zero elsewhere.
fn fill(rows: &[Row], from: DateTime<Utc>, step: Duration, count: i64, key: &str) -> Vec<Value> {
    let counted: std::collections::HashMap<i64, (i64, i64)> = rows
        .iter()
        .filter_map(|r| {
            let t = DateTime::parse_from_rfc3339(r.get(key)?.as_str()?).ok()?;
            let n = |k: &str| r.get(k).and_then(Value::as_i64).unwrap_or(0);
            Some((t.timestamp_micros(), (n("calls"), n("denials"))))
        })
        .collect();
    (0..count.clamp(0, 10_000))
        .map(|i| {
            let t = from + step * i as i32;
            let (calls, denials) = counted
                .get(&t.timestamp_micros())
                .copied()
                .unwrap_or((0, 0));
            json!({"time": tooltrail_schemas::format_time(&t), "calls": calls, "denials": denials})
        })
        .collect()
}

/// A ready query over the user's events around the alert, for the SQL
/// workbench.
fn investigation_sql(alert: &Alert) -> String {
    let from = alert.window_start - Duration::minutes(30);
    let to = alert.window_end + Duration::minutes(30);
    format!(
        "SELECT {EVENT_COLUMNS}\nFROM events\nWHERE tenant_id = {}\n  AND user_id = {}\n  AND time BETWEEN {} AND {}\nORDER BY time",
        literal(&alert.tenant),
        literal(&alert.user),
        time_literal(from),
        time_literal(to),
    )
}
