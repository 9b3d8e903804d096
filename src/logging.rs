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

/// delta-rs's commit loop logs every commit at INFO and a lost race at
/// ERROR ("exceeded maximum commit attempts": the lake's writer makes one
/// attempt and retries races itself). Every outcome it logs is also returned
/// to the lake's writer, which counts and reports it, so it is silenced
/// unless a filter names it.
const DELTA_COMMIT: &str = "deltalake_core::kernel::transaction";

/// Installs the global subscriber. Call once, from `main`.
pub fn init(config: &LogConfig) -> anyhow::Result<()> {
    let directive = match std::env::var("RUST_LOG") {
        Ok(directive) if !directive.is_empty() => directive,
        _ => config.filter.clone(),
    };
    let mut filter = EnvFilter::try_new(&directive)?;
    if !directive.contains(DELTA_COMMIT) {
        filter = filter.add_directive(format!("{DELTA_COMMIT}=off").parse()?);
    }
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
