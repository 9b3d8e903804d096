//! Batch import of an NDJSON file, for backfills.
//!
//! Exactly once, and resumable: each transaction records the line range it
//! holds under the idempotency key `file:<sha256 of the file>:<first>-<last>`.
//! Importing the same file again skips every line the lake already holds, so
//! a rerun after a crash finishes the job without duplicates.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
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
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let limit = config.max_batch_records.max(1) as u64;
    let mut pending = Pending::new(config.time_window());
    let mut summary = ImportSummary::default();
    let mut line = Vec::with_capacity(4096);
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
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        read += n as u64;
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
        let record = trim_newline(&line);
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

fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
