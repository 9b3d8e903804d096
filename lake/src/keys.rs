//! Idempotency keys that expire: HTTP `Idempotency-Key`s.
//!
//! A key is written in the `commitInfo` of the commit that consumed it
//! ([`KEYS_FIELD`]), not in the table's state: a busy gateway sends a key
//! with every request, and as `txn` actions they would be carried in every
//! checkpoint and every snapshot. Each writer keeps the keys of the last
//! [`KEY_TTL`] in memory, read from the commits it sees (its own and other
//! writers'); when it opens, it reads back through the log until a commit is
//! older than the TTL. A retry within the TTL is answered as a duplicate;
//! after it, the same key is new again. The TTL is measured in the commits'
//! own timestamps, so every writer agrees on which keys are live.
//!
//! (Keys that must never expire, such as an imported file's, are `txn`
//! actions instead: few, and kept with the table.)

use std::collections::{HashMap, VecDeque};

use chrono::TimeDelta;
use deltalake::kernel::Version;
use deltalake::logstore::LogStore;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use crate::error::{Error, Result};

/// The `commitInfo` field that lists a commit's idempotency keys.
pub const KEYS_FIELD: &str = "tooltrail.keys";

/// How long a key is honoured after the commit that consumed it.
pub const KEY_TTL: TimeDelta = TimeDelta::hours(24);

/// Commit files read at once while catching up.
const READ_AHEAD: usize = 32;

/// The keys of one table's recent commits.
#[derive(Debug, Default)]
pub struct RecentKeys {
    /// Key → timestamp (ms) of the commit that consumed it.
    live: HashMap<String, i64>,
    /// (timestamp, key) in the order seen, for expiry.
    order: VecDeque<(i64, String)>,
    /// The newest version read, once the first catch-up is done.
    read_to: Option<Version>,
}

/// Keys and timestamp of one commit.
struct CommitKeys {
    timestamp: i64,
    keys: Vec<String>,
}

impl RecentKeys {
    /// Whether a commit within the TTL consumed `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.live.contains_key(key)
    }

    /// Records the keys of a commit this writer made.
    pub fn record(&mut self, version: Version, timestamp: i64, keys: &[String]) {
        for key in keys {
            self.insert(timestamp, key.clone());
        }
        if self.read_to.is_some_and(|v| v + 1 == version) {
            self.read_to = Some(version);
        }
    }

    fn insert(&mut self, timestamp: i64, key: String) {
        self.live.insert(key.clone(), timestamp);
        self.order.push_back((timestamp, key));
    }

    /// Forgets keys older than the TTL before `now_ms`.
    fn expire(&mut self, now_ms: i64) {
        let horizon = now_ms - KEY_TTL.num_milliseconds();
        while let Some((at, _)) = self.order.front()
            && *at < horizon
        {
            let (at, key) = self.order.pop_front().expect("front exists");
            // A key consumed again later (after expiring) stays live.
            if self.live.get(&key) == Some(&at) {
                self.live.remove(&key);
            }
        }
    }

    /// Reads the keys of every version up to `latest` not read yet. The
    /// first call reads back from `latest` until a commit older than the TTL
    /// before `now_ms`.
    pub async fn catch_up(
        &mut self,
        table: &str,
        log: &dyn LogStore,
        latest: Version,
        now_ms: i64,
    ) -> Result<()> {
        let horizon = now_ms - KEY_TTL.num_milliseconds();
        match self.read_to {
            Some(read_to) if read_to >= latest => {}
            Some(read_to) => {
                let commits: Vec<_> = futures::stream::iter(read_to + 1..=latest)
                    .map(|v| read(table, log, v))
                    .buffered(READ_AHEAD)
                    .try_collect()
                    .await?;
                for commit in commits.into_iter().flatten() {
                    for key in commit.keys {
                        self.insert(commit.timestamp, key);
                    }
                }
            }
            None => {
                // Newest first, in chunks, until a commit is older than the TTL.
                let mut found = Vec::new();
                let mut top = latest as i64;
                'back: while top >= 0 {
                    let low = (top - READ_AHEAD as i64 + 1).max(0);
                    let chunk: Vec<_> = futures::stream::iter((low..=top).rev())
                        .map(|v| read(table, log, v as Version))
                        .buffered(READ_AHEAD)
                        .try_collect()
                        .await?;
                    for commit in chunk.into_iter().flatten() {
                        if commit.timestamp < horizon {
                            break 'back;
                        }
                        found.push(commit);
                    }
                    top = low - 1;
                }
                for commit in found.into_iter().rev() {
                    for key in commit.keys {
                        self.insert(commit.timestamp, key);
                    }
                }
            }
        }
        self.read_to = Some(latest.max(self.read_to.unwrap_or(0)));
        self.expire(now_ms);
        Ok(())
    }
}

/// The keys of commit `version`; `None` if its file is gone (cleaned up).
async fn read(table: &str, log: &dyn LogStore, version: Version) -> Result<Option<CommitKeys>> {
    let bytes = log
        .read_commit_entry(version)
        .await
        .map_err(|e| Error::delta(table, format!("reading commit {version}"), e))?;
    let Some(bytes) = bytes else {
        return Ok(None);
    };
    Ok(parse(&bytes))
}

/// The `commitInfo` line of a commit file: its timestamp and keys.
fn parse(commit: &[u8]) -> Option<CommitKeys> {
    for line in commit.split(|b| *b == b'\n') {
        let Ok(action) = serde_json::from_slice::<Value>(line) else {
            continue;
        };
        let Some(info) = action.get("commitInfo") else {
            continue;
        };
        let timestamp = info.get("timestamp").and_then(Value::as_i64)?;
        let keys = info
            .get(KEYS_FIELD)
            .and_then(Value::as_array)
            .map(|keys| {
                keys.iter()
                    .filter_map(|k| k.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        return Some(CommitKeys { timestamp, keys });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_expire_after_the_ttl_in_commit_time() {
        let mut keys = RecentKeys::default();
        let t0 = 1_000_000_000_000;
        keys.insert(t0, "a".into());
        keys.insert(t0 + 1000, "b".into());
        keys.expire(t0 + KEY_TTL.num_milliseconds());
        assert!(keys.contains("a") && keys.contains("b"));
        keys.expire(t0 + KEY_TTL.num_milliseconds() + 1);
        assert!(!keys.contains("a") && keys.contains("b"));
        // A key consumed again is live for another TTL.
        keys.insert(t0 + 5000, "b".into());
        keys.expire(t0 + 1000 + KEY_TTL.num_milliseconds() + 1);
        assert!(keys.contains("b"));
    }

    #[test]
    fn reads_keys_and_time_from_the_commit_info_line() {
        let commit = br#"{"add":{"path":"x"}}
{"commitInfo":{"timestamp":1764000000000,"operation":"WRITE","tooltrail.keys":["http:k1","http:k2"]}}
"#;
        let parsed = parse(commit).unwrap();
        assert_eq!(parsed.timestamp, 1_764_000_000_000);
        assert_eq!(parsed.keys, ["http:k1", "http:k2"]);
        let none = parse(br#"{"commitInfo":{"timestamp":5}}"#).unwrap();
        assert!(none.keys.is_empty());
    }
}
