//! The lake's commit log: `<lake>/_tooltrail/log/<seq>.json`, one entry per
//! transaction, each created exactly once (hard link, which fails if the name
//! exists), so concurrent writers are serialized by the file system.
//!
//! An entry is the commit point of a transaction: it lists the files added and
//! removed and, for Kafka, the offset range of every partition it covers. The
//! positions the lake holds are derived from the log, never from Kafka.
//!
//! Replaying a long log is slow (a busy HTTP ingest commits many times a
//! second), so the state it yields is also saved now and then as a checkpoint,
//! `<lake>/_tooltrail/checkpoints/<seq>.json`: the state after entry `seq`,
//! written only once every entry up to it is finished. Opening reads the
//! newest readable checkpoint and the entries after it. Entries are never
//! deleted: they are the audit trail the digest chain covers.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Keys that expire: HTTP `Idempotency-Key`s (`http:<key>`). A gateway retries
/// a request within minutes or hours, never months, and a busy one sends a key
/// with every request: kept forever, they would grow the state (and every
/// checkpoint) without bound. Import keys (`file:`) are few and stay.
pub const EXPIRING_KEY_PREFIX: &str = "http:";

/// How long an expiring key is honoured after the commit that consumed it,
/// measured in the log's own commit times (so every writer of a lake, and
/// every replay, agrees on which keys are live). A retry within it is
/// answered as a duplicate; after it, the same key is new again.
pub const EXPIRING_KEY_TTL: TimeDelta = TimeDelta::hours(24);

/// Version of the log entry format. Entries are a persisted format: fields are
/// only added, with defaults.
pub const LOG_FORMAT_VERSION: u32 = 1;

/// What a transaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    Ingest,
    Compact,
    Retention,
}

/// A contiguous run of Kafka offsets, `start..=end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PositionRange {
    pub topic: String,
    pub partition: i32,
    pub start: i64,
    pub end: i64,
}

/// A file a transaction added, with what an auditor needs to verify it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    /// Relative to the lake root, `/`-separated.
    pub path: String,
    /// `events` or `quarantine`.
    pub table: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    pub min_time: Option<DateTime<Utc>>,
    pub max_time: Option<DateTime<Utc>>,
}

/// One committed transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub version: u32,
    pub seq: u64,
    pub txn_id: String,
    pub committed_at: DateTime<Utc>,
    pub operation: Operation,
    /// Which process wrote it (`host:pid`), for operators.
    pub writer: String,
    #[serde(default)]
    pub positions: Vec<PositionRange>,
    #[serde(default)]
    pub added: Vec<FileRecord>,
    #[serde(default)]
    pub removed: Vec<String>,
    /// Idempotency keys this transaction consumed (HTTP `Idempotency-Key`
    /// headers, `file:b3:<blake3>:<first>-<last>` for imports).
    #[serde(default)]
    pub keys: Vec<String>,
    /// For a compaction: the partition directory that was atomically
    /// exchanged with a staged one holding the compacted files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swap: Option<DirSwap>,
}

/// An atomic directory exchange: `staged` (hidden, built beside `dir`) takes
/// the place of `dir`; the old contents end up under `staged` and are deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirSwap {
    /// The partition directory, relative to the lake root.
    pub dir: String,
    /// The staged replacement, relative to the lake root.
    pub staged: String,
}

/// What the log says the lake holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogState {
    /// The sequence number of the last entry read.
    pub last_seq: u64,
    /// Next offset to read, per (topic, partition).
    pub positions: BTreeMap<(String, i32), i64>,
    /// Idempotency keys the lake holds: every import key, and the HTTP keys
    /// committed within [`EXPIRING_KEY_TTL`] of the latest entry.
    pub keys: BTreeSet<String>,
    /// Every file the lake holds now, by path.
    pub live: BTreeMap<String, FileRecord>,
    /// The expiring keys in `keys`, in commit order, with their commit time.
    /// `None`: read from a checkpoint written before keys expired; such a key
    /// takes the time of the next entry applied.
    expiring: VecDeque<(Option<DateTime<Utc>>, String)>,
}

