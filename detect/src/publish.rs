//! Publishing alerts: the one place that decides where an alert goes, in
//! which order, and what is never written twice. `tooltrail up` and
//! `tooltrail detect --kafka` both publish through a [`Publisher`].
//!
//! The order is the outbox, then the Kafka alerts topic (when configured),
//! then the lake's `alerts/`:
//!
//! - The outbox is durable and idempotent by `alert_id` (an update carrying a
//!   repeat count is not sent again). After a crash between it and the lake,
//!   the replay that warms a restarted detector raises the alert again with
//!   the same id; the lake takes it and the outbox ignores the copy. The
//!   other order would leave an alert in the lake that was never sent.
//! - The alerts topic is at least once: a crash between its produce and the
//!   lake write repeats a record with the same key.
//! - The lake is the record of what was published. A version of an alert
//!   (its id and repeat count) the lake already holds, or holds a later one
//!   of, is dropped before any of the three: a restart writes nothing it
//!   wrote before.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::broadcast;

use crate::alert::Alert;
use crate::deliver::DeliveryHandle;
use crate::metrics::{AlertLabels, Metrics};
use crate::service::{Error, Result};
use crate::sink::AlertLake;

/// A temporary alert file older than this was left by a writer killed
/// mid-write: a live one renames its file within milliseconds.
const STALE_TEMPORARY: Duration = Duration::from_secs(3600);

/// How long producing one alert to the alerts topic may take.
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);

/// The optional Kafka topic every published alert is also produced to,
/// keyed by `alert_id`.
pub struct AlertTopic {
    producer: FutureProducer,
    topic: String,
    runtime: tokio::runtime::Handle,
}

impl AlertTopic {
    /// `runtime` drives the producer's futures from the publishing thread.
    pub fn new(producer: FutureProducer, topic: String, runtime: tokio::runtime::Handle) -> Self {
        AlertTopic {
            producer,
            topic,
            runtime,
        }
    }

    fn produce(&self, alert: &Alert) -> Result<()> {
        let body = alert.to_json();
        let record = FutureRecord::to(&self.topic)
            .key(&alert.alert_id)
            .payload(&body);
        self.runtime
            .block_on(self.producer.send(record, PRODUCE_TIMEOUT))
            .map_err(|(source, _)| Error::Produce {
                topic: self.topic.clone(),
                alert_id: alert.alert_id.clone(),
                source: Box::new(source),
            })?;
        Ok(())
    }
}

/// Where alerts go; see the [module docs](self).
pub struct Publisher {
    delivery: Option<DeliveryHandle>,
    topic: Option<AlertTopic>,
    lake: AlertLake,
    /// Alert ids the lake holds, with the highest repeat count written.
    written: HashMap<String, u32>,
    metrics: Metrics,
    /// Every published alert, for in-process listeners (`tooltrail demo`).
    listeners: Option<broadcast::Sender<Alert>>,
}

impl Publisher {
    /// Opens `<lake>/alerts`, sweeps the temporary files killed writers left
    /// there, and reads which alerts it holds.
    pub fn open(
        lake_dir: &Path,
        delivery: Option<DeliveryHandle>,
        metrics: Metrics,
    ) -> Result<Self> {
        let lake = AlertLake::open(lake_dir).map_err(|source| Error::AlertLake {
            path: lake_dir.join("alerts"),
            source,
        })?;
        let lake_error = |source| Error::AlertLake {
            path: lake.root().to_path_buf(),
            source,
        };
        let removed = lake
            .remove_stale_temporaries(STALE_TEMPORARY)
            .map_err(lake_error)?;
        if removed > 0 {
            tracing::info!(
                removed,
                dir = %lake.root().display(),
                "removed temporary alert files left by a killed writer"
            );
        }
        let written = lake.written().map_err(lake_error)?;
        Ok(Publisher {
            delivery,
            topic: None,
            lake,
            written,
            metrics,
            listeners: None,
        })
    }

    pub fn with_topic(mut self, topic: AlertTopic) -> Self {
        self.topic = Some(topic);
        self
    }

    pub fn with_listeners(mut self, listeners: broadcast::Sender<Alert>) -> Self {
        self.listeners = Some(listeners);
        self
    }

    /// How many alert ids the lake holds.
    pub fn known(&self) -> usize {
        self.written.len()
    }

