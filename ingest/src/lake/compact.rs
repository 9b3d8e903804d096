//! Compaction: merging the small files of closed hours into large ones,
//! atomically for every reader.
//!
//! For each hour partition with two or more small files: the files are read,
//! merged, sorted and written into a hidden directory beside the partition,
//! with hard links to the partition's large files. Then, under the lake's
//! exclusive lock, the log is re-read (a late event committed to this hour in
//! the meantime makes the hour wait for the next run), the log entry is
//! appended (the commit point), and the hidden directory is exchanged with the
//! partition in one `renameat2(RENAME_EXCHANGE)`. A reader that lists the
//! partition sees the old files or the new, never both and never neither. The
//! old directory is then moved to `_tooltrail/retired/` and deleted after a
//! grace period, so a reader that opened it just before the exchange can
//! still list and read it whole. Positions are untouched: exactly-once
//! bookkeeping does not depend on which files hold the rows.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use ::parquet::file::metadata::KeyValue;
use arrow::array::RecordBatch;
use chrono::{DateTime, NaiveDate, Utc};
use tooltrail_schemas::SCHEMA_VERSION;
use tooltrail_schemas::lake::events_schema;

use crate::error::{Error, Result};
use crate::lake::log::{DirSwap, FileRecord, LOG_FORMAT_VERSION, LogEntry, LogState, Operation};
use crate::lake::{Lake, parquet, time_range};

pub use tooltrail_lake::compact::{CompactOptions, CompactSummary};

/// Compacts every eligible hour of the events table.
pub fn compact(
    lake: &mut Lake,
    options: &CompactOptions,
    now: DateTime<Utc>,
) -> Result<CompactSummary> {
    lake.refresh()?;
    lake.sweep_retired(crate::lake::RETIRED_GRACE)?;
    let mut by_hour: BTreeMap<String, Vec<FileRecord>> = BTreeMap::new();
    for file in lake.state().live.values() {
        if file.table != "events" || file.bytes >= options.small_file_bytes {
            continue;
        }
        if let Some((dir, _)) = file.path.rsplit_once('/') {
            by_hour
                .entry(dir.to_owned())
                .or_default()
                .push(file.clone());
        }
    }
    let mut summary = CompactSummary::default();
    for (dir, files) in by_hour {
        if files.len() < 2 || !closed(&dir, options.min_age, now) {
            continue;
        }
        match compact_hour(lake, &dir, &files, options, false)? {
            Some(out) => {
                summary.hours += 1;
                summary.files_in += files.len();
                summary.files_out += out.added.len();
                summary.rows += out.added.iter().map(|f| f.rows).sum::<u64>();
            }
            None => summary.deferred += 1,
        }
    }
    Ok(summary)
}

/// Whether the hour partition `events/dt=…/hour=HH` ended at least `min_age` ago.
fn closed(dir: &str, min_age: Duration, now: DateTime<Utc>) -> bool {
    let mut date = None;
    let mut hour = None;
    for part in dir.split('/') {
        if let Some(d) = part.strip_prefix("dt=") {
            date = NaiveDate::parse_from_str(d, "%Y-%m-%d").ok();
        } else if let Some(h) = part.strip_prefix("hour=") {
            hour = h.parse::<u32>().ok();
        }
    }
    let (Some(date), Some(hour)) = (date, hour) else {
        return false;
    };
    let Some(end) = date
        .and_hms_opt(hour, 0, 0)
        .map(|t| t.and_utc() + chrono::Duration::hours(1))
    else {
        return false;
    };
    now.signed_duration_since(end)
        .to_std()
        .is_ok_and(|age| age >= min_age)
}

fn read_all(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let wrap = |source| Error::WriteParquet {
        path: path.to_owned(),
        source,
    };
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(wrap)?
        .build()
        .map_err(wrap)?;
    reader.map(|b| b.map_err(Error::from)).collect()
}

