//! A crash at each instant that can split a lake commit: after the files are
//! staged, after the log entry (the commit point), and between publishing one
//! file and the next. The process is simulated by a panic at the fail point
//! (the files on disk are what a kill -9 leaves); the lake is then reopened as
//! a restarted writer would, and must hold each transaction whole or not at
//! all, with positions that agree. (The end-to-end test kills the real binary
//! at random instants; this one hits every instant on purpose.)
//!
//! Fail points are global to the process, so this binary holds only these
//! tests, and `FailScenario` runs them one at a time.

use std::collections::BTreeSet;
use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow::array::{Array, AsArray};
use chrono::Utc;
use fail::FailScenario;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tooltrail_ingest::Error;
use tooltrail_ingest::batch::{Pending, TimeWindow};
use tooltrail_ingest::lake::Lake;
use tooltrail_ingest::metrics::Metrics;
use tooltrail_schemas::lake::Source;

/// Five events, at offsets `first..first + 5` of partition 0, over two hours
/// (two files).
fn transaction(first: i64) -> Pending {
    let mut pending = Pending::new(TimeWindow {
        max_age: Duration::from_secs(10 * 365 * 86400),
        max_future: Duration::from_secs(3600),
    });
    for offset in first..first + 5 {
        let hour = 9 + offset % 2;
        let line = format!(
            r#"{{"schema_version":1,"event_id":"e{offset}","time":"2026-11-22T{hour:02}:00:00Z","tenant_id":"acme","user_id":"amy","server":"github","method":"tools/call","tool":"create_issue","decision":"allow","status":200}}"#
        );
        pending.cover("t", 0, offset);
        pending
            .push(
                line.as_bytes(),
                Utc::now(),
                Source::Kafka {
                    topic: "t",
                    partition: 0,
                    offset,
                },
            )
            .unwrap();
    }
    pending
}

fn visible_files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut dirs = vec![root.join("events")];
    while let Some(dir) = dirs.pop() {
        for item in fs::read_dir(&dir).unwrap() {
            let path = item.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path);
            }
        }
    }
    out
}

/// Every event_id in the visible files, with duplicates counted.
fn event_ids(root: &Path) -> (BTreeSet<String>, usize) {
    let (mut ids, mut rows) = (BTreeSet::new(), 0);
    for path in visible_files(root) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let column = batch.column_by_name("event_id").unwrap().as_string::<i32>();
            rows += column.len();
            ids.extend(column.iter().map(|v| v.unwrap().to_owned()));
        }
    }
    (ids, rows)
}

/// Commits offsets 0..=4, then crashes committing 5..=9 at `point`, and
/// reopens the lake. Returns the lake dir and the reopened lake.
fn crash_at(point: &str) -> (tempfile::TempDir, Lake) {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::register(&mut Default::default());
    let mut lake = Lake::open(dir.path(), 3).unwrap();
    transaction(0)
        .commit_to(&mut lake, &metrics, "kafka")
        .unwrap();
    fail::cfg(point, "panic").unwrap();
    let crashed = catch_unwind(AssertUnwindSafe(|| {
        transaction(5).commit_to(&mut lake, &metrics, "kafka")
    }));
    fail::remove(point);
    assert!(crashed.is_err(), "the commit did not reach {point}");
    drop(lake);
    let reopened = Lake::open(dir.path(), 3).unwrap();
    (dir, reopened)
}

fn expected_ids(offsets: std::ops::Range<i64>) -> BTreeSet<String> {
    offsets.map(|o| format!("e{o}")).collect()
}

#[test]
fn a_crash_before_the_log_entry_leaves_the_transaction_out_and_its_offsets_to_redo() {
    let scenario = FailScenario::setup();
    let (dir, mut lake) = crash_at("lake::commit::staged");
    assert_eq!(lake.state().last_seq, 1);
    assert_eq!(lake.state().next_offset("t", 0), Some(5));
    assert_eq!(event_ids(dir.path()), (expected_ids(0..5), 5));
    // The restarted consumer reads 5..=9 again and commits them.
    let metrics = Metrics::register(&mut Default::default());
    transaction(5)
        .commit_to(&mut lake, &metrics, "kafka")
        .unwrap();
    assert_eq!(event_ids(dir.path()), (expected_ids(0..10), 10));
    scenario.teardown();
}

/// After the commit point, however far publishing got: the transaction is
/// whole once the lake is reopened, and its offsets cannot be committed again.
fn committed_whole_after(point: &str) {
    let (dir, mut lake) = crash_at(point);
    assert_eq!(lake.state().last_seq, 2);
    assert_eq!(lake.state().next_offset("t", 0), Some(10));
    assert_eq!(visible_files(dir.path()).len(), 4);
    assert_eq!(event_ids(dir.path()), (expected_ids(0..10), 10));
    let metrics = Metrics::register(&mut Default::default());
    let again = transaction(5).commit_to(&mut lake, &metrics, "kafka");
    assert!(
        matches!(
            again,
            Err(Error::Conflict {
                committed: 10,
                start: 5,
                ..
            })
        ),
        "{again:?}"
    );
    assert_eq!(event_ids(dir.path()), (expected_ids(0..10), 10));
}

#[test]
fn a_crash_after_the_log_entry_is_finished_on_reopening() {
    let scenario = FailScenario::setup();
    committed_whole_after("lake::commit::logged");
    scenario.teardown();
}

#[test]
fn a_crash_between_publishing_two_files_is_finished_on_reopening() {
    let scenario = FailScenario::setup();
    committed_whole_after("lake::publish::renamed");
    scenario.teardown();
}
