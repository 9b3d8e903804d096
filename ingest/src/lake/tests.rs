use std::fs;
use std::time::Duration;

use ::parquet::file::reader::{FileReader, SerializedFileReader};
use chrono::{TimeZone, Utc};
use tooltrail_schemas::lake::Source;

use super::*;
use crate::batch::{Pending, TimeWindow};
use crate::metrics::Metrics;

fn window() -> TimeWindow {
    TimeWindow {
        max_age: Duration::from_secs(10 * 365 * 86400),
        max_future: Duration::from_secs(3600),
    }
}

fn event_line(id: &str, user: &str, time: &str) -> String {
    format!(
        r#"{{"schema_version":1,"event_id":"{id}","time":"{time}","tenant_id":"acme","user_id":"{user}","server":"github","method":"tools/call","tool":"create_issue","decision":"allow","status":200}}"#
    )
}

fn parquet_files(root: &Path, table: &str) -> Vec<PathBuf> {
    walk(&root.join(table))
        .unwrap()
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect()
}

fn rows(path: &Path) -> i64 {
    let reader = SerializedFileReader::new(fs::File::open(path).unwrap()).unwrap();
    reader.metadata().file_metadata().num_rows()
}

fn received() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
}

fn pending_with(lines: &[String], topic: &str, partition: i32, first_offset: i64) -> Pending {
    let mut pending = Pending::new(window());
    for (i, line) in lines.iter().enumerate() {
        let offset = first_offset + i as i64;
        pending.cover(topic, partition, offset);
        let _ = pending.push(
            line.as_bytes(),
            received(),
            Source::Kafka {
                topic,
                partition,
                offset,
            },
        );
    }
    pending
}

#[test]
fn commits_events_by_hour_and_quarantines_rejects_with_positions() {
    let dir = tempfile::tempdir().unwrap();
    let mut lake = Lake::open(dir.path(), 3).unwrap();
    let metrics = Metrics::register(&mut Default::default());
    let lines = vec![
        event_line("a", "bob", "2026-11-22T09:10:00Z"),
        event_line("b", "alice", "2026-11-22T09:59:59.999Z"),
        event_line("c", "alice", "2026-11-22T10:00:00Z"),
        "{not json".to_owned(),
    ];
    let mut pending = pending_with(&lines, "t", 0, 100);
    let (entry, stats) = pending
        .commit_to(&mut lake, &metrics, "kafka")
        .unwrap()
        .unwrap();
    assert_eq!(stats.events, 3);
    assert_eq!(stats.quarantined.get("not_json"), Some(&1));
    assert_eq!(
        entry.positions,
        vec![PositionRange {
            topic: "t".into(),
            partition: 0,
            start: 100,
            end: 103
        }]
    );
    let events = parquet_files(dir.path(), "events");
    let names: Vec<String> = events
        .iter()
        .map(|p| {
            p.strip_prefix(dir.path())
                .unwrap()
                .parent()
                .unwrap()
                .display()
                .to_string()
        })
        .collect();
    assert_eq!(
        names,
        [
            "events/dt=2026-11-22/hour=09",
            "events/dt=2026-11-22/hour=10"
        ]
    );
    assert_eq!(events.iter().map(|p| rows(p)).sum::<i64>(), 3);
    let quarantine = parquet_files(dir.path(), "quarantine");
    assert_eq!(quarantine.len(), 1);
    assert!(
        quarantine[0]
            .to_string_lossy()
            .contains("quarantine/dt=2026-11-22/")
    );
    // The log records each file with its hash, and the lake's position.
    assert_eq!(entry.added.len(), 3);
    for file in &entry.added {
        let bytes = fs::read(dir.path().join(&file.path)).unwrap();
        use sha2::Digest;
        assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), file.sha256);
    }
    let reopened = Lake::open(dir.path(), 3).unwrap();
    assert_eq!(reopened.state().next_offset("t", 0), Some(104));
}

