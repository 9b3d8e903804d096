//! `tooltrail retention`: apply retention (`apply`, `--dry-run` to only
//! print the plan) and list legal holds (`holds`); for `up`, the periodic
//! task ([`spawn`]) and the admin API ([`http::router`]). The decisions and
//! the deletions are `tooltrail_ingest::retention`'s.

pub mod http;
mod report;

use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tooltrail_ingest::Error as IngestError;
use tooltrail_ingest::lake::Lake;
use tooltrail_ingest::retention::{HoldStore, Retention, RetentionConfig, RetentionSummary};

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

/// Starts `up`'s periodic retention: every `retention.interval` (the first
/// at start), on a blocking thread; a summary at INFO, failures at ERROR.
/// A failed run does not stop `up`; the next interval tries again.
pub fn spawn(supervisor: &Supervisor, registry: &mut Registry, lake_dir: &Path, config: &Config) {
    if !config.retention.enabled {
        tracing::info!("retention is disabled (retention.enabled = false)");
        return;
    }
    let token = supervisor.token(Phase::Serve);
    let task = Periodic {
        metrics: RetentionMetrics::register(registry),
        lake_dir: lake_dir.to_owned(),
        zstd_level: config.ingest.zstd_level,
        config: config.retention.clone(),
    };
    supervisor.spawn(Phase::Serve, "retention", task.run(token));
}

/// `tooltrail_retention_*`: what `up`'s retention runs delete, and whether they fail.
#[derive(Clone, Default)]
struct RetentionMetrics {
    runs: Family<OutcomeLabel, Counter>,
    partitions: Family<TableLabel, Counter>,
    rows: Family<TableLabel, Counter>,
    bytes: Family<TableLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabel {
    table: &'static str,
}

impl RetentionMetrics {
    fn register(registry: &mut Registry) -> Self {
        let m = RetentionMetrics::default();
        let r = registry.sub_registry_with_prefix("tooltrail_retention");
        r.register(
            "runs",
            "Retention runs by outcome (ok, partial: some partitions failed, busy, error)",
            m.runs.clone(),
        );
        r.register(
            "partitions",
            "Partitions deleted or rewritten by retention",
            m.partitions.clone(),
        );
        r.register("rows_deleted", "Rows deleted by retention", m.rows.clone());
        r.register(
            "bytes_deleted",
            "Bytes of files deleted by retention",
            m.bytes.clone(),
        );
        m
    }

    fn record(&self, result: &Result<RetentionSummary, IngestError>) {
        let outcome = match result {
            Ok(summary) if summary.failed.is_empty() => "ok",
            Ok(_) => "partial",
            Err(IngestError::RetentionBusy { .. }) => "busy",
            Err(_) => "error",
        };
        self.runs.get_or_create(&OutcomeLabel { outcome }).inc();
        if let Ok(summary) = result {
            for done in summary.deleted.iter().chain(&summary.rewritten) {
                let table = TableLabel {
                    table: done.partition.table.name(),
                };
                self.partitions.get_or_create(&table).inc();
                self.rows.get_or_create(&table).inc_by(done.rows);
                self.bytes.get_or_create(&table).inc_by(done.bytes);
            }
        }
    }
}

struct Periodic {
    metrics: RetentionMetrics,
    lake_dir: PathBuf,
    zstd_level: i32,
    config: RetentionConfig,
}

impl Periodic {
    async fn run(self, token: CancellationToken) -> anyhow::Result<()> {
        let mut ticker = tokio::time::interval(self.config.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut state: Option<(Lake, Retention)> = None;
        loop {
            tokio::select! {
                _ = token.cancelled() => return Ok(()),
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
                Ok::<_, IngestError>(((lake, retention), result))
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
                    tracing::error!(%error, "retention could not open the lake; trying again at the next interval");
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

fn log_run(result: Result<RetentionSummary, IngestError>) {
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
        Err(IngestError::RetentionBusy { path }) => tracing::warn!(
            lock = %path.display(),
            "another retention run holds the lake; skipping this interval"
        ),
        Err(error) => {
            tracing::error!(%error, "retention failed; trying again at the next interval");
        }
    }
}
