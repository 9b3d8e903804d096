//! Doing what a [`RetentionPlan`] says, one log entry per partition.
//!
//! One run at a time per lake (`_tooltrail/retention.lock`, taken without
//! waiting). Before each partition, the legal holds are read again under
//! their shared lock, which is kept until the partition's entry is
//! committed: a hold set while the run is going (the API waits for the lock)
//! stops any deletion it covers that has not committed yet.
//!
//! - A Parquet partition deleted whole: under the lake's exclusive lock, if
//!   its live files are still the planned ones, the entry (`removed`: every
//!   file) is appended, then the directory is retired like compaction's
//!   (readers that listed it can still read it for `RETIRED_GRACE`).
//! - A Parquet partition rewritten: compaction's swap (`swap_partition`),
//!   with the rewritten files and links to the files that stay.
//! - Alerts and query audit (NDJSON, not otherwise in the log): the entry
//!   names each deleted file; rewritten alert files are staged hidden under
//!   new names, published and the old ones deleted by the entry's finish. A
//!   reader listing at that instant may see an alert twice, which readers
//!   already collapse (the highest `repeats` per `alert_id`), never none.

use std::fs;
use std::path::Path;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::lake::compact::{live_in, swap_partition};
use crate::lake::log::{LOG_FORMAT_VERSION, LogEntry, Operation};
use crate::lake::{Lake, RETIRED_GRACE};
use crate::retention::config::RetentionConfig;
use crate::retention::holds::{HoldStore, LegalHold};
use crate::retention::plan::{Deletion, FileRef, RetentionPlan, Rewrite, holds_covering, plan};
use crate::retention::rewrite::{self, Removed, Target};
use crate::retention::scan::{TenantCache, scan};
use crate::retention::{Partition, Table};

/// A partition retention changed, and the log entry that records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub partition: Partition,
    /// The log entry's sequence number.
    pub seq: u64,
    /// Files deleted or replaced.
    pub files: usize,
    /// Rows removed.
    pub rows: u64,
    /// Bytes of the files deleted or replaced.
    pub bytes: u64,
}

/// A partition left for the next run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub partition: Partition,
    pub why: String,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionSummary {
    /// Partitions deleted whole.
    pub deleted: Vec<Done>,
    /// Partitions rewritten without some tenants' rows.
    pub rewritten: Vec<Done>,
    /// Left alone this time: changed since planned, newly held, a file missing.
    pub skipped: Vec<Skipped>,
    /// Failed with an error (logged); retried at the next run.
    pub failed: Vec<Skipped>,
    /// Stopped early because shutdown was asked for.
    pub stopped: bool,
}

impl RetentionSummary {
    pub fn rows_removed(&self) -> u64 {
        self.deleted
            .iter()
            .chain(&self.rewritten)
            .map(|d| d.rows)
            .sum()
    }

    pub fn bytes_removed(&self) -> u64 {
        self.deleted
            .iter()
            .chain(&self.rewritten)
            .map(|d| d.bytes)
            .sum()
    }
}

/// Retention for one lake: the configuration, the hold store and what was
/// read of the files so far (kept across runs by `up`).
#[derive(Debug)]
pub struct Retention {
    config: RetentionConfig,
    holds: HoldStore,
    cache: TenantCache,
}

impl Retention {
    pub fn new(lake_root: &Path, config: &RetentionConfig) -> Retention {
        Retention {
            config: config.clone(),
            holds: HoldStore::open(lake_root, config),
            cache: TenantCache::default(),
        }
    }

    pub fn holds(&self) -> &HoldStore {
        &self.holds
    }

    /// Lists the lake and decides, as of `now`. Changes nothing.
    pub fn plan(&mut self, lake: &mut Lake, now: DateTime<Utc>) -> Result<RetentionPlan> {
        let listing = scan(lake, &self.config, now, &mut self.cache)?;
        let holds = self.holds.all()?;
        Ok(plan(&listing, &self.config, &holds, now))
    }

    /// Applies `plan`; `stop` is asked between partitions.
    pub fn apply(
        &mut self,
        lake: &mut Lake,
        plan: &RetentionPlan,
        stop: &dyn Fn() -> bool,
    ) -> Result<RetentionSummary> {
        apply(lake, plan, &self.holds, stop)
    }
}

