//! The lake: hive-partitioned Parquet plus the commit log that makes each
//! write a transaction.
//!
//! Layout (a persisted format; see ARCHITECTURE.md):
//!
//! ```text
//! <lake>/events/dt=YYYY-MM-DD/hour=HH/part-<txn>-<n>.parquet
//! <lake>/quarantine/dt=YYYY-MM-DD/part-<txn>-<n>.parquet
//! <lake>/_tooltrail/log/<seq>.json
//! <lake>/_tooltrail/checkpoints/<seq>.json
//! ```
//!
//! A transaction: (1) every file is written under a hidden staging name
//! (`.part-….parquet.tmp`, which no `*.parquet` glob matches) and fsynced;
//! (2) the log entry is created, which is the commit point; (3) staged files
//! are renamed into place and their directories fsynced. Opening the lake
//! finishes step 3 for any entry a crash interrupted, and removes staged files
//! no entry names once they are old enough not to belong to a live writer.
//! Every [`CHECKPOINT_EVERY`] entries a writer saves the log's state as a
//! checkpoint, so that opening reads only the entries after it.
//!
//! Fail points (the `fail` crate, active in this crate's tests) mark the
//! instants a crash can split a commit: `lake::commit::staged`,
//! `lake::commit::logged` and `lake::publish::renamed`.

pub mod compact;
pub mod digest;
pub mod log;
pub mod replay;

pub use tooltrail_lake::parquet;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ::parquet::file::metadata::KeyValue;
use arrow::array::{Array, RecordBatch, TimestampMicrosecondArray};
use chrono::{DateTime, NaiveDate, Timelike, Utc};
use tooltrail_schemas::SCHEMA_VERSION;

use crate::error::{Error, Result};
use crate::lake::log::{FileRecord, Log, LogEntry, LogState, Operation, PositionRange};

pub use self::log::LOG_FORMAT_VERSION;

/// Log entries between checkpoints. Opening reads at most this many entries
/// after the newest checkpoint; a checkpoint costs a re-read of as many
/// entries and a write of the whole state (a few MB for a large lake).
pub const CHECKPOINT_EVERY: u64 = 1000;

/// Staged files older than this, named by no log entry, are debris of a crashed writer.
const STALE_STAGING: Duration = Duration::from_secs(3600);

/// Where compaction moves the partition directories it replaced.
const RETIRED: &str = "_tooltrail/retired";

/// How long a retired partition is kept for readers that listed it just
/// before compaction swapped it: longer than any query runs.
pub const RETIRED_GRACE: Duration = Duration::from_secs(15 * 60);

/// Opens (creating it if needed) a file that exists only to be `flock`ed.
pub(crate) fn open_lock_file(path: &Path) -> Result<fs::File> {
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

/// A lake partition: `dt=YYYY-MM-DD/hour=HH` for events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HourKey {
    pub date: NaiveDate,
    pub hour: u32,
}

impl HourKey {
    pub fn of(time: DateTime<Utc>) -> Self {
        HourKey {
            date: time.date_naive(),
            hour: time.hour(),
        }
    }

    fn dir(&self) -> String {
        format!(
            "events/dt={}/hour={:02}",
            self.date.format("%Y-%m-%d"),
            self.hour
        )
    }
}

/// One file of a transaction, before it is written.
pub struct PendingFile {
    /// `events` or `quarantine`.
    pub table: &'static str,
    /// Directory relative to the lake root, e.g. `events/dt=2026-11-22/hour=09`.
    pub dir: String,
    pub batch: RecordBatch,
}

impl PendingFile {
    pub fn events(hour: HourKey, batch: RecordBatch) -> Self {
        PendingFile {
            table: "events",
            dir: hour.dir(),
            batch,
        }
    }

    pub fn quarantine(date: NaiveDate, batch: RecordBatch) -> Self {
        PendingFile {
            table: "quarantine",
            dir: format!("quarantine/dt={}", date.format("%Y-%m-%d")),
            batch,
        }
    }
}

/// A transaction to commit.
pub struct Transaction {
    pub operation: Operation,
    pub files: Vec<PendingFile>,
    pub positions: Vec<PositionRange>,
    pub removed: Vec<String>,
    pub keys: Vec<String>,
}

