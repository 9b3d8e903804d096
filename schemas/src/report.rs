//! An error with its causes on one line, for logs and for the binary's
//! last word.
//!
//! Our error types say what failed and where, and leave the cause to
//! [`std::error::Error::source`]; printing a cause in the message too would
//! repeat it under every reporter that walks the chain. [`Report`] walks it
//! once: `writing part 3: io error on /lake/x: No space left on device`.

use std::fmt;

/// Displays an error followed by each of its sources, `: `-separated.
pub struct Report<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("writing {path}")]
    struct Write {
        path: &'static str,
        source: std::io::Error,
    }

    #[test]
    fn a_report_names_each_cause_once() {
        let error = Write {
            path: "/lake/x",
            source: std::io::Error::other("no space left"),
        };
        assert_eq!(Report(&error).to_string(), "writing /lake/x: no space left");
    }
}