#[test]
fn files_are_sorted_and_carry_their_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let mut lake = Lake::open(dir.path(), 3).unwrap();
    let metrics = Metrics::register(&mut Default::default());
    let lines = vec![
        event_line("a", "zed", "2026-11-22T09:00:03Z"),
        event_line("b", "amy", "2026-11-22T09:00:02Z"),
        event_line("c", "amy", "2026-11-22T09:00:01Z"),
    ];
    pending_with(&lines, "t", 1, 0)
        .commit_to(&mut lake, &metrics, "kafka")
        .unwrap();
    let file = &parquet_files(dir.path(), "events")[0];
    let reader = SerializedFileReader::new(fs::File::open(file).unwrap()).unwrap();
    let meta = reader.metadata();
    let kv = meta.file_metadata().key_value_metadata().unwrap();
    let get = |k: &str| kv.iter().find(|e| e.key == k).and_then(|e| e.value.clone());
    assert_eq!(get("tooltrail.schema_version").as_deref(), Some("1"));
    assert!(
        get("tooltrail.positions")
            .unwrap()
            .contains(r#""partition":1"#)
    );
    let rg = meta.row_group(0);
    assert_eq!(rg.sorting_columns().map(|s| s.len()), Some(3));
    let user_idx = rg
        .columns()
        .iter()
        .position(|c| c.column_path().string() == "user_id")
        .unwrap();
    assert!(
        rg.column(user_idx).bloom_filter_offset().is_some(),
        "user_id has a bloom filter"
    );
    assert!(
        rg.column(user_idx).column_index_offset().is_some(),
        "page index is written"
    );

    let batch = ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        fs::File::open(file).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap()
    .next()
    .unwrap()
    .unwrap();
    let ids = batch
        .column_by_name("event_id")
        .unwrap()
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .unwrap();
    assert_eq!(
        ids.iter().flatten().collect::<Vec<_>>(),
        ["c", "b", "a"],
        "sorted by tenant, user, time"
    );
}

/// A lake holding one committed event, and that transaction's log entry.
fn lake_with_one_event() -> (tempfile::TempDir, LogEntry) {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::register(&mut Default::default());
    let mut lake = Lake::open(dir.path(), 3).unwrap();
    let lines = vec![event_line("a", "amy", "2026-11-22T09:00:00Z")];
    let (entry, _) = pending_with(&lines, "t", 0, 0)
        .commit_to(&mut lake, &metrics, "kafka")
        .unwrap()
        .unwrap();
    (dir, entry)
}

#[test]
fn a_transaction_interrupted_after_its_log_entry_is_finished_on_open() {
    let (dir, entry) = lake_with_one_event();
    // Simulate a crash between the log entry and the rename.
    let published = dir.path().join(&entry.added[0].path);
    fs::rename(&published, staged_path(&published)).unwrap();
    assert!(parquet_files(dir.path(), "events").is_empty());
    Lake::open(dir.path(), 3).unwrap();
    assert_eq!(parquet_files(dir.path(), "events"), vec![published]);
}

#[test]
fn a_missing_committed_file_is_an_error_naming_it() {
    let (dir, entry) = lake_with_one_event();
    fs::remove_file(dir.path().join(&entry.added[0].path)).unwrap();
    let err = Lake::open(dir.path(), 3)
        .err()
        .expect("a lost file must be reported");
    assert!(err.to_string().contains(&entry.added[0].path), "{err}");
}

#[test]
fn staged_files_of_an_uncommitted_transaction_stay_invisible() {
    let dir = tempfile::tempdir().unwrap();
    Lake::open(dir.path(), 3).unwrap();
    let stray = dir
        .path()
        .join("events/dt=2026-11-22/hour=09/.part-x-0000.parquet.tmp");
    fs::create_dir_all(stray.parent().unwrap()).unwrap();
    fs::write(&stray, b"half written").unwrap();
    let lake = Lake::open(dir.path(), 3).unwrap();
    assert!(parquet_files(dir.path(), "events").is_empty());
    assert!(
        stray.exists(),
        "a fresh staged file may belong to a live writer"
    );
    assert_eq!(lake.state().last_seq, 0);
}

