//! Ingest's configuration sections. Every field is documented: these comments
//! are the user documentation of `[ingest]`, `[http]` and `[kafka]`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::batch::TimeWindow;

/// `[digest]`: the lake's signed digest chain (see `lake::digest`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DigestConfig {
    /// How often `up` writes a signed digest of what the lake committed,
    /// compacted and deleted since the previous one (and one at start), even
    /// when nothing changed. `tooltrail ingest` writes none: with Kafka
    /// ingest, run `tooltrail lake digest` from cron at this interval.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

impl Default for DigestConfig {
    fn default() -> Self {
        DigestConfig {
            interval: Duration::from_secs(3600),
        }
    }
}

/// `[ingest]`: how records become lake files.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// The lake directory. `tooltrail up` defaults it to `<data-dir>/lake`.
    pub lake: Option<PathBuf>,
    /// Commit a transaction once this many records are buffered.
    pub max_batch_records: usize,
    /// Commit a transaction once the oldest buffered record has waited this long.
    #[serde(with = "humantime_serde")]
    pub max_batch_delay: Duration,
    /// Quarantine events whose `time` is older than this, relative to receipt.
    #[serde(with = "humantime_serde")]
    pub max_event_age: Duration,
    /// Quarantine events whose `time` is further than this in the future.
    #[serde(with = "humantime_serde")]
    pub max_event_future: Duration,
    /// Zstandard level for Parquet pages (1 fastest … 22 smallest). On the
    /// lake's small hourly files, 1 is both faster and no larger than 3.
    pub zstd_level: i32,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            lake: None,
            max_batch_records: 200_000,
            max_batch_delay: Duration::from_secs(2),
            max_event_age: Duration::from_secs(366 * 24 * 3600),
            max_event_future: Duration::from_secs(3600),
            zstd_level: 1,
        }
    }
}

impl IngestConfig {
    pub fn time_window(&self) -> TimeWindow {
        TimeWindow {
            max_age: self.max_event_age,
            max_future: self.max_event_future,
        }
    }

    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        if self.max_batch_records == 0 {
            issues.push((
                "ingest.max_batch_records".into(),
                "must be at least 1".into(),
            ));
        }
        if !(1..=22).contains(&self.zstd_level) {
            issues.push((
                "ingest.zstd_level".into(),
                format!("must be 1 to 22, got {}", self.zstd_level),
            ));
        }
        issues
    }
}

impl HttpConfig {
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        if self.max_inflight_bytes < self.max_body_bytes {
            issues.push((
                "http.max_inflight_bytes".into(),
                format!(
                    "must be at least http.max_body_bytes ({}), or the largest request could never be taken",
                    self.max_body_bytes
                ),
            ));
        }
        issues
    }
}

/// A secret from configuration; never printed.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// `[http]`: the HTTP listener (ingest endpoint, health, metrics).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Largest request body accepted by `POST /v1/events`; larger gets 413.
    pub max_body_bytes: usize,
    /// Request bodies `POST /v1/events` holds at once (being read, decoded
    /// or waiting for their commit), counted by `Content-Length`, or as
    /// `max_body_bytes` when a request does not say. A request that would go
    /// over waits up to 5 s for room, then gets 503 `overloaded` with
    /// `Retry-After: 1`: many clients at once cannot run ingest out of
    /// memory. Decoded, batched and handed to the detector, a body takes
    /// about nine times its size: 64 MiB kept `tooltrail up` under 750 MiB
    /// with 48 clients sending 16 MiB bodies at once. At least
    /// `max_body_bytes`.
    pub max_inflight_bytes: usize,
    /// Bearer tokens gateways may present to `POST /v1/events`. Empty: no token needed.
    pub ingest_tokens: Vec<Secret>,
    /// How long the group commit waits for more requests to share one flush.
    #[serde(with = "humantime_serde")]
    pub group_commit_delay: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 16 << 20,
            max_inflight_bytes: 64 << 20,
            ingest_tokens: Vec::new(),
            group_commit_delay: Duration::from_millis(5),
        }
    }
}

/// `[kafka]`: the source topic. Absent: `tooltrail up` ingests over HTTP only.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port]`.
    pub brokers: String,
    /// Topic gateways produce events to.
    pub topic: String,
    /// Consumer group of the ingest service.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Optional topic that rejected records are also forwarded to.
    #[serde(default)]
    pub dead_letter_topic: Option<String>,
    /// Extra librdkafka properties, e.g. `"security.protocol" = "ssl"`.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_group() -> String {
    "tooltrail-ingest".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_room_for_bodies_in_flight_must_hold_the_largest_body() {
        assert!(HttpConfig::default().validate().is_empty());
        let tight = HttpConfig {
            max_body_bytes: 2 << 20,
            max_inflight_bytes: 1 << 20,
            ..HttpConfig::default()
        };
        let issues = tight.validate();
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].0, "http.max_inflight_bytes");
        assert!(
            issues[0].1.contains("max_body_bytes (2097152)"),
            "{}",
            issues[0].1
        );
    }
}
