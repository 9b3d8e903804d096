//! `GET /v1/alerts`: the inbox. Each alert once (its latest version), with
//! its current triage state, filtered, sorted and paged by a keyset cursor,
//! so a page is the same work however deep it is.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{AlertsError, AlertsService, Row, literal, time_literal};
use crate::Principal;

/// The triage states, in the order an inbox shows them.
pub const STATUSES: [&str; 3] = ["open", "acknowledged", "closed"];
/// The severities, least first.
pub const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];
/// Most alerts in one page.
pub const MAX_LIMIT: usize = 500;
const DEFAULT_LIMIT: usize = 50;
/// Most detectors one filter names.
const MAX_DETECTORS: usize = 64;
/// Longest tenant or user id a filter takes (longer ones name nobody).
pub(crate) const MAX_NAME: usize = 512;

/// How the inbox is sorted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// The newest alert first (the default).
    Newest,
    Oldest,
    /// The most severe first, then the newest.
    Severity,
}

/// Where the previous page ended: the last alert's sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    time_micros: i64,
    severity_rank: i64,
    alert_id: String,
}

impl Cursor {
    /// Opaque to clients: the key's text, hex-encoded.
    fn encode(&self) -> String {
        hex::encode(format!(
            "{}.{}.{}",
            self.time_micros, self.severity_rank, self.alert_id
        ))
    }

    fn decode(text: &str) -> Option<Cursor> {
        let bytes = hex::decode(text).ok()?;
        let text = String::from_utf8(bytes).ok()?;
        let mut parts = text.splitn(3, '.');
        let cursor = Cursor {
            time_micros: parts.next()?.parse().ok()?,
            severity_rank: parts.next()?.parse().ok()?,
            alert_id: parts.next()?.to_owned(),
        };
        super::plausible_id(&cursor.alert_id).then_some(cursor)
    }

    fn time(&self) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp_micros(self.time_micros)
    }
}

/// A parsed `GET /v1/alerts` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListRequest {
    pub statuses: Vec<&'static str>,
    pub severities: Vec<&'static str>,
    pub detectors: Vec<String>,
    pub tenant: Option<String>,
    pub user: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub sort: Sort,
    pub limit: usize,
    pub cursor: Option<Cursor>,
}

impl Default for ListRequest {
    fn default() -> Self {
        ListRequest {
            statuses: Vec::new(),
            severities: Vec::new(),
            detectors: Vec::new(),
            tenant: None,
            user: None,
            from: None,
            to: None,
            sort: Sort::Newest,
            limit: DEFAULT_LIMIT,
            cursor: None,
        }
    }
}

impl ListRequest {
    /// From the query string's parameters; an unknown parameter or a bad
    /// value is an error naming it.
    pub fn parse(params: &HashMap<String, String>) -> Result<ListRequest, AlertsError> {
        let mut request = ListRequest::default();
        for (key, value) in params {
            let value = value.trim();
            match key.as_str() {
                "status" => request.statuses = one_of_each("status", value, &STATUSES)?,
                "severity" => request.severities = one_of_each("severity", value, &SEVERITIES)?,
                "detector" => {
                    if list(value).count() > MAX_DETECTORS {
                        return Err(AlertsError::invalid(
                            "detector",
                            format!("lists more than {MAX_DETECTORS} detectors"),
                        ));
                    }
                    request.detectors = list(value)
                        .map(|d| {
                            if is_name(d) {
                                Ok(d.to_owned())
                            } else {
                                Err(AlertsError::invalid(
                                    "detector",
                                    format!("{d:?} is not a detector name"),
                                ))
                            }
                        })
                        .collect::<Result<_, _>>()?
                }
                "tenant" => request.tenant = Some(name("tenant", value)?).filter(|v| !v.is_empty()),
                "user" => request.user = Some(name("user", value)?).filter(|v| !v.is_empty()),
                "from" => request.from = Some(time("from", value)?),
                "to" => request.to = Some(time("to", value)?),
                "sort" => {
                    request.sort = match value {
                        "newest" => Sort::Newest,
                        "oldest" => Sort::Oldest,
                        "severity" => Sort::Severity,
                        other => {
                            return Err(AlertsError::invalid(
                                "sort",
                                format!("{other:?} is not one of newest, oldest, severity"),
                            ));
                        }
                    }
                }
                "limit" => {
                    // More than the most is the most, as a live inbox asks
                    // for as many as it shows.
                    request.limit = value
                        .parse::<usize>()
                        .ok()
                        .filter(|n| *n >= 1)
                        .map(|n| n.min(MAX_LIMIT))
                        .ok_or_else(|| {
                            AlertsError::invalid(
                                "limit",
                                format!("must be a whole number from 1 (more than {MAX_LIMIT} counts as {MAX_LIMIT})"),
                            )
                        })?
                }
                // An empty cursor is the first page.
                "cursor" if value.is_empty() => request.cursor = None,
                "cursor" => {
                    request.cursor = Some(Cursor::decode(value).ok_or_else(|| {
                        AlertsError::invalid("cursor", "is not a cursor this API gave out")
                    })?)
                }
                _ => {
                    return Err(AlertsError::invalid(
                        "query",
                        format!(
                            "unknown parameter {key:?} (expected status, severity, detector, tenant, user, from, to, sort, limit, cursor)"
                        ),
                    ));
                }
            }
        }
        if let (Some(from), Some(to)) = (request.from, request.to)
            && from > to
        {
            return Err(AlertsError::invalid("from", "is after `to`"));
        }
        Ok(request)
    }

