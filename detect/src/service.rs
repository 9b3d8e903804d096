//! The detector as a running service: the [`Engine`] fed by a stream,
//! its alerts handed to a [`Publisher`].
//!
//! - [`Detector`]: in process, fed by ingest's tap with what ingest has made
//!   durable (`tooltrail up`).
//! - [`kafka`]: its own consumer group on the events topic (`tooltrail
//!   detect --kafka`).
//! - [`warm`]: rebuilding an engine from the lake's history at start.
//!
//! Event time drives the engine. When the stream goes quiet, the watermark
//! still moves on with the injected [`Clock`] (the newest event time plus the
//! time since it arrived), so a burst's last window is judged without
//! waiting for the next event.

pub mod kafka;
pub mod warm;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tooltrail_schemas::ToolCallEvent;

use crate::clock::{Clock, QuietWatermark};
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::{Alert, checkpoint, deliver};

/// How often a quiet stream's watermark is moved on.
pub const TICK: Duration = Duration::from_secs(2);

/// What stops a detector service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the alerts table of the lake at {lake}")]
    AlertLake {
        lake: String,
        source: tooltrail_lake::Error,
    },
    #[error("enqueuing alert {alert_id} for delivery")]
    Enqueue {
        alert_id: String,
        source: deliver::Error,
    },
    #[error("producing alert {alert_id} to topic {topic}")]
    Produce {
        topic: String,
        alert_id: String,
        source: Box<rdkafka::error::KafkaError>,
    },
    #[error("kafka: {context}")]
    Kafka {
        context: String,
        source: Box<rdkafka::error::KafkaError>,
    },
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    #[error("warming from the lake")]
    Warm { source: tooltrail_lake::Error },
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("the alert publisher task failed")]
    Task(#[source] tokio::task::JoinError),
}

impl Error {
    /// Whether trying again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::AlertLake { source, .. } => source.is_retryable(),
            Error::Produce { .. } | Error::Kafka { .. } => true,
            Error::Enqueue { source, .. } => source.is_retryable(),
            Error::Warm { source } => source.is_retryable(),
            Error::Checkpoint(_) | Error::Config(_) | Error::Task(_) => false,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The in-process detector of `tooltrail up`.
pub struct Detector {
    engine: Engine,
    /// Alerts to publish first (from warming up on the lake).
    pending: Vec<Alert>,
    publisher: Arc<Mutex<Publisher>>,
    metrics: Metrics,
    clock: Arc<dyn Clock>,
}

impl Detector {
    pub fn new(
        engine: Engine,
        pending: Vec<Alert>,
        publisher: Publisher,
        metrics: Metrics,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Detector {
            engine,
            pending,
            publisher: Arc::new(Mutex::new(publisher)),
            metrics,
            clock,
        }
    }

    /// Observes every batch from `events` until the channel closes (every
    /// sender dropped: intake has stopped and flushed), then judges the open
    /// windows and publishes what they raise. Nothing durable goes
    /// unexamined, so the channel's senders decide when this ends; `stop`
    /// only ends it early (a failure elsewhere), without the last judgement.
    pub async fn run(
        self,
        mut events: mpsc::Receiver<Vec<ToolCallEvent>>,
        stop: CancellationToken,
    ) -> Result<()> {
        let Detector {
            mut engine,
            pending,
            publisher,
            metrics,
            clock,
        } = self;
        let mut out = pending;
        publish(&publisher, &mut out).await?;
        // After warming, the clock runs on from the newest event replayed.
        let mut watermark = QuietWatermark::new(engine.newest_secs(), clock.now());
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                batch = events.recv() => {
                    let Some(batch) = batch else {
                        engine.finish(&mut out);
                        publish(&publisher, &mut out).await?;
                        tracing::info!("detector drained: every window judged");
                        return Ok(());
                    };
                    let before = engine.stats();
                    let now = clock.now();
                    for event in &batch {
                        engine.observe(event, &mut out);
                        watermark.saw(event.time.timestamp(), now);
                    }
                    let after = engine.stats();
                    metrics.events.inc_by(after.events - before.events);
                    metrics.late.inc_by(after.late - before.late);
                    metrics.suppressed.inc_by(after.suppressed - before.suppressed);
                }
                _ = tick.tick() => {
                    if let Some(mark) = watermark.at(clock.now()) {
                        engine.advance(mark, &mut out);
                    }
                }
                () = stop.cancelled() => return Ok(()),
            }
            metrics.users.set(engine.users() as i64);
            publish(&publisher, &mut out).await?;
        }
    }
}

