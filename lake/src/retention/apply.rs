//! Doing what a [`RetentionPlan`] says, one Delta commit per partition
//! (`Operation::Retention`: `DELETE` in the table's history).
//!
//! Before each partition the legal holds are read again: a hold set since
//! planning that covers rows about to go stops that partition. Then:
//!
//! - a partition deleted whole: one commit removing each planned file (a
//!   file added to the partition since planning is left for the next run);
//! - a partition rewritten: each file mixing due and kept rows is read, its
//!   kept rows written as a new file of the same partition, and one commit
//!   adds the new files and removes the old ones and those holding only due
//!   rows, so readers see the partition before or after, never half.
//!
//! A file already removed by another writer (compaction, another retention
//! run) fails the commit with [`crate::Error::FileGone`]: the partition is
//! skipped, planned again at the next run, and the files it wrote are
//! orphans that vacuum deletes. Nothing is deleted from storage here.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use deltalake::kernel::Version;

use crate::location::Location;
use crate::metrics::Metrics;
use crate::retention::config::RetentionConfig;
use crate::retention::error::Error;
use crate::retention::holds::{HoldStore, LegalHold};
use crate::retention::plan::{Deletion, FileRef, RetentionPlan, Rewrite, holds_covering, plan};
use crate::retention::rewrite::{self, Removed};
use crate::retention::scan::{TenantCache, scan};
use crate::retention::{Partition, RetainedTable, TableKind};
use crate::table::{Commit, Operation, Snapshot, Table, TableSpec};

/// The zstd level of rewritten files unless [`Retention::with_zstd_level`] says otherwise.
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// A partition retention changed, and the table version that records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub partition: Partition,
    /// The table version the commit created.
    pub version: Version,
    /// Files removed (deleted or replaced).
    pub files: usize,
    /// Rows removed.
    pub rows: u64,
    /// Bytes of the files removed.
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
    /// Left alone this time: changed since planned, newly held.
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

/// Retention for one lake: the configuration, the tables, the hold store,
/// the writers it opened and what it read of the files so far (kept across
/// runs by `up`).
pub struct Retention {
    location: Location,
    config: RetentionConfig,
    tables: Vec<RetainedTable>,
    holds: HoldStore,
    cache: TenantCache,
    writers: HashMap<TableKind, Table>,
    zstd_level: i32,
    metrics: Metrics,
}

impl std::fmt::Debug for Retention {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Retention")
            .field("location", &self.location)
            .field("tables", &self.tables)
            .finish_non_exhaustive()
    }
}

impl Retention {
    /// Retention of `tables` (see [`crate::retention::TABLES`]) in the lake
    /// at `location`.
    pub fn new(
        location: &Location,
        config: &RetentionConfig,
        tables: &[&'static TableSpec],
    ) -> Result<Retention, Error> {
        let tables = tables
            .iter()
            .map(|spec| RetainedTable::new(spec))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Retention {
            location: location.clone(),
            config: config.clone(),
            tables,
            holds: HoldStore::open(location, config)?,
            cache: TenantCache::default(),
            writers: HashMap::new(),
            zstd_level: DEFAULT_ZSTD_LEVEL,
            metrics: Metrics::default(),
        })
    }

    /// The zstd level of the files a rewrite writes.
    pub fn with_zstd_level(mut self, level: i32) -> Self {
        self.zstd_level = level;
        self
    }

    /// The lake metrics its commits count in.
    pub fn with_lake_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn holds(&self) -> &HoldStore {
        &self.holds
    }

    /// Lists the tables and decides, as of `now`. Changes nothing.
    pub async fn plan(&mut self, now: DateTime<Utc>) -> Result<RetentionPlan, Error> {
        let listing = scan(
            &self.location,
            &self.tables,
            &self.config,
            now,
            &mut self.cache,
        )
        .await?;
        let holds = self.holds.all().await?;
        Ok(plan(&listing, &self.config, &holds, now))
    }

