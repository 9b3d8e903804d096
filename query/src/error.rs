//! How a query fails, as the HTTP API and the Postgres wire report it.

use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;

/// A query's failure: a stable code, an HTTP status and a message.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// The caller's address is backing off after failed logins.
    #[error("too many failed logins from this address: try again in {retry_after_secs}s")]
    LoginsRefused { retry_after_secs: u64 },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    ReadOnly(String),
    #[error("{0}")]
    Sql(String),
    #[error("the SQL is {len} bytes; the limit is {max} (query.max_sql_bytes)")]
    SqlTooLarge { len: usize, max: usize },
    /// Expressions nested deeper than `query.max_expr_depth`.
    #[error("{0}")]
    TooComplex(String),
    #[error("{0}")]
    Busy(String),
    #[error("the query ran longer than {0:?} (query.timeout) and was cancelled")]
    Timeout(std::time::Duration),
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    ResourcesExhausted(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Internal(String),
}

impl QueryError {
    /// The `error` field of the JSON error body.
    pub fn code(&self) -> &'static str {
        match self {
            QueryError::Unauthorized => "unauthorized",
            QueryError::LoginsRefused { .. } => "too_many_failed_logins",
            QueryError::Forbidden(_) => "forbidden",
            QueryError::ReadOnly(_) => "read_only",
            QueryError::Sql(_) => "sql_error",
            QueryError::SqlTooLarge { .. } => "sql_too_large",
            QueryError::TooComplex(_) => "query_too_complex",
            QueryError::Busy(_) => "too_many_queries",
            QueryError::Timeout(_) => "timeout",
            QueryError::Failed(_) => "query_failed",
            QueryError::ResourcesExhausted(_) => "resources_exhausted",
            QueryError::NotFound(_) => "not_found",
            QueryError::Internal(_) => "internal",
        }
    }

    pub fn http_status(&self) -> u16 {
        match self {
            QueryError::Unauthorized => 401,
            QueryError::Forbidden(_) | QueryError::ReadOnly(_) => 403,
            QueryError::Sql(_) | QueryError::Failed(_) | QueryError::TooComplex(_) => 400,
            QueryError::SqlTooLarge { .. } => 413,
            QueryError::Busy(_) | QueryError::LoginsRefused { .. } => 429,
            QueryError::Timeout(_) => 504,
            QueryError::ResourcesExhausted(_) => 503,
            QueryError::NotFound(_) => 404,
            QueryError::Internal(_) => 500,
        }
    }

    /// The outcome recorded in the query audit.
    pub fn outcome(&self) -> &'static str {
        match self {
            QueryError::Timeout(_) => "timeout",
            QueryError::Busy(_) | QueryError::SqlTooLarge { .. } | QueryError::TooComplex(_) => {
                "rejected"
            }
            QueryError::Forbidden(_)
            | QueryError::ReadOnly(_)
            | QueryError::Unauthorized
            | QueryError::LoginsRefused { .. } => "denied",
            _ => "error",
        }
    }

    /// The SQLSTATE the Postgres wire reports.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            QueryError::Unauthorized => "28P01",
            // invalid_authorization_specification
            QueryError::LoginsRefused { .. } => "28000",
            QueryError::Forbidden(_) | QueryError::ReadOnly(_) => "42501",
            QueryError::Sql(_) => "42601",
            QueryError::SqlTooLarge { .. } => "54000",
            // statement_too_complex
            QueryError::TooComplex(_) => "54001",
            QueryError::Busy(_) => "53300",
            QueryError::Timeout(_) => "57014",
            QueryError::ResourcesExhausted(_) => "53200",
            QueryError::NotFound(_) => "42P01",
            QueryError::Failed(_) => "22000",
            QueryError::Internal(_) => "XX000",
        }
    }
}

impl From<DataFusionError> for QueryError {
    fn from(e: DataFusionError) -> Self {
        if is_bad_regex(&e) {
            return QueryError::Failed(e.strip_backtrace());
        }
        if let DataFusionError::SQL(parse, _) = e.find_root()
            && matches!(**parse, ParserError::RecursionLimitExceeded)
        {
            return QueryError::TooComplex(
                "the query nests parentheses, subqueries or CASE expressions more than 50 levels deep, the parser's limit".into(),
            );
        }
        match e.find_root() {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_) => QueryError::Sql(e.strip_backtrace()),
            DataFusionError::ResourcesExhausted(_) => {
                QueryError::ResourcesExhausted(e.strip_backtrace())
            }
            DataFusionError::Execution(_) | DataFusionError::ArrowError(..) => {
                QueryError::Failed(e.strip_backtrace())
            }
            _ => QueryError::Internal(e.strip_backtrace()),
        }
    }
}

/// Whether `e` is an invalid regular expression the query supplied, which
/// DataFusion reports as an external error (the optimizer's `Invalid regex`
/// context, `regexp_replace`'s `regex::Error`) rather than as the client's.
fn is_bad_regex(e: &DataFusionError) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(error) = next {
        if let Some(DataFusionError::Context(what, _)) = error.downcast_ref::<DataFusionError>()
            && what == "Invalid regex"
        {
            return true;
        }
        if error.downcast_ref::<regex::Error>().is_some() {
            return true;
        }
        next = error.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_regex_is_the_clients_error() {
        // Built at run time, as a query's pattern is.
        let pattern = String::from("(");
        let bad = regex::Regex::new(&pattern).unwrap_err();
        let e = DataFusionError::Context(
            "Invalid regex".into(),
            Box::new(DataFusionError::External(Box::new(bad.clone()))),
        );
        assert_eq!(QueryError::from(e).http_status(), 400);
        let e = DataFusionError::External(Box::new(bad));
        assert_eq!(QueryError::from(e).http_status(), 400);
        let e = DataFusionError::External("disk on fire".into());
        assert_eq!(QueryError::from(e).http_status(), 500);
    }
}
