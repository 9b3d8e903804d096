//! The lake's tables are standard Delta tables: DuckDB (`delta_scan`) and the Python `deltalake`
//! package read a lake written by tooltrail as is, partitions included, and see exactly the events
//! that went in.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use chrono::Timelike;
use serde_json::{Value, json};

use crate::support::process::path_str;
use crate::support::run_tooltrail;

/// One row as the readers report it (see scripts/delta_readers.py).
fn expected_row(event: &tooltrail_schemas::ToolCallEvent) -> Value {
    json!([
        event.event_id,
        event.tenant_id,
        event.user_id,
        event.time_micros(),
        event.status,
        event.scopes,
        event.attributes,
        event.time.format("%Y-%m-%d").to_string(),
        event.time.hour(),
    ])
}

#[tokio::test]
async fn duckdb_and_python_deltalake_read_the_lake_as_written() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let events = dir.path().join("events.ndjson");
    let lake = dir.path().join("lake");
    let out = dir.path().join("readers.json");
    let (events_s, lake_s) = (path_str(&events)?, path_str(&lake)?);
    let limit = Duration::from_secs(300);
    run_tooltrail(
        &[
            "simulate", "--users", "40", "--days", "2", "--seed", "5", "--out", events_s,
        ],
        limit,
    )
    .await?;
    run_tooltrail(&["ingest", "--file", events_s, "--lake", lake_s], limit).await?;

    let mut expected = BTreeMap::new();
    for line in std::fs::read_to_string(&events)?.lines() {
        let event =
            tooltrail_schemas::decode(line.as_bytes()).context("simulated events are valid")?;
        expected.insert(event.event_id.clone(), expected_row(&event));
    }
    ensure!(
        expected.len() > 1000,
        "too few events to be a meaningful check: {}",
        expected.len()
    );
    let expected: Vec<Value> = expected.into_values().collect();

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/delta_readers.py");
    let table = lake.join("events");
    let output = tokio::process::Command::new("python3")
        .args([script, path_str(&table)?, path_str(&out)?])
        .output()
        .await
        .context("run python3 (see .ci/run for the packages)")?;
    ensure!(
        output.status.success(),
        "scripts/delta_readers.py failed (are duckdb, its delta extension and deltalake installed?):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let read: Value = serde_json::from_slice(&std::fs::read(&out)?)?;
    for reader in ["duckdb", "deltalake"] {
        let rows = read[reader]
            .as_array()
            .with_context(|| format!("{reader} rows"))?;
        assert_eq!(rows.len(), expected.len(), "{reader} row count");
        let mismatches: Vec<(&Value, &Value)> = rows
            .iter()
            .zip(&expected)
            .filter(|(got, want)| got != want)
            .take(3)
            .collect();
        assert!(
            mismatches.is_empty(),
            "{reader} reads rows differently (got, want): {mismatches:#?}"
        );
    }
    Ok(())
}
