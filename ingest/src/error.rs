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
    #[error("encoding parquet for {path}")]
    WriteParquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("building an arrow batch")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error(transparent)]
    Lake(#[from] tooltrail_lake::Error),
    #[error("lake log entry {path} is unreadable: {message}")]
    CorruptLog { path: PathBuf, message: String },
    #[error("lake log entry {seq} lists {path}, which is missing and has no staged copy")]
    MissingFile { seq: u64, path: String },
    #[error(
        "another writer already committed {topic}[{partition}] up to offset {committed}; \
         this batch starts at {start}"
    )]
    Conflict {
        topic: String,
        partition: i32,
        committed: i64,
        start: i64,
    },
    #[error("partition {dir} changed while it was being compacted")]
    PartitionChanged { dir: String },
    /// Another writer committed the same idempotency key (an HTTP
    /// `Idempotency-Key`, an import's file key) between this writer's check
    /// and its commit: the data under that key is in the lake already.
    #[error("idempotency key `{key}` was committed by another writer first")]
    KeyConflict { key: String },
    /// Events are durable but the detector's channel is closed: it stopped
    /// or failed, so they would go unexamined.
    #[error("the detector stopped taking events")]
    DetectorGone,
    #[error("kafka: {context}")]
    Kafka {
        context: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("http server on {addr}")]
    Serve {
        addr: String,
        source: std::io::Error,
    },
    #[error("the lake writer stopped")]
    WriterGone,
    #[error("the lake digester panicked")]
    DigesterPanicked,
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{path} is not a tooltrail lake: it has no _tooltrail/log")]
    NotALake { path: PathBuf },
    #[error("lake digest {path} is unreadable, so the chain cannot be extended: {message}")]
    CorruptDigest { path: PathBuf, message: String },
    #[error("another writer published lake digest {seq} first")]
    DigestConflict { seq: u64 },
    #[error("lake file {path} does not hold what the lake wrote: {message}")]
    CorruptFile { path: PathBuf, message: String },
    #[error("reading parquet file {path}")]
    ReadParquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("legal hold store {path} is unreadable: {message}")]
    CorruptHolds { path: PathBuf, message: String },
    #[error("invalid legal hold: `{field}` {problem}")]
    InvalidHold { field: String, problem: String },
    #[error("no legal hold `{id}` was set through the API")]
    HoldNotFound { id: String },
    #[error(
        "legal hold `{id}` is set in the configuration ([[retention.legal_holds]]); \
         remove it there"
    )]
    HoldInConfig { id: String },
    #[error("another retention run holds {path}; try again when it has finished")]
    RetentionBusy { path: PathBuf },
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
            Error::Io { .. }
            | Error::Kafka { .. }
            | Error::Conflict { .. }
            | Error::KeyConflict { .. }
            | Error::DigestConflict { .. }
            | Error::PartitionChanged { .. }
            | Error::RetentionBusy { .. } => true,
            Error::Lake(e) => e.is_retryable(),
            Error::WriteParquet { .. }
            | Error::Arrow(_)
            | Error::CorruptLog { .. }
            | Error::MissingFile { .. }
            | Error::Serve { .. }
            | Error::WriterGone
            | Error::DigesterPanicked
            | Error::DetectorGone
            | Error::Config(_)
            | Error::NotALake { .. }
            | Error::CorruptDigest { .. }
            | Error::ReadParquet { .. }
            | Error::CorruptFile { .. }
            | Error::CorruptHolds { .. }
            | Error::InvalidHold { .. }
            | Error::HoldNotFound { .. }
            | Error::HoldInConfig { .. } => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
