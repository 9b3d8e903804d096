//! The decision, with no IO: from a [`Listing`], the configuration, the
//! legal holds and `now`, which partitions are deleted whole, which are
//! rewritten without some tenants' rows, and what is kept and why.
//!
//! A tenant's rows in a partition are due when the partition ended at least
//! the tenant's retention for the table before `now` and no hold covers
//! them. A partition whose rows are all due is deleted; one where only some
//! tenants' rows are due is rewritten: files holding only due rows are
//! dropped, files mixing due and kept rows are rewritten, the rest stay.
//! The query audit's rows belong to no tenant: holds do not apply to it.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::retention::config::{RetentionConfig, duration};
use crate::retention::holds::LegalHold;
use crate::retention::scan::{FileListing, Listing};
use crate::retention::{Partition, TableKind, format_time};

/// A file an action touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRef {
    /// Relative to the table's root, as the table's log names it.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
}

/// A partition deleted whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub partition: Partition,
    pub files: Vec<FileRef>,
    /// Rows per tenant (`None`: no or unknown tenant).
    pub tenants: Vec<(Option<String>, u64)>,
    pub rows: u64,
    pub bytes: u64,
}

/// A partition rewritten without the rows of some tenants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub partition: Partition,
    /// The tenants whose rows go, with their row counts.
    pub removed: Vec<(Option<String>, u64)>,
    /// Files holding only rows that go.
    pub drop: Vec<FileRef>,
    /// Files holding rows that go and rows that stay.
    pub rewrite: Vec<FileRef>,
    /// Rows that stay in the partition.
    pub rows_kept: u64,
}

impl Rewrite {
    pub fn rows_removed(&self) -> u64 {
        self.removed.iter().map(|(_, n)| n).sum()
    }
}

/// Why rows past some retention were kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeptReason {
    /// Covered by these holds.
    Hold(Vec<LegalHold>),
    /// The tenant's retention for the table has not passed.
    WithinRetention {
        retention: Duration,
        until: DateTime<Utc>,
    },
}

impl fmt::Display for KeptReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeptReason::Hold(holds) => {
                let all: Vec<String> = holds.iter().map(LegalHold::describe).collect();
                f.write_str(&all.join("; "))
            }
            KeptReason::WithinRetention { retention, until } => write!(
                f,
                "within retention ({}, until {})",
                duration::format(*retention),
                format_time(until)
            ),
        }
    }
}

/// A tenant's rows kept in a partition that retention looked into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kept {
    pub partition: Partition,
    pub tenant: Option<String>,
    pub rows: u64,
    pub reason: KeptReason,
}

/// What retention will do, as of `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionPlan {
    pub now: DateTime<Utc>,
    pub deletions: Vec<Deletion>,
    pub rewrites: Vec<Rewrite>,
    pub kept: Vec<Kept>,
    /// Per table, partitions within every retention, not looked into.
    pub young: BTreeMap<TableKind, usize>,
}

impl RetentionPlan {
    pub fn is_empty(&self) -> bool {
        self.deletions.is_empty() && self.rewrites.is_empty()
    }
}

/// Whether retention needs to look into `partition`: it ended at least the
/// shortest retention of its table ago.
pub fn inspect(partition: &Partition, config: &RetentionConfig, now: DateTime<Utc>) -> bool {
    let (shortest, _) = config.bounds(partition.table);
    past(partition, shortest, now)
}

fn past(partition: &Partition, retention: Duration, now: DateTime<Utc>) -> bool {
    chrono::Duration::from_std(retention)
        .ok()
        .and_then(|r| partition.end.checked_add_signed(r))
        .is_some_and(|due| due <= now)
}

/// The holds that keep `tenant`'s rows in `partition`, by id.
pub fn holds_covering<'a>(
    holds: &'a [LegalHold],
    partition: &Partition,
    tenant: Option<&str>,
) -> Vec<&'a LegalHold> {
    if !partition.table.has_tenants() {
        return Vec::new();
    }
    let mut covering: Vec<&LegalHold> = holds
        .iter()
        .filter(|h| h.covers(tenant, partition.start, partition.end))
        .collect();
    covering.sort_by(|a, b| a.id.cmp(&b.id));
    covering
}

/// Decides, for every partition of `listing`.
pub fn plan(
    listing: &Listing,
    config: &RetentionConfig,
    holds: &[LegalHold],
    now: DateTime<Utc>,
) -> RetentionPlan {
    let mut out = RetentionPlan {
        now,
        deletions: Vec::new(),
        rewrites: Vec::new(),
        kept: Vec::new(),
        young: listing.young.clone(),
    };
    for p in &listing.partitions {
        let partition = &p.partition;
        let mut rows: BTreeMap<Option<String>, u64> = BTreeMap::new();
        for file in &p.files {
            for (tenant, n) in &file.tenants {
                *rows.entry(tenant.clone()).or_default() += n;
            }
        }
        // Which tenants' rows go; the others are kept, with the reason.
        let mut due: BTreeMap<Option<String>, u64> = BTreeMap::new();
        for (tenant, n) in &rows {
            match keep_reason(config, holds, partition, tenant.as_deref(), now) {
                None => {
                    due.insert(tenant.clone(), *n);
                }
                Some(reason) => out.kept.push(Kept {
                    partition: partition.clone(),
                    tenant: tenant.clone(),
                    rows: *n,
                    reason,
                }),
            }
        }
        let goes = |f: &FileListing| f.tenants.iter().all(|(t, _)| due.contains_key(t));
        let stays = |f: &FileListing| f.tenants.iter().all(|(t, _)| !due.contains_key(t));
        let file_ref = |f: &FileListing| FileRef {
            path: f.path.clone(),
            rows: f.rows,
            bytes: f.bytes,
        };
        if p.files.iter().all(goes) {
            if p.files.is_empty() {
                continue;
            }
            out.deletions.push(Deletion {
                partition: partition.clone(),
                files: p.files.iter().map(file_ref).collect(),
                tenants: due.into_iter().collect(),
                rows: p.files.iter().map(|f| f.rows).sum(),
                bytes: p.files.iter().map(|f| f.bytes).sum(),
            });
        } else if !due.is_empty() {
            let rows_removed: u64 = due.values().sum();
            out.rewrites.push(Rewrite {
                partition: partition.clone(),
                drop: p.files.iter().filter(|f| goes(f)).map(file_ref).collect(),
                rewrite: p
                    .files
                    .iter()
                    .filter(|f| !goes(f) && !stays(f))
                    .map(file_ref)
                    .collect(),
                rows_kept: rows.values().sum::<u64>() - rows_removed,
                removed: due.into_iter().collect(),
            });
        }
    }
    out
}

/// Why `tenant`'s rows in `partition` stay, or `None` when they are due.
pub fn keep_reason(
    config: &RetentionConfig,
    holds: &[LegalHold],
    partition: &Partition,
    tenant: Option<&str>,
    now: DateTime<Utc>,
) -> Option<KeptReason> {
    let retention = config.retention(partition.table, tenant);
    if !past(partition, retention, now) {
        let until = chrono::Duration::from_std(retention)
            .ok()
            .and_then(|r| partition.end.checked_add_signed(r))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        return Some(KeptReason::WithinRetention { retention, until });
    }
    let covering = holds_covering(holds, partition, tenant);
    if covering.is_empty() {
        None
    } else {
        Some(KeptReason::Hold(covering.into_iter().cloned().collect()))
    }
}
