//! Appending the next digest to the chain.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SubsecRound, Utc};
use serde::Deserialize;
use tooltrail_schemas::signing::{SIGNATURE_SUFFIX, Signer};

use super::format::{
    AddedFile, DIGEST_FORMAT_VERSION, Digest, DigestLink, LogEntryHash, LogRange, ObservedFile,
    RemovedFile, digest_name,
};
use super::{
    DIGEST_DIR, DIGEST_LOCK, OBSERVED_TABLES, day_over, hash_file, list_data_files, list_digests,
    log_entry_path, sha256_hex, table_of,
};
use crate::error::{Error, Result};
use crate::lake::log::{LogEntry, sync_dir, write_synced};

/// What [`write_digest`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestSummary {
    pub seq: u64,
    pub path: PathBuf,
    /// The log entries covered, `from..=to` (empty when `to < from`).
    pub log_from: u64,
    pub log_to: u64,
    pub added: usize,
    pub removed: usize,
    pub observed: usize,
}

/// The parts of an earlier digest the writer needs: what it already recorded.
#[derive(Deserialize)]
struct Recorded {
    #[serde(default)]
    added: Vec<PathOnly>,
    #[serde(default)]
    observed: Vec<PathOnly>,
}

#[derive(Deserialize)]
struct PathOnly {
    path: String,
}

/// Writes, signs and publishes the next digest of the lake at `lake_root`:
/// the log entries since the previous digest, the alerts files not yet
/// recorded, and the query-audit files of UTC days over by `now`.
///
/// Blocking (reads the log, hashes new alerts and query-audit files).
/// Fails with [`Error::CorruptDigest`] when the newest digest cannot be read
/// (the chain cannot be extended; `tooltrail lake verify` says why) and with
/// [`Error::DigestConflict`] if another writer took the seq meanwhile.
pub fn write_digest(
    lake_root: &Path,
    signer: &Signer,
    now: DateTime<Utc>,
) -> Result<DigestSummary> {
    if !lake_root.join(super::LOG_DIR).is_dir() {
        return Err(Error::NotALake {
            path: lake_root.to_owned(),
        });
    }
    let dir = lake_root.join(DIGEST_DIR);
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let lock_path = lake_root.join(DIGEST_LOCK);
    let lock = crate::lake::open_lock_file(&lock_path)?;
    lock.lock().map_err(|e| Error::io(&lock_path, e))?;
    let result = write_locked(lake_root, &dir, signer, now);
    let _ = lock.unlock();
    result
}

