//! Ingest's Prometheus metrics. Labels are bounded: a source kind, a
//! quarantine reason code, a table, a partition number; never a user.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::batch::PendingStats;

/// The quarantine reason of an event its credential may not write.
const TENANT_NOT_ALLOWED: &str = "tenant_not_allowed";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// An optional field of the event contract (`schemas::invalid_field`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FieldLabels {
    pub field: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    pub table: String,
}

/// An OTLP record's signal (`logs`, `traces`), transport (`http`, `kafka`)
/// and what became of it (`mapped`, `unmapped`, `skipped`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OtlpLabels {
    pub signal: String,
    pub transport: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PartitionLabels {
    pub topic: String,
    pub partition: i32,
}

/// Every ingest metric. Cheap to clone (the handles share state).
#[derive(Clone)]
pub struct Metrics {
    pub events: Family<SourceLabels, Counter>,
    pub bytes: Family<SourceLabels, Counter>,
    pub quarantined: Family<ReasonLabels, Counter>,
    /// Events kept with an optional field set aside as invalid, by field.
    pub invalid_fields: Family<FieldLabels, Counter>,
    pub files: Family<TableLabels, Counter>,
    pub commit_seconds: Histogram,
    pub conflicts: Counter,
    /// Lag of the partitions this instance is assigned now (a revoked
    /// partition's series goes with it, so lag sums across a group).
    pub consumer_lag: Family<PartitionLabels, Gauge>,
    /// Kafka partitions this instance is assigned now.
    pub partitions_assigned: Gauge,
    /// Bytes of request bodies `POST /v1/events` holds now (`http.max_inflight_bytes`).
    pub http_inflight_bytes: Gauge,
    /// Requests answered 503 because too many bodies were in flight.
    pub http_overloaded: Counter,
    /// Events quarantined because their credential (an ingest token,
    /// `kafka.tenants`) may not write their tenant, by source kind.
    pub tenant_not_allowed: Family<SourceLabels, Counter>,
    /// Times durable events could not be handed to the detector because its
    /// channel had closed (it stopped or failed): detection is not running.
    pub detector_gone: Counter,
    /// OTLP log records and spans received: `mapped` (on to the decoder,
    /// which may still quarantine them), `unmapped` (a required field no
    /// attribute filled; quarantined), `skipped` (spans that are not MCP
    /// calls).
    pub otlp_records: Family<OtlpLabels, Counter>,
}

impl Metrics {
    /// Creates the metrics and registers them under `tooltrail_ingest_*`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Metrics {
            events: Family::default(),
            bytes: Family::default(),
            quarantined: Family::default(),
            invalid_fields: Family::default(),
            files: Family::default(),
            commit_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            conflicts: Counter::default(),
            consumer_lag: Family::default(),
            partitions_assigned: Gauge::default(),
            http_inflight_bytes: Gauge::default(),
            http_overloaded: Counter::default(),
            tenant_not_allowed: Family::default(),
            detector_gone: Counter::default(),
            otlp_records: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("tooltrail_ingest");
        r.register(
            "events",
            "Valid events written to the lake",
            m.events.clone(),
        );
        r.register("bytes", "Bytes of records received", m.bytes.clone());
        r.register(
            "detector_gone",
            "Durable events the detector's closed channel could not take",
            m.detector_gone.clone(),
        );
        r.register(
            "quarantined",
            "Records quarantined, by reason",
            m.quarantined.clone(),
        );
        r.register(
            "invalid_fields",
            "Events kept with an invalid optional field left empty, by field",
            m.invalid_fields.clone(),
        );
        r.register(
            "files_committed",
            "Parquet files committed, by table",
            m.files.clone(),
        );
        r.register(
            "commit_seconds",
            "Time to make a transaction durable",
            m.commit_seconds.clone(),
        );
        r.register(
            "conflicts",
            "Transactions refused because another writer had committed the offsets",
            m.conflicts.clone(),
        );
        r.register(
            "consumer_lag",
            "Records between the committed position and the partition's end",
            m.consumer_lag.clone(),
        );
        r.register(
            "partitions_assigned",
            "Kafka partitions this instance is assigned now",
            m.partitions_assigned.clone(),
        );
        r.register(
            "http_inflight_bytes",
            "Bytes of request bodies POST /v1/events holds now",
            m.http_inflight_bytes.clone(),
        );
        r.register(
            "http_overloaded",
            "Requests answered 503 because too many request bodies were in flight",
            m.http_overloaded.clone(),
        );
        r.register(
            "tenant_not_allowed",
            "Events quarantined because their ingest token or kafka.tenants may not write their tenant",
            m.tenant_not_allowed.clone(),
        );
        r.register(
            "otlp_records",
            "OTLP log records and spans received, by signal, transport and outcome (mapped, unmapped, skipped)",
            m.otlp_records.clone(),
        );
        m
    }

    /// Counts OTLP records mapped from one request or Kafka record.
    pub fn otlp(&self, signal: &str, transport: &str, mapped: &crate::otlp::Mapped) {
        for (outcome, n) in [
            ("mapped", mapped.mapped()),
            ("unmapped", mapped.unmapped()),
            ("skipped", mapped.skipped),
        ] {
            if n > 0 {
                self.otlp_records
                    .get_or_create(&OtlpLabels {
                        signal: signal.to_owned(),
                        transport: transport.to_owned(),
                        outcome: outcome.to_owned(),
                    })
                    .inc_by(n);
            }
        }
    }

    /// Counts a committed transaction.
    pub fn committed(&self, source: &str, stats: &PendingStats, seconds: f64) {
        let source = SourceLabels {
            source: source.to_owned(),
        };
        self.events.get_or_create(&source).inc_by(stats.events);
        self.bytes.get_or_create(&source).inc_by(stats.bytes);
        if let Some(n) = stats.quarantined.get(TENANT_NOT_ALLOWED) {
            self.tenant_not_allowed.get_or_create(&source).inc_by(*n);
        }
        for (reason, n) in &stats.quarantined {
            self.quarantined
                .get_or_create(&ReasonLabels {
                    reason: (*reason).to_owned(),
                })
                .inc_by(*n);
        }
        for (field, n) in &stats.invalid_fields {
            self.invalid_fields
                .get_or_create(&FieldLabels {
                    field: (*field).to_owned(),
                })
                .inc_by(*n);
        }
        for (table, n) in &stats.files {
            self.files
                .get_or_create(&TableLabels {
                    table: (*table).to_owned(),
                })
                .inc_by(*n);
        }
        self.commit_seconds.observe(seconds);
    }
}
