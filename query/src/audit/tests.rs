use std::time::Duration;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use chrono::TimeZone;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;
use tooltrail_lake::Snapshot;

use super::*;
use crate::auth::Principal;
use crate::engine::{Engine, Transport};
use crate::{QueryConfig, QueryMetrics};

fn record(phase: &'static str) -> AuditRecord {
    AuditRecord {
        query_id: "q1".into(),
        phase,
        time: Utc.with_ymd_and_hms(2026, 11, 22, 23, 59, 59).unwrap(),
        principal: "analyst-acme".into(),
        role: "analyst".into(),
        tenants: vec!["acme".into()],
        transport: "http",
        sql: "SELECT 1".into(),
        sql_sha256: "ab".into(),
        outcome: None,
        error: None,
        rows: None,
        bytes: None,
        duration_ms: None,
    }
}

/// The table's rows as (dt, query_id, phase, sql, outcome, rows).
async fn rows(
    lake: &Location,
) -> Vec<(String, String, String, String, Option<String>, Option<i64>)> {
    let Some(snapshot) = Snapshot::load(lake, &tables::QUERY_AUDIT).await.unwrap() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for file in snapshot.files().unwrap() {
        let dt = file.partition[0].1.clone().unwrap();
        let columns = ["query_id", "phase", "sql", "outcome", "rows"];
        for batch in snapshot
            .read_file(&file.path, Some(&columns))
            .await
            .unwrap()
        {
            let text = |name| batch.column_by_name(name).unwrap().as_string::<i32>();
            let (ids, phases, sqls, outcomes) = (
                text("query_id"),
                text("phase"),
                text("sql"),
                text("outcome"),
            );
            let counts = batch
                .column_by_name("rows")
                .unwrap()
                .as_primitive::<Int64Type>();
            for row in 0..batch.num_rows() {
                out.push((
                    dt.clone(),
                    ids.value(row).to_owned(),
                    phases.value(row).to_owned(),
                    sqls.value(row).to_owned(),
                    outcomes
                        .is_valid(row)
                        .then(|| outcomes.value(row).to_owned()),
                    counts.is_valid(row).then(|| counts.value(row)),
                ));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_is_in_the_table_of_its_day_when_append_returns() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Location::local(dir.path()).unwrap();
    let options = AppenderOptions {
        interval: Duration::from_millis(20),
        ..AppenderOptions::default()
    };
    let (audit, task) = AuditLog::open(&lake, options, Metrics::default())
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(task.run(shutdown.clone()));

    audit.append(&record("start")).await.unwrap();
    let start = (
        "2026-11-22".to_string(),
        "q1".to_string(),
        "start".to_string(),
        "SELECT 1".to_string(),
        None,
        None,
    );
    assert_eq!(rows(&lake).await, std::slice::from_ref(&start));
    let end = AuditRecord {
        outcome: Some("ok"),
        rows: Some(1),
        bytes: Some(8),
        duration_ms: Some(2.5),
        ..record("end")
    };
    audit.append(&end).await.unwrap();
    let end = (
        "2026-11-22".to_string(),
        "q1".to_string(),
        "end".to_string(),
        "SELECT 1".to_string(),
        Some("ok".to_string()),
        Some(1),
    );
    assert_eq!(rows(&lake).await, [end, start]);
    shutdown.cancel();
    running.await.unwrap();
}

fn engine(lake: &std::path::Path) -> Engine {
    let spill = lake.join("_tooltrail/spill");
    Engine::open(
        &Location::local(lake).unwrap(),
        &QueryConfig::default(),
        &spill,
        QueryMetrics::unregistered(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_runs_only_once_its_start_record_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Location::local(dir.path()).unwrap();
    let engine = engine(dir.path());
    let principal = Principal::local_operator();
    let mut stream = engine
        .execute(&principal, "SELECT 41 + 1 AS answer", Transport::Cli, false)
        .await
        .unwrap();
    // No batch has been read yet: the start record is already in the lake.
    let audited = rows(&lake).await;
    assert_eq!(audited.len(), 1, "{audited:?}");
    assert_eq!(audited[0].2, "start");
    assert_eq!(audited[0].3, "SELECT 41 + 1 AS answer");
    while let Some(batch) = stream.next().await {
        batch.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_whose_start_record_cannot_be_committed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    // A file where the audit's log directory would go.
    std::fs::create_dir_all(dir.path().join("query_audit")).unwrap();
    std::fs::write(dir.path().join("query_audit/_delta_log"), b"in the way").unwrap();
    let engine = engine(dir.path());
    let refused = engine
        .execute(
            &Principal::local_operator(),
            "SELECT 1",
            Transport::Cli,
            false,
        )
        .await;
    match refused {
        Err(crate::QueryError::Internal(message)) => {
            assert!(message.contains("query audit is not writable"), "{message}")
        }
        Err(other) => panic!("refused for another reason: {other:?}"),
        Ok(_) => panic!("ran a query that is not in the audit"),
    }
}