/// Compacts one hour. `None` when a write to the hour landed meanwhile.
/// `stop_before_swap` leaves the committed entry unfinished (crash tests).
pub(crate) fn compact_hour(
    lake: &mut Lake,
    dir: &str,
    files: &[FileRecord],
    options: &CompactOptions,
    stop_before_swap: bool,
) -> Result<Option<LogEntry>> {
    let merged: Vec<String> = files.iter().map(|f| f.path.clone()).collect();
    let write = |lake: &Lake, staged: &Path, txn_id: &str| {
        let mut batches = Vec::new();
        for file in files {
            batches.extend(read_all(&lake.root().join(&file.path))?);
        }
        let merged = arrow::compute::concat_batches(&events_schema(), &batches)?;
        let sorted = parquet::sort_for_lake(&merged)?;
        let mut added = Vec::new();
        let mut offset = 0;
        let mut n = 0;
        while offset < sorted.num_rows() {
            let len = options.max_rows_per_file.min(sorted.num_rows() - offset);
            let part = sorted.slice(offset, len);
            let name = format!("part-{txn_id}-{n:04}.parquet");
            let metadata = vec![
                KeyValue::new(
                    "tooltrail.schema_version".into(),
                    SCHEMA_VERSION.to_string(),
                ),
                KeyValue::new("tooltrail.txn_id".into(), txn_id.to_owned()),
                KeyValue::new("tooltrail.compacted_from".into(), files.len().to_string()),
            ];
            let props = parquet::writer_properties(&part, lake.zstd_level(), metadata);
            let written = parquet::write_file(&staged.join(&name), &part, props)?;
            let (min_time, max_time) = time_range(&part);
            added.push(FileRecord {
                path: format!("{dir}/{name}"),
                table: "events".into(),
                rows: part.num_rows() as u64,
                bytes: written.bytes,
                sha256: written.sha256,
                min_time,
                max_time,
            });
            offset += len;
            n += 1;
        }
        Ok(added)
    };
    swap_partition(
        lake,
        dir,
        Operation::Compact,
        &merged,
        write,
        stop_before_swap,
    )
}

