//! Warming the detector from the lake: `up --warm-from-lake 28d`.
//!
//! The lake holds every event the process ever acknowledged, so the
//! detector's state is rebuilt by replaying the recent part of it, hour by
//! hour in event-time order, before intake starts. This is how detection
//! state survives a restart, including `kill -9`: windows that were open at
//! the crash are judged again. Alerts the replay raises whose ids are already
//! in `<lake>/alerts/` are dropped (alert ids are deterministic); the others
//! (windows the crash interrupted) are published as usual.
//!
//! Only the live files of the lake's commit log are read. The cost is one
//! pass over the window's events at start-up.
//!
//! `detect --kafka` warms one Kafka partition at a time: only the events
//! ingest read from that partition, in offset order.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use anyhow::Context;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{Int16Type, Int32Type, Int64Type, TimestampMicrosecondType};
use chrono::{DateTime, Utc};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde_json::{Map, Value};
use tooltrail_detect::sink::AlertLake;
use tooltrail_detect::{Alert, Engine};
use tooltrail_ingest::lake::Lake;
use tooltrail_schemas::ToolCallEvent;

/// What warming did.
#[derive(Debug, Default)]
pub struct Warmed {
    pub events: u64,
    pub files: usize,
    /// Alerts the replay raised that the lake did not hold yet.
    pub new_alerts: Vec<Alert>,
}

/// Replays the lake's events since `since` through `engine`, hour by hour
/// in event-time order.
pub fn warm(lake: &Lake, since: DateTime<Utc>, engine: &mut Engine) -> anyhow::Result<Warmed> {
    warm_from(lake, since, None, engine)
}

/// Replays the lake's events since `since` that ingest read from Kafka
/// partition `partition` of `topic` (their `source_*` columns say so), hour
/// by hour in offset order: the state a detector consuming that partition
/// would have built. For `detect --kafka`, on a partition with no checkpoint.
pub fn warm_partition(
    lake: &Lake,
    since: DateTime<Utc>,
    (topic, partition): (&str, i32),
    engine: &mut Engine,
) -> anyhow::Result<Warmed> {
    warm_from(lake, since, Some((topic, partition)), engine)
}

fn warm_from(
    lake: &Lake,
    since: DateTime<Utc>,
    only: Option<(&str, i32)>,
    engine: &mut Engine,
) -> anyhow::Result<Warmed> {
    let mut hours: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in lake.state().live.values() {
        if file.table != "events" || file.max_time.is_some_and(|t| t < since) {
            continue;
        }
        // `events/dt=YYYY-MM-DD/hour=HH/...`: the partition sorts by time.
        let partition = file.path.rsplit_once('/').map_or("", |(dir, _)| dir);
        hours
            .entry(partition.to_string())
            .or_default()
            .push(file.path.clone());
    }
    let known = AlertLake::open(lake.root())
        .and_then(|alerts| alerts.written())
        .context("reading the alerts the lake holds")?;
    let mut warmed = Warmed::default();
    let mut out = Vec::new();
    for files in hours.values() {
        let mut events = Vec::new();
        for path in files {
            read_events(&lake.root().join(path), since, only, &mut events)
                .with_context(|| format!("read {path}"))?;
            warmed.files += 1;
        }
        events.sort_by_key(|(order, _)| *order);
        for (_, e) in &events {
            engine.observe(e, &mut out);
        }
        warmed.events += events.len() as u64;
    }
    warmed.new_alerts = out
        .into_iter()
        .filter(|a| !known.contains_key(&a.alert_id))
        .collect();
    Ok(warmed)
}

/// The columns the detector reads, by contract name.
const STRING_FIELDS: [&str; 14] = [
    "event_id",
    "tenant_id",
    "user_id",
    "server",
    "method",
    "decision",
    "tool",
    "resource",
    "required_scope",
    "error_type",
    "client_id",
    "agent_id",
    "session_id",
    "source_ip",
];

/// Reads one lake file's events at or after `since` (only those from Kafka
/// partition `only`, if given), rebuilt through the contract's decoder (so
/// they are exactly what ingest accepted). Each comes with the key to replay
/// it in: its source offset with `only`, else its time.
fn read_events(
    path: &Path,
    since: DateTime<Utc>,
    only: Option<(&str, i32)>,
    out: &mut Vec<(i64, ToolCallEvent)>,
) -> anyhow::Result<()> {
    let file = File::open(path)?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    let since = since.timestamp_micros();
    for batch in reader {
        let batch = batch?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .with_context(|| format!("no column {name}"))
        };
        let time = column("time")?
            .as_primitive::<TimestampMicrosecondType>()
            .clone();
        let status = column("status")?.as_primitive::<Int16Type>().clone();
        let code = column("jsonrpc_error_code")?
            .as_primitive::<Int64Type>()
            .clone();
        let source = match only {
            None => None,
            Some(_) => Some((
                column("source_name")?.as_string::<i32>().clone(),
                column("source_partition")?
                    .as_primitive::<Int32Type>()
                    .clone(),
                column("source_offset")?.as_primitive::<Int64Type>().clone(),
            )),
        };
        let strings = STRING_FIELDS
            .iter()
            .map(|name| Ok((*name, column(name)?.as_string::<i32>().clone())))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for row in 0..batch.num_rows() {
            if time.value(row) < since {
                continue;
            }
            let order = match (&source, only) {
                (Some((names, partitions, offsets)), Some((topic, partition))) => {
                    let from_it = names.is_valid(row)
                        && names.value(row) == topic
                        && partitions.is_valid(row)
                        && partitions.value(row) == partition;
                    if !from_it {
                        continue;
                    }
                    offsets.value(row)
                }
                _ => time.value(row),
            };
            let mut object = Map::new();
            object.insert("schema_version".into(), Value::from(1));
            let at = DateTime::<Utc>::from_timestamp_micros(time.value(row))
                .context("time out of range")?;
            object.insert(
                "time".into(),
                Value::from(tooltrail_schemas::format_time(&at)),
            );
            object.insert("status".into(), Value::from(status.value(row)));
            if code.is_valid(row) {
                object.insert("jsonrpc_error_code".into(), Value::from(code.value(row)));
            }
            for (name, values) in &strings {
                if values.is_valid(row) {
                    object.insert((*name).into(), Value::from(values.value(row)));
                }
            }
            let line = serde_json::to_vec(&object)?;
            out.push((
                order,
                tooltrail_schemas::decode(&line)
                    .map_err(|e| anyhow::anyhow!("{}: row {row}: {e}", path.display()))?,
            ));
        }
    }
    Ok(())
}
