//! The lake's events, back out in order: what warms a detector.
//!
//! [`Replay`] takes the event files of a [`Snapshot`] whose hour partition
//! ends after `since`, and yields one hour at a time. Each file is read with
//! only [`DETECTOR_COLUMNS`] (plus the source columns when replaying one
//! Kafka partition), straight from Arrow into events.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, Int64Type};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use tooltrail_schemas::ToolCallEvent;
use tooltrail_schemas::lake::{DETECTOR_COLUMNS, EventRows};

use crate::error::{Error, Result};
use crate::table::{FileEntry, Partition, Snapshot};

/// Columns read to replay a single Kafka partition, besides the detector's.
const SOURCE_COLUMNS: [&str; 3] = ["source_name", "source_partition", "source_offset"];

/// The columns a replay reads.
pub fn columns(of_partition: bool) -> Vec<&'static str> {
    let mut columns = DETECTOR_COLUMNS.to_vec();
    if of_partition {
        columns.extend(SOURCE_COLUMNS);
    }
    columns
}

/// The events of `batch` at or after `since_micros` (and, given `only`, read
/// from that Kafka topic and partition), each with the key it replays in:
/// its offset when replaying a partition, else its time. An error names
/// what is wrong with the batch; the caller names the file.
pub fn events_of(
    batch: &RecordBatch,
    since_micros: i64,
    only: Option<(&str, i32)>,
    out: &mut Vec<(i64, ToolCallEvent)>,
) -> std::result::Result<(), String> {
    let rows = EventRows::new(batch).map_err(|e| e.to_string())?;
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| format!("no `{name}` column"))
    };
    let source = match only {
        None => None,
        Some(wanted) => Some((
            wanted,
            column("source_name")?.as_string::<i32>(),
            column("source_partition")?.as_primitive::<Int32Type>(),
            column("source_offset")?.as_primitive::<Int64Type>(),
        )),
    };
    for row in 0..rows.len() {
        let time = rows.time_micros(row);
        if time < since_micros {
            continue;
        }
        let order = match &source {
            None => time,
            Some(((topic, partition), names, partitions, offsets)) => {
                let from_it = names.is_valid(row)
                    && names.value(row) == *topic
                    && partitions.is_valid(row)
                    && partitions.value(row) == *partition;
                if !from_it {
                    continue;
                }
                offsets.value(row)
            }
        };
        out.push((order, rows.event(row).map_err(|e| e.to_string())?));
    }
    Ok(())
}

/// The lake's events since a time, hour by hour; see the [module docs](self).
pub struct Replay {
    snapshot: Snapshot,
    hours: std::collections::btree_map::IntoIter<Partition, Vec<FileEntry>>,
    since_micros: i64,
    only: Option<(String, i32)>,
    files: usize,
}

impl Replay {
    /// Every event since `since`, each hour in event-time order.
    pub fn since(events: &Snapshot, since: DateTime<Utc>) -> Result<Self> {
        Self::build(events, since, None)
    }

    /// The events since `since` that ingest read from Kafka partition
    /// `partition` of `topic` (their `source_*` columns say so), each hour in
    /// offset order: the history a consumer of that partition saw.
    pub fn of_partition(
        events: &Snapshot,
        since: DateTime<Utc>,
        topic: &str,
        partition: i32,
    ) -> Result<Self> {
        Self::build(events, since, Some((topic.to_owned(), partition)))
    }

    fn build(events: &Snapshot, since: DateTime<Utc>, only: Option<(String, i32)>) -> Result<Self> {
        let mut hours: BTreeMap<Partition, Vec<FileEntry>> = BTreeMap::new();
        for file in events.files()? {
            let partition = Partition::of(events.spec(), &file);
            if hour_end(&partition).is_some_and(|end| end <= since) {
                continue;
            }
            hours.entry(partition).or_default().push(file);
        }
        Ok(Replay {
            snapshot: events.clone(),
            hours: hours.into_iter(),
            since_micros: since.timestamp_micros(),
            only,
            files: 0,
        })
    }

    /// Files read so far.
    pub fn files(&self) -> usize {
        self.files
    }

    /// The next hour's events, in order; `None` after the last hour.
    pub async fn next_hour(&mut self) -> Option<Result<Vec<ToolCallEvent>>> {
        let (_, files) = self.hours.next()?;
        Some(self.read_hour(files).await)
    }

    async fn read_hour(&mut self, files: Vec<FileEntry>) -> Result<Vec<ToolCallEvent>> {
        let wanted = columns(self.only.is_some());
        let mut events = Vec::new();
        for file in files {
            let only = self.only.as_ref().map(|(t, p)| (t.as_str(), *p));
            for batch in self.snapshot.read_file(&file.path, Some(&wanted)).await? {
                events_of(&batch, self.since_micros, only, &mut events).map_err(|message| {
                    Error::CorruptFile {
                        path: format!("{}/{}", self.snapshot.spec().name, file.path),
                        message,
                    }
                })?;
            }
            self.files += 1;
        }
        events.sort_by_key(|(order, _)| *order);
        Ok(events.into_iter().map(|(_, e)| e).collect())
    }
}

/// When an hour partition (`dt`, `hour`) ends.
fn hour_end(partition: &Partition) -> Option<DateTime<Utc>> {
    let [dt, hour] = partition.values() else {
        return None;
    };
    let date = NaiveDate::parse_from_str(dt, "%Y-%m-%d").ok()?;
    let start = date.and_hms_opt(hour.parse().ok()?, 0, 0)?.and_utc();
    Some(start + TimeDelta::hours(1))
}

#[cfg(test)]
mod tests;