fn write_locked(
    root: &Path,
    dir: &Path,
    signer: &Signer,
    now: DateTime<Utc>,
) -> Result<DigestSummary> {
    let listing = list_digests(dir)?;
    let head = listing
        .iter()
        .rev()
        .find(|(_, (json, _))| *json)
        .map(|(seq, _)| *seq);
    // A signature above the head is what a writer that crashed between its two
    // links left behind (we hold the lock: no writer is between them now).
    for (seq, (json, sig)) in listing.range(head.unwrap_or(0) + 1..) {
        if *sig && !*json {
            let path = dir.join(format!("{}{SIGNATURE_SUFFIX}", digest_name(*seq)));
            tracing::warn!(path = %path.display(), "removing the signature of a digest a crashed writer never published");
            fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
        }
    }

    let mut recorded = HashSet::new();
    let mut previous = None;
    let mut log_from = 1;
    for (&seq, _) in listing.iter().filter(|(_, (json, _))| *json) {
        let path = dir.join(digest_name(seq));
        let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
        if Some(seq) == head {
            let digest: Digest =
                serde_json::from_slice(&bytes).map_err(|e| Error::CorruptDigest {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            log_from = digest.log.to_seq + 1;
            previous = Some(DigestLink {
                seq,
                sha256: sha256_hex(&bytes),
            });
        }
        // An unreadable older digest only means its observed files are
        // recorded again; `verify` reports it.
        match serde_json::from_slice::<Recorded>(&bytes) {
            Ok(r) => recorded.extend(r.added.into_iter().chain(r.observed).map(|p| p.path)),
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "unreadable digest"),
        }
    }
    let seq = head.unwrap_or(0) + 1;

    // The log first, then the files outside it: a file renamed into place after
    // the log was read is recorded next time.
    let mut entries = Vec::new();
    let mut added = Vec::new();
    let mut removed = Vec::new();
    let mut log_to = log_from - 1;
    loop {
        let path = log_entry_path(root, log_to + 1);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(Error::io(&path, e)),
        };
        let entry: LogEntry = serde_json::from_slice(&bytes).map_err(|e| Error::CorruptLog {
            path: path.clone(),
            message: e.to_string(),
        })?;
        log_to += 1;
        entries.push(LogEntryHash {
            seq: log_to,
            sha256: sha256_hex(&bytes),
        });
        added.extend(entry.added.iter().map(|f| AddedFile {
            path: f.path.clone(),
            table: f.table.clone(),
            rows: f.rows,
            bytes: f.bytes,
            sha256: f.sha256.clone(),
            log_seq: log_to,
            operation: entry.operation,
        }));
        removed.extend(entry.removed.iter().map(|p| RemovedFile {
            path: p.clone(),
            table: table_of(p).to_owned(),
            log_seq: log_to,
            operation: entry.operation,
        }));
    }
    recorded.extend(added.iter().map(|f| f.path.clone()));

    let mut observed = Vec::new();
    for path in list_data_files(root, &OBSERVED_TABLES)? {
        if recorded.contains(&path) || (table_of(&path) == "query_audit" && !day_over(&path, now)) {
            continue;
        }
        let hash = match hash_file(&root.join(&path)) {
            Ok(hash) => hash,
            // Deleted since the listing (retention records it in the log).
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(root.join(&path), e)),
        };
        observed.push(ObservedFile {
            table: table_of(&path).to_owned(),
            path,
            bytes: hash.bytes,
            lines: hash.lines,
            sha256: hash.sha256,
        });
    }

    let digest = Digest {
        digest_version: DIGEST_FORMAT_VERSION,
        seq,
        // Microseconds, like every other time tooltrail writes.
        created_at: now.trunc_subsecs(6),
        key_id: signer.key_id().to_string(),
        previous,
        log: LogRange {
            from_seq: log_from,
            to_seq: log_to,
            entries,
        },
        added,
        removed,
        observed,
    };
    let mut body = serde_json::to_vec_pretty(&digest).expect("digests serialize");
    body.push(b'\n');
    let path = publish(dir, seq, &body, &signer.sign(&body))?;
    Ok(DigestSummary {
        seq,
        path,
        log_from,
        log_to,
        added: digest.added.len(),
        removed: digest.removed.len(),
        observed: digest.observed.len(),
    })
}

/// Publishes digest `seq`: the signature first, then the digest, each by
/// hard-linking a fsynced temporary file (which fails if the name exists).
pub(super) fn publish(dir: &Path, seq: u64, body: &[u8], signature: &[u8]) -> Result<PathBuf> {
    let name = digest_name(seq);
    let sig_name = format!("{name}{SIGNATURE_SUFFIX}");
    let tag = format!("{}.{}", std::process::id(), uuid::Uuid::now_v7().simple());
    let link = |file: &str, bytes: &[u8]| -> Result<PathBuf> {
        let tmp = dir.join(format!(".{file}.{tag}.tmp"));
        let target = dir.join(file);
        write_synced(&tmp, bytes)?;
        let linked = fs::hard_link(&tmp, &target);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                sync_dir(dir)?;
                Ok(target)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(Error::DigestConflict { seq })
            }
            Err(e) => Err(Error::io(&target, e)),
        }
    };
    link(&sig_name, signature)?;
    link(&name, body)
}