impl LogState {
    fn apply(&mut self, entry: &LogEntry) {
        self.last_seq = entry.seq;
        for p in &entry.positions {
            let next = self
                .positions
                .entry((p.topic.clone(), p.partition))
                .or_insert(0);
            *next = (*next).max(p.end + 1);
        }
        for key in &entry.keys {
            if self.keys.insert(key.clone()) && key.starts_with(EXPIRING_KEY_PREFIX) {
                self.expiring
                    .push_back((Some(entry.committed_at), key.clone()));
            }
        }
        self.expire(entry.committed_at);
        for removed in &entry.removed {
            self.live.remove(removed);
        }
        for added in &entry.added {
            self.live.insert(added.path.clone(), added.clone());
        }
    }

    /// Drops the expiring keys committed more than [`EXPIRING_KEY_TTL`]
    /// before `now`, the commit time of the entry just applied.
    fn expire(&mut self, now: DateTime<Utc>) {
        for (at, _) in self.expiring.iter_mut().take_while(|(at, _)| at.is_none()) {
            *at = Some(now);
        }
        let cutoff = now - EXPIRING_KEY_TTL;
        while self
            .expiring
            .front()
            .is_some_and(|(at, _)| at.is_some_and(|at| at < cutoff))
        {
            if let Some((_, key)) = self.expiring.pop_front() {
                self.keys.remove(&key);
            }
        }
    }

    /// The next offset the lake expects for a partition, if it has seen it.
    pub fn next_offset(&self, topic: &str, partition: i32) -> Option<i64> {
        self.positions.get(&(topic.to_owned(), partition)).copied()
    }
}

/// Version of the checkpoint format. A checkpoint of another version is
/// skipped (the log is replayed from an older one, or from the start).
pub const CHECKPOINT_FORMAT_VERSION: u32 = 1;

/// [`LogState`] as of entry `seq`, as saved in `<seq>.json` under the
/// checkpoints directory (a persisted format: fields are only added).
#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    version: u32,
    seq: u64,
    /// The next offset per partition, as `end` of a range starting at 0
    /// would read: `next` is the first offset not held.
    positions: Vec<CheckpointPosition>,
    keys: Vec<String>,
    live: Vec<FileRecord>,
    /// The expiring keys in `keys` by the time of the commit that consumed
    /// them, oldest first (a group commit consumes many at once). Absent
    /// from checkpoints written before keys expired.
    #[serde(default)]
    key_times: Vec<KeysAt>,
}

#[derive(Debug, Serialize, Deserialize)]
struct KeysAt {
    committed_at: DateTime<Utc>,
    keys: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CheckpointPosition {
    topic: String,
    partition: i32,
    next: i64,
}

impl Checkpoint {
    fn of(state: &LogState) -> Checkpoint {
        Checkpoint {
            version: CHECKPOINT_FORMAT_VERSION,
            seq: state.last_seq,
            positions: state
                .positions
                .iter()
                .map(|((topic, partition), next)| CheckpointPosition {
                    topic: topic.clone(),
                    partition: *partition,
                    next: *next,
                })
                .collect(),
            keys: state.keys.iter().cloned().collect(),
            live: state.live.values().cloned().collect(),
            key_times: state
                .expiring
                .iter()
                .filter_map(|(at, key)| Some(((*at)?, key)))
                .fold(Vec::<KeysAt>::new(), |mut groups, (at, key)| {
                    match groups.last_mut() {
                        Some(last) if last.committed_at == at => last.keys.push(key.clone()),
                        _ => groups.push(KeysAt {
                            committed_at: at,
                            keys: vec![key.clone()],
                        }),
                    }
                    groups
                }),
        }
    }

