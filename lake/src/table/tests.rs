use chrono::TimeZone;
use datafusion::prelude::SessionContext;
use tooltrail_schemas::lake::{EventBatchBuilder, Source};

use super::*;
use crate::tables::EVENTS;

fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, hour, minute, 0).unwrap()
}

/// `n` events of `users` users at `time`, as a lake batch.
fn events(n: usize, users: usize, time: DateTime<Utc>) -> RecordBatch {
    let mut builder = EventBatchBuilder::new();
    for i in 0..n {
        let id = format!("e{i}-{}", time.timestamp());
        let event = crate::testing::event(&id, time, &format!("u{}", i % users));
        builder.append(
            &event,
            time,
            Source::File {
                path: "f",
                line: i as i64,
            },
        );
    }
    builder.finish().unwrap()
}

/// One file of `n` events of `users` users at `time`, written and not yet committed.
async fn write_at(table: &Table, time: DateTime<Utc>, n: usize, users: usize) -> DataFile {
    table
        .write(Partition::hour(time), events(n, users, time), Vec::new())
        .await
        .unwrap()
}

async fn open(location: &Location) -> Table {
    Table::open(location, &EVENTS, 1, Metrics::default())
        .await
        .unwrap()
}

async fn sql(snapshot: &Snapshot, query: &str) -> Vec<RecordBatch> {
    let ctx = SessionContext::new();
    let provider = snapshot.provider(&ctx.state()).unwrap();
    ctx.register_table("events", provider).unwrap();
    ctx.sql(query).await.unwrap().collect().await.unwrap()
}

async fn count(snapshot: &Snapshot) -> i64 {
    count_where(snapshot, "true").await
}

#[tokio::test]
async fn committed_files_read_back_with_their_partitions_and_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let mut table = open(&location).await;
    let nine = write_at(&table, at(9, 5), 30, 3).await;
    let ten = write_at(&table, at(10, 1), 12, 2).await;
    assert!(
        nine.add.path.starts_with("dt=2026-11-22/hour=09/"),
        "{}",
        nine.add.path
    );
    let stats: serde_json::Value = serde_json::from_str(nine.add.stats.as_ref().unwrap()).unwrap();
    assert_eq!(stats["numRecords"], 30);
    assert_eq!(stats["minValues"]["user_id"], "u0");
    assert_eq!(stats["maxValues"]["user_id"], "u2");
    table
        .commit(&Commit::append(vec![nine.clone(), ten]))
        .await
        .unwrap();

    // The SHA-256 in the tag is that of the bytes stored.
    let stored = std::fs::read(dir.path().join("events").join(&nine.add.path)).unwrap();
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&stored));
    assert_eq!(
        nine.add.tags.unwrap()[SHA256_TAG].as_deref(),
        Some(sha.as_str())
    );

    let reader = Snapshot::load(&location, &EVENTS).await.unwrap().unwrap();
    assert_eq!(count(&reader).await, 42);
    let by_hour = sql(
        &reader,
        "SELECT hour, count(*) AS n FROM events WHERE dt = '2026-11-22' GROUP BY hour ORDER BY hour",
    )
    .await;
    let text = arrow::util::pretty::pretty_format_batches(&by_hour)
        .unwrap()
        .to_string();
    assert!(
        text.contains("| 09   | 30 |") && text.contains("| 10   | 12 |"),
        "{text}"
    );
    let files = reader.files().unwrap();
    assert_eq!(files.len(), 2);
    assert_eq!(files[0].rows, Some(30));
}

#[tokio::test]
async fn a_file_is_invisible_until_committed() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let table = open(&location).await;
    write_at(&table, at(9, 0), 5, 1).await;
    let reader = Snapshot::load(&location, &EVENTS).await.unwrap().unwrap();
    assert_eq!(count(&reader).await, 0);
    assert!(reader.files().unwrap().is_empty());
}

