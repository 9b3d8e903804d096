//! `tooltrail up`'s periodic retention: every `retention.interval` (the
//! first at start), as of the injected clock; a summary at INFO, failures
//! at ERROR, and `tooltrail_retention_*` metrics. A failed run does not stop
//! it: the next interval tries again. Cancelling the token stops it between
//! partitions. Each run ends with a vacuum, also when retention itself is
//! off (`retention.enabled = false`): files removed by compaction or another
//! engine still leave storage once their grace has passed.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::location::Location;
use crate::metrics::{Metrics, OutcomeLabel, RetentionMetrics};
use crate::retention::apply::{DEFAULT_ZSTD_LEVEL, Retention, RetentionSummary};
use crate::retention::config::RetentionConfig;
use crate::retention::error::Error;
use crate::table::TableSpec;

/// What time it is, for deciding what is due.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The periodic retention task.
pub struct Periodic {
    location: Location,
    config: RetentionConfig,
    tables: Vec<&'static TableSpec>,
    metrics: RetentionMetrics,
    lake_metrics: Metrics,
    zstd_level: i32,
    clock: Clock,
}

impl Periodic {
    /// Retention of `tables` in the lake at `location`, counted in `metrics`.
    pub fn new(
        location: &Location,
        config: RetentionConfig,
        tables: &[&'static TableSpec],
        metrics: RetentionMetrics,
    ) -> Self {
        Periodic {
            location: location.clone(),
            config,
            tables: tables.to_vec(),
            metrics,
            lake_metrics: Metrics::default(),
            zstd_level: DEFAULT_ZSTD_LEVEL,
            clock: Arc::new(Utc::now),
        }
    }

    /// The zstd level of the files a rewrite writes.
    pub fn with_zstd_level(mut self, level: i32) -> Self {
        self.zstd_level = level;
        self
    }

    /// The lake metrics its commits count in.
    pub fn with_lake_metrics(mut self, metrics: Metrics) -> Self {
        self.lake_metrics = metrics;
        self
    }

    /// Decides as of `clock()` instead of the system's time.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Runs until `token` is cancelled. A failed run does not end it.
    pub async fn run(self, token: CancellationToken) {
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut retention: Option<Retention> = None;
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = ticker.tick() => {}
            }
            if !self.config.enabled {
                self.vacuum((self.clock)()).await;
                continue;
            }
            let current = match retention.take() {
                Some(r) => r,
                None => match Retention::new(&self.location, &self.config, &self.tables) {
                    Ok(r) => r
                        .with_zstd_level(self.zstd_level)
                        .with_lake_metrics(self.lake_metrics.clone()),
                    Err(error) => {
                        self.metrics
                            .runs
                            .get_or_create(&OutcomeLabel { outcome: "error" })
                            .inc();
                        tracing::error!(error = %tooltrail_schemas::Report(&error), "retention could not open the lake; trying again at the next interval");
                        continue;
                    }
                },
            };
            let mut current = current;
            let stop = || token.is_cancelled();
            let now = (self.clock)();
            let result = match current.plan(now).await {
                Ok(plan) => current.apply(&plan, &stop).await,
                Err(e) => Err(e),
            };
            retention = Some(current);
            self.metrics.record(&result);
            log_run(result);
            if !token.is_cancelled() {
                self.vacuum(now).await;
            }
        }
    }

    /// Deletes the files removed longer than `vacuum_grace` before `now`.
    async fn vacuum(&self, now: DateTime<Utc>) {
        let grace = self.config.vacuum_grace;
        match crate::vacuum::vacuum_tables(&self.location, &self.tables, grace, now).await {
            Ok(tables) => {
                for (table, summary) in tables.iter().filter(|(_, s)| !s.deleted.is_empty()) {
                    tracing::info!(
                        table,
                        files = summary.deleted.len(),
                        "vacuum deleted files past their grace period"
                    );
                }
            }
            Err(error) => {
                tracing::error!(error = %tooltrail_schemas::Report(&error), "vacuum failed; trying again at the next interval")
            }
        }
    }
}

fn log_run(result: Result<RetentionSummary, Error>) {
    match result {
        Ok(summary) => tracing::info!(
            deleted_partitions = summary.deleted.len(),
            rewritten_partitions = summary.rewritten.len(),
            rows = summary.rows_removed(),
            bytes = summary.bytes_removed(),
            skipped = summary.skipped.len(),
            failed = summary.failed.len(),
            stopped = summary.stopped,
            "retention applied"
        ),
        Err(error) => {
            tracing::error!(error = %tooltrail_schemas::Report(&error), "retention failed; trying again at the next interval");
        }
    }
}
