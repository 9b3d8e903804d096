use thiserror::Error;

/// Why a record is not a valid v1 event. Every variant names what was wrong
/// and, where it applies, the field.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum DecodeError {
    #[error("event is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("not valid UTF-8: invalid byte at offset {offset}")]
    NotUtf8 { offset: usize },
    #[error("not JSON: {message}")]
    NotJson { message: String },
    #[error("not a JSON object: found {found}")]
    NotObject { found: &'static str },
    #[error("field `{field}`: {problem}")]
    Field { field: String, problem: Problem },
    /// A valid event for a tenant its credential may not write (an ingest
    /// token's `tenants`, or `kafka.tenants`). `credential` names the token
    /// or the allow-list, never its secret.
    #[error("field `tenant_id`: tenant `{tenant}` may not be written by {credential}")]
    TenantNotAllowed { tenant: String, credential: String },
    /// A Kafka record of an `otlp_proto` topic that is not an OTLP export
    /// request (`ExportLogsServiceRequest`).
    #[error("not an OTLP export request: {message}")]
    NotOtlp { message: String },
}

/// What is wrong with one field.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum Problem {
    #[error("required field is missing or null")]
    Missing,
    #[error("required when {0}")]
    MissingWhen(&'static str),
    #[error("appears more than once")]
    Duplicate,
    #[error("wrong type: {0}")]
    WrongType(String),
    #[error(
        "bad time {value:?}: {message} (want RFC 3339 with an offset, e.g. 2026-11-22T09:30:00Z)"
    )]
    BadTime { value: String, message: String },
    #[error("{0}")]
    OutOfRange(String),
    /// An event `time` outside the window ingest accepts around its receipt
    /// (`ingest.max_event_age`, `ingest.max_event_future`). Stored with the
    /// reason code `out_of_range`, like any other value out of range.
    #[error("{message}")]
    OutsideWindow { message: String, too_old: bool },
    #[error("{0}")]
    BadValue(String),
    #[error("{len} bytes, over the {limit}-byte limit")]
    TooLong { len: usize, limit: usize },
    #[error("must not be empty")]
    Empty,
    #[error("unsupported schema_version {0}; this build reads version 1")]
    UnsupportedVersion(i64),
    /// An OTLP record has none of the attributes `[otlp.mapping]` names for
    /// a required field; the message names them.
    #[error("{0}")]
    Unmapped(String),
}

impl DecodeError {
    pub(crate) fn field(field: &str, problem: Problem) -> Self {
        DecodeError::Field {
            field: field.to_owned(),
            problem,
        }
    }

    /// A short, stable snake_case code for the kind of failure: a bounded
    /// label for metrics and the quarantine's `reason` column.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::NotUtf8 { .. } => "not_utf8",
            DecodeError::NotJson { .. } => "not_json",
            DecodeError::NotObject { .. } => "not_object",
            DecodeError::TenantNotAllowed { .. } => "tenant_not_allowed",
            DecodeError::NotOtlp { .. } => "not_otlp",
            DecodeError::Field { problem, .. } => match problem {
                Problem::Missing | Problem::MissingWhen(_) | Problem::Unmapped(_) => {
                    "missing_field"
                }
                Problem::Duplicate => "duplicate_field",
                Problem::WrongType(_) => "wrong_type",
                Problem::BadTime { .. } => "bad_time",
                Problem::OutOfRange(_) | Problem::OutsideWindow { .. } => "out_of_range",
                Problem::BadValue(_) => "bad_value",
                Problem::TooLong { .. } => "too_long",
                Problem::Empty => "empty_field",
                Problem::UnsupportedVersion(_) => "unsupported_version",
            },
        }
    }

    /// The field at fault, if the failure is about one field.
    pub fn field_name(&self) -> Option<&str> {
        match self {
            DecodeError::Field { field, .. } => Some(field),
            DecodeError::TenantNotAllowed { .. } => Some("tenant_id"),
            _ => None,
        }
    }
}
