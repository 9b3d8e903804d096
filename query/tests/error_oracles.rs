//! Error oracles: expressions that fail on another tenant's row, and would
//! name its value in the error (or merely fail, and so tell that the row
//! exists). A query's expressions must only ever see rows its principal may
//! see: each of these must answer exactly as if the other tenants' rows did
//! not exist, wherever the expression stands in the query.

mod support;

use arrow::array::RecordBatch;
use futures::TryStreamExt;
use proptest::prelude::*;
use tooltrail_query::{Engine, QueryError, Transport};

use support::{ACME, runtime};

struct Lake {
    _dir: tempfile::TempDir,
    engine: Engine,
}

/// The shared test lake, and a query of the analysts' and auditors' usual
/// shapes having run, so that `query_audit` holds rows of several tenants.
fn lake() -> Lake {
    let dir = tempfile::tempdir().unwrap();
    support::write_lake(dir.path());
    let engine = support::engine(dir.path(), &support::config());
    runtime().block_on(async {
        for token in ["analyst-acme", "admin-globex"] {
            query(&engine, token, "SELECT 'zz-audited-marker' AS m")
                .await
                .unwrap();
        }
    });
    Lake { _dir: dir, engine }
}

async fn query(engine: &Engine, token: &str, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
    let principal = engine.authenticate(token)?;
    let stream = engine
        .execute(&principal, sql, Transport::Http, false)
        .await?;
    stream.try_collect().await
}

fn count(batches: &[RecordBatch]) -> i64 {
    let batch = batches.iter().find(|b| b.num_rows() > 0).expect("one row");
    let column = arrow::compute::cast(batch.column(0), &arrow::datatypes::DataType::Int64).unwrap();
    column
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0)
}

/// Values only other tenants' rows hold, in any table acme's analyst reads.
const FOREIGN: [&str; 2] = ["globex", "initech"];

/// Expressions that fail on a row where `guard` holds, each given the
/// column whose value the failure would name; on every other row they are
/// true.
fn oracles(guard: &str, column: &str) -> Vec<String> {
    vec![
        // A failing cast names the value.
        format!("CAST(CASE WHEN {guard} THEN {column} ELSE '0' END AS BIGINT) = 0"),
        format!("arrow_cast(CASE WHEN {guard} THEN {column} ELSE '0' END, 'Int64') = 0"),
        format!(
            "to_timestamp(CASE WHEN {guard} THEN {column} ELSE '2026-01-01T00:00:00Z' END) IS NOT NULL"
        ),
        // Division by zero names nothing, but its failure tells the row exists.
        format!("1 / (CASE WHEN {guard} THEN 0 ELSE 1 END) = 1"),
        format!("CAST(1 AS BIGINT) % (CASE WHEN {guard} THEN 0 ELSE 2 END) = 1"),
        // A bad regular expression built from the value.
        format!("regexp_like('x', CASE WHEN {guard} THEN '(' || {column} ELSE 'x' END)"),
        // An array index and a JSON path built from the value.
        format!("make_array(1, 2)[CASE WHEN {guard} THEN CAST({column} AS BIGINT) ELSE 1 END] = 1"),
        format!(
            "CAST(json_get_str(CASE WHEN {guard} THEN '{{\"a\":\"' || {column} || '\"}}' ELSE '{{\"a\":\"1\"}}' END, 'a') AS BIGINT) = 1"
        ),
    ]
}

/// Where an oracle can stand in a query, with what the query must answer
/// for acme's analyst when only acme's rows are visible.
fn placements(table: &str, predicate: &str, rows: i64) -> Vec<(String, i64)> {
    vec![
        (
            format!("SELECT count(*) FROM {table} WHERE {predicate}"),
            rows,
        ),
        (
            format!("SELECT count(*) FROM (SELECT {predicate} AS p FROM {table}) t WHERE p"),
            rows,
        ),
        (
            format!("SELECT count(*) FROM (SELECT {predicate} AS p FROM {table} GROUP BY 1) t"),
            1,
        ),
        (
            format!(
                "SELECT count(*) FROM (SELECT user_id FROM {table} ORDER BY CASE WHEN {predicate} THEN 0 ELSE 1 END, user_id LIMIT 3) t"
            ),
            rows.min(3),
        ),
        (
            format!(
                "SELECT count(*) FROM {table} a JOIN {table} b ON a.user_id = b.user_id AND {} WHERE a.user_id = 'u1@acme'",
                predicate
                    .replace("tenant_id", "b.tenant_id")
                    .replace("user_id", "b.user_id")
            ),
            -1,
        ),
        (
            format!(
                "SELECT count(*) FROM {table} WHERE EXISTS (SELECT 1 FROM {table} x WHERE {})",
                predicate
                    .replace("tenant_id", "x.tenant_id")
                    .replace("user_id", "x.user_id")
            ),
            rows,
        ),
    ]
}

