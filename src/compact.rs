//! `tooltrail compact`: merges the small files of closed hours of `events`,
//! atomically for every reader (see `tooltrail_lake::compact`).

use std::time::Duration;

use anyhow::Context;
use tooltrail_lake::compact::{CompactOptions, compact};
use tooltrail_lake::{Metrics, Table, tables};

use crate::config::Config;

#[derive(clap::Args, Debug)]
pub struct CompactArgs {
    /// The lake (a directory or s3://bucket/prefix), overriding `ingest.lake`.
    #[arg(long, value_name = "LAKE")]
    pub lake: Option<String>,
    /// Only hours that ended at least this long ago, e.g. `1h`, `30m`.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub min_age: Duration,
    /// Files smaller than this many bytes are merged.
    #[arg(long, value_name = "BYTES", default_value_t = 64 << 20)]
    pub small_file_bytes: u64,
}

pub async fn run(args: CompactArgs, config: &Config) -> anyhow::Result<()> {
    let location = crate::lake::existing(config, args.lake).await?;
    let open = Table::open(
        &location,
        &tables::EVENTS,
        config.ingest.zstd_level,
        Metrics::default(),
    );
    let mut events = open
        .await
        .with_context(|| format!("opening the lake at {location}"))?;
    let options = CompactOptions {
        min_age: args.min_age,
        small_file_bytes: args.small_file_bytes,
        ..CompactOptions::default()
    };
    let summary = compact(&mut events, &options, chrono::Utc::now()).await?;
    println!(
        "compacted {} hours: {} files into {}, {} rows; {} hours deferred (written to meanwhile)",
        summary.hours, summary.files_in, summary.files_out, summary.rows, summary.deferred
    );
    Ok(())
}
