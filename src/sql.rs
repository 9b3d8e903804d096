//! `tooltrail sql`: the query engine at the console, for operators. The
//! caller is the local operator (every table, every tenant); the query is
//! still read-only, limited and recorded in the query audit.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use futures::StreamExt;
use tooltrail_query::format::{Encoder, Format};
use tooltrail_query::{Engine, Principal, QueryConfig, QueryMetrics, Transport};

#[derive(clap::Args, Debug)]
pub struct SqlArgs {
    /// The lake to query.
    #[arg(long, value_name = "DIR")]
    pub lake: PathBuf,
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
pub fn local_engine(lake: &Path, config: &QueryConfig) -> anyhow::Result<(Engine, Principal)> {
    let spill = lake.join("_tooltrail").join("spill");
    let location = tooltrail_lake::Location::local(lake)
        .with_context(|| format!("opening the lake at {}", lake.display()))?;
    let engine = Engine::open(&location, config, &spill, QueryMetrics::unregistered())
        .with_context(|| format!("opening the lake at {}", lake.display()))?;
    Ok((engine, Principal::local_operator()))
}

pub async fn run(args: SqlArgs, config: &QueryConfig) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.lake.is_dir(),
        "no lake at {} (expected a directory holding events/)",
        args.lake.display()
    );
    let (engine, principal) = local_engine(&args.lake, config)?;
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
    Ok(())
}
