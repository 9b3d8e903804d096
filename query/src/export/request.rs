//! What an export is asked for, checked field by field, and the SQL it runs.
//!
//! The predicate (`where`) is a SQL boolean expression over the `events`
//! columns. It is parsed as exactly one expression and the whole text must
//! be consumed, so `1=1) UNION SELECT …` or `x; DROP …` are refused with the
//! token that is wrong; subqueries are refused too. The SQL embeds the parsed
//! expression re-rendered, never the raw text, so comments or quoting tricks
//! in the predicate cannot change the statement around it. Whatever the
//! predicate says, the query runs in a session that only holds the requested
//! tenant's rows (see [`crate::session`]).

use std::ops::ControlFlow;

use chrono::{DateTime, Duration, Utc};
use datafusion::sql::sqlparser::ast::{Query, Visit, Visitor};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{ExportError, ExportFormat};

/// Longest predicate accepted, in bytes.
pub const MAX_PREDICATE_BYTES: usize = 16 * 1024;
/// Longest tenant id, as in the event contract.
const MAX_TENANT_BYTES: usize = 256;
/// How deeply a predicate may nest.
const MAX_PREDICATE_DEPTH: usize = 64;

/// A valid export request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportRequest {
    pub tenant_id: String,
    /// Inclusive.
    pub from: DateTime<Utc>,
    /// Exclusive.
    pub to: DateTime<Utc>,
    /// The predicate as given.
    pub predicate: Option<String>,
    /// The predicate as parsed and re-rendered: what the SQL embeds.
    canonical: Option<String>,
    pub format: ExportFormat,
}

/// The request as JSON: the body of `POST /v1/exports` and what a job
/// records of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub tenant_id: String,
    pub from: String,
    pub to: String,
    #[serde(rename = "where", default, skip_serializing_if = "Option::is_none")]
    pub predicate: Option<String>,
    pub format: ExportFormat,
}

fn invalid(field: &'static str, problem: impl Into<String>) -> ExportError {
    ExportError::Invalid {
        field,
        problem: problem.into(),
    }
}

impl ExportRequest {
    /// Checks each field; the error names the first bad one.
    pub fn new(
        tenant_id: &str,
        from: &str,
        to: &str,
        predicate: Option<&str>,
        format: ExportFormat,
    ) -> Result<ExportRequest, ExportError> {
        if tenant_id.is_empty() || tenant_id.len() > MAX_TENANT_BYTES {
            return Err(invalid(
                "tenant_id",
                format!("must be 1 to {MAX_TENANT_BYTES} bytes"),
            ));
        }
        let from = parse_time("from", from)?;
        let to = parse_time("to", to)?;
        if from >= to {
            return Err(invalid(
                "to",
                format!(
                    "must be after from ({} is not after {})",
                    tooltrail_schemas::format_time(&to),
                    tooltrail_schemas::format_time(&from)
                ),
            ));
        }
        let predicate = predicate.filter(|p| !p.trim().is_empty());
        let canonical = predicate
            .map(check_predicate)
            .transpose()
            .map_err(|problem| invalid("where", problem))?;
        Ok(ExportRequest {
            tenant_id: tenant_id.to_owned(),
            from,
            to,
            predicate: predicate.map(str::to_owned),
            canonical,
            format,
        })
    }

