//! `tooltrail sql`: the query engine at the console, for operators. The
//! caller is the local operator (every table, every tenant); the query is
//! still read-only, limited and recorded in the query audit.

use std::io::Write;
use std::time::Instant;

use anyhow::Context;
use futures::StreamExt;
use tooltrail_lake::Location;
use tooltrail_query::format::{Encoder, Format};
use tooltrail_query::{Engine, Principal, QueryConfig, QueryMetrics, Transport};

use crate::config::Config;

#[derive(clap::Args, Debug)]
pub struct SqlArgs {
    /// The lake to query (a directory or s3://bucket/prefix).
    #[arg(long, value_name = "LAKE")]
    pub lake: String,
    /// Output: an aligned table, or a format of the HTTP API.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// Run the query this many times in one process (for benchmarks); the
    /// result of the last run is printed.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub repeat: u32,
    /// Print `run=<i> elapsed_ms=<ms> rows=<n>` to stderr for each run.
    #[arg(long)]
    pub timing: bool,
    /// The query.
    pub sql: String,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Table,
    Csv,
    Json,
    Ndjson,
}

/// The engine over `lake` for commands run by the operator on the machine
/// (`sql`, `export`): the local operator sees every tenant, and every query is
/// still audited.
pub fn local_engine(lake: &Location, config: &QueryConfig) -> anyhow::Result<(Engine, Principal)> {
    // DataFusion spills into files of its own under this directory, and
    // deletes them with the engine.
    let spill = std::env::temp_dir();
    let engine = Engine::open(lake, config, &spill, QueryMetrics::unregistered())
        .with_context(|| format!("opening the lake at {lake}"))?;
    Ok((engine, Principal::local_operator()))
}

pub async fn run(args: SqlArgs, config: &Config) -> anyhow::Result<()> {
    let lake = crate::lake::existing(config, Some(args.lake)).await?;
    let (engine, principal) = local_engine(&lake, &config.query)?;
    let mut stdout = std::io::stdout().lock();
    for run in 1..=args.repeat {
        let last = run == args.repeat;
        let started = Instant::now();
        let mut stream = engine
            .execute(&principal, &args.sql, Transport::Cli, false)
            .await?;
        let schema = stream.schema();
        let mut rows = 0usize;
        let mut table = Vec::new();
        let mut encoder = match args.format {
            OutputFormat::Table => None,
            OutputFormat::Csv => Some(Encoder::new(Format::Csv, &schema)?),
            OutputFormat::Json => Some(Encoder::new(Format::Json, &schema)?),
            OutputFormat::Ndjson => Some(Encoder::new(Format::Ndjson, &schema)?),
        };
        if let (Some(encoder), true) = (encoder.as_mut(), last) {
            stdout.write_all(&encoder.begin(&schema))?;
        }
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            rows += batch.num_rows();
            if !last {
                continue;
            }
            match encoder.as_mut() {
                Some(encoder) => stdout.write_all(&encoder.batch(&batch)?)?,
                None => table.push(batch),
            }
        }
        let elapsed = started.elapsed();
        if last {
            match encoder.as_mut() {
                Some(encoder) => stdout.write_all(&encoder.finish(None)?)?,
                None => writeln!(
                    stdout,
                    "{}",
                    arrow::util::pretty::pretty_format_batches(&table)?
                )?,
            }
            stdout.flush()?;
        }
        if args.timing {
            eprintln!(
                "run={run} elapsed_ms={:.3} rows={rows}",
                elapsed.as_secs_f64() * 1e3
            );
        }
    }
    engine.settle_audit().await;
    Ok(())
}
