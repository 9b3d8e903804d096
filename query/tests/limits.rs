//! Limits and the query audit: what keeps one query from hurting the rest,
//! and the record every query leaves.

mod support;

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use tooltrail_query::{Engine, Principal, QueryConfig, QueryError, QueryStream, Transport};

use support::{lake_with, runtime};

/// Starts an interactive (row-capped) HTTP query that must be admitted.
async fn start(engine: &Engine, principal: &Principal, sql: &str) -> QueryStream {
    engine
        .execute(principal, sql, Transport::Http, true)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Runs a query that must be refused; returns why.
async fn refused(engine: &Engine, principal: &Principal, sql: &str) -> QueryError {
    match engine.execute(principal, sql, Transport::Http, true).await {
        Ok(_) => panic!("{sql}: admitted"),
        Err(e) => e,
    }
}

#[test]
fn a_query_past_its_timeout_is_cancelled() {
    let config = QueryConfig {
        timeout: Duration::from_millis(500),
        ..support::config()
    };
    let (_dir, engine) = lake_with(config);
    runtime().block_on(async {
        let admin = engine.authenticate("admin-all").unwrap();
        let started = Instant::now();
        let result: Result<Vec<_>, QueryError> = async {
            engine
                .execute(
                    &admin,
                    "SELECT count(*) FROM events a, events b, events c, events d WHERE a.status + b.status + c.status + d.status > 0",
                    Transport::Http,
                    false,
                )
                .await?
                .try_collect()
                .await
        }
        .await;
        let err = result.unwrap_err();
        assert_eq!((err.code(), err.http_status()), ("timeout", 504), "{err}");
        // Cancelled, not left running: the engine answers the next query.
        let rows: Vec<_> = engine
            .execute(&admin, "SELECT 1", Transport::Http, false)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(rows[0].num_rows(), 1);
        assert!(started.elapsed() < Duration::from_secs(60));
    });
}

#[test]
fn concurrency_is_capped_per_principal_and_in_total() {
    let config = QueryConfig {
        max_concurrent: 3,
        max_concurrent_per_principal: 2,
        ..support::config()
    };
    let (_dir, engine) = lake_with(config);
    runtime().block_on(async {
        let acme = engine.authenticate("analyst-acme").unwrap();
        let admin = engine.authenticate("admin-all").unwrap();
        let sql = "SELECT * FROM events";
        let a1 = start(&engine, &acme, sql).await;
        let a2 = start(&engine, &acme, sql).await;
        let err = refused(&engine, &acme, sql).await;
        assert_eq!((err.code(), err.http_status()), ("too_many_queries", 429));
        // Another principal still gets a slot ...
        let b1 = start(&engine, &admin, sql).await;
        // ... until the total is reached.
        let err = refused(&engine, &admin, sql).await;
        assert_eq!(err.http_status(), 429, "{err}");
        // A finished query frees its slot.
        drop(a1);
        let _: Vec<_> = b1.try_collect().await.unwrap();
        start(&engine, &acme, sql).await;
        drop(a2);
    });
}

#[test]
fn interactive_results_stop_at_the_row_cap_and_say_so() {
    let config = QueryConfig {
        max_rows: 25,
        ..support::config()
    };
    let (_dir, engine) = lake_with(config);
    runtime().block_on(async {
        let acme = engine.authenticate("analyst-acme").unwrap();
        let mut capped = start(&engine, &acme, "SELECT * FROM events").await;
        let mut rows = 0;
        while let Some(batch) = capped.next().await {
            rows += batch.unwrap().num_rows();
        }
        assert_eq!(rows, 25);
        assert!(capped.truncated());
        let export: Vec<_> = engine
            .execute(&acme, "SELECT * FROM events", Transport::Http, false)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(
            export.iter().map(|b| b.num_rows()).sum::<usize>(),
            support::ACME
        );
        let mut exact = engine
            .execute(
                &acme,
                "SELECT * FROM events LIMIT 25",
                Transport::Http,
                true,
            )
            .await
            .unwrap();
        while exact.next().await.is_some() {}
        assert!(!exact.truncated(), "25 rows of 25 is not truncated");
    });
}

#[test]
fn oversized_sql_is_refused_before_parsing() {
    let (_dir, engine) = lake_with(QueryConfig {
        max_sql_bytes: 1000,
        ..support::config()
    });
    runtime().block_on(async {
        let acme = engine.authenticate("analyst-acme").unwrap();
        let sql = format!("SELECT '{}'", "x".repeat(2000));
        let err = engine
            .execute(&acme, &sql, Transport::Http, true)
            .await
            .err()
            .unwrap();
        assert_eq!((err.code(), err.http_status()), ("sql_too_large", 413));
        let deep = format!("SELECT {}1{}", "(".repeat(400), ")".repeat(400));
        let err = engine
            .execute(&acme, &deep, Transport::Http, true)
            .await
            .err()
            .unwrap();
        assert_eq!(err.code(), "query_too_complex", "{err}");
    });
}

#[test]
fn a_sort_larger_than_the_memory_pool_spills_or_fails_cleanly() {
    let (_dir, engine) = lake_with(QueryConfig {
        memory_limit_bytes: 1 << 20,
        ..support::config()
    });
    runtime().block_on(async {
        let admin = engine.authenticate("admin-all").unwrap();
        let result: Result<Vec<_>, QueryError> = async {
            engine
                .execute(
                    &admin,
                    "SELECT a.event_id, b.arguments FROM events a, events b ORDER BY b.arguments, a.event_id",
                    Transport::Http,
                    false,
                )
                .await?
                .try_collect()
                .await
        }
        .await;
        match result {
            Ok(batches) => {
                let n: usize = batches.iter().map(|b| b.num_rows()).sum();
                assert_eq!(n, (support::ACME + support::GLOBEX + support::INITECH).pow(2));
            }
            Err(e) => assert_eq!(e.code(), "resources_exhausted", "{e}"),
        }
    });
}

#[test]
fn every_query_is_audited_with_its_principal_outcome_and_rows() {
    let (_dir, engine) = lake_with(support::config());
    runtime().block_on(async {
        let acme = engine.authenticate("analyst-acme").unwrap();
        let ok: Vec<_> = start(&engine, &acme, "SELECT event_id FROM events LIMIT 7").await
            .try_collect()
            .await
            .unwrap();
        assert_eq!(ok.iter().map(|b| b.num_rows()).sum::<usize>(), 7);
        let _ = engine
            .execute(&acme, "SELECT * FROM query_audit", Transport::Pgwire, true)
            .await
            .err()
            .unwrap();
        let admin = engine.authenticate("admin-all").unwrap();
        // End records are written off the request path; wait for them with
        // a deadline rather than a fixed sleep.
        let deadline = Instant::now() + Duration::from_secs(10);
        let rows = loop {
            let batches: Vec<_> = engine
                .execute(
                    &admin,
                    "SELECT phase, transport, outcome, rows, sql, tenants[1] FROM query_audit WHERE principal = 'analyst-acme' ORDER BY time, phase DESC",
                    Transport::Cli,
                    false,
                )
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            let text = arrow::util::pretty::pretty_format_batches(&batches).unwrap().to_string();
            if text.matches("| end ").count() == 2 || Instant::now() > deadline {
                break text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(rows.contains("| start | http      |         |      | SELECT event_id FROM events LIMIT 7 | acme"), "{rows}");
        assert!(rows.contains("| end   | http      | ok      | 7    | SELECT event_id FROM events LIMIT 7 | acme"), "{rows}");
        assert!(rows.contains("| end   | pgwire    | denied  | 0    | SELECT * FROM query_audit"), "{rows}");
        // An admin restricted to globex does not see acme's queries.
        let globex = engine.authenticate("admin-globex").unwrap();
        let seen: Vec<_> = engine
            .execute(&globex, "SELECT * FROM query_audit WHERE principal = 'analyst-acme'", Transport::Http, false)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        assert_eq!(seen.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    });
}

#[test]
fn a_commit_is_read_by_the_next_query() {
    let (dir, engine) = lake_with(support::config());
    runtime().block_on(async {
        let acme = engine.authenticate("analyst-acme").unwrap();
        let count = || async {
            let batches: Vec<_> = engine
                .execute(&acme, "SELECT count(*) FROM events", Transport::Http, false)
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            arrow::util::pretty::pretty_format_batches(&batches)
                .unwrap()
                .to_string()
        };
        let before = count().await;
        assert!(before.contains(&support::ACME.to_string()), "{before}");
        let mut lake = support::writer(dir.path());
        support::write_events(&mut lake, "acme", 5, 1000, 9);
        let after = count().await;
        let expected = (support::ACME + 5).to_string();
        assert!(
            after.contains(&expected),
            "the next query reads the table's newest version: {after}"
        );
    });
}

#[test]
fn joins_of_several_tables_at_once_all_finish_while_the_tables_grow() {
    // One query thread: the fewest workers to take over from the ones a
    // delta-kernel snapshot load holds in `block_in_place`.
    let config = QueryConfig {
        threads: Some(1),
        max_concurrent: 16,
        max_concurrent_per_principal: 16,
        timeout: Duration::from_secs(120),
        ..support::config()
    };
    let (dir, engine) = lake_with(config);
    let sql = "SELECT count(*) FROM alerts a JOIN events e ON e.user_id = a.user_id \
               JOIN query_audit q ON q.dt = a.dt";
    runtime().block_on(async {
        let admin = engine.authenticate("admin-all").unwrap();
        for round in 0..3 {
            // Each round's queries load or update every table's snapshot at once, the
            // last two after a new commit to `events`.
            let queries = (0..16).map(|_| async {
                engine
                    .execute(&admin, sql, Transport::Http, false)
                    .await?
                    .try_collect::<Vec<_>>()
                    .await
            });
            // A deadlocked query runtime never reaches its own timeout: this
            // side gives up for it, so that the test fails rather than hangs.
            let results =
                tokio::time::timeout(Duration::from_secs(600), futures::future::join_all(queries))
                    .await
                    .unwrap_or_else(|_| panic!("round {round}: the queries never finished"));
            for result in results {
                let batches = result.unwrap_or_else(|e| panic!("round {round}: {e}"));
                assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
            }
            let mut lake = support::writer(dir.path());
            support::write_events(&mut lake, "acme", 5, 1000 + round * 5, 9);
        }
    });
}