    /// Parses a `POST /v1/exports` body.
    pub fn from_json(body: &[u8]) -> Result<ExportRequest, ExportError> {
        const FIELDS: [&str; 5] = ["tenant_id", "from", "to", "where", "format"];
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            invalid(
                "body",
                format!(
                    "must be a JSON object {{\"tenant_id\", \"from\", \"to\", \"where\"?, \"format\"}}: {e}"
                ),
            )
        })?;
        let Value::Object(map) = value else {
            return Err(invalid("body", "must be a JSON object"));
        };
        if let Some(unknown) = map.keys().find(|k| !FIELDS.contains(&k.as_str())) {
            return Err(invalid(
                "body",
                format!(
                    "unknown field {unknown:?}; the fields are {}",
                    FIELDS.join(", ")
                ),
            ));
        }
        let string = |field: &'static str| -> Result<Option<&str>, ExportError> {
            match map.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(invalid(field, format!("must be a string, got {other}"))),
            }
        };
        let required =
            |field: &'static str| string(field)?.ok_or_else(|| invalid(field, "is required"));
        let tenant_id = required("tenant_id")?;
        let from = required("from")?;
        let to = required("to")?;
        let predicate = string("where")?;
        let format = required("format")?
            .parse::<ExportFormat>()
            .map_err(|problem| invalid("format", problem))?;
        ExportRequest::new(tenant_id, from, to, predicate, format)
    }

    pub fn from_record(record: &RequestRecord) -> Result<ExportRequest, ExportError> {
        ExportRequest::new(
            &record.tenant_id,
            &record.from,
            &record.to,
            record.predicate.as_deref(),
            record.format,
        )
    }

    pub fn record(&self) -> RequestRecord {
        RequestRecord {
            tenant_id: self.tenant_id.clone(),
            from: tooltrail_schemas::format_time(&self.from),
            to: tooltrail_schemas::format_time(&self.to),
            predicate: self.predicate.clone(),
            format: self.format,
        }
    }

    /// The query the export runs. The leading comment names the export, so
    /// the query audit's `sql` (and `sql_sha256`) tie the audit record to the
    /// manifest. `dt` and `hour` bounds let the listing skip partitions
    /// outside the range; there is no `ORDER BY`, which would need an
    /// unbounded sort, so rows come in no particular order. An `ocsf`
    /// export selects the OCSF API Activity class's columns
    /// (`tooltrail_lake::ocsf::API_ACTIVITY`, the `ocsf_api_activity` view's
    /// definition) instead of `*`; the predicate still reads `events`' columns.
    pub fn sql(&self, export_id: &str) -> String {
        let columns = match self.format {
            ExportFormat::Ocsf => tooltrail_lake::ocsf::API_ACTIVITY.select_list(),
            ExportFormat::Parquet | ExportFormat::Csv | ExportFormat::Ndjson => "*",
        };
        let from = tooltrail_schemas::format_time(&self.from);
        let to = tooltrail_schemas::format_time(&self.to);
        let last = self.to - Duration::microseconds(1);
        let (d1, h1) = (self.from.format("%Y-%m-%d"), self.from.format("%H"));
        let (d2, h2) = (last.format("%Y-%m-%d"), last.format("%H"));
        // The session only holds this tenant's rows; the filter says so in
        // the SQL the auditor reads.
        let tenant = self.tenant_id.replace('\'', "''");
        let mut sql = format!(
            "/* tooltrail export {export_id} */\n\
             SELECT {columns} FROM events\n\
             WHERE tenant_id = '{tenant}'\n  \
             AND time >= '{from}' AND time < '{to}'\n  \
             AND dt >= '{d1}' AND dt <= '{d2}'\n  \
             AND (dt > '{d1}' OR hour >= '{h1}') AND (dt < '{d2}' OR hour <= '{h2}')"
        );
        if let Some(predicate) = &self.canonical {
            sql.push_str(&format!("\n  AND ({predicate})"));
        }
        sql
    }
}

fn parse_time(field: &'static str, text: &str) -> Result<DateTime<Utc>, ExportError> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| {
            invalid(
                field,
                format!(
                    "must be an RFC 3339 time with an offset, like 2025-01-31T00:00:00Z; got {text:?} ({e})"
                ),
            )
        })
}