#[test]
fn a_zombie_writer_cannot_commit_offsets_another_writer_holds() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::register(&mut Default::default());
    let mut a = Lake::open(dir.path(), 3).unwrap();
    let mut b = Lake::open(dir.path(), 3).unwrap();
    let lines: Vec<String> = (0..5)
        .map(|i| event_line(&format!("e{i}"), "amy", "2026-11-22T09:00:00Z"))
        .collect();
    pending_with(&lines, "t", 0, 0)
        .commit_to(&mut a, &metrics, "kafka")
        .unwrap();
    let err = pending_with(&lines[2..], "t", 0, 2)
        .commit_to(&mut b, &metrics, "kafka")
        .err()
        .unwrap();
    assert!(
        matches!(
            err,
            Error::Conflict {
                committed: 5,
                start: 2,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        parquet_files(dir.path(), "events").len(),
        1,
        "the refused batch left no file"
    );
    let staged = walk(&dir.path().join("events")).unwrap();
    assert_eq!(
        staged.len(),
        1,
        "the refused batch left no staged file: {staged:?}"
    );
}

/// Commits `count` one-event transactions, each with the next offset of
/// partition 0 and an idempotency key.
fn commit_many(lake: &mut Lake, metrics: &Metrics, first: i64, count: i64) {
    for offset in first..first + count {
        let line = event_line(&format!("e{offset}"), "amy", "2026-11-22T09:00:00Z");
        let mut pending = pending_with(&[line], "t", 0, offset);
        pending.add_key(format!("http:k{offset}"));
        pending.commit_to(lake, metrics, "kafka").unwrap();
    }
}

fn checkpoints(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(root.join("_tooltrail/checkpoints"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_checkpoint_restores_the_state_a_full_replay_gives() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::register(&mut Default::default());
    let mut lake = Lake::open(dir.path(), 3).unwrap().with_checkpoint_every(3);
    commit_many(&mut lake, &metrics, 0, 7);
    let expected = lake.state().clone();
    assert_eq!(expected.last_seq, 7);
    // Checkpoints at 3 and 6; none older than the two newest is kept.
    commit_many(&mut lake, &metrics, 7, 3);
    let expected_later = lake.state().clone();
    assert_eq!(
        checkpoints(dir.path()),
        vec![format!("{:020}.json", 6), format!("{:020}.json", 9)]
    );

    // Opening reads the checkpoint and only the entry after it.
    let (_, after) = Log::open(
        &dir.path().join("_tooltrail/log"),
        &dir.path().join("_tooltrail/checkpoints"),
    )
    .unwrap();
    assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![10]);
    let reopened = Lake::open(dir.path(), 3).unwrap();
    assert_eq!(reopened.state(), &expected_later);
    assert_ne!(reopened.state(), &expected);

    // Without checkpoints the whole log is replayed, to the same state.
    fs::remove_dir_all(dir.path().join("_tooltrail/checkpoints")).unwrap();
    let replayed = Lake::open(dir.path(), 3).unwrap();
    assert_eq!(replayed.state(), &expected_later);
    assert!(replayed.state().keys.contains("http:k0"));
    assert_eq!(replayed.state().next_offset("t", 0), Some(10));
}

#[test]
fn a_lake_past_the_interval_without_a_checkpoint_gets_one_at_its_next_commit() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::register(&mut Default::default());
    let mut lake = Lake::open(dir.path(), 3).unwrap();
    commit_many(&mut lake, &metrics, 0, 5);
    assert!(
        checkpoints(dir.path()).is_empty(),
        "5 entries < CHECKPOINT_EVERY"
    );
    drop(lake);
    // As a lake written by an older build: the next commit saves the state.
    let mut reopened = Lake::open(dir.path(), 3).unwrap().with_checkpoint_every(4);
    commit_many(&mut reopened, &metrics, 5, 1);
    assert_eq!(checkpoints(dir.path()), vec![format!("{:020}.json", 6)]);
}

#[test]
fn a_damaged_checkpoint_is_skipped_for_the_one_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::register(&mut Default::default());
    let mut lake = Lake::open(dir.path(), 3).unwrap().with_checkpoint_every(2);
    commit_many(&mut lake, &metrics, 0, 5);
    let expected = lake.state().clone();
    fs::write(
        dir.path()
            .join(format!("_tooltrail/checkpoints/{:020}.json", 4)),
        b"{\"version\": 1, \"seq\"",
    )
    .unwrap();
    let (log, after) = Log::open(
        &dir.path().join("_tooltrail/log"),
        &dir.path().join("_tooltrail/checkpoints"),
    )
    .unwrap();
    assert_eq!(log.checkpoint_seq(), 2, "the older checkpoint is used");
    assert_eq!(after.len(), 3);
    assert_eq!(log.state(), &expected);
}

