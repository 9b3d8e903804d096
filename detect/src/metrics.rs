//! The detector's Prometheus metrics (delivery has its own, in
//! [`crate::deliver::metrics`]). Labels are bounded: detector and severity.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    pub detector: String,
    pub severity: String,
}

#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// `tooltrail_detect_events_total`
    pub events: Counter,
    /// `tooltrail_detect_late_events_total`: behind the watermark on arrival.
    pub late: Counter,
    /// `tooltrail_detect_alerts_total{detector, severity}`
    pub alerts: Family<AlertLabels, Counter>,
    /// `tooltrail_detect_suppressed_total`: repeats folded into open alerts.
    pub suppressed: Counter,
    /// `tooltrail_detect_users`: users with state.
    pub users: Gauge,
}

impl Metrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics::default();
        registry.register(
            "tooltrail_detect_events",
            "Events seen by the detector",
            m.events.clone(),
        );
        registry.register(
            "tooltrail_detect_late_events",
            "Events that arrived behind the watermark",
            m.late.clone(),
        );
        registry.register("tooltrail_detect_alerts", "Alerts raised", m.alerts.clone());
        registry.register(
            "tooltrail_detect_suppressed",
            "Repeats folded into an open alert",
            m.suppressed.clone(),
        );
        registry.register(
            "tooltrail_detect_users",
            "Users with detector state",
            m.users.clone(),
        );
        m
    }
}