    /// Whether the lake holds this version of the alert, or a later one.
    fn is_written(&self, alert: &Alert) -> bool {
        self.written
            .get(&alert.alert_id)
            .is_some_and(|&repeats| alert.repeats <= repeats)
    }

    /// Publishes `alerts` (emptying it), skipping versions already written;
    /// returns how many were published. Blocking (fsync, and the topic's
    /// acknowledgement): from async code, run it on the blocking pool.
    pub fn publish(&mut self, alerts: &mut Vec<Alert>) -> Result<usize> {
        let mut fresh: Vec<Alert> = Vec::with_capacity(alerts.len());
        for alert in alerts.drain(..) {
            if self.is_written(&alert) {
                continue;
            }
            // Two versions in one batch: the later supersedes the earlier.
            match fresh.iter_mut().find(|a| a.alert_id == alert.alert_id) {
                Some(earlier) if earlier.repeats < alert.repeats => *earlier = alert,
                Some(_) => {}
                None => fresh.push(alert),
            }
        }
        if fresh.is_empty() {
            return Ok(0);
        }
        for alert in &fresh {
            announce(alert, &self.metrics);
        }
        if let Some(delivery) = &self.delivery {
            for alert in &fresh {
                delivery.enqueue(alert).map_err(|source| Error::Enqueue {
                    alert_id: alert.alert_id.clone(),
                    source,
                })?;
            }
        }
        if let Some(topic) = &self.topic {
            for alert in &fresh {
                topic.produce(alert)?;
            }
        }
        self.lake.write(&fresh).map_err(|source| Error::AlertLake {
            path: self.lake.root().to_path_buf(),
            source,
        })?;
        let published = fresh.len();
        for alert in fresh {
            let known = self.written.entry(alert.alert_id.clone()).or_default();
            *known = (*known).max(alert.repeats);
            if let Some(listeners) = &self.listeners {
                // No listener is not a failure: the demo may not be watching.
                let _ = listeners.send(alert);
            }
        }
        Ok(published)
    }
}

/// Counts a new alert and logs it; an update of one (a repeat count) is neither.
fn announce(alert: &Alert, metrics: &Metrics) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Alert rows in the lake, as (alert_id, repeats).
    fn rows(lake: &Path) -> Vec<(String, u32)> {
        let mut rows = Vec::new();
        for day in std::fs::read_dir(lake.join("alerts")).expect("alerts dir") {
            for file in std::fs::read_dir(day.expect("day").path()).expect("day dir") {
                let text = std::fs::read_to_string(file.expect("file").path()).expect("read");
                for line in text.lines() {
                    let alert: Alert = serde_json::from_str(line).expect("an alert record");
                    rows.push((alert.alert_id, alert.repeats));
                }
            }
        }
        rows.sort();
        rows
    }

    fn version(id: &str, repeats: u32) -> Alert {
        Alert {
            alert_id: id.into(),
            repeats,
            ..crate::alert::test_alert()
        }
    }

    #[test]
    fn each_alert_version_is_written_once_across_restarts() {
        let lake = tempfile::tempdir().expect("temp dir");
        let open = || Publisher::open(lake.path(), None, Metrics::default()).expect("open");

        // A first run raises two alerts, then one repeats twice.
        let mut first = open();
        let published = first
            .publish(&mut vec![version("a", 0), version("b", 0)])
            .expect("publish");
        assert_eq!(published, 2);
        // Two versions in one batch: only the later is written.
        let published = first
            .publish(&mut vec![version("a", 1), version("a", 2)])
            .expect("publish");
        assert_eq!(published, 1);

        // An idle restart replays the same history and raises the same
        // versions (and an older one): nothing is written.
        let mut idle = open();
        let mut replayed = vec![
            version("a", 0),
            version("a", 2),
            version("b", 0),
            version("a", 1),
        ];
        assert_eq!(idle.publish(&mut replayed).expect("publish"), 0);
        assert!(replayed.is_empty(), "publish takes what it is given");

        // A third run sees `b` repeat and a new alert.
        let mut third = open();
        let published = third
            .publish(&mut vec![version("b", 0), version("b", 3), version("c", 0)])
            .expect("publish");
        assert_eq!(published, 2);

        assert_eq!(
            rows(lake.path()),
            [
                ("a".to_string(), 0),
                ("a".to_string(), 2),
                ("b".to_string(), 0),
                ("b".to_string(), 3),
                ("c".to_string(), 0),
            ]
        );
    }
}