#[test]
fn an_entry_another_writer_left_unpublished_is_finished_before_a_checkpoint_covers_it() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::register(&mut Default::default());
    let mut a = Lake::open(dir.path(), 3).unwrap().with_checkpoint_every(2);
    let mut b = Lake::open(dir.path(), 3).unwrap();
    commit_many(&mut a, &metrics, 0, 1);
    // b commits, then "crashes" before publishing: its file stays staged.
    let line = event_line("b1", "bob", "2026-11-22T10:00:00Z");
    let (entry, _) = pending_with(&[line], "t", 1, 0)
        .commit_to(&mut b, &metrics, "kafka")
        .unwrap()
        .unwrap();
    let published = dir.path().join(&entry.added[0].path);
    fs::rename(&published, staged_path(&published)).unwrap();
    drop(b);
    // a's next commit is due a checkpoint covering b's entry.
    commit_many(&mut a, &metrics, 1, 1);
    assert_eq!(checkpoints(dir.path()), vec![format!("{:020}.json", 3)]);
    assert!(
        published.exists(),
        "b's file was published before the checkpoint"
    );
    let reopened = Lake::open(dir.path(), 3).unwrap();
    assert!(reopened.state().live.contains_key(&entry.added[0].path));
    assert_eq!(parquet_files(dir.path(), "events").len(), 3);
}

#[test]
fn a_replay_yields_each_hour_in_order_since_a_time_and_one_partition_in_offset_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut lake = Lake::open(dir.path(), 1).unwrap();
    let metrics = Metrics::register(&mut Default::default());
    // Partition 0 holds two hours, written out of time order within each;
    // partition 1 one event in the first hour.
    let zero = [
        event_line("a2", "alice", "2026-11-22T09:40:00Z"),
        event_line("a1", "alice", "2026-11-22T09:10:00Z"),
        event_line("b1", "alice", "2026-11-22T10:05:00Z"),
        event_line("old", "alice", "2026-11-22T08:00:00Z"),
    ];
    pending_with(&zero, "events", 0, 0)
        .commit_to(&mut lake, &metrics, "kafka")
        .unwrap();
    pending_with(
        &[event_line("p1", "bob", "2026-11-22T09:20:00Z")],
        "events",
        1,
        0,
    )
    .commit_to(&mut lake, &metrics, "kafka")
    .unwrap();
    let since = Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap();
    let ids = |replay: replay::Replay| -> Vec<Vec<String>> {
        replay
            .map(|hour| hour.unwrap().into_iter().map(|e| e.event_id).collect())
            .collect()
    };

    // Everything since 09:00, hour by hour, each in event-time order.
    assert_eq!(
        ids(replay::Replay::since(&lake, since)),
        [vec!["a1", "p1", "a2"], vec!["b1"]]
    );
    // Partition 0 alone, in offset order (a2 was read before a1).
    assert_eq!(
        ids(replay::Replay::of_partition(&lake, since, "events", 0)),
        [vec!["a2", "a1"], vec!["b1"]]
    );
    // The events come back as they went in, from the detector's columns.
    let first = replay::Replay::since(&lake, since).next().unwrap().unwrap();
    let expected = tooltrail_schemas::decode(zero[1].as_bytes()).unwrap();
    assert_eq!(first[0], expected);
}