#[tokio::test]
async fn a_partition_resumes_from_the_table_and_a_replayed_batch_is_fenced() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let app_id = Position::app_id("tooltrail", "audit", 3);
    let mut first = open(&location).await;
    let mut second = open(&location).await;
    let file = write_at(&first, at(9, 0), 10, 2).await;
    let commit = Commit::append(vec![file]).with_positions(vec![Position {
        app_id: app_id.clone(),
        first: 0,
        last: 9,
    }]);
    first.commit(&commit).await.unwrap();
    assert_eq!(first.position(&app_id).await.unwrap(), Some(9));

    // A writer that read offsets 5..=14 before the first committed (a
    // rebalance moved the partition) must not land 5..=9 twice.
    let file = write_at(&second, at(9, 0), 10, 2).await;
    let replay = Commit::append(vec![file]).with_positions(vec![Position {
        app_id: app_id.clone(),
        first: 5,
        last: 14,
    }]);
    let err = second.commit(&replay).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Fenced {
                committed: 9,
                start: 5,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_retryable());
    let reader = Snapshot::load(&location, &EVENTS).await.unwrap().unwrap();
    assert_eq!(count(&reader).await, 10);
    assert_eq!(reader.position(&app_id).await.unwrap(), Some(9));
    assert_eq!(reader.position("tooltrail/audit/4").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_no_commit() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let metrics = Metrics::default();
    let writers: u32 = 3;
    let commits = 12;
    let mut tasks = Vec::new();
    for w in 0..writers {
        let location = location.clone();
        let metrics = metrics.clone();
        tasks.push(tokio::spawn(async move {
            let mut table = Table::open(&location, &EVENTS, 1, metrics).await.unwrap();
            for c in 0..commits {
                let time = at(9, c);
                let file = write_at(&table, time, 7, 2).await;
                let position = Position {
                    app_id: Position::app_id("g", "t", w as i32),
                    first: i64::from(c) * 10,
                    last: i64::from(c) * 10 + 9,
                };
                let commit = Commit::append(vec![file]).with_positions(vec![position]);
                table.commit(&commit).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let reader = Snapshot::load(&location, &EVENTS).await.unwrap().unwrap();
    assert_eq!(
        count(&reader).await,
        i64::from(writers) * i64::from(commits) * 7
    );
    // One creating version, then one per commit.
    assert_eq!(
        reader.version(),
        Some(u64::from(writers) * u64::from(commits))
    );
    for w in 0..writers {
        let app_id = Position::app_id("g", "t", w as i32);
        assert_eq!(
            reader.position(&app_id).await.unwrap(),
            Some(i64::from(commits) * 10 - 1)
        );
    }
}

#[tokio::test]
async fn removing_a_file_another_writer_removed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let mut first = open(&location).await;
    let file = write_at(&first, at(9, 0), 4, 1).await;
    let path = file;
    first
        .commit(&Commit::append(vec![path.clone()]))
        .await
        .unwrap();
    let mut second = open(&location).await;
    let remove = first
        .snapshot()
        .await
        .unwrap()
        .remove(&path.add.path)
        .unwrap()
        .unwrap();
    let retire = Commit::removing(Operation::Retention, vec![remove]);
    first.commit(&retire).await.unwrap();
    let err = second.commit(&retire).await.unwrap_err();
    assert!(matches!(err, Error::FileGone { .. }), "{err}");
    let reader = Snapshot::load(&location, &EVENTS).await.unwrap().unwrap();
    assert_eq!(count(&reader).await, 0);
}

#[test]
fn backoff_grows_to_its_cap_with_jitter() {
    for conflicts in 1..40 {
        let cap = BACKOFF_BASE
            .saturating_mul(1 << (conflicts - 1).min(16))
            .min(BACKOFF_CAP);
        assert!(backoff(conflicts) <= cap);
    }
    let late: Vec<_> = (0..50).map(|_| backoff(30)).collect();
    assert!(late.iter().all(|d| *d <= BACKOFF_CAP));
    assert!(late.iter().any(|d| *d != late[0]), "jittered");
}

#[tokio::test]
async fn a_key_is_consumed_once_across_writers() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let mut first = open(&location).await;
    let mut second = open(&location).await;
    let keys = vec!["http:retry-me".to_owned()];
    let file = write_at(&first, at(9, 0), 3, 1).await;
    let commit = Commit::append(vec![file]).with_keys(keys.clone());
    first.commit(&commit).await.unwrap();
    // The same request retried on another instance.
    let file = write_at(&second, at(9, 0), 3, 1).await;
    let retry = Commit::append(vec![file]).with_keys(keys.clone());
    let err = second.commit(&retry).await.unwrap_err();
    assert!(matches!(err, Error::KeyConflict { .. }), "{err}");
    // ... and on the first one, and on a writer opened afterwards.
    assert!(matches!(
        first.commit(&retry).await.unwrap_err(),
        Error::KeyConflict { .. }
    ));
    let mut third = open(&location).await;
    assert!(matches!(
        third.commit(&retry).await.unwrap_err(),
        Error::KeyConflict { .. }
    ));
    // Another key goes through.
    let other = Commit::append(Vec::new()).with_keys(vec!["http:other".into()]);
    third.commit(&other).await.unwrap();
    let reader = Snapshot::load(&location, &EVENTS).await.unwrap().unwrap();
    assert_eq!(count(&reader).await, 3);
}

#[tokio::test]
async fn readers_see_the_read_schema_with_plain_strings_and_partition_values() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let mut table = open(&location).await;
    let file = write_at(&table, at(9, 5), 4, 2).await;
    table.commit(&Commit::append(vec![file])).await.unwrap();

    let ctx = SessionContext::new();
    let provider = table
        .snapshot()
        .await
        .unwrap()
        .provider(&ctx.state())
        .unwrap();
    assert_eq!(provider.schema(), EVENTS.read_schema().unwrap());
    let batches = sql(
        &table.snapshot().await.unwrap(),
        "SELECT tenant_id, dt, hour FROM events",
    )
    .await;
    let schema = batches[0].schema();
    for column in ["tenant_id", "dt", "hour"] {
        assert_eq!(
            schema.field_with_name(column).unwrap().data_type(),
            &arrow::datatypes::DataType::Utf8,
            "{column}"
        );
    }
}

/// One small file of events committed with `app_id`'s offsets `first..=last`.
async fn commit_offsets(table: &mut Table, app_id: &str, first: i64, last: i64) {
    let file = write_at(table, at(9, 0), (last - first + 1) as usize, 2).await;
    let commit = Commit::append(vec![file]).with_positions(vec![Position {
        app_id: app_id.to_owned(),
        first,
        last,
    }]);
    table.commit(&commit).await.unwrap();
}

#[tokio::test]
async fn the_writer_checkpoints_every_interval_and_a_new_writer_resumes_from_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let app_id = Position::app_id("tooltrail", "audit", 0);
    let mut table = open(&location).await;
    // Version 0 created the table; the default interval (100) asks for a
    // checkpoint of version 99.
    for commit in 0..99 {
        commit_offsets(&mut table, &app_id, commit * 2, commit * 2 + 1).await;
    }
    assert_eq!(table.version(), 99);
    table
        .checkpointing
        .take()
        .expect("a checkpoint was started")
        .await
        .unwrap();
    let log = dir.path().join("events/_delta_log");
    assert!(
        log.join("00000000000000000099.checkpoint.parquet")
            .is_file()
    );
    let hint = std::fs::read_to_string(log.join("_last_checkpoint")).unwrap();
    assert!(hint.contains(r#""version":99"#), "{hint}");

    // Readers and a new writer start from the checkpoint: every row, and
    // the partition's offset carried in it.
    let reader = Snapshot::load(&location, &EVENTS).await.unwrap().unwrap();
    assert_eq!(count(&reader).await, 198);
    let mut second = open(&location).await;
    assert_eq!(second.position(&app_id).await.unwrap(), Some(197));
    commit_offsets(&mut second, &app_id, 198, 199).await;
    assert_eq!(second.version(), 100);
}

#[tokio::test]
async fn a_table_another_engine_upgraded_beyond_what_tooltrail_writes_is_refused_by_name() {
    use deltalake::kernel::TableFeatures;
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let mut table = open(&location).await;
    let delta = load(&location, &EVENTS).await.unwrap().unwrap();
    delta
        .add_feature()
        .with_feature(TableFeatures::DeletionVectors)
        .with_allow_protocol_versions_increase(true)
        .await
        .unwrap();
    table.refresh().await.unwrap();
    let file = write_at(&table, at(9, 0), 3, 1).await;
    let err = table.commit(&Commit::append(vec![file])).await.unwrap_err();
    assert!(
        matches!(&err, Error::Unwritable { table, problem } if table == "events" && problem.contains("deletionVectors")),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert_eq!(table.version(), 1, "nothing was committed");
}

#[tokio::test]
async fn an_append_only_table_takes_appends_and_refuses_removes() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let mut table = open(&location).await;
    commit_offsets(&mut table, "f", 0, 4).await;
    load(&location, &EVENTS)
        .await
        .unwrap()
        .unwrap()
        .set_tbl_properties()
        .with_properties(HashMap::from([(
            "delta.appendOnly".to_owned(),
            "true".to_owned(),
        )]))
        .await
        .unwrap();
    table.refresh().await.unwrap();
    commit_offsets(&mut table, "f", 5, 9).await;
    let snapshot = table.snapshot().await.unwrap();
    let files = snapshot.files().unwrap();
    let remove = snapshot.remove(&files[0].path).unwrap().unwrap();
    let err = table
        .commit(&Commit::removing(Operation::Compact, vec![remove]))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Unwritable { problem, .. } if problem.contains("append-only")),
        "{err}"
    );
}

/// A listing of the log that misses a commit another writer made during it
/// (a local disk lists in hash order) shows a gap; the read lists again,
/// and finds the commit then.
#[tokio::test]
async fn a_read_whose_listing_missed_a_commit_lists_the_log_again() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let mut writer = open(&location).await;
    let mut reader = open(&location).await;
    let before = reader.version();
    for minute in 0..3 {
        let file = write_at(&writer, at(9, minute), 5, 2).await;
        writer.commit(&Commit::append(vec![file])).await.unwrap();
    }
    let middle = dir
        .path()
        .join(format!("events/_delta_log/{:020}.json", before + 2));
    let aside = dir.path().join("aside.json");
    std::fs::rename(&middle, &aside).unwrap();

    // The commit lands while the reader pauses after its first listing.
    let url = location.table_url("events");
    let mut attempts = 0;
    let table = relist::relisting("events", || {
        attempts += 1;
        if attempts == 2 {
            std::fs::rename(&aside, &middle).unwrap();
        }
        let url = url.clone();
        async move { DeltaTableBuilder::from_url(url)?.load().await }
    })
    .await
    .unwrap();
    assert_eq!(attempts, 2, "the first listing saw the gap");
    assert_eq!(table.version(), Some(writer.version()));

    // A gap that stays is reported after the retries, naming the table.
    std::fs::rename(&middle, &aside).unwrap();
    let err = reader.refresh().await.unwrap_err();
    let text = tooltrail_schemas::Report(&err).to_string();
    assert!(
        text.contains("events") && text.contains("contiguous"),
        "{text}"
    );
    std::fs::rename(&aside, &middle).unwrap();
    reader.refresh().await.unwrap();
    assert_eq!(reader.version(), writer.version());
}