    /// The SQL of one page: `limit + 1` rows, the extra one telling whether
    /// there is a next page.
    pub fn sql(&self) -> String {
        let mut alert_filters = Vec::new();
        if !self.severities.is_empty() {
            alert_filters.push(format!("a.severity IN ({})", literals(&self.severities)));
        }
        if !self.detectors.is_empty() {
            alert_filters.push(format!("a.detector IN ({})", literals(&self.detectors)));
        }
        if let Some(tenant) = &self.tenant {
            alert_filters.push(format!("a.tenant_id = {}", literal(tenant)));
        }
        if let Some(user) = &self.user {
            alert_filters.push(format!("a.user_id = {}", literal(user)));
        }
        if let Some(from) = self.from {
            alert_filters.push(format!("a.time >= {}", time_literal(from)));
        }
        if let Some(to) = self.to {
            alert_filters.push(format!("a.time < {}", time_literal(to)));
        }
        let mut page_filters = Vec::new();
        if !self.statuses.is_empty() {
            page_filters.push(format!("status IN ({})", literals(&self.statuses)));
        }
        if let Some(after) = self.after() {
            page_filters.push(after);
        }
        let order = match self.sort {
            Sort::Newest => "time DESC, alert_id DESC",
            Sort::Oldest => "time ASC, alert_id ASC",
            Sort::Severity => "severity_rank DESC, time DESC, alert_id DESC",
        };
        format!(
            "WITH latest_triage AS ({latest}), \
             listed AS (\
               SELECT a.alert_id, a.time, a.tenant_id, a.user_id, a.detector, a.severity, a.score, \
                      a.title, a.repeats, a.window_start, a.window_end, \
                      COALESCE(t.status, 'open') AS status, t.assignee, t.close_reason, \
                      t.triaged_at, t.triaged_by, {rank} AS severity_rank \
               FROM alerts a LEFT JOIN latest_triage t ON t.alert_id = a.alert_id AND t.n = 1{alert_where}) \
             SELECT * FROM listed{page_where} ORDER BY {order} LIMIT {limit}",
            latest = super::triage::latest_rows(""),
            rank = severity_rank("a.severity"),
            alert_where = clause(&alert_filters),
            page_where = clause(&page_filters),
            limit = self.limit + 1,
        )
    }

    /// The keyset predicate: rows strictly after the cursor in sort order.
    fn after(&self) -> Option<String> {
        let cursor = self.cursor.as_ref()?;
        let time = time_literal(cursor.time()?);
        let id = literal(&cursor.alert_id);
        Some(match self.sort {
            Sort::Newest => format!("(time < {time} OR (time = {time} AND alert_id < {id}))"),
            Sort::Oldest => format!("(time > {time} OR (time = {time} AND alert_id > {id}))"),
            Sort::Severity => format!(
                "(severity_rank < {rank} OR (severity_rank = {rank} AND (time < {time} OR (time = {time} AND alert_id < {id}))))",
                rank = cursor.severity_rank
            ),
        })
    }
}

/// A page of the inbox.
#[derive(Debug)]
pub struct Page {
    pub alerts: Vec<Row>,
    pub next_cursor: Option<String>,
}

impl AlertsService {
    /// One page of the alerts `principal` may see.
    pub async fn list(
        &self,
        principal: &Principal,
        request: &ListRequest,
    ) -> Result<Page, AlertsError> {
        let mut rows = self.rows(principal, &request.sql()).await?;
        let next_cursor = if rows.len() > request.limit {
            rows.truncate(request.limit);
            rows.last().and_then(cursor_of).map(|c| c.encode())
        } else {
            None
        };
        for row in &mut rows {
            row.remove("severity_rank");
        }
        Ok(Page {
            alerts: rows,
            next_cursor,
        })
    }
}

/// The cursor that continues after `row`.
fn cursor_of(row: &Row) -> Option<Cursor> {
    let time = row.get("time")?.as_str()?;
    let time = DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc);
    Some(Cursor {
        time_micros: time.timestamp_micros(),
        severity_rank: row.get("severity_rank").and_then(Value::as_i64)?,
        alert_id: row.get("alert_id")?.as_str()?.to_owned(),
    })
}