/// An open lake.
pub struct Lake {
    root: PathBuf,
    log: Log,
    /// Entries between checkpoints ([`CHECKPOINT_EVERY`]; tests use fewer).
    checkpoint_every: u64,
    /// `<lake>/_tooltrail/lock`: writers hold it shared while they commit;
    /// compaction holds it exclusively while it swaps a partition.
    lock: fs::File,
    zstd_level: i32,
    writer_id: String,
}

impl Lake {
    /// Opens the lake at `root`, creating it if needed, and finishes any
    /// transaction a crash interrupted.
    pub fn open(root: &Path, zstd_level: i32) -> Result<Lake> {
        for sub in ["events", "quarantine"] {
            let dir = root.join(sub);
            fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        let (log, mut entries) = Log::open(
            &root.join("_tooltrail").join("log"),
            &root.join("_tooltrail").join("checkpoints"),
        )?;
        let lock_path = root.join("_tooltrail").join("lock");
        let lock = open_lock_file(&lock_path)?;
        let mut lake = Lake {
            root: root.to_owned(),
            log,
            checkpoint_every: CHECKPOINT_EVERY,
            lock,
            zstd_level,
            writer_id: format!("{}:{}", hostname(), std::process::id()),
        };
        {
            let lock = lake
                .lock
                .try_clone()
                .map_err(|e| Error::io(&lock_path, e))?;
            let _guard = LockGuard::exclusive(&lock)?;
            // A compaction may have removed files of the entries read before
            // the lock was taken: read it too, so that its removals are known.
            entries.extend(lake.log.refresh()?);
            lake.finish_entries(&entries)?;
        }
        lake.remove_stale_staging(&entries)?;
        lake.sweep_retired(RETIRED_GRACE)?;
        Ok(lake)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes a checkpoint every `entries` log entries instead of
    /// [`CHECKPOINT_EVERY`] (tests).
    pub fn with_checkpoint_every(mut self, entries: u64) -> Lake {
        self.checkpoint_every = entries.max(1);
        self
    }

    /// What the log says the lake holds, including other writers' entries
    /// read so far.
    pub fn state(&self) -> &LogState {
        self.log.state()
    }

    /// Reads entries other writers have appended, finishing any of theirs a
    /// crash interrupted.
    pub fn refresh(&mut self) -> Result<&LogState> {
        {
            // A compactor finishes its swap while it holds the lock exclusively.
            let _guard = LockGuard::shared(&self.lock)?;
            let entries = self.log.refresh()?;
            self.finish_entries(&entries)?;
        }
        Ok(self.log.state())
    }

    /// Commits a transaction: stage, log, publish. For Kafka positions, the
    /// append is refused with [`Error::Conflict`] when another writer has
    /// already committed any of the offsets (a zombie after a rebalance).
    pub fn commit(&mut self, txn: Transaction) -> Result<LogEntry> {
        let lock = self
            .lock
            .try_clone()
            .map_err(|e| Error::io(self.root.join("_tooltrail/lock"), e))?;
        let _guard = LockGuard::shared(&lock)?;
        let txn_id = uuid::Uuid::now_v7().simple().to_string();
        let mut added = Vec::with_capacity(txn.files.len());
        let mut staged = Vec::with_capacity(txn.files.len());
        let result = (|| {
            for (n, file) in txn.files.into_iter().enumerate() {
                if file.batch.num_rows() == 0 {
                    continue;
                }
                let name = format!("part-{txn_id}-{n:04}.parquet");
                let dir = self.root.join(&file.dir);
                fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                let tmp = dir.join(staging_name(&name));
                staged.push(tmp.clone());
                let batch = parquet::sort_for_lake(&file.batch)?;
                let (min_time, max_time) = time_range(&batch);
                let metadata = vec![
                    KeyValue::new(
                        "tooltrail.schema_version".into(),
                        SCHEMA_VERSION.to_string(),
                    ),
                    KeyValue::new("tooltrail.txn_id".into(), txn_id.clone()),
                    KeyValue::new(
                        "tooltrail.positions".into(),
                        serde_json::to_string(&txn.positions).expect("positions serialize"),
                    ),
                ];
                let props = parquet::writer_properties(&batch, self.zstd_level, metadata);
                let written = parquet::write_file(&tmp, &batch, props)?;
                fail::fail_point!("lake::commit::staged");
                added.push(FileRecord {
                    path: format!("{}/{}", file.dir, name),
                    table: file.table.to_owned(),
                    rows: batch.num_rows() as u64,
                    bytes: written.bytes,
                    sha256: written.sha256,
                    min_time,
                    max_time,
                });
            }
            let entry = LogEntry {
                version: LOG_FORMAT_VERSION,
                seq: 0,
                txn_id: txn_id.clone(),
                committed_at: Utc::now(),
                operation: txn.operation,
                writer: self.writer_id.clone(),
                positions: txn.positions,
                added,
                removed: txn.removed,
                keys: txn.keys,
                swap: None,
            };
            let positions = entry.positions.clone();
            let keys = entry.keys.clone();
            self.log
                .append(entry, |state| check_append(state, &positions, &keys))
        })();
        match result {
            Ok(entry) => {
                fail::fail_point!("lake::commit::logged");
                self.finish_entries(std::slice::from_ref(&entry))?;
                self.checkpoint_if_due();
                Ok(entry)
            }
            Err(e) => {
                for tmp in staged {
                    let _ = fs::remove_file(tmp);
                }
                Err(e)
            }
        }
    }

    /// Saves a checkpoint when [`Self::checkpoint_every`] entries have been
    /// appended since the last one. The caller holds the lock (shared is
    /// enough: compaction and retention append only under the exclusive
    /// lock, so no entry read here can lose a file to one while this runs).
    /// A failure is only logged: the commit it follows has succeeded, and
    /// the next commit tries again.
    fn checkpoint_if_due(&mut self) {
        if self.log.state().last_seq - self.log.checkpoint_seq() < self.checkpoint_every {
            return;
        }
        let result = (|| {
            // Entries of other writers were read but not finished here, and a
            // writer may have crashed before publishing its files: finish
            // every entry since the last checkpoint, as opening would.
            self.log.refresh()?;
            let entries = self.log.entries_since_checkpoint()?;
            self.finish_entries(&entries)?;
            self.log.write_checkpoint()
        })();
        if let Err(error) = result {
            tracing::warn!(error = %tooltrail_schemas::Report(&error), "could not write a lake log checkpoint; the next commit retries");
        }
    }

    /// Publishes the files of committed entries and applies their removals.
    /// Idempotent: safe to run again after a crash at any point.
    fn finish_entries(&self, entries: &[LogEntry]) -> Result<()> {
        // A file that a later entry removes (compaction, retention) may be gone.
        let removed: HashSet<&str> = entries
            .iter()
            .flat_map(|e| e.removed.iter().map(String::as_str))
            .collect();
        for entry in entries {
            self.finish_entry(entry, &removed)?;
        }
        Ok(())
    }

    fn finish_entry(&self, entry: &LogEntry, removed_later: &HashSet<&str>) -> Result<()> {
        if let Some(swap) = &entry.swap {
            return self.finish_swap(entry, swap, removed_later);
        }
        let mut dirs = BTreeMap::new();
        for file in &entry.added {
            let path = self.root.join(&file.path);
            if path.exists() {
                continue;
            }
            let tmp = staged_path(&path);
            match fs::rename(&tmp, &path) {
                Ok(()) => fail::fail_point!("lake::publish::renamed"),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Removed by a later entry, or published just now by its
                    // own writer (while this one finished it for a checkpoint).
                    if removed_later.contains(file.path.as_str()) || path.exists() {
                        continue;
                    }
                    return Err(Error::MissingFile {
                        seq: entry.seq,
                        path: file.path.clone(),
                    });
                }
                Err(e) => return Err(Error::io(&tmp, e)),
            }
            if let Some(parent) = path.parent() {
                dirs.insert(parent.to_owned(), ());
            }
        }
        for removed in &entry.removed {
            let path = self.root.join(removed);
            match fs::remove_file(&path) {
                Ok(()) => {
                    if let Some(parent) = path.parent() {
                        dirs.insert(parent.to_owned(), ());
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        for dir in dirs.keys() {
            log::sync_dir(dir)?;
        }
        Ok(())
    }

    /// Finishes a directory swap (compaction, a retention rewrite):
    /// exchanges the staged directory with the partition (unless that
    /// already happened) and retires the old files.
    fn finish_swap(
        &self,
        entry: &LogEntry,
        swap: &log::DirSwap,
        removed_later: &HashSet<&str>,
    ) -> Result<()> {
        let dir = self.root.join(&swap.dir);
        let staged = self.root.join(&swap.staged);
        // Exchanged already when the new files are in place (or a later
        // entry removed them); a swap that only drops files is exchanged
        // when none of them is left in the partition.
        let done = if entry.added.is_empty() {
            entry.removed.iter().all(|p| !self.root.join(p).exists())
        } else {
            entry.added.iter().all(|f| {
                self.root.join(&f.path).exists() || removed_later.contains(f.path.as_str())
            })
        };
        let mut changed = false;
        if !done {
            if !staged.exists() {
                let path = entry
                    .added
                    .first()
                    .map(|f| f.path.clone())
                    .or_else(|| entry.removed.first().cloned())
                    .unwrap_or_default();
                return Err(Error::MissingFile {
                    seq: entry.seq,
                    path,
                });
            }
            exchange(&staged, &dir)?;
            changed = true;
        }
        if staged.exists() {
            // The old files now sit in the staged directory. A reader may have
            // opened the partition just before the exchange and still be
            // listing it, so they are retired, not deleted: moved out of the
            // tables and swept once they are older than `RETIRED_GRACE`.
            self.retire(&staged, &entry.txn_id)?;
            changed = true;
        }
        // (A partition retention deleted later may have no directory left.)
        if changed && let Some(parent) = dir.parent() {
            log::sync_dir(parent)?;
        }
        Ok(())
    }

    /// Moves the directory `dir` out of the tables to `_tooltrail/retired/<name>`,
    /// where it is swept once older than [`RETIRED_GRACE`]: readers that
    /// listed it just before can still read it whole.
    pub(crate) fn retire(&self, dir: &Path, name: &str) -> Result<()> {
        let retired_dir = self.root.join(RETIRED);
        fs::create_dir_all(&retired_dir).map_err(|e| Error::io(&retired_dir, e))?;
        let retired = retired_dir.join(name);
        fs::rename(dir, &retired).map_err(|e| Error::io(dir, e))?;
        fs::File::open(&retired)
            .and_then(|f| f.set_modified(SystemTime::now()))
            .map_err(|e| Error::io(&retired, e))?;
        log::sync_dir(&retired_dir)
    }

    /// Deletes the partitions compaction retired more than `grace` ago.
    /// Returns how many it deleted.
    pub fn sweep_retired(&self, grace: Duration) -> Result<usize> {
        let dir = self.root.join(RETIRED);
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(Error::io(&dir, e)),
        };
        let now = SystemTime::now();
        let mut swept = 0;
        for entry in entries {
            let path = entry.map_err(|e| Error::io(&dir, e))?.path();
            let age = fs::metadata(&path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .unwrap_or_default();
            if age >= grace {
                fs::remove_dir_all(&path).map_err(|e| Error::io(&path, e))?;
                swept += 1;
            }
        }
        Ok(swept)
    }

    /// Appends a maintenance entry (compaction) under the exclusive lock and,
    /// unless told to stop (crash tests), finishes it before releasing.
    pub(crate) fn commit_exclusive(
        &mut self,
        entry: LogEntry,
        check: impl Fn(&LogState) -> Result<()>,
        finish: bool,
    ) -> Result<LogEntry> {
        self.commit_exclusive_then(entry, check, |_, _| Ok(()), finish)
    }

    /// [`commit_exclusive`](Self::commit_exclusive), running `after_append`
    /// once the entry is committed and before it is finished, still under the
    /// exclusive lock (retention retires whole partition directories there).
    /// The entry is finished even when `after_append` fails.
    pub(crate) fn commit_exclusive_then(
        &mut self,
        entry: LogEntry,
        check: impl Fn(&LogState) -> Result<()>,
        after_append: impl FnOnce(&Lake, &LogEntry) -> Result<()>,
        finish: bool,
    ) -> Result<LogEntry> {
        let lock = self
            .lock
            .try_clone()
            .map_err(|e| Error::io(self.root.join("_tooltrail/lock"), e))?;
        let _guard = LockGuard::exclusive(&lock)?;
        let entry = self.log.append(entry, check)?;
        let after = after_append(self, &entry);
        if finish {
            self.finish_entries(std::slice::from_ref(&entry))?;
            self.checkpoint_if_due();
        }
        after?;
        Ok(entry)
    }

    pub(crate) fn writer_id(&self) -> &str {
        &self.writer_id
    }

    pub(crate) fn zstd_level(&self) -> i32 {
        self.zstd_level
    }

    fn remove_stale_staging(&self, entries: &[LogEntry]) -> Result<()> {
        let named: HashSet<PathBuf> = entries
            .iter()
            .flat_map(|e| &e.added)
            .map(|f| staged_path(&self.root.join(&f.path)))
            .collect();
        let now = SystemTime::now();
        // Alerts: retention stages rewritten alert files the same way.
        for table in ["events", "quarantine", "alerts"] {
            for path in walk(&self.root.join(table))? {
                let is_staged = path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with('.') && n.ends_with(".tmp"));
                if !is_staged || named.contains(&path) {
                    continue;
                }
                let age = fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .unwrap_or_default();
                if age >= STALE_STAGING {
                    tracing::info!(path = %path.display(), "removing stale staged file");
                    let _ = fs::remove_file(&path);
                }
            }
        }
        Ok(())
    }
}

/// Holds the lake lock; releases it when dropped.
pub(crate) struct LockGuard<'a>(&'a fs::File);

impl<'a> LockGuard<'a> {
    fn shared(file: &'a fs::File) -> Result<Self> {
        file.lock_shared()
            .map_err(|e| Error::io("_tooltrail/lock", e))?;
        Ok(LockGuard(file))
    }

    fn exclusive(file: &'a fs::File) -> Result<Self> {
        file.lock().map_err(|e| Error::io("_tooltrail/lock", e))?;
        Ok(LockGuard(file))
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Atomically exchanges two directories (Linux `renameat2(RENAME_EXCHANGE)`):
/// a reader listing either path sees the old contents or the new, never a mix.
pub(crate) fn exchange(a: &Path, b: &Path) -> Result<()> {
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        a,
        rustix::fs::CWD,
        b,
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .map_err(|e| Error::io(a, e.into()))
}

fn check_append(state: &LogState, positions: &[PositionRange], keys: &[String]) -> Result<()> {
    for p in positions {
        if let Some(next) = state.next_offset(&p.topic, p.partition)
            && next > p.start
        {
            return Err(Error::Conflict {
                topic: p.topic.clone(),
                partition: p.partition,
                committed: next,
                start: p.start,
            });
        }
    }
    for key in keys {
        if state.keys.contains(key) {
            return Err(Error::KeyConflict { key: key.clone() });
        }
    }
    Ok(())
}

fn staging_name(name: &str) -> String {
    format!(".{name}.tmp")
}

fn staged_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    path.with_file_name(staging_name(name))
}

pub(crate) fn time_range(batch: &RecordBatch) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let column = batch
        .column_by_name("time")
        .or_else(|| batch.column_by_name("received_at"))
        .and_then(|c| c.as_any().downcast_ref::<TimestampMicrosecondArray>());
    let Some(times) = column else {
        return (None, None);
    };
    let min = arrow::compute::min(times).and_then(DateTime::from_timestamp_micros);
    let max = arrow::compute::max(times).and_then(DateTime::from_timestamp_micros);
    debug_assert_eq!(times.null_count(), 0);
    (min, max)
}

/// Every file below `dir`, recursively.
pub(crate) fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(&dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let path = entry.path();
            if entry.file_type().map_err(|e| Error::io(&path, e))?.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into())
}

#[cfg(test)]
mod tests;