    fn into_state(self) -> LogState {
        LogState {
            last_seq: self.seq,
            positions: self
                .positions
                .into_iter()
                .map(|p| ((p.topic, p.partition), p.next))
                .collect(),
            live: self.live.into_iter().map(|f| (f.path.clone(), f)).collect(),
            expiring: expiring_keys(&self.keys, &self.key_times),
            keys: self.keys.into_iter().collect(),
        }
    }
}

/// The expiring keys among a checkpoint's `keys`, oldest commit first. Those
/// `key_times` does not list (a checkpoint from before keys expired) come
/// first, without a time: they take the next entry's.
fn expiring_keys(
    keys: &[String],
    key_times: &[KeysAt],
) -> VecDeque<(Option<DateTime<Utc>>, String)> {
    let timed: HashSet<&str> = key_times
        .iter()
        .flat_map(|group| group.keys.iter().map(String::as_str))
        .collect();
    let untimed = keys
        .iter()
        .filter(|k| k.starts_with(EXPIRING_KEY_PREFIX) && !timed.contains(k.as_str()))
        .map(|k| (None, k.clone()));
    let held: HashSet<&str> = keys.iter().map(String::as_str).collect();
    let timed = key_times.iter().flat_map(|group| {
        group
            .keys
            .iter()
            .filter(|k| held.contains(k.as_str()))
            .map(|k| (Some(group.committed_at), k.clone()))
    });
    untimed.chain(timed).collect()
}

/// The log directory, and the state read from it so far.
#[derive(Debug)]
pub struct Log {
    dir: PathBuf,
    checkpoints: PathBuf,
    state: LogState,
    /// The seq of the newest checkpoint known (0: none).
    checkpoint_seq: u64,
}

fn entry_name(seq: u64) -> String {
    format!("{seq:020}.json")
}

/// Checkpoints kept: the newest, and one before it in case the newest is
/// damaged.
const CHECKPOINTS_KEPT: usize = 2;

impl Log {
    /// Opens (creating if needed) the log: the newest readable checkpoint in
    /// `checkpoints`, then every entry after it. Returns those entries too,
    /// so that the caller can finish any half-done transaction.
    pub fn open(dir: &Path, checkpoints: &Path) -> Result<(Log, Vec<LogEntry>)> {
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut log = Log {
            dir: dir.to_owned(),
            checkpoints: checkpoints.to_owned(),
            state: LogState::default(),
            checkpoint_seq: 0,
        };
        if let Some(checkpoint) = log.newest_checkpoint()? {
            log.checkpoint_seq = checkpoint.seq;
            log.state = checkpoint.into_state();
        }
        let entries = log.read_new()?;
        Ok((log, entries))
    }

