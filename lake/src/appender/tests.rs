use std::collections::BTreeSet;

use arrow::array::AsArray;
use chrono::{DateTime, TimeZone, Utc};
use datafusion::prelude::SessionContext;
use tooltrail_schemas::lake::{QueryAuditBatchBuilder, QueryAuditRow};

use super::*;
use crate::Snapshot;
use crate::tables::QUERY_AUDIT;

/// A guard against a hang, never reached when the appender works.
const GUARD: Duration = Duration::from_secs(60);

fn at(day: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, 10, 0, 0).unwrap()
}

/// One audit row with `query_id` `id`, made at `time`.
fn row(id: &str, time: DateTime<Utc>) -> RecordBatch {
    let tenants = vec!["acme".to_owned()];
    let mut builder = QueryAuditBatchBuilder::new();
    builder.append(&QueryAuditRow {
        query_id: id,
        phase: "start",
        time,
        principal: "analyst",
        role: "analyst",
        tenants: &tenants,
        transport: "http",
        sql: "SELECT 1",
        sql_sha256: "00",
        outcome: None,
        error: None,
        rows: None,
        bytes: None,
        duration_ms: None,
    });
    builder.finish().unwrap()
}

/// Every commit after the first waits for `interval`: appends gather.
fn options(interval: Duration) -> AppenderOptions {
    AppenderOptions {
        interval,
        burst: 1,
        zstd_level: 1,
        ..AppenderOptions::default()
    }
}

async fn start(
    location: &Location,
    interval: Duration,
) -> (Appender, tokio::task::JoinHandle<()>, CancellationToken) {
    let (appender, task) = Appender::open(
        location,
        &QUERY_AUDIT,
        options(interval),
        Metrics::default(),
    )
    .await
    .unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(task.run(shutdown.clone()));
    (appender, running, shutdown)
}

/// The query ids in the table's latest version, and its version.
async fn committed_ids(location: &Location) -> (Vec<String>, u64) {
    let snapshot = Snapshot::load(location, &QUERY_AUDIT)
        .await
        .unwrap()
        .expect("the table exists");
    let mut ids = Vec::new();
    for file in snapshot.files().unwrap() {
        for batch in snapshot
            .read_file(&file.path, Some(&["query_id"]))
            .await
            .unwrap()
        {
            let column = batch.column(0).as_string::<i32>();
            ids.extend(column.iter().map(|v| v.unwrap().to_owned()));
        }
    }
    ids.sort();
    (ids, snapshot.version().unwrap())
}

fn day(time: DateTime<Utc>) -> Partition {
    Partition::day(time.date_naive())
}

#[tokio::test]
async fn concurrent_appends_share_one_commit_and_every_row_is_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let (appender, running, shutdown) = start(&location, Duration::from_millis(50)).await;
    let (_, created) = committed_ids(&location).await;

    // A hundred callers at once, over two days.
    let callers: Vec<_> = (0..100)
        .map(|i| {
            let appender = appender.clone();
            let time = at(20 + i % 2);
            tokio::spawn(async move {
                appender
                    .append(day(time), row(&format!("q{i:03}"), time))
                    .await
            })
        })
        .collect();
    let mut versions = BTreeSet::new();
    for caller in callers {
        let committed = caller.await.unwrap().expect("committed");
        versions.insert(committed.version);
    }

    let (ids, version) = committed_ids(&location).await;
    let expected: Vec<String> = (0..100).map(|i| format!("q{i:03}")).collect();
    assert_eq!(ids, expected, "every row, once");
    assert!(
        versions.len() <= 2,
        "100 appends took {} commits: {versions:?}",
        versions.len()
    );
    assert_eq!(
        version - created,
        versions.len() as u64,
        "no commit but the groups'"
    );
    // One file per partition and commit, and the table reads as a table.
    let snapshot = Snapshot::load(&location, &QUERY_AUDIT)
        .await
        .unwrap()
        .unwrap();
    assert!(snapshot.files().unwrap().len() <= 2 * versions.len());
    let ctx = SessionContext::new();
    ctx.register_table("query_audit", snapshot.provider(&ctx.state()).unwrap())
        .unwrap();
    let by_day = ctx
        .sql("SELECT dt, count(*) AS n FROM query_audit GROUP BY dt ORDER BY dt")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let text = arrow::util::pretty::pretty_format_batches(&by_day)
        .unwrap()
        .to_string();
    assert!(
        text.contains("| 2026-11-20 | 50 |") && text.contains("| 2026-11-21 | 50 |"),
        "{text}"
    );
    shutdown.cancel();
    running.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_returns_once_its_rows_are_in_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let (appender, running, shutdown) = start(&location, Duration::from_millis(20)).await;
    for i in 0..3 {
        let id = format!("q{i}");
        let committed = appender
            .append(day(at(20)), row(&id, at(20)))
            .await
            .unwrap();
        let (ids, version) = committed_ids(&location).await;
        assert_eq!(version, committed.version);
        assert!(ids.contains(&id), "{id} not readable once append returned");
    }
    // The same from a thread outside the runtime.
    let blocking = appender.clone();
    let committed = tokio::task::spawn_blocking(move || {
        blocking.blocking_append(day(at(21)), row("q-blocking", at(21)))
    })
    .await
    .unwrap()
    .unwrap();
    let (ids, version) = committed_ids(&location).await;
    assert_eq!(version, committed.version);
    assert_eq!(ids, ["q-blocking", "q0", "q1", "q2"]);
    shutdown.cancel();
    running.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_is_reported_to_every_caller_of_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let (appender, running, shutdown) = start(&location, Duration::from_millis(20)).await;
    appender
        .append(day(at(20)), row("before", at(20)))
        .await
        .unwrap();

    // The log cannot be written: a file stands where its directory was.
    let log = dir.path().join("audit-log-aside");
    let log_dir = dir.path().join("query_audit/_delta_log");
    std::fs::rename(&log_dir, &log).unwrap();
    std::fs::write(&log_dir, b"not a directory").unwrap();
    let mut pending = Vec::new();
    for i in 0..5 {
        let id = format!("lost{i}");
        pending.push(
            appender
                .submit(day(at(20)), row(&id, at(20)))
                .await
                .unwrap(),
        );
    }
    for p in pending {
        let error = tokio::time::timeout(GUARD, p.committed())
            .await
            .unwrap()
            .expect_err("the commit failed");
        assert!(
            matches!(
                error,
                AppendError::Commit {
                    table: "query_audit",
                    ..
                }
            ),
            "{error:?}"
        );
        assert!(error.is_retryable(), "{error:?}");
    }

    // Once the log is back, the appender carries on, without the lost rows.
    std::fs::remove_file(&log_dir).unwrap();
    std::fs::rename(&log, &log_dir).unwrap();
    appender
        .append(day(at(20)), row("after", at(20)))
        .await
        .unwrap();
    let (ids, _) = committed_ids(&location).await;
    assert_eq!(ids, ["after", "before"]);
    shutdown.cancel();
    running.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_commits_what_is_queued_and_refuses_what_comes_after() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    // An hour between commits: only shutdown commits the queued appends.
    let (appender, running, shutdown) = start(&location, Duration::from_secs(3600)).await;
    appender
        .append(day(at(20)), row("first", at(20)))
        .await
        .unwrap();
    let mut pending = Vec::new();
    for i in 0..3 {
        let id = format!("queued{i}");
        pending.push(
            appender
                .submit(day(at(20)), row(&id, at(20)))
                .await
                .unwrap(),
        );
    }
    shutdown.cancel();
    for p in pending {
        tokio::time::timeout(GUARD, p.committed())
            .await
            .unwrap()
            .expect("committed at shutdown");
    }
    tokio::time::timeout(GUARD, running).await.unwrap().unwrap();
    let (ids, _) = committed_ids(&location).await;
    assert_eq!(ids, ["first", "queued0", "queued1", "queued2"]);

    let late = appender.append(day(at(20)), row("late", at(20))).await;
    assert!(matches!(late, Err(AppendError::Stopped { .. })), "{late:?}");
}

