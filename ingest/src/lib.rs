//! Ingest: Kafka, HTTP and file sources into a hive-partitioned Parquet lake,
//! exactly once, with bad input quarantined.
//!
//! - [`lake::Lake`]: the lake and its commit log. Every write is a transaction:
//!   files are staged under hidden names, the log entry is the commit point,
//!   then the files are renamed into place. The log records the Kafka offsets
//!   each transaction covers, so the lake knows what it holds.
//! - [`batch::Pending`]: decodes records and fills the next transaction: valid
//!   events by hour partition, rejects into the quarantine with their reason.
//! - [`source::kafka`], [`source::http`], [`source::file`]: the sources.
//! - [`lake::digest`]: the signed digest chain over what the lake committed,
//!   compacted and deleted, and its verifier (`tooltrail lake verify`).
//! - [`retention`]: retention per table and tenant, legal holds; every deletion
//!   is a `retention` log entry, so the digest chain records it.
//! - [`metrics::Metrics`]: Prometheus counters, bounded labels.
//!
//! Invariants: Kafka offsets are committed only after the files holding them
//! are durable; a record that fails validation never stalls a partition; a
//! file becomes visible to `*.parquet` readers only once its transaction is
//! committed; every deletion or replacement of a lake file is a log entry.
//!
//! ```no_run
//! # fn main() -> Result<(), tooltrail_ingest::Error> {
//! use tooltrail_ingest::{config::IngestConfig, lake::Lake, metrics::Metrics, source::file};
//! let mut lake = Lake::open("lake".as_ref(), 3)?;
//! let metrics = Metrics::register(&mut Default::default());
//! let summary = file::import_file(
//!     "events.ndjson".as_ref(), &mut lake, &IngestConfig::default(), &metrics, &mut |_| {},
//! )?;
//! println!("{} events, {} quarantined", summary.events, summary.quarantined);
//! # Ok(()) }
//! ```

pub mod batch;
pub mod config;
mod error;
pub mod lake;
pub mod metrics;
pub mod retention;
pub mod source;

pub use error::{Error, Result};
