//! Compaction, OPTIMIZE-style: the small files of each closed partition
//! (an hour of `events`, a day of the other tables) are bin-packed into
//! groups of about `target_file_bytes`, and each group is merged, in the
//! lake's sort order, into files of at most `max_rows_per_file` rows, and
//! swapped in by one commit that removes the old files and adds the new
//! (`dataChange: false`: no rows change). A group is what one merge holds in
//! memory. Readers of older versions keep reading the old files until vacuum
//! removes them, after its grace period. A write that lands in the partition
//! meanwhile does not conflict (its file is not among those removed); a
//! compaction or retention run that removed one of the files first makes
//! the partition wait for the next run.
//!
//! `tooltrail up` compacts every table every `compaction.interval`
//! ([`periodic`]); `tooltrail compact` does it on demand.

pub mod config;
pub mod periodic;

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::RecordBatch;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use parquet::file::metadata::KeyValue;
use tooltrail_schemas::SCHEMA_VERSION;

use crate::error::{Error, Result};
use crate::location::Location;
use crate::metrics::Metrics;
use crate::table::{Commit, FileEntry, Operation, Partition, Snapshot, Table, TableSpec};

/// What to compact.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Only partitions that ended at least this long ago.
    pub min_age: Duration,
    /// Files smaller than this are merged.
    pub small_file_bytes: u64,
    /// Small files are merged in groups of about this many bytes (of their
    /// Parquet): a group is one commit, and what one merge holds in memory.
    pub target_file_bytes: u64,
    /// At most this many rows per merged file.
    pub max_rows_per_file: usize,
}

impl Default for CompactOptions {
    fn default() -> Self {
        Self {
            min_age: Duration::from_secs(3600),
            small_file_bytes: 32 << 20,
            target_file_bytes: 64 << 20,
            max_rows_per_file: 1 << 21,
        }
    }
}

/// What a compaction run did on one table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactSummary {
    /// Partitions with at least one group merged.
    pub partitions: usize,
    /// Groups merged, one commit each.
    pub groups: usize,
    pub files_in: usize,
    pub files_out: usize,
    pub rows: u64,
    /// Groups left for the next run because another writer removed one of
    /// their files first.
    pub deferred: usize,
}

/// Compacts every eligible partition of `table`.
pub async fn compact(
    table: &mut Table,
    options: &CompactOptions,
    now: DateTime<Utc>,
) -> Result<CompactSummary> {
    table.refresh().await?;
    // Read once: each group's commit leaves the other groups' files as they
    // were, and the commit checks its removes against the table anyway.
    let snapshot = table.snapshot().await?;
    let mut by_partition: BTreeMap<Partition, Vec<FileEntry>> = BTreeMap::new();
    for file in snapshot.files()? {
        if (file.size as u64) < options.small_file_bytes {
            let partition = Partition::of(table.spec(), &file);
            by_partition.entry(partition).or_default().push(file);
        }
    }
    let mut summary = CompactSummary::default();
    for (partition, files) in by_partition {
        if !closed(&files[0], table.spec().partitions, options.min_age, now) {
            continue;
        }
        let mut merged_any = false;
        for group in groups(files, options.target_file_bytes) {
            match compact_group(table, &snapshot, &partition, &group, options).await {
                Ok(files_out) => {
                    merged_any = true;
                    summary.groups += 1;
                    summary.files_in += group.len();
                    summary.files_out += files_out;
                    summary.rows += group
                        .iter()
                        .map(|f| f.rows.unwrap_or(0) as u64)
                        .sum::<u64>();
                }
                Err(Error::FileGone { .. }) => {
                    tracing::info!(table = table.spec().name, partition = ?partition.values(), "another writer changed the partition; compacting it next run");
                    summary.deferred += 1;
                    table.refresh().await?;
                }
                Err(e) => return Err(e),
            }
        }
        summary.partitions += usize::from(merged_any);
    }
    Ok(summary)
}

