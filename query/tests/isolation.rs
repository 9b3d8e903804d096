//! Tenant isolation and read-only enforcement, attacked the ways an analyst
//! with a token for one tenant might try.

mod support;

use std::collections::BTreeSet;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::TryStreamExt;
use proptest::prelude::*;
use tooltrail_query::{Engine, QueryError, Transport};

use support::{ACME, GLOBEX, INITECH};

struct Lake {
    _dir: tempfile::TempDir,
    engine: Engine,
}

fn lake() -> Lake {
    let dir = tempfile::tempdir().unwrap();
    support::write_lake(dir.path());
    let engine = support::engine(dir.path(), &support::config());
    Lake { _dir: dir, engine }
}

use support::runtime;

async fn query(engine: &Engine, token: &str, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    let principal = engine.authenticate(token)?;
    let stream = engine
        .execute(&principal, sql, Transport::Http, false)
        .await?;
    stream.try_collect().await
}

/// Every cell of the result as text.
fn cells(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default()).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            rows.push(
                formatters
                    .iter()
                    .map(|f| f.value(row).to_string())
                    .collect(),
            );
        }
    }
    rows
}

fn single_i64(batches: &[RecordBatch]) -> i64 {
    let rows = cells(batches);
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows[0][0].parse().unwrap()
}

#[test]
fn a_token_sees_only_its_tenants_rows() {
    let lake = lake();
    runtime().block_on(async {
        let e = &lake.engine;
        let count = |token: &'static str| async move {
            single_i64(
                &query(e, token, "SELECT count(*) FROM events")
                    .await
                    .unwrap(),
            )
        };
        assert_eq!(count("analyst-acme").await, ACME as i64);
        assert_eq!(count("analyst-acme-initech").await, (ACME + INITECH) as i64);
        assert_eq!(count("admin-all").await, (ACME + GLOBEX + INITECH) as i64);
        assert_eq!(count("admin-globex").await, GLOBEX as i64);
        let tenants = cells(
            &query(e, "analyst-acme", "SELECT DISTINCT tenant_id FROM alerts")
                .await
                .unwrap(),
        );
        assert_eq!(tenants, vec![vec!["acme".to_string()]]);
    });
}

/// Queries that try to reach another tenant's rows or their counts; each
/// must answer as if only acme's rows existed.
#[test]
fn tricks_do_not_leak_foreign_rows_or_counts() {
    let lake = lake();
    let acme = ACME as i64;
    let cases: Vec<(&str, i64)> = vec![
        ("SELECT count(*) FROM events WHERE tenant_id = 'globex'", 0),
        (
            "SELECT count(*) FROM events WHERE tenant_id = 'acme' OR 1 = 1",
            acme,
        ),
        (
            "SELECT count(*) FROM events WHERE tenant_id = 'acme' OR tenant_id = 'globex'",
            acme,
        ),
        (
            "SELECT count(*) FROM events WHERE NOT (tenant_id = 'acme')",
            0,
        ),
        (
            "SELECT count(*) FROM events WHERE tenant_id IN ('globex', 'initech') OR true",
            acme,
        ),
        (
            "SELECT count(*) FROM (SELECT * FROM events) e WHERE e.tenant_id <> 'acme'",
            0,
        ),
        (
            "SELECT count(*) FROM events WHERE event_id IN (SELECT 'globex-e1')",
            0,
        ),
        (
            "SELECT count(*) FROM events WHERE EXISTS (SELECT 1 FROM events x WHERE x.tenant_id = 'globex')",
            0,
        ),
        ("SELECT count(*) FROM datafusion.public.events", acme),
        (
            "SELECT count(*) FROM events a JOIN alerts b ON a.tenant_id <> b.tenant_id",
            0,
        ),
        ("SELECT count(*) FROM alerts", 2),
        (
            "SELECT count(*) FROM (SELECT tenant_id FROM events UNION ALL SELECT tenant_id FROM alerts) u WHERE tenant_id <> 'acme'",
            0,
        ),
        (
            "WITH t AS (SELECT * FROM events) SELECT count(DISTINCT tenant_id) FROM t",
            1,
        ),
        (
            "SELECT count(*) FROM events WHERE arguments LIKE '%globex%'",
            0,
        ),
        // Statistics-only answers: the filter keeps them from being exact.
        ("SELECT count(event_id) FROM events", acme),
        ("SELECT CAST(max(hour) AS BIGINT) FROM events", 9),
        (
            "SELECT CAST(to_unixtime(max(time)) AS BIGINT) % 86400 / 3600 FROM events",
            9,
        ),
        (
            "SELECT count(*) FROM events WHERE dt = '2026-11-22' AND hour = '10'",
            0,
        ),
        (
            "SELECT count(*) FROM information_schema.tables WHERE table_name NOT IN ('events', 'invalid_fields', 'alerts', 'alert_triage', 'ocsf_api_activity', 'ocsf_detection_finding') AND table_schema = 'public'",
            0,
        ),
    ];
    runtime().block_on(async {
        for (sql, expected) in cases {
            let got = query(&lake.engine, "analyst-acme", sql).await;
            let got = single_i64(&got.unwrap_or_else(|e| panic!("{sql}: {e}")));
            assert_eq!(got, expected, "{sql}");
        }
    });
}

