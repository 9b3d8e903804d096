//! Rewriting one file without the rows of some tenants: Parquet through the
//! lake's writer (sort order, settings, metadata and the log's record stay
//! right), NDJSON line by line.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use ::parquet::file::metadata::KeyValue;
use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tooltrail_schemas::SCHEMA_VERSION;

use crate::error::{Error, Result};
use crate::lake::log::{FileRecord, write_synced};
use crate::lake::{parquet, time_range};
use crate::retention::Table;
use crate::retention::scan::{ndjson_lines, tenant_of_raw};

/// The tenants whose rows go (`None`: rows with no readable tenant).
pub(crate) type Removed = BTreeSet<Option<String>>;

/// Where a rewritten file goes.
pub(crate) struct Target<'a> {
    /// Its path relative to the lake root (what the log records).
    pub rel: &'a str,
    /// Where to write it now (a staged name or directory).
    pub write_to: &'a Path,
    pub txn_id: &'a str,
}

/// Rewrites the Parquet file `source` (relative path `source_rel`) of
/// `table` without the rows of `removed`.
pub(crate) fn parquet_without(
    table: Table,
    source: &Path,
    source_rel: &str,
    removed: &Removed,
    target: &Target<'_>,
    zstd_level: i32,
) -> Result<FileRecord> {
    let wrap = |source_err| Error::ReadParquet {
        path: source.to_owned(),
        source: source_err,
    };
    let file = fs::File::open(source).map_err(|e| Error::io(source, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(wrap)?;
    let schema = builder.schema().clone();
    // Provenance carries over: the schema version and Kafka positions of
    // the original; the transaction is this one.
    let mut metadata = vec![
        KeyValue::new(
            "tooltrail.schema_version".into(),
            SCHEMA_VERSION.to_string(),
        ),
        KeyValue::new("tooltrail.txn_id".into(), target.txn_id.to_owned()),
        KeyValue::new("tooltrail.rewritten_from".into(), source_rel.to_owned()),
    ];
    if let Some(kv) = builder.metadata().file_metadata().key_value_metadata() {
        metadata.extend(
            kv.iter()
                .filter(|e| e.key == "tooltrail.positions")
                .cloned(),
        );
    }
    let mut kept = Vec::new();
    for batch in builder.build().map_err(wrap)? {
        let batch = batch?;
        let keep = keep_mask(table, &batch, removed);
        kept.push(arrow::compute::filter_record_batch(&batch, &keep)?);
    }
    let merged = arrow::compute::concat_batches(&schema, &kept)?;
    let sorted = parquet::sort_for_lake(&merged)?;
    let props = parquet::writer_properties(&sorted, zstd_level, metadata);
    let written = parquet::write_file(target.write_to, &sorted, props)?;
    let (min_time, max_time) = time_range(&sorted);
    Ok(FileRecord {
        path: target.rel.to_owned(),
        table: table.name().to_owned(),
        rows: sorted.num_rows() as u64,
        bytes: written.bytes,
        sha256: written.sha256,
        min_time,
        max_time,
    })
}

fn keep_mask(table: Table, batch: &RecordBatch, removed: &Removed) -> BooleanArray {
    let column = |name| batch.column_by_name(name);
    match table {
        Table::Events => {
            let Some(tenants) = column("tenant_id").and_then(|c| c.as_string_opt::<i32>()) else {
                return BooleanArray::from(vec![true; batch.num_rows()]);
            };
            (0..tenants.len())
                .map(|i| {
                    let tenant = (!tenants.is_null(i)).then(|| tenants.value(i).to_owned());
                    Some(!removed.contains(&tenant))
                })
                .collect()
        }
        _ => {
            let Some(raw) = column("raw").and_then(|c| c.as_binary_opt::<i32>()) else {
                return BooleanArray::from(vec![true; batch.num_rows()]);
            };
            (0..raw.len())
                .map(|i| {
                    let tenant = (!raw.is_null(i))
                        .then(|| tenant_of_raw(raw.value(i)))
                        .flatten();
                    Some(!removed.contains(&tenant))
                })
                .collect()
        }
    }
}

/// Rewrites the alerts file `source` without the lines of `removed`,
/// fsynced at `target.write_to`.
pub(crate) fn ndjson_without(
    table: Table,
    source: &Path,
    removed: &Removed,
    target: &Target<'_>,
) -> Result<FileRecord> {
    let text = fs::read(source).map_err(|e| Error::io(source, e))?;
    let mut out = Vec::with_capacity(text.len());
    let mut rows = 0;
    let (mut min_time, mut max_time): (Option<DateTime<Utc>>, Option<DateTime<Utc>>) = (None, None);
    for line in ndjson_lines(&text) {
        if removed.contains(&tenant_of_raw(line)) {
            continue;
        }
        out.extend_from_slice(line);
        out.push(b'\n');
        rows += 1;
        if let Some(t) = time_of(line) {
            min_time = Some(min_time.map_or(t, |m| m.min(t)));
            max_time = Some(max_time.map_or(t, |m| m.max(t)));
        }
    }
    write_synced(target.write_to, &out)?;
    Ok(FileRecord {
        path: target.rel.to_owned(),
        table: table.name().to_owned(),
        rows,
        bytes: out.len() as u64,
        sha256: hex::encode(Sha256::digest(&out)),
        min_time,
        max_time,
    })
}

fn time_of(line: &[u8]) -> Option<DateTime<Utc>> {
    #[derive(serde::Deserialize)]
    struct Time<'a> {
        #[serde(borrow, default)]
        time: Option<&'a str>,
    }
    let parsed: Time<'_> = serde_json::from_slice(line).ok()?;
    DateTime::parse_from_rfc3339(parsed.time?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
