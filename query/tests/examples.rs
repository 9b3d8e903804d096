//! The example investigations in `queries/` run on a simulated lake written
//! by ingest, each returning rows, with parameters picked from the lake the
//! way an analyst would.

mod support;

use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{Datelike, TimeZone, Utc};
use futures::TryStreamExt;
use tooltrail_ingest::batch::Pending;
use tooltrail_query::{Engine, Transport};
use tooltrail_schemas::lake::Source;
use tooltrail_sim::{SimConfig, Simulation};

async fn rows(engine: &Engine, sql: &str) -> Vec<Vec<String>> {
    let admin = engine.authenticate("admin-all").unwrap();
    let batches: Vec<_> = engine
        .execute(&admin, sql, Transport::Cli, false)
        .await
        .unwrap_or_else(|e| panic!("{sql}\n{e}"))
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("{sql}\n{e}"));
    let mut out = Vec::new();
    for batch in &batches {
        let f: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &FormatOptions::default()).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            out.push(f.iter().map(|f| f.value(row).to_string()).collect());
        }
    }
    out
}

#[test]
fn every_example_query_answers_on_a_simulated_lake() {
    let dir = tempfile::tempdir().unwrap();
    let config = SimConfig {
        users: 40,
        days: 8,
        seed: 5,
        ..SimConfig::default()
    };
    let start = config.start;
    let mut lake = support::writer(dir.path());
    let mut pending = Pending::new(support::wide_window());
    let mut sample = Vec::new();
    for (i, event) in Simulation::new(config).unwrap().enumerate() {
        let raw = serde_json::to_vec(&event).unwrap();
        if i % 500 == 0 && sample.len() < 3 {
            sample.push((event.tenant_id.clone(), event.event_id.clone(), event.time));
        }
        pending
            .push(
                &raw,
                Utc::now(),
                Source::File {
                    path: "sim",
                    line: i as i64,
                },
            )
            .unwrap();
    }
    support::commit(&mut pending, &mut lake);
    // An alert whose evidence is real events.
    let (tenant, _, time) = sample[0].clone();
    let ids: Vec<&str> = sample
        .iter()
        .filter(|s| s.0 == tenant)
        .map(|s| s.1.as_str())
        .collect();
    let day = time.format("%Y-%m-%d").to_string();
    support::write_alerts(
        dir.path(),
        &format!(
            "{}\n",
            serde_json::json!({"alert_version":1,"alert_id":"a1","time":time.to_rfc3339(),"tenant_id":tenant,"user_id":"u","detector":"denial_spike","severity":"high","score":80,"title":"t","explanation":"e","evidence":{"event_ids":ids},"window_start":time.to_rfc3339(),"window_end":time.to_rfc3339(),"repeats":0})
        ),
    );

    let engine = support::engine(dir.path(), &support::config());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let busiest = &rows(
            &engine,
            &format!("SELECT user_id, session_id, dt, count(*) AS n FROM events WHERE tenant_id = '{tenant}' AND session_id IS NOT NULL AND dt = '{day}' GROUP BY 1, 2, 3 ORDER BY n DESC, 1, 2 LIMIT 1"),
        )
        .await[0];
        let search = &rows(
            &engine,
            &format!("SELECT substr(arguments, 3, 5) FROM events WHERE tenant_id = '{tenant}' AND length(arguments) > 10 LIMIT 1"),
        )
        .await[0][0];
        let monday = start.date_naive() + chrono::Days::new(
            (7 - start.weekday().num_days_from_monday() as u64) % 7,
        );
        let week_start = monday.format("%Y-%m-%d").to_string();
        let week_end = (monday + chrono::Days::new(7)).format("%Y-%m-%d").to_string();
        let from = Utc.from_utc_datetime(&start.date_naive().and_hms_opt(0, 0, 0).unwrap());
        let to = from + chrono::Duration::days(8);
        let params: Vec<(&str, String)> = vec![
            ("tenant_id", tenant.clone()),
            ("user_id", busiest[0].clone()),
            ("session_id", busiest[1].clone()),
            ("day", day.clone()),
            ("week_start", week_start),
            ("week_end", week_end),
            ("from", from.to_rfc3339()),
            ("to", to.to_rfc3339()),
            ("from_day", from.format("%Y-%m-%d").to_string()),
            ("to_day", to.format("%Y-%m-%d").to_string()),
            ("search", search.replace('\'', "''")),
            ("event_id", sample[0].1.clone()),
        ];
        let mut files: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../queries"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "sql"))
            .collect();
        files.sort();
        assert!(files.len() >= 8, "{files:?}");
        for file in files {
            let mut sql = std::fs::read_to_string(&file).unwrap();
            for (name, value) in &params {
                sql = sql.replace(&format!("{{{{{name}}}}}"), value);
            }
            assert!(!sql.contains("{{"), "{}: unknown placeholder", file.display());
            let got = rows(&engine, &sql).await;
            assert!(!got.is_empty(), "{} returned no rows\n{sql}", file.display());
            if file.ends_with("05-alert-evidence.sql") {
                // The evidence ids prune the events scan: one hash table
                // for the join, whose filter (the ids' bounds and values)
                // reaches the scan, and no hash routing in between.
                let plan = rows(&engine, &format!("EXPLAIN {sql}")).await.concat().concat();
                assert!(plan.contains("mode=CollectLeft"), "{plan}");
                assert!(!plan.contains("mode=Partitioned"), "{plan}");
                let scan = plan
                    .lines()
                    .find(|l| l.contains("DataSourceExec") && l.contains("/events/"))
                    .unwrap_or_else(|| panic!("no events scan\n{plan}"));
                assert!(scan.contains("DynamicFilter"), "{scan}");
            }
        }
    });
}