#[test]
fn explain_shows_no_foreign_data_and_analyze_is_refused() {
    let lake = lake();
    runtime().block_on(async {
        let e = &lake.engine;
        let plan = cells(
            &query(
                e,
                "analyst-acme",
                "EXPLAIN SELECT * FROM events WHERE user_id = 'x'",
            )
            .await
            .unwrap(),
        );
        let text = format!("{plan:?}");
        // A non-admin sees the logical plan only (the physical one names
        // lake files); the tenant filter is inside the scan.
        assert!(
            text.contains("logical_plan") && !text.contains("physical_plan"),
            "{text}"
        );
        for leak in ["globex", "initech", "Rows=", "rows="] {
            assert!(!text.contains(leak), "{leak} in {text}");
        }
        for sql in [
            "EXPLAIN ANALYZE SELECT count(*) FROM events",
            "EXPLAIN VERBOSE SELECT count(*) FROM events",
        ] {
            let err = query(e, "analyst-acme", sql).await.unwrap_err();
            assert_eq!(err.code(), "read_only", "{sql}: {err}");
        }
    });
}

#[test]
fn tables_beyond_the_role_are_forbidden_by_name() {
    let lake = lake();
    runtime().block_on(async {
        let e = &lake.engine;
        for (token, sql) in [
            ("analyst-acme", "SELECT * FROM query_audit"),
            ("analyst-acme", "SELECT * FROM quarantine"),
            ("auditor-acme", "SELECT * FROM query_audit"),
            // Quarantined input has no trustworthy tenant.
            ("auditor-acme", "SELECT * FROM quarantine"),
        ] {
            let err = query(e, token, sql).await.unwrap_err();
            assert_eq!((err.code(), err.http_status()), ("forbidden", 403), "{token}: {sql}: {err}");
        }
        let q = query(e, "auditor-all", "SELECT reason, raw FROM quarantine").await.unwrap();
        assert_eq!(cells(&q).len(), 1);
        let tables = cells(
            &query(e, "analyst-acme", "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1")
                .await
                .unwrap(),
        );
        assert_eq!(
            tables,
            [
                ["alert_triage"],
                ["alerts"],
                ["events"],
                ["invalid_fields"],
                ["ocsf_api_activity"],
                ["ocsf_detection_finding"]
            ]
        );
    });
}

#[test]
fn only_single_read_only_queries_run() {
    let lake = lake();
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("out.parquet");
    let refused = [
        "CREATE TABLE t AS SELECT 1".to_string(),
        "CREATE VIEW v AS SELECT * FROM events".to_string(),
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'".to_string(),
        "DROP TABLE events".to_string(),
        "INSERT INTO events SELECT * FROM events".to_string(),
        "DELETE FROM events".to_string(),
        "UPDATE events SET tenant_id = 'acme'".to_string(),
        format!("COPY (SELECT * FROM events) TO '{}'", outside.display()),
        format!("COPY events TO '{}' STORED AS PARQUET", outside.display()),
        "SET datafusion.execution.target_partitions = 1".to_string(),
        "SET datafusion.explain.show_statistics = true".to_string(),
        "RESET datafusion.execution.batch_size".to_string(),
        "PREPARE p AS SELECT 1".to_string(),
        "EXECUTE p".to_string(),
        "BEGIN".to_string(),
        "SELECT 1; SELECT 2".to_string(),
        "SELECT count(*) FROM events; DROP TABLE events".to_string(),
    ];
    runtime().block_on(async {
        for sql in &refused {
            let err = query(&lake.engine, "admin-all", sql)
                .await
                .expect_err(&format!("{sql} ran"));
            assert!(
                matches!(err.code(), "read_only" | "sql_error"),
                "{sql}: {} {err}",
                err.code()
            );
        }
        assert!(!outside.exists());
        // Files outside the lake are not tables, and no function reads them.
        for sql in [
            "SELECT * FROM '/etc/passwd'",
            "SELECT * FROM 'file:///etc/passwd'",
            "SELECT * FROM \"/etc/hostname\"",
            "SELECT * FROM read_parquet('/etc/passwd')",
            "SELECT * FROM read_csv('/etc/passwd')",
            "SELECT * FROM generate_series(1, 1000000000000)",
            "SELECT * FROM range(1, 1000000000000)",
            "SELECT generate_series(1, 1000000000)",
        ] {
            let err = query(&lake.engine, "admin-all", sql)
                .await
                .expect_err(&format!("{sql} ran"));
            assert_eq!(err.code(), "sql_error", "{sql}: {err}");
        }
        let err = query(
            &lake.engine,
            "admin-all",
            "SELECT length(repeat('x', 100000000))",
        )
        .await
        .unwrap_err();
        assert!(err.to_string().contains("max_function_output"), "{err}");
        let ok = query(
            &lake.engine,
            "admin-all",
            "SELECT length(repeat('ab', 1000))",
        )
        .await
        .unwrap();
        assert_eq!(single_i64(&ok), 2000);
        let err = query(&lake.engine, "admin-all", "SELECT lpad('x', 2000000000)")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("max_function_output"), "{err}");
    });
}

