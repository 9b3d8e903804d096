//! `tooltrail retention`: apply retention (`apply`, `--dry-run` to only
//! print the plan) and list legal holds (`holds`); for `up`, the periodic
//! task ([`spawn`]). The decisions, the deletions and the periodic task are
//! `tooltrail_ingest::retention`'s; the admin API is `tooltrail_query::holds`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use prometheus_client::registry::Registry;
use tooltrail_ingest::lake::Lake;
use tooltrail_ingest::metrics::RetentionMetrics;
use tooltrail_ingest::retention::periodic::Periodic;
use tooltrail_ingest::retention::text as report;
use tooltrail_ingest::retention::{HoldStore, Retention};

use crate::config::Config;
use crate::supervisor::{Phase, Supervisor};

#[derive(clap::Subcommand, Debug)]
pub enum RetentionCommand {
    /// Delete what is past retention (whole partitions, or a tenant's rows
    /// out of shared ones), keep what legal holds cover, and print both.
    Apply(ApplyArgs),
    /// List the legal holds: those in the configuration and those set
    /// through the admin API.
    Holds {
        /// The lake directory, overriding `ingest.lake`.
        #[arg(long, value_name = "DIR")]
        lake: Option<PathBuf>,
    },
}

#[derive(clap::Args, Debug)]
pub struct ApplyArgs {
    /// The lake directory, overriding `ingest.lake`.
    #[arg(long, value_name = "DIR")]
    pub lake: Option<PathBuf>,
    /// Print what would be deleted and kept; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Decide as of this time instead of now (RFC 3339 or YYYY-MM-DD, UTC).
    #[arg(long, value_name = "TIME", value_parser = parse_now)]
    pub now: Option<DateTime<Utc>>,
}

fn parse_now(text: &str) -> Result<DateTime<Utc>, String> {
    tooltrail_ingest::retention::holds::parse_bound(text, false)
}

pub fn run(command: RetentionCommand, config: &Config) -> anyhow::Result<()> {
    match command {
        RetentionCommand::Apply(args) => apply(args, config),
        RetentionCommand::Holds { lake } => {
            let lake_dir = lake_dir(lake, config)?;
            let store = HoldStore::open(&lake_dir, &config.retention);
            let holds = store
                .all()
                .with_context(|| format!("reading {}", store.path().display()))?;
            print!("{}", report::holds(&holds));
            Ok(())
        }
    }
}

fn lake_dir(flag: Option<PathBuf>, config: &Config) -> anyhow::Result<PathBuf> {
    let dir = config.lake_dir(flag)?;
    anyhow::ensure!(
        dir.join("_tooltrail").join("log").is_dir(),
        "{} is not a tooltrail lake (no _tooltrail/log)",
        dir.display()
    );
    Ok(dir)
}

fn apply(args: ApplyArgs, config: &Config) -> anyhow::Result<()> {
    let lake_dir = lake_dir(args.lake, config)?;
    let mut lake = Lake::open(&lake_dir, config.ingest.zstd_level)
        .with_context(|| format!("opening the lake at {}", lake_dir.display()))?;
    let now = args.now.unwrap_or_else(Utc::now);
    let mut retention = Retention::new(&lake_dir, &config.retention);
    let plan = retention
        .plan(&mut lake, now)
        .context("planning retention")?;
    print!("{}", report::plan(&plan, &lake_dir, args.dry_run));
    if args.dry_run {
        println!("{}", report::dry_run_line(&plan));
        return Ok(());
    }
    let summary = retention
        .apply(&mut lake, &plan, &|| false)
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

/// Starts `up`'s periodic retention ([`Periodic`]) in the serve phase.
pub fn spawn(supervisor: &Supervisor, registry: &mut Registry, lake_dir: &Path, config: &Config) {
    if !config.retention.enabled {
        tracing::info!("retention is disabled (retention.enabled = false)");
        return;
    }
    let task = Periodic::new(
        lake_dir,
        config.ingest.zstd_level,
        config.retention.clone(),
        RetentionMetrics::register(registry),
    );
    let token = supervisor.token(Phase::Serve);
    supervisor.spawn(Phase::Serve, "retention", async move {
        task.run(token).await;
        Ok(())
    });
}
