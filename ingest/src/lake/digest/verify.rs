//! Walking the digest chain and the lake: what is wrong, and what is too new
//! to be vouched for yet.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::Path;

use chrono::{DateTime, Utc};
use tooltrail_schemas::signing::{Keyring, SIGNATURE_SUFFIX};

use super::format::{Digest, digest_name};
use super::report::{Finding, Head, Pending, PendingReason, VerifyReport};
use super::{
    ALERTS_GRACE, DIGEST_DIR, LOG_DIR, TABLES, day_over, hash_file, hash_parallel, list_data_files,
    list_digests, log_entry_path, partition_range, sha256_hex, table_of,
};
use crate::error::{Error, Result};
use crate::lake::log::LogEntry;

/// What the chain (or, past it, the log) says about one path.
#[derive(Debug, Default)]
struct PathState {
    added: Option<Expected>,
    removed: Option<Removal>,
}

#[derive(Debug, Clone)]
struct Expected {
    sha256: String,
    bytes: u64,
    origin: Origin,
    log_seq: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Digest(u64),
    /// A log entry in a gap of the chain (the gap is the finding).
    Gap,
    /// A log entry after the last digest.
    Pending,
}

#[derive(Debug)]
struct Removal {
    log_seq: u64,
    pending: bool,
}

/// Checks a digest an earlier audit recorded (the head `verify` reported
/// then): it must still exist with the same bytes. With a clean [`verify`],
/// this proves the chain was not cut back since, which the chain alone
/// cannot show.
pub fn check_anchor(lake_root: &Path, seq: u64, sha256: &str) -> Result<Option<Finding>> {
    let path = lake_root.join(DIGEST_DIR).join(digest_name(seq));
    let actual = match hash_file(&path) {
        Ok(hash) => Some(hash.sha256),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(&path, e)),
    };
    let expected = sha256.to_ascii_lowercase();
    Ok(
        (actual.as_deref() != Some(expected.as_str())).then_some(Finding::AnchorMismatch {
            seq,
            expected_sha256: expected,
            actual,
        }),
    )
}

/// Walks the chain and the lake at `lake_root`. Signatures, links, gaps and
/// log entries are checked over the whole chain; files only where their
/// partition overlaps `range` (`[from, to)`), when given. `now` is recorded
/// in the report.
///
/// Errors are reserved for a lake that cannot be read; everything wrong with
/// its content is a [`Finding`].
pub fn verify(
    lake_root: &Path,
    keyring: &Keyring,
    range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    now: DateTime<Utc>,
) -> Result<VerifyReport> {
    if !lake_root.join(LOG_DIR).is_dir() {
        return Err(Error::NotALake {
            path: lake_root.to_owned(),
        });
    }
    // Files first: a file is visible only once its log entry exists, so every
    // file listed here has its entry in the log read below.
    let present: BTreeSet<String> = list_data_files(lake_root, &TABLES)?.into_iter().collect();
    let mut v = Verifier {
        root: lake_root,
        findings: Vec::new(),
        pending: Vec::new(),
        states: BTreeMap::new(),
    };
    let chain = v.walk_chain(keyring)?;
    let (log_entries_checked, log_read_to) = v.check_log(&chain)?;
    let in_range = |path: &str| match (range, partition_range(path)) {
        (Some((from, to)), Some((start, end))) => start < to && end > from,
        _ => true,
    };
    let head_created = chain.digests.last().map(|d| d.created_at);
    let to_hash = v.classify(&present, &in_range, head_created);
    let (files_checked, bytes_checked) = v.hash_and_compare(to_hash, log_read_to)?;
    if chain.count == 0 {
        v.findings.insert(0, Finding::NoDigests);
    }
    Ok(VerifyReport {
        verified_at: now,
        digests: chain.count,
        head: chain.head,
        log_entries_checked,
        files_checked,
        bytes_checked,
        pending: v.pending,
        findings: v.findings,
    })
}

struct Chain {
    /// The digests that parse, in seq order.
    digests: Vec<Digest>,
    count: usize,
    head: Option<Head>,
}

struct Verifier<'a> {
    root: &'a Path,
    findings: Vec<Finding>,
    pending: Vec<Pending>,
    states: BTreeMap<String, PathState>,
}