/// The data files the plan of `query` reads.
async fn files_read(snapshot: &Snapshot, query: &str) -> Vec<String> {
    let ctx = SessionContext::new();
    ctx.register_table("events", snapshot.provider(&ctx.state()).unwrap())
        .unwrap();
    let plan = ctx
        .sql(query)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap();
    let text = datafusion::physical_plan::displayable(plan.as_ref())
        .indent(true)
        .to_string();
    let mut files: Vec<String> = text
        .split(|c: char| c == '[' || c == ']' || c == ',' || c.is_whitespace())
        .filter(|s| s.ends_with(".parquet"))
        .map(str::to_owned)
        .collect();
    files.sort();
    files
}

async fn count_where(snapshot: &Snapshot, condition: &str) -> i64 {
    let batches = sql(
        snapshot,
        &format!("SELECT count(*) FROM events WHERE {condition}"),
    )
    .await;
    arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(batches[0].column(0))
        .value(0)
}

#[tokio::test]
async fn a_scan_reads_only_the_files_its_partition_filters_and_statistics_allow() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let mut table = open(&location).await;
    // Hour 9: users u0-u2, ten events each; hour 10: u0-u1, six each.
    let nine = write_at(&table, at(9, 5), 30, 3).await;
    let ten = write_at(&table, at(10, 1), 12, 2).await;
    let (nine, ten) = (nine.add.path.clone(), ten.add.path.clone());
    let files = vec![
        write_at(&table, at(9, 5), 30, 3).await,
        write_at(&table, at(10, 1), 12, 2).await,
    ];
    let (nine_file, ten_file) = (files[0].add.path.clone(), files[1].add.path.clone());
    table.commit(&Commit::append(files)).await.unwrap();
    let snapshot = table.snapshot().await.unwrap();
    // Written and never committed: no scan reads them.
    let everything = files_read(&snapshot, "SELECT * FROM events").await;
    assert!(
        !everything
            .iter()
            .any(|f| f.ends_with(&nine) || f.ends_with(&ten))
    );
    assert_eq!(everything.len(), 2, "{everything:?}");

    // A partition filter, even through a function statistics cannot
    // decide, is evaluated on each file's values.
    for condition in ["hour = '10'", "substr(hour, 2, 1) = '0'"] {
        let read = files_read(
            &snapshot,
            &format!("SELECT * FROM events WHERE {condition}"),
        )
        .await;
        assert_eq!(read.len(), 1, "{condition}: {read:?}");
        assert!(read[0].ends_with(&ten_file), "{condition}: {read:?}");
        assert_eq!(count_where(&snapshot, condition).await, 12, "{condition}");
    }
    // A data filter prunes by the files' statistics: u2 is only at hour 9.
    let read = files_read(&snapshot, "SELECT * FROM events WHERE user_id = 'u2'").await;
    assert_eq!(read.len(), 1, "{read:?}");
    assert!(read[0].ends_with(&nine_file), "{read:?}");
    assert_eq!(count_where(&snapshot, "user_id = 'u2'").await, 10);
    // Both: nothing to read, and no rows.
    let condition = "hour = '10' AND user_id = 'u2'";
    assert!(
        files_read(
            &snapshot,
            &format!("SELECT * FROM events WHERE {condition}")
        )
        .await
        .is_empty()
    );
    assert_eq!(count_where(&snapshot, condition).await, 0);
    // A filter mixing partition and data columns prunes nothing it must keep.
    assert_eq!(
        count_where(&snapshot, "hour = '10' OR user_id = 'u2'").await,
        22
    );
    assert_eq!(count_where(&snapshot, "user_id = 'u0'").await, 16);
}
