//! `tooltrail eval`: the detector and two naive anchors over a labelled
//! simulation, scored side by side.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use tooltrail_detect::eval::anchors::{FixedThreshold, NewTerms};
use tooltrail_detect::eval::sweep;
use tooltrail_detect::eval::{Detection, Incident, score};
use tooltrail_detect::{DetectConfig, Engine};

use crate::detect::{merge_repeats, write_alerts};
use tooltrail_detect::replay::replay;

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["events", "sweep"])))]
pub struct EvalArgs {
    /// Events as NDJSON (e.g. from `tooltrail simulate --out`).
    #[arg(long, value_name = "FILE", requires = "labels")]
    pub events: Option<PathBuf>,
    /// Labelled incidents as NDJSON (from `tooltrail simulate --labels`).
    #[arg(long, value_name = "FILE", requires = "events")]
    pub labels: Option<PathBuf>,
    /// Also write the detector's alerts here.
    #[arg(long, value_name = "FILE", requires = "events")]
    pub alerts: Option<PathBuf>,
    /// Run a grid of simulated traffic shapes and seeds from this TOML file
    /// (see `eval/sweep.toml`) and print recall and false pages per cell.
    #[arg(long, value_name = "FILE", conflicts_with = "events")]
    pub sweep: Option<PathBuf>,
    /// With --sweep: run only the cell of this name (repeatable).
    #[arg(long, value_name = "NAME", requires = "sweep")]
    pub cell: Vec<String>,
    /// With --sweep: list every normal-intensity incident no page caught.
    #[arg(long, requires = "sweep")]
    pub missed: bool,
}

pub fn run(args: EvalArgs, config: &DetectConfig) -> anyhow::Result<()> {
    let settings = crate::config::detect_settings(config)?;
    if let Some(path) = &args.sweep {
        let file = sweep::load(path)?;
        let cells = if args.cell.is_empty() {
            file.cells.len()
        } else {
            args.cell.len()
        };
        eprintln!(
            "sweep: {cells} cells x {} seeds ({} users, {} days each), on every core",
            file.seeds.len(),
            file.users,
            file.days
        );
        let report = sweep::run(&file, &args.cell, &settings)?;
        print!("{}", report.text);
        if args.missed {
            for (cell, missed) in &report.missed {
                println!("missed in {cell:?}, {missed}");
            }
        }
        println!("({:.0} s)", report.elapsed.as_secs_f64());
        anyhow::ensure!(
            report.failed.is_empty(),
            "targets missed: {}",
            report.failed.join("; ")
        );
        return Ok(());
    }
    let (Some(events), Some(labels)) = (&args.events, &args.labels) else {
        anyhow::bail!("--events and --labels are required without --sweep");
    };
    let incidents = read_labels(labels)?;
    let mut engine = Engine::new(settings);
    let (mut fixed, mut terms) = (FixedThreshold::default(), NewTerms::default());
    let (mut alerts, mut fixed_hits, mut terms_hits) = (Vec::new(), Vec::new(), Vec::new());
    let started = std::time::Instant::now();
    let stats = replay(events, |e| {
        engine.observe(e, &mut alerts);
        fixed.observe(e, &mut fixed_hits);
        terms.observe(e, &mut terms_hits);
    })?;
    crate::detect::print_skipped(events, &stats);
    engine.finish(&mut alerts);
    let alerts = merge_repeats(alerts);
    if let Some(path) = &args.alerts {
        write_alerts(path, &alerts)?;
    }
    let ours: Vec<Detection> = alerts.iter().map(Detection::from).collect();
    println!(
        "{} events, {} user-days, {} incidents ({:.1}s)\n",
        stats.events,
        stats.user_days,
        incidents.len(),
        started.elapsed().as_secs_f64()
    );
    let report = score(&ours, &incidents, stats.user_days);
    print!("{}", report.render("tooltrail detectors"));
    println!();
    for (name, hits) in [
        (
            "anchor: fixed threshold (>= 5 denials in 5 min)",
            fixed_hits,
        ),
        ("anchor: new terms (value unseen in 7 days)", terms_hits),
    ] {
        let r = score(&hits, &incidents, stats.user_days);
        println!(
            "{name}: recall {:.3}, {} alerts, {} false ({:.2} per 1,000 user-days), precision {:.3}",
            r.total.recall(),
            r.total.detections,
            r.total.false_detections,
            r.total.false_per_1000_user_days(stats.user_days),
            r.total.precision()
        );
    }
    Ok(())
}

fn read_labels(path: &PathBuf) -> anyhow::Result<Vec<Incident>> {
    let file =
        std::fs::File::open(path).with_context(|| format!("open labels {}", path.display()))?;
    let mut incidents = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("read {}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let incident: Incident = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: not a label record", path.display(), i + 1))?;
        incidents.push(incident);
    }
    Ok(incidents)
}