impl Verifier<'_> {
    /// Signatures, links and gaps; the digests that parse.
    fn walk_chain(&mut self, keyring: &Keyring) -> Result<Chain> {
        let dir = self.root.join(DIGEST_DIR);
        let listing = list_digests(&dir)?;
        let mut digests: Vec<Digest> = Vec::new();
        // (seq, sha256 of its bytes, its log to_seq if it parsed)
        let mut prev: Option<(u64, String, Option<u64>)> = None;
        let mut count = 0;
        for (&seq, &(json, sig)) in &listing {
            if !json {
                continue; // a signature a crashed writer left; a gap shows if it matters
            }
            count += 1;
            let rel = format!("{DIGEST_DIR}/{}", digest_name(seq));
            let path = self.root.join(&rel);
            let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
            let sha256 = sha256_hex(&bytes);
            let prev_seq = prev.as_ref().map_or(0, |p| p.0);
            let contiguous = seq == prev_seq + 1;
            if !contiguous {
                self.findings.push(Finding::Gap {
                    after_seq: prev_seq,
                    next_seq: seq,
                });
            }
            let digest = match serde_json::from_slice::<Digest>(&bytes) {
                Ok(d) if d.seq == seq => d,
                Ok(d) => {
                    self.malformed(
                        &rel,
                        format!("holds seq {} in the file of seq {seq}", d.seq),
                    );
                    prev = Some((seq, sha256, None));
                    continue;
                }
                Err(e) => {
                    self.malformed(&rel, e.to_string());
                    prev = Some((seq, sha256, None));
                    continue;
                }
            };
            self.check_signature(&path, &bytes, sig, &digest, keyring)?;
            if contiguous {
                let linked = match (&digest.previous, &prev) {
                    (None, None) => true,
                    (Some(link), Some((pseq, psha, _))) => {
                        link.seq == *pseq && link.sha256 == *psha
                    }
                    _ => false,
                };
                if !linked {
                    self.findings.push(Finding::BrokenLink {
                        seq,
                        expected_previous_sha256: digest
                            .previous
                            .as_ref()
                            .map_or_else(|| "none".into(), |l| l.sha256.clone()),
                        actual: prev.as_ref().map_or_else(|| "none".into(), |p| p.1.clone()),
                    });
                }
                let joins = match &prev {
                    None => digest.log.from_seq == 1,
                    Some((_, _, Some(to))) => digest.log.from_seq == to + 1,
                    Some((_, _, None)) => true, // the previous did not parse: already reported
                };
                if !joins {
                    self.findings.push(Finding::Gap {
                        after_seq: prev_seq,
                        next_seq: seq,
                    });
                }
            }
            prev = Some((seq, sha256, Some(digest.log.to_seq)));
            digests.push(digest);
        }
        let head = prev.map(|(seq, sha256, _)| Head {
            seq,
            sha256,
            created_at: digests
                .last()
                .filter(|d| d.seq == seq)
                .map(|d| d.created_at),
        });
        Ok(Chain {
            digests,
            count,
            head,
        })
    }

    fn check_signature(
        &mut self,
        path: &Path,
        bytes: &[u8],
        has_sig: bool,
        digest: &Digest,
        keyring: &Keyring,
    ) -> Result<()> {
        let seq = digest.seq;
        if !has_sig {
            self.findings.push(Finding::Unsigned { seq });
            return Ok(());
        }
        let sig_path = path.with_file_name(format!("{}{SIGNATURE_SUFFIX}", digest_name(seq)));
        let signature = fs::read(&sig_path).map_err(|e| Error::io(&sig_path, e))?;
        match keyring.get(&digest.key_id) {
            None => self.findings.push(Finding::UnknownKey {
                seq,
                key_id: digest.key_id.clone(),
            }),
            Some(key) => {
                if let Err(e) = key.verify(bytes, &signature) {
                    self.findings.push(Finding::BadSignature {
                        seq,
                        key_id: digest.key_id.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Hashes the log entries the digests recorded; reads the others (in
    /// gaps, or after the last digest). Fills `states`. Returns how many
    /// entries were checked against a digest, and the last seq read.
    fn check_log(&mut self, chain: &Chain) -> Result<(usize, u64)> {
        let mut covered = BTreeSet::new();
        let mut checked = 0;
        for digest in &chain.digests {
            for entry in &digest.log.entries {
                covered.insert(entry.seq);
                let path = log_entry_path(self.root, entry.seq);
                match hash_file(&path) {
                    Ok(hash) if hash.sha256 == entry.sha256 => {}
                    Ok(_) => self.findings.push(Finding::LogEntryModified {
                        seq: entry.seq,
                        recorded_in_digest: digest.seq,
                    }),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => self
                        .findings
                        .push(Finding::LogEntryMissing { seq: entry.seq }),
                    Err(e) => return Err(Error::io(&path, e)),
                }
                checked += 1;
            }
            for f in &digest.added {
                self.state(&f.path).added.get_or_insert(Expected {
                    sha256: f.sha256.clone(),
                    bytes: f.bytes,
                    origin: Origin::Digest(digest.seq),
                    log_seq: Some(f.log_seq),
                });
            }
            for f in &digest.observed {
                self.state(&f.path).added.get_or_insert(Expected {
                    sha256: f.sha256.clone(),
                    bytes: f.bytes,
                    origin: Origin::Digest(digest.seq),
                    log_seq: None,
                });
            }
            for f in &digest.removed {
                self.state(&f.path).removed.get_or_insert(Removal {
                    log_seq: f.log_seq,
                    pending: false,
                });
            }
        }
        let digested_to = chain
            .digests
            .iter()
            .map(|d| d.log.to_seq)
            .max()
            .unwrap_or(0);
        let log_dir = self.root.join(LOG_DIR);
        let mut on_disk = BTreeSet::new();
        for entry in fs::read_dir(&log_dir).map_err(|e| Error::io(&log_dir, e))? {
            let name = entry.map_err(|e| Error::io(&log_dir, e))?.file_name();
            if let Some(seq) = name.to_str().and_then(super::format::parse_digest_name) {
                on_disk.insert(seq);
            }
        }
        let last = on_disk.last().copied().unwrap_or(0);
        for seq in (1..=last).filter(|s| !covered.contains(s)) {
            if !on_disk.contains(&seq) {
                self.findings.push(Finding::LogEntryMissing { seq });
                continue;
            }
            let path = log_entry_path(self.root, seq);
            let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
            let entry: LogEntry = match serde_json::from_slice(&bytes) {
                Ok(entry) => entry,
                Err(e) => {
                    self.malformed(&format!("{LOG_DIR}/{seq:020}.json"), e.to_string());
                    continue;
                }
            };
            let pending = seq > digested_to;
            let origin = if pending {
                Origin::Pending
            } else {
                Origin::Gap
            };
            for f in &entry.added {
                self.state(&f.path).added.get_or_insert(Expected {
                    sha256: f.sha256.clone(),
                    bytes: f.bytes,
                    origin,
                    log_seq: Some(seq),
                });
            }
            for path in &entry.removed {
                self.state(path).removed.get_or_insert(Removal {
                    log_seq: seq,
                    pending,
                });
            }
        }
        Ok((checked, last))
    }

    /// Sorts every path into fine, pending, a finding, or to be hashed.
    fn classify(
        &mut self,
        present: &BTreeSet<String>,
        in_range: &dyn Fn(&str) -> bool,
        head_created: Option<DateTime<Utc>>,
    ) -> Vec<(String, Expected)> {
        let mut to_hash = Vec::new();
        let states = std::mem::take(&mut self.states);
        for (path, state) in states.iter().filter(|(p, _)| in_range(p)) {
            // Published after the listing, or removed after it: look again.
            let exists = self.root.join(path).exists();
            match (&state.added, &state.removed) {
                (_, Some(removal)) => {
                    if !exists {
                        continue;
                    }
                    if removal.pending {
                        self.pend(path, PendingReason::RemovedAfterLastDigest);
                    } else if self.swap_unfinished(removal.log_seq) {
                        self.pend(path, PendingReason::NotYetPublished);
                    } else {
                        self.findings.push(Finding::ResurrectedFile {
                            path: path.clone(),
                            removed_in_log_seq: removal.log_seq,
                        });
                    }
                }
                (Some(expected), None) => {
                    if expected.origin == Origin::Pending {
                        self.pend(path, PendingReason::CommittedAfterLastDigest);
                    } else if exists {
                        to_hash.push((path.clone(), expected.clone()));
                    } else if self.unpublished(path, expected.log_seq) {
                        self.pend(path, PendingReason::NotYetPublished);
                    } else {
                        self.findings.push(deleted(path, expected.origin));
                    }
                }
                (None, None) => {}
            }
        }
        for path in present
            .iter()
            .filter(|p| !states.contains_key(*p) && in_range(p))
        {
            match self.unlisted_is_pending(path, head_created) {
                Some(reason) => self.pend(path, reason),
                None => self
                    .findings
                    .push(Finding::UnlistedFile { path: path.clone() }),
            }
        }
        self.states = states;
        to_hash
    }

    /// Files outside the log may be newer than the last digest; log-written
    /// tables never hold a file their log does not list.
    fn unlisted_is_pending(
        &self,
        path: &str,
        head_created: Option<DateTime<Utc>>,
    ) -> Option<PendingReason> {
        match table_of(path) {
            "alerts" => {
                let Some(head) = head_created else {
                    return Some(PendingReason::NewerThanLastDigest);
                };
                let modified = fs::metadata(self.root.join(path))
                    .and_then(|m| m.modified())
                    .ok()
                    .map(DateTime::<Utc>::from);
                match modified {
                    Some(m) if m + ALERTS_GRACE < head => None,
                    _ => Some(PendingReason::NewerThanLastDigest),
                }
            }
            "query_audit" => match head_created {
                Some(head) if day_over(path, head) => None,
                _ => Some(PendingReason::DayNotOverAtLastDigest),
            },
            _ => None,
        }
    }

    /// Hashes the files (in parallel, streamed) and compares. Returns (files, bytes).
    fn hash_and_compare(
        &mut self,
        files: Vec<(String, Expected)>,
        log_read_to: u64,
    ) -> Result<(usize, u64)> {
        let results = hash_parallel(self.root, &files);
        let (mut count, mut total) = (0, 0);
        let mut vanished = Vec::new();
        for ((path, expected), result) in files.into_iter().zip(results) {
            let hash = match result {
                Ok(hash) => hash,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    vanished.push((path, expected.origin));
                    continue;
                }
                Err(e) => return Err(Error::io(self.root.join(&path), e)),
            };
            count += 1;
            total += hash.bytes;
            if hash.sha256 != expected.sha256 || hash.bytes != expected.bytes {
                self.findings.push(Finding::ModifiedFile {
                    path,
                    expected_sha256: expected.sha256,
                    actual_sha256: hash.sha256,
                    expected_bytes: expected.bytes,
                    actual_bytes: hash.bytes,
                });
            }
        }
        if !vanished.is_empty() {
            // Gone since the listing: legitimately, if a log entry written
            // meanwhile removed it (compaction, retention).
            let removed = removed_after(self.root, log_read_to)?;
            for (path, origin) in vanished {
                if removed.contains(&path) {
                    self.pend(&path, PendingReason::RemovedAfterLastDigest);
                } else {
                    self.findings.push(deleted(&path, origin));
                }
            }
        }
        Ok((count, total))
    }

    /// Whether a committed file is still staged: its transaction's step 3,
    /// or its compaction's swap, has not run yet.
    fn unpublished(&self, path: &str, log_seq: Option<u64>) -> bool {
        let full = self.root.join(path);
        let Some(name) = full.file_name().and_then(|n| n.to_str()) else {
            return false;
        };
        if full.with_file_name(format!(".{name}.tmp")).exists() {
            return true;
        }
        log_seq
            .and_then(|seq| self.swap_dir(seq))
            .is_some_and(|staged| staged.join(name).exists())
    }

    fn swap_unfinished(&self, log_seq: u64) -> bool {
        self.swap_dir(log_seq).is_some_and(|staged| staged.is_dir())
    }

    /// The staged directory of a compaction's swap, from its log entry.
    fn swap_dir(&self, log_seq: u64) -> Option<std::path::PathBuf> {
        let bytes = fs::read(log_entry_path(self.root, log_seq)).ok()?;
        let entry: LogEntry = serde_json::from_slice(&bytes).ok()?;
        entry.swap.map(|swap| self.root.join(swap.staged))
    }

    fn state(&mut self, path: &str) -> &mut PathState {
        self.states.entry(path.to_owned()).or_default()
    }

    fn pend(&mut self, path: &str, reason: PendingReason) {
        self.pending.push(Pending {
            path: path.to_owned(),
            reason,
        });
    }

    fn malformed(&mut self, path: &str, reason: String) {
        self.findings.push(Finding::Malformed {
            path: path.to_owned(),
            reason,
        });
    }
}

fn deleted(path: &str, origin: Origin) -> Finding {
    Finding::DeletedFile {
        path: path.to_owned(),
        recorded_in_digest: match origin {
            Origin::Digest(seq) => Some(seq),
            Origin::Gap | Origin::Pending => None,
        },
    }
}

/// Paths removed by log entries after `seq`.
fn removed_after(root: &Path, seq: u64) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for next in seq + 1.. {
        let path = log_entry_path(root, next);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(Error::io(&path, e)),
        };
        if let Ok(entry) = serde_json::from_slice::<LogEntry>(&bytes) {
            out.extend(entry.removed);
        }
    }
    Ok(out)
}
