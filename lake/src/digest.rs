//! The lake's signed digest chain: tamper evidence for every table, checkable
//! by an outside auditor with the public key, `sha256sum` and `openssl`
//! alone, on a local disk or in object storage.
//!
//! ```text
//! <lake>/_tooltrail/digest/<seq, 20 digits>.json       the digest (format.rs)
//! <lake>/_tooltrail/digest/<seq, 20 digits>.json.sig   raw 64-byte Ed25519 signature of its bytes
//! ```
//!
//! Every digest covers, per table, each Delta commit since the previous
//! digest (`<table>/_delta_log/<version>.json`): its version, the SHA-256 of
//! its exact bytes, the data files it added (path, size, SHA-256 from
//! `add.tags["tooltrail.sha256"]`) and removed. It names the previous digest
//! by the SHA-256 of its exact bytes. Digests are written on a schedule even
//! when nothing changed, so a live chain keeps growing.
//!
//! - [`write_digest`] appends the next digest. Each seq is created exactly
//!   once, without a lock: the signature and then the digest are created
//!   with a create-if-absent put (a local rename-free link, or S3's
//!   `If-None-Match`), so a digest never appears without its signature, and
//!   of two writers of one seq the loser reads the chain again and writes the
//!   next one: the chain never forks.
//! - [`verify`] walks the chain, the tables' logs and their files, and
//!   returns typed [`Finding`]s: modified, deleted or unlisted (planted)
//!   files, modified or missing log entries, broken links, missing, bad or
//!   unknown signatures, and gaps. What happened after the last digest is
//!   [`Pending`], not a finding: nothing signed vouches for it yet.
//! - [`periodic::Digester`] writes one at start and then every interval.
//!
//! Invariants: a data file leaves a table only by a commit that lists it in
//! `remove`; from then on vacuum may delete it, and until then it keeps its
//! bytes (older versions read it). A table's log is never cleaned up
//! (`delta.enableExpiredLogCleanup = false`, see [`crate::table`]): a missing
//! commit file is a finding. Checkpoints (`<version>.checkpoint.parquet`,
//! `_last_checkpoint`) are derived from the commits and are not covered.
//! Files and directories whose names start with `.` or `_` are no reader's
//! data (Delta's rule) and are not checked.

pub mod format;
mod log;
pub mod periodic;
mod report;
mod verify;
mod write;

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{GetResultPayload, ObjectMeta, ObjectStore, ObjectStoreExt};
use sha2::{Digest as _, Sha256};
use tooltrail_schemas::signing::SIGNATURE_SUFFIX;

use crate::location::Location;

pub use self::format::DIGEST_FORMAT_VERSION;
pub use self::periodic::{Clock, Digester, SystemClock};
pub use self::report::{Finding, Head, Pending, PendingReason, VerifyReport, count};
pub use self::verify::{check_anchor, verify};
pub use self::write::{DigestSummary, TableSummary, write_digest};

/// Where the digests live, relative to the lake root.
pub const DIGEST_DIR: &str = "_tooltrail/digest";

/// A data file no commit names yet, written less than this long before the
/// last digest (or after it), is a write in flight, not a finding:
/// compaction writes all of an hour's files before the one commit that adds
/// them.
pub const UNCOMMITTED_GRACE: Duration = Duration::minutes(10);

/// Files hashed at once.
const HASH_CONCURRENCY: usize = 8;

/// What went wrong writing or verifying the chain (not what is wrong with
/// the lake: that is a [`Finding`]).
#[derive(Debug, thiserror::Error)]
pub enum DigestError {
    #[error(transparent)]
    Lake(#[from] crate::Error),
    /// The newest digest cannot be read, so the chain cannot be extended
    /// (`tooltrail lake verify` says what is wrong with it).
    #[error("digest {path} cannot be read, so the chain cannot be extended: {message}")]
    CorruptDigest { path: String, message: String },
    /// Other writers kept taking the next seq.
    #[error("gave up on digest {seq} after {attempts} attempts: other writers kept taking it")]
    Conflict { seq: u64, attempts: u32 },
    /// Nothing at the location: no digest and no table.
    #[error("{location} holds no lake: no digests and no table with a _delta_log")]
    NotALake { location: String },
}

impl DigestError {
    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            DigestError::Lake(e) => e.is_retryable(),
            DigestError::Conflict { .. } => true,
            DigestError::CorruptDigest { .. } | DigestError::NotALake { .. } => false,
        }
    }
}

pub type Result<T, E = DigestError> = std::result::Result<T, E>;

fn root_store(location: &Location) -> Result<Arc<dyn ObjectStore>> {
    Ok(location.root_store()?)
}

