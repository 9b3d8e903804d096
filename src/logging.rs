//! The tracing subscriber: text or JSON lines on stderr, filtered by an
//! `EnvFilter` directive (`RUST_LOG` syntax).

use serde::{Deserialize, Serialize};
use tracing_subscriber::EnvFilter;

/// How logs are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The `[log]` section.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// Which events to keep, in `RUST_LOG` syntax, e.g. `info,tooltrail_ingest=debug`.
    /// The `RUST_LOG` environment variable, when set, replaces it.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            filter: "info".into(),
        }
    }
}

impl LogConfig {
    pub fn validate(&self) -> Result<(), String> {
        EnvFilter::try_new(&self.filter)
            .map(|_| ())
            .map_err(|e| format!("bad filter: {e}"))
    }
}

/// Libraries whose routine is logged louder than an operator wants, with the
/// level each is held to unless a filter names it:
/// - delta-rs's commit loop logs every commit at INFO and a lost race at
///   ERROR ("exceeded maximum commit attempts": the lake's writer makes one
///   attempt and retries races itself). Every outcome it logs is also
///   returned to the lake's writer, which counts and reports it: off.
/// - delta-kernel logs every snapshot it builds at INFO, that is every
///   refresh of every table's readers, dozens a minute on an idle `up`: WARN.
/// - delta-rs's vacuum logs its mode and its listing at INFO on every run,
///   for every table, deleting or not; the lake's vacuum logs what it
///   deleted itself: WARN.
const QUIETED: [(&str, &str); 3] = [
    ("deltalake_core::kernel::transaction", "off"),
    ("buoyant_kernel", "warn"),
    ("deltalake_core::operations::vacuum", "warn"),
];

/// `directive`, with [`QUIETED`]'s defaults for the targets it does not name.
fn filter(directive: &str) -> anyhow::Result<EnvFilter> {
    let mut filter = EnvFilter::try_new(directive)?;
    for (target, level) in QUIETED {
        if !directive.contains(target) {
            filter = filter.add_directive(format!("{target}={level}").parse()?);
        }
    }
    Ok(filter)
}

/// Installs the global subscriber. Call once, from `main`.
pub fn init(config: &LogConfig) -> anyhow::Result<()> {
    let directive = match std::env::var("RUST_LOG") {
        Ok(directive) if !directive.is_empty() => directive,
        _ => config.filter.clone(),
    };
    let filter = filter(&directive)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| anyhow::anyhow!("installing the log subscriber: {e}"))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// What `directive` lets through of a snapshot build, a commit, a vacuum and our own line.
    fn logged(directive: &str) -> String {
        let out = Arc::new(Mutex::new(Vec::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter(directive).expect("a valid filter"))
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "buoyant_kernel::snapshot::builder", "building snapshot");
            tracing::info!(target: "deltalake_core::kernel::transaction", "committed");
            tracing::info!(target: "deltalake_core::operations::vacuum", "vacuum file listing");
            tracing::info!(target: "tooltrail_ingest::source", "ours");
        });
        let bytes = out.lock().expect("not poisoned").clone();
        String::from_utf8(bytes).expect("UTF-8")
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("not poisoned").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn the_delta_libraries_routine_is_quiet_unless_a_filter_names_it() {
        let quiet = logged("info");
        assert!(quiet.contains("ours"), "{quiet}");
        assert!(!quiet.contains("building snapshot"), "{quiet}");
        assert!(!quiet.contains("committed"), "{quiet}");
        assert!(!quiet.contains("vacuum file listing"), "{quiet}");

        let asked = logged(
            "info,buoyant_kernel=info,deltalake_core::kernel::transaction=info,\
             deltalake_core::operations::vacuum=info",
        );
        assert!(asked.contains("building snapshot"), "{asked}");
        assert!(asked.contains("committed"), "{asked}");
        assert!(asked.contains("vacuum file listing"), "{asked}");
    }
}
