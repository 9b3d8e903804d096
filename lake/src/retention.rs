//! Retention and legal hold on the lake's Delta tables: taking out what is
//! past retention, keeping what is on hold, each change one Delta version.
//!
//! - [`config::RetentionConfig`] (`[retention]`): a retention per table
//!   (`events`, `quarantine`, `alerts`, `query_audit`), per-tenant overrides,
//!   and legal holds set in configuration.
//! - [`holds`]: [`LegalHold`] and the [`HoldStore`] of holds set through the
//!   admin API, one object per hold under `<lake>/_tooltrail/legal_holds/`.
//! - [`scan`]: lists, from each table's snapshot, the partitions old enough
//!   to matter and which tenants have rows in each file (the Parquet footer's
//!   `tenant_id` statistics, else the `tenant_id` column; quarantine: the raw
//!   bytes' `tenant_id`).
//! - [`plan()`]: the pure decision, from the listing, the configuration, the
//!   holds and `now`: whole partitions to take out, partitions to rewrite
//!   without some tenants' rows, and what is kept and why.
//! - [`apply()`]: does it, one commit (`Operation::Retention`, `DELETE` in
//!   the table's history) per partition, re-reading the holds before each.
//!
//! Retention works on whichever tables it is given ([`RetainedTable`], by
//! [`TableKind`]: the `[retention]` key a table follows and where its rows
//! name their tenant); [`TABLES`] is the lake's list.
//!
//! Invariants:
//! - Retention never deletes a file from storage. It commits `remove`
//!   actions (and, for a rewrite, the `add` of the rewritten file, in the
//!   same commit, so readers see the partition before or after, never half);
//!   readers of older versions keep reading the removed files, and
//!   [`vacuum`](crate::vacuum) deletes them once the grace period has passed.
//! - A row is never taken out before its retention has passed for its
//!   tenant (the whole partition must have ended longer ago), nor while a
//!   hold covers it: the holds are re-read just before each commit. There is
//!   no lock between the hold store and the tables, so a hold whose write
//!   lands in the instant between that re-read and the commit is missed for
//!   that partition; the run re-reads the holds after each commit and logs
//!   any such hold at ERROR (the files are still in storage until vacuum:
//!   the data can be restored from the previous version).
//! - Files removed by another writer since planning (compaction, another
//!   retention run) make that partition wait for the next run
//!   ([`crate::Error::FileGone`]); the run goes on with the others. Several
//!   retention runs may therefore work on one lake at once.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tooltrail_lake::retention::Error> {
//! use tooltrail_lake::Location;
//! use tooltrail_lake::retention::{Retention, RetentionConfig, TABLES};
//! let lake = Location::parse("lake")?;
//! let mut retention = Retention::new(&lake, &RetentionConfig::default(), TABLES)?;
//! let plan = retention.plan(chrono::Utc::now()).await?;
//! let summary = retention.apply(&plan, &|| false).await?;
//! println!("{} partitions deleted", summary.deleted.len());
//! # Ok(()) }
//! ```

pub mod apply;
pub mod config;
pub mod error;
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

use crate::table::{FileEntry, TableSpec};
use crate::tables;

pub use apply::{Done, Retention, RetentionSummary, Skipped};
pub use config::{LegalHoldConfig, RetentionConfig, TenantRetention};
pub use error::Error;
pub use holds::{HoldSource, HoldStore, LegalHold, NewHold};
pub use periodic::Periodic;
pub use plan::{Deletion, Kept, KeptReason, RetentionPlan, Rewrite, plan};

/// The tables retention applies to in this lake: all of them.
pub static TABLES: &[&TableSpec] = tables::ALL;

/// Which `[retention]` key a table follows, and so where its rows name
/// their tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TableKind {
    /// `events`, partitioned by the hour of the event; `tenant_id` column.
    Events,
    /// `quarantine`, by the day received; the tenant is read from the raw
    /// bytes when they are JSON with a string `tenant_id`.
    Quarantine,
    /// `alerts`, by the day of the alert; `tenant_id` column.
    Alerts,
    /// `alert_triage`, by the day of the change; `tenant_id` column. Kept as
    /// long as `alerts` (`retention.alerts` and its tenant overrides).
    AlertTriage,
    /// `query_audit`, by day; its rows belong to principals, not tenants:
    /// table-level retention only, and tenant holds do not apply.
    QueryAudit,
}

