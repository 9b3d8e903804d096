//! The lake's Prometheus metrics. Labels are bounded: a table name.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    pub table: String,
}

/// Every lake metric. Cheap to clone (the handles share state).
#[derive(Clone)]
pub struct Metrics {
    /// Commits that found the table moved on and tried again.
    pub commit_conflicts: Family<TableLabels, Counter>,
    /// Time from a commit's first attempt to its success, conflicts included.
    pub commit_seconds: Family<TableLabels, Histogram>,
    /// Data files committed.
    pub files: Family<TableLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            commit_conflicts: Family::default(),
            commit_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 16))
            }),
            files: Family::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric under `tooltrail_lake_`.
    pub fn register(&self, registry: &mut Registry) {
        let lake = registry.sub_registry_with_prefix("tooltrail_lake");
        lake.register(
            "commit_conflicts",
            "Commits that found the table moved on and tried again",
            self.commit_conflicts.clone(),
        );
        lake.register(
            "commit_seconds",
            "Time to commit, conflicts and back-off included",
            self.commit_seconds.clone(),
        );
        lake.register("files", "Data files committed", self.files.clone());
    }

    pub(crate) fn table(table: &str) -> TableLabels {
        TableLabels {
            table: table.to_owned(),
        }
    }
}

/// The digest chain's metrics, registered under `tooltrail_lake_digest_`.
#[derive(Clone, Debug, Default)]
pub struct DigestMetrics {
    /// Digests written.
    pub written: Counter,
    /// Digest writes that failed: the chain is not advancing.
    pub failures: Counter,
    /// Unix time of the last digest written.
    pub last_success: Gauge,
}

impl DigestMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let digest = registry.sub_registry_with_prefix("tooltrail_lake_digest");
        digest.register("written", "Digests written", self.written.clone());
        digest.register(
            "failures",
            "Digest writes that failed (the chain is not advancing)",
            self.failures.clone(),
        );
        digest.register(
            "last_success_timestamp_seconds",
            "Unix time of the last digest written",
            self.last_success.clone(),
        );
    }
}

/// A run's outcome: `ok`, `partial` (some partitions failed) or `error`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// `tooltrail up`'s periodic compaction.
#[derive(Clone, Default, Debug)]
pub struct CompactionMetrics {
    pub runs: Family<OutcomeLabel, Counter>,
    pub files_in: Family<TableLabels, Counter>,
    pub files_out: Family<TableLabels, Counter>,
}

impl CompactionMetrics {
    /// Registers every compaction metric under `tooltrail_compaction_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("tooltrail_compaction");
        r.register(
            "runs",
            "Compaction runs by outcome (ok, error)",
            self.runs.clone(),
        );
        r.register(
            "files_merged",
            "Small files compaction merged and removed from the tables",
            self.files_in.clone(),
        );
        r.register(
            "files_written",
            "Files compaction wrote in their place",
            self.files_out.clone(),
        );
    }

    /// Counts one run by its outcome, and what it merged by table.
    pub fn record(
        &self,
        result: &crate::Result<Vec<(&'static str, crate::compact::CompactSummary)>>,
    ) {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.runs.get_or_create(&OutcomeLabel { outcome }).inc();
        for (table, summary) in result.iter().flatten() {
            let table = Metrics::table(table);
            self.files_in
                .get_or_create(&table)
                .inc_by(summary.files_in as u64);
            self.files_out
                .get_or_create(&table)
                .inc_by(summary.files_out as u64);
        }
    }
}

/// `tooltrail_retention_*`: what `up`'s retention runs delete, and whether
/// they fail. Labels: the outcome, the table name.
#[derive(Clone, Debug, Default)]
pub struct RetentionMetrics {
    pub runs: Family<OutcomeLabel, Counter>,
    pub partitions: Family<TableLabels, Counter>,
    pub rows: Family<TableLabels, Counter>,
    pub bytes: Family<TableLabels, Counter>,
}

impl RetentionMetrics {
    /// Registers every retention metric under `tooltrail_retention_`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("tooltrail_retention");
        r.register(
            "runs",
            "Retention runs by outcome (ok, partial: some partitions failed, error)",
            self.runs.clone(),
        );
        r.register(
            "partitions",
            "Partitions deleted or rewritten by retention",
            self.partitions.clone(),
        );
        r.register(
            "rows_deleted",
            "Rows deleted by retention",
            self.rows.clone(),
        );
        r.register(
            "bytes_deleted",
            "Bytes of files removed from the tables by retention",
            self.bytes.clone(),
        );
    }

    /// Counts one run by its outcome, and what it removed by table.
    pub fn record(
        &self,
        result: &Result<crate::retention::RetentionSummary, crate::retention::Error>,
    ) {
        let outcome = match result {
            Ok(summary) if summary.failed.is_empty() => "ok",
            Ok(_) => "partial",
            Err(_) => "error",
        };
        self.runs.get_or_create(&OutcomeLabel { outcome }).inc();
        if let Ok(summary) = result {
            for done in summary.deleted.iter().chain(&summary.rewritten) {
                let table = Metrics::table(done.partition.table.name());
                self.partitions.get_or_create(&table).inc();
                self.rows.get_or_create(&table).inc_by(done.rows);
                self.bytes.get_or_create(&table).inc_by(done.bytes);
            }
        }
    }
}
