//! `tooltrail rules test|lint|hunt`, and keeping a running detector's
//! rules current (SIGHUP, or a file that changed).

pub mod hunt;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use clap::Subcommand;
use tokio_util::sync::CancellationToken;
use tooltrail_detect::sigma::{RuleSet, RuleSource, exemplars, lint};

use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum RulesCommand {
    /// Run the test cases in rule files (`rsigma.exemplars`); exits 1 when
    /// one fails or a rule does not load.
    Test {
        /// Rules directory [default: detect.rules_dir, else ./rules].
        dir: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Check syntax, the log source, field names and tests; exits 1 on an
    /// error (a rule that would not load).
    Lint {
        /// Rules directory [default: detect.rules_dir, else ./rules].
        dir: Option<PathBuf>,
    },
    /// Run rules over the lake's history; prints the alerts they would
    /// have raised, as NDJSON.
    Hunt(hunt::HuntArgs),
}

/// The directory a command works on.
pub fn dir_of(flag: Option<PathBuf>, config: &Config) -> PathBuf {
    flag.or_else(|| config.detect.rules_dir.clone())
        .unwrap_or_else(|| PathBuf::from("rules"))
}

pub async fn run(command: RulesCommand, config: &Config) -> anyhow::Result<()> {
    match command {
        RulesCommand::Test { dir, json } => test(&dir_of(dir, config), json),
        RulesCommand::Lint { dir } => lint_dir(&dir_of(dir, config)),
        RulesCommand::Hunt(args) => hunt::run(args, config).await,
    }
}

fn test(dir: &Path, json: bool) -> anyhow::Result<()> {
    let set = RuleSet::load_dir(dir);
    let report = exemplars::run(&set);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for error in set.errors() {
            println!("REFUSED {error}");
        }
        for case in &report.cases {
            let verdict = if case.passed { "ok  " } else { "FAIL" };
            print!("{verdict} {} {} [{}]", case.rule, case.case, case.expect);
            match &case.problem {
                Some(problem) => println!(": {problem} ({})", case.file.display()),
                None => println!(),
            }
        }
        for id in &report.untested {
            println!("none {id}: no test cases");
        }
    }
    let failed = report.failed().count();
    println!(
        "{} rules in {} files: {} cases, {} passed, {} failed; {} rules refused, {} untested",
        set.rules().len(),
        set.files(),
        report.cases.len(),
        report.cases.len() - failed,
        failed,
        set.errors().len(),
        report.untested.len()
    );
    if failed > 0 || !set.errors().is_empty() {
        anyhow::bail!(
            "{failed} test cases failed and {} rules were refused",
            set.errors().len()
        );
    }
    Ok(())
}

fn lint_dir(dir: &Path) -> anyhow::Result<()> {
    let set = RuleSet::load_dir(dir);
    let findings = lint::lint(dir, &set);
    for finding in &findings {
        println!("{finding}");
    }
    let errors = findings
        .iter()
        .filter(|f| f.level == lint::Level::Error)
        .count();
    let warnings = findings
        .iter()
        .filter(|f| f.level == lint::Level::Warning)
        .count();
    println!(
        "{} rules in {} files: {errors} errors, {warnings} warnings",
        set.rules().len(),
        set.files()
    );
    if errors > 0 {
        anyhow::bail!("{errors} lint errors in {}", dir.display());
    }
    Ok(())
}

/// Logs what a (re)load gave: a line per refused rule, and the count.
pub fn log_loaded(set: &RuleSet) {
    for error in set.errors() {
        tracing::warn!(file = %error.file.display(), line = error.line, rule = error.rule.as_deref(), reason = %error.reason, "sigma rule refused");
    }
    tracing::info!(
        rules = set.rules().len(),
        files = set.files(),
        refused = set.errors().len(),
        "sigma rules loaded"
    );
}

/// How often the rules directory is looked at for changed files.
const POLL: Duration = Duration::from_secs(2);

/// Reloads `source` on SIGHUP, and when a rule file is added, removed or
/// changed, until `stop`. The directory is polled (names, sizes and
/// modification times): that sees edits on every file system, including
/// a Kubernetes ConfigMap's symlink swap, where change notifications are
/// unreliable.
pub async fn watch(source: Arc<RuleSource>, stop: CancellationToken) -> anyhow::Result<()> {
    let Some(dir) = source.dir().map(Path::to_path_buf) else {
        return Ok(());
    };
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("listening for SIGHUP")?;
    let mut seen = fingerprint(&dir);
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            _ = hangup.recv() => {
                tracing::info!(dir = %dir.display(), "SIGHUP: reloading sigma rules");
                seen = fingerprint(&dir);
                log_loaded(&source.reload());
            }
            _ = tick.tick() => {
                let now = fingerprint(&dir);
                if now != seen {
                    seen = now;
                    tracing::info!(dir = %dir.display(), "rule files changed: reloading sigma rules");
                    log_loaded(&source.reload());
                }
            }
        }
    }
}

/// Each rule file's path, size and modification time.
fn fingerprint(dir: &Path) -> Vec<(PathBuf, u64, Option<SystemTime>)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, u64, Option<SystemTime>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            // Follows symlinks: a ConfigMap's files are links into a
            // directory that is swapped whole.
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if meta.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                out.push((path, meta.len(), meta.modified().ok()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, &mut out);
    out.sort();
    out
}