/// Publishes on the blocking pool (the lake's commit and the topic's
/// acknowledgement).
async fn publish(publisher: &Arc<Mutex<Publisher>>, out: &mut Vec<Alert>) -> Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    let mut batch = std::mem::take(out);
    let publisher = Arc::clone(publisher);
    tokio::task::spawn_blocking(move || {
        publisher
            .lock()
            .expect("the publisher lock is never poisoned: publish does not panic")
            .publish(&mut batch)
    })
    .await
    .map_err(Error::Task)??;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::broadcast;

    use super::*;
    use crate::DetectConfig;
    use crate::clock::ManualClock;

    fn event(id: &str, secs: i64, tool: &str, denied: bool) -> ToolCallEvent {
        let time = chrono::DateTime::from_timestamp(secs, 0).expect("a time");
        let (decision, status) = if denied {
            ("deny", 403)
        } else {
            ("allow", 200)
        };
        let line = format!(
            r#"{{"schema_version":1,"event_id":"{id}","time":"{}","tenant_id":"acme","user_id":"alice","server":"github","method":"tools/call","tool":"{tool}","decision":"{decision}","status":{status}}}"#,
            tooltrail_schemas::format_time(&time)
        );
        tooltrail_schemas::decode(line.as_bytes()).expect("a valid event")
    }

    /// Monday 2026-11-02, 00:00 UTC.
    const DAY0: i64 = 1_793_577_600;

    /// Three weeks of alice's ordinary work: four calls an hour, 9 to 17 on
    /// weekdays, never denied.
    fn history() -> Vec<ToolCallEvent> {
        let mut events = Vec::new();
        for day in (0..21).filter(|d| d % 7 < 5) {
            for hour in 9..17 {
                for k in 0..4 {
                    let secs = DAY0 + day * 86_400 + hour * 3600 + k * 600;
                    events.push(event(&format!("h{secs}"), secs, "search_issues", false));
                }
            }
        }
        events
    }

    /// Then thirty denials within one minute on two tools: a denial spike,
    /// judged when that minute's window closes.
    fn burst() -> Vec<ToolCallEvent> {
        let start = DAY0 + 22 * 86_400 + 11 * 3600;
        (0..30)
            .map(|i| {
                event(
                    &format!("d{i}"),
                    start + i,
                    ["close_issue", "merge_pr"][i as usize % 2],
                    true,
                )
            })
            .collect()
    }

    fn lake(dir: &tempfile::TempDir) -> tooltrail_lake::Location {
        tooltrail_lake::Location::local(dir.path()).expect("a local lake")
    }

    async fn detector(
        lake: &tooltrail_lake::Location,
        clock: &ManualClock,
    ) -> (Detector, broadcast::Receiver<Alert>) {
        let (listeners, alerts) = broadcast::channel(64);
        let publisher = Publisher::open(
            lake,
            None,
            Metrics::default(),
            tooltrail_lake::Metrics::default(),
        )
        .await
        .expect("open the alert lake")
        .with_listeners(listeners);
        let engine = Engine::new(DetectConfig::default().validate().expect("defaults"));
        let detector = Detector::new(
            engine,
            Vec::new(),
            publisher,
            Metrics::default(),
            Arc::new(clock.clone()),
        );
        (detector, alerts)
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_streams_burst_is_judged_once_the_clock_passes_its_window() {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::default();
        let (detector, mut alerts) = detector(&lake(&dir), &clock).await;
        let (tap, events) = mpsc::channel(8);
        let stop = CancellationToken::new();
        let running = tokio::spawn(detector.run(events, stop.clone()));
        tap.send(history()).await.expect("send");
        tap.send(burst()).await.expect("send");
        // Ticks go by (tokio's paused time), but the wall clock has not moved
        // on from the burst: its window is still open.
        tokio::time::sleep(TICK * 5).await;
        assert!(
            alerts.try_recv().is_err(),
            "judged before its window closed"
        );
        // Ten quiet minutes later, the next tick judges it.
        clock.advance(Duration::from_secs(600));
        let alert = tokio::time::timeout(TICK * 3, alerts.recv())
            .await
            .expect("judged at the next tick")
            .expect("an alert");
        assert_eq!(alert.user_id, "alice");
        assert_eq!(alert.detector, crate::DetectorKind::DenialSpike);
        stop.cancel();
        running.await.expect("joined").expect("ran");
    }

    #[tokio::test(start_paused = true)]
    async fn when_intake_stops_the_open_windows_are_judged_and_published() {
        let dir = tempfile::tempdir().expect("temp dir");
        let clock = ManualClock::default();
        let (detector, mut alerts) = detector(&lake(&dir), &clock).await;
        let (tap, events) = mpsc::channel(8);
        tap.send(history()).await.expect("send");
        tap.send(burst()).await.expect("send");
        // Intake stopped and flushed: its sender is gone.
        drop(tap);
        detector
            .run(events, CancellationToken::new())
            .await
            .expect("drained");
        let alert = alerts.try_recv().expect("the burst's alert, published");
        assert_eq!(alert.detector, crate::DetectorKind::DenialSpike);
        let written = crate::sink::AlertLake::open(&lake(&dir), Default::default())
            .await
            .expect("open the alert lake")
            .written()
            .await
            .expect("read the alert lake");
        assert!(written.contains_key(&alert.alert_id));
    }
}
