//! The lake's events, back out in order: what warms a detector.
//!
//! [`Replay`] lists the live event files of a lake state whose newest event
//! is at or after `since`, grouped by hour partition, and yields one hour
//! at a time. Each file is read with only the detector's columns
//! projected (plus the source columns when replaying one Kafka partition),
//! straight from Arrow into events.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tooltrail_schemas::ToolCallEvent;

use crate::error::{Error, Result};
use crate::lake::Lake;

/// The lake's events since a time, hour by hour; see the [module docs](self).
pub struct Replay {
    root: PathBuf,
    hours: std::collections::btree_map::IntoIter<String, Vec<String>>,
    since_micros: i64,
    only: Option<(String, i32)>,
    files: usize,
}

impl Replay {
    /// Every event since `since`, each hour in event-time order.
    pub fn since(lake: &Lake, since: DateTime<Utc>) -> Self {
        Self::build(lake, since, None)
    }

    /// The events since `since` that ingest read from Kafka partition
    /// `partition` of `topic` (their `source_*` columns say so), each hour in
    /// offset order: the history a consumer of that partition saw.
    pub fn of_partition(lake: &Lake, since: DateTime<Utc>, topic: &str, partition: i32) -> Self {
        Self::build(lake, since, Some((topic.to_owned(), partition)))
    }

    fn build(lake: &Lake, since: DateTime<Utc>, only: Option<(String, i32)>) -> Self {
        let mut hours: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for file in lake.state().live.values() {
            if file.table != "events" || file.max_time.is_some_and(|t| t < since) {
                continue;
            }
            // `events/dt=YYYY-MM-DD/hour=HH/...`: the partition sorts by time.
            let hour = file.path.rsplit_once('/').map_or("", |(dir, _)| dir);
            hours
                .entry(hour.to_string())
                .or_default()
                .push(file.path.clone());
        }
        Replay {
            root: lake.root().to_path_buf(),
            hours: hours.into_iter(),
            since_micros: since.timestamp_micros(),
            only,
            files: 0,
        }
    }

    /// Files read so far.
    pub fn files(&self) -> usize {
        self.files
    }

    /// The next hour's events, in order.
    fn next_hour(&mut self, files: Vec<String>) -> Result<Vec<ToolCallEvent>> {
        let mut events = Vec::new();
        for path in files {
            let path = self.root.join(path);
            self.read(&path, &mut events)?;
            self.files += 1;
        }
        events.sort_by_key(|(order, _)| *order);
        Ok(events.into_iter().map(|(_, e)| e).collect())
    }

    /// Reads one file's wanted events, each with the key it replays in: its
    /// source offset when replaying a partition, else its time.
    fn read(&self, path: &Path, out: &mut Vec<(i64, ToolCallEvent)>) -> Result<()> {
        let read_error = |source| Error::ReadParquet {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(read_error)?;
        let wanted = tooltrail_lake::replay::columns(self.only.is_some());
        let mask = ProjectionMask::columns(builder.parquet_schema(), wanted.iter().copied());
        let reader = builder.with_projection(mask).build().map_err(read_error)?;
        let only = self.only.as_ref().map(|(t, p)| (t.as_str(), *p));
        for batch in reader {
            let batch = batch.map_err(Error::Arrow)?;
            tooltrail_lake::replay::events_of(&batch, self.since_micros, only, out).map_err(
                |message| Error::CorruptFile {
                    path: path.to_path_buf(),
                    message,
                },
            )?;
        }
        Ok(())
    }
}

impl Iterator for Replay {
    type Item = Result<Vec<ToolCallEvent>>;

    fn next(&mut self) -> Option<Self::Item> {
        let (_, files) = self.hours.next()?;
        Some(self.next_hour(files))
    }
}
