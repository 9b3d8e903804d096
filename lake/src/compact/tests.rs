use arrow::array::AsArray;
use arrow::datatypes::TimestampMicrosecondType;
use chrono::TimeZone;
use tooltrail_schemas::lake::{EventBatchBuilder, Source};

use super::*;
use crate::tables::EVENTS;
use crate::{Location, Metrics, Snapshot};

fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, hour, minute, 0).unwrap()
}

/// `n` events of three users; the users' times interleave across files.
fn events(file: usize, n: usize, time: DateTime<Utc>) -> RecordBatch {
    let mut builder = EventBatchBuilder::new();
    for i in 0..n {
        let t = time + chrono::TimeDelta::seconds((i * 7 + file) as i64);
        let user = format!("u{}", (i + file) % 3);
        let event = crate::testing::event(&format!("f{file}-{i}"), t, &user);
        builder.append(
            &event,
            t,
            Source::File {
                path: "f",
                line: i as i64,
            },
        );
    }
    builder.finish().unwrap()
}

/// Commits one file of `n` events of `events(file, ..)` at `time`'s hour.
async fn append(table: &mut Table, file: usize, n: usize, time: DateTime<Utc>) {
    let written = table.write(Partition::hour(time), events(file, n, time), Vec::new());
    let written = written.await.unwrap();
    table.commit(&Commit::append(vec![written])).await.unwrap();
}

#[tokio::test]
async fn merges_the_small_files_of_closed_hours_in_sort_order_and_old_versions_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let mut table = Table::open(&location, &EVENTS, 1, Metrics::default())
        .await
        .unwrap();
    for (file, time) in [
        (0, at(9, 0)),
        (1, at(9, 10)),
        (2, at(9, 20)),
        (3, at(10, 0)),
        (4, at(10, 5)),
    ] {
        append(&mut table, file, 20, time).await;
    }
    let before = table.snapshot().await.unwrap();
    // At 10:30 the 09 hour is an hour old... not yet: it ended at 10:00.
    let summary = compact(&mut table, &CompactOptions::default(), at(10, 30))
        .await
        .unwrap();
    assert_eq!(summary, CompactSummary::default());
    let summary = compact(&mut table, &CompactOptions::default(), at(11, 0))
        .await
        .unwrap();
    assert_eq!(
        summary,
        CompactSummary {
            partitions: 1,
            groups: 1,
            files_in: 3,
            files_out: 1,
            rows: 60,
            deferred: 0
        }
    );
    let after = Snapshot::load(&location, &EVENTS).await.unwrap().unwrap();
    let files = after.files().unwrap();
    assert_eq!(files.len(), 3, "one for 09, two for 10 (still open)");
    let nine: Vec<_> = files
        .iter()
        .filter(|f| f.path.contains("hour=09"))
        .collect();
    assert_eq!(nine.len(), 1);
    // Sorted by user, then time.
    let rows = after
        .read_file(&nine[0].path, Some(&["user_id", "time"]))
        .await
        .unwrap();
    // Projected columns come in the file's order.
    let users = rows[0]
        .column_by_name("user_id")
        .unwrap()
        .as_string::<i32>();
    let times = rows[0].column_by_name("time").unwrap();
    let times = times.as_primitive::<TimestampMicrosecondType>();
    let keys: Vec<_> = (0..rows[0].num_rows())
        .map(|i| (users.value(i).to_owned(), times.value(i)))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(keys.len(), 60);
    // A reader still on the version before compaction reads its files.
    let old: usize = before.files().unwrap().len();
    assert_eq!(old, 5);
    for file in before.files().unwrap() {
        before.read_file(&file.path, None).await.unwrap();
    }
    // Nothing more to do.
    let again = compact(&mut table, &CompactOptions::default(), at(11, 0))
        .await
        .unwrap();
    assert_eq!(again, CompactSummary::default());
}

#[tokio::test]
async fn an_hour_another_writer_changed_first_waits_for_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let mut table = Table::open(&location, &EVENTS, 1, Metrics::default())
        .await
        .unwrap();
    for file in 0..2 {
        append(&mut table, file, 5, at(9, 0)).await;
    }
    // Another compactor (or retention) removes a file of the hour first.
    let mut other = Table::open(&location, &EVENTS, 1, Metrics::default())
        .await
        .unwrap();
    let theirs = other.snapshot().await.unwrap();
    let files = theirs.files().unwrap();
    let remove = theirs.remove(&files[0].path).unwrap().unwrap();
    let commit = Commit::removing(Operation::Retention, vec![remove]);
    // The compactor read its snapshot before that commit.
    let stale = table.snapshot().await.unwrap();
    let stale_files = stale.files().unwrap();
    other.commit(&commit).await.unwrap();
    let err = compact_group(
        &mut table,
        &stale,
        &Partition::hour(at(9, 0)),
        &stale_files,
        &CompactOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, Error::FileGone { .. }), "{err}");
    let after = Snapshot::load(&location, &EVENTS).await.unwrap().unwrap();
    assert_eq!(after.files().unwrap().len(), 1, "nothing was swapped in");
}

fn file(path: &str, size: i64) -> FileEntry {
    FileEntry {
        path: path.into(),
        partition: Vec::new(),
        size,
        rows: None,
    }
}

