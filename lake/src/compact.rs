//! Compaction, OPTIMIZE-style: the small files of each closed hour are
//! merged, in the lake's sort order, into files of at most
//! `max_rows_per_file` rows, and swapped in by one commit that removes the
//! old files and adds the new (`dataChange: false`: no rows change). Readers
//! of older versions keep reading the old files until vacuum removes them,
//! after its grace period. A write that lands in the hour meanwhile does not
//! conflict (its file is not among those removed); a compaction or retention
//! run that removed one of the files first makes this hour wait for the next
//! run.

use std::collections::BTreeMap;
use std::time::Duration;

use arrow::array::RecordBatch;
use chrono::{DateTime, NaiveDate, Utc};
use parquet::file::metadata::KeyValue;
use tooltrail_schemas::SCHEMA_VERSION;

use crate::error::{Error, Result};
use crate::table::{Commit, FileEntry, Operation, Partition, Snapshot, Table};

/// What to compact.
#[derive(Debug, Clone)]
pub struct CompactOptions {
    /// Only hours that ended at least this long ago.
    pub min_age: Duration,
    /// Files smaller than this are merged.
    pub small_file_bytes: u64,
    /// At most this many rows per merged file.
    pub max_rows_per_file: usize,
}

impl Default for CompactOptions {
    fn default() -> Self {
        Self {
            min_age: Duration::from_secs(3600),
            small_file_bytes: 64 << 20,
            max_rows_per_file: 1 << 21,
        }
    }
}

/// What a compaction run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompactSummary {
    pub hours: usize,
    pub files_in: usize,
    pub files_out: usize,
    pub rows: u64,
    /// Hours left for the next run because another writer removed a file first.
    pub deferred: usize,
}

/// Compacts every eligible hour of `table` (partitioned by `dt`, `hour`).
pub async fn compact(
    table: &mut Table,
    options: &CompactOptions,
    now: DateTime<Utc>,
) -> Result<CompactSummary> {
    table.refresh().await?;
    // Read once: each hour's commit leaves the other hours' files as they
    // were, and the commit checks its removes against the table anyway.
    let snapshot = table.snapshot().await?;
    let mut by_hour: BTreeMap<Partition, Vec<FileEntry>> = BTreeMap::new();
    for file in snapshot.files()? {
        if (file.size as u64) < options.small_file_bytes {
            let partition = Partition::of(table.spec(), &file);
            by_hour.entry(partition).or_default().push(file);
        }
    }
    let mut summary = CompactSummary::default();
    for (partition, files) in by_hour {
        if files.len() < 2 || !closed(&files[0], options.min_age, now) {
            continue;
        }
        match compact_hour(table, &snapshot, &partition, &files, options).await {
            Ok(files_out) => {
                summary.hours += 1;
                summary.files_in += files.len();
                summary.files_out += files_out;
                summary.rows += files
                    .iter()
                    .map(|f| f.rows.unwrap_or(0) as u64)
                    .sum::<u64>();
            }
            Err(Error::FileGone { .. }) => {
                tracing::info!(partition = ?partition.values(), "another writer changed the hour; compacting it next run");
                summary.deferred += 1;
                table.refresh().await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(summary)
}

/// Whether the hour of `file` ended at least `min_age` before `now`.
fn closed(file: &FileEntry, min_age: Duration, now: DateTime<Utc>) -> bool {
    let value = |name: &str| {
        file.partition
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    };
    let date = value("dt").and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok());
    let hour = value("hour").and_then(|h| h.parse::<u32>().ok());
    let end = date
        .zip(hour)
        .and_then(|(date, hour)| date.and_hms_opt(hour, 0, 0))
        .map(|t| t.and_utc() + chrono::Duration::hours(1));
    end.is_some_and(|end| {
        now.signed_duration_since(end)
            .to_std()
            .is_ok_and(|age| age >= min_age)
    })
}

/// Merges `files` (one hour) and commits the swap. Returns the files written.
async fn compact_hour(
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
