//! The detector as a running component of `tooltrail up`: takes the events
//! ingest (HTTP or Kafka) has made durable, runs the engine, and hands each alert to
//! the lake, the delivery outbox, the log and any in-process listeners
//! (`tooltrail demo`).
//!
//! Event time drives the engine. When the stream goes quiet, the watermark
//! still moves on with the wall clock (the newest event time plus the time
//! since it arrived), so a burst's last window is judged without waiting for
//! the next event.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tooltrail_detect::deliver::DeliveryHandle;
use tooltrail_detect::metrics::{AlertLabels, Metrics};
use tooltrail_detect::sink::AlertLake;
use tooltrail_detect::{Alert, Engine};
use tooltrail_schemas::ToolCallEvent;

/// How often a quiet stream's watermark is moved on.
const TICK: Duration = Duration::from_secs(2);

pub struct Detector {
    pub engine: Engine,
    /// Alerts to publish first (from warming up on the lake).
    pub pending: Vec<Alert>,
    pub lake: AlertLake,
    pub delivery: Option<DeliveryHandle>,
    pub metrics: Metrics,
    /// Every alert, for in-process listeners.
    pub alerts: broadcast::Sender<Alert>,
}

impl Detector {
    pub async fn run(
        self,
        mut events: mpsc::Receiver<Vec<ToolCallEvent>>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let Detector {
            mut engine,
            pending,
            lake,
            delivery,
            metrics,
            alerts,
        } = self;
        let lake = Arc::new(Mutex::new(lake));
        let mut out = pending;
        publish(&mut out, &lake, delivery.as_ref(), &metrics, &alerts).await?;
        // After warming, the clock runs on from the newest event replayed.
        let mut last: Option<(i64, Instant)> = engine.newest_secs().map(|t| (t, Instant::now()));
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                batch = events.recv() => {
                    let Some(batch) = batch else { break };
                    let before = engine.stats();
                    for event in &batch {
                        engine.observe(event, &mut out);
                    }
                    if let Some(newest) = batch.iter().map(|e| e.time.timestamp()).max() {
                        last = Some((newest.max(last.map_or(i64::MIN, |l| l.0)), Instant::now()));
                    }
                    let after = engine.stats();
                    metrics.events.inc_by(after.events - before.events);
                    metrics.late.inc_by(after.late - before.late);
                    metrics.suppressed.inc_by(after.suppressed - before.suppressed);
                }
                _ = tick.tick() => {
                    if let Some((newest, at)) = last {
                        engine.advance(newest + at.elapsed().as_secs() as i64, &mut out);
                    }
                }
                () = shutdown.cancelled() => {
                    // Take what ingest already acknowledged, then judge the
                    // open windows: nothing durable goes unexamined.
                    while let Ok(batch) = events.try_recv() {
                        for event in &batch {
                            engine.observe(event, &mut out);
                        }
                    }
                    engine.finish(&mut out);
                    publish(&mut out, &lake, delivery.as_ref(), &metrics, &alerts).await?;
                    break;
                }
            }
            metrics.users.set(engine.users() as i64);
            publish(&mut out, &lake, delivery.as_ref(), &metrics, &alerts).await?;
        }
        Ok(())
    }
}

async fn publish(
    out: &mut Vec<Alert>,
    lake: &Arc<Mutex<AlertLake>>,
    delivery: Option<&DeliveryHandle>,
    metrics: &Metrics,
    listeners: &broadcast::Sender<Alert>,
) -> anyhow::Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let batch = std::mem::take(out);
    for alert in &batch {
        announce(alert, metrics);
    }
    // The outbox first, the lake second: after a crash between the two, the
    // warm-up finds the alert missing from the lake and raises it again, and
    // the outbox (idempotent by alert id; an update with a repeat count is
    // not sent again) ignores the copy. The other order would leave an alert
    // in the lake that was never sent.
    if let Some(delivery) = delivery {
        for alert in &batch {
            delivery
                .enqueue_async(alert.clone())
                .await
                .context("enqueue an alert for delivery")?;
        }
    }
    let lake = Arc::clone(lake);
    let written = batch.clone();
    tokio::task::spawn_blocking(move || {
        lake.lock()
            .map_err(|_| anyhow::anyhow!("alert lake lock poisoned"))?
            .write(&written)
            .context("write alerts to the lake")
    })
    .await
    .context("alert writer task")??;
    for alert in batch {
        let _ = listeners.send(alert);
    }
    Ok(())
}

/// Counts a new alert and logs it; an update of one (a repeat count) is neither.
pub fn announce(alert: &Alert, metrics: &Metrics) {
    if alert.repeats > 0 {
        return;
    }
    metrics
        .alerts
        .get_or_create(&AlertLabels {
            detector: alert.detector.as_str().into(),
            severity: alert.severity.as_str().into(),
        })
        .inc();
    tracing::warn!(
        alert_id = %alert.alert_id,
        detector = %alert.detector,
        severity = %alert.severity,
        tenant = %alert.tenant_id,
        user = %alert.user_id,
        "{}",
        alert.title
    );
}

/// Builds alert delivery with its outbox under `data_dir` and runs it under
/// `supervisor`; returns the handle alerts are enqueued through.
pub fn start_delivery(
    config: &tooltrail_detect::deliver::DeliveryConfig,
    data_dir: &std::path::Path,
    registry: &mut prometheus_client::registry::Registry,
    supervisor: &crate::supervisor::Supervisor,
) -> anyhow::Result<DeliveryHandle> {
    let delivery = tooltrail_detect::deliver::Delivery::build(
        config.clone(),
        &data_dir.join("outbox"),
        tooltrail_detect::deliver::metrics::Metrics::register(registry),
    )
    .context("starting alert delivery")?;
    let handle = delivery.handle();
    let token = supervisor.token();
    supervisor.spawn(
        "alert delivery",
        async move { Ok(delivery.run(token).await?) },
    );
    Ok(handle)
}

/// A temporary alert file older than this was left by a writer killed
/// mid-write: a live one renames its file within milliseconds.
const STALE_TEMPORARY: Duration = Duration::from_secs(3600);

/// Opens `<lake>/alerts` for a detector to write to, first removing the
/// temporary files killed writers left there.
pub fn open_alert_lake(lake_dir: &std::path::Path) -> anyhow::Result<AlertLake> {
    let lake = AlertLake::open(lake_dir)
        .with_context(|| format!("opening {}/alerts", lake_dir.display()))?;
    let removed = lake
        .remove_stale_temporaries(STALE_TEMPORARY)
        .with_context(|| format!("sweeping {}", lake.root().display()))?;
    if removed > 0 {
        tracing::info!(
            removed,
            dir = %lake.root().display(),
            "removed temporary alert files left by a killed writer"
        );
    }
    Ok(lake)
}
