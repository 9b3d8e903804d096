//! `tooltrail export`: a signed compliance export of one tenant's events,
//! run locally as the operator, and `tooltrail export verify DIR`, which
//! checks one (from here or from `GET /v1/exports`).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use prometheus_client::registry::Registry;
use tooltrail_lake::Location;
use tooltrail_query::export::ExportMetrics;
use tooltrail_query::export::job::{ExportJob, prepare_dir};
use tooltrail_query::export::service::ServiceSettings;
use tooltrail_query::export::{ExportRequest, Progress, run_export, verify_dir};
use tooltrail_query::{Engine, ExportError, ExportFormat, ExportService};
use tooltrail_schemas::signing::Signer;

use crate::config::Config;

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub command: Option<ExportCommand>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum ExportCommand {
    /// Check an export: the manifest's signature and key, each part's size,
    /// SHA-256 and rows, the totals, and files the manifest does not list.
    /// Exits 1 naming every problem.
    Verify(VerifyArgs),
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The lake to export from (a directory or s3://bucket/prefix).
    #[arg(long, value_name = "LAKE", required = true)]
    pub lake: Option<String>,
    /// The tenant whose events are exported.
    #[arg(long, value_name = "TENANT", required = true)]
    pub tenant: Option<String>,
    /// Start of the range, inclusive (RFC 3339 with an offset).
    #[arg(long, value_name = "TIME", required = true)]
    pub from: Option<String>,
    /// End of the range, exclusive.
    #[arg(long, value_name = "TIME", required = true)]
    pub to: Option<String>,
    /// Only rows matching this SQL predicate over the events columns, e.g.
    /// "tool = 'x' AND status >= 400".
    #[arg(long = "where", value_name = "PREDICATE")]
    pub predicate: Option<String>,
    /// The part files' format.
    #[arg(long, value_enum, default_value = "parquet")]
    pub format: FormatArg,
    /// The export directory to create (must not exist or be empty).
    #[arg(long, value_name = "DIR", required = true)]
    pub out: Option<PathBuf>,
    /// The signing key (PKCS#8 PEM); default `signing.key_file`.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Rows per part file; default `query.exports.part_max_rows`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub part_max_rows: Option<u64>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum FormatArg {
    Parquet,
    Csv,
    Ndjson,
    /// NDJSON of OCSF API Activity records (class 6003), one per event.
    Ocsf,
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// The export directory (holding manifest.json).
    pub dir: PathBuf,
    /// A trusted public key (SPKI PEM, e.g. from `GET /v1/keys`); repeat for
    /// several. Default: the public half of `signing.key_file` and
    /// `signing.trusted_public_keys`.
    #[arg(long = "public-key", value_name = "FILE")]
    pub public_keys: Vec<PathBuf>,
}

/// The export jobs of `up`: written to `<data-dir>/exports`, signed with
/// `signer`; `signing.trusted_public_keys` are published as earlier keys.
pub fn service(
    config: &Config,
    data_dir: &Path,
    lake: &Location,
    engine: &Engine,
    signer: Signer,
    registry: &mut Registry,
) -> anyhow::Result<ExportService> {
    let previous_keys = config
        .signing
        .trusted_public_keys
        .iter()
        .map(|path| crate::signing::read_public(path))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let dir = data_dir.join("exports");
    ExportService::open(ServiceSettings {
        engine: engine.clone(),
        lake: lake.clone(),
        dir: dir.clone(),
        signer,
        previous_keys,
        config: config.query.exports.clone(),
        metrics: ExportMetrics::register(registry),
    })
    .with_context(|| format!("opening the exports directory {}", dir.display()))
}

pub async fn run(args: ExportArgs, config: Config) -> anyhow::Result<()> {
    match args.command {
        Some(ExportCommand::Verify(verify_args)) => verify(verify_args, &config),
        None => export(args.run, &config).await,
    }
}

fn verify(args: VerifyArgs, config: &Config) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.dir.is_dir(),
        "no export at {}: not a directory",
        args.dir.display()
    );
    let keyring = crate::signing::keyring(&config.signing, &args.public_keys)?;
    let verification = verify_dir(&args.dir, &keyring);
    let dir = args.dir.display();
    if !verification.is_ok() {
        for finding in &verification.findings {
            println!("FAIL {dir}: {finding}");
        }
        anyhow::bail!(
            "export {dir} failed verification: {} problem(s)",
            verification.findings.len()
        );
    }
    let m = verification
        .manifest
        .context("a clean verification has a manifest")?;
    println!(
        "OK {dir}: export {} of tenant {} signed by key {}; {} part(s), {} rows, {} bytes verified",
        m.export_id, m.scope.tenant_id, m.key_id, m.totals.parts, m.totals.rows, m.totals.bytes
    );
    Ok(())
}