#[test]
fn small_files_are_packed_into_groups_of_about_the_target_and_lone_files_stay() {
    let paths = |groups: Vec<Vec<FileEntry>>| -> Vec<Vec<String>> {
        groups
            .into_iter()
            .map(|g| g.into_iter().map(|f| f.path).collect())
            .collect()
    };
    let files = vec![
        file("a", 40),
        file("b", 40),
        file("c", 30),
        file("d", 90),
        file("e", 10),
        file("f", 100),
    ];
    // c would take a+b to 110: the group closes before it. c+d would be 120: c stays alone,
    // and so does f.
    assert_eq!(paths(groups(files, 100)), [vec!["a", "b"], vec!["d", "e"]]);
    assert!(groups(vec![file("a", 1)], 100).is_empty());
    // A target below every file: nothing to merge.
    assert!(groups(vec![file("a", 5), file("b", 5)], 1).is_empty());
}

#[tokio::test]
async fn an_hour_of_many_small_files_is_merged_in_groups_each_its_own_commit() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let mut table = Table::open(&location, &EVENTS, 1, Metrics::default())
        .await
        .unwrap();
    for file in 0..6 {
        let time = at(9, file as u32);
        append(&mut table, file, 20, time).await;
    }
    let sizes: Vec<i64> = table
        .snapshot()
        .await
        .unwrap()
        .files()
        .unwrap()
        .iter()
        .map(|f| f.size)
        .collect();
    let largest = *sizes.iter().max().unwrap() as u64;
    let total: u64 = sizes.iter().map(|s| *s as u64).sum();
    // Room for two or three files per group, not six.
    let options = CompactOptions {
        target_file_bytes: largest * 3 - 1,
        ..CompactOptions::default()
    };
    let version = table.snapshot().await.unwrap().version();
    let summary = compact(&mut table, &options, at(11, 0)).await.unwrap();
    assert_eq!(summary.partitions, 1);
    assert!(
        summary.groups >= 2 && summary.files_in == 6 && summary.files_out == summary.groups,
        "{summary:?} for files of {sizes:?}"
    );
    let after = Snapshot::load(&location, &EVENTS).await.unwrap().unwrap();
    assert_eq!(after.version(), version.map(|v| v + summary.groups as u64));
    let rows: usize = after.files().unwrap().iter().filter_map(|f| f.rows).sum();
    assert_eq!(rows, 120);
    for merged in after.files().unwrap() {
        assert!((merged.size as u64) < total, "each group is its own file");
    }
}

#[tokio::test]
async fn day_partitioned_tables_are_compacted_once_their_day_has_ended() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let mut alerts = Table::open(&location, &crate::tables::ALERTS, 1, Metrics::default())
        .await
        .unwrap();
    let day = at(9, 0).date_naive();
    for id in ["a1", "a2", "a3"] {
        let written = alerts.write(
            Partition::day(day),
            crate::testing::alerts(at(9, 0), &[("acme", id), ("globex", id)]),
            Vec::new(),
        );
        let written = written.await.unwrap();
        alerts.commit(&Commit::append(vec![written])).await.unwrap();
    }
    let options = CompactOptions::default();
    // 23:30 on the day: still open.
    let late = Utc.with_ymd_and_hms(2026, 11, 22, 23, 30, 0).unwrap();
    let open = compact_tables(
        &location,
        crate::tables::ALL,
        &options,
        1,
        &Metrics::default(),
        late,
    )
    .await
    .unwrap();
    assert_eq!(
        open,
        [("alerts", CompactSummary::default())],
        "only tables that exist"
    );
    let next_day = Utc.with_ymd_and_hms(2026, 11, 23, 1, 0, 0).unwrap();
    let done = compact_tables(
        &location,
        crate::tables::ALL,
        &options,
        1,
        &Metrics::default(),
        next_day,
    )
    .await
    .unwrap();
    assert_eq!(done[0].1.files_in, 3);
    assert_eq!(done[0].1.files_out, 1);
    let after = Snapshot::load(&location, &crate::tables::ALERTS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.files().unwrap().len(), 1);
    assert_eq!(after.files().unwrap()[0].rows, Some(3 * 2));
    assert!(
        !dir.path().join("events").exists(),
        "compaction creates no table"
    );
}

/// `up`'s task compacts as of its clock, counts what it merged, and stops
/// when told.
#[tokio::test(start_paused = true)]
async fn the_periodic_task_compacts_closed_partitions_and_counts_them() {
    use crate::compact::config::CompactionConfig;
    use crate::compact::periodic::Periodic;
    use crate::metrics::{CompactionMetrics, OutcomeLabel};

    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let mut table = Table::open(&location, &EVENTS, 1, Metrics::default())
        .await
        .unwrap();
    for file in 0..3 {
        let time = at(9, file as u32);
        append(&mut table, file, 10, time).await;
    }
    let metrics = CompactionMetrics::default();
    let task = Periodic::new(
        &location,
        CompactionConfig::default(),
        crate::tables::ALL,
        1,
        metrics.clone(),
    )
    .with_clock(std::sync::Arc::new(|| at(11, 0)));
    let token = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(task.run(token.clone()));
    let ok = OutcomeLabel { outcome: "ok" };
    // The clock is paused: each sleep lets the task run an interval's work.
    for _ in 0..10 {
        if metrics.runs.get_or_create(&ok).get() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    token.cancel();
    running.await.unwrap();
    assert!(metrics.runs.get_or_create(&ok).get() >= 2);
    let events = Metrics::table("events");
    assert_eq!(metrics.files_in.get_or_create(&events).get(), 3);
    assert_eq!(metrics.files_out.get_or_create(&events).get(), 1);
    let after = Snapshot::load(&location, &EVENTS).await.unwrap().unwrap();
    assert_eq!(after.files().unwrap().len(), 1);
}
