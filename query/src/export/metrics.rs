//! Export metrics: `tooltrail_exports_*` on `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The export service's metrics. Clones share the same series.
#[derive(Debug, Clone)]
pub struct ExportMetrics {
    pub exports: Family<OutcomeLabel, Counter>,
    pub rows: Counter,
    pub bytes: Counter,
    pub running: Gauge,
    pub queued: Gauge,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

impl ExportMetrics {
    pub fn register(registry: &mut Registry) -> ExportMetrics {
        let m = ExportMetrics {
            exports: Family::default(),
            rows: Counter::default(),
            bytes: Counter::default(),
            running: Gauge::default(),
            queued: Gauge::default(),
        };
        registry.register(
            "tooltrail_exports",
            "Exports finished, by outcome (done, error, timeout)",
            m.exports.clone(),
        );
        registry.register(
            "tooltrail_export_rows",
            "Rows written by finished exports",
            m.rows.clone(),
        );
        registry.register(
            "tooltrail_export_bytes",
            "Bytes of part files written by finished exports",
            m.bytes.clone(),
        );
        registry.register(
            "tooltrail_exports_running",
            "Exports running now",
            m.running.clone(),
        );
        registry.register(
            "tooltrail_exports_queued",
            "Exports waiting for a slot",
            m.queued.clone(),
        );
        m
    }

    pub fn unregistered() -> ExportMetrics {
        ExportMetrics::register(&mut Registry::default())
    }
}
