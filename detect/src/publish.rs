//! Publishing alerts: the one place that decides where an alert goes, in
//! which order, and what is never written twice. `tooltrail up` and
//! `tooltrail detect --kafka` both publish through a [`Publisher`].
//!
//! The order is the outbox, then the Kafka alerts topic (when configured),
//! then the lake's `alerts` table:
//!
//! - The outbox is durable and idempotent by `alert_id` (an update carrying a
//!   repeat count is not sent again). After a crash between it and the lake,
//!   the replay that warms a restarted detector raises the alert again with
//!   the same id; the lake takes it and the outbox ignores the copy. The
//!   other order would leave an alert in the lake that was never sent.
//! - The alerts topic is at least once: a crash between its produce and the
//!   lake commit repeats a record with the same key.
//! - The lake is the record of what was published. A version of an alert
//!   (its id and repeat count) the lake already holds, or holds a later one
//!   of, is dropped before any of the three: a restart writes nothing it
//!   wrote before. One publish is one lake commit: a crash leaves all of its
//!   alerts in the table or none.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::broadcast;
use tooltrail_lake::Location;

use crate::alert::Alert;
use crate::deliver::DeliveryHandle;
use crate::metrics::{AlertLabels, Metrics};
use crate::service::{Error, Result};
use crate::sink::AlertLake;

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
    /// Drives the lake's writes from the publishing thread.
    runtime: tokio::runtime::Handle,
    /// Alert ids the lake holds, with the highest repeat count written.
    written: HashMap<String, u32>,
    metrics: Metrics,
    /// Every published alert, for in-process listeners (`tooltrail demo`).
    listeners: Option<broadcast::Sender<Alert>>,
}

impl Publisher {
    /// Opens the `alerts` table of the lake at `lake` (creating it) and
    /// reads which alerts it holds. [`Publisher::publish`] blocks on the
    /// runtime this is called on.
    pub async fn open(
        lake: &Location,
        delivery: Option<DeliveryHandle>,
        metrics: Metrics,
        lake_metrics: tooltrail_lake::Metrics,
    ) -> Result<Self> {
        let lake_error = |source| Error::AlertLake {
            lake: lake.to_string(),
            source,
        };
        let alerts = AlertLake::open(lake, lake_metrics)
            .await
            .map_err(lake_error)?;
        let written = alerts.written().await.map_err(lake_error)?;
        Ok(Publisher {
            delivery,
            topic: None,
            lake: alerts,
            runtime: tokio::runtime::Handle::current(),
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
    /// returns how many were published. Blocking (the lake's commit, and the
    /// topic's acknowledgement): from async code, run it on the blocking
    /// pool.
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
        self.runtime
            .block_on(self.lake.write(&fresh))
            .map_err(|source| Error::AlertLake {
                lake: self.lake.location().to_string(),
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
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int64Type;
    use tooltrail_lake::{Snapshot, tables};

    use super::*;

    /// Alert rows in the lake, as (alert_id, repeats).
    async fn rows(lake: &Location) -> Vec<(String, u32)> {
        let snapshot = Snapshot::load(lake, &tables::ALERTS)
            .await
            .expect("load")
            .expect("the alerts table");
        let mut rows = Vec::new();
        for file in snapshot.files().expect("files") {
            let batches = snapshot
                .read_file(&file.path, Some(&["alert_id", "repeats"]))
                .await
                .expect("read");
            for batch in batches {
                let ids = batch.column(0).as_string::<i32>();
                let repeats = batch.column(1).as_primitive::<Int64Type>();
                for row in 0..batch.num_rows() {
                    assert!(!repeats.is_null(row));
                    let count = u32::try_from(repeats.value(row)).expect("a count");
                    rows.push((ids.value(row).to_owned(), count));
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
        let dir = tempfile::tempdir().expect("temp dir");
        let lake = Location::local(dir.path()).expect("a local lake");
        // `publish` blocks on the runtime, from this thread, as the service's.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let open = || {
            runtime
                .block_on(Publisher::open(
                    &lake,
                    None,
                    Metrics::default(),
                    tooltrail_lake::Metrics::default(),
                ))
                .expect("open")
        };

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
        assert_eq!(idle.known(), 2);
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
            runtime.block_on(rows(&lake)),
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
