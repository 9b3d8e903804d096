//! Vacuum: deleting data files no version within the grace period reads.
//!
//! Compaction and retention only remove files from the table (`remove`
//! actions); the files stay, so that readers of older versions (a long query,
//! an engine's time travel) keep working. Vacuum deletes them once their
//! removal is older than the grace period (default 7 days), and, in the same
//! pass, files no commit ever named that are as old (the debris of a writer
//! that died between writing and committing). The log itself is kept: it is
//! the audit trail the digest chain covers.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use deltalake::operations::vacuum::{Clock, VacuumMode};

use crate::error::{Error, Result};
use crate::location::Location;
use crate::metrics::Metrics;
use crate::table::{Snapshot, Table, TableSpec};

/// How long a file outlives its removal unless configured otherwise.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

/// What a vacuum run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VacuumSummary {
    /// Paths deleted, relative to the table's root.
    pub deleted: Vec<String>,
}

/// The time vacuum measures the grace period from.
#[derive(Debug)]
struct At(i64);

impl Clock for At {
    fn current_timestamp_millis(&self) -> i64 {
        self.0
    }
}

/// Deletes the files of `table` removed, or never committed, more than
/// `grace` before `now`.
pub async fn vacuum(
    table: &mut Table,
    grace: Duration,
    now: DateTime<Utc>,
) -> Result<VacuumSummary> {
    table.refresh().await?;
    let name = table.spec().name;
    let grace = chrono::Duration::from_std(grace).map_err(|_| Error::Location {
        location: name.to_owned(),
        problem: "the vacuum grace period is out of range".into(),
    })?;
    let (_, metrics) = table
        .snapshot()
        .await?
        .delta()
        .clone()
        .vacuum()
        .with_retention_period(grace)
        // The grace period is ours to choose; the table's default (7 days)
        // would refuse a shorter one.
        .with_enforce_retention_duration(false)
        .with_mode(VacuumMode::Full)
        .with_clock(Arc::new(At(now.timestamp_millis())))
        .await
        .map_err(|e| Error::delta(name, "vacuuming", e))?;
    table.refresh().await?;
    let mut deleted = metrics.files_deleted;
    deleted.sort();
    Ok(VacuumSummary { deleted })
}

/// [`vacuum`] of each of `tables` that exists in the lake at `location`:
/// the tables vacuumed, with what each deleted. A table no writer has
/// created is left alone (vacuum does not create it).
pub async fn vacuum_tables(
    location: &Location,
    tables: &[&'static TableSpec],
    grace: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<(&'static str, VacuumSummary)>> {
    let mut out = Vec::with_capacity(tables.len());
    for &spec in tables {
        if Snapshot::load(location, spec).await?.is_none() {
            continue;
        }
        // The zstd level is unused: vacuum writes no data.
        let mut table = Table::open(location, spec, 1, Metrics::default()).await?;
        out.push((spec.name, vacuum(&mut table, grace, now).await?));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use tooltrail_schemas::lake::{EventBatchBuilder, Source};

    use super::*;
    use crate::table::{Commit, Operation, Partition};
    use crate::tables::EVENTS;
    use crate::{Location, Metrics};

    fn batch() -> arrow::array::RecordBatch {
        let mut builder = EventBatchBuilder::new();
        let at = Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap();
        let event = crate::testing::event("e1", at, "u");
        builder.append(&event, at, Source::File { path: "f", line: 1 });
        builder.finish().unwrap()
    }

    #[tokio::test]
    async fn deletes_removed_and_orphaned_files_only_after_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::local(dir.path()).unwrap();
        let mut table = Table::open(&location, &EVENTS, 1, Metrics::default())
            .await
            .unwrap();
        let hour = Partition::hour(Utc.with_ymd_and_hms(2026, 11, 22, 9, 0, 0).unwrap());
        let kept = table
            .write(hour.clone(), batch(), Vec::new())
            .await
            .unwrap();
        let removed = table
            .write(hour.clone(), batch(), Vec::new())
            .await
            .unwrap();
        table
            .commit(&Commit::append(vec![kept.clone(), removed.clone()]))
            .await
            .unwrap();
        // A writer died after writing this one.
        let orphan = table.write(hour, batch(), Vec::new()).await.unwrap();
        let remove = table
            .snapshot()
            .await
            .unwrap()
            .remove(&removed.add.path)
            .unwrap()
            .unwrap();
        let retire = Commit::removing(Operation::Retention, vec![remove]);
        table.commit(&retire).await.unwrap();
        let exists = |path: &str| dir.path().join("events").join(path).exists();

        let grace = Duration::from_secs(3600);
        let soon = Utc::now() + chrono::Duration::minutes(30);
        let summary = vacuum(&mut table, grace, soon).await.unwrap();
        assert!(summary.deleted.is_empty(), "{summary:?}");
        assert!(exists(&removed.add.path) && exists(&orphan.add.path));

        let later = Utc::now() + chrono::Duration::hours(2);
        let summary = vacuum(&mut table, grace, later).await.unwrap();
        let mut expected = vec![removed.add.path.clone(), orphan.add.path.clone()];
        expected.sort();
        assert_eq!(summary.deleted, expected);
        assert!(exists(&kept.add.path));
        assert!(!exists(&removed.add.path) && !exists(&orphan.add.path));
        // The log is kept whole.
        assert!(
            dir.path()
                .join("events/_delta_log/00000000000000000000.json")
                .exists()
        );
    }
}
