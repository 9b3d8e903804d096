//! `tooltrail eval`: the detector and two naive anchors over a labelled
//! simulation, scored side by side.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;
use tooltrail_detect::eval::anchors::{FixedThreshold, NewTerms};
use tooltrail_detect::eval::{Detection, Incident, score};
use tooltrail_detect::{DetectConfig, Engine};

use crate::detect::{merge_repeats, write_alerts};
use crate::replay::replay;

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Events as NDJSON (e.g. from `tooltrail simulate --out`).
    #[arg(long, value_name = "FILE")]
    pub events: PathBuf,
    /// Labelled incidents as NDJSON (from `tooltrail simulate --labels`).
    #[arg(long, value_name = "FILE")]
    pub labels: PathBuf,
    /// Also write the detector's alerts here.
    #[arg(long, value_name = "FILE")]
    pub alerts: Option<PathBuf>,
}

pub fn run(args: EvalArgs, config: &DetectConfig) -> anyhow::Result<()> {
    let incidents = read_labels(&args.labels)?;
    let settings = crate::config::detect_settings(config)?;
    let mut engine = Engine::new(settings);
    let (mut fixed, mut terms) = (FixedThreshold::default(), NewTerms::default());
    let (mut alerts, mut fixed_hits, mut terms_hits) = (Vec::new(), Vec::new(), Vec::new());
    let started = std::time::Instant::now();
    let stats = replay(&args.events, |e| {
        engine.observe(e, &mut alerts);
        fixed.observe(e, &mut fixed_hits);
        terms.observe(e, &mut terms_hits);
    })?;
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
