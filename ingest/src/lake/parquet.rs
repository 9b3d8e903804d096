//! Encoding one sorted batch into one Parquet file, with the writer settings
//! the lake promises: zstd, dictionaries only where they pay, bloom filters on
//! the lookup columns, page-level statistics and the page index, the sort
//! order and the source positions in the footer.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::{SortColumn, lexsort_to_indices, take_record_batch};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Columns whose values are (nearly) unique per row: a dictionary only costs.
const NO_DICTIONARY: &[&str] = &[
    "event_id",
    "time",
    "arguments",
    "latency_ms",
    "trace_id",
    "extra",
    "received_at",
    "source_offset",
    "raw",
    "error",
];

/// Columns investigators look up by value: bloom filters let readers skip
/// row groups that cannot hold the value.
const BLOOM: &[&str] = &["user_id", "session_id", "resource", "event_id"];

/// Sorts by (`tenant_id`, `user_id`, `time`) when the batch has those columns.
pub fn sort_for_lake(batch: &RecordBatch) -> Result<RecordBatch> {
    let keys = ["tenant_id", "user_id", "time"];
    let columns: Option<Vec<SortColumn>> = keys
        .iter()
        .map(|k| {
            batch.column_by_name(k).map(|c| SortColumn {
                values: c.clone(),
                options: None,
            })
        })
        .collect();
    let Some(columns) = columns else {
        return Ok(batch.clone());
    };
    let indices = lexsort_to_indices(&columns, None)?;
    Ok(take_record_batch(batch, &indices)?)
}

/// Writer settings for one file of `rows` rows.
pub fn writer_properties(
    batch: &RecordBatch,
    zstd_level: i32,
    metadata: Vec<KeyValue>,
) -> WriterProperties {
    let level = ZstdLevel::try_new(zstd_level).unwrap_or_default();
    let schema = batch.schema();
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(1 << 20))
        .set_key_value_metadata(Some(metadata));
    for name in NO_DICTIONARY {
        if schema.column_with_name(name).is_some() {
            builder = builder.set_column_dictionary_enabled(ColumnPath::from(*name), false);
        }
    }
    let ndv = (batch.num_rows() as u64).max(1);
    for name in BLOOM {
        if schema.column_with_name(name).is_some() {
            let col = ColumnPath::from(*name);
            builder = builder
                .set_column_bloom_filter_enabled(col.clone(), true)
                .set_column_bloom_filter_max_ndv(col.clone(), ndv)
                .set_column_bloom_filter_fpp(col, 0.01);
        }
    }
    let sorting: Vec<SortingColumn> = ["tenant_id", "user_id", "time"]
        .iter()
        .filter_map(|k| schema.index_of(k).ok())
        .map(|idx| SortingColumn {
            column_idx: idx as i32,
            descending: false,
            nulls_first: false,
        })
        .collect();
    if sorting.len() == 3 {
        builder = builder.set_sorting_columns(Some(sorting));
    }
    builder.build()
}

/// What was written: size and SHA-256 of the bytes on disk.
#[derive(Debug, Clone)]
pub struct Written {
    pub bytes: u64,
    pub sha256: String,
}

/// Hashes everything written through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Writes `batch` to `path` as Parquet and fsyncs it.
pub fn write_file(path: &Path, batch: &RecordBatch, props: WriterProperties) -> Result<Written> {
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let sink = HashingWriter {
        inner: BufWriter::with_capacity(1 << 20, file),
        hasher: Sha256::new(),
        bytes: 0,
    };
    let wrap = |source| Error::WriteParquet {
        path: path.to_owned(),
        source,
    };
    let mut writer =
        ArrowWriter::try_new(sink, Arc::clone(&batch.schema()), Some(props)).map_err(wrap)?;
    writer.write(batch).map_err(wrap)?;
    let sink = writer.into_inner().map_err(wrap)?;
    let HashingWriter {
        inner,
        hasher,
        bytes,
    } = sink;
    let file = inner
        .into_inner()
        .map_err(|e| Error::io(path, e.into_error()))?;
    file.sync_all().map_err(|e| Error::io(path, e))?;
    Ok(Written {
        bytes,
        sha256: hex::encode(hasher.finalize()),
    })
}