/// `column`'s severity as a number, the most severe highest.
pub(crate) fn severity_rank(column: &str) -> String {
    format!(
        "CASE {column} WHEN 'critical' THEN 4 WHEN 'high' THEN 3 WHEN 'medium' THEN 2 ELSE 1 END"
    )
}

fn clause(filters: &[String]) -> String {
    if filters.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", filters.join(" AND "))
    }
}

fn literals<S: AsRef<str>>(values: &[S]) -> String {
    values
        .iter()
        .map(|v| literal(v.as_ref()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|v| !v.is_empty())
}

fn one_of_each(
    field: &'static str,
    value: &str,
    allowed: &[&'static str],
) -> Result<Vec<&'static str>, AlertsError> {
    list(value)
        .map(|v| {
            allowed.iter().copied().find(|a| *a == v).ok_or_else(|| {
                AlertsError::invalid(field, format!("{v:?} is not one of {}", allowed.join(", ")))
            })
        })
        .collect()
}

/// A tenant or user id as a filter takes it.
pub(crate) fn name(field: &'static str, value: &str) -> Result<String, AlertsError> {
    if value.len() > MAX_NAME {
        return Err(AlertsError::invalid(
            field,
            format!("is longer than {MAX_NAME} bytes"),
        ));
    }
    Ok(value.to_owned())
}

/// A detector's name: `denial_spike`, `sigma:<rule id>`.
fn is_name(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

fn time(field: &'static str, value: &str) -> Result<DateTime<Utc>, AlertsError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            AlertsError::invalid(
                field,
                format!("{value:?} is not an RFC 3339 time such as 2026-12-07T09:00:00Z: {e}"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn filters_are_parsed_and_bad_ones_are_named() {
        let request = ListRequest::parse(&params(&[
            ("status", "open, acknowledged"),
            ("severity", "critical,high"),
            ("detector", "denial_spike,sigma:mcp-aws-key"),
            ("from", "2026-12-01T00:00:00Z"),
            ("sort", "severity"),
            ("limit", "10"),
        ]))
        .unwrap();
        assert_eq!(request.statuses, ["open", "acknowledged"]);
        assert_eq!(request.severities, ["critical", "high"]);
        assert_eq!(request.detectors, ["denial_spike", "sigma:mcp-aws-key"]);
        assert_eq!(request.sort, Sort::Severity);
        assert_eq!(request.limit, 10);
        let most = ListRequest::parse(&params(&[("limit", "10000")])).unwrap();
        assert_eq!(most.limit, MAX_LIMIT);
        let first = ListRequest::parse(&params(&[("cursor", "")])).unwrap();
        assert_eq!(first.cursor, None);
        let long_user = "u".repeat(513);
        let many_detectors = "d,".repeat(65);
        for (pairs, field) in [
            (vec![("status", "opne")], "status"),
            (vec![("severity", "urgent")], "severity"),
            (vec![("detector", "x' OR 1=1 --")], "detector"),
            (vec![("from", "yesterday")], "from"),
            (vec![("limit", "0")], "limit"),
            (vec![("limit", "-1")], "limit"),
            (vec![("cursor", "zz")], "cursor"),
            (vec![("cursor", "2e")], "cursor"),
            (vec![("sort", "random")], "sort"),
            (vec![("colour", "red")], "query"),
            (vec![("user", long_user.as_str())], "user"),
            (vec![("detector", many_detectors.as_str())], "detector"),
            (
                vec![
                    ("from", "2026-12-02T00:00:00Z"),
                    ("to", "2026-12-01T00:00:00Z"),
                ],
                "from",
            ),
        ] {
            match ListRequest::parse(&params(&pairs)) {
                Err(AlertsError::Invalid { field: named, .. }) => {
                    assert_eq!(named, field, "{pairs:?}")
                }
                other => panic!("{pairs:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn a_cursor_round_trips_and_a_forged_one_is_refused() {
        let cursor = Cursor {
            time_micros: 1_795_334_400_123_456,
            severity_rank: 3,
            alert_id: "8a4c1f0e-0000-4000-8000-000000000001".into(),
        };
        assert_eq!(Cursor::decode(&cursor.encode()), Some(cursor));
        let forged = hex::encode("1.3.x' OR '1'='1");
        assert_eq!(Cursor::decode(&forged), None);
    }

    #[test]
    fn values_reach_the_sql_only_as_literals() {
        let request = ListRequest {
            tenant: Some("acme' OR '1'='1".into()),
            ..ListRequest::default()
        };
        assert!(
            request
                .sql()
                .contains("a.tenant_id = 'acme'' OR ''1''=''1'")
        );
    }
}
