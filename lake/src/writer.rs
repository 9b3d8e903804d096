//! Ingest's writer: one batch of input becomes a commit to `quarantine`
//! (when anything was rejected) and then one to `events`, each carrying the
//! batch's positions and idempotency keys.
//!
//! Delta commits one table at a time, so a crash can fall between the two.
//! The order makes that safe: `events` decides where a source resumes, so a
//! batch whose `events` commit is missing is read again; the rejects of it
//! that `quarantine` already holds are recognised ([`Resume::quarantined_through`],
//! [`KeyState::Quarantined`]) and the source leaves them out. Neither table
//! ever holds a record twice.
//!
//! Positions: a Kafka partition's app id is `<group>/<topic>/<partition>`
//! ([`Position::app_id`]); an imported file's is `file:b3:<BLAKE3 of the
//! file>`, its positions line numbers. Both resume from the table.

use arrow::array::RecordBatch;
use parquet::file::metadata::KeyValue;
use tooltrail_schemas::SCHEMA_VERSION;

use crate::error::Result;
use crate::location::Location;
use crate::metrics::Metrics;
use crate::table::{Commit, Committed, Partition, Position, Table};
use crate::tables::{EVENTS, QUARANTINE};

/// One batch of input, as files per partition.
#[derive(Debug, Default)]
pub struct Batch {
    pub events: Vec<(Partition, RecordBatch)>,
    pub quarantine: Vec<(Partition, RecordBatch)>,
    pub positions: Vec<Position>,
    /// Expiring idempotency keys (HTTP).
    pub keys: Vec<String>,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.quarantine.is_empty()
            && self.positions.is_empty()
            && self.keys.is_empty()
    }
}

/// Where a source picks up an app id (a Kafka partition, a file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resume {
    /// The first position `events` does not hold; `None`: nothing yet.
    pub next: Option<i64>,
    /// Rejects at or before this position are in `quarantine` already.
    pub quarantined_through: Option<i64>,
}

impl Resume {
    /// Whether a reject at `position` is to be left out.
    pub fn already_quarantined(&self, position: i64) -> bool {
        self.quarantined_through.is_some_and(|q| position <= q)
    }
}

/// What the lake knows of an idempotency key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    New,
    /// The request's rejects are in; its events are not (a crash fell
    /// between the two commits): write its events, leave out its rejects.
    Quarantined,
    /// All of the request is in: a retry is a duplicate.
    Committed,
}

/// What a commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The `events` version, when events or positions were committed.
    pub events: Option<Committed>,
    pub quarantine: Option<Committed>,
    pub files: usize,
}

impl Outcome {
    /// Conflicts both commits met.
    pub fn conflicts(&self) -> u32 {
        self.events.map_or(0, |c| c.conflicts) + self.quarantine.map_or(0, |c| c.conflicts)
    }
}

/// Writes ingest's two tables.
pub struct Writer {
    events: Table,
    quarantine: Table,
}

impl Writer {
    pub async fn open(location: &Location, zstd_level: i32, metrics: Metrics) -> Result<Writer> {
        Ok(Writer {
            events: Table::open(location, &EVENTS, zstd_level, metrics.clone()).await?,
            quarantine: Table::open(location, &QUARANTINE, zstd_level, metrics).await?,
        })
    }

    pub fn events(&self) -> &Table {
        &self.events
    }

    pub fn quarantine(&self) -> &Table {
        &self.quarantine
    }

    /// Reads what other writers committed since.
    pub async fn refresh(&mut self) -> Result<()> {
        self.events.refresh().await?;
        self.quarantine.refresh().await
    }

    /// Where `app_id` resumes, as of the versions last read.
    pub async fn resume(&mut self, app_id: &str) -> Result<Resume> {
        Ok(Resume {
            next: self.events.position(app_id).await?.map(|p| p + 1),
            quarantined_through: self.quarantine.position(app_id).await?,
        })
    }

    /// What the tables hold under `key`, as of the versions last read.
    pub async fn key_state(&mut self, key: &str) -> Result<KeyState> {
        if self.events.holds_key(key).await? {
            Ok(KeyState::Committed)
        } else if self.quarantine.holds_key(key).await? {
            Ok(KeyState::Quarantined)
        } else {
            Ok(KeyState::New)
        }
    }

    /// Writes and commits `batch`: its rejects, then its events. Returns
    /// once both are durable; an HTTP request is acknowledged only then.
    pub async fn commit(&mut self, batch: Batch) -> Result<Outcome> {
        let metadata = || {
            vec![KeyValue::new(
                "tooltrail.schema_version".into(),
                SCHEMA_VERSION.to_string(),
            )]
        };
        let mut outcome = Outcome::default();
        if !batch.quarantine.is_empty() {
            let mut adds = Vec::with_capacity(batch.quarantine.len());
            for (partition, rows) in batch.quarantine {
                adds.push(self.quarantine.write(partition, rows, metadata()).await?);
            }
            outcome.files += adds.len();
            // What `quarantine` holds already was left out by the source: the
            // positions start after it, and its keys are not consumed again.
            let mut positions = Vec::with_capacity(batch.positions.len());
            for p in &batch.positions {
                let held = self.quarantine.position(&p.app_id).await?;
                let first = held.map_or(p.first, |h| p.first.max(h + 1));
                if first <= p.last {
                    positions.push(Position { first, ..p.clone() });
                }
            }
            let mut keys = Vec::with_capacity(batch.keys.len());
            for key in &batch.keys {
                if !self.quarantine.holds_key(key).await? {
                    keys.push(key.clone());
                }
            }
            let commit = Commit::append(adds)
                .with_positions(positions)
                .with_keys(keys);
            outcome.quarantine = Some(self.quarantine.commit(&commit).await?);
        }
        let mut adds = Vec::with_capacity(batch.events.len());
        for (partition, rows) in batch.events {
            adds.push(self.events.write(partition, rows, metadata()).await?);
        }
        outcome.files += adds.len();
        if !adds.is_empty() || !batch.positions.is_empty() || !batch.keys.is_empty() {
            let commit = Commit::append(adds)
                .with_positions(batch.positions)
                .with_keys(batch.keys);
            outcome.events = Some(self.events.commit(&commit).await?);
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests;
