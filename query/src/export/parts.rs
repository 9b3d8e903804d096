//! Part files: the export's rows, rolled into a new file every
//! `part_max_rows` rows, each written under a hidden temporary name, hashed
//! as it is written, fsynced and renamed into place. Nothing holds more than
//! a batch and, for Parquet, one row group in progress.
//!
//! Also the row counts a verifier compares with the manifest: the Parquet
//! footer, CSV records minus the header (quotes respected), NDJSON lines.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use sha2::{Digest, Sha256};

use super::manifest::Part;
use super::{ExportError, ExportFormat};
use crate::format::{csv_batch, csv_schema};

/// A Parquet row group is flushed once its encoded size passes this.
const ROW_GROUP_BYTES: usize = 32 << 20;
/// And at most this many rows.
const ROW_GROUP_ROWS: usize = 256 * 1024;

/// Writes the parts of one export into its directory.
pub struct PartWriter {
    dir: PathBuf,
    format: ExportFormat,
    max_rows: u64,
    schema: SchemaRef,
    open: Option<OpenPart>,
    done: Vec<Part>,
    rows: u64,
    /// Bytes written to every part, the open one included.
    bytes: Arc<AtomicU64>,
}

struct OpenPart {
    name: String,
    tmp: PathBuf,
    sink: Sink,
    rows: u64,
}

type Out = Hashing<BufWriter<File>>;

enum Sink {
    Parquet(Box<ArrowWriter<Out>>),
    Csv(Box<arrow::csv::Writer<Out>>),
    Ndjson(Box<arrow::json::LineDelimitedWriter<Out>>),
}

impl PartWriter {
    /// A writer for rows of `schema` (the query's) into `dir`, which exists.
    pub fn new(dir: &Path, format: ExportFormat, max_rows: u64, schema: &SchemaRef) -> PartWriter {
        let schema = match format {
            ExportFormat::Csv => csv_schema(schema),
            _ => Arc::clone(schema),
        };
        PartWriter {
            dir: dir.to_owned(),
            format,
            max_rows: max_rows.max(1),
            schema,
            open: None,
            done: Vec::new(),
            rows: 0,
            bytes: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes written to disk so far.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Parts closed so far.
    pub fn parts(&self) -> usize {
        self.done.len()
    }

    /// Appends a batch, closing parts as they fill.
    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), ExportError> {
        let batch = match self.format {
            ExportFormat::Csv => csv_batch(&self.schema, batch).map_err(self.arrow_error())?,
            _ => batch.clone(),
        };
        let mut offset = 0;
        while offset < batch.num_rows() {
            if self.open.is_none() {
                self.open = Some(self.open_part()?);
            }
            let part = self.open.as_mut().expect("opened above");
            let room = (self.max_rows - part.rows) as usize;
            let take = room.min(batch.num_rows() - offset);
            let slice = batch.slice(offset, take);
            part.sink
                .write(&slice)
                .map_err(|e| ExportError::Internal(format!("writing {}: {e}", part.name)))?;
            part.rows += take as u64;
            self.rows += take as u64;
            offset += take;
            if part.rows >= self.max_rows {
                self.close_part()?;
            }
        }
        Ok(())
    }

    /// Closes the last part; the parts in order.
    pub fn finish(mut self) -> Result<Vec<Part>, ExportError> {
        if self.open.is_some() {
            self.close_part()?;
        }
        Ok(std::mem::take(&mut self.done))
    }

    fn arrow_error(&self) -> impl FnOnce(ArrowError) -> ExportError {
        let index = self.done.len();
        move |e| ExportError::Internal(format!("encoding part {index}: {e}"))
    }

    fn open_part(&self) -> Result<OpenPart, ExportError> {
        let name = format!("part-{:05}.{}", self.done.len(), self.format.extension());
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let file = File::create(&tmp).map_err(ExportError::io(&tmp))?;
        let out = Hashing::new(
            BufWriter::with_capacity(1 << 20, file),
            Arc::clone(&self.bytes),
        );
        let sink = match self.format {
            ExportFormat::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                    .set_max_row_group_bytes(Some(ROW_GROUP_BYTES))
                    .build();
                let writer = ArrowWriter::try_new(out, Arc::clone(&self.schema), Some(props))
                    .map_err(|e| ExportError::Internal(format!("{}: {e}", tmp.display())))?;
                Sink::Parquet(Box::new(writer))
            }
            ExportFormat::Csv => Sink::Csv(Box::new(
                arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(out),
            )),
            ExportFormat::Ndjson | ExportFormat::Ocsf => {
                Sink::Ndjson(Box::new(arrow::json::LineDelimitedWriter::new(out)))
            }
        };
        Ok(OpenPart {
            name,
            tmp,
            sink,
            rows: 0,
        })
    }

    fn close_part(&mut self) -> Result<(), ExportError> {
        let part = self.open.take().expect("a part is open");
        let out = part
            .sink
            .finish()
            .map_err(|e| ExportError::Internal(format!("closing {}: {e}", part.name)))?;
        let Hashing {
            inner,
            hasher,
            bytes,
            ..
        } = out;
        let file = inner
            .into_inner()
            .map_err(|e| ExportError::io(&part.tmp)(e.into_error()))?;
        file.sync_all().map_err(ExportError::io(&part.tmp))?;
        drop(file);
        let path = self.dir.join(&part.name);
        fs::rename(&part.tmp, &path).map_err(ExportError::io(&path))?;
        sync_dir(&self.dir)?;
        self.done.push(Part {
            name: part.name,
            rows: part.rows,
            bytes,
            sha256: hex::encode(hasher.finalize()),
        });
        Ok(())
    }
}

