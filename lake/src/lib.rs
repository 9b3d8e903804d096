//! The lake: tooltrail's tables as Delta tables, on a local disk (the
//! embedded default) or in object storage (`s3://bucket/prefix`).
//!
//! - [`Location`] is where the lake lives; each table is `<lake>/<table>/`
//!   with its `_delta_log/`, partitioned by `dt` (and `hour`).
//! - [`tables`] names every table and its layout; nothing outside this crate
//!   knows a table's directory.
//! - [`Table`] writes data files ([`parquet`]: sorted by tenant, user and
//!   time, zstd, bloom filters, the page index) and commits them with
//!   statistics, their SHA-256 and, for Kafka, the positions they cover, as
//!   one Delta version. Several writers share a table without a lock.
//! - [`Snapshot`] is a read-only version: what query, exports, warm-up and
//!   verification read.
//! - [`ocsf`] defines how `events` and `alerts` rows read as OCSF API
//!   Activity and Detection Finding: one SQL select list per class, used by
//!   the query side's views and exports and by the `ocsf` alert destination.
//! - [`appender::Appender`] group-commits small records (alerts, the query
//!   audit) from many callers: one version per interval, not per record.
//!
//! Invariants: a data file is visible only once a commit names it; a Kafka
//! partition's position (`txn` action, app id `<group>/<topic>/<partition>`)
//! is committed with the data it covers, so a partition resumes from the
//! table, whatever Kafka's committed offset says.
//!
//! ```no_run
//! # async fn demo(batch: arrow::array::RecordBatch) -> tooltrail_lake::Result<()> {
//! use tooltrail_lake::{Commit, Location, Metrics, Partition, Table, tables};
//!
//! let lake = Location::parse("/var/lib/tooltrail/lake")?;
//! let mut events = Table::open(&lake, &tables::EVENTS, 3, Metrics::default()).await?;
//! let time = chrono::Utc::now();
//! let file = events.write(Partition::hour(time), batch, Vec::new()).await?;
//! events.commit(&Commit::append(vec![file])).await?;
//! # Ok(())
//! # }
//! ```

pub mod appender;
pub mod compact;
pub mod digest;
pub mod error;
pub mod keys;
pub mod location;
pub mod metrics;
pub mod ocsf;
pub mod parquet;
pub mod positions;
pub mod replay;
pub mod retention;
pub mod stats;
pub mod table;
pub mod tables;
pub mod vacuum;
pub mod writer;

#[cfg(test)]
mod testing;

/// A Delta table version.
pub use deltalake::kernel::Version;
pub use error::{Error, Result};
pub use location::Location;
pub use metrics::Metrics;
pub use table::{
    Commit, Committed, DataFile, FileEntry, Operation, Partition, Position, Snapshot, Table,
    TableSpec, empty_scan,
};
pub use writer::{Batch, KeyState, Outcome, Resume, Writer};