/// Applies `plan` to `lake`, honouring the holds of `holds` as they are at
/// each commit; `stop` is asked between partitions.
pub fn apply(
    lake: &mut Lake,
    plan: &RetentionPlan,
    holds: &HoldStore,
    stop: &dyn Fn() -> bool,
) -> Result<RetentionSummary> {
    apply_with(lake, plan, holds, stop, true)
}

enum Action<'a> {
    Delete(&'a Deletion),
    Rewrite(&'a Rewrite),
}

impl Action<'_> {
    fn partition(&self) -> &Partition {
        match self {
            Action::Delete(d) => &d.partition,
            Action::Rewrite(r) => &r.partition,
        }
    }

    fn removed_tenants(&self) -> Vec<Option<&str>> {
        let list = match self {
            Action::Delete(d) => &d.tenants,
            Action::Rewrite(r) => &r.removed,
        };
        list.iter().map(|(t, _)| t.as_deref()).collect()
    }
}

enum Outcome {
    Done(Done),
    Skipped(String),
}

/// `finish: false` stops each partition right after its log entry (crash tests).
pub(crate) fn apply_with(
    lake: &mut Lake,
    plan: &RetentionPlan,
    holds: &HoldStore,
    stop: &dyn Fn() -> bool,
    finish: bool,
) -> Result<RetentionSummary> {
    let _run = run_lock(lake.root())?;
    lake.sweep_retired(RETIRED_GRACE)?;
    let mut summary = RetentionSummary::default();
    let actions = plan
        .deletions
        .iter()
        .map(Action::Delete)
        .chain(plan.rewrites.iter().map(Action::Rewrite));
    for action in actions {
        if stop() {
            summary.stopped = true;
            break;
        }
        let partition = action.partition().clone();
        // Kept until this partition's entry is committed.
        let (_holds_lock, current) = holds.read_locked()?;
        if let Some(hold) = newly_held(&action, &current) {
            summary.skipped.push(Skipped {
                partition,
                why: format!("held since it was planned: {}", hold.describe()),
            });
            continue;
        }
        let outcome = match action {
            Action::Delete(d) if d.partition.table.is_parquet() => delete_parquet(lake, d, finish),
            Action::Delete(d) => delete_ndjson(lake, d, finish),
            Action::Rewrite(r) if r.partition.table.is_parquet() => {
                rewrite_parquet(lake, r, finish)
            }
            Action::Rewrite(r) => rewrite_ndjson(lake, r, finish),
        };
        match outcome {
            Ok(Outcome::Done(done)) => {
                tracing::debug!(partition = %done.partition, seq = done.seq, rows = done.rows, "retention applied");
                match action {
                    Action::Delete(_) => summary.deleted.push(done),
                    Action::Rewrite(_) => summary.rewritten.push(done),
                }
            }
            Ok(Outcome::Skipped(why)) => summary.skipped.push(Skipped { partition, why }),
            Err(error) => {
                tracing::error!(%partition, error = %tooltrail_schemas::Report(&error), "retention failed on a partition; retried at the next run");
                summary.failed.push(Skipped {
                    partition,
                    why: error.to_string(),
                });
            }
        }
    }
    Ok(summary)
}

fn newly_held<'a>(action: &Action<'_>, holds: &'a [LegalHold]) -> Option<&'a LegalHold> {
    let partition = action.partition();
    action
        .removed_tenants()
        .into_iter()
        .find_map(|t| holds_covering(holds, partition, t).into_iter().next())
}

