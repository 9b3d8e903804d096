//! `tooltrail compact`: merges the small files of the closed partitions of
//! every table, atomically for every reader (see `tooltrail_lake::compact`),
//! and `up`'s periodic compaction (`[compaction]`).

use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;
use tooltrail_lake::compact::compact_tables;
use tooltrail_lake::compact::periodic::Periodic;
use tooltrail_lake::metrics::CompactionMetrics;
use tooltrail_lake::{Location, Metrics, tables};

use crate::config::Config;
use crate::supervisor::{Phase, Supervisor};

#[derive(clap::Args, Debug)]
pub struct CompactArgs {
    /// The lake (a directory or s3://bucket/prefix), overriding `ingest.lake`.
    #[arg(long, value_name = "LAKE")]
    pub lake: Option<String>,
    /// Only partitions that ended at least this long ago, e.g. `1h`, `30m`
    /// (default: `compaction.min_age`, 1h).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub min_age: Option<Duration>,
    /// Files smaller than this many bytes are merged (default:
    /// `compaction.small_file_bytes`, 32 MiB).
    #[arg(long, value_name = "BYTES")]
    pub small_file_bytes: Option<u64>,
}

pub async fn run(args: CompactArgs, config: &Config) -> anyhow::Result<()> {
    let location = crate::lake::existing(config, args.lake).await?;
    let mut options = config.compaction.options();
    if let Some(min_age) = args.min_age {
        options.min_age = min_age;
    }
    if let Some(bytes) = args.small_file_bytes {
        options.small_file_bytes = bytes;
        options.target_file_bytes = options.target_file_bytes.max(bytes);
    }
    let compacted = compact_tables(
        &location,
        tables::ALL,
        &options,
        config.ingest.zstd_level,
        &Metrics::default(),
        chrono::Utc::now(),
    )
    .await
    .with_context(|| format!("compacting the lake at {location}"))?;
    for (table, summary) in compacted {
        println!(
            "{table}: compacted {} partitions: {} files into {}, {} rows; {} groups deferred \
             (written to meanwhile)",
            summary.partitions, summary.files_in, summary.files_out, summary.rows, summary.deferred
        );
    }
    Ok(())
}

/// Starts `up`'s periodic compaction ([`Periodic`]) in the serve phase,
/// unless `compaction.enabled` is false.
pub fn spawn(
    supervisor: &Supervisor,
    registry: &mut Registry,
    lake: &Location,
    config: &Config,
    lake_metrics: Metrics,
) {
    if !config.compaction.enabled {
        tracing::info!("compaction is disabled (compaction.enabled = false)");
        return;
    }
    let metrics = CompactionMetrics::default();
    metrics.register(registry);
    let task = Periodic::new(
        lake,
        config.compaction.clone(),
        tables::ALL,
        config.ingest.zstd_level,
        metrics,
    )
    .with_lake_metrics(lake_metrics);
    let token = supervisor.token(Phase::Serve);
    supervisor.spawn(Phase::Serve, "compaction", async move {
        task.run(token).await;
        Ok(())
    });
}