fn store_error(context: impl Into<String>, source: object_store::Error) -> DigestError {
    crate::Error::store(context, source).into()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The objects under `prefix` (`/`-separated, relative to the root); an
/// absent prefix is empty.
async fn list(store: &dyn ObjectStore, prefix: &str) -> Result<Vec<ObjectMeta>> {
    let path = StorePath::from(prefix);
    match store.list(Some(&path)).try_collect().await {
        Ok(objects) => Ok(objects),
        Err(object_store::Error::NotFound { .. }) => Ok(Vec::new()),
        Err(e) => Err(store_error(format!("listing {prefix}"), e)),
    }
}

/// The bytes at `path`, or `None` if there is no such object.
async fn read(store: &dyn ObjectStore, path: &str) -> Result<Option<bytes::Bytes>> {
    let location = StorePath::from(path);
    let got = match store.get(&location).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(store_error(format!("reading {path}"), e)),
    };
    match got.bytes().await {
        Ok(bytes) => Ok(Some(bytes)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(store_error(format!("reading {path}"), e)),
    }
}

/// SHA-256 and size of a file, streamed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashed {
    /// Lowercase hex.
    pub sha256: String,
    pub bytes: u64,
}

/// Hashes the object at `path` (relative to `store`'s root) without holding
/// it in memory; `None` if it does not exist. Exports hash the files they
/// read with it, over [`Location::root_store`].
pub async fn hash_object(store: &dyn ObjectStore, path: &str) -> Result<Option<Hashed>> {
    let location = StorePath::from(path);
    let got = match store.get(&location).await {
        Ok(got) => got,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(store_error(format!("reading {path}"), e)),
    };
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    match got.payload {
        // A local file: read in large blocks off the runtime, rather than in
        // object_store's 8 KiB chunks.
        GetResultPayload::File(mut file, fs_path) => {
            return tokio::task::spawn_blocking(move || {
                let mut buf = vec![0u8; 1 << 20];
                loop {
                    match file.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            hasher.update(&buf[..n]);
                            bytes += n as u64;
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(crate::Error::io(fs_path, e).into()),
                    }
                }
                Ok(Some(Hashed {
                    sha256: hex::encode(hasher.finalize()),
                    bytes,
                }))
            })
            .await
            .expect("hashing a file does not panic");
        }
        GetResultPayload::Stream(mut stream) => loop {
            match stream.try_next().await {
                Ok(Some(chunk)) => {
                    hasher.update(&chunk);
                    bytes += chunk.len() as u64;
                }
                Ok(None) => break,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(store_error(format!("reading {path}"), e)),
            }
        },
    }
    Ok(Some(Hashed {
        sha256: hex::encode(hasher.finalize()),
        bytes,
    }))
}

/// Which digests and signatures exist, by seq.
#[derive(Debug, Default, Clone)]
struct Listed {
    json: Option<ObjectMeta>,
    sig: Option<ObjectMeta>,
}

async fn list_digests(store: &dyn ObjectStore) -> Result<BTreeMap<u64, Listed>> {
    let mut out: BTreeMap<u64, Listed> = BTreeMap::new();
    for meta in list(store, DIGEST_DIR).await? {
        let Some(name) = meta.location.filename() else {
            continue;
        };
        if let Some(seq) = format::parse_digest_name(name) {
            out.entry(seq).or_default().json = Some(meta);
        } else if let Some(seq) = name
            .strip_suffix(SIGNATURE_SUFFIX)
            .and_then(format::parse_digest_name)
        {
            out.entry(seq).or_default().sig = Some(meta);
        }
    }
    Ok(out)
}

fn digest_path(seq: u64) -> String {
    format!("{DIGEST_DIR}/{}", format::digest_name(seq))
}

fn signature_path(seq: u64) -> String {
    format!("{}{SIGNATURE_SUFFIX}", digest_path(seq))
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

/// Whether a path, relative to its table, is data a reader could see: no
/// component starts with `.` or `_` (`_delta_log/`, staging files).
fn is_data_path(relative: &str) -> bool {
    !relative
        .split('/')
        .any(|part| part.is_empty() || part.starts_with('.') || part.starts_with('_'))
}

/// A data file present in a table's directory.
#[derive(Debug, Clone)]
struct Present {
    last_modified: DateTime<Utc>,
}

/// Every data file of `table`, by path relative to the lake root.
async fn list_data_files(
    store: &dyn ObjectStore,
    table: &str,
) -> Result<BTreeMap<String, Present>> {
    let prefix = format!("{table}/");
    Ok(list(store, table)
        .await?
        .into_iter()
        .filter_map(|meta| {
            let path = meta.location.to_string();
            let relative = path.strip_prefix(&prefix)?;
            is_data_path(relative).then(|| {
                (
                    path.clone(),
                    Present {
                        last_modified: meta.last_modified,
                    },
                )
            })
        })
        .collect())
}

#[cfg(test)]
mod tests;
