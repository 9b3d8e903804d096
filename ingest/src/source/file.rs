//! Batch import of an NDJSON file, for backfills.
//!
//! Exactly once, and resumable: each transaction records the line range it
//! holds under the idempotency key `file:<sha256 of the file>:<first>-<last>`.
//! Importing the same file again skips every line the lake already holds, so
//! a rerun after a crash finishes the job without duplicates.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use chrono::Utc;
use sha2::{Digest, Sha256};
use tooltrail_schemas::lake::Source;

use crate::batch::Pending;
use crate::config::IngestConfig;
use crate::error::{Error, Result};
use crate::lake::Lake;
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

/// Line ranges of this file the lake already holds.
fn imported_ranges(lake: &Lake, digest: &str) -> Vec<(u64, u64)> {
    let prefix = format!("file:{digest}:");
    lake.state()
        .keys
        .iter()
        .filter_map(|k| k.strip_prefix(&prefix))
        .filter_map(|range| {
            let (first, last) = range.split_once('-')?;
            Some((first.parse().ok()?, last.parse().ok()?))
        })
        .collect()
}

/// Imports `path` into the lake. `progress` is called with the bytes read so far.
pub fn import_file(
    path: &Path,
    lake: &mut Lake,
    config: &IngestConfig,
    metrics: &Metrics,
    progress: &mut dyn FnMut(u64),
) -> Result<ImportSummary> {
    let digest = sha256_file(path)?;
    let done = imported_ranges(lake, &digest);
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut lines = Lines::new(file);
    let limit = config.max_batch_records.max(1) as u64;
    let mut pending = Pending::new(config.time_window());
    let mut summary = ImportSummary::default();
    let mut read = 0u64;
    let mut received_at = Utc::now();
    // The contiguous lines gathered into the open transaction.
    let mut chunk: Option<(u64, u64)> = None;
    let mut close_chunk =
        |pending: &mut Pending, chunk: &mut Option<(u64, u64)>, summary: &mut ImportSummary| {
            if let Some((first, last)) = chunk.take() {
                pending.add_key(format!("file:{digest}:{first}-{last}"));
                commit(pending, lake, metrics, summary)?;
            }
            Ok::<(), Error>(())
        };
    while let Some(line) = lines.next_line().map_err(|e| Error::io(path, e))? {
        read += line.len() as u64;
        summary.lines += 1;
        let line_no = summary.lines;
        if done
            .iter()
            .any(|(first, last)| (*first..=*last).contains(&line_no))
        {
            close_chunk(&mut pending, &mut chunk, &mut summary)?;
            summary.skipped += 1;
            continue;
        }
        // One clock reading per block of lines: the column then compresses to
        // almost nothing, and an import is "received" when it is read.
        if line_no % 1024 == 1 {
            received_at = Utc::now();
        }
        let (first, _) = *chunk.get_or_insert((line_no, line_no));
        chunk = Some((first, line_no));
        let record = trim_newline(line);
        if !record.iter().all(u8::is_ascii_whitespace) {
            let source = Source::File {
                path: &name,
                line: line_no as i64,
            };
            let _ = pending.push(record, received_at, source);
        }
        if pending.len() >= limit {
            close_chunk(&mut pending, &mut chunk, &mut summary)?;
            progress(read);
        }
    }
    close_chunk(&mut pending, &mut chunk, &mut summary)?;
    progress(read);
    Ok(summary)
}

fn commit(
    pending: &mut Pending,
    lake: &mut Lake,
    metrics: &Metrics,
    summary: &mut ImportSummary,
) -> Result<()> {
    if let Some((_, stats)) = pending.commit_to(lake, metrics, "file")? {
        summary.events += stats.events;
        summary.quarantined += stats.quarantined_total();
        summary.transactions += 1;
    }
    Ok(())
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

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; Lines::<File>::BLOCK];
    loop {
        let n = match file.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            read => read.map_err(|e| Error::io(path, e))?,
        };
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
