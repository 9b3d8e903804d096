//! Alert delivery's Prometheus metrics. The only labels are the destination's
//! configured name and a fixed outcome: bounded by the configuration.

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DestinationLabels {
    pub destination: String,
}

/// How a delivery attempt ended.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum Outcome {
    /// The destination accepted the alert.
    Delivered,
    /// The attempt failed and will be retried.
    Retry,
    /// The alert was moved to the dead letters.
    Failed,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::Retry => "retry",
            Outcome::Failed => "failed",
        }
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub destination: String,
    pub outcome: Outcome,
}

type HistogramFamily = Family<DestinationLabels, Histogram, fn() -> Histogram>;

/// Every delivery metric. Cheap to clone (the handles share state).
#[derive(Clone, Debug)]
pub struct Metrics {
    /// `tooltrail_alert_deliveries_total{destination, outcome}`: attempts by outcome.
    pub deliveries: Family<OutcomeLabels, Counter>,
    /// `tooltrail_alert_outbox_pending{destination}`: alerts waiting in the outbox.
    pub pending: Family<DestinationLabels, Gauge>,
    /// `tooltrail_alert_delivery_seconds{destination}`: enqueue to delivered.
    pub delivery_seconds: HistogramFamily,
}

fn latency_histogram() -> Histogram {
    // 10 ms to about 3 hours: the happy path and hours of retries.
    Histogram::new(exponential_buckets(0.01, 2.0, 21))
}

impl Metrics {
    /// Creates the metrics and registers them under `tooltrail_alert_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics {
            deliveries: Family::default(),
            pending: Family::default(),
            delivery_seconds: Family::new_with_constructor(latency_histogram),
        };
        let r = registry.sub_registry_with_prefix("tooltrail_alert");
        r.register(
            "deliveries",
            "Alert delivery attempts, by destination and outcome (delivered, retry, failed)",
            m.deliveries.clone(),
        );
        r.register(
            "outbox_pending",
            "Alerts waiting in the outbox, by destination",
            m.pending.clone(),
        );
        r.register(
            "delivery_seconds",
            "Time from enqueueing an alert to its delivery, by destination",
            m.delivery_seconds.clone(),
        );
        m
    }

    pub(crate) fn count(&self, destination: &str, outcome: Outcome) {
        self.deliveries
            .get_or_create(&OutcomeLabels {
                destination: destination.to_owned(),
                outcome,
            })
            .inc();
    }

    pub(crate) fn pending(&self, destination: &str) -> Gauge {
        self.pending
            .get_or_create(&DestinationLabels {
                destination: destination.to_owned(),
            })
            .clone()
    }

    pub(crate) fn observe_latency(&self, destination: &str, seconds: f64) {
        self.delivery_seconds
            .get_or_create(&DestinationLabels {
                destination: destination.to_owned(),
            })
            .observe(seconds);
    }

    /// How many attempts to `destination` ended with `outcome`.
    pub fn deliveries(&self, destination: &str, outcome: Outcome) -> u64 {
        self.deliveries
            .get_or_create(&OutcomeLabels {
                destination: destination.to_owned(),
                outcome,
            })
            .get()
    }

    /// How many alerts wait in `destination`'s outbox.
    pub fn pending_count(&self, destination: &str) -> i64 {
        self.pending(destination).get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    #[test]
    fn metric_names_match_the_documented_ones() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.count("siem", Outcome::Retry);
        m.pending("siem").set(2);
        m.observe_latency("siem", 0.2);
        let mut text = String::new();
        encode(&mut text, &registry).expect("encodes");
        assert!(
            text.contains(
                r#"tooltrail_alert_deliveries_total{destination="siem",outcome="retry"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"tooltrail_alert_outbox_pending{destination="siem"} 2"#),
            "{text}"
        );
        assert!(
            text.contains(r#"tooltrail_alert_delivery_seconds_count{destination="siem"} 1"#),
            "{text}"
        );
    }
}
