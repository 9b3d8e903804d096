//! Walking the digest chain and the tables: what is wrong, and what is too
//! new to be vouched for yet.
//!
//! Order matters, because writers keep going while this runs: the chain is
//! read first, then the tables' files are listed, then their logs. A file is
//! named by a commit only after it was written, so a file that a commit read
//! here names was listed if it exists; a commit newer than the listing is
//! after the last digest, and what it does is pending.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use tooltrail_schemas::signing::Keyring;

use super::format::{CommitRecord, Digest, commit_path};
use super::log::{self, ParsedCommit};
use super::report::{Finding, Head, Pending, PendingReason, VerifyReport};
use super::{
    DIGEST_FORMAT_VERSION, DigestError, HASH_CONCURRENCY, Present, Result, UNCOMMITTED_GRACE,
    digest_path, hash_object, list_data_files, list_digests, partition_range, read, root_store,
    sha256_hex, signature_path,
};
use crate::location::Location;
use crate::table::TableSpec;

/// Commit files read at once.
const READ_CONCURRENCY: usize = 16;

/// Checks a digest an earlier audit recorded (the head `verify` reported
/// then): it must still exist with the same bytes. With a clean [`verify`],
/// this proves the chain was not cut back since, which the chain alone
/// cannot show.
pub async fn check_anchor(location: &Location, seq: u64, sha256: &str) -> Result<Option<Finding>> {
    let store = root_store(location)?;
    let actual = hash_object(store.as_ref(), &digest_path(seq))
        .await?
        .map(|h| h.sha256);
    let expected = sha256.to_ascii_lowercase();
    Ok(
        (actual.as_deref() != Some(expected.as_str())).then_some(Finding::AnchorMismatch {
            seq,
            expected_sha256: expected,
            actual,
        }),
    )
}

/// Walks the chain and the lake at `location`: `tables`, and every other
/// table a digest covers. Signatures, links, gaps and commit files are
/// checked over the whole chain; data files only where their partition
/// overlaps `range` (`[from, to)`), when given. `now` is recorded in the
/// report, and bounds how new an uncommitted file may claim to be.
///
/// Errors are reserved for a lake that cannot be read; everything wrong with
/// its content is a [`Finding`].
pub async fn verify(
    location: &Location,
    tables: &[&'static TableSpec],
    keyring: &Keyring,
    range: Option<(DateTime<Utc>, DateTime<Utc>)>,
    now: DateTime<Utc>,
) -> Result<VerifyReport> {
    let store = root_store(location)?;
    let mut v = Verifier {
        store: store.as_ref(),
        findings: Vec::new(),
        pending: Vec::new(),
    };
    let chain = v.walk_chain(keyring).await?;
    let names: BTreeSet<String> = tables
        .iter()
        .map(|t| t.name.to_owned())
        .chain(chain.covered.keys().cloned())
        .collect();
    let mut present = BTreeMap::new();
    for table in &names {
        present.extend(list_data_files(v.store, table).await?);
    }
    let mut states = BTreeMap::new();
    let mut log_entries_checked = 0;
    let mut any_commit = false;
    let mut read_to = BTreeMap::new();
    for table in &names {
        let replayed = v.replay_table(table, &chain, &mut states).await?;
        log_entries_checked += replayed.checked;
        any_commit |= replayed.last.is_some();
        read_to.insert(table.clone(), replayed.last.unwrap_or(-1));
    }
    if chain.count == 0 && !any_commit {
        return Err(DigestError::NotALake {
            location: location.to_string(),
        });
    }
    let in_range = |path: &str| match (range, partition_range(path)) {
        (Some((from, to)), Some((start, end))) => start < to && end > from,
        _ => true,
    };
    let head_created = chain.head.as_ref().and_then(|h| h.created_at);
    let to_hash = v.classify(&states, &present, &in_range, head_created, now);
    let (files_checked, bytes_checked) = v.hash_and_compare(to_hash, &read_to).await?;
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

/// What the chain vouches for.
struct Chain {
    /// Per table, per version: the digest that recorded the commit, and what
    /// it recorded.
    covered: BTreeMap<String, BTreeMap<i64, (u64, CommitRecord)>>,
    count: usize,
    head: Option<Head>,
}

/// Where a path's last add came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    Digest(u64),
    /// A commit in a gap of the chain (the gap is the finding).
    Gap,
    /// A commit after the last digest.
    Pending,
}

#[derive(Debug, Clone)]
struct Expected {
    sha256: Option<String>,
    bytes: u64,
    origin: Origin,
}

/// A path as the commits leave it.
#[derive(Debug, Default)]
struct PathState {
    live: bool,
    expected: Option<Expected>,
    /// Removed, and whether by a commit after the last digest.
    removed: Option<bool>,
}

struct Replayed {
    checked: usize,
    last: Option<i64>,
}

/// A file to hash: what it should hold, and whether the table still holds it.
struct ToHash {
    path: String,
    expected: Expected,
    live: bool,
}

struct Verifier<'a> {
    store: &'a dyn ObjectStore,
    findings: Vec<Finding>,
    pending: Vec<Pending>,
}