#[tokio::test]
async fn rows_of_another_shape_are_refused_before_they_reach_a_group() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let (appender, running, shutdown) = start(&location, Duration::from_millis(20)).await;
    let events = RecordBatch::new_empty(tooltrail_schemas::lake::events_schema());
    let wrong = appender.append(day(at(20)), events).await;
    assert!(
        matches!(&wrong, Err(AppendError::Mismatch { problem, .. }) if problem.contains("event_id")),
        "{wrong:?}"
    );
    let hourly = Partition::hour(at(20));
    let wrong = appender.append(hourly, row("q", at(20))).await;
    assert!(
        matches!(wrong, Err(AppendError::Mismatch { .. })),
        "{wrong:?}"
    );
    appender
        .append(day(at(20)), row("q", at(20)))
        .await
        .unwrap();
    assert_eq!(committed_ids(&location).await.0, ["q"]);
    shutdown.cancel();
    running.await.unwrap();
}

#[tokio::test]
async fn a_lazily_opened_appender_creates_its_table_on_the_first_commit() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let (appender, task) = Appender::new(
        &location,
        &QUERY_AUDIT,
        options(Duration::from_millis(20)),
        Metrics::default(),
    );
    assert!(
        Snapshot::load(&location, &QUERY_AUDIT)
            .await
            .unwrap()
            .is_none()
    );
    let running = tokio::spawn(task.run(CancellationToken::new()));
    appender
        .append(day(at(20)), row("q", at(20)))
        .await
        .unwrap();
    assert_eq!(committed_ids(&location).await.0, ["q"]);
    // Every handle dropped: the task ends by itself.
    drop(appender);
    tokio::time::timeout(GUARD, running).await.unwrap().unwrap();
}

#[test]
fn pacing_lets_a_burst_through_then_one_commit_per_interval() {
    let interval = Duration::from_millis(200);
    let t0 = Instant::now();
    let mut pacing = Pacing::new(interval, 3);
    // A quiet table: three commits back to back, none waits.
    for _ in 0..3 {
        assert_eq!(pacing.ready_at(t0), None);
        pacing.start(t0);
    }
    // The fourth waits one interval; later ones follow the interval.
    assert_eq!(pacing.ready_at(t0), Some(t0 + interval));
    pacing.start(t0 + interval);
    assert_eq!(pacing.ready_at(t0 + interval), Some(t0 + interval * 2));
    // After a quiet spell of burst intervals, a burst goes through again.
    let later = t0 + interval * 10;
    for _ in 0..3 {
        assert_eq!(pacing.ready_at(later), None);
        pacing.start(later);
    }
    assert!(pacing.ready_at(later).is_some());
}

#[test]
fn pacing_with_a_burst_of_one_spaces_every_commit() {
    let interval = Duration::from_millis(50);
    let t0 = Instant::now();
    let mut pacing = Pacing::new(interval, 1);
    assert_eq!(pacing.ready_at(t0), None);
    pacing.start(t0);
    assert_eq!(pacing.ready_at(t0 + interval / 2), Some(t0 + interval));
    assert_eq!(pacing.ready_at(t0 + interval), None);
}