    /// Applies `plan`, honouring the holds as they are before each commit;
    /// `stop` is asked between partitions. An error on one partition is
    /// logged and counted in [`RetentionSummary::failed`]; the run goes on.
    /// Reading the holds failing ends the run: nothing is taken out without
    /// knowing what is held.
    pub async fn apply(
        &mut self,
        plan: &RetentionPlan,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<RetentionSummary, Error> {
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
            let current = self.holds.all().await?;
            if let Some(hold) = newly_held(&action, &current) {
                summary.skipped.push(Skipped {
                    partition,
                    why: format!("held since it was planned: {}", hold.describe()),
                });
                continue;
            }
            let outcome = match action {
                Action::Delete(d) => self.delete(d).await,
                Action::Rewrite(r) => self.rewrite(r).await,
            };
            match outcome {
                Ok(Outcome::Done(done)) => {
                    tracing::debug!(partition = %done.partition, version = done.version, rows = done.rows, "retention applied");
                    self.check_raced_holds(&action, &current).await;
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

    /// The writer of `kind`, opened the first time.
    async fn writer(&mut self, kind: TableKind) -> Result<&mut Table, Error> {
        if !self.writers.contains_key(&kind) {
            let spec = self
                .tables
                .iter()
                .find(|t| t.kind == kind)
                .map(|t| t.spec)
                .ok_or_else(|| Error::UnknownTable {
                    name: kind.name().to_owned(),
                })?;
            let table =
                Table::open(&self.location, spec, self.zstd_level, self.metrics.clone()).await?;
            self.writers.insert(kind, table);
        }
        let table = self
            .writers
            .get_mut(&kind)
            .expect("the writer was opened above");
        table.refresh().await?;
        Ok(table)
    }

    async fn delete(&mut self, d: &Deletion) -> Result<Outcome, Error> {
        let table = self.writer(d.partition.table).await?;
        let snapshot = table.snapshot().await?;
        let Some(removes) = removes(&snapshot, &d.files.iter().collect::<Vec<_>>())? else {
            return Ok(Outcome::Skipped(CHANGED.into()));
        };
        let commit = Commit::removing(Operation::Retention, removes);
        match table.commit(&commit).await {
            Ok(committed) => Ok(Outcome::Done(Done {
                partition: d.partition.clone(),
                version: committed.version,
                files: d.files.len(),
                rows: d.rows,
                bytes: d.bytes,
            })),
            Err(crate::Error::FileGone { .. }) => Ok(Outcome::Skipped(CHANGED.into())),
            Err(e) => Err(e.into()),
        }
    }

    async fn rewrite(&mut self, r: &Rewrite) -> Result<Outcome, Error> {
        let table = self.writer(r.partition.table).await?;
        let replaced: Vec<&FileRef> = r.drop.iter().chain(&r.rewrite).collect();
        let snapshot = table.snapshot().await?;
        let Some(removes) = removes(&snapshot, &replaced)? else {
            return Ok(Outcome::Skipped(CHANGED.into()));
        };
        let removed: Removed = r.removed.iter().map(|(t, _)| t.clone()).collect();
        let mut adds = Vec::with_capacity(r.rewrite.len());
        for file in &r.rewrite {
            let written =
                rewrite::without(table, &snapshot, &r.partition, &file.path, &removed).await?;
            adds.extend(written);
        }
        let commit = Commit {
            adds,
            ..Commit::removing(Operation::Retention, removes)
        };
        match table.commit(&commit).await {
            Ok(committed) => Ok(Outcome::Done(Done {
                partition: r.partition.clone(),
                version: committed.version,
                files: replaced.len(),
                rows: r.rows_removed(),
                bytes: replaced.iter().map(|f| f.bytes).sum(),
            })),
            // What it wrote is an orphan; vacuum deletes it.
            Err(crate::Error::FileGone { .. }) => Ok(Outcome::Skipped(CHANGED.into())),
            Err(e) => Err(e.into()),
        }
    }

    /// Logs a hold that appeared between the re-read and the commit and
    /// covers what the commit took out.
    async fn check_raced_holds(&self, action: &Action<'_>, before: &[LegalHold]) {
        let after = match self.holds.all().await {
            Ok(after) => after,
            Err(error) => {
                tracing::warn!(error = %tooltrail_schemas::Report(&error), "could not re-read the legal holds after a retention commit");
                return;
            }
        };
        let new: Vec<LegalHold> = after
            .into_iter()
            .filter(|h| !before.iter().any(|b| b.id == h.id))
            .collect();
        if let Some(hold) = newly_held(action, &new) {
            tracing::error!(
                partition = %action.partition(),
                hold = %hold.id,
                tenant = %hold.tenant,
                "a legal hold set while retention committed covers rows it removed; \
                 the files stay in storage until vacuum: restore them from the previous table version"
            );
        }
    }
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

const CHANGED: &str =
    "the partition changed since it was planned (a compaction or another retention run); next run";

fn newly_held<'a>(action: &Action<'_>, holds: &'a [LegalHold]) -> Option<&'a LegalHold> {
    let partition = action.partition();
    action
        .removed_tenants()
        .into_iter()
        .find_map(|t| holds_covering(holds, partition, t).into_iter().next())
}

/// The `remove` actions of `files`, or `None` if one is no longer in the table.
fn removes(
    snapshot: &Snapshot,
    files: &[&FileRef],
) -> Result<Option<Vec<deltalake::kernel::Remove>>, Error> {
    let mut removes = Vec::with_capacity(files.len());
    for file in files {
        match snapshot.remove(&file.path)? {
            Some(remove) => removes.push(remove),
            None => return Ok(None),
        }
    }
    Ok(Some(removes))
}
