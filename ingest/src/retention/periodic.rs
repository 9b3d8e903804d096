//! `tooltrail up`'s periodic retention: every `retention.interval` (the
//! first at start) on a blocking thread; a summary at INFO, failures at
//! ERROR, and `tooltrail_retention_*` metrics. A failed run does not stop
//! it: the next interval tries again.

use std::path::{Path, PathBuf};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::{Retention, RetentionConfig, RetentionSummary};
use crate::error::Error;
use crate::lake::Lake;
use crate::metrics::{OutcomeLabel, RetentionMetrics};

pub struct Periodic {
    metrics: RetentionMetrics,
    lake_dir: PathBuf,
    zstd_level: i32,
    config: RetentionConfig,
}

impl Periodic {
    pub fn new(
        lake_dir: &Path,
        zstd_level: i32,
        config: RetentionConfig,
        metrics: RetentionMetrics,
    ) -> Self {
        Periodic {
            metrics,
            lake_dir: lake_dir.to_owned(),
            zstd_level,
            config,
        }
    }

    /// Runs until `token` is cancelled. A failed run does not end it.
    pub async fn run(self, token: CancellationToken) {
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut state: Option<(Lake, Retention)> = None;
        loop {
            tokio::select! {
                _ = token.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let (taken, stop) = (state.take(), token.clone());
            let (lake_dir, zstd_level, config) =
                (self.lake_dir.clone(), self.zstd_level, self.config.clone());
            let joined = tokio::task::spawn_blocking(move || {
                let (mut lake, mut retention) = match taken {
                    Some(state) => state,
                    None => (
                        Lake::open(&lake_dir, zstd_level)?,
                        Retention::new(&lake_dir, &config),
                    ),
                };
                let result = retention
                    .plan(&mut lake, Utc::now())
                    .and_then(|plan| retention.apply(&mut lake, &plan, &|| stop.is_cancelled()));
                Ok::<_, Error>(((lake, retention), result))
            })
            .await;
            match joined {
                Ok(Ok((kept, result))) => {
                    state = Some(kept);
                    self.metrics.record(&result);
                    log_run(result);
                }
                Ok(Err(error)) => {
                    self.metrics
                        .runs
                        .get_or_create(&OutcomeLabel { outcome: "error" })
                        .inc();
                    tracing::error!(error = %tooltrail_schemas::Report(&error), "retention could not open the lake; trying again at the next interval");
                }
                Err(error) => {
                    self.metrics
                        .runs
                        .get_or_create(&OutcomeLabel { outcome: "error" })
                        .inc();
                    tracing::error!(%error, "retention run panicked; trying again at the next interval");
                }
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
        Err(Error::RetentionBusy { path }) => tracing::warn!(
            lock = %path.display(),
            "another retention run holds the lake; skipping this interval"
        ),
        Err(error) => {
            tracing::error!(error = %tooltrail_schemas::Report(&error), "retention failed; trying again at the next interval");
        }
    }
}