async fn export(args: RunArgs, config: &Config) -> anyhow::Result<()> {
    let (Some(lake), Some(tenant), Some(from), Some(to), Some(out)) =
        (args.lake, args.tenant, args.from, args.to, args.out)
    else {
        anyhow::bail!("--lake, --tenant, --from, --to and --out are required");
    };
    let lake = crate::lake::existing(config, Some(lake)).await?;
    let format = match args.format {
        FormatArg::Parquet => ExportFormat::Parquet,
        FormatArg::Csv => ExportFormat::Csv,
        FormatArg::Ndjson => ExportFormat::Ndjson,
        FormatArg::Ocsf => ExportFormat::Ocsf,
    };
    let request = ExportRequest::new(&tenant, &from, &to, args.predicate.as_deref(), format)
        .map_err(flag_error)?;
    let signer = match &args.key {
        Some(path) => crate::signing::read_private(path)?,
        None => crate::signing::load(&config.signing)?.context(
            "no signing key: pass --key FILE or set signing.key_file (`tooltrail up` keeps one in <data-dir>/signing-key.pem)",
        )?,
    };
    prepare_dir(&out).map_err(flag_error)?;
    let (engine, principal) = crate::sql::local_engine(&lake, &config.query)?;
    let export_id = tooltrail_query::export::new_export_id();
    let progress = Arc::new(Progress::default());
    let show = std::io::stderr().is_terminal();
    let ticker = show.then(|| tokio::spawn(show_progress(Arc::clone(&progress))));
    let started = Instant::now();
    let job = ExportJob {
        engine: &engine,
        lake: &lake,
        signer: &signer,
        export_id: &export_id,
        request: &request,
        requested_by: &principal,
        requested_at: chrono::Utc::now(),
        dir: &out,
        part_max_rows: args
            .part_max_rows
            .unwrap_or(config.query.exports.part_max_rows),
        timeout: config.query.exports.timeout,
        count_source_rows: show,
    };
    let result = run_export(job, Arc::clone(&progress)).await;
    engine.settle_audit().await;
    if let Some(ticker) = ticker {
        ticker.abort();
        let _ = ticker.await;
    }
    let manifest = result.with_context(|| format!("exporting into {}", out.display()))?;
    println!("{}", out.display());
    eprintln!(
        "export {} of tenant {}: {} rows in {} {format} part(s), {}, from {} lake file(s), in {:.1}s; signed by key {}",
        manifest.export_id,
        manifest.scope.tenant_id,
        manifest.totals.rows,
        manifest.totals.parts,
        HumanBytes(manifest.totals.bytes),
        manifest.source_files.len(),
        started.elapsed().as_secs_f64(),
        manifest.key_id,
    );
    eprintln!("verify with: tooltrail export verify {}", shell_path(&out));
    Ok(())
}

/// A request error in terms of the command's flags.
fn flag_error(e: ExportError) -> anyhow::Error {
    match e {
        ExportError::Invalid { field, problem } => {
            let flag = match field {
                "tenant_id" => "tenant",
                other => other,
            };
            anyhow::anyhow!("--{flag}: {problem}")
        }
        e => e.into(),
    }
}

fn shell_path(path: &Path) -> String {
    let text = path.display().to_string();
    if text.contains(|c: char| c.is_whitespace() || "'\"$`\\".contains(c)) {
        format!("'{}'", text.replace('\'', r"'\''"))
    } else {
        text
    }
}

/// Redraws the progress bar until aborted: rows written against the rows in
/// the scanned files' Parquet footers (every tenant's, so an upper bound that
/// the bar rarely reaches), bytes written, closed parts, elapsed.
async fn show_progress(progress: Arc<Progress>) {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:25}] {human_pos}/{human_len} rows {msg}",
        )
        .expect("the progress template is valid"),
    );
    let _clear = ClearOnDrop(bar.clone());
    loop {
        let source_rows = progress
            .source_rows
            .load(std::sync::atomic::Ordering::Relaxed);
        let rows = progress.rows();
        bar.set_length(source_rows.max(rows));
        bar.set_position(rows);
        bar.set_message(format!(
            "{}, {} part(s)",
            HumanBytes(progress.bytes()),
            progress.parts.load(std::sync::atomic::Ordering::Relaxed)
        ));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

struct ClearOnDrop(ProgressBar);

impl Drop for ClearOnDrop {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
