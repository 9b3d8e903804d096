//! What `verify` reports: findings (each names a path or a seq), files
//! pending the next digest, and the chain's head.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tooltrail_schemas::signing::SIGNATURE_SUFFIX;

use super::format::{commit_path, digest_name};

/// Something wrong with the lake or its chain. Each names the path or seq.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "finding", rename_all = "snake_case")]
pub enum Finding {
    /// A file's bytes differ from what the chain recorded (`expected_sha256`
    /// is `None` for a file added without a hash that was gone before the
    /// digest: only its size was recorded).
    ModifiedFile {
        path: String,
        expected_sha256: Option<String>,
        actual_sha256: String,
        expected_bytes: u64,
        actual_bytes: u64,
    },
    /// A file the table holds (a commit added it, none removed it) is gone.
    /// `recorded_in_digest` is `None` when only a commit in a gap of the
    /// chain lists it.
    DeletedFile {
        path: String,
        recorded_in_digest: Option<u64>,
    },
    /// A data file in a table's directory that no commit added: planted, or
    /// left by a writer that failed between writing and committing (vacuum
    /// deletes those after its grace period).
    UnlistedFile { path: String },
    /// A commit file's bytes differ from the hash a digest recorded.
    LogEntryModified {
        table: String,
        version: i64,
        recorded_in_digest: u64,
    },
    /// A commit file is missing: recorded by a digest, or a hole before a
    /// later version.
    LogEntryMissing { table: String, version: i64 },
    /// A digest's `previous` does not name the previous digest's exact bytes.
    BrokenLink {
        seq: u64,
        expected_previous_sha256: String,
        actual: String,
    },
    /// A digest without its `.sig`.
    Unsigned { seq: u64 },
    /// A signature that does not verify under the key the digest names.
    BadSignature {
        seq: u64,
        key_id: String,
        reason: String,
    },
    /// A digest signed by a key the verifier does not trust.
    UnknownKey { seq: u64, key_id: String },
    /// Digest `next_seq` does not follow `after_seq`: a digest is missing, or
    /// the version ranges of a table do not join up.
    Gap { after_seq: u64, next_seq: u64 },
    /// A digest or commit file that does not parse, or a digest that
    /// contradicts itself.
    Malformed { path: String, reason: String },
    /// The lake has no digests: nothing vouches for it.
    NoDigests,
    /// A digest an earlier audit recorded (`--expect-head SEQ:SHA256`) is gone
    /// (`actual: None`) or different: the chain was cut back or rewritten.
    AnchorMismatch {
        seq: u64,
        expected_sha256: String,
        actual: Option<String>,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::ModifiedFile {
                path,
                expected_sha256,
                actual_sha256,
                expected_bytes,
                actual_bytes,
            } => write!(
                f,
                "modified file {path}: sha256 {actual_sha256} ({actual_bytes} bytes), recorded {} ({expected_bytes} bytes)",
                expected_sha256.as_deref().unwrap_or("no sha256")
            ),
            Finding::DeletedFile {
                path,
                recorded_in_digest: Some(seq),
            } => write!(
                f,
                "deleted file {path}: listed in digest {seq}, removed by no commit"
            ),
            Finding::DeletedFile { path, .. } => {
                write!(
                    f,
                    "deleted file {path}: listed in the log, removed by no commit"
                )
            }
            Finding::UnlistedFile { path } => write!(
                f,
                "unlisted file {path}: added by no commit (planted, or left by a writer that failed before committing)"
            ),
            Finding::LogEntryModified {
                table,
                version,
                recorded_in_digest,
            } => write!(
                f,
                "log entry {} modified: its sha256 differs from digest {recorded_in_digest}",
                commit_path(table, *version)
            ),
            Finding::LogEntryMissing { table, version } => {
                write!(f, "log entry {} missing", commit_path(table, *version))
            }
            Finding::BrokenLink {
                seq,
                expected_previous_sha256,
                actual,
            } => write!(
                f,
                "broken link at digest {seq}: it names previous sha256 {expected_previous_sha256}, digest {} is {actual}",
                seq.saturating_sub(1)
            ),
            Finding::Unsigned { seq } => write!(
                f,
                "digest {seq} is unsigned: no {}{SIGNATURE_SUFFIX}",
                digest_name(*seq)
            ),
            Finding::BadSignature {
                seq,
                key_id,
                reason,
            } => write!(f, "bad signature on digest {seq} (key {key_id}): {reason}"),
            Finding::UnknownKey { seq, key_id } => {
                write!(f, "digest {seq} is signed by unknown key {key_id}")
            }
            Finding::Gap {
                after_seq,
                next_seq,
            } => {
                write!(
                    f,
                    "gap in the chain: digest {next_seq} follows digest {after_seq}"
                )
            }
            Finding::Malformed { path, reason } => write!(f, "malformed {path}: {reason}"),
            Finding::NoDigests => write!(f, "no digests: nothing vouches for this lake yet"),
            Finding::AnchorMismatch {
                seq,
                expected_sha256,
                actual: None,
            } => write!(
                f,
                "digest {seq} (sha256 {expected_sha256}, recorded at an earlier audit) is missing: the chain was cut back"
            ),
            Finding::AnchorMismatch {
                seq,
                expected_sha256,
                actual: Some(actual),
            } => write!(
                f,
                "digest {seq} has sha256 {actual}, an earlier audit recorded {expected_sha256}: the chain was rewritten"
            ),
        }
    }
}

