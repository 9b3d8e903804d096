use std::path::PathBuf;

use thiserror::Error;

/// What went wrong in ingest. Each variant names what failed and where.
#[derive(Debug, Error)]
pub enum Error {
    #[error("io error on {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("building an arrow batch")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error(transparent)]
    Lake(#[from] tooltrail_lake::Error),
    #[error("quarantine file {path} has no `{column}` column")]
    QuarantineColumn { path: String, column: String },
    /// Events are durable but the detector's channel is closed: it stopped
    /// or failed, so they would go unexamined.
    #[error("the detector stopped taking events")]
    DetectorGone,
    #[error("kafka: {context}")]
    Kafka {
        context: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("the lake writer stopped")]
    WriterGone,
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether trying the same operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Io { .. } | Error::Kafka { .. } => true,
            Error::Lake(e) => e.is_retryable(),
            Error::Arrow(_)
            | Error::QuarantineColumn { .. }
            | Error::WriterGone
            | Error::DetectorGone => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
