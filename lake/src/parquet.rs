//! Encoding one sorted batch into one Parquet file, with the writer settings
//! the lake promises: zstd, dictionaries only where they pay, bloom filters on
//! the lookup columns, page-level statistics and the page index, the sort
//! order and the source positions in the footer.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, ListArray, ListBuilder, RecordBatch, StringBuilder, UInt32Array,
};
use arrow::compute::take;
use arrow::datatypes::{DataType, TimestampMicrosecondType};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_writer::ArrowWriterOptions;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Columns whose values are (nearly) unique per row: a dictionary only costs.
/// (`arguments` repeats enough that a dictionary pays.)
const NO_DICTIONARY: &[&str] = &[
    "event_id",
    "time",
    "latency_ms",
    "trace_id",
    "extra",
    "received_at",
    "source_offset",
    "raw",
    "error",
];

/// Encodings for unique text: ids that share prefixes store each prefix once
/// (`DELTA_BYTE_ARRAY`); random hex keeps only its bytes, lengths delta-packed
/// (`DELTA_LENGTH_BYTE_ARRAY`). Both save about 10% over `PLAIN` + zstd.
/// Times sorted within each user are close together: delta-packed, they need
/// no compression on top.
const ENCODINGS: &[(&str, Encoding)] = &[
    ("event_id", Encoding::DELTA_BYTE_ARRAY),
    ("trace_id", Encoding::DELTA_LENGTH_BYTE_ARRAY),
    ("time", Encoding::DELTA_BINARY_PACKED),
];

/// Small, low-cardinality columns, stored uncompressed: their dictionary
/// indices take a few bytes per file, and a zstd context per column chunk
/// costs more time than it saves bytes.
const UNCOMPRESSED: &[&str] = &[
    "schema_version",
    "time",
    "tenant_id",
    "method",
    "decision",
    "status",
    "error_type",
    "jsonrpc_error_code",
    "policy_id",
    "client_id",
    "gateway_id",
    "principal_type",
    "source_kind",
    "source_name",
    "source_partition",
    "source_request_id",
];

/// Free text and random ids: min/max statistics prune nothing for them.
const NO_STATISTICS: &[&str] = &[
    "arguments",
    "reason",
    "user_agent",
    "trace_id",
    "extra",
    "raw",
    "error",
];

/// Min/max statistics (file and page index) keep at most this many bytes.
const STATISTICS_TRUNCATE: usize = 32;

/// Rows per data page (the writer's default is 20,000). The page index lets
/// a reader skip the pages outside a filter's range, and rows are sorted by
/// tenant and user, so a user's rows in an hour's file sit in one or two
/// pages of each column. Measured on 21M events (`scripts/bench_query.py`):
/// 4,096 made our queries 6-25% faster where they filter by tenant or user,
/// for 2.7% more bytes, and DuckDB no slower; 1,024 made DuckDB up to 1.8x
/// slower on whole scans and the files 6.8% larger.
pub const PAGE_ROWS: usize = 4096;

/// Columns investigators look up by value: bloom filters let readers skip
/// row groups that cannot hold the value.
const BLOOM: &[&str] = &["user_id", "session_id", "resource", "event_id"];

/// False-positive rate of the bloom filters. Filters are sized for the file's
/// rows, then folded to the smallest size that keeps this rate.
const BLOOM_FPP: f64 = 0.05;