#[test]
fn failing_expressions_never_see_another_tenants_rows() {
    let lake = lake();
    let rt = runtime();
    for (table, rows) in [("events", ACME as i64), ("alerts", 2)] {
        for guard in [
            "tenant_id <> 'acme'",
            "NOT (tenant_id = 'acme')",
            "tenant_id IN ('globex', 'initech')",
            "tenant_id > 'b'",
        ] {
            for column in ["user_id", "tenant_id"] {
                for predicate in oracles(guard, column) {
                    for (sql, expected) in placements(table, &predicate, rows) {
                        let got = rt
                            .block_on(query(&lake.engine, "analyst-acme", &sql))
                            .unwrap_or_else(|e| panic!("{sql}\nfailed: {e}"));
                        if expected >= 0 {
                            assert_eq!(count(&got), expected, "{sql}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn the_query_audit_of_other_tenants_is_no_oracle_either() {
    let lake = lake();
    let rt = runtime();
    // admin-globex sees the audit of queries by principals restricted to
    // globex: its own. analyst-acme's query is another tenant's row.
    let guard = "NOT array_has(tenants, 'globex')";
    for predicate in oracles(guard, "principal") {
        let sql = format!("SELECT count(*) FROM query_audit WHERE {predicate}");
        let got = rt
            .block_on(query(&lake.engine, "admin-globex", &sql))
            .unwrap_or_else(|e| panic!("{sql}\nfailed: {e}"));
        assert!(count(&got) >= 2, "{sql}: admin-globex's own audit rows");
    }
    let sql = "SELECT count(*) FROM query_audit WHERE CAST(CASE WHEN principal <> 'admin-globex' THEN sql ELSE '0' END AS BIGINT) = 0";
    rt.block_on(query(&lake.engine, "admin-globex", sql))
        .unwrap_or_else(|e| panic!("{sql}\nfailed: {e}"));
}

#[test]
fn the_oracles_do_fail_on_rows_the_principal_may_see() {
    // The same expressions, guarded by a condition true on acme's own rows,
    // fail: the tests above pass because foreign rows are never evaluated,
    // not because the expressions cannot fail.
    let lake = lake();
    let rt = runtime();
    for predicate in oracles("tenant_id = 'acme'", "user_id") {
        let sql = format!("SELECT count(*) FROM events WHERE {predicate}");
        let result = rt.block_on(query(&lake.engine, "analyst-acme", &sql));
        let e = result.expect_err(&sql);
        assert!(
            FOREIGN.iter().all(|f| !e.to_string().contains(f)),
            "{sql}: {e}"
        );
    }
}

/// Pieces of queries an attacker would combine.
fn attack() -> impl Strategy<Value = String> {
    let column = prop::sample::select(vec![
        "user_id",
        "tenant_id",
        "event_id",
        "resource",
        "session_id",
        "tool",
        "arguments",
        "source_ip",
    ]);
    let guard = prop::sample::select(vec![
        "tenant_id <> 'acme'",
        "tenant_id LIKE 'g%'",
        "starts_with(tenant_id, 'i')",
        "length(tenant_id) > 4",
        "user_id NOT LIKE '%@acme'",
        "true",
    ]);
    let failing = prop::sample::select(vec![
        "CAST({v} AS BIGINT) = 0",
        "CAST({v} AS DATE) IS NULL",
        "arrow_cast({v}, 'Float64') > 0",
        "1 / (length({v}) - length({v})) = 1",
        "regexp_like('x', '(' || {v})",
        "to_timestamp({v}) IS NULL",
        "CAST(json_get_str(arguments, 'query') || {v} AS INT) = 1",
        "make_array(1)[CAST({v} AS BIGINT)] = 1",
    ]);
    let place = prop::sample::select(vec![
        "SELECT count(*) FROM events WHERE {p}",
        "SELECT count(*) FROM events WHERE status > 0 AND {p}",
        "SELECT count(*) FROM events WHERE {p} OR status = -1",
        "SELECT max(CASE WHEN {p} THEN 1 ELSE 0 END) FROM events",
        "SELECT user_id FROM events ORDER BY CASE WHEN {p} THEN 0 ELSE 1 END LIMIT 2",
        "SELECT count(*) FROM events e JOIN alerts a ON e.user_id = a.user_id WHERE {p}",
        "SELECT count(*) FROM events GROUP BY {p}",
        "SELECT count(*) FROM alerts WHERE {p}",
    ]);
    (column, guard, failing, place).prop_map(|(column, guard, failing, place)| {
        let value = format!("CASE WHEN {guard} THEN {column} ELSE '1' END");
        let p = failing.replace("{v}", &value);
        let sql = place.replace("{p}", &p);
        if place.contains(" JOIN ") {
            sql.replace("CASE WHEN tenant_id", "CASE WHEN e.tenant_id")
                .replace("WHEN user_id", "WHEN e.user_id")
                .replace("THEN user_id", "THEN e.user_id")
                .replace("THEN tenant_id", "THEN e.tenant_id")
                .replace("(tenant_id", "(e.tenant_id")
                .replace("(length(tenant_id", "(length(e.tenant_id")
                .replace("THEN arguments", "THEN e.arguments")
                .replace("(arguments", "(e.arguments")
                .replace("THEN event_id", "THEN e.event_id")
                .replace("THEN resource", "THEN e.resource")
                .replace("THEN session_id", "THEN e.session_id")
                .replace("THEN tool", "THEN e.tool")
                .replace("THEN source_ip", "THEN e.source_ip")
        } else if place.contains("FROM alerts") {
            // alerts has no such columns but user_id and tenant_id.
            sql.replace("THEN event_id", "THEN alert_id")
                .replace("THEN resource", "THEN title")
                .replace("THEN session_id", "THEN detector")
                .replace("THEN tool", "THEN severity")
                .replace("THEN arguments", "THEN explanation")
                .replace("THEN source_ip", "THEN user_id")
                .replace("json_get_str(arguments", "json_get_str(explanation")
        } else {
            sql
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    /// Whatever failing expression a query holds, and wherever, its error
    /// (if any) never names a value from another tenant's rows.
    #[test]
    fn random_failing_queries_never_name_a_foreign_value(sql in attack()) {
        thread_local! {
            static LAKE: (Lake, tokio::runtime::Runtime) = (lake(), runtime());
        }
        LAKE.with(|(lake, rt)| {
            for (token, foreign) in [
                ("analyst-acme", &FOREIGN[..]),
                ("analyst-acme-initech", &["globex"][..]),
            ] {
                if let Err(e) = rt.block_on(query(&lake.engine, token, &sql)) {
                    let message = e.to_string();
                    for value in foreign {
                        prop_assert!(!message.contains(value), "{token}: {sql}\nleaked {value}: {message}");
                    }
                }
            }
            Ok(())
        })?;
    }
}

#[test]
fn predicates_that_cannot_fail_still_prune_partitions_and_row_groups() {
    let lake = lake();
    let rt = runtime();
    let plan = |sql: &str| {
        let batches = rt
            .block_on(query(
                &lake.engine,
                "admin-globex",
                &format!("EXPLAIN {sql}"),
            ))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        arrow::util::pretty::pretty_format_batches(&batches)
            .unwrap()
            .to_string()
    };
    // globex's events are all in hour 10, the others' in hour 09.
    let pruned = plan("SELECT count(*) FROM events WHERE hour = '10' AND user_id = 'u1@globex'");
    assert!(pruned.contains("hour=10"), "{pruned}");
    assert!(!pruned.contains("hour=09"), "partition pruned: {pruned}");
    assert!(pruned.contains("TenantBarrier"), "{pruned}");
    // Both the tenant filter and the query's predicate reach the Parquet
    // scan's pruning predicate (row groups, pages, bloom filters).
    let scan = pruned
        .lines()
        .find(|l| l.contains("DataSourceExec"))
        .unwrap_or_else(|| panic!("{pruned}"));
    let pruning = &scan[scan.find("pruning_predicate").expect(scan)..];
    assert!(
        pruning.contains("tenant_id") && pruning.contains("user_id"),
        "{scan}"
    );
    // A predicate that could fail stays above the barrier: no pruning by it.
    let kept = plan("SELECT count(*) FROM events WHERE CAST(hour AS INT) = 10");
    assert!(kept.contains("hour=09"), "not pushed into the scan: {kept}");
}
