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
        let written = table.write(Partition::hour(time), events(file, 20, time), Vec::new());
        let written = written.await.unwrap();
        table.commit(&Commit::append(vec![written])).await.unwrap();
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
            hours: 1,
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
        let written = table.write(
            Partition::hour(at(9, 0)),
            events(file, 5, at(9, 0)),
            Vec::new(),
        );
        let written = written.await.unwrap();
        table.commit(&Commit::append(vec![written])).await.unwrap();
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
    let err = compact_hour(
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
