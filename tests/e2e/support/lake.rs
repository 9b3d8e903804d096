//! Reading a lake the way an outside reader would: every `*.parquet` file under a directory.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use arrow::array::{Array, StringArray};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

/// Every visible Parquet file below `dir` (hidden staging files excluded), sorted.
pub fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Rows in all Parquet files below `dir`.
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
    let mut ids = Vec::new();
    for file in parquet_files(&lake.join("events"))? {
        let builder = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file)?)?;
        let idx = builder
            .schema()
            .index_of("event_id")
            .with_context(|| format!("{} has no event_id", file.display()))?;
        let mask = ProjectionMask::roots(builder.parquet_schema(), [idx]);
        for batch in builder.with_projection(mask).build()? {
            let batch = batch?;
            let column = batch
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .context("event_id is a string")?;
            ids.extend(column.iter().flatten().map(str::to_owned));
            debug_assert_eq!(column.null_count(), 0);
        }
    }
    Ok(ids)
}