impl Verifier<'_> {
    /// Signatures, links and gaps; what the digests that parse recorded.
    async fn walk_chain(&mut self, keyring: &Keyring) -> Result<Chain> {
        let listing = list_digests(self.store).await?;
        let mut covered: BTreeMap<String, BTreeMap<i64, (u64, CommitRecord)>> = BTreeMap::new();
        // Per table, the last version the digests so far cover.
        let mut last_to: BTreeMap<String, i64> = BTreeMap::new();
        // (seq, sha256 of its bytes, whether its content was taken)
        let mut prev: Option<(u64, String, bool)> = None;
        let mut head_created = None;
        let mut count = 0;
        for (&seq, listed) in &listing {
            if listed.json.is_none() {
                continue; // a signature a writer is publishing, or left; a gap shows if it matters
            }
            let path = digest_path(seq);
            let Some(bytes) = read(self.store, &path).await? else {
                continue; // removed since the listing; a gap shows if it matters
            };
            count += 1;
            let sha256 = sha256_hex(&bytes);
            let prev_seq = prev.as_ref().map_or(0, |p| p.0);
            let contiguous = seq == prev_seq + 1;
            if !contiguous {
                self.findings.push(Finding::Gap {
                    after_seq: prev_seq,
                    next_seq: seq,
                });
            }
            head_created = None;
            let digest = match serde_json::from_slice::<Digest>(&bytes) {
                Ok(d) if d.seq != seq => {
                    Err(format!("holds seq {} in the file of seq {seq}", d.seq))
                }
                Ok(d) if d.digest_version < DIGEST_FORMAT_VERSION => Err(format!(
                    "digest version {} covers the lake's pre-Delta commit log, which this lake does not have",
                    d.digest_version
                )),
                Ok(d) => Ok(d),
                Err(e) => Err(e.to_string()),
            };
            let digest = match digest {
                Ok(d) => d,
                Err(reason) => {
                    self.malformed(&path, reason);
                    prev = Some((seq, sha256, false));
                    continue;
                }
            };
            self.check_signature(seq, &bytes, listed.sig.is_some(), &digest, keyring)
                .await?;
            if contiguous {
                self.check_link(&digest, prev.as_ref());
            }
            if let Err(reason) = consistent(&digest) {
                self.malformed(&path, reason);
                prev = Some((seq, sha256, false));
                continue;
            }
            let joins = digest
                .tables
                .iter()
                .all(|t| t.from_version == last_to.get(&t.table).map_or(0, |to| to + 1));
            // After a digest whose content was not taken the ranges cannot be
            // known to join (that digest is the finding).
            if contiguous && !joins && prev.as_ref().is_none_or(|p| p.2) {
                self.findings.push(Finding::Gap {
                    after_seq: prev_seq,
                    next_seq: seq,
                });
            }
            for table in &digest.tables {
                let versions = covered.entry(table.table.clone()).or_default();
                for commit in &table.commits {
                    versions
                        .entry(commit.version)
                        .or_insert_with(|| (seq, commit.clone()));
                }
                if table.to_version >= table.from_version {
                    last_to.insert(table.table.clone(), table.to_version);
                }
            }
            head_created = Some(digest.created_at);
            prev = Some((seq, sha256, true));
        }
        let head = prev.map(|(seq, sha256, _)| Head {
            seq,
            sha256,
            created_at: head_created,
        });
        Ok(Chain {
            covered,
            count,
            head,
        })
    }

    async fn check_signature(
        &mut self,
        seq: u64,
        bytes: &[u8],
        has_sig: bool,
        digest: &Digest,
        keyring: &Keyring,
    ) -> Result<()> {
        let signature = if has_sig {
            read(self.store, &signature_path(seq)).await?
        } else {
            None
        };
        let Some(signature) = signature else {
            self.findings.push(Finding::Unsigned { seq });
            return Ok(());
        };
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

    fn check_link(&mut self, digest: &Digest, prev: Option<&(u64, String, bool)>) {
        let linked = match (&digest.previous, prev) {
            (None, None) => true,
            (Some(link), Some((pseq, psha, _))) => link.seq == *pseq && link.sha256 == *psha,
            _ => false,
        };
        if !linked {
            self.findings.push(Finding::BrokenLink {
                seq: digest.seq,
                expected_previous_sha256: digest
                    .previous
                    .as_ref()
                    .map_or_else(|| "none".into(), |l| l.sha256.clone()),
                actual: prev.map_or_else(|| "none".into(), |p| p.1.clone()),
            });
        }
    }

    /// Re-hashes the commit files of `table` the chain recorded, reads the
    /// others (in gaps of the chain, or after it) and replays every commit
    /// in version order into `states`.
    async fn replay_table(
        &mut self,
        table: &str,
        chain: &Chain,
        states: &mut BTreeMap<String, PathState>,
    ) -> Result<Replayed> {
        let empty = BTreeMap::new();
        let covered = chain.covered.get(table).unwrap_or(&empty);
        let store = self.store;
        let hashes: Vec<_> = futures::stream::iter(covered.keys())
            .map(|&version| async move {
                let hash = hash_object(store, &commit_path(table, version)).await?;
                Ok::<_, DigestError>((version, hash))
            })
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        for (version, hash) in hashes {
            let (seq, record) = &covered[&version];
            match hash {
                None => self.findings.push(Finding::LogEntryMissing {
                    table: table.to_owned(),
                    version,
                }),
                Some(h) if h.sha256 != record.sha256 => {
                    self.findings.push(Finding::LogEntryModified {
                        table: table.to_owned(),
                        version,
                        recorded_in_digest: *seq,
                    });
                }
                Some(_) => {}
            }
        }
        let on_disk = log::versions(store, table, None).await?;
        let digested_to = covered.keys().next_back().copied().unwrap_or(-1);
        let last_on_disk = on_disk.last().copied();
        let on_disk: BTreeSet<i64> = on_disk.into_iter().collect();
        let mut uncovered = Vec::new();
        for version in 0..=last_on_disk.unwrap_or(-1) {
            if covered.contains_key(&version) {
                continue;
            }
            if on_disk.contains(&version) {
                uncovered.push(version);
            } else {
                self.findings.push(Finding::LogEntryMissing {
                    table: table.to_owned(),
                    version,
                });
            }
        }
        let parsed: Vec<_> = futures::stream::iter(uncovered)
            .map(|version| async move {
                let bytes = read(store, &commit_path(table, version)).await?;
                Ok::<_, DigestError>((version, bytes))
            })
            .buffered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        let mut ops: BTreeMap<i64, (Origin, ParsedCommit)> = BTreeMap::new();
        for (version, bytes) in parsed {
            let Some(bytes) = bytes else {
                continue; // removed since the listing: a later run names it
            };
            match log::parse(table, &bytes) {
                Ok(commit) => {
                    let origin = if version < digested_to {
                        Origin::Gap
                    } else {
                        Origin::Pending
                    };
                    ops.insert(version, (origin, commit));
                }
                Err(reason) => self.malformed(&commit_path(table, version), reason),
            }
        }
        for (&version, (seq, record)) in covered {
            let commit = ParsedCommit {
                operation: record.operation.clone(),
                added: record.added.clone(),
                removed: record.removed.clone(),
            };
            ops.insert(version, (Origin::Digest(*seq), commit));
        }
        for (origin, commit) in ops.into_values() {
            for file in commit.added {
                let state = states.entry(file.path).or_default();
                state.live = true;
                state.removed = None;
                state.expected = Some(Expected {
                    sha256: file.sha256,
                    bytes: file.bytes,
                    origin,
                });
            }
            for file in commit.removed {
                let state = states.entry(file.path).or_default();
                state.live = false;
                state.removed = Some(origin == Origin::Pending);
            }
        }
        Ok(Replayed {
            checked: covered.len(),
            last: last_on_disk.max(covered.keys().next_back().copied()),
        })
    }

    /// Sorts every path into fine, pending, a finding, or to be hashed.
    fn classify(
        &mut self,
        states: &BTreeMap<String, PathState>,
        present: &BTreeMap<String, Present>,
        in_range: &dyn Fn(&str) -> bool,
        head_created: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Vec<ToHash> {
        let mut to_hash = Vec::new();
        for (path, state) in states.iter().filter(|(p, _)| in_range(p)) {
            let exists = present.contains_key(path);
            let vouched = state
                .expected
                .as_ref()
                .filter(|e| e.origin != Origin::Pending);
            if state.live {
                match vouched {
                    None => self.pend(path, PendingReason::CommittedAfterLastDigest),
                    Some(expected) if exists => to_hash.push(ToHash {
                        path: path.clone(),
                        expected: expected.clone(),
                        live: true,
                    }),
                    Some(expected) => self.findings.push(deleted(path, expected.origin)),
                }
                continue;
            }
            if state.removed == Some(true) {
                self.pend(path, PendingReason::RemovedAfterLastDigest);
            }
            // Removed: it may be gone (vacuum), but while it exists older
            // versions read it, and it keeps its bytes.
            if let Some(expected) = vouched
                && exists
            {
                to_hash.push(ToHash {
                    path: path.clone(),
                    expected: expected.clone(),
                    live: false,
                });
            }
        }
        for (path, file) in present
            .iter()
            .filter(|(p, _)| !states.contains_key(*p) && in_range(p))
        {
            let fresh = head_created
                .is_none_or(|head| file.last_modified + UNCOMMITTED_GRACE > head)
                && file.last_modified <= now + UNCOMMITTED_GRACE;
            if fresh {
                self.pend(path, PendingReason::NotYetCommitted);
            } else {
                self.findings
                    .push(Finding::UnlistedFile { path: path.clone() });
            }
        }
        to_hash
    }

    /// Hashes the files (several at once, each streamed) and compares.
    /// Returns (files, bytes).
    async fn hash_and_compare(
        &mut self,
        files: Vec<ToHash>,
        read_to: &BTreeMap<String, i64>,
    ) -> Result<(usize, u64)> {
        let store = self.store;
        let results: Vec<_> = futures::stream::iter(files)
            .map(|file| async move {
                let hash = hash_object(store, &file.path).await?;
                Ok::<_, DigestError>((file, hash))
            })
            .buffered(HASH_CONCURRENCY)
            .try_collect()
            .await?;
        let (mut count, mut total) = (0, 0);
        let mut vanished = Vec::new();
        for (file, hash) in results {
            let Some(hash) = hash else {
                // A removed file may go (vacuum); a live one only by a commit.
                if file.live {
                    vanished.push((file.path, file.expected.origin));
                }
                continue;
            };
            count += 1;
            total += hash.bytes;
            let expected = file.expected;
            let sha_differs = expected.sha256.as_ref().is_some_and(|s| *s != hash.sha256);
            if sha_differs || hash.bytes != expected.bytes {
                self.findings.push(Finding::ModifiedFile {
                    path: file.path,
                    expected_sha256: expected.sha256,
                    actual_sha256: hash.sha256,
                    expected_bytes: expected.bytes,
                    actual_bytes: hash.bytes,
                });
            }
        }
        if !vanished.is_empty() {
            // Gone since the listing: legitimately, if a commit made
            // meanwhile removed it.
            let mut removed = BTreeSet::new();
            for (table, last) in read_to {
                for version in log::versions(store, table, Some(*last)).await? {
                    if let Some(bytes) = read(store, &commit_path(table, version)).await?
                        && let Ok(commit) = log::parse(table, &bytes)
                    {
                        removed.extend(commit.removed.into_iter().map(|r| r.path));
                    }
                }
            }
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

/// What a digest must say of itself to be taken: plain table names, and for
/// each table one commit per version of its range, in order, at its path,
/// naming files inside the table.
fn consistent(digest: &Digest) -> Result<(), String> {
    let mut seen = BTreeSet::new();
    for table in &digest.tables {
        let name = &table.table;
        let plain = !name.is_empty()
            && !name.starts_with(['.', '_'])
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !plain {
            return Err(format!("`{name}` is not a table name"));
        }
        if !seen.insert(name) {
            return Err(format!("table {name} is listed twice"));
        }
        let versions: Vec<i64> = table.commits.iter().map(|c| c.version).collect();
        let expected: Vec<i64> = (table.from_version..=table.to_version).collect();
        if table.from_version < 0 || versions != expected {
            return Err(format!(
                "table {name}: versions {}..={} with commits {versions:?}",
                table.from_version, table.to_version
            ));
        }
        let prefix = format!("{name}/");
        for commit in &table.commits {
            if commit.path != commit_path(name, commit.version) {
                return Err(format!("table {name}: commit at {}", commit.path));
            }
            let outside = commit
                .added
                .iter()
                .map(|f| &f.path)
                .chain(commit.removed.iter().map(|f| &f.path))
                .find(|p| {
                    !p.starts_with(&prefix) || p.split('/').any(|s| s == ".." || s.is_empty())
                });
            if let Some(path) = outside {
                return Err(format!("table {name}: file {path} is outside the table"));
            }
        }
    }
    Ok(())
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
