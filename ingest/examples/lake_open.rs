//! How long opening a lake takes as its commit log grows, with the log's
//! checkpoints and without them (the whole log replayed).
//!
//! ```text
//! cargo build --release -p tooltrail-ingest --example lake_open
//! $CARGO_TARGET_DIR/release/examples/lake_open [COMMITS] [LAKE_DIR]
//! ```
//!
//! Makes `COMMITS` (default 20,000) one-event transactions, as a busy HTTP
//! ingest does (each its own file and log entry), unless `LAKE_DIR` already
//! holds a lake, then opens it both ways.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use tooltrail_ingest::batch::{Pending, TimeWindow};
use tooltrail_ingest::lake::Lake;
use tooltrail_ingest::metrics::Metrics;
use tooltrail_schemas::lake::Source;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let commits: u64 = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(20_000);
    let scratch = tempfile::tempdir()?;
    let root = args
        .next()
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| scratch.path().join("lake"));
    let metrics = Metrics::register(&mut Default::default());
    let window = TimeWindow {
        max_age: Duration::from_secs(10 * 365 * 86400),
        max_future: Duration::from_secs(3600),
    };
    let mut lake = Lake::open(&root, 1)?;
    let have = lake.state().last_seq;
    let started = Instant::now();
    for n in have..commits {
        let line = format!(
            r#"{{"schema_version":1,"event_id":"e{n}","time":"{}","tenant_id":"acme","user_id":"u{}","server":"github","method":"tools/call","tool":"create_issue","decision":"allow","status":200}}"#,
            tooltrail_schemas::format_time(&Utc::now()),
            n % 100
        );
        let mut pending = Pending::new(window);
        pending.add_key(format!("http:req-{n}"));
        let _ = pending.push(
            line.as_bytes(),
            Utc::now(),
            Source::File { path: "x", line: 0 },
        );
        pending.commit_to(&mut lake, &metrics, "http")?;
        if n % 5000 == 4999 {
            eprintln!("{} commits ({:.0?})", n + 1, started.elapsed());
        }
    }
    drop(lake);

    let t = Instant::now();
    let lake = Lake::open(&root, 1)?;
    let with = t.elapsed();
    let seq = lake.state().last_seq;
    drop(lake);
    let checkpoints = root.join("_tooltrail/checkpoints");
    let moved = root.join("_tooltrail/checkpoints.moved");
    std::fs::rename(&checkpoints, &moved).context("no checkpoint was written")?;
    let t = Instant::now();
    let replayed = Lake::open(&root, 1)?;
    let without = t.elapsed();
    anyhow::ensure!(replayed.state().last_seq == seq);
    drop(replayed);
    std::fs::rename(&moved, &checkpoints)?;
    println!(
        "log of {seq} entries: open {with:.2?} from the checkpoint, {without:.2?} replaying the whole log"
    );
    Ok(())
}
