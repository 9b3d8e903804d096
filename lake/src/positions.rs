//! The application versions (`txn` actions: Kafka offsets, file lines) a
//! writer checks before each commit, kept current cheaply.
//!
//! Asking delta-rs for an app id's version replays the `txn` actions of the
//! whole log segment (the checkpoint and every commit since). A commit that
//! lost a race re-checks its positions before trying again, so that cost was
//! paid on every retry, for every partition a batch covers: the window
//! between reading the table and putting the next version grew until a
//! writer among busy others lost every race. Here each app id is read that
//! way once; after that the versions are brought up to date from the new
//! commits alone (a few small JSON files), and from this writer's own
//! commits without reading anything.

use std::collections::HashMap;

use deltalake::kernel::Version;
use deltalake::logstore::LogStore;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::table::Head;

/// Commit files read at once while catching up.
const READ_AHEAD: usize = 32;

/// App id versions as of one table version.
#[derive(Debug, Default)]
pub struct Positions {
    /// `None`: the app id has no version in the table.
    known: HashMap<String, Option<i64>>,
    /// The table version `known` is current as of.
    as_of: Option<Version>,
}

impl Positions {
    /// The version of `app_id` in `table` as of its writer's head.
    pub(crate) async fn get(
        &mut self,
        head: &mut Head,
        table: &str,
        app_id: &str,
    ) -> Result<Option<i64>> {
        let version = head.version();
        self.catch_up(head.log_store().as_ref(), table, version)
            .await?;
        if let Some(known) = self.known.get(app_id) {
            return Ok(*known);
        }
        let read = head
            .app_id_version(app_id)
            .await
            .map_err(|e| Error::delta(table, "reading application versions", e))?;
        self.known.insert(app_id.to_owned(), read);
        Ok(read)
    }

    /// This writer committed `positions` as `version`.
    pub fn committed(&mut self, version: Version, positions: &[(String, i64)]) {
        if self.as_of.is_some_and(|v| v + 1 == version) {
            for (app_id, last) in positions {
                self.known.insert(app_id.clone(), Some(*last));
            }
            self.as_of = Some(version);
        }
    }

    /// Applies the `txn` actions of the commits after `as_of` up to
    /// `version`; with nothing known yet, starts at `version`.
    async fn catch_up(&mut self, log: &dyn LogStore, table: &str, version: Version) -> Result<()> {
        let from = match self.as_of {
            Some(as_of) if as_of >= version => return Ok(()),
            Some(as_of) if !self.known.is_empty() => as_of + 1,
            _ => {
                self.known.clear();
                self.as_of = Some(version);
                return Ok(());
            }
        };
        let commits: Vec<Option<bytes::Bytes>> = futures::stream::iter(from..=version)
            .map(|v| read(table, log, v))
            .buffered(READ_AHEAD)
            .try_collect()
            .await?;
        for commit in commits.into_iter().flatten() {
            for (app_id, last) in txns(&commit) {
                self.known.insert(app_id, Some(last));
            }
        }
        self.as_of = Some(version);
        Ok(())
    }
}

async fn read(table: &str, log: &dyn LogStore, version: Version) -> Result<Option<bytes::Bytes>> {
    log.read_commit_entry(version)
        .await
        .map_err(|e| Error::delta(table, format!("reading commit {version}"), e))
}

/// The `(appId, version)` of each `txn` action in a commit file.
fn txns(commit: &[u8]) -> Vec<(String, i64)> {
    commit
        .split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<Value>(line).ok())
        .filter_map(|action| {
            let txn = action.get("txn")?;
            Some((
                txn.get("appId")?.as_str()?.to_owned(),
                txn.get("version")?.as_i64()?,
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_txn_action_of_a_commit_and_nothing_else() {
        let commit = br#"{"commitInfo":{"timestamp":1}}
{"txn":{"appId":"g/t/0","version":41,"lastUpdated":1}}
{"add":{"path":"a.parquet"}}
{"txn":{"appId":"g/t/3","version":7}}
"#;
        assert_eq!(
            txns(commit),
            [("g/t/0".to_owned(), 41), ("g/t/3".to_owned(), 7)]
        );
    }
}
