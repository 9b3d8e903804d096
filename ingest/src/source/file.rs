//! Batch import of an NDJSON file, for backfills.
//!
//! Exactly once, and resumable: the file's application id is
//! `file:b3:<BLAKE3 of the file>` and its positions are line numbers, so
//! each commit records the lines it holds the way a Kafka partition's
//! offsets are recorded. Importing the same file again (after a crash, or by
//! mistake) starts after the last line the lake holds; lines whose rejects
//! the quarantine holds already are not quarantined again.
//!
//! Importing history: a line whose event lies outside the accepted window
//! (`ingest.max_event_age`, 366 days by default) is quarantined, and the
//! summary says which flag lets it in. Importing the file again with a wider
//! window (`--max-event-age`, `--any-age`) imports exactly those lines: the
//! quarantine's rows from this file (same line number, same bytes) that are
//! out of the window on `time` and that the window now accepts. They are
//! positioned under their own application id, `<file id>/window`, so a third
//! run does not import them again.
//!
//! BLAKE3 rather than SHA-256 because the whole file is hashed before the
//! first line is imported: at several GB/s on one core it costs a few percent
//! of an import, where SHA-256 cost a tenth.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Read;
use std::path::Path;

use arrow::array::{Array, AsArray};
use arrow::datatypes::Int64Type;
use chrono::Utc;
use tokio::runtime::Handle;
use tooltrail_lake::Writer;
use tooltrail_schemas::lake::Source;
use tooltrail_schemas::{DecodeError, Problem};

use crate::batch::Pending;
use crate::config::IngestConfig;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    pub lines: u64,
    pub events: u64,
    pub quarantined: u64,
    /// Lines an earlier import had already committed.
    pub skipped: u64,
    pub transactions: u64,
    /// Lines an earlier import quarantined as outside the accepted window,
    /// imported now that the window takes them.
    pub requeued: u64,
    /// The lines this import quarantined, grouped by what was wrong.
    pub rejects: BTreeMap<RejectKind, RejectGroup>,
}

/// What was wrong with a quarantined line: its reason code and field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RejectKind {
    /// The quarantine's reason code (`missing_field`, `out_of_range`, ...).
    pub reason: &'static str,
    pub field: Option<String>,
    /// The event's `time` was older than `ingest.max_event_age` allows.
    pub too_old: bool,
}

/// The lines quarantined for one [`RejectKind`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RejectGroup {
    pub lines: u64,
    /// The first few line numbers, in file order.
    pub first_lines: Vec<i64>,
    /// The first line's error message.
    pub example: String,
}

/// Line numbers kept per [`RejectGroup`].
const FIRST_LINES: usize = 5;

impl ImportSummary {
    fn reject(&mut self, line: i64, error: &DecodeError) {
        let kind = RejectKind {
            reason: error.reason(),
            field: error.field_name().map(str::to_owned),
            too_old: matches!(
                error,
                DecodeError::Field {
                    problem: Problem::OutsideWindow { too_old: true, .. },
                    ..
                }
            ),
        };
        let group = self.rejects.entry(kind).or_default();
        if group.lines == 0 {
            group.example = error.to_string();
        }
        group.lines += 1;
        if group.first_lines.len() < FIRST_LINES {
            group.first_lines.push(line);
        }
    }
}

/// The file's application id in the lake, `file:b3:<BLAKE3>`.
pub fn app_id(path: &Path) -> Result<String> {
    let mut hasher = blake3::Hasher::new();
    read_blocks(path, |block| {
        hasher.update(block);
    })?;
    Ok(format!("file:b3:{}", hasher.finalize().to_hex()))
}

