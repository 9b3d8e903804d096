//! Query metrics: `tooltrail_query_*` on `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::engine::Transport;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub transport: &'static str,
    pub outcome: &'static str,
}

/// The engine's metrics. Clones share the same series.
#[derive(Debug, Clone)]
pub struct QueryMetrics {
    pub queries: Family<OutcomeLabels, Counter>,
    pub duration: Histogram,
    pub rows: Counter,
    pub running: Gauge,
    pub auth_failures: Counter,
}

impl QueryMetrics {
    pub fn register(registry: &mut Registry) -> QueryMetrics {
        let m = QueryMetrics {
            queries: Family::default(),
            duration: Histogram::new(exponential_buckets(0.001, 2.0, 18)),
            rows: Counter::default(),
            running: Gauge::default(),
            auth_failures: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("tooltrail_query");
        r.register(
            "queries",
            "Queries finished, by transport and outcome",
            m.queries.clone(),
        );
        r.register(
            "duration_seconds",
            "Query duration from admission to the last row",
            m.duration.clone(),
        );
        r.register("rows", "Rows returned to clients", m.rows.clone());
        r.register("running", "Queries running now", m.running.clone());
        r.register(
            "auth_failures",
            "Requests with a missing or unknown token",
            m.auth_failures.clone(),
        );
        m
    }

    /// Metrics not exposed anywhere (the CLI, tests).
    pub fn unregistered() -> QueryMetrics {
        QueryMetrics::register(&mut Registry::default())
    }

    pub(crate) fn finished(&self, transport: Transport, outcome: &'static str) {
        self.queries
            .get_or_create(&OutcomeLabels {
                transport: transport.name(),
                outcome,
            })
            .inc();
    }
}
