//! How a query fails, as the HTTP API and the Postgres wire report it.

use datafusion::error::DataFusionError;

/// A query's failure: a stable code, an HTTP status and a message.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    ReadOnly(String),
    #[error("{0}")]
    Sql(String),
    #[error("the SQL is {len} bytes; the limit is {max} (query.max_sql_bytes)")]
    SqlTooLarge { len: usize, max: usize },
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
            QueryError::Forbidden(_) => "forbidden",
            QueryError::ReadOnly(_) => "read_only",
            QueryError::Sql(_) => "sql_error",
            QueryError::SqlTooLarge { .. } => "sql_too_large",
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
            QueryError::Sql(_) | QueryError::Failed(_) => 400,
            QueryError::SqlTooLarge { .. } => 413,
            QueryError::Busy(_) => 429,
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
            QueryError::Busy(_) | QueryError::SqlTooLarge { .. } => "rejected",
            QueryError::Forbidden(_) | QueryError::ReadOnly(_) | QueryError::Unauthorized => {
                "denied"
            }
            _ => "error",
        }
    }

    /// The SQLSTATE the Postgres wire reports.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            QueryError::Unauthorized => "28P01",
            QueryError::Forbidden(_) | QueryError::ReadOnly(_) => "42501",
            QueryError::Sql(_) => "42601",
            QueryError::SqlTooLarge { .. } => "54000",
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
