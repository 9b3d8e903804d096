//! Reading an NDJSON event file in event-time order, for `detect --replay`
//! and `eval`: the engine wants events in time order, files rarely are. The file is indexed first (time and byte range of each valid
//! line); a file already in time order is then read straight through, any
//! other is read in sorted order by seeking.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use std::path::PathBuf;

use tooltrail_schemas::ToolCallEvent;

/// Invalid lines are kept, with their line numbers, up to this many.
pub const MAX_REPORTED: usize = 10;

/// What a replay read.
#[derive(Debug, Default)]
pub struct ReplayStats {
    pub events: u64,
    pub invalid: u64,
    /// The first [`MAX_REPORTED`] invalid lines: their numbers and why.
    pub reported: Vec<(u64, String)>,
    /// Distinct (tenant, user, UTC day) with at least one event.
    pub user_days: u64,
}

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} changed while being read (at byte {offset})")]
    Changed { path: PathBuf, offset: u64 },
}

/// Calls `each` with every valid event of `path` in time order (ties in file
/// order). Invalid lines are skipped, counted, and the first few kept with
/// their line numbers.
pub fn replay(
    path: &Path,
    mut each: impl FnMut(&ToolCallEvent),
) -> Result<ReplayStats, ReplayError> {
    let read_error = |source| ReplayError::Read {
        path: path.to_owned(),
        source,
    };
    let open = || File::open(path).map_err(read_error);
    let mut stats = ReplayStats::default();
    let mut index: Vec<(i64, u64, u32)> = Vec::new();
    let mut user_days = std::collections::HashSet::new();
    {
        let mut reader = BufReader::with_capacity(1 << 20, open()?);
        let mut line = Vec::new();
        let (mut offset, mut number) = (0u64, 0u64);
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(read_error)?;
            if n == 0 {
                break;
            }
            number += 1;
            let body = trim(&line);
            if !body.is_empty() {
                match tooltrail_schemas::decode(body) {
                    Ok(e) => {
                        let micros = e.time_micros();
                        user_days.insert(user_day(&e, micros));
                        index.push((micros, offset, n as u32));
                    }
                    Err(err) => {
                        stats.invalid += 1;
                        if stats.reported.len() < MAX_REPORTED {
                            stats.reported.push((number, err.to_string()));
                        }
                    }
                }
            }
            offset += n as u64;
        }
    }
    stats.user_days = user_days.len() as u64;
    drop(user_days);
    index.sort_by_key(|(t, offset, _)| (*t, *offset));
    let mut reader = BufReader::with_capacity(1 << 20, open()?);
    let mut position = 0u64;
    let mut line = Vec::new();
    for (_, offset, len) in index {
        if offset != position {
            reader.seek(SeekFrom::Start(offset)).map_err(read_error)?;
        }
        line.resize(len as usize, 0);
        reader.read_exact(&mut line).map_err(read_error)?;
        position = offset + u64::from(len);
        let event = tooltrail_schemas::decode(trim(&line)).map_err(|_| ReplayError::Changed {
            path: path.to_owned(),
            offset,
        })?;
        stats.events += 1;
        each(&event);
    }
    Ok(stats)
}

fn user_day(e: &ToolCallEvent, micros: i64) -> (String, String, i64) {
    (
        e.tenant_id.clone(),
        e.user_id.clone(),
        micros.div_euclid(86_400_000_000),
    )
}

fn trim(line: &[u8]) -> &[u8] {
    let mut end = line.len();
    while end > 0 && matches!(line[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    &line[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(id: &str, time: &str, user: &str) -> String {
        format!(
            r#"{{"schema_version":1,"event_id":"{id}","time":"{time}","tenant_id":"acme","user_id":"{user}","server":"github","method":"tools/call","tool":"x","decision":"allow","status":200}}"#
        )
    }

    #[test]
    fn events_come_in_time_order_and_bad_lines_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("e.ndjson");
        let text = [
            line("b", "2026-10-20T10:00:02Z", "alice"),
            "not json".to_string(),
            line("a", "2026-10-20T10:00:01Z", "alice"),
            String::new(),
            line("c", "2026-10-21T10:00:03Z", "bob"),
            line("d", "2026-10-20T10:00:02Z", "alice"),
        ]
        .join("\n");
        std::fs::write(&path, text).expect("write");
        let mut ids = Vec::new();
        let stats = replay(&path, |e| ids.push(e.event_id.clone())).expect("replay");
        assert_eq!(ids, ["a", "b", "d", "c"]);
        assert_eq!((stats.events, stats.invalid, stats.user_days), (4, 1, 2));
        assert_eq!(stats.reported.len(), 1);
        assert_eq!(stats.reported[0].0, 2, "the bad line's number");
    }
}