/// Checks that `text` is exactly one SQL expression without subqueries;
/// returns it re-rendered, or what is wrong.
pub fn check_predicate(text: &str) -> Result<String, String> {
    if text.len() > MAX_PREDICATE_BYTES {
        return Err(format!(
            "is {} bytes; the limit is {MAX_PREDICATE_BYTES}",
            text.len()
        ));
    }
    let dialect = GenericDialect {};
    let mut parser = Parser::new(&dialect)
        .with_recursion_limit(MAX_PREDICATE_DEPTH)
        .try_with_sql(text)
        .map_err(|e| format!("{e} in {text:?}"))?;
    let expr = parser
        .parse_expr()
        .map_err(|e| format!("not a SQL expression: {e} in {text:?}"))?;
    let next = parser.peek_token();
    if next.token != Token::EOF {
        let at = next.span.start;
        return Err(format!(
            "must be a single SQL expression, but {:?} follows it at line {}, column {} in {text:?} \
             (no `;`, UNION, or unbalanced parentheses)",
            next.token.to_string(),
            at.line,
            at.column
        ));
    }
    if let ControlFlow::Break(found) = expr.visit(&mut NoQueries) {
        return Err(format!(
            "subqueries are not allowed in the predicate: {found:?}; filter on the columns of events"
        ));
    }
    Ok(expr.to_string())
}

/// Stops at the first query nested anywhere in an expression (`(SELECT …)`,
/// `EXISTS`, `IN (SELECT …)`, a query as a function argument).
struct NoQueries;