#[test]
fn json_helpers_reach_into_arguments() {
    let lake = lake();
    runtime().block_on(async {
        let rows = query(
            &lake.engine,
            "analyst-acme",
            "SELECT json_get_int(arguments, 'limit'), arguments->>'query' FROM events WHERE json_get_str(arguments, 'query') = 'needle-acme-20'",
        )
        .await
        .unwrap();
        assert_eq!(cells(&rows), vec![vec!["20".to_string(), "needle-acme-20".to_string()]]);
    });
}

const TENANTS: [&str; 4] = ["acme", "globex", "initech", "nobody"];

fn predicate() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        prop::sample::select(&TENANTS[..]).prop_map(|t| format!("tenant_id = '{t}'")),
        prop::sample::select(&TENANTS[..]).prop_map(|t| format!("tenant_id <> '{t}'")),
        Just("true".to_string()),
        Just("status = 403".to_string()),
        (0u32..60).prop_map(|m| format!("extract(minute FROM time) < {m}")),
        prop::sample::select(&TENANTS[..]).prop_map(|t| format!("user_id LIKE '%{t}'")),
    ];
    leaf.prop_recursive(3, 12, 2, |inner| {
        prop_oneof![
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} OR {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} AND {b})")),
            inner.prop_map(|a| format!("NOT ({a})")),
        ]
    })
}

fn random_query() -> impl Strategy<Value = String> {
    (predicate(), 0usize..5).prop_map(|(p, shape)| match shape {
        0 => format!("SELECT tenant_id FROM events WHERE {p}"),
        1 => format!("SELECT tenant_id, count(*) FROM events WHERE {p} GROUP BY tenant_id"),
        2 => format!(
            "SELECT tenant_id FROM (SELECT tenant_id, user_id, time, status, arguments FROM events UNION ALL SELECT tenant_id, user_id, time, 0, '' FROM alerts) u WHERE {p}"
        ),
        3 => format!(
            "SELECT e.tenant_id FROM events e JOIN alerts a ON e.user_id = a.user_id WHERE {}",
            p.replace("tenant_id", "e.tenant_id")
                .replace("user_id", "e.user_id")
                .replace("status", "e.status")
                .replace("time", "e.time")
        ),
        _ => format!(
            "SELECT DISTINCT tenant_id FROM events WHERE tenant_id IN (SELECT tenant_id FROM events WHERE {p})"
        ),
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Whatever the query, every tenant_id it returns is one the token holds.
    #[test]
    fn random_queries_return_only_allowed_tenants(sql in random_query()) {
        thread_local! {
            static LAKE: (Lake, tokio::runtime::Runtime) = (lake(), runtime());
        }
        LAKE.with(|(lake, rt)| {
            for (token, allowed) in [
                ("analyst-acme", &["acme"][..]),
                ("analyst-acme-initech", &["acme", "initech"][..]),
            ] {
                let batches = rt.block_on(query(&lake.engine, token, &sql)).unwrap_or_else(|e| panic!("{sql}: {e}"));
                let mut seen = BTreeSet::new();
                for batch in &batches {
                    let column = batch.column(0);
                    let column = arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8).unwrap();
                    let strings = column.as_string::<i32>();
                    for i in 0..strings.len() {
                        if !strings.is_null(i) {
                            seen.insert(strings.value(i).to_string());
                        }
                    }
                }
                for tenant in &seen {
                    prop_assert!(allowed.contains(&tenant.as_str()), "{token} saw {tenant} via {sql}");
                }
            }
            Ok(())
        })?;
    }
}

#[test]
fn each_alert_shows_once_as_its_latest_version_within_the_tokens_tenants() {
    let lake = lake();
    // acme-a0 updated twice (a repeat count of 3, then 7, in commits of
    // their own); globex-a0 once, with a higher count than any of acme's.
    let version = |tenant: &str, id: &str, repeats: u32| {
        format!(
            r#"{{"alert_version":1,"alert_id":"{id}","time":"2026-11-22T09:40:00.000000Z","tenant_id":"{tenant}","user_id":"u1@{tenant}","detector":"denial_spike","severity":"high","score":88,"title":"t","explanation":"x","evidence":{{"observed":37.0,"expected":0.4,"event_ids":[],"details":{{}}}},"window_start":"2026-11-22T09:35:00.000000Z","window_end":"2026-11-22T09:40:00.000000Z","repeats":{repeats}}}"#
        ) + "\n"
    };
    let updates = [
        version("acme", "acme-a0", 3),
        version("globex", "globex-a0", 9),
    ]
    .concat();
    support::write_alerts(lake._dir.path(), &updates);
    support::write_alerts(lake._dir.path(), &version("acme", "acme-a0", 7));
    runtime().block_on(async {
        let e = &lake.engine;
        let sql = "SELECT alert_id, repeats FROM alerts ORDER BY alert_id";
        let acme = cells(&query(e, "analyst-acme", sql).await.unwrap());
        assert_eq!(acme, [["acme-a0", "7"], ["acme-a1", "0"]]);
        let all = cells(&query(e, "admin-all", sql).await.unwrap());
        assert_eq!(all.len(), 5, "{all:?}");
        assert!(all.contains(&vec!["globex-a0".to_string(), "9".to_string()]));
        let distinct = single_i64(
            &query(
                e,
                "admin-all",
                "SELECT count(*) - count(DISTINCT alert_id) FROM alerts",
            )
            .await
            .unwrap(),
        );
        assert_eq!(distinct, 0);
    });
}

/// Every row of a result as a JSON object, as Arrow's JSON writer (and so
/// an `ocsf` export or `/v1/sql` in ndjson) writes it.
fn json_rows(batches: &[RecordBatch]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    {
        let mut writer = arrow::json::LineDelimitedWriter::new(&mut out);
        for batch in batches {
            writer.write(batch).unwrap();
        }
        writer.finish().unwrap();
    }
    out.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).unwrap())
        .collect()
}

