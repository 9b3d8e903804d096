//! `[compaction]`: how `tooltrail up` keeps the tables' files few and large.
//! Every field is documented: these comments are the user documentation of
//! the section.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::compact::CompactOptions;

/// `[compaction]`: merging the small files that frequent commits leave.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionConfig {
    /// Whether `tooltrail up` compacts every table every `interval` (the
    /// first run is at start). `tooltrail compact` works either way. With
    /// several `up` processes on one lake, each compacts; a partition two of
    /// them merge at once is merged by one, and the other's files are
    /// vacuumed. Turn it off on all but one to save the work.
    pub enabled: bool,
    /// How often `tooltrail up` compacts.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Only partitions (hours of `events`, days of the other tables) that
    /// ended at least this long ago are compacted: late events still land
    /// in an hour for a while after it ends.
    #[serde(with = "humantime_serde")]
    pub min_age: Duration,
    /// Files smaller than this many bytes are merged.
    pub small_file_bytes: u64,
    /// Small files are merged in groups of about this many bytes of Parquet,
    /// one commit each: the size of the files compaction writes, and what
    /// one merge holds in memory (several times this, decompressed).
    pub target_file_bytes: u64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        let options = CompactOptions::default();
        CompactionConfig {
            enabled: true,
            interval: Duration::from_secs(3600),
            min_age: options.min_age,
            small_file_bytes: options.small_file_bytes,
            target_file_bytes: options.target_file_bytes,
        }
    }
}

impl CompactionConfig {
    /// What a run compacts.
    pub fn options(&self) -> CompactOptions {
        CompactOptions {
            min_age: self.min_age,
            small_file_bytes: self.small_file_bytes,
            target_file_bytes: self.target_file_bytes,
            ..CompactOptions::default()
        }
    }

    /// Each problem as (`compaction.<key>`, what is wrong).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        if self.interval < Duration::from_secs(1) {
            // Shorter would list every table's files over and over.
            issues.push(("compaction.interval".into(), "must be at least 1s".into()));
        }
        if self.small_file_bytes == 0 {
            issues.push((
                "compaction.small_file_bytes".into(),
                "must be more than 0".into(),
            ));
        }
        if self.target_file_bytes < self.small_file_bytes {
            issues.push((
                "compaction.target_file_bytes".into(),
                format!(
                    "must be at least compaction.small_file_bytes ({}), got {}",
                    self.small_file_bytes, self.target_file_bytes
                ),
            ));
        }
        issues
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_section_gives_the_defaults_and_bad_sizes_are_named() {
        let parse = |value| serde_json::from_value::<CompactionConfig>(value);
        let config = parse(serde_json::json!({})).unwrap();
        assert_eq!(config, CompactionConfig::default());
        assert!(config.validate().is_empty());
        let config = parse(serde_json::json!({
            "interval": "10ms", "small_file_bytes": 1000, "target_file_bytes": 10
        }))
        .unwrap();
        let paths: Vec<String> = config.validate().into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            ["compaction.interval", "compaction.target_file_bytes"]
        );
        let unknown = parse(serde_json::json!({"target_bytes": 1})).unwrap_err();
        assert!(unknown.to_string().contains("target_bytes"), "{unknown}");
    }
}
