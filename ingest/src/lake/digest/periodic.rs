//! `tooltrail up`'s digester: a digest at start, then every
//! `digest.interval`. A failed write is logged at ERROR and counted
//! (`tooltrail_lake_digest_failures_total`), and the next tick tries again:
//! it never stops the process.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tooltrail_schemas::signing::Signer;

use crate::error::{Error, Result};
use crate::metrics::DigestMetrics;

pub struct Digester {
    lake: PathBuf,
    signer: Signer,
    interval: Duration,
    metrics: DigestMetrics,
}

impl Digester {
    pub fn new(lake: &Path, signer: Signer, interval: Duration, metrics: DigestMetrics) -> Self {
        Digester {
            lake: lake.to_owned(),
            signer,
            interval,
            metrics,
        }
    }

    /// Writes digests until `token` is cancelled; fails only if a write panics.
    pub async fn run(self, token: CancellationToken) -> Result<()> {
        // tokio's interval panics on zero.
        let mut ticks = tokio::time::interval(self.interval.max(Duration::from_secs(1)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = token.cancelled() => return Ok(()),
                _ = ticks.tick() => {}
            }
            let (lake, signer) = (self.lake.clone(), self.signer.clone());
            let written = tokio::task::spawn_blocking(move || {
                super::write_digest(&lake, &signer, Utc::now())
            })
            .await
            .map_err(|_| Error::DigesterPanicked)?;
            match written {
                Ok(summary) => {
                    self.metrics.written.inc();
                    self.metrics.last_success.set(Utc::now().timestamp());
                    tracing::info!(
                        seq = summary.seq,
                        log_from = summary.log_from,
                        log_to = summary.log_to,
                        added = summary.added,
                        removed = summary.removed,
                        observed = summary.observed,
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
