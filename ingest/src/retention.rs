//! Retention and legal hold: deleting what is past retention, keeping what
//! is on hold, and recording every deletion in the lake's log.
//!
//! - [`config::RetentionConfig`] (`[retention]`): a retention per table
//!   (`events`, `quarantine`, `alerts`, `query_audit`), per-tenant overrides,
//!   and legal holds set in configuration.
//! - [`holds`]: [`LegalHold`] and the [`HoldStore`] of holds set through the
//!   admin API (`<lake>/_tooltrail/legal_holds.json`).
//! - [`scan`]: lists the partitions old enough to matter and which tenants
//!   have rows in each file (Parquet statistics or a `tenant_id` projection;
//!   NDJSON lines).
//! - [`plan()`]: the pure decision, from the listing, the configuration, the
//!   holds and `now`: whole partitions to delete, partitions to rewrite
//!   without some tenants' rows, and what is kept and why.
//! - [`apply()`]: does it, one log entry (`operation: retention`) per
//!   partition, re-checking the holds under their lock before each commit.
//!
//! Invariants: nothing is deleted except through a committed log entry whose
//! `removed` names each file (for every table, alerts and query audit
//! included), so the digest chain accounts for every deletion; a row is
//! never deleted before its retention has passed for its tenant (the whole
//! partition must have ended longer ago), nor while a hold covers it; a
//! partition rewrite is atomic for readers (the compaction swap); a crash
//! after the log entry is finished at the next [`Lake::open`](crate::lake::Lake::open).
//!
//! ```no_run
//! # fn main() -> Result<(), tooltrail_ingest::Error> {
//! use tooltrail_ingest::lake::Lake;
//! use tooltrail_ingest::retention::{Retention, RetentionConfig};
//! let mut lake = Lake::open("lake".as_ref(), 1)?;
//! let mut retention = Retention::new(lake.root(), &RetentionConfig::default());
//! let plan = retention.plan(&mut lake, chrono::Utc::now())?;
//! let summary = retention.apply(&mut lake, &plan, &|| false)?;
//! println!("{} partitions deleted", summary.deleted.len());
//! # Ok(()) }
//! ```

pub mod apply;
pub mod config;
pub mod holds;
pub mod periodic;
pub mod plan;
mod rewrite;
pub mod scan;
#[cfg(test)]
mod tests;
pub mod text;

use std::fmt;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

pub use apply::{Retention, RetentionSummary, apply};
pub use config::{LegalHoldConfig, RetentionConfig, TenantRetention};
pub use holds::{HoldSource, HoldStore, LegalHold, NewHold};
pub use plan::{Deletion, Kept, KeptReason, RetentionPlan, Rewrite, plan};

/// A table of the lake, as retention sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// Parquet, `events/dt=…/hour=…`, in the log.
    Events,
    /// Parquet, `quarantine/dt=…`, in the log.
    Quarantine,
    /// NDJSON, `alerts/dt=…`, written by the detector, not in the log.
    Alerts,
    /// NDJSON, `query_audit/dt=…`, appended by the query engine, not in the
    /// log; table-level retention only.
    QueryAudit,
}

impl Table {
    pub const ALL: [Table; 4] = [
        Table::Events,
        Table::Quarantine,
        Table::Alerts,
        Table::QueryAudit,
    ];

    /// The table's directory under the lake root, and its name in SQL.
    pub fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Quarantine => "quarantine",
            Table::Alerts => "alerts",
            Table::QueryAudit => "query_audit",
        }
    }

    /// Parquet tables are in the lake's log; NDJSON ones are not.
    pub fn is_parquet(self) -> bool {
        matches!(self, Table::Events | Table::Quarantine)
    }

    /// Whether rows belong to tenants (and tenant overrides and holds apply).
    pub fn has_tenants(self) -> bool {
        self != Table::QueryAudit
    }

    fn extension(self) -> &'static str {
        if self.is_parquet() {
            "parquet"
        } else {
            "ndjson"
        }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A partition: an hour of events, a day of the other tables.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition {
    pub table: Table,
    /// Relative to the lake root: `events/dt=2026-01-31/hour=09`.
    pub dir: String,
    /// The first instant the partition holds.
    pub start: DateTime<Utc>,
    /// The end of the partition (exclusive).
    pub end: DateTime<Utc>,
}

impl Partition {
    /// Parses a partition directory of `table`; `None` for anything else.
    pub fn parse(table: Table, dir: &str) -> Option<Partition> {
        let rest = dir.strip_prefix(table.name())?.strip_prefix('/')?;
        let mut parts = rest.split('/');
        let date = parts.next()?.strip_prefix("dt=")?;
        let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
        let day = date.and_time(chrono::NaiveTime::MIN).and_utc();
        let (start, end) = if table == Table::Events {
            let hour: u32 = parts.next()?.strip_prefix("hour=")?.parse().ok()?;
            if hour > 23 {
                return None;
            }
            let start = day + chrono::Duration::hours(i64::from(hour));
            (start, start + chrono::Duration::hours(1))
        } else {
            (day, day + chrono::Duration::days(1))
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Partition {
            table,
            dir: dir.to_owned(),
            start,
            end,
        })
    }

    /// The partition's directory without the table: `dt=2026-01-31/hour=09`.
    pub fn key(&self) -> &str {
        self.dir
            .strip_prefix(self.table.name())
            .and_then(|d| d.strip_prefix('/'))
            .unwrap_or(&self.dir)
    }
}

impl fmt::Display for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.table, self.key())
    }
}

/// Times in retention's output: RFC 3339, UTC, to the second.
pub fn format_time(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}