/// The OCSF views read the session's scoped `events` and `alerts`: a token
/// restricted to acme sees acme's rows only, even through an expression
/// that would fail on another tenant's row, and every record carries what
/// the OCSF schema requires.
#[test]
fn the_ocsf_views_show_only_the_tokens_tenants_as_complete_records() {
    use tooltrail_lake::ocsf::{API_ACTIVITY, DETECTION_FINDING, missing_required};
    let lake = lake();
    runtime().block_on(async {
        let e = &lake.engine;
        let count = |token: &'static str, sql: &'static str| async move {
            single_i64(&query(e, token, sql).await.unwrap())
        };
        let events = "SELECT count(*) FROM ocsf_api_activity";
        assert_eq!(count("analyst-acme", events).await, ACME as i64);
        assert_eq!(
            count("analyst-acme-initech", events).await,
            (ACME + INITECH) as i64
        );
        assert_eq!(
            count("admin-all", events).await,
            (ACME + GLOBEX + INITECH) as i64
        );
        // Fails on any row whose tenant is not acme, if it ever saw one.
        let trick = "SELECT count(*) FROM ocsf_api_activity \
                     WHERE CAST(CASE WHEN metadata['tenant_uid'] <> 'acme' \
                     THEN actor['user']['uid'] END AS BIGINT) IS NULL";
        assert_eq!(count("analyst-acme", trick).await, ACME as i64);
        let findings = "SELECT count(*) FROM ocsf_detection_finding";
        assert_eq!(count("analyst-acme", findings).await, 2);
        assert_eq!(count("admin-all", findings).await, 5);

        let rows = json_rows(
            &query(e, "analyst-acme", "SELECT * FROM ocsf_api_activity")
                .await
                .unwrap(),
        );
        assert_eq!(rows.len(), ACME);
        for row in &rows {
            assert_eq!(row["metadata"]["tenant_uid"], "acme", "{row:#}");
            assert_eq!(missing_required(&API_ACTIVITY, row), Vec::<String>::new());
        }
        let denied = rows.iter().filter(|r| r["action_id"] == 2).count();
        assert_eq!(denied, ACME / 10, "every tenth event is a deny");

        let rows = json_rows(
            &query(
                e,
                "analyst-acme",
                "SELECT * FROM ocsf_detection_finding ORDER BY finding_info['uid']",
            )
            .await
            .unwrap(),
        );
        let ids: Vec<&str> = rows
            .iter()
            .map(|r| r["finding_info"]["uid"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["acme-a0", "acme-a1"]);
        for row in &rows {
            assert_eq!(
                missing_required(&DETECTION_FINDING, row),
                Vec::<String>::new()
            );
            assert_eq!(
                row["evidences"][0]["data"]["event_ids"],
                serde_json::json!(["acme-e10", "acme-e20"])
            );
        }
    });
}