impl Drop for PartWriter {
    fn drop(&mut self) {
        if let Some(part) = self.open.take() {
            // Abandoned (the export failed): no half-written part stays behind.
            drop(part.sink);
            let _ = fs::remove_file(&part.tmp);
        }
    }
}

impl Sink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ArrowError> {
        match self {
            Sink::Parquet(w) => {
                w.write(batch)
                    .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
                if w.in_progress_size() > ROW_GROUP_BYTES {
                    w.flush()
                        .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
                }
                Ok(())
            }
            Sink::Csv(w) => w.write(batch),
            Sink::Ndjson(w) => w.write(batch),
        }
    }

    fn finish(self) -> Result<Out, ArrowError> {
        match self {
            Sink::Parquet(w) => w
                .into_inner()
                .map_err(|e| ArrowError::ExternalError(Box::new(e))),
            Sink::Csv(w) => Ok((*w).into_inner()),
            Sink::Ndjson(w) => {
                let mut w = *w;
                w.finish()?;
                Ok(w.into_inner())
            }
        }
    }
}

/// fsyncs a directory, so that renames in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), ExportError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(ExportError::io(dir))
}

/// A writer that hashes and counts what passes through.
pub struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
    /// Also counts into this running total.
    total: Arc<AtomicU64>,
}

impl<W> Hashing<W> {
    pub fn new(inner: W, total: Arc<AtomicU64>) -> Hashing<W> {
        Hashing {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
            total,
        }
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        self.total.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The SHA-256 (hex) and length of a file, read in 1 MiB chunks.
pub fn hash_file(path: &Path) -> io::Result<(String, u64)> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), bytes))
}

/// The rows in a part file, counted from the file itself.
pub fn count_rows(path: &Path, format: ExportFormat) -> Result<u64, String> {
    match format {
        ExportFormat::Parquet => {
            let file = File::open(path).map_err(|e| e.to_string())?;
            let reader = SerializedFileReader::new(file)
                .map_err(|e| format!("not a readable Parquet file: {e}"))?;
            Ok(reader.metadata().file_metadata().num_rows().max(0) as u64)
        }
        ExportFormat::Csv => {
            let records = count_records(path, true).map_err(|e| e.to_string())?;
            Ok(records.saturating_sub(1))
        }
        ExportFormat::Ndjson | ExportFormat::Ocsf => {
            count_records(path, false).map_err(|e| e.to_string())
        }
    }
}

/// Non-empty lines; with `quoted`, newlines inside double quotes (CSV) do
/// not end a record.
fn count_records(path: &Path, quoted: bool) -> io::Result<u64> {
    let mut file = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let (mut records, mut in_quotes, mut content) = (0u64, false, false);
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            match b {
                b'"' if quoted => {
                    in_quotes = !in_quotes;
                    content = true;
                }
                b'\n' if !in_quotes => {
                    records += u64::from(content);
                    content = false;
                }
                b'\r' if !in_quotes => {}
                _ => content = true,
            }
        }
    }
    Ok(records + u64::from(content))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, Int64Array, ListBuilder, StringArray, StringBuilder};
    use arrow::datatypes::{DataType, Field, Schema};

    fn batch(n: usize) -> RecordBatch {
        let mut tags = ListBuilder::new(StringBuilder::new());
        for i in 0..n {
            tags.values().append_value(format!("t{i}"));
            tags.append(true);
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("note", DataType::Utf8, true),
            Field::new("tags", tags.finish().data_type().clone(), true),
        ]));
        let mut tags = ListBuilder::new(StringBuilder::new());
        for i in 0..n {
            tags.values().append_value(format!("t{i}"));
            tags.append(true);
        }
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..n as i64)),
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| format!("line one\n\"quoted\", {i}")),
                )),
                Arc::new(tags.finish()),
            ],
        )
        .unwrap()
    }

    #[test]
    fn rolls_parts_at_the_row_limit_and_counts_match_the_files() {
        for format in [
            ExportFormat::Parquet,
            ExportFormat::Csv,
            ExportFormat::Ndjson,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let b = batch(7);
            let mut writer = PartWriter::new(dir.path(), format, 3, &b.schema());
            writer.write(&b).unwrap();
            writer.write(&batch(4)).unwrap();
            let parts = writer.finish().unwrap();
            let rows: Vec<u64> = parts.iter().map(|p| p.rows).collect();
            assert_eq!(rows, [3, 3, 3, 2], "{format}");
            for part in &parts {
                let path = dir.path().join(&part.name);
                assert_eq!(
                    count_rows(&path, format).unwrap(),
                    part.rows,
                    "{}",
                    part.name
                );
                assert_eq!(hash_file(&path).unwrap(), (part.sha256.clone(), part.bytes));
            }
            let names: Vec<String> = fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            assert_eq!(names.len(), 4, "no temporary files left: {names:?}");
        }
    }

    #[test]
    fn csv_holds_nested_values_as_json() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch(2);
        let mut writer = PartWriter::new(dir.path(), ExportFormat::Csv, 10, &b.schema());
        writer.write(&b).unwrap();
        let parts = writer.finish().unwrap();
        let text = fs::read_to_string(dir.path().join(&parts[0].name)).unwrap();
        assert!(text.starts_with("id,note,tags\n"), "{text}");
        assert!(text.contains(r#""[""t1""]""#), "{text}");
    }

    #[test]
    fn an_abandoned_writer_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let b = batch(2);
        let mut writer = PartWriter::new(dir.path(), ExportFormat::Ndjson, 10, &b.schema());
        writer.write(&b).unwrap();
        drop(writer);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
