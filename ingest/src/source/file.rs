//! Batch import of an NDJSON file, for backfills.
//!
//! Exactly once, and resumable: the file's application id is
//! `file:b3:<BLAKE3 of the file>` and its positions are line numbers, so
//! each commit records the lines it holds the way a Kafka partition's
//! offsets are recorded. Importing the same file again (after a crash, or by
//! mistake) starts after the last line the lake holds; lines whose rejects
//! the quarantine holds already are not quarantined again.
//!
//! BLAKE3 rather than SHA-256 because the whole file is hashed before the
//! first line is imported: at several GB/s on one core it costs a few percent
//! of an import, where SHA-256 cost a tenth.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use chrono::Utc;
use tokio::runtime::Handle;
use tooltrail_lake::Writer;
use tooltrail_schemas::lake::Source;

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
            summary.skipped += 1;
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
            pending.file_rejects(!resume.already_quarantined(line_no));
            let _ = pending.push(record, received_at, source);
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
