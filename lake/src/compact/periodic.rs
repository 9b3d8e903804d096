//! `tooltrail up`'s periodic compaction: every `compaction.interval` (the
//! first at start), as of the injected clock, every table that exists; a
//! summary at INFO when something was merged, failures at ERROR, and
//! `tooltrail_compaction_*` metrics. A failed run does not stop it: the next
//! interval tries again. The files it removes leave storage with vacuum,
//! after `retention.vacuum_grace`.

use tokio_util::sync::CancellationToken;

use crate::compact::compact_tables;
use crate::compact::config::CompactionConfig;
use crate::location::Location;
use crate::metrics::{CompactionMetrics, Metrics};
use crate::retention::periodic::Clock;
use crate::table::TableSpec;

/// The periodic compaction task.
pub struct Periodic {
    location: Location,
    config: CompactionConfig,
    tables: Vec<&'static TableSpec>,
    metrics: CompactionMetrics,
    lake_metrics: Metrics,
    zstd_level: i32,
    clock: Clock,
}

impl Periodic {
    /// Compaction of `tables` in the lake at `location`, counted in
    /// `metrics`; the files it writes are zstd at `zstd_level`.
    pub fn new(
        location: &Location,
        config: CompactionConfig,
        tables: &[&'static TableSpec],
        zstd_level: i32,
        metrics: CompactionMetrics,
    ) -> Self {
        Periodic {
            location: location.clone(),
            config,
            tables: tables.to_vec(),
            metrics,
            lake_metrics: Metrics::default(),
            zstd_level,
            clock: std::sync::Arc::new(chrono::Utc::now),
        }
    }

    /// The lake metrics its commits count in.
    pub fn with_lake_metrics(mut self, metrics: Metrics) -> Self {
        self.lake_metrics = metrics;
        self
    }

    /// Decides what is closed as of `clock()` instead of the system's time.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Runs until `token` is cancelled, between runs. A failed run does not
    /// end it.
    pub async fn run(self, token: CancellationToken) {
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let options = self.config.options();
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let result = tokio::select! {
                _ = token.cancelled() => return,
                result = compact_tables(
                    &self.location,
                    &self.tables,
                    &options,
                    self.zstd_level,
                    &self.lake_metrics,
                    (self.clock)(),
                ) => result,
            };
            self.metrics.record(&result);
            match result {
                Ok(tables) => {
                    for (table, s) in tables.iter().filter(|(_, s)| s.groups + s.deferred > 0) {
                        tracing::info!(
                            table,
                            partitions = s.partitions,
                            files_in = s.files_in,
                            files_out = s.files_out,
                            rows = s.rows,
                            deferred = s.deferred,
                            "compacted small files"
                        );
                    }
                }
                Err(error) => tracing::error!(
                    error = %tooltrail_schemas::Report(&error),
                    "compaction failed; trying again at the next interval"
                ),
            }
        }
    }
}
