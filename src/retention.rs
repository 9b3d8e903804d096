//! `tooltrail retention`: apply retention (`apply`, `--dry-run` to only
//! print the plan) and list legal holds (`holds`); for `up`, the periodic
//! task ([`spawn`]). The decisions, the deletions and the periodic task are
//! `tooltrail_lake::retention`'s; the admin API is `tooltrail_query::holds`.

use anyhow::Context;
use chrono::{DateTime, Utc};
use prometheus_client::registry::Registry;
use tooltrail_lake::Location;
use tooltrail_lake::metrics::RetentionMetrics;
use tooltrail_lake::retention::periodic::Periodic;
use tooltrail_lake::retention::text as report;
use tooltrail_lake::retention::{HoldStore, Retention, TABLES};
use tooltrail_lake::vacuum::vacuum_tables;

use crate::config::Config;
use crate::supervisor::{Phase, Supervisor};

#[derive(clap::Subcommand, Debug)]
pub enum RetentionCommand {
    /// Delete what is past retention (whole partitions, or a tenant's rows
    /// out of shared ones), keep what legal holds cover, and print both.
    Apply(ApplyArgs),
    /// Delete from storage the data files removed from a table (by
    /// retention or compaction) longer than `retention.vacuum_grace` ago,
    /// and files no commit names that are as old.
    Vacuum {
        /// The lake (a directory or s3://bucket/prefix), overriding `ingest.lake`.
        #[arg(long, value_name = "LAKE")]
        lake: Option<String>,
        /// Measure the grace period back from this time instead of now
        /// (RFC 3339 or YYYY-MM-DD, UTC).
        #[arg(long, value_name = "TIME", value_parser = parse_now)]
        now: Option<DateTime<Utc>>,
    },
    /// List the legal holds: those in the configuration and those set
    /// through the admin API.
    Holds {
        /// The lake (a directory or s3://bucket/prefix), overriding `ingest.lake`.
        #[arg(long, value_name = "LAKE")]
        lake: Option<String>,
    },
}

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// The lake (a directory or s3://bucket/prefix), overriding `ingest.lake`.
    #[arg(long, value_name = "LAKE")]
    pub lake: Option<String>,
    /// Print what would be deleted and kept; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Decide as of this time instead of now (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long, value_name = "TIME", value_parser = parse_now)]
    pub now: Option<DateTime<Utc>>,
}

fn parse_now(text: &str) -> Result<DateTime<Utc>, String> {
    tooltrail_lake::retention::holds::parse_bound(text, false)
}

pub async fn run(command: RetentionCommand, config: &Config) -> anyhow::Result<()> {
    match command {
        RetentionCommand::Apply(args) => apply(args, config).await,
        RetentionCommand::Vacuum { lake, now } => {
            let lake = crate::lake::existing(config, lake).await?;
            let grace = config.retention.vacuum_grace;
            let now = now.unwrap_or_else(Utc::now);
            let tables = vacuum_tables(&lake, TABLES, grace, now)
                .await
                .with_context(|| format!("vacuuming {lake}"))?;
            for (table, summary) in tables {
                println!(
                    "{table}: deleted {} file(s) removed or orphaned more than {} ago",
                    summary.deleted.len(),
                    humantime::format_duration(grace)
                );
            }
            Ok(())
        }
        RetentionCommand::Holds { lake } => {
            let lake = crate::lake::existing(config, lake).await?;
            let store = HoldStore::open(&lake, &config.retention)?;
            let holds = store
                .all()
                .await
                .with_context(|| format!("reading the legal holds of {}", store.location()))?;
            print!("{}", report::holds(&holds));
            Ok(())
        }
    }
}

async fn apply(args: ApplyArgs, config: &Config) -> anyhow::Result<()> {
    let lake = crate::lake::existing(config, args.lake).await?;
    let now = args.now.unwrap_or_else(Utc::now);
    let mut retention =
        Retention::new(&lake, &config.retention, TABLES)?.with_zstd_level(config.ingest.zstd_level);
    let plan = retention.plan(now).await.context("planning retention")?;
    print!("{}", report::plan(&plan, lake.url(), args.dry_run));
    if args.dry_run {
        println!("{}", report::dry_run_line(&plan));
        return Ok(());
    }
    let summary = retention
        .apply(&plan, &|| false)
        .await
        .context("applying retention")?;
    print!("{}", report::outcome(&summary));
    println!("{}", report::summary_line(&plan, &summary));
    anyhow::ensure!(
        summary.failed.is_empty(),
        "retention failed on {} partition(s); see above",
        summary.failed.len()
    );
    Ok(())
}

/// Starts `up`'s periodic retention and vacuum ([`Periodic`]) in the serve
/// phase.
pub fn spawn(
    supervisor: &Supervisor,
    registry: &mut Registry,
    lake: &Location,
    config: &Config,
    lake_metrics: tooltrail_lake::Metrics,
) {
    if !config.retention.enabled {
        tracing::info!(
            "retention is disabled (retention.enabled = false); vacuum still runs every retention.interval"
        );
    }
    let metrics = RetentionMetrics::default();
    metrics.register(registry);
    let task = Periodic::new(lake, config.retention.clone(), TABLES, metrics)
        .with_zstd_level(config.ingest.zstd_level)
        .with_lake_metrics(lake_metrics);
    let token = supervisor.token(Phase::Serve);
    supervisor.spawn(Phase::Serve, "retention", async move {
        task.run(token).await;
        Ok(())
    });
}
