//! Reading a lake the way an outside reader would: a table's live files are
//! those its Delta log (`_delta_log/<version>.json`) added and did not
//! remove, read here from the log's JSON with no lake code involved.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use arrow::array::StringArray;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// The live data files of the Delta table at `dir`, sorted; none when no
/// writer has created it yet.
pub fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let log = dir.join("_delta_log");
    let Ok(entries) = std::fs::read_dir(&log) else {
        return Ok(Vec::new());
    };
    let mut commits: Vec<PathBuf> = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    commits.retain(|p| {
        p.extension().is_some_and(|e| e == "json")
            && p.file_stem()
                .is_some_and(|s| s.to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
    });
    commits.sort();
    let mut live = BTreeSet::new();
    for commit in commits {
        let text = std::fs::read_to_string(&commit)?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let action: serde_json::Value = serde_json::from_str(line)
                .with_context(|| format!("{} holds a line that is not JSON", commit.display()))?;
            if let Some(path) = action["add"]["path"].as_str() {
                live.insert(path.to_owned());
            } else if let Some(path) = action["remove"]["path"].as_str() {
                live.remove(path);
            }
        }
    }
    Ok(live.into_iter().map(|p| dir.join(p)).collect())
}

/// Rows in the live files of the table at `dir`.
pub fn lake_rows(dir: &Path) -> Result<usize> {
    let mut rows = 0;
    for file in parquet_files(dir)? {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file)?)?;
        rows += reader.metadata().file_metadata().num_rows() as usize;
    }
    Ok(rows)
}

/// The `event_id` of every row in `<lake>/events`.
pub fn read_event_ids(lake: &Path) -> Result<Vec<String>> {
    string_column(&lake.join("events"), "event_id")
}

/// Every version of every alert in `<lake>/alerts` (the detector's records,
/// as published, from the table's `record` column).
pub fn alert_records(lake: &Path) -> Result<Vec<serde_json::Value>> {
    string_column(&lake.join("alerts"), "record")?
        .iter()
        .map(|record| {
            serde_json::from_str(record).with_context(|| format!("an alert record: {record}"))
        })
        .collect()
}

/// The non-null values of the string `column` in the live files of the
/// table at `dir`.
fn string_column(dir: &Path, column: &str) -> Result<Vec<String>> {
    let mut values = Vec::new();
    for file in parquet_files(dir)? {
        let builder = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file)?)?;
        let idx = builder
            .schema()
            .index_of(column)
            .with_context(|| format!("{} has no {column}", file.display()))?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), [idx]);
        for batch in builder.with_projection(mask).build()? {
            let batch = batch?;
            let strings = batch
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .with_context(|| format!("{column} is a string"))?;
            values.extend(strings.iter().flatten().map(str::to_owned));
        }
    }
    Ok(values)
}
