//! What goes wrong in retention and the hold store: the lake's own errors,
//! and the holds' (a bad hold, an unknown one, a configured one the API may
//! not remove, a stored one that does not parse).

use thiserror::Error;

/// A retention or hold-store failure.
#[derive(Debug, Error)]
pub enum Error {
    #[error(transparent)]
    Lake(#[from] crate::Error),
    /// A stored hold does not parse: retention refuses to run rather than
    /// ignore a hold.
    #[error("legal hold {path} does not parse: {message}")]
    CorruptHold { path: String, message: String },
    /// A hold to set is invalid: the field and the problem.
    #[error("invalid legal hold: `{field}` {problem}")]
    InvalidHold { field: String, problem: String },
    #[error("no legal hold `{id}` was set through the API")]
    HoldNotFound { id: String },
    /// Holds set in configuration are removed by editing it.
    #[error("legal hold `{id}` is set in the configuration; remove it there")]
    HoldInConfig { id: String },
    /// A table retention was given has no `[retention]` setting.
    #[error("retention has no setting for table `{name}`")]
    UnknownTable { name: String },
}

impl Error {
    /// Whether trying the same operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Lake(e) => e.is_retryable(),
            Error::CorruptHold { .. }
            | Error::InvalidHold { .. }
            | Error::HoldNotFound { .. }
            | Error::HoldInConfig { .. }
            | Error::UnknownTable { .. } => false,
        }
    }
}
