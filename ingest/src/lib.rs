//! Ingest: Kafka, HTTP and file sources into the lake's `events` and
//! `quarantine` tables, exactly once, with bad input quarantined. The tables,
//! their commits and their layout are the lake crate's (`tooltrail_lake`);
//! ingest is sources and batching.
//!
//! - [`batch::Pending`]: decodes records and fills the next commit: valid
//!   events by hour partition, rejects into the quarantine with their reason,
//!   and the positions covered (Kafka offsets, a file's lines).
//! - [`source::kafka`], [`source::http`], [`source::file`]: the sources. Each
//!   resumes from what the lake holds ([`tooltrail_lake::Writer::resume`],
//!   HTTP idempotency keys), whatever Kafka's committed offset says.
//! - [`otlp`]: OTLP log records and spans (`POST /v1/logs`, `/v1/traces`,
//!   Kafka topics of `otlp_proto`) as v1 events, through `[otlp.mapping]`.
//! - [`metrics::Metrics`]: Prometheus counters, bounded labels.
//!
//! Invariants: Kafka offsets are committed only after the commit holding them
//! is durable; a record that fails validation never stalls a partition; an
//! HTTP request is answered only once its events are committed.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tooltrail_ingest::Error> {
//! use tooltrail_ingest::{config::IngestConfig, metrics::Metrics, source::file};
//! let lake = tooltrail_lake::Location::parse("lake")?;
//! let mut writer = tooltrail_lake::Writer::open(&lake, 3, Default::default()).await?;
//! let metrics = Metrics::register(&mut Default::default());
//! let runtime = tokio::runtime::Handle::current();
//! let summary = tokio::task::block_in_place(|| {
//!     file::import_file(
//!         "events.ndjson".as_ref(), &mut writer, &runtime, &IngestConfig::default(), &metrics, &mut |_| {},
//!     )
//! })?;
//! println!("{} events, {} quarantined", summary.events, summary.quarantined);
//! # Ok(()) }
//! ```

pub mod batch;
pub mod config;
mod error;
pub mod metrics;
pub mod otlp;
pub mod source;

pub use error::{Error, Result};
