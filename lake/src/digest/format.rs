//! The digest file, a persisted format: `<lake>/_tooltrail/digest/<seq>.json`
//! (`seq` as 20 digits) with its detached Ed25519 signature `<seq>.json.sig`.
//!
//! Version 2 (the lake as Delta tables; version 1 covered the lake's own
//! commit log under `_tooltrail/log`, which a Delta lake does not have).
//! Changes are additive only: new fields are optional, and readers ignore
//! fields they do not know. An outside auditor reads this with any JSON
//! parser, `sha256sum` and `openssl`.
//!
//! Every path is relative to the lake root and `/`-separated, so that
//! `sha256sum <path>` run in the lake's root checks it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Version of the digest format, in every digest as `digest_version`.
pub const DIGEST_FORMAT_VERSION: u32 = 2;

/// One digest: the commits of every table since the previous digest,
/// linked to it by hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Digest {
    pub digest_version: u32,
    /// 1, 2, 3, …: the number in the file name.
    pub seq: u64,
    pub created_at: DateTime<Utc>,
    /// The signing key (16 hex digits of the SHA-256 of the raw public key).
    pub key_id: String,
    /// The previous digest and the SHA-256 of its exact bytes; `null` only for seq 1.
    pub previous: Option<DigestLink>,
    /// Per table, the commits since the previous digest.
    #[serde(default)]
    pub tables: Vec<TableLog>,
}

/// A link to the previous digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestLink {
    pub seq: u64,
    /// SHA-256 (hex) of the previous digest file's exact bytes.
    pub sha256: String,
}

/// The commits `from_version..=to_version` of one table (none when
/// `to_version < from_version`). `from_version` is the previous digest's
/// `to_version + 1` for the table, or 0 for the first digest naming it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableLog {
    /// The table's directory under the lake root.
    pub table: String,
    pub from_version: i64,
    pub to_version: i64,
    /// One per version, in order.
    #[serde(default)]
    pub commits: Vec<CommitRecord>,
}

/// One Delta commit: `<table>/_delta_log/<version, 20 digits>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRecord {
    pub version: i64,
    /// The commit file, relative to the lake root.
    pub path: String,
    /// SHA-256 (hex) of the commit file's exact bytes.
    pub sha256: String,
    /// `commitInfo.operation` (`WRITE`, `OPTIMIZE`, `DELETE`, `VACUUM END`, …),
    /// for the reader; nothing is checked against it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Data files the commit added.
    #[serde(default)]
    pub added: Vec<AddedFile>,
    /// Data files the commit removed from the table: from then on they may be
    /// deleted (vacuum), and while they exist they keep their bytes.
    #[serde(default)]
    pub removed: Vec<RemovedFile>,
}

/// A data file a commit added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddedFile {
    pub path: String,
    /// The commit's `size`.
    pub bytes: u64,
    /// SHA-256 (hex) of the file: the writer's `tooltrail.sha256` tag, or,
    /// for a file written without it, hashed by the digest writer; `null`
    /// only when such a file was gone by then.
    pub sha256: Option<String>,
    /// The commit's `numRecords`, when it has statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
}

/// A data file a commit removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedFile {
    pub path: String,
}

/// The file name of digest `seq`.
pub fn digest_name(seq: u64) -> String {
    format!("{seq:020}.json")
}

/// The seq of a digest file name (`<20 digits>.json`), if it is one. Delta
/// commit files are named the same way.
pub fn parse_digest_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// `<table>/_delta_log/<version, 20 digits>.json`.
pub fn commit_path(table: &str, version: i64) -> String {
    format!("{table}/_delta_log/{version:020}.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_names_round_trip_and_reject_look_alikes() {
        assert_eq!(digest_name(7), "00000000000000000007.json");
        assert_eq!(parse_digest_name(&digest_name(7)), Some(7));
        assert_eq!(parse_digest_name("7.json"), None);
        assert_eq!(parse_digest_name("00000000000000000007.json.sig"), None);
        assert_eq!(parse_digest_name(".00000000000000000007.json.tmp"), None);
        assert_eq!(
            parse_digest_name("00000000000000000010.checkpoint.parquet"),
            None
        );
        assert_eq!(
            commit_path("events", 3),
            "events/_delta_log/00000000000000000003.json"
        );
    }

    /// Golden: a version 2 digest as written, plus a field from the future.
    /// Every later version must still read it.
    #[test]
    fn a_version_2_digest_with_unknown_fields_still_reads() {
        let text = r#"{
          "digest_version": 2, "seq": 2, "created_at": "2026-11-22T10:00:00.123456Z",
          "key_id": "0123456789abcdef",
          "previous": {"seq": 1, "sha256": "ab"},
          "tables": [
            {"table": "events", "from_version": 4, "to_version": 5, "commits": [
              {"version": 4, "path": "events/_delta_log/00000000000000000004.json",
               "sha256": "c4", "operation": "WRITE",
               "added": [{"path": "events/dt=2026-11-22/hour=09/part-a.zstd.parquet",
                 "bytes": 900, "sha256": "d1", "rows": 10}]},
              {"version": 5, "path": "events/_delta_log/00000000000000000005.json",
               "sha256": "c5", "operation": "OPTIMIZE",
               "added": [{"path": "events/dt=2026-11-22/hour=09/part-b.zstd.parquet",
                 "bytes": 800, "sha256": null}],
               "removed": [{"path": "events/dt=2026-11-22/hour=09/part-a.zstd.parquet"}],
               "from_the_future": 1}]},
            {"table": "quarantine", "from_version": 2, "to_version": 1}
          ],
          "from_the_future": true
        }"#;
        let digest: Digest = serde_json::from_str(text).unwrap();
        assert_eq!(digest.previous.unwrap().seq, 1);
        assert_eq!(digest.tables.len(), 2);
        let events = &digest.tables[0];
        assert_eq!(events.commits[0].added[0].rows, Some(10));
        assert_eq!(events.commits[1].added[0].sha256, None);
        assert_eq!(
            events.commits[1].removed[0].path,
            events.commits[0].added[0].path
        );
        assert!(digest.tables[1].commits.is_empty());
        let empty = r#"{"digest_version":2,"seq":1,"created_at":"2026-11-22T10:00:00Z",
            "key_id":"0123456789abcdef","previous":null}"#;
        let digest: Digest = serde_json::from_str(empty).unwrap();
        assert!(digest.tables.is_empty());
    }
}