/// `_tooltrail/retention.lock`, held for the run; refused if another run holds it.
fn run_lock(root: &Path) -> Result<fs::File> {
    let path = root.join("_tooltrail").join("retention.lock");
    let file = crate::lake::open_lock_file(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::RetentionBusy { path }),
        Err(fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

fn entry(
    lake: &Lake,
    txn_id: String,
    added: Vec<crate::lake::log::FileRecord>,
    removed: Vec<String>,
) -> LogEntry {
    LogEntry {
        version: LOG_FORMAT_VERSION,
        seq: 0,
        txn_id,
        committed_at: Utc::now(),
        operation: Operation::Retention,
        writer: lake.writer_id().to_owned(),
        positions: Vec::new(),
        added,
        removed,
        keys: Vec::new(),
        swap: None,
    }
}

fn new_txn() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

const CHANGED: &str =
    "the partition changed since it was planned (a write or a compaction); next run";

/// The planned files, if they are all still live (Parquet) and on disk.
fn still_there(
    lake: &Lake,
    files: &[&FileRef],
    in_log: bool,
) -> std::result::Result<Vec<String>, String> {
    let mut paths = Vec::with_capacity(files.len());
    for f in files {
        if in_log && !lake.state().live.contains_key(&f.path) {
            return Err(CHANGED.into());
        }
        if !lake.root().join(&f.path).exists() {
            return Err(format!(
                "{} is missing: not recorded as a retention deletion (run `tooltrail lake verify`)",
                f.path
            ));
        }
        paths.push(f.path.clone());
    }
    paths.sort();
    Ok(paths)
}

fn delete_parquet(lake: &mut Lake, d: &Deletion, finish: bool) -> Result<Outcome> {
    lake.refresh()?;
    let prefix = format!("{}/", d.partition.dir);
    let planned = match still_there(lake, &d.files.iter().collect::<Vec<_>>(), true) {
        Ok(p) => p,
        Err(why) => return Ok(Outcome::Skipped(why)),
    };
    if live_in(lake.state(), &prefix) != planned {
        return Ok(Outcome::Skipped(CHANGED.into()));
    }
    let txn_id = new_txn();
    let dir = lake.root().join(&d.partition.dir);
    let table_dir = lake.root().join(d.partition.table.name());
    let names: Vec<String> = planned
        .iter()
        .filter_map(|p| p.rsplit_once('/').map(|(_, n)| n.to_owned()))
        .collect();
    let check = |state: &crate::lake::log::LogState| {
        if live_in(state, &prefix) != planned {
            return Err(Error::PartitionChanged {
                dir: d.partition.dir.clone(),
            });
        }
        Ok(())
    };
    let retire = |lake: &Lake, entry: &LogEntry| {
        if !finish {
            return Ok(());
        }
        // Nothing else visible in the directory: retire it whole, so that
        // readers see the hour or nothing. Otherwise the finish deletes the
        // files one by one.
        if only_these(&dir, &names)? {
            lake.retire(&dir, &entry.txn_id)?;
            remove_empty_parents(&dir, &table_dir);
        }
        Ok(())
    };
    let entry = entry(lake, txn_id, Vec::new(), planned.clone());
    match lake.commit_exclusive_then(entry, check, retire, finish) {
        Ok(entry) => Ok(Outcome::Done(Done {
            partition: d.partition.clone(),
            seq: entry.seq,
            files: d.files.len(),
            rows: d.rows,
            bytes: d.bytes,
        })),
        Err(Error::PartitionChanged { .. }) => Ok(Outcome::Skipped(CHANGED.into())),
        Err(e) => Err(e),
    }
}

/// Whether the visible entries of `dir` are exactly `names`.
fn only_these(dir: &Path, names: &[String]) -> Result<bool> {
    let mut seen = 0;
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let name = entry.map_err(|e| Error::io(dir, e))?.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        if !names.iter().any(|n| *n == name) {
            return Ok(false);
        }
        seen += 1;
    }
    Ok(seen == names.len())
}

/// Removes `dir`'s empty parents up to, not including, `stop`.
fn remove_empty_parents(dir: &Path, stop: &Path) {
    let mut at = dir.parent();
    while let Some(parent) = at {
        if parent == stop || !parent.starts_with(stop) || fs::remove_dir(parent).is_err() {
            break;
        }
        at = parent.parent();
    }
}

fn delete_ndjson(lake: &mut Lake, d: &Deletion, finish: bool) -> Result<Outcome> {
    let existing: Vec<&FileRef> = d
        .files
        .iter()
        .filter(|f| lake.root().join(&f.path).exists())
        .collect();
    if existing.len() != d.files.len() {
        let missing: Vec<&str> = d
            .files
            .iter()
            .filter(|f| !existing.iter().any(|e| e.path == f.path))
            .map(|f| f.path.as_str())
            .collect();
        return Ok(Outcome::Skipped(format!(
            "{} missing since it was planned: not recorded as a retention deletion",
            missing.join(", ")
        )));
    }
    let removed: Vec<String> = existing.iter().map(|f| f.path.clone()).collect();
    let entry = entry(lake, new_txn(), Vec::new(), removed);
    let entry = lake.commit_exclusive(entry, |_| Ok(()), finish)?;
    // The query audit only ever writes today's partition; the detector may
    // write an alert into an old day without the lake's lock, so the alerts
    // day directory stays (empty) rather than racing it.
    if finish && d.partition.table == Table::QueryAudit {
        let _ = fs::remove_dir(lake.root().join(&d.partition.dir));
    }
    Ok(Outcome::Done(Done {
        partition: d.partition.clone(),
        seq: entry.seq,
        files: d.files.len(),
        rows: d.rows,
        bytes: d.bytes,
    }))
}

fn replaced(r: &Rewrite) -> Vec<&FileRef> {
    r.drop.iter().chain(&r.rewrite).collect()
}

fn removed_set(r: &Rewrite) -> Removed {
    r.removed.iter().map(|(t, _)| t.clone()).collect()
}

fn rewrite_parquet(lake: &mut Lake, r: &Rewrite, finish: bool) -> Result<Outcome> {
    lake.refresh()?;
    let replaced_files = replaced(r);
    let replaced = match still_there(lake, &replaced_files, true) {
        Ok(p) => p,
        Err(why) => return Ok(Outcome::Skipped(why)),
    };
    let removed = removed_set(r);
    let table = r.partition.table;
    let dir = r.partition.dir.as_str();
    let write = |lake: &Lake, staged: &Path, txn_id: &str| {
        let mut added = Vec::with_capacity(r.rewrite.len());
        for (n, file) in r.rewrite.iter().enumerate() {
            let name = format!("part-{txn_id}-{n:04}.parquet");
            let rel = format!("{dir}/{name}");
            let target = Target {
                rel: &rel,
                write_to: &staged.join(&name),
                txn_id,
            };
            let source = lake.root().join(&file.path);
            added.push(rewrite::parquet_without(
                table,
                &source,
                &file.path,
                &removed,
                &target,
                lake.zstd_level(),
            )?);
        }
        Ok(added)
    };
    let swapped = swap_partition(lake, dir, Operation::Retention, &replaced, write, !finish)?;
    let Some(entry) = swapped else {
        return Ok(Outcome::Skipped(CHANGED.into()));
    };
    Ok(Outcome::Done(Done {
        partition: r.partition.clone(),
        seq: entry.seq,
        files: replaced_files.len(),
        rows: r.rows_removed(),
        bytes: replaced_files.iter().map(|f| f.bytes).sum(),
    }))
}

fn rewrite_ndjson(lake: &mut Lake, r: &Rewrite, finish: bool) -> Result<Outcome> {
    let replaced_files = replaced(r);
    let replaced = match still_there(lake, &replaced_files, false) {
        Ok(p) => p,
        Err(why) => return Ok(Outcome::Skipped(why)),
    };
    let removed = removed_set(r);
    let txn_id = new_txn();
    let dir = lake.root().join(&r.partition.dir);
    let mut staged = Vec::new();
    let result = (|| {
        let mut added = Vec::with_capacity(r.rewrite.len());
        for (n, file) in r.rewrite.iter().enumerate() {
            let name = format!("part-{txn_id}-{n:04}.ndjson");
            let rel = format!("{}/{name}", r.partition.dir);
            let tmp = dir.join(format!(".{name}.tmp"));
            staged.push(tmp.clone());
            let target = Target {
                rel: &rel,
                write_to: &tmp,
                txn_id: &txn_id,
            };
            let source = lake.root().join(&file.path);
            added.push(rewrite::ndjson_without(
                r.partition.table,
                &source,
                &removed,
                &target,
            )?);
        }
        let entry = entry(lake, txn_id.clone(), added, replaced);
        lake.commit_exclusive(entry, |_| Ok(()), finish)
    })();
    let entry = match result {
        Ok(entry) => entry,
        Err(e) => {
            for tmp in staged {
                let _ = fs::remove_file(tmp);
            }
            return Err(e);
        }
    };
    Ok(Outcome::Done(Done {
        partition: r.partition.clone(),
        seq: entry.seq,
        files: replaced_files.len(),
        rows: r.rows_removed(),
        bytes: replaced_files.iter().map(|f| f.bytes).sum(),
    }))
}