/// [`compact`] of each of `tables` that exists in the lake at `location`:
/// the tables compacted, with what was done to each. A table no writer has
/// created is left alone (compaction does not create it). The files written
/// are zstd at `zstd_level`, and the commits count in `metrics`.
pub async fn compact_tables(
    location: &Location,
    tables: &[&'static TableSpec],
    options: &CompactOptions,
    zstd_level: i32,
    metrics: &Metrics,
    now: DateTime<Utc>,
) -> Result<Vec<(&'static str, CompactSummary)>> {
    let mut out = Vec::with_capacity(tables.len());
    for &spec in tables {
        if Snapshot::load(location, spec).await?.is_none() {
            continue;
        }
        let mut table = Table::open(location, spec, zstd_level, metrics.clone()).await?;
        out.push((spec.name, compact(&mut table, options, now).await?));
    }
    Ok(out)
}

/// Bin-packs the small files of one partition, in order, into groups of
/// about `target_bytes`: a group closes before the file that would take it
/// past. Groups of one file have nothing to merge and are left out.
fn groups(files: Vec<FileEntry>, target_bytes: u64) -> Vec<Vec<FileEntry>> {
    let mut groups: Vec<Vec<FileEntry>> = Vec::new();
    let mut current: Vec<FileEntry> = Vec::new();
    let mut bytes = 0u64;
    for file in files {
        let size = file.size.max(0) as u64;
        if !current.is_empty() && bytes + size > target_bytes {
            groups.push(std::mem::take(&mut current));
            bytes = 0;
        }
        bytes += size;
        current.push(file);
    }
    groups.push(current);
    groups.retain(|group| group.len() > 1);
    groups
}

/// Whether the partition of `file` (an hour with `dt` and `hour`, a day
/// with `dt` alone) ended at least `min_age` before `now`.
fn closed(file: &FileEntry, partitions: &[&str], min_age: Duration, now: DateTime<Utc>) -> bool {
    let value = |name: &str| {
        file.partition
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    };
    let Some(date) = value("dt").and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()) else {
        return false;
    };
    let end = if partitions.contains(&"hour") {
        let Some(hour) = value("hour").and_then(|h| h.parse::<u32>().ok()) else {
            return false;
        };
        date.and_hms_opt(hour, 0, 0)
            .map(|t| t.and_utc() + chrono::Duration::hours(1))
    } else {
        Some(date.and_time(NaiveTime::MIN).and_utc() + chrono::Duration::days(1))
    };
    end.is_some_and(|end| {
        now.signed_duration_since(end)
            .to_std()
            .is_ok_and(|age| age >= min_age)
    })
}

/// Merges `files` (a group of one partition) and commits the swap. Returns
/// the files written.
async fn compact_group(
    table: &mut Table,
    snapshot: &Snapshot,
    partition: &Partition,
    files: &[FileEntry],
    options: &CompactOptions,
) -> Result<usize> {
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut removes = Vec::with_capacity(files.len());
    for file in files {
        batches.extend(snapshot.read_file(&file.path, None).await?);
        let mut remove = snapshot
            .remove(&file.path)?
            .ok_or_else(|| Error::FileGone {
                table: table.spec().name.to_owned(),
                path: file.path.clone(),
            })?;
        remove.data_change = false;
        removes.push(remove);
    }
    let schema = (table.spec().schema)();
    let merged = arrow::compute::concat_batches(&schema, &batches)?;
    // At most two copies of the group in memory at once: the files' batches
    // go before the sort makes its own.
    drop(batches);
    let sorted = tokio::task::spawn_blocking(move || crate::parquet::sort_for_lake(&merged))
        .await
        .expect("sorting does not panic")?;
    let mut adds = Vec::new();
    let mut offset = 0;
    while offset < sorted.num_rows() {
        let len = options.max_rows_per_file.min(sorted.num_rows() - offset);
        let metadata = vec![
            KeyValue::new(
                "tooltrail.schema_version".into(),
                SCHEMA_VERSION.to_string(),
            ),
            KeyValue::new("tooltrail.compacted_from".into(), files.len().to_string()),
        ];
        let mut file = table
            .write(partition.clone(), sorted.slice(offset, len), metadata)
            .await?;
        file.add.data_change = false;
        adds.push(file);
        offset += len;
    }
    let written = adds.len();
    let commit = Commit {
        adds,
        ..Commit::removing(Operation::Compact, removes)
    };
    table.commit(&commit).await?;
    Ok(written)
}

#[cfg(test)]
mod tests;
