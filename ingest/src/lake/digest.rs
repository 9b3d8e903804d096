//! The lake's signed digest chain: tamper evidence for everything the lake
//! holds, checkable by an outside auditor with the public key, `sha256sum`
//! and `openssl` alone.
//!
//! ```text
//! <lake>/_tooltrail/digest/<seq, 20 digits>.json       the digest (format.rs)
//! <lake>/_tooltrail/digest/<seq, 20 digits>.json.sig   raw 64-byte Ed25519 signature of its bytes
//! ```
//!
//! Every digest covers the commit-log entries since the previous one (each
//! entry's SHA-256, and the files it added or removed, with their SHA-256),
//! records the files that live outside the log once they can no longer change
//! (alerts files; query-audit files of finished UTC days), and names the
//! previous digest by the SHA-256 of its exact bytes. Digests are written on a
//! schedule even when nothing changed, so a live chain keeps growing.
//!
//! - [`write_digest`] appends the next digest. Each seq is created exactly
//!   once: the signature and then the digest are hard-linked into place (a link
//!   fails if the name exists), under `_tooltrail/digest.lock`, so two writers
//!   never fork the chain and a digest never appears without its signature.
//! - [`verify`] walks the chain and the lake and returns typed [`Finding`]s:
//!   modified, deleted, unlisted or resurrected files, modified or missing log
//!   entries, broken links, missing, bad or unknown signatures, and gaps.
//!   What happened after the last digest is reported as [`Pending`], not as a
//!   finding: nothing signed vouches for it yet.
//!
//! Invariant: every deletion or replacement of a lake file is a log entry
//! (`compact`, `retention`) that lists it in `removed`; a path so listed is
//! legitimately gone.

pub mod format;
pub mod periodic;
mod report;
mod verify;
mod write;

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

pub use self::format::DIGEST_FORMAT_VERSION;
pub use self::report::{Finding, Head, Pending, PendingReason, VerifyReport, count};
pub use self::verify::{check_anchor, verify};
pub use self::write::{DigestSummary, write_digest};

/// Where the digests live, relative to the lake root.
pub const DIGEST_DIR: &str = "_tooltrail/digest";

/// Held exclusively while a digest is written (outside the digest directory,
/// so a copy of that directory holds digests and signatures only).
const DIGEST_LOCK: &str = "_tooltrail/digest.lock";

const LOG_DIR: &str = "_tooltrail/log";

/// The tables whose files the chain vouches for.
pub const TABLES: [&str; 4] = ["events", "quarantine", "alerts", "query_audit"];

/// Tables written outside the commit log, covered by observation.
const OBSERVED_TABLES: [&str; 2] = ["alerts", "query_audit"];

/// A query-audit file is appended to until its UTC day ends; it is recorded
/// once the day has been over for this long (a query running across midnight
/// writes its end record to the next day's file, so this is only slack for
/// clocks).
pub const QUERY_AUDIT_GRACE: Duration = Duration::minutes(5);

/// An alerts file modified this long before the last digest should be in it.
const ALERTS_GRACE: Duration = Duration::minutes(5);

fn log_entry_path(root: &Path, seq: u64) -> PathBuf {
    root.join(LOG_DIR).join(format!("{seq:020}.json"))
}

/// `events/dt=…/hour=…/part-….parquet` → `events`.
fn table_of(path: &str) -> &str {
    path.split('/').next().unwrap_or_default()
}

/// The time a partition path covers: `dt=D` is the day, `dt=D/hour=H` the hour.
fn partition_range(path: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let mut date = None;
    let mut hour = None;
    for part in path.split('/') {
        if let Some(d) = part.strip_prefix("dt=") {
            date = NaiveDate::parse_from_str(d, "%Y-%m-%d").ok();
        } else if let Some(h) = part.strip_prefix("hour=") {
            hour = h.parse::<u32>().ok();
        }
    }
    let start = date?.and_hms_opt(0, 0, 0)?.and_utc();
    match hour {
        Some(h) if h < 24 => {
            let start = start + Duration::hours(i64::from(h));
            Some((start, start + Duration::hours(1)))
        }
        Some(_) => None,
        None => Some((start, start + Duration::days(1))),
    }
}

/// Whether the UTC day of a query-audit file was over (plus the grace) at `at`.
fn day_over(path: &str, at: DateTime<Utc>) -> bool {
    partition_range(path).is_some_and(|(_, end)| end + QUERY_AUDIT_GRACE <= at)
}

/// Whether a file name is a data file of a table (not a hidden staging file).
fn is_data_file(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(".parquet") || name.ends_with(".ndjson"))
}

/// Every data file of `tables`, as `/`-separated paths relative to the root,
/// sorted. Hidden files and directories (staging, compaction's swap
/// directories) are skipped: no reader sees them.
fn list_data_files(root: &Path, tables: &[&str]) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for table in tables {
        let mut stack = vec![(root.join(table), (*table).to_owned())];
        while let Some((dir, rel)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(&dir, e))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.starts_with('.') {
                    continue;
                }
                let kind = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
                if kind.is_dir() {
                    stack.push((entry.path(), format!("{rel}/{name}")));
                } else if is_data_file(name) {
                    out.push(format!("{rel}/{name}"));
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// SHA-256, size and newline count of a file, streamed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileHash {
    sha256: String,
    bytes: u64,
    lines: u64,
}

fn hash_file(path: &Path) -> io::Result<FileHash> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let (mut bytes, mut lines) = (0u64, 0u64);
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        bytes += n as u64;
        lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
    }
    Ok(FileHash {
        sha256: hex::encode(hasher.finalize()),
        bytes,
        lines,
    })
}

/// Hashes files on every core, each streamed; results in input order.
fn hash_parallel<T: Sync>(root: &Path, files: &[(String, T)]) -> Vec<io::Result<FileHash>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, files.len().max(1));
    let next = AtomicUsize::new(0);
    let mut results: Vec<(usize, io::Result<FileHash>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((path, _)) = files.get(i) else {
                            return out;
                        };
                        out.push((i, hash_file(&root.join(path))));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("a hashing thread does not panic"))
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Which digests and signatures exist: seq → (has `.json`, has `.json.sig`).
fn list_digests(dir: &Path) -> Result<std::collections::BTreeMap<u64, (bool, bool)>> {
    let mut out = std::collections::BTreeMap::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = format::parse_digest_name(name) {
            out.entry(seq).or_insert((false, false)).0 = true;
        } else if let Some(seq) = name
            .strip_suffix(tooltrail_schemas::signing::SIGNATURE_SUFFIX)
            .and_then(format::parse_digest_name)
        {
            out.entry(seq).or_insert((false, false)).1 = true;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
