//! The `tooltrail` binary: parses arguments, loads configuration, installs
//! logging and maps failures to exit codes. Everything else lives in the
//! library crates, which take their configuration as values.

mod compact;
mod config;
mod demo;
mod detect;
mod eval;
mod export;
mod ingest;
mod lake;
mod logging;
mod retention;
mod rules;
mod serve;
mod shutdown;
mod signing;
mod simulate;
mod sql;
mod supervisor;
mod up;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use figment::value::Value;

use crate::config::{Config, ConfigErrors};
use crate::logging::LogFormat;

/// Exit code for a bad configuration (sysexits' EX_CONFIG).
const EXIT_CONFIG: u8 = 78;

#[derive(Parser, Debug)]
#[command(
    name = "tooltrail",
    version,
    about = "Audit pipeline and anomaly detector for AI agents' MCP tool calls"
)]
struct Cli {
    /// Configuration file (TOML). Default: $TOOLTRAIL_CONFIG, else ./tooltrail.toml if present.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format, overriding `log.format`.
    #[arg(long, global = true, value_enum)]
    log_format: Option<LogFormatArg>,
    /// Log filter in RUST_LOG syntax, overriding `log.filter`.
    #[arg(long, global = true, value_name = "DIRECTIVES")]
    log_filter: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run everything in one process: HTTP (or Kafka) ingest into a local lake.
    Up(up::UpArgs),
    /// Run Kafka ingest as a service, or import an NDJSON file.
    Ingest(ingest::IngestArgs),
    /// Merge the small files of closed hours into large ones, atomically.
    Compact(compact::CompactArgs),
    /// Inspect configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Generate realistic gateway traffic with labelled attacks.
    Simulate(simulate::SimulateArgs),
    /// Run the detector: over a file with --replay (offline, same code path).
    Detect(detect::DetectArgs),
    /// Score the detector and two naive anchors on labelled simulated traffic.
    Eval(eval::EvalArgs),
    /// Run `up` with simulated traffic and attacks; print alerts as they fire.
    Demo(demo::DemoArgs),
    /// Run SQL over a lake, as the local operator (read-only, audited).
    Sql(sql::SqlArgs),
    /// Export a tenant's records as signed, verifiable files; `export verify DIR` checks one.
    Export(export::ExportArgs),
    /// Write and verify the lake's signed digest chain.
    #[command(subcommand)]
    Lake(lake::LakeCommand),
    /// Delete what is past retention, keeping what is on legal hold.
    #[command(subcommand)]
    Retention(retention::RetentionCommand),
    /// Create a signing key, or print the public key auditors verify with.
    #[command(subcommand)]
    Keys(signing::KeysCommand),
    /// Sigma rules: run their tests, lint them, hunt with them over history.
    #[command(subcommand)]
    Rules(rules::RulesCommand),
}

#[derive(Subcommand, Debug)]
enum ConfigCommand {
    /// Check a configuration file; names every bad key by its path.
    Check {
        /// The file to check.
        file: PathBuf,
    },
    /// Print the effective configuration (file, environment and flags merged).
    Show,
}

/// How a command failed, which decides the exit code.
enum Failure {
    Config(ConfigErrors),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure::Other(e)
    }
}

fn main() -> ExitCode {
    keep_large_blocks_in_the_heap();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(errors)) => {
            eprintln!("error: {errors}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(Failure::Other(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Parquet's zstd allocates a compression context of a few hundred KiB per
/// column chunk through the C allocator, and ingest's batches are tens of MiB.
/// glibc serves blocks that big with `mmap` and unmaps them on free, so every
/// one comes back as fresh pages the kernel must fault in and zero: a fifth of
/// the CPU of a file import went there. Serving them from the heap, and
/// keeping up to 256 MiB of freed heap, reuses the memory instead.
/// (`scripts/bench_ingest.py` shows the difference in system time.)
fn keep_large_blocks_in_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; no thread has started.
    unsafe {
        // 32 MiB is the largest threshold glibc accepts on 64-bit targets.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 256 << 20);
    }
}

fn overrides(cli: &Cli) -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();
    if let Some(format) = cli.log_format {
        let format = match format {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
        };
        out.push((
            "log.format",
            Value::serialize(format).expect("an enum serializes"),
        ));
    }
    if let Some(filter) = &cli.log_filter {
        out.push(("log.filter", Value::from(filter.clone())));
    }
    out
}

