//! `tooltrail up`'s digester: a digest at start, then every interval, even
//! when nothing changed. A failed write is logged at ERROR and counted
//! (`tooltrail_lake_digest_failures_total`), and the next tick tries again:
//! it never stops the process.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;
use tooltrail_schemas::signing::Signer;

use crate::location::Location;
use crate::metrics::DigestMetrics;
use crate::table::TableSpec;

/// The wall clock a digest's `created_at` is read from.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Writes the lake's digests on a schedule.
pub struct Digester {
    location: Location,
    tables: Vec<&'static TableSpec>,
    signer: Signer,
    interval: Duration,
    clock: Arc<dyn Clock>,
    metrics: DigestMetrics,
}

impl Digester {
    /// A digest of `tables` (and every table the chain already covers) at
    /// start and then every `interval` (at least a second), on the system
    /// clock.
    pub fn new(
        location: Location,
        tables: &[&'static TableSpec],
        signer: Signer,
        interval: Duration,
        metrics: DigestMetrics,
    ) -> Digester {
        Digester {
            location,
            tables: tables.to_vec(),
            signer,
            interval: interval.max(Duration::from_secs(1)),
            clock: Arc::new(SystemClock),
            metrics,
        }
    }

    /// Reads `created_at` from `clock` instead.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Digester {
        self.clock = clock;
        self
    }

    /// Writes digests until `token` is cancelled (a write under way is
    /// finished first).
    pub async fn run(self, token: CancellationToken) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = token.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let now = self.clock.now();
            // Not cut short by the token: a write stopped between its two
            // puts would leave a signature that holds the seq for minutes.
            let written =
                super::write_digest(&self.location, &self.tables, &self.signer, now).await;
            match written {
                Ok(summary) => {
                    self.metrics.written.inc();
                    self.metrics.last_success.set(now.timestamp());
                    tracing::info!(
                        seq = summary.seq,
                        commits = summary.commits(),
                        added = summary.added(),
                        removed = summary.removed(),
                        "lake digest written"
                    );
                }
                Err(error) => {
                    self.metrics.failures.inc();
                    tracing::error!(error = %tooltrail_schemas::Report(&error), "writing the lake digest failed; the tamper evidence is not advancing");
                }
            }
        }
    }
}
