use std::path::PathBuf;

use thiserror::Error;

/// What went wrong in alert delivery. A failed request is not an error: it is
/// retried or dead-lettered; these are the failures that need an operator.
#[derive(Debug, Error)]
pub enum Error {
    #[error("invalid delivery configuration: {}", describe(.0))]
    Config(Vec<(String, String)>),
    #[error("outbox io error on {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("alert id `{0}` cannot name an outbox file")]
    InvalidAlertId(String),
    #[error("building the http client")]
    HttpClient(#[source] reqwest::Error),
    #[error("delivery task `{task}` failed")]
    Task {
        /// A destination's name, or what else the task did.
        task: String,
        source: tokio::task::JoinError,
    },
}

fn describe(issues: &[(String, String)]) -> String {
    issues
        .iter()
        .map(|(path, problem)| format!("{path}: {problem}"))
        .collect::<Vec<_>>()
        .join("; ")
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
            Error::Io { .. } => true,
            Error::Config(_)
            | Error::InvalidAlertId(_)
            | Error::HttpClient(_)
            | Error::Task { .. } => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