/// Replaces files of the partition `dir` atomically for readers, the way
/// compaction does: `write(lake, staged_dir, txn_id)` writes the new files
/// into a hidden directory beside the partition and returns their records
/// (paths as they will be, `{dir}/{name}`); every other visible file of the
/// partition except `replaced` (paths relative to the lake root) is
/// hard-linked beside them. Then, under the exclusive lock, if the
/// partition's live files are still what they were, the entry (`operation`,
/// `removed: replaced`, `swap`) is appended and the two directories are
/// exchanged; the old one is retired. `None` when the partition changed
/// meanwhile (nothing is left behind). `stop_before_swap` leaves the
/// committed entry unfinished (crash tests).
pub(crate) fn swap_partition(
    lake: &mut Lake,
    dir: &str,
    operation: Operation,
    replaced: &[String],
    write: impl FnOnce(&Lake, &Path, &str) -> Result<Vec<FileRecord>>,
    stop_before_swap: bool,
) -> Result<Option<LogEntry>> {
    let prefix = format!("{dir}/");
    let before = live_in(lake.state(), &prefix);
    let txn_id = uuid::Uuid::now_v7().simple().to_string();
    let (parent, name) = dir
        .rsplit_once('/')
        .expect("a partition directory has a parent");
    let tag = match operation {
        Operation::Compact => "compact",
        Operation::Retention => "retention",
        Operation::Ingest => "ingest",
    };
    let staged_rel = format!("{parent}/.{name}.{tag}-{txn_id}");
    let staged = lake.root().join(&staged_rel);
    fs::create_dir_all(&staged).map_err(|e| Error::io(&staged, e))?;
    let result = (|| {
        let added = write(lake, &staged, &txn_id)?;
        // Everything else in the partition stays: link it into the new directory.
        let replaced_names: Vec<&str> = replaced
            .iter()
            .filter_map(|p| p.rsplit_once('/').map(|(_, n)| n))
            .collect();
        let live_dir = lake.root().join(dir);
        for entry in fs::read_dir(&live_dir).map_err(|e| Error::io(&live_dir, e))? {
            let entry = entry.map_err(|e| Error::io(&live_dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || replaced_names.contains(&name.as_ref()) {
                continue;
            }
            fs::hard_link(entry.path(), staged.join(name.as_ref()))
                .map_err(|e| Error::io(entry.path(), e))?;
        }
        crate::lake::log::sync_dir(&staged)?;

        let entry = LogEntry {
            version: LOG_FORMAT_VERSION,
            seq: 0,
            txn_id: txn_id.clone(),
            committed_at: Utc::now(),
            operation,
            writer: lake.writer_id().to_owned(),
            positions: Vec::new(),
            added,
            removed: replaced.to_vec(),
            keys: Vec::new(),
            swap: Some(DirSwap {
                dir: dir.to_owned(),
                staged: staged_rel.clone(),
            }),
        };
        let checked = |state: &LogState| {
            // A file added to or removed from this partition since we looked:
            // the new directory would lose it, so the partition waits.
            if live_in(state, &prefix) != before {
                return Err(Error::PartitionChanged {
                    dir: dir.to_owned(),
                });
            }
            Ok(())
        };
        let appended = lake.commit_exclusive(entry, checked, !stop_before_swap);
        let entry = match appended {
            Ok(entry) => entry,
            Err(Error::PartitionChanged { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(Some(entry))
    })();
    if !matches!(result, Ok(Some(_))) && staged.exists() {
        let _ = fs::remove_dir_all(&staged);
    }
    result
}

/// The live files of the log under `prefix` (a partition directory and `/`).
pub(crate) fn live_in(state: &LogState, prefix: &str) -> Vec<String> {
    state
        .live
        .range(prefix.to_owned()..)
        .take_while(|(p, _)| p.starts_with(prefix))
        .map(|(p, _)| p.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use ::parquet::file::reader::{FileReader, SerializedFileReader};
    use chrono::TimeZone;
    use tooltrail_schemas::lake::Source;

    use super::*;
    use crate::batch::{Pending, TimeWindow};
    use crate::lake::walk;
    use crate::metrics::Metrics;

    const HOUR: &str = "events/dt=2026-11-22/hour=09";

    fn add_small_file(lake: &mut Lake, first: usize, n: usize) {
        let window = TimeWindow {
            max_age: Duration::from_secs(10 * 365 * 86400),
            max_future: Duration::from_secs(3600),
        };
        let mut pending = Pending::new(window);
        let received = Utc.with_ymd_and_hms(2026, 11, 22, 9, 30, 0).unwrap();
        for i in first..first + n {
            let line = format!(
                r#"{{"schema_version":1,"event_id":"e{i}","time":"2026-11-22T09:{:02}:00Z","tenant_id":"acme","user_id":"u{}","server":"s","method":"tools/call","tool":"t","decision":"allow","status":200}}"#,
                i % 60,
                i % 7
            );
            pending
                .push(
                    line.as_bytes(),
                    received,
                    Source::File {
                        path: "f",
                        line: i as i64,
                    },
                )
                .unwrap();
        }
        pending
            .commit_to(lake, &Metrics::register(&mut Default::default()), "file")
            .unwrap();
    }

    fn visible(root: &Path) -> Vec<std::path::PathBuf> {
        walk(&root.join(HOUR))
            .unwrap()
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
            .collect()
    }

    /// Rows in the hour as a glob reader sees them: list, then read each footer.
    fn rows_seen(root: &Path) -> std::io::Result<i64> {
        let mut rows = 0;
        for entry in fs::read_dir(root.join(HOUR))? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "parquet") {
                let reader = SerializedFileReader::new(fs::File::open(&path)?)
                    .map_err(std::io::Error::other)?;
                rows += reader.metadata().file_metadata().num_rows();
            }
        }
        Ok(rows)
    }

    fn later() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
    }

    #[test]
    fn merges_the_small_files_of_a_closed_hour_keeping_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let mut lake = Lake::open(dir.path(), 3).unwrap();
        for k in 0..5 {
            add_small_file(&mut lake, k * 10, 10);
        }
        assert_eq!(visible(dir.path()).len(), 5);
        let summary = compact(&mut lake, &CompactOptions::default(), later()).unwrap();
        assert_eq!(
            (
                summary.hours,
                summary.files_in,
                summary.files_out,
                summary.rows
            ),
            (1, 5, 1, 50)
        );
        assert_eq!(visible(dir.path()).len(), 1);
        assert_eq!(rows_seen(dir.path()).unwrap(), 50);
        let hidden: Vec<_> = fs::read_dir(dir.path().join("events/dt=2026-11-22"))
            .unwrap()
            .collect();
        assert_eq!(hidden.len(), 1, "the old files left the table");
        assert_eq!(lake.sweep_retired(Duration::ZERO).unwrap(), 1);
        assert!(
            fs::read_dir(dir.path().join("_tooltrail/retired"))
                .unwrap()
                .next()
                .is_none(),
            "retired files are swept after the grace period"
        );
        // The log replays cleanly, and the lake's record matches the files.
        let reopened = Lake::open(dir.path(), 3).unwrap();
        let live: Vec<&String> = reopened.state().live.keys().collect();
        assert_eq!(live.len(), 1);
        assert!(visible(dir.path())[0].ends_with(live[0].rsplit('/').next().unwrap()));
    }

    #[test]
    fn open_hours_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let mut lake = Lake::open(dir.path(), 3).unwrap();
        add_small_file(&mut lake, 0, 5);
        add_small_file(&mut lake, 5, 5);
        let during = Utc.with_ymd_and_hms(2026, 11, 22, 9, 45, 0).unwrap();
        assert_eq!(
            compact(&mut lake, &CompactOptions::default(), during).unwrap(),
            CompactSummary::default()
        );
        assert_eq!(visible(dir.path()).len(), 2);
    }

    #[test]
    fn a_compaction_interrupted_after_its_log_entry_is_finished_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut lake = Lake::open(dir.path(), 3).unwrap();
        add_small_file(&mut lake, 0, 5);
        add_small_file(&mut lake, 5, 5);
        let files: Vec<FileRecord> = lake.state().live.values().cloned().collect();
        compact_hour(&mut lake, HOUR, &files, &CompactOptions::default(), true)
            .unwrap()
            .unwrap();
        assert_eq!(visible(dir.path()).len(), 2, "not swapped yet");
        drop(lake);
        Lake::open(dir.path(), 3).unwrap();
        assert_eq!(visible(dir.path()).len(), 1);
        assert_eq!(rows_seen(dir.path()).unwrap(), 10);
    }

    #[test]
    fn a_write_to_the_hour_during_compaction_defers_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut lake = Lake::open(dir.path(), 3).unwrap();
        add_small_file(&mut lake, 0, 5);
        add_small_file(&mut lake, 5, 5);
        let files: Vec<FileRecord> = lake.state().live.values().cloned().collect();
        // A late event lands in the hour through another writer.
        let mut other = Lake::open(dir.path(), 3).unwrap();
        add_small_file(&mut other, 10, 1);
        let outcome =
            compact_hour(&mut lake, HOUR, &files, &CompactOptions::default(), false).unwrap();
        assert!(outcome.is_none());
        assert_eq!(visible(dir.path()).len(), 3, "nothing was swapped");
        assert_eq!(rows_seen(dir.path()).unwrap(), 11);
        assert_eq!(
            fs::read_dir(dir.path().join("events/dt=2026-11-22"))
                .unwrap()
                .count(),
            1,
            "no staged debris"
        );
    }

    #[test]
    fn a_concurrent_reader_never_sees_a_row_twice_or_misses_one() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let mut lake = Lake::open(&root, 3).unwrap();
        let mut total = 0;
        let mut wrong = Vec::new();
        let mut reads = 0;
        for round in 0..8 {
            for _ in 0..3 {
                add_small_file(&mut lake, total, 7);
                total += 7;
            }
            let expected = total as i64;
            let stop = Arc::new(AtomicBool::new(false));
            let count = Arc::new(AtomicUsize::new(0));
            let reader = {
                let (root, stop, count) = (root.clone(), Arc::clone(&stop), Arc::clone(&count));
                std::thread::spawn(move || {
                    let mut bad = Vec::new();
                    while !stop.load(Ordering::Relaxed) || count.load(Ordering::Relaxed) == 0 {
                        // A file deleted between listing and opening is an error the
                        // reader sees and retries, never a silent miss.
                        if let Ok(rows) = rows_seen(&root) {
                            count.fetch_add(1, Ordering::Relaxed);
                            if rows != expected {
                                bad.push(rows);
                            }
                        }
                    }
                    bad
                })
            };
            let summary = compact(&mut lake, &CompactOptions::default(), later()).unwrap();
            assert_eq!(summary.hours, 1, "round {round}");
            stop.store(true, Ordering::Relaxed);
            wrong.extend(reader.join().unwrap());
            reads += count.load(Ordering::Relaxed);
        }
        assert!(wrong.is_empty(), "a reader saw wrong row counts: {wrong:?}");
        assert!(reads >= 8);
        assert_eq!(rows_seen(&root).unwrap(), total as i64);
    }
}
