use std::path::PathBuf;

use thiserror::Error;

/// What went wrong in the lake. Each variant names the table, file or
/// location it concerns.
#[derive(Debug, Error)]
pub enum Error {
    #[error("io error on {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("encoding parquet for {path}")]
    WriteParquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("reading parquet file {path}")]
    ReadParquet {
        path: String,
        source: parquet::errors::ParquetError,
    },
    #[error("lake file {path} does not hold what the lake wrote: {message}")]
    CorruptFile { path: String, message: String },
    #[error("building an arrow batch")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("`{location}` is not a lake location: {problem}")]
    Location { location: String, problem: String },
    #[error("object store: {context}")]
    Store {
        context: String,
        source: object_store::Error,
    },
    #[error("delta table {table}: {context}")]
    Delta {
        table: String,
        context: String,
        source: Box<deltalake::DeltaTableError>,
    },
    #[error("delta table {table}: building a query provider")]
    Provider {
        table: String,
        source: Box<datafusion::error::DataFusionError>,
    },
    /// Rows could not be rendered as an OCSF class (`ocsf::to_json`).
    #[error("rendering rows as OCSF {class}")]
    Ocsf {
        class: &'static str,
        source: Box<datafusion::error::DataFusionError>,
    },
    /// The table moved on while this writer prepared a commit, more times
    /// than the back-off allows.
    #[error("delta table {table}: gave up after {attempts} commit conflicts")]
    TooManyConflicts { table: String, attempts: u32 },
    /// Another writer committed these Kafka offsets first: this writer's
    /// batch is a duplicate and must be dropped, not retried.
    #[error(
        "delta table {table}: {app_id} is committed up to offset {committed}; \
         this batch starts at {start}"
    )]
    Fenced {
        table: String,
        app_id: String,
        committed: i64,
        start: i64,
    },
    /// Another writer committed the same idempotency key first.
    #[error("delta table {table}: idempotency key `{key}` was committed by another writer first")]
    KeyConflict { table: String, key: String },
    /// A file this commit removes is gone: compaction or retention raced.
    #[error("delta table {table}: {path} was removed by another writer")]
    FileGone { table: String, path: String },
    /// The table's protocol asks more of its writers than tooltrail does
    /// (another engine upgraded it), or forbids what the commit does.
    #[error("delta table {table}: not writable by tooltrail: {problem}")]
    Unwritable { table: String, problem: String },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn delta(
        table: &str,
        context: impl Into<String>,
        source: deltalake::DeltaTableError,
    ) -> Self {
        Error::Delta {
            table: table.to_owned(),
            context: context.into(),
            source: Box::new(source),
        }
    }

    pub(crate) fn store(context: impl Into<String>, source: object_store::Error) -> Self {
        Error::Store {
            context: context.into(),
            source,
        }
    }

    /// Whether trying the same operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Io { .. }
            | Error::Store { .. }
            | Error::Delta { .. }
            | Error::TooManyConflicts { .. }
            | Error::KeyConflict { .. }
            | Error::FileGone { .. } => true,
            Error::WriteParquet { .. }
            | Error::ReadParquet { .. }
            | Error::CorruptFile { .. }
            | Error::Arrow(_)
            | Error::Location { .. }
            | Error::Provider { .. }
            | Error::Ocsf { .. }
            | Error::Fenced { .. }
            | Error::Unwritable { .. } => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