/// Imports `path` into the lake. `progress` is called with the bytes read
/// so far. Blocking: the lake's IO runs on `runtime`.
pub fn import_file(
    path: &Path,
    writer: &mut Writer,
    runtime: &Handle,
    config: &IngestConfig,
    metrics: &Metrics,
    progress: &mut dyn FnMut(u64),
) -> Result<ImportSummary> {
    let app_id = app_id(path)?;
    let resume = runtime.block_on(writer.resume(&app_id))?;
    let first_new = resume.next.unwrap_or(1);
    // Lines an earlier import quarantined as out of the window, for another
    // look (none on a first import).
    let window_app_id = format!("{app_id}/window");
    let (window_next, outside_window) = if first_new > 1 {
        let next = runtime.block_on(writer.resume(&window_app_id))?.next;
        let lines = runtime.block_on(outside_window_lines(writer, first_new))?;
        (next.unwrap_or(1), lines)
    } else {
        (1, HashMap::new())
    };
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut lines = Lines::new(file);
    let limit = config.max_batch_records.max(1) as u64;
    let mut pending = Pending::new(config.time_window());
    let mut summary = ImportSummary::default();
    let mut read = 0u64;
    let mut received_at = Utc::now();
    let mut commit = |pending: &mut Pending, summary: &mut ImportSummary| {
        if let Some((_, stats)) = runtime.block_on(pending.commit_to(writer, metrics, "file"))? {
            summary.events += stats.events;
            summary.quarantined += stats.quarantined_total();
            summary.transactions += 1;
        }
        Ok::<(), Error>(())
    };
    while let Some(line) = lines.next_line().map_err(|e| Error::io(path, e))? {
        read += line.len() as u64;
        summary.lines += 1;
        let line_no = summary.lines as i64;
        if line_no < first_new {
            let record = trim_newline(line);
            let again = line_no >= window_next
                && outside_window
                    .get(&line_no)
                    .is_some_and(|hashes| hashes.contains(blake3::hash(record).as_bytes()));
            if !again {
                summary.skipped += 1;
                continue;
            }
            pending.file_rejects(false);
            let source = Source::File {
                path: &name,
                line: line_no,
            };
            match pending.push(record, Utc::now(), source) {
                Ok(()) => {
                    // Positioned only once in: a line the window still
                    // refuses stays in the quarantine for a wider one.
                    pending.cover(&window_app_id, line_no);
                    summary.requeued += 1;
                }
                Err(_) => summary.skipped += 1,
            }
            if pending.len() >= limit {
                commit(&mut pending, &mut summary)?;
            }
            continue;
        }
        // One clock reading per block of lines: the column then compresses to
        // almost nothing, and an import is "received" when it is read.
        if line_no % 1024 == 1 {
            received_at = Utc::now();
        }
        pending.cover(&app_id, line_no);
        let record = trim_newline(line);
        if !record.iter().all(u8::is_ascii_whitespace) {
            let source = Source::File {
                path: &name,
                line: line_no,
            };
            let filing = !resume.already_quarantined(line_no);
            pending.file_rejects(filing);
            if let Err(error) = pending.push(record, received_at, source)
                && filing
            {
                summary.reject(line_no, &error);
            }
        }
        if pending.len() >= limit {
            commit(&mut pending, &mut summary)?;
            progress(read);
        }
    }
    commit(&mut pending, &mut summary)?;
    progress(read);
    Ok(summary)
}

/// The lines before `before` that the quarantine holds from a file import,
/// rejected for a `time` outside the accepted window, with the BLAKE3 hash of
/// each one's bytes (a line number alone could be another file's).
async fn outside_window_lines(writer: &Writer, before: i64) -> Result<HashMap<i64, Vec<[u8; 32]>>> {
    const COLUMNS: [&str; 5] = ["reason", "field", "raw", "source_kind", "source_offset"];
    let snapshot = writer.quarantine().snapshot().await?;
    let mut lines: HashMap<i64, Vec<[u8; 32]>> = HashMap::new();
    for file in snapshot.files()? {
        for batch in snapshot.read_file(&file.path, Some(&COLUMNS)).await? {
            let column = |name: &str| {
                batch
                    .column_by_name(name)
                    .ok_or_else(|| Error::QuarantineColumn {
                        path: file.path.clone(),
                        column: name.to_owned(),
                    })
            };
            let reason = column("reason")?.as_string::<i32>();
            let field = column("field")?.as_string::<i32>();
            let raw = column("raw")?.as_binary::<i32>();
            let kind = column("source_kind")?.as_string::<i32>();
            let line = column("source_offset")?.as_primitive::<Int64Type>();
            for row in 0..batch.num_rows() {
                let wanted = kind.value(row) == "file"
                    && reason.value(row) == "out_of_range"
                    && field.is_valid(row)
                    && field.value(row) == "time"
                    && line.is_valid(row)
                    && line.value(row) < before;
                if wanted {
                    let hash = *blake3::hash(raw.value(row)).as_bytes();
                    lines.entry(line.value(row)).or_default().push(hash);
                }
            }
        }
    }
    Ok(lines)
}

