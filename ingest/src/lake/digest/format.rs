//! The digest file, a persisted format: `<lake>/_tooltrail/digest/<seq>.json`
//! (`seq` as 20 digits) with its detached Ed25519 signature `<seq>.json.sig`.
//!
//! Version 1. Changes are additive only: new fields are optional, and readers
//! ignore fields they do not know. An outside auditor reads this with any JSON
//! parser (see `scripts/verify_lake_digests.py`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::lake::log::Operation;

/// Version of the digest format, in every digest as `digest_version`.
pub const DIGEST_FORMAT_VERSION: u32 = 1;

/// One digest: what the lake committed, compacted, deleted and observed since
/// the previous digest, linked to it by hash.
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
    /// The commit-log entries this digest covers.
    pub log: LogRange,
    /// Files the covered log entries added (ingest, compaction output).
    #[serde(default)]
    pub added: Vec<AddedFile>,
    /// Files the covered log entries removed (compaction inputs, retention).
    #[serde(default)]
    pub removed: Vec<RemovedFile>,
    /// Files outside the log (alerts, finished query-audit days) first seen by this digest.
    #[serde(default)]
    pub observed: Vec<ObservedFile>,
}

/// A link to the previous digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DigestLink {
    pub seq: u64,
    /// SHA-256 (hex) of the previous digest file's exact bytes.
    pub sha256: String,
}

/// The log entries `from_seq..=to_seq` (empty when `to_seq < from_seq`);
/// `from_seq` is the previous digest's `to_seq + 1`, or 1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRange {
    pub from_seq: u64,
    pub to_seq: u64,
    /// Each entry's SHA-256 over the exact bytes of `_tooltrail/log/<seq>.json`.
    #[serde(default)]
    pub entries: Vec<LogEntryHash>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntryHash {
    pub seq: u64,
    pub sha256: String,
}

/// A file a log entry added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddedFile {
    /// Relative to the lake root, `/`-separated.
    pub path: String,
    pub table: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    /// The log entry that added it.
    pub log_seq: u64,
    pub operation: Operation,
}

/// A file a log entry removed: legitimately gone from then on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedFile {
    pub path: String,
    pub table: String,
    pub log_seq: u64,
    /// `compact` or `retention`.
    pub operation: Operation,
}

/// A file that is not in the commit log, recorded once it can no longer
/// change: an alerts file (immutable once in place) or a query-audit file whose
/// UTC day is over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedFile {
    pub path: String,
    pub table: String,
    pub bytes: u64,
    /// Newline count (NDJSON records).
    pub lines: u64,
    pub sha256: String,
}

/// The file name of digest `seq`.
pub fn digest_name(seq: u64) -> String {
    format!("{seq:020}.json")
}

/// The seq of a digest file name (`<20 digits>.json`), if it is one.
pub fn parse_digest_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
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
    }

    /// Golden: a version 1 digest as written, plus a field from the future.
    /// Every later version must still read it.
    #[test]
    fn a_version_1_digest_with_unknown_fields_still_reads() {
        let text = r#"{
          "digest_version": 1, "seq": 2, "created_at": "2026-11-22T10:00:00.123456Z",
          "key_id": "0123456789abcdef",
          "previous": {"seq": 1, "sha256": "ab"},
          "log": {"from_seq": 4, "to_seq": 5, "entries": [
            {"seq": 4, "sha256": "c4"}, {"seq": 5, "sha256": "c5"}]},
          "added": [{"path": "events/dt=2026-11-22/hour=09/part-t-0000.parquet",
            "table": "events", "rows": 10, "bytes": 900, "sha256": "d1", "log_seq": 5,
            "operation": "compact"}],
          "removed": [{"path": "events/dt=2026-11-22/hour=09/part-s-0000.parquet",
            "table": "events", "log_seq": 5, "operation": "compact"},
            {"path": "alerts/dt=2026-11-20/part-1-1.ndjson", "table": "alerts",
            "log_seq": 4, "operation": "retention"}],
          "observed": [{"path": "query_audit/dt=2026-11-21/part-1-7.ndjson",
            "table": "query_audit", "bytes": 120, "lines": 2, "sha256": "e1"}],
          "from_the_future": true
        }"#;
        let digest: Digest = serde_json::from_str(text).unwrap();
        assert_eq!(digest.previous.unwrap().seq, 1);
        assert_eq!(digest.log.entries.len(), 2);
        assert_eq!(digest.added[0].operation, Operation::Compact);
        assert_eq!(digest.removed[1].operation, Operation::Retention);
        assert_eq!(digest.observed[0].lines, 2);
        let empty = r#"{"digest_version":1,"seq":1,"created_at":"2026-11-22T10:00:00Z",
            "key_id":"0123456789abcdef","previous":null,"log":{"from_seq":1,"to_seq":0}}"#;
        let digest: Digest = serde_json::from_str(empty).unwrap();
        assert!(digest.added.is_empty() && digest.log.entries.is_empty());
    }
}