fn load_config(file: Option<&Path>, overrides: &[(&str, Value)]) -> Result<Config, Failure> {
    config::load(&config::figment(file, overrides)).map_err(Failure::Config)
}

/// Loads the configuration and installs logging: the start of every command
/// that does work.
fn start(file: Option<PathBuf>, overrides: &[(&str, Value)]) -> Result<Config, Failure> {
    let config = load_config(config::resolve_path(file).as_deref(), overrides)?;
    logging::init(&config.log)?;
    Ok(config)
}

fn run(cli: Cli) -> Result<(), Failure> {
    let overrides = overrides(&cli);
    match cli.command {
        Command::Config(ConfigCommand::Check { file }) => {
            if !file.exists() {
                return Err(
                    anyhow::anyhow!("config file {} does not exist", file.display()).into(),
                );
            }
            load_config(Some(&file), &overrides)?;
            println!("{}: ok", file.display());
            Ok(())
        }
        Command::Config(ConfigCommand::Show) => {
            let config = load_config(config::resolve_path(cli.config).as_deref(), &overrides)?;
            let text = toml::to_string_pretty(&config).map_err(anyhow::Error::from)?;
            print!("{text}");
            Ok(())
        }
        Command::Simulate(args) => {
            start(cli.config, &overrides)?;
            block_on(simulate::run(args))
        }
        Command::Detect(args) => {
            let config = start(cli.config, &overrides)?;
            match (&args.replay, &args.alerts) {
                (Some(replay), Some(alerts)) => {
                    let lake = match &args.service.lake {
                        Some(_) => Some(config.lake(args.service.lake.clone())?),
                        None => None,
                    };
                    Ok(detect::run_replay(
                        replay,
                        alerts,
                        lake.as_ref(),
                        &config.detect,
                    )?)
                }
                _ => block_on(with_shutdown(|token| {
                    detect::kafka::run(args.service, config, token)
                })),
            }
        }
        Command::Demo(args) => {
            let config = start(cli.config, &overrides)?;
            block_on(with_shutdown(|token| demo::run(args, config, token)))
        }
        Command::Eval(args) => {
            let config = start(cli.config, &overrides)?;
            Ok(eval::run(args, &config.detect)?)
        }
        Command::Sql(args) => {
            let config = start(cli.config, &overrides)?;
            block_on(sql::run(args, &config))
        }
        Command::Export(args) => {
            let config = start(cli.config, &overrides)?;
            block_on(export::run(args, config))
        }
        Command::Lake(command) => {
            let config = start(cli.config, &overrides)?;
            block_on(lake::run(command, &config))
        }
        Command::Retention(command) => {
            let config = start(cli.config, &overrides)?;
            block_on(retention::run(command, &config))
        }
        Command::Keys(command) => {
            let config = start(cli.config, &overrides)?;
            Ok(signing::run(command, &config.signing)?)
        }
        Command::Rules(command) => {
            let config = start(cli.config, &overrides)?;
            block_on(rules::run(command, &config))
        }
        Command::Compact(args) => {
            let config = start(cli.config, &overrides)?;
            block_on(compact::run(args, &config))
        }
        Command::Up(args) => {
            let config = start(cli.config, &overrides)?;
            block_on(with_shutdown(|token| up::run(args, config, token)))
        }
        Command::Ingest(args) => {
            let config = start(cli.config, &overrides)?;
            block_on(with_shutdown(|token| ingest::run(args, config, token)))
        }
    }
}

/// Runs a service until it stops or a signal asks it to.
async fn with_shutdown<F, Fut>(service: F) -> anyhow::Result<()>
where
    F: FnOnce(tokio_util::sync::CancellationToken) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let token = tokio_util::sync::CancellationToken::new();
    shutdown::install(token.clone());
    service(token).await
}

fn block_on<F: Future<Output = anyhow::Result<()>>>(future: F) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)?;
    runtime.block_on(future).map_err(Failure::Other)
}
