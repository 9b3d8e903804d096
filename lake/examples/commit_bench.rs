//! Commit latency and conflicts with several writers on one table.
//!
//! `cargo run --release -p tooltrail-lake --example commit_bench` runs 3 writers, each
//! committing a file of 1,000 events 100 times as fast as it can, on a
//! temporary local table, and prints commit latency (p50, p99, max; back-off
//! included), conflicts and throughput, and the p50 of the first and the
//! last tenth of each writer's commits: a commit must not cost more as the
//! table's file count grows. Environment:
//! `TOOLTRAIL_BENCH_LAKE` (a lake location, e.g. `s3://bucket/prefix` with
//! the usual AWS_* variables), `TOOLTRAIL_BENCH_WRITERS`,
//! `TOOLTRAIL_BENCH_COMMITS`, `TOOLTRAIL_BENCH_EVENTS`.

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use tooltrail_lake::{Commit, Location, Metrics, Partition, Position, Snapshot, Table, tables};
use tooltrail_schemas::lake::{EventBatchBuilder, Source};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn batch(writer: usize, commit: usize, events: usize) -> arrow::array::RecordBatch {
    let time = Utc::now();
    let mut builder = EventBatchBuilder::new();
    for i in 0..events {
        let t = time - TimeDelta::milliseconds(i as i64);
        let line = format!(
            r#"{{"schema_version":1,"event_id":"w{writer}c{commit}e{i}","time":"{}","tenant_id":"t{}","user_id":"u{}","server":"mail","method":"tools/call","tool":"send","decision":"allow","status":200}}"#,
            t.to_rfc3339(),
            i % 4,
            i % 97
        );
        let event = tooltrail_schemas::decode(line.as_bytes()).expect("valid event");
        let source = Source::Kafka {
            topic: "bench",
            partition: writer as i32,
            offset: (commit * events + i) as i64,
        };
        builder.append(&event, time, source);
    }
    builder.finish().expect("batch")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let writers = setting("TOOLTRAIL_BENCH_WRITERS", 3);
    let commits = setting("TOOLTRAIL_BENCH_COMMITS", 100);
    let events = setting("TOOLTRAIL_BENCH_EVENTS", 1000);
    let dir = tempfile::tempdir().expect("temp dir");
    let location = match std::env::var("TOOLTRAIL_BENCH_LAKE") {
        Ok(lake) => Location::parse(&lake).expect("lake location"),
        Err(_) => Location::local(dir.path()).expect("local lake"),
    };
    println!("lake {location}: {writers} writers x {commits} commits x {events} events");
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers {
        let location = location.clone();
        tasks.push(tokio::spawn(async move {
            let mut table = Table::open(&location, &tables::EVENTS, 3, Metrics::default())
                .await
                .expect("open");
            let mut latencies = Vec::with_capacity(commits);
            let mut conflicts = 0;
            for c in 0..commits {
                let rows = batch(w, c, events);
                let file = table
                    .write(Partition::hour(Utc::now()), rows, Vec::new())
                    .await
                    .expect("write");
                let position = Position {
                    app_id: Position::app_id("bench", "bench", w as i32),
                    first: (c * events) as i64,
                    last: ((c + 1) * events - 1) as i64,
                };
                let commit = Commit::append(vec![file]).with_positions(vec![position]);
                let at = Instant::now();
                let done = table.commit(&commit).await.expect("commit");
                latencies.push(at.elapsed());
                conflicts += done.conflicts;
            }
            let tenth = (commits / 10).max(1);
            let first = latencies[..tenth].to_vec();
            let last = latencies[latencies.len() - tenth..].to_vec();
            (latencies, conflicts, first, last)
        }));
    }
    let mut latencies = Vec::new();
    let mut conflicts = 0;
    let (mut first, mut last) = (Vec::new(), Vec::new());
    for task in tasks {
        let (l, c, f, t) = task.await.expect("writer");
        latencies.extend(l);
        conflicts += c;
        first.extend(f);
        last.extend(t);
    }
    first.sort();
    last.sort();
    let elapsed = started.elapsed();
    latencies.sort();
    let snapshot = Snapshot::load(&location, &tables::EVENTS)
        .await
        .expect("load")
        .expect("table");
    let rows: usize = snapshot
        .files()
        .expect("files")
        .iter()
        .map(|f| f.rows.unwrap_or(0))
        .sum();
    assert_eq!(rows, writers * commits * events, "every commit landed once");
    println!(
        "commits {}: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; conflicts {conflicts}; \
         {:.0} commits/s, {:.0} events/s over {:.1} s; rows {rows} (all landed once)",
        latencies.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies[latencies.len() - 1].as_secs_f64() * 1e3,
        latencies.len() as f64 / elapsed.as_secs_f64(),
        (writers * commits * events) as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64(),
    );
    println!(
        "p50 of the first tenth of commits {:.1} ms, of the last tenth {:.1} ms ({} files at the end)",
        percentile(&first, 0.5).as_secs_f64() * 1e3,
        percentile(&last, 0.5).as_secs_f64() * 1e3,
        writers * commits,
    );
}
