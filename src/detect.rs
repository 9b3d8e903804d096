//! `tooltrail detect`: the streaming detector, over a file (`--replay`) or
//! as a Kafka consumer-group service (`--kafka`, see [`kafka`]).

pub mod kafka;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use tooltrail_detect::{Alert, DetectConfig, Engine};

use tooltrail_detect::replay::{ReplayStats, replay};

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("mode").required(true).args(["replay", "kafka"])))]
pub struct DetectArgs {
    /// Run the detector over this NDJSON file in event-time order, offline.
    #[arg(long, value_name = "FILE", requires = "alerts")]
    pub replay: Option<PathBuf>,
    /// Where to write the alerts as NDJSON ('-' for stdout), with --replay.
    #[arg(long, value_name = "FILE", requires = "replay")]
    pub alerts: Option<PathBuf>,
    #[command(flatten)]
    pub service: kafka::ServiceArgs,
}

/// `detect --replay FILE --alerts OUT [--lake LAKE]`: with a lake, the
/// alerts are also committed to its `alerts` table (a backfill).
pub fn run_replay(
    replay: &Path,
    alerts_out: &Path,
    lake: Option<&tooltrail_lake::Location>,
    config: &DetectConfig,
) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let (alerts, stats) = replay_alerts(replay, config)?;
    write_alerts(alerts_out, &alerts)?;
    if let Some(lake) = lake {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime
            .block_on(async {
                let mut sink =
                    tooltrail_detect::sink::AlertLake::open(lake, Default::default()).await?;
                sink.write(&alerts).await
            })
            .with_context(|| format!("writing the alerts into {lake}"))?;
    }
    let mut by_detector: std::collections::BTreeMap<&str, usize> = Default::default();
    for a in &alerts {
        *by_detector.entry(a.detector.as_str()).or_default() += 1;
    }
    eprintln!(
        "{} events ({} invalid skipped), {} alerts in {:.1}s",
        stats.events,
        stats.invalid,
        alerts.len(),
        started.elapsed().as_secs_f64()
    );
    for (d, n) in by_detector {
        eprintln!("  {d:<20} {n}");
    }
    Ok(())
}

/// Runs the detector over a file; one alert per id, its repeat count final.
pub fn replay_alerts(
    path: &Path,
    config: &DetectConfig,
) -> anyhow::Result<(Vec<Alert>, ReplayStats)> {
    let settings = crate::config::detect_settings(config)?;
    let mut engine = Engine::new(settings);
    let mut out = Vec::new();
    let stats = replay(path, |e| engine.observe(e, &mut out))?;
    print_skipped(path, &stats);
    engine.finish(&mut out);
    Ok((merge_repeats(out), stats))
}

pub use tooltrail_detect::alert::merge_repeats;

/// Names the invalid lines a replay skipped, on stderr.
pub fn print_skipped(path: &Path, stats: &ReplayStats) {
    for (line, problem) in &stats.reported {
        eprintln!("{}:{line}: skipped: {problem}", path.display());
    }
    if stats.invalid > stats.reported.len() as u64 {
        eprintln!(
            "{}: {} invalid lines skipped in all",
            path.display(),
            stats.invalid
        );
    }
}

pub fn write_alerts(path: &Path, alerts: &[Alert]) -> anyhow::Result<()> {
    let sink: Box<dyn Write> = if path == Path::new("-") {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(File::create(path).with_context(|| format!("create {}", path.display()))?)
    };
    let mut w = BufWriter::new(sink);
    for a in alerts {
        writeln!(w, "{}", a.to_json())?;
    }
    w.flush()
        .with_context(|| format!("write {}", path.display()))
}

/// Builds alert delivery with its outbox under `data_dir` and runs it under
/// `supervisor`; returns the handle alerts are enqueued through.
pub fn start_delivery(
    config: &tooltrail_detect::deliver::DeliveryConfig,
    data_dir: &Path,
    registry: &mut prometheus_client::registry::Registry,
    supervisor: &crate::supervisor::Supervisor,
) -> anyhow::Result<tooltrail_detect::deliver::DeliveryHandle> {
    let delivery = tooltrail_detect::deliver::Delivery::build(
        config.clone(),
        &data_dir.join("outbox"),
        tooltrail_detect::deliver::metrics::Metrics::register(registry),
    )
    .context("starting alert delivery")?;
    let handle = delivery.handle();
    let token = supervisor.token(crate::supervisor::Phase::Deliver);
    supervisor.spawn(
        crate::supervisor::Phase::Deliver,
        "alert delivery",
        async move { Ok(delivery.run(token).await?) },
    );
    Ok(handle)
}

/// Sends the triage changes made in the console or the alerts API to the
/// destinations that follow triage (`triage = true`), through the outbox.
pub struct TriageToDestinations(pub tooltrail_detect::deliver::DeliveryHandle);

impl tooltrail_query::alerts::TriageNotifier for TriageToDestinations {
    fn notify(&self, change: &tooltrail_query::alerts::TriageChange) {
        let alert: tooltrail_detect::Alert = match serde_json::from_str(&change.record) {
            Ok(alert) => alert,
            Err(error) => {
                tracing::warn!(alert_id = %change.alert_id, %error, "the alert's record does not read: its triage change is not sent");
                return;
            }
        };
        let note = tooltrail_detect::deliver::TriageNote {
            triage_id: change.triage_id.clone(),
            status: change.status.clone(),
            assignee: change.assignee.clone(),
            close_reason: change.close_reason.clone(),
            comment: change.comment.clone(),
            actor: change.actor.clone(),
            time: change.time,
        };
        let handle = self.0.clone();
        // The outbox writes with fsync: off the request's task.
        tokio::task::spawn_blocking(move || {
            if let Err(error) = handle.enqueue_triage(&alert, &note) {
                tracing::error!(alert_id = %alert.alert_id, triage_id = %note.triage_id, error = %tooltrail_schemas::Report(&error), "a triage change could not be queued for delivery");
            }
        });
    }
}
