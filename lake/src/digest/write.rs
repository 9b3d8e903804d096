//! Appending the next digest to the chain, without a lock.
//!
//! Digest `n` is published by creating `<n>.json.sig` and then `<n>.json`,
//! each create-if-absent. Whoever creates the signature owns the seq; a
//! writer that finds it taken reads the chain again and writes `n + 1` once
//! `n` is published. A signature without its digest is a writer between
//! its two puts, or one that died there: once it is [`ORPHAN_AGE`] old it is
//! removed and the seq is free again. Should that writer still publish its
//! digest afterwards (it stalled that long), the digest stays unsigned and
//! `verify` says so: a writer never signs a digest it did not build, since it
//! cannot tell a stalled writer's from one an intruder edited.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use rand::Rng;
use serde::Deserialize;
use tooltrail_schemas::signing::Signer;

use super::format::{
    CommitRecord, DIGEST_FORMAT_VERSION, Digest, DigestLink, TableLog, commit_path,
};
use super::{
    DigestError, Result, digest_path, hash_object, list_digests, log, read, root_store, sha256_hex,
    signature_path, store_error,
};
use crate::location::Location;
use crate::table::TableSpec;

/// A signature without its digest older than this was left by a writer that
/// died between its two puts (a put that S3 retries can take minutes).
pub const ORPHAN_AGE: chrono::Duration = chrono::Duration::minutes(5);

/// Attempts at a seq before giving up (the periodic writer tries again at
/// its next tick).
const MAX_ATTEMPTS: u32 = 20;

const BACKOFF_BASE: Duration = Duration::from_millis(20);
const BACKOFF_CAP: Duration = Duration::from_secs(1);

/// What [`write_digest`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestSummary {
    pub seq: u64,
    /// The digest, relative to the lake root.
    pub path: String,
    pub tables: Vec<TableSummary>,
}

/// What a digest covers of one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSummary {
    pub table: String,
    /// Versions `from_version..=to_version`; none when `to_version < from_version`.
    pub from_version: i64,
    pub to_version: i64,
    pub added: usize,
    pub removed: usize,
}

impl DigestSummary {
    pub fn added(&self) -> usize {
        self.tables.iter().map(|t| t.added).sum()
    }

    pub fn removed(&self) -> usize {
        self.tables.iter().map(|t| t.removed).sum()
    }

    pub fn commits(&self) -> i64 {
        self.tables
            .iter()
            .map(|t| (t.to_version - t.from_version + 1).max(0))
            .sum()
    }
}

/// `digest 3 (_tooltrail/digest/….json): events versions 4..=6, quarantine
/// no new versions; 3 files added, 2 removed`.
impl fmt::Display for DigestSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "digest {} ({}): ", self.seq, self.path)?;
        if self.tables.is_empty() {
            write!(f, "no tables")?;
        }
        for (i, t) in self.tables.iter().enumerate() {
            if i > 0 {
                write!(f, ", ")?;
            }
            if t.to_version < t.from_version {
                write!(f, "{} no new versions", t.table)?;
            } else {
                write!(
                    f,
                    "{} versions {}..={}",
                    t.table, t.from_version, t.to_version
                )?;
            }
        }
        write!(
            f,
            "; {} added, {} removed",
            super::count(self.added(), "file"),
            self.removed()
        )
    }
}

/// The parts of the head digest the writer needs.
#[derive(Deserialize)]
struct HeadDigest {
    digest_version: u32,
    #[serde(default)]
    tables: Vec<HeadTable>,
}

#[derive(Deserialize)]
struct HeadTable {
    table: String,
    to_version: i64,
}