    /// The checkpoints on disk by seq, newest first.
    fn list_checkpoints(&self) -> Result<Vec<(u64, PathBuf)>> {
        let listing = match fs::read_dir(&self.checkpoints) {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&self.checkpoints, e)),
        };
        let mut found = Vec::new();
        for item in listing {
            let path = item.map_err(|e| Error::io(&self.checkpoints, e))?.path();
            let seq = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(seq) = seq {
                found.push((seq, path));
            }
        }
        found.sort_unstable_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        Ok(found)
    }

    /// The newest checkpoint that reads. A damaged one is skipped with a
    /// warning: the entries it summarises are all still in the log.
    fn newest_checkpoint(&self) -> Result<Option<Checkpoint>> {
        for (seq, path) in self.list_checkpoints()? {
            let read = fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| serde_json::from_slice::<Checkpoint>(&b).map_err(|e| e.to_string()))
                .and_then(|c| match c {
                    c if c.version != CHECKPOINT_FORMAT_VERSION => {
                        Err(format!("format version {} is not known", c.version))
                    }
                    c if c.seq != seq => {
                        Err(format!("holds seq {} where {seq} was expected", c.seq))
                    }
                    c => Ok(c),
                });
            match read {
                Ok(checkpoint) => return Ok(Some(checkpoint)),
                Err(message) => tracing::warn!(
                    path = %path.display(),
                    %message,
                    "skipping unreadable lake log checkpoint; replaying the log from an older one"
                ),
            }
        }
        Ok(None)
    }

    /// The seq of the newest checkpoint this log knows of (0: none).
    pub fn checkpoint_seq(&self) -> u64 {
        self.checkpoint_seq
    }

    /// Reads the entries after the newest checkpoint up to the last one
    /// read, again, from disk.
    pub fn entries_since_checkpoint(&self) -> Result<Vec<LogEntry>> {
        (self.checkpoint_seq + 1..=self.state.last_seq)
            .map(|seq| {
                self.read_entry(seq)?.ok_or_else(|| Error::CorruptLog {
                    path: self.dir.join(entry_name(seq)),
                    message: "is missing, though it was read before".into(),
                })
            })
            .collect()
    }

    /// Saves the state as of the last entry read as a checkpoint, and removes
    /// the older ones beyond `CHECKPOINTS_KEPT`. The caller must have
    /// finished every entry up to it: opening from the checkpoint never
    /// looks at them again.
    pub fn write_checkpoint(&mut self) -> Result<()> {
        let seq = self.state.last_seq;
        fs::create_dir_all(&self.checkpoints).map_err(|e| Error::io(&self.checkpoints, e))?;
        let body = serde_json::to_vec(&Checkpoint::of(&self.state)).expect("checkpoints serialize");
        let path = self.checkpoints.join(entry_name(seq));
        let tmp = self.checkpoints.join(format!(
            ".{}.{}.tmp",
            entry_name(seq),
            uuid::Uuid::new_v4().simple()
        ));
        write_synced(&tmp, &body)?;
        // Two writers may checkpoint the same seq: the state is the same.
        fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        sync_dir(&self.checkpoints)?;
        self.checkpoint_seq = seq;
        for (_, old) in self.list_checkpoints()?.into_iter().skip(CHECKPOINTS_KEPT) {
            let _ = fs::remove_file(old);
        }
        Ok(())
    }

    pub fn state(&self) -> &LogState {
        &self.state
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reads entries other writers appended since the last read.
    pub fn refresh(&mut self) -> Result<Vec<LogEntry>> {
        self.read_new()
    }

    fn read_new(&mut self) -> Result<Vec<LogEntry>> {
        let mut out = Vec::new();
        while let Some(entry) = self.read_entry(self.state.last_seq + 1)? {
            self.state.apply(&entry);
            out.push(entry);
        }
        Ok(out)
    }

    /// Entry `seq`, or `None` when it does not exist (yet).
    fn read_entry(&self, seq: u64) -> Result<Option<LogEntry>> {
        let path = self.dir.join(entry_name(seq));
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let entry: LogEntry = serde_json::from_slice(&bytes).map_err(|e| Error::CorruptLog {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if entry.seq != seq {
            return Err(Error::CorruptLog {
                path,
                message: format!("holds seq {} where {seq} was expected", entry.seq),
            });
        }
        Ok(Some(entry))
    }

    /// Appends an entry as the next sequence number. `check` sees the state
    /// with every other writer's entries applied and may refuse the append
    /// (optimistic concurrency); it runs again after losing a race.
    pub fn append(
        &mut self,
        mut entry: LogEntry,
        check: impl Fn(&LogState) -> Result<()>,
    ) -> Result<LogEntry> {
        loop {
            self.read_new()?;
            check(&self.state)?;
            entry.seq = self.state.last_seq + 1;
            let final_path = self.dir.join(entry_name(entry.seq));
            let tmp_path =
                self.dir
                    .join(format!(".{}.{}.tmp", entry_name(entry.seq), entry.txn_id));
            let body = serde_json::to_vec_pretty(&entry).expect("log entries serialize");
            write_synced(&tmp_path, &body)?;
            // A hard link fails if the name exists: exactly one writer wins a seq.
            let linked = fs::hard_link(&tmp_path, &final_path);
            let _ = fs::remove_file(&tmp_path);
            match linked {
                Ok(()) => {
                    sync_dir(&self.dir)?;
                    self.state.apply(&entry);
                    return Ok(entry);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io(&final_path, e)),
            }
        }
    }
}

/// Writes a whole file and fsyncs it.
pub(crate) fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = fs::File::create(path).map_err(|e| Error::io(path, e))?;
    file.write_all(bytes).map_err(|e| Error::io(path, e))?;
    file.sync_all().map_err(|e| Error::io(path, e))
}

/// Fsyncs a directory, making renames and links in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(positions: Vec<PositionRange>) -> LogEntry {
        LogEntry {
            version: LOG_FORMAT_VERSION,
            seq: 0,
            txn_id: uuid::Uuid::new_v4().to_string(),
            committed_at: Utc::now(),
            operation: Operation::Ingest,
            writer: "test".into(),
            positions,
            added: vec![],
            removed: vec![],
            keys: vec!["k1".into()],
            swap: None,
        }
    }

    fn range(partition: i32, start: i64, end: i64) -> PositionRange {
        PositionRange {
            topic: "t".into(),
            partition,
            start,
            end,
        }
    }

    #[test]
    fn positions_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = Log::open(dir.path(), &dir.path().join("checkpoints")).unwrap();
        log.append(entry(vec![range(0, 0, 99)]), |_| Ok(()))
            .unwrap();
        log.append(entry(vec![range(0, 100, 149), range(1, 0, 9)]), |_| Ok(()))
            .unwrap();
        let (reopened, entries) = Log::open(dir.path(), &dir.path().join("checkpoints")).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(reopened.state().next_offset("t", 0), Some(150));
        assert_eq!(reopened.state().next_offset("t", 1), Some(10));
        assert_eq!(reopened.state().next_offset("t", 2), None);
        assert!(reopened.state().keys.contains("k1"));
    }

    #[test]
    fn a_writer_that_lost_the_race_sees_the_winners_entry_before_retrying() {
        let dir = tempfile::tempdir().unwrap();
        let (mut a, _) = Log::open(dir.path(), &dir.path().join("checkpoints")).unwrap();
        let (mut b, _) = Log::open(dir.path(), &dir.path().join("checkpoints")).unwrap();
        a.append(entry(vec![range(0, 0, 99)]), |_| Ok(())).unwrap();
        // b has not read a's entry; its check must see it and refuse.
        let err = b
            .append(entry(vec![range(0, 0, 99)]), |state| {
                match state.next_offset("t", 0) {
                    Some(next) if next > 0 => Err(Error::Conflict {
                        topic: "t".into(),
                        partition: 0,
                        committed: next,
                        start: 0,
                    }),
                    _ => Ok(()),
                }
            })
            .unwrap_err();
        assert!(
            matches!(err, Error::Conflict { committed: 100, .. }),
            "{err}"
        );
        let seq = b
            .append(entry(vec![range(0, 100, 120)]), |_| Ok(()))
            .unwrap()
            .seq;
        assert_eq!(seq, 2);
    }

    /// An entry committed at `at` (hours after a fixed start) consuming `keys`.
    fn keyed(at_hours: f64, keys: &[&str]) -> LogEntry {
        let start = DateTime::parse_from_rfc3339("2026-11-22T00:00:00Z")
            .unwrap()
            .to_utc();
        LogEntry {
            committed_at: start + TimeDelta::seconds((at_hours * 3600.0) as i64),
            keys: keys.iter().map(|k| k.to_string()).collect(),
            ..entry(vec![])
        }
    }

    fn live_keys(state: &LogState) -> Vec<&str> {
        state.keys.iter().map(String::as_str).collect()
    }

    #[test]
    fn an_http_key_is_honoured_for_a_day_then_expires_and_import_keys_stay() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = dir.path().join("checkpoints");
        let (mut log, _) = Log::open(dir.path(), &checkpoints).unwrap();
        log.append(keyed(0.0, &["http:a", "file:b3:f:1-9"]), |_| Ok(()))
            .unwrap();
        log.append(keyed(23.0, &["http:b"]), |_| Ok(())).unwrap();
        log.append(keyed(24.0, &[]), |_| Ok(())).unwrap();
        assert_eq!(
            live_keys(log.state()),
            ["file:b3:f:1-9", "http:a", "http:b"]
        );
        // A day and a second after its commit, by the log's own clock.
        log.append(keyed(24.0 + 1.0 / 3600.0, &[]), |_| Ok(()))
            .unwrap();
        assert_eq!(live_keys(log.state()), ["file:b3:f:1-9", "http:b"]);
        // The same key is new again.
        log.append(keyed(25.0, &["http:a"]), |_| Ok(())).unwrap();
        assert_eq!(
            live_keys(log.state()),
            ["file:b3:f:1-9", "http:a", "http:b"]
        );
        log.append(keyed(47.5, &[]), |_| Ok(())).unwrap();
        assert_eq!(live_keys(log.state()), ["file:b3:f:1-9", "http:a"]);

        // A replay of the log agrees, whenever it runs.
        let (replayed, _) = Log::open(dir.path(), &checkpoints).unwrap();
        assert_eq!(replayed.state(), log.state());
    }

    #[test]
    fn a_checkpoint_keeps_when_each_http_key_was_committed() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = dir.path().join("checkpoints");
        let (mut log, _) = Log::open(dir.path(), &checkpoints).unwrap();
        log.append(keyed(0.0, &["http:a"]), |_| Ok(())).unwrap();
        log.append(keyed(12.0, &["http:b", "http:c"]), |_| Ok(()))
            .unwrap();
        log.write_checkpoint().unwrap();
        // One group per commit time, oldest first.
        let json: serde_json::Value =
            serde_json::from_slice(&fs::read(checkpoints.join(entry_name(2))).unwrap()).unwrap();
        let groups: Vec<(&str, Vec<&str>)> = json["key_times"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                let keys = g["keys"].as_array().unwrap();
                (
                    g["committed_at"].as_str().unwrap(),
                    keys.iter().map(|k| k.as_str().unwrap()).collect(),
                )
            })
            .collect();
        assert_eq!(
            groups,
            [
                ("2026-11-22T00:00:00Z", vec!["http:a"]),
                ("2026-11-22T12:00:00Z", vec!["http:b", "http:c"])
            ]
        );

        let (mut reopened, after) = Log::open(dir.path(), &checkpoints).unwrap();
        assert!(after.is_empty(), "the checkpoint covers every entry");
        assert_eq!(reopened.state(), log.state());
        reopened.append(keyed(30.0, &[]), |_| Ok(())).unwrap();
        assert_eq!(live_keys(reopened.state()), ["http:b", "http:c"]);
    }

    #[test]
    fn http_keys_of_an_older_checkpoint_expire_a_day_after_the_next_entry() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = dir.path().join("checkpoints");
        let (mut log, _) = Log::open(dir.path(), &checkpoints).unwrap();
        log.append(keyed(0.0, &["http:old", "file:b3:f:1-9"]), |_| Ok(()))
            .unwrap();
        log.write_checkpoint().unwrap();
        // As an earlier build wrote it: keys, and no commit times.
        let path = checkpoints.join(entry_name(1));
        let mut json: serde_json::Value =
            serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        json.as_object_mut().unwrap().remove("key_times").unwrap();
        fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();

        let (mut reopened, _) = Log::open(dir.path(), &checkpoints).unwrap();
        assert_eq!(live_keys(reopened.state()), ["file:b3:f:1-9", "http:old"]);
        // Its commit time is unknown: it counts from the next entry's.
        reopened.append(keyed(100.0, &[]), |_| Ok(())).unwrap();
        reopened.append(keyed(123.0, &[]), |_| Ok(())).unwrap();
        assert_eq!(live_keys(reopened.state()), ["file:b3:f:1-9", "http:old"]);
        reopened.append(keyed(124.5, &[]), |_| Ok(())).unwrap();
        assert_eq!(live_keys(reopened.state()), ["file:b3:f:1-9"]);
    }

    #[test]
    fn a_corrupt_entry_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(entry_name(1)), b"{not json").unwrap();
        let err = Log::open(dir.path(), &dir.path().join("checkpoints")).unwrap_err();
        assert!(
            err.to_string().contains("00000000000000000001.json"),
            "{err}"
        );
    }
}