pub(crate) fn trim_newline(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Lines of a file, each with its newline, read a block at a time and handed
/// out in place: no copy per line.
struct Lines<R> {
    inner: R,
    buf: Vec<u8>,
    /// `buf[start..end]` is read and not yet handed out.
    start: usize,
    end: usize,
    eof: bool,
}

impl<R: Read> Lines<R> {
    /// Bytes read per block; a longer line grows the buffer.
    const BLOCK: usize = 1 << 20;

    fn new(inner: R) -> Self {
        Lines {
            inner,
            buf: vec![0; Self::BLOCK],
            start: 0,
            end: 0,
            eof: false,
        }
    }

    /// The next line, with its `\n` unless it is the last and has none.
    fn next_line(&mut self) -> std::io::Result<Option<&[u8]>> {
        let mut scanned = self.start;
        loop {
            if let Some(n) = memchr::memchr(b'\n', &self.buf[scanned..self.end]) {
                let line = self.start..scanned + n + 1;
                self.start = line.end;
                return Ok(Some(&self.buf[line]));
            }
            if self.eof {
                if self.start == self.end {
                    return Ok(None);
                }
                let line = self.start..self.end;
                self.start = self.end;
                return Ok(Some(&self.buf[line]));
            }
            // Keep the partial line, at the front, and read more after it.
            scanned = self.end - self.start;
            self.buf.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, scanned);
            if self.buf.len() - self.end < Self::BLOCK / 2 {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

/// Hands `path` to `f` a block at a time.
fn read_blocks(path: &Path, mut f: impl FnMut(&[u8])) -> Result<()> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; Lines::<File>::BLOCK];
    loop {
        let n = match file.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            read => read.map_err(|e| Error::io(path, e))?,
        };
        if n == 0 {
            break;
        }
        f(&buf[..n]);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize, invalid: &[usize]) -> String {
        let now = tooltrail_schemas::format_time(&Utc::now());
        (1..=n)
            .map(|n| {
                if invalid.contains(&n) {
                    return "{\"not\": \"an event\"}\n".to_owned();
                }
                format!(
                    r#"{{"schema_version":1,"event_id":"e{n}","time":"{now}","tenant_id":"t","user_id":"u","server":"s","method":"m","decision":"allow","status":200}}"#
                ) + "\n"
            })
            .collect()
    }

    struct Lake {
        _dir: tempfile::TempDir,
        location: tooltrail_lake::Location,
        runtime: tokio::runtime::Runtime,
        metrics: Metrics,
    }

    impl Lake {
        fn new() -> Lake {
            let dir = tempfile::tempdir().unwrap();
            let location = tooltrail_lake::Location::local(dir.path()).unwrap();
            Lake {
                _dir: dir,
                location,
                runtime: tokio::runtime::Runtime::new().unwrap(),
                metrics: Metrics::register(&mut Default::default()),
            }
        }

        fn writer(&self) -> Writer {
            let open = Writer::open(&self.location, 1, Default::default());
            self.runtime.block_on(open).unwrap()
        }

        fn import(&self, path: &Path, config: &IngestConfig) -> ImportSummary {
            let mut writer = self.writer();
            let handle = self.runtime.handle();
            import_file(
                path,
                &mut writer,
                handle,
                config,
                &self.metrics,
                &mut |_| {},
            )
            .unwrap()
        }
    }

    #[test]
    fn an_import_resumes_after_the_last_line_the_lake_holds() {
        let lake = Lake::new();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        std::fs::write(&path, lines(5, &[])).unwrap();
        // An import that committed lines 1-3 and then died.
        let mut writer = lake.writer();
        let mut pending = Pending::new(IngestConfig::default().time_window());
        let app_id = app_id(&path).unwrap();
        for line in 1..=3 {
            pending.cover(&app_id, line);
        }
        let committed = pending.commit_to(&mut writer, &lake.metrics, "file");
        lake.runtime.block_on(committed).unwrap();

        let config = IngestConfig::default();
        let summary = lake.import(&path, &config);
        assert_eq!((summary.skipped, summary.events), (3, 2), "{summary:?}");
        let again = lake.import(&path, &config);
        assert_eq!((again.skipped, again.events), (5, 0), "{again:?}");
    }

    #[test]
    fn rejects_the_quarantine_holds_from_a_crashed_import_are_not_quarantined_again() {
        let lake = Lake::new();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.ndjson");
        std::fs::write(&path, lines(4, &[2, 4])).unwrap();
        // A crash fell between the two commits of lines 1-2: the quarantine
        // holds line 2's reject, `events` holds nothing.
        let app_id = app_id(&path).unwrap();
        lake.runtime.block_on(async {
            let mut quarantine = tooltrail_lake::Table::open(
                &lake.location,
                &tooltrail_lake::tables::QUARANTINE,
                1,
                Default::default(),
            )
            .await
            .unwrap();
            let position = tooltrail_lake::Position {
                app_id: app_id.clone(),
                first: 1,
                last: 2,
            };
            let commit = tooltrail_lake::Commit::append(Vec::new()).with_positions(vec![position]);
            quarantine.commit(&commit).await.unwrap();
        });

        let summary = lake.import(&path, &IngestConfig::default());
        assert_eq!(
            (summary.skipped, summary.events, summary.quarantined),
            (0, 2, 1),
            "line 4 is quarantined, line 2 is not again: {summary:?}"
        );
    }

    #[test]
    fn old_events_are_grouped_with_their_first_lines_and_come_in_with_any_age() {
        let lake = Lake::new();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.ndjson");
        // A log from 2023 with two malformed lines among twelve old events.
        let old =
            lines(14, &[3, 9]).replace(&tooltrail_schemas::format_time(&Utc::now())[..4], "2023");
        std::fs::write(&path, &old).unwrap();

        let summary = lake.import(&path, &IngestConfig::default());
        assert_eq!(
            (summary.events, summary.quarantined),
            (0, 14),
            "{summary:?}"
        );
        let groups: Vec<_> = summary
            .rejects
            .iter()
            .map(|(kind, group)| {
                (
                    kind.reason,
                    kind.field.as_deref(),
                    kind.too_old,
                    group.lines,
                    group.first_lines.clone(),
                )
            })
            .collect();
        assert_eq!(
            groups,
            [
                (
                    "missing_field",
                    Some("schema_version"),
                    false,
                    2,
                    vec![3, 9]
                ),
                ("out_of_range", Some("time"), true, 12, vec![1, 2, 4, 5, 6]),
            ]
        );
        let too_old = &summary.rejects.values().nth(1).unwrap().example;
        assert!(too_old.contains("outside the accepted window"), "{too_old}");

        // The default window again: nothing is read twice, nothing moves.
        let again = lake.import(&path, &IngestConfig::default());
        assert_eq!(
            (again.skipped, again.events, again.requeued),
            (14, 0, 0),
            "{again:?}"
        );

        // A wider window: exactly the old events come in, once.
        let any_age = IngestConfig {
            max_event_age: std::time::Duration::MAX,
            ..IngestConfig::default()
        };
        let history = lake.import(&path, &any_age);
        assert_eq!(
            (history.requeued, history.skipped, history.quarantined),
            (12, 2, 0),
            "{history:?}"
        );
        let third = lake.import(&path, &any_age);
        assert_eq!((third.requeued, third.skipped), (0, 14), "{third:?}");
        let writer = lake.writer();
        let rows: usize = lake.runtime.block_on(async {
            let snapshot = writer.events().snapshot().await.unwrap();
            let mut n = 0;
            for file in snapshot.files().unwrap() {
                for batch in snapshot
                    .read_file(&file.path, Some(&["event_id"]))
                    .await
                    .unwrap()
                {
                    n += batch.num_rows();
                }
            }
            n
        });
        assert_eq!(rows, 12, "each old event is in the lake once");

        // Another file with the same line at the same number is its own import.
        let copy = dir.path().join("history-copy.ndjson");
        std::fs::write(&copy, format!("{old}\n")).unwrap();
        let imported = lake.import(&copy, &any_age);
        assert_eq!(
            (imported.events, imported.requeued),
            (12, 0),
            "{imported:?}"
        );
        assert!(imported.rejects.keys().all(|k| !k.too_old));
    }

    fn split(text: &[u8], block: usize) -> Vec<Vec<u8>> {
        // A reader that hands out at most `block` bytes per read.
        struct Chunks<'a>(&'a [u8], usize);
        impl Read for Chunks<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut lines = Lines::new(Chunks(text, block));
        let mut out = Vec::new();
        while let Some(line) = lines.next_line().unwrap() {
            out.push(line.to_vec());
        }
        out
    }

    #[test]
    fn lines_come_whole_across_reads_and_keep_their_newlines() {
        let long = vec![b'x'; 3 * Lines::<&[u8]>::BLOCK];
        let mut text = b"a\n\nbc\r\n".to_vec();
        text.extend_from_slice(&long);
        text.extend_from_slice(b"\nlast");
        let expected: Vec<Vec<u8>> = vec![
            b"a\n".to_vec(),
            b"\n".to_vec(),
            b"bc\r\n".to_vec(),
            [long.as_slice(), b"\n"].concat(),
            b"last".to_vec(),
        ];
        for block in [1, 3, 4096, usize::MAX] {
            assert_eq!(split(&text, block), expected, "reads of {block} bytes");
        }
        assert!(split(b"", 7).is_empty());
        assert_eq!(split(b"x\n", 7), vec![b"x\n".to_vec()]);
    }
}