/// Sorts by (`tenant_id`, `user_id`, `time`) when the batch has those columns.
///
/// Rather than comparing strings at every step of the sort, each row gets one
/// integer key: the rank of its (tenant, user) pair among the batch's distinct
/// pairs, then its time, then its position (so equal rows keep their order).
/// A batch that is already in order is returned as it is, without a copy.
/// (Ingest's batches are: `EventBatchBuilder` sorts; compaction's are not.)
pub fn sort_for_lake(batch: &RecordBatch) -> Result<RecordBatch> {
    let column = |name| batch.column_by_name(name);
    let (Some(tenants), Some(users), Some(times)) = (
        column("tenant_id").and_then(|c| c.as_string_opt::<i32>()),
        column("user_id").and_then(|c| c.as_string_opt::<i32>()),
        column("time").and_then(|c| c.as_primitive_opt::<TimestampMicrosecondType>()),
    ) else {
        return Ok(batch.clone());
    };
    let rows = batch.num_rows();
    let key = |row| (tenants.value(row), users.value(row), times.value(row));
    // Event batches come sorted from their builder: check, cheaply, first.
    if (1..rows).all(|row| key(row - 1) <= key(row)) {
        return Ok(batch.clone());
    }
    // Distinct (tenant, user) pairs, numbered in order of first appearance.
    let mut ids: HashMap<(&str, &str), u32> = HashMap::new();
    let mut pair_of_row = Vec::with_capacity(rows);
    for row in 0..rows {
        let pair = (tenants.value(row), users.value(row));
        let next = ids.len() as u32;
        pair_of_row.push(*ids.entry(pair).or_insert(next));
    }
    let mut pairs: Vec<((&str, &str), u32)> = ids.into_iter().collect();
    pairs.sort_unstable();
    let mut rank = vec![0u32; pairs.len()];
    for (r, (_, id)) in pairs.iter().enumerate() {
        rank[*id as usize] = r as u32;
    }
    // rank (32 bits) | time, order-preserving as unsigned (64) | row (32).
    let times = times.values();
    let mut keys: Vec<u128> = (0..rows)
        .map(|row| {
            let time = (times[row] as u64) ^ (1 << 63);
            (u128::from(rank[pair_of_row[row] as usize]) << 96)
                | (u128::from(time) << 32)
                | row as u128
        })
        .collect();
    keys.sort_unstable();
    let indices = UInt32Array::from_iter_values(keys.iter().map(|k| *k as u32));
    let columns = batch
        .columns()
        .iter()
        .map(|column| match column.as_list_opt::<i32>() {
            Some(list) if list.values().as_string_opt::<i32>().is_some() => {
                Ok(Arc::new(take_string_list(list, &indices)) as ArrayRef)
            }
            _ => take(column, &indices, None),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

/// `take` for a list of strings, row by row into a builder. (Arrow's generic
/// list `take` builds an index array over the child first; for short lists
/// such as `scopes` that cost more than every other column's `take` together.)
fn take_string_list(list: &ListArray, indices: &UInt32Array) -> ListArray {
    let strings = list.values().as_string::<i32>();
    let offsets = list.value_offsets();
    let item = match list.data_type() {
        DataType::List(item) => Arc::clone(item),
        _ => unreachable!("a ListArray has a List type"),
    };
    let rows = indices.len();
    let mut out = ListBuilder::with_capacity(
        StringBuilder::with_capacity(strings.len(), strings.value_data().len()),
        rows,
    )
    .with_field(item);
    for row in indices.values().iter().map(|&i| i as usize) {
        if list.is_null(row) {
            out.append(false);
            continue;
        }
        let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
        for value in start..end {
            out.values()
                .append_option(strings.is_valid(value).then(|| strings.value(value)));
        }
        out.append(true);
    }
    out.finish()
}

/// Writer settings for one file of `rows` rows.
pub fn writer_properties(
    batch: &RecordBatch,
    zstd_level: i32,
    metadata: Vec<KeyValue>,
) -> WriterProperties {
    let level = ZstdLevel::try_new(zstd_level).unwrap_or_default();
    let schema = batch.schema();
    let has = |name: &str| schema.column_with_name(name).is_some();
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_statistics_truncate_length(Some(STATISTICS_TRUNCATE))
        .set_column_index_truncate_length(Some(STATISTICS_TRUNCATE))
        .set_max_row_group_row_count(Some(1 << 20))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_key_value_metadata(Some(metadata));
    for name in NO_DICTIONARY.iter().filter(|n| has(n)) {
        builder = builder.set_column_dictionary_enabled(ColumnPath::from(*name), false);
    }
    for (name, encoding) in ENCODINGS.iter().filter(|(n, _)| has(n)) {
        builder = builder.set_column_encoding(ColumnPath::from(*name), *encoding);
    }
    for name in UNCOMPRESSED.iter().filter(|n| has(n)) {
        builder =
            builder.set_column_compression(ColumnPath::from(*name), Compression::UNCOMPRESSED);
    }
    for name in NO_STATISTICS.iter().filter(|n| has(n)) {
        builder =
            builder.set_column_statistics_enabled(ColumnPath::from(*name), EnabledStatistics::None);
    }
    let ndv = (batch.num_rows() as u64).max(1);
    for name in BLOOM.iter().filter(|n| has(n)) {
        let col = ColumnPath::from(*name);
        builder = builder
            .set_column_bloom_filter_enabled(col.clone(), true)
            .set_column_bloom_filter_max_ndv(col.clone(), ndv)
            .set_column_bloom_filter_fpp(col, BLOOM_FPP);
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

/// Encodes `batch` as Parquet into `sink`, hashing what is written.
fn encode_into<W: Write + Send>(
    sink: W,
    batch: &RecordBatch,
    props: WriterProperties,
) -> std::result::Result<(W, Written), parquet::errors::ParquetError> {
    let sink = HashingWriter {
        inner: sink,
        hasher: Sha256::new(),
        bytes: 0,
    };
    // No embedded Arrow schema: the Parquet schema maps back to the lake's
    // Arrow types as they are, and the copy cost 2.7 KiB in every file's
    // footer (about 1 byte per event in hourly files of a few thousand rows).
    let options = ArrowWriterOptions::new()
        .with_properties(props)
        .with_skip_arrow_metadata(true);
    let mut writer = ArrowWriter::try_new_with_options(sink, Arc::clone(&batch.schema()), options)?;
    writer.write(batch)?;
    let HashingWriter {
        inner,
        hasher,
        bytes,
    } = writer.into_inner()?;
    let written = Written {
        bytes,
        sha256: hex::encode(hasher.finalize()),
    };
    Ok((inner, written))
}

/// Encodes `batch` as Parquet in memory, for an object store. `path` only
/// names the file in errors.
pub fn encode(
    batch: &RecordBatch,
    props: WriterProperties,
    path: &str,
) -> Result<(Vec<u8>, Written)> {
    let capacity = batch.get_array_memory_size() / 4;
    encode_into(Vec::with_capacity(capacity), batch, props).map_err(|source| Error::WriteParquet {
        path: path.into(),
        source,
    })
}

/// Writes `batch` to `path` as Parquet and fsyncs it.
pub fn write_file(path: &Path, batch: &RecordBatch, props: WriterProperties) -> Result<Written> {
    let file = File::create(path).map_err(|e| Error::io(path, e))?;
    let (sink, written) = encode_into(BufWriter::with_capacity(64 << 10, file), batch, props)
        .map_err(|source| Error::WriteParquet {
            path: path.to_owned(),
            source,
        })?;
    let file = sink
        .into_inner()
        .map_err(|e| Error::io(path, e.into_error()))?;
    file.sync_all().map_err(|e| Error::io(path, e))?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use arrow::compute::{SortColumn, lexsort_to_indices, take_record_batch};
    use chrono::{DateTime, Utc};
    use tooltrail_schemas::lake::{EventBatchBuilder, Source};

    use super::*;

    fn line(n: u64) -> String {
        // A scrambled order over 3 tenants, 7 users and 50 times, with ties.
        let k = n.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let (tenant, user, second) = (k % 3, (k >> 8) % 7, (k >> 16) % 50);
        // Scopes absent, empty or several, so the list column is sorted too.
        let scopes = match n % 3 {
            0 => String::new(),
            1 => r#","scopes":[]"#.to_owned(),
            _ => format!(r#","scopes":["read","s{n}"]"#),
        };
        format!(
            r#"{{"schema_version":1,"event_id":"e{n}","time":"2026-11-22T10:00:{:02}.{n:06}Z","tenant_id":"t{tenant}","user_id":"u{user}","server":"s","method":"m","decision":"allow","status":200{scopes}}}"#,
            second % 60
        )
    }

    #[test]
    fn sorts_like_a_lexicographic_sort_on_tenant_user_time() {
        let mut builder = EventBatchBuilder::new();
        let at: DateTime<Utc> = DateTime::from_timestamp_micros(0).unwrap();
        for n in 0..500 {
            let event = tooltrail_schemas::decode(line(n).as_bytes()).unwrap();
            let source = Source::File {
                path: "f",
                line: n as i64,
            };
            builder.append(&event, at, source);
        }
        let batch = builder.finish().unwrap();
        let sorted = sort_for_lake(&batch).unwrap();
        let columns: Vec<SortColumn> = ["tenant_id", "user_id", "time"]
            .iter()
            .map(|k| SortColumn {
                values: batch.column_by_name(k).unwrap().clone(),
                options: None,
            })
            .collect();
        let expected =
            take_record_batch(&batch, &lexsort_to_indices(&columns, None).unwrap()).unwrap();
        assert_eq!(sorted, expected);
        // Sorting what is sorted changes nothing.
        assert_eq!(sort_for_lake(&sorted).unwrap(), sorted);
    }
    /// Readers that know nothing of tooltrail (DataFusion without our table
    /// definitions, pyarrow, any parquet-rs reader) get the lake's own Arrow
    /// types from the file alone, though no Arrow schema is embedded.
    #[test]
    fn lake_files_read_back_with_the_lake_schema_from_parquet_types_alone() {
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        use tooltrail_schemas::lake::{events_schema, quarantine_schema};

        let dir = tempfile::tempdir().unwrap();
        for (name, schema) in [
            ("events", events_schema()),
            ("quarantine", quarantine_schema()),
        ] {
            let batch = RecordBatch::new_empty(Arc::clone(&schema));
            let path = dir.path().join(format!("{name}.parquet"));
            let props = writer_properties(&batch, 1, Vec::new());
            write_file(&path, &batch, props).unwrap();
            let reader =
                ParquetRecordBatchReaderBuilder::try_new(File::open(&path).unwrap()).unwrap();
            assert_eq!(reader.schema().fields(), schema.fields(), "{name}");
            let metadata = reader.metadata().file_metadata().key_value_metadata();
            assert!(
                !metadata.is_some_and(|kv| kv.iter().any(|e| e.key == "ARROW:schema")),
                "{name}: the footer carries no Arrow schema"
            );
        }
    }
}