/// Where a table's rows name their tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tenancy {
    /// A string column.
    Column(&'static str),
    /// A binary column of raw input: its JSON `tenant_id`, when it has one.
    RawJson(&'static str),
    /// Rows belong to no tenant.
    None,
}

impl TableKind {
    pub const ALL: [TableKind; 5] = [
        TableKind::Events,
        TableKind::Quarantine,
        TableKind::Alerts,
        TableKind::AlertTriage,
        TableKind::QueryAudit,
    ];

    /// The `[retention]` key, and the table's name in the lake and in SQL.
    pub fn name(self) -> &'static str {
        match self {
            TableKind::Events => "events",
            TableKind::Quarantine => "quarantine",
            TableKind::Alerts => "alerts",
            TableKind::AlertTriage => "alert_triage",
            TableKind::QueryAudit => "query_audit",
        }
    }

    /// The kind of the table named `name`.
    pub fn of_name(name: &str) -> Option<TableKind> {
        TableKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Whether rows belong to tenants (and tenant overrides and holds apply).
    pub fn has_tenants(self) -> bool {
        self != TableKind::QueryAudit
    }

    pub(crate) fn tenancy(self) -> Tenancy {
        match self {
            TableKind::Events | TableKind::Alerts | TableKind::AlertTriage => {
                Tenancy::Column("tenant_id")
            }
            TableKind::Quarantine => Tenancy::RawJson("raw"),
            TableKind::QueryAudit => Tenancy::None,
        }
    }
}

impl fmt::Display for TableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A table retention works on: its spec and the retention it follows.
#[derive(Debug, Clone, Copy)]
pub struct RetainedTable {
    pub spec: &'static TableSpec,
    pub kind: TableKind,
}

impl RetainedTable {
    /// The table of `spec`, its kind found by its name; an error names a
    /// table `[retention]` has no setting for.
    pub fn new(spec: &'static TableSpec) -> Result<RetainedTable, Error> {
        let kind = TableKind::of_name(spec.name).ok_or_else(|| Error::UnknownTable {
            name: spec.name.to_owned(),
        })?;
        Ok(RetainedTable { spec, kind })
    }
}

/// A partition of a table: an hour (`dt`, `hour`) or a day (`dt`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Partition {
    pub table: TableKind,
    /// Relative to the lake root: `events/dt=2026-01-31/hour=09`.
    pub dir: String,
    /// The first instant the partition holds.
    pub start: DateTime<Utc>,
    /// The end of the partition (exclusive).
    pub end: DateTime<Utc>,
    /// The partition values, for writing into it.
    pub values: crate::table::Partition,
}

impl Partition {
    /// The partition of `file` in the table `spec`; `None` when its values
    /// are not a date (and an hour, for a table partitioned by hour).
    pub fn of(table: TableKind, spec: &TableSpec, file: &FileEntry) -> Option<Partition> {
        let value = |name: &str| {
            file.partition
                .iter()
                .find(|(k, _)| k == name)
                .and_then(|(_, v)| v.as_deref())
        };
        let date = NaiveDate::parse_from_str(value("dt")?, "%Y-%m-%d").ok()?;
        let day = date.and_time(chrono::NaiveTime::MIN).and_utc();
        let (start, end) = if spec.partitions.contains(&"hour") {
            let hour: u32 = value("hour")?.parse().ok()?;
            if hour > 23 {
                return None;
            }
            let start = day + chrono::Duration::hours(i64::from(hour));
            (start, start + chrono::Duration::hours(1))
        } else {
            (day, day + chrono::Duration::days(1))
        };
        let values = crate::table::Partition::of(spec, file);
        let key: Vec<String> = spec
            .partitions
            .iter()
            .zip(values.values())
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        Some(Partition {
            table,
            dir: format!("{}/{}", spec.name, key.join("/")),
            start,
            end,
            values,
        })
    }

    /// The partition's directory without the table: `dt=2026-01-31/hour=09`.
    pub fn key(&self) -> &str {
        self.dir
            .split_once('/')
            .map(|(_, key)| key)
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