/// Writes, signs and publishes the next digest of the lake at `location`:
/// the commits of `tables` (and of any other table the previous digest
/// covers) since the previous digest.
///
/// `now` is the digest's `created_at`, and the clock an orphaned signature's
/// age is judged by: the wall clock outside tests.
///
/// Fails with [`DigestError::CorruptDigest`] when the newest digest cannot
/// be read (the chain cannot be extended; `verify` says why) and with
/// [`DigestError::Conflict`] if other writers kept taking the seq.
pub async fn write_digest(
    location: &Location,
    tables: &[&'static TableSpec],
    signer: &Signer,
    now: DateTime<Utc>,
) -> Result<DigestSummary> {
    let store = root_store(location)?;
    let store = store.as_ref();
    let mut seq = 1;
    for attempt in 1..=MAX_ATTEMPTS {
        let listing = list_digests(store).await?;
        let head = listing
            .iter()
            .rev()
            .find(|(_, l)| l.json.is_some())
            .map(|(seq, _)| *seq);
        seq = head.unwrap_or(0) + 1;
        // A signature above the head: a writer publishing, or one that died.
        if let Some((&orphan, listed)) = listing
            .range(seq..)
            .find(|(_, l)| l.json.is_none() && l.sig.is_some())
        {
            let signed_at = listed.sig.as_ref().map(|m| m.last_modified);
            if signed_at.is_some_and(|at| now - at < ORPHAN_AGE) {
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
            let path = signature_path(orphan);
            tracing::warn!(
                path,
                seq = orphan,
                "removing the signature of a digest a failed writer never published"
            );
            remove(store, &path).await?;
            continue;
        }
        let (previous, covered) = match head {
            Some(head) => {
                let (link, covered) = read_head(store, head).await?;
                (Some(link), covered)
            }
            None => (None, BTreeMap::new()),
        };
        let digest = build(store, tables, &covered, seq, previous, signer, now).await?;
        let mut body = serde_json::to_vec_pretty(&digest).expect("digests serialize");
        body.push(b'\n');
        let signature = signer.sign(&body);
        if !create(store, location, &signature_path(seq), &signature).await? {
            tokio::time::sleep(backoff(attempt)).await;
            continue;
        }
        if create(store, location, &digest_path(seq), &body).await? {
            return Ok(summary(&digest));
        }
        // A writer whose signature was taken for an orphan's published its
        // digest after all: ours does not sign it.
        tracing::warn!(
            seq,
            "a stalled writer published this digest after its signature was removed; it stays unsigned"
        );
        remove(store, &signature_path(seq)).await?;
    }
    Err(DigestError::Conflict {
        seq,
        attempts: MAX_ATTEMPTS,
    })
}

/// Reads the head digest: the link to it and the last version it covers of
/// each table.
async fn read_head(
    store: &dyn ObjectStore,
    head: u64,
) -> Result<(DigestLink, BTreeMap<String, i64>)> {
    let path = digest_path(head);
    let corrupt = |message: String| DigestError::CorruptDigest {
        path: path.clone(),
        message,
    };
    let bytes = read(store, &path)
        .await?
        .ok_or_else(|| corrupt("it vanished while being read".into()))?;
    let parsed: HeadDigest = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    if parsed.digest_version < DIGEST_FORMAT_VERSION {
        return Err(corrupt(format!(
            "digest version {} covers the lake's pre-Delta commit log; move {} aside to start a new chain",
            parsed.digest_version,
            super::DIGEST_DIR
        )));
    }
    let covered = parsed
        .tables
        .into_iter()
        .map(|t| (t.table, t.to_version))
        .collect();
    Ok((
        DigestLink {
            seq: head,
            sha256: sha256_hex(&bytes),
        },
        covered,
    ))
}

/// Removes `path`; absent is fine.
async fn remove(store: &dyn ObjectStore, path: &str) -> Result<()> {
    match store.delete(&StorePath::from(path)).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(store_error(format!("removing {path}"), e)),
    }
}

/// The digest `seq`: the commits of every table after what `covered` says.
async fn build(
    store: &dyn ObjectStore,
    tables: &[&'static TableSpec],
    covered: &BTreeMap<String, i64>,
    seq: u64,
    previous: Option<DigestLink>,
    signer: &Signer,
    now: DateTime<Utc>,
) -> Result<Digest> {
    let names: BTreeSet<&str> = tables
        .iter()
        .map(|t| t.name)
        .chain(covered.keys().map(String::as_str))
        .collect();
    let mut logs = Vec::with_capacity(names.len());
    for table in names {
        let from = covered.get(table).map_or(0, |to| to + 1);
        logs.push(table_log(store, table, from).await?);
    }
    Ok(Digest {
        digest_version: DIGEST_FORMAT_VERSION,
        seq,
        // Microseconds, like every other time tooltrail writes.
        created_at: now.trunc_subsecs(6),
        key_id: signer.key_id().to_string(),
        previous,
        tables: logs,
    })
}

/// The commits of `table` from version `from` on, as far as they run
/// without a hole.
async fn table_log(store: &dyn ObjectStore, table: &str, from: i64) -> Result<TableLog> {
    let versions = log::versions(store, table, Some(from - 1)).await?;
    let mut commits = Vec::new();
    let mut next = from;
    for version in versions {
        if version != next {
            tracing::error!(
                table,
                missing = next,
                present = version,
                "a commit file is missing from the table's log; the chain covers it up to the hole (verify names it)"
            );
            break;
        }
        let path = commit_path(table, version);
        let Some(bytes) = read(store, &path).await? else {
            break;
        };
        let parsed = match log::parse(table, &bytes) {
            Ok(parsed) => parsed,
            Err(error) => {
                tracing::error!(
                    path,
                    error,
                    "a commit file does not parse; the chain covers the table up to it (verify names it)"
                );
                break;
            }
        };
        let mut added = parsed.added;
        for file in added.iter_mut().filter(|f| f.sha256.is_none()) {
            // Written without our tag (another engine): hash it now.
            file.sha256 = hash_object(store, &file.path).await?.map(|h| h.sha256);
        }
        commits.push(CommitRecord {
            version,
            path,
            sha256: sha256_hex(&bytes),
            operation: parsed.operation,
            added,
            removed: parsed.removed,
        });
        next += 1;
    }
    Ok(TableLog {
        table: table.to_owned(),
        from_version: from,
        to_version: next - 1,
        commits,
    })
}

/// Creates `path` if absent; `false` if it exists. A local file is synced:
/// the chain outlives a power cut.
async fn create(
    store: &dyn ObjectStore,
    location: &Location,
    path: &str,
    bytes: &[u8],
) -> Result<bool> {
    let options = PutOptions {
        mode: PutMode::Create,
        ..PutOptions::default()
    };
    let put = store
        .put_opts(
            &StorePath::from(path),
            PutPayload::from(bytes.to_vec()),
            options,
        )
        .await;
    match put {
        Ok(_) => {}
        Err(object_store::Error::AlreadyExists { .. }) => return Ok(false),
        Err(e) => return Err(store_error(format!("writing {path}"), e)),
    }
    if let Some(dir) = location.local_dir() {
        let file = dir.join(path);
        tokio::task::spawn_blocking(move || sync(&file))
            .await
            .expect("syncing does not panic")?;
    }
    Ok(true)
}

/// Syncs a file and its directory.
fn sync(file: &std::path::Path) -> Result<()> {
    let io = |path: &std::path::Path, e| DigestError::from(crate::Error::io(path, e));
    std::fs::File::open(file)
        .and_then(|f| f.sync_all())
        .map_err(|e| io(file, e))?;
    if let Some(dir) = file.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io(dir, e))?;
    }
    Ok(())
}

fn summary(digest: &Digest) -> DigestSummary {
    DigestSummary {
        seq: digest.seq,
        path: digest_path(digest.seq),
        tables: digest
            .tables
            .iter()
            .map(|t| TableSummary {
                table: t.table.clone(),
                from_version: t.from_version,
                to_version: t.to_version,
                added: t.commits.iter().map(|c| c.added.len()).sum(),
                removed: t.commits.iter().map(|c| c.removed.len()).sum(),
            })
            .collect(),
    }
}

/// Full jitter, so that writers that collided do not collide again in step.
fn backoff(attempt: u32) -> Duration {
    let cap = BACKOFF_BASE
        .saturating_mul(1 << attempt.saturating_sub(1).min(10))
        .min(BACKOFF_CAP);
    rand::rng().random_range(Duration::ZERO..=cap)
}
