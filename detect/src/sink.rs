//! Alerts in the lake: the Delta table [`tables::ALERTS`], one row per
//! alert version, partitioned by the UTC day (`dt`) of the alert's event
//! time.
//!
//! Each [`AlertLake::write`] is one commit: its alerts are all in the table
//! or none is, whichever days they fall on. A writer killed before its
//! commit leaves only unreferenced data files, which the lake's vacuum
//! removes; readers never see them. A later row with the same `alert_id` and
//! a higher `repeats` is an update of the first (see the alert record's
//! docs); readers that want one row per alert take the highest `repeats` per
//! `alert_id`. The whole record as published is in the `record` column
//! (`evidence.details` has no column of its own).

use std::collections::{BTreeMap, HashMap};

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use tooltrail_lake::{Commit, Committed, Location, Metrics, Partition, Snapshot, Table, tables};
use tooltrail_schemas::lake::{AlertBatchBuilder, AlertRow};

use crate::alert::Alert;

/// zstd level of alert files: a few rows each, so fast.
const ZSTD_LEVEL: i32 = 3;

/// Writes alert versions to the lake's `alerts` table.
pub struct AlertLake {
    location: Location,
    table: Table,
}

impl AlertLake {
    /// Opens the `alerts` table of the lake at `location`, creating it if no
    /// detector has written one yet.
    pub async fn open(location: &Location, metrics: Metrics) -> tooltrail_lake::Result<Self> {
        let table = Table::open(location, &tables::ALERTS, ZSTD_LEVEL, metrics).await?;
        Ok(AlertLake {
            location: location.clone(),
            table,
        })
    }

    /// The lake the table is in, for messages.
    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Each alert id the lake holds, with the highest `repeats` written for
    /// it: what a restarted detector must not write again. Reads the
    /// table's latest version (other detectors' commits included).
    pub async fn written(&self) -> tooltrail_lake::Result<HashMap<String, u32>> {
        let mut ids = HashMap::new();
        let Some(snapshot) = Snapshot::load(&self.location, &tables::ALERTS).await? else {
            return Ok(ids);
        };
        for file in snapshot.files()? {
            let batches = snapshot
                .read_file(&file.path, Some(&["alert_id", "repeats"]))
                .await?;
            for batch in batches {
                let corrupt = |message: &str| tooltrail_lake::Error::CorruptFile {
                    path: format!("{}/{}", tables::ALERTS.name, file.path),
                    message: message.to_owned(),
                };
                let alert_ids = batch
                    .column_by_name("alert_id")
                    .and_then(|c| c.as_string_opt::<i32>())
                    .ok_or_else(|| corrupt("no text column alert_id"))?;
                let repeats = batch
                    .column_by_name("repeats")
                    .and_then(|c| c.as_primitive_opt::<Int64Type>())
                    .ok_or_else(|| corrupt("no integer column repeats"))?;
                for row in 0..batch.num_rows() {
                    if alert_ids.is_null(row) {
                        return Err(corrupt("a row without an alert_id"));
                    }
                    let count = if repeats.is_null(row) {
                        0
                    } else {
                        u32::try_from(repeats.value(row).max(0)).unwrap_or(u32::MAX)
                    };
                    let known = ids.entry(alert_ids.value(row).to_owned()).or_insert(count);
                    *known = (*known).max(count);
                }
            }
        }
        Ok(ids)
    }

    /// Writes `alerts` durably as one commit, one file per day they fall on.
    pub async fn write(&mut self, alerts: &[Alert]) -> tooltrail_lake::Result<Committed> {
        if alerts.is_empty() {
            return Ok(Committed {
                version: self.table.version(),
                conflicts: 0,
            });
        }
        let mut by_day: BTreeMap<chrono::NaiveDate, Vec<&Alert>> = BTreeMap::new();
        for alert in alerts {
            by_day
                .entry(alert.time.date_naive())
                .or_default()
                .push(alert);
        }
        let mut files = Vec::with_capacity(by_day.len());
        for (day, alerts) in by_day {
            let mut builder = AlertBatchBuilder::new();
            for alert in alerts {
                let record = alert.to_json();
                builder.append(&row(alert, &record));
            }
            let batch = builder.finish()?;
            files.push(
                self.table
                    .write(Partition::day(day), batch, Vec::new())
                    .await?,
            );
        }
        self.table.commit(&Commit::append(files)).await
    }
}

/// `alert` as a row of the table; `record` is its JSON.
pub(crate) fn row<'a>(alert: &'a Alert, record: &'a str) -> AlertRow<'a> {
    AlertRow {
        alert_version: i16::from(alert.alert_version),
        alert_id: &alert.alert_id,
        time: alert.time,
        tenant_id: &alert.tenant_id,
        user_id: &alert.user_id,
        detector: alert.detector.as_str(),
        severity: alert.severity.as_str(),
        score: i16::from(alert.score),
        title: &alert.title,
        explanation: &alert.explanation,
        observed: alert.evidence.observed,
        expected: alert.evidence.expected,
        p_value: alert.evidence.p_value,
        new_values: &alert.evidence.new_values,
        event_ids: &alert.evidence.event_ids,
        window_start: alert.window_start,
        window_end: alert.window_end,
        repeats: i64::from(alert.repeats),
        record,
    }
}

#[cfg(test)]
mod tests;