/// A file the chain does not vouch for yet, and why that is expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pending {
    pub path: String,
    pub reason: PendingReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingReason {
    /// Added by a commit after the last digest.
    CommittedAfterLastDigest,
    /// Removed by a commit after the last digest.
    RemovedAfterLastDigest,
    /// Written, and named by no commit yet: a write in flight (written less
    /// than [`super::UNCOMMITTED_GRACE`] before the last digest, or after it).
    NotYetCommitted,
}

/// The newest digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Head {
    pub seq: u64,
    /// SHA-256 of its bytes: record it, and a later truncation of the chain shows.
    pub sha256: String,
    pub created_at: Option<DateTime<Utc>>,
}

/// What [`verify`](super::verify::verify) found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub verified_at: DateTime<Utc>,
    pub digests: usize,
    pub head: Option<Head>,
    /// Commit files re-hashed against a digest.
    pub log_entries_checked: usize,
    pub files_checked: usize,
    pub bytes_checked: u64,
    pub pending: Vec<Pending>,
    pub findings: Vec<Finding>,
}

impl VerifyReport {
    pub fn is_clean(&self) -> bool {
        self.findings.is_empty()
    }
}

/// The findings, one per line, then a summary line: what `tooltrail lake
/// verify` prints.
impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for finding in &self.findings {
            writeln!(f, "{finding}")?;
        }
        let head = self.head.as_ref().map_or_else(
            || "none".to_owned(),
            |h| match h.created_at {
                Some(at) => format!(
                    "{} at {} sha256 {}",
                    h.seq,
                    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    h.sha256
                ),
                None => format!("{} sha256 {}", h.seq, h.sha256),
            },
        );
        writeln!(
            f,
            "{} (head {head}), {}, {} checked ({} bytes), {} pending, {}",
            count(self.digests, "digest"),
            count(self.log_entries_checked, "log entry"),
            count(self.files_checked, "file"),
            self.bytes_checked,
            self.pending.len(),
            count(self.findings.len(), "finding")
        )
    }
}

/// `1 finding`, `2 findings`, `0 log entries`.
pub fn count(n: usize, noun: &str) -> String {
    match (n, noun.strip_suffix('y')) {
        (1, _) => format!("1 {noun}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        _ => format!("{n} {noun}s"),
    }
}

#[cfg(test)]
mod text_tests {
    use super::count;

    #[test]
    fn counts_read_as_english() {
        assert_eq!(count(1, "finding"), "1 finding");
        assert_eq!(count(0, "finding"), "0 findings");
        assert_eq!(count(2, "log entry"), "2 log entries");
    }
}