impl Visitor for NoQueries {
    type Break = String;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<String> {
        ControlFlow::Break(query.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(predicate: Option<&str>) -> Result<ExportRequest, ExportError> {
        ExportRequest::new(
            "acme",
            "2025-03-01T00:00:00Z",
            "2025-03-02T12:30:00+02:00",
            predicate,
            ExportFormat::Parquet,
        )
    }

    fn problem(predicate: &str) -> String {
        match request(Some(predicate)) {
            Err(ExportError::Invalid { field, problem }) => {
                assert_eq!(field, "where");
                problem
            }
            other => panic!("{predicate:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn accepts_ordinary_predicates_and_embeds_them_reparsed() {
        for ok in [
            "tool = 'x' AND status >= 400",
            "user_id IN ('a', 'b') OR decision = 'deny'",
            "lower(server) LIKE 'git%' AND latency_ms BETWEEN 1 AND 2.5",
            "json_get_str(arguments, 'q') = 'needle' -- a comment",
            "status = 403 /* denied */",
        ] {
            let r = request(Some(ok)).unwrap_or_else(|e| panic!("{ok:?}: {e}"));
            let sql = r.sql("id-1");
            assert!(!sql.contains("--") && !sql.contains("denied */"), "{sql}");
        }
        let sql = request(Some("tool = 'x' AND status >= 400"))
            .unwrap()
            .sql("id-1");
        assert!(
            sql.ends_with("\n  AND (tool = 'x' AND status >= 400)"),
            "{sql}"
        );
    }

    #[test]
    fn refuses_injections_quoting_what_is_wrong() {
        let p = problem("1=1) UNION SELECT * FROM query_audit WHERE (1=1");
        assert!(p.contains("\")\" follows it at line 1, column 4"), "{p}");
        let p = problem("status = 200; DROP TABLE events");
        assert!(p.contains("\";\" follows it"), "{p}");
        let p = problem("tool = 'x' OR EXISTS (SELECT 1 FROM query_audit)");
        assert!(p.contains("subqueries are not allowed"), "{p}");
        let p = problem("user_id IN (SELECT user_id FROM alerts)");
        assert!(p.contains("subqueries are not allowed"), "{p}");
        let p = problem("status = (SELECT max(status) FROM events)");
        assert!(p.contains("subqueries"), "{p}");
        let p = problem("tool = 'unterminated");
        assert!(p.contains("unterminated"), "{p}");
        let p = problem("status >=");
        assert!(p.contains("not a SQL expression"), "{p}");
        let p = problem("tool = 'x' /* open comment");
        assert!(p.contains("open comment"), "{p}");
        let deep = format!("{}1{}", "(".repeat(200), ")".repeat(200));
        assert!(problem(&deep).contains("recursion"), "deep nesting");
    }

    #[test]
    fn names_the_bad_field() {
        let field = |body: &str| match ExportRequest::from_json(body.as_bytes()) {
            Err(ExportError::Invalid { field, problem }) => format!("{field}: {problem}"),
            other => panic!("{body} was accepted: {other:?}"),
        };
        let ok = r#""tenant_id":"acme","from":"2025-03-01T00:00:00Z","to":"2025-03-02T00:00:00Z""#;
        assert!(field(&format!("{{{ok}}}")).starts_with("format: is required"));
        assert!(field(&format!("{{{ok},\"format\":\"xlsx\"}}")).starts_with("format: unknown"));
        assert!(
            field(&format!("{{{ok},\"format\":\"csv\",\"predicate\":\"x\"}}"))
                .contains("unknown field \"predicate\"")
        );
        assert!(
            field(r#"{"tenant_id":"acme","from":"yesterday","to":"2025-03-02T00:00:00Z","format":"csv"}"#)
                .starts_with("from: must be an RFC 3339 time")
        );
        assert!(
            field(r#"{"tenant_id":"acme","from":"2025-03-02T00:00:00","to":"2025-03-03T00:00:00Z","format":"csv"}"#)
                .starts_with("from:"),
            "an offset is required"
        );
        assert!(
            field(r#"{"tenant_id":"acme","from":"2025-03-02T00:00:00Z","to":"2025-03-02T00:00:00Z","format":"csv"}"#)
                .starts_with("to: must be after from")
        );
        assert!(
            field(r#"{"tenant_id":"","from":"2025-03-01T00:00:00Z","to":"2025-03-02T00:00:00Z","format":"csv"}"#)
                .starts_with("tenant_id:")
        );
        assert!(
            field(r#"{"tenant_id":7,"from":"2025-03-01T00:00:00Z","to":"2025-03-02T00:00:00Z","format":"csv"}"#)
                .starts_with("tenant_id: must be a string")
        );
        assert!(field("[1]").starts_with("body:"));
        assert!(
            field(&format!("{{{ok},\"format\":\"csv\",\"where\":\"1=1; x\"}}"))
                .starts_with("where:")
        );
        let r = ExportRequest::from_json(
            format!("{{{ok},\"format\":\"CSV\",\"where\":null}}").as_bytes(),
        )
        .expect("valid");
        assert_eq!((r.format, r.predicate), (ExportFormat::Csv, None));
    }

    #[test]
    fn the_sql_bounds_time_and_partitions_and_round_trips_through_the_record() {
        let r = request(Some("status >= 400")).unwrap();
        let sql = r.sql("0190-abc");
        assert!(sql.starts_with(
            "/* tooltrail export 0190-abc */\nSELECT * FROM events\nWHERE tenant_id = 'acme'\n"
        ));
        let odd = ExportRequest::new(
            "o'brien */ x",
            "2025-03-01T00:00:00Z",
            "2025-03-02T00:00:00Z",
            None,
            ExportFormat::Csv,
        )
        .unwrap();
        assert!(
            odd.sql("id")
                .contains("WHERE tenant_id = 'o''brien */ x'\n")
        );
        // `to` is 2025-03-02T10:30:00Z, exclusive.
        assert!(
            sql.contains(
                "time >= '2025-03-01T00:00:00.000000Z' AND time < '2025-03-02T10:30:00.000000Z'"
            ),
            "{sql}"
        );
        assert!(
            sql.contains("dt >= '2025-03-01' AND dt <= '2025-03-02'"),
            "{sql}"
        );
        assert!(sql.contains("(dt < '2025-03-02' OR hour <= '10')"), "{sql}");
        let again = ExportRequest::from_record(&r.record()).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn an_ocsf_export_selects_the_api_activity_columns_under_the_same_bounds() {
        let r = ExportRequest::new(
            "acme",
            "2025-03-01T00:00:00Z",
            "2025-03-02T00:00:00Z",
            Some("status >= 400"),
            ExportFormat::Ocsf,
        )
        .unwrap();
        let plain = ExportRequest::new(
            "acme",
            "2025-03-01T00:00:00Z",
            "2025-03-02T00:00:00Z",
            Some("status >= 400"),
            ExportFormat::Ndjson,
        )
        .unwrap();
        let columns = tooltrail_lake::ocsf::API_ACTIVITY.select_list();
        assert_eq!(
            r.sql("id"),
            plain
                .sql("id")
                .replacen("SELECT * FROM", &format!("SELECT {columns} FROM"), 1)
        );
    }
}
