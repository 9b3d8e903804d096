//! A table's Delta log as the chain sees it: the commit files
//! `<table>/_delta_log/<version>.json`, read through the object store, and
//! the data files each adds and removes. The parser is our own and lenient,
//! as an auditor's would be: only `add`, `remove` and `commitInfo` matter,
//! and unknown actions and fields are ignored.

use std::collections::HashMap;

use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path as StorePath;
use serde::Deserialize;

use super::format::{AddedFile, RemovedFile, commit_path, parse_digest_name};
use super::{Result, store_error};
use crate::table::SHA256_TAG;

/// The commit versions of `table` present in its log, after `after` if
/// given, ascending. Checkpoints and other files of the log are skipped.
pub(super) async fn versions(
    store: &dyn ObjectStore,
    table: &str,
    after: Option<i64>,
) -> Result<Vec<i64>> {
    let prefix = StorePath::from(format!("{table}/_delta_log"));
    let listing = match after {
        Some(v) if v >= 0 => {
            store.list_with_offset(Some(&prefix), &StorePath::from(commit_path(table, v)))
        }
        _ => store.list(Some(&prefix)),
    };
    let metas: Vec<_> = match listing.try_collect().await {
        Ok(metas) => metas,
        Err(object_store::Error::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(store_error(format!("listing {table}/_delta_log"), e)),
    };
    let mut out: Vec<i64> = metas
        .iter()
        .filter(|m| m.location.parts().count() == 3)
        .filter_map(|m| m.location.filename().and_then(parse_digest_name))
        .filter_map(|v| i64::try_from(v).ok())
        .filter(|v| after.is_none_or(|a| *v > a))
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// What one commit file says about the table's data files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ParsedCommit {
    pub operation: Option<String>,
    /// `sha256` is the writer's tag, `None` where it wrote none.
    pub added: Vec<AddedFile>,
    pub removed: Vec<RemovedFile>,
}

#[derive(Deserialize)]
struct Line {
    add: Option<AddAction>,
    remove: Option<RemoveAction>,
    #[serde(rename = "commitInfo")]
    commit_info: Option<CommitInfo>,
}

#[derive(Deserialize)]
struct AddAction {
    path: String,
    size: i64,
    #[serde(default)]
    tags: Option<HashMap<String, Option<String>>>,
    #[serde(default)]
    stats: Option<String>,
}

#[derive(Deserialize)]
struct RemoveAction {
    path: String,
}

#[derive(Deserialize)]
struct CommitInfo {
    operation: Option<String>,
}

#[derive(Deserialize)]
struct Stats {
    #[serde(rename = "numRecords")]
    num_records: Option<u64>,
}

/// Parses a commit file of `table`; the error says what is wrong.
pub(super) fn parse(table: &str, bytes: &[u8]) -> Result<ParsedCommit, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    let mut commit = ParsedCommit::default();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line: Line = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", n + 1))?;
        if let Some(add) = line.add {
            let rows = add
                .stats
                .as_deref()
                .and_then(|s| serde_json::from_str::<Stats>(s).ok())
                .and_then(|s| s.num_records);
            commit.added.push(AddedFile {
                path: lake_path(table, &add.path)?,
                bytes: u64::try_from(add.size)
                    .map_err(|_| format!("add {}: negative size {}", add.path, add.size))?,
                sha256: add
                    .tags
                    .and_then(|mut tags| tags.remove(SHA256_TAG).flatten())
                    .map(|s| s.to_ascii_lowercase()),
                rows,
            });
        }
        if let Some(remove) = line.remove {
            commit.removed.push(RemovedFile {
                path: lake_path(table, &remove.path)?,
            });
        }
        if let Some(info) = line.commit_info {
            commit.operation = info.operation;
        }
    }
    Ok(commit)
}

/// A Delta path (relative to the table root, percent-encoded) as a path
/// relative to the lake root. Absolute paths (shallow clones) are refused:
/// tooltrail never writes them, and the chain vouches only for the lake.
fn lake_path(table: &str, delta_path: &str) -> Result<String, String> {
    if delta_path.contains("://") || delta_path.starts_with('/') {
        return Err(format!(
            "{delta_path} is not a path inside the table (absolute paths are not supported)"
        ));
    }
    let path = StorePath::from_url_path(delta_path)
        .map_err(|e| format!("{delta_path} is not a valid path: {e}"))?;
    Ok(format!("{table}/{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_adds_with_their_tag_and_rows_removes_and_the_operation() {
        let text = concat!(
            r#"{"commitInfo":{"timestamp":1,"operation":"OPTIMIZE","operationParameters":{}}}"#,
            "\n",
            r#"{"add":{"path":"dt=2026-11-22/hour=09/part-a%20b.parquet","partitionValues":{},"size":12,"modificationTime":1,"dataChange":false,"stats":"{\"numRecords\":3}","tags":{"tooltrail.sha256":"AB"}}}"#,
            "\n",
            r#"{"add":{"path":"dt=2026-11-22/x.parquet","partitionValues":{},"size":5,"modificationTime":1,"dataChange":true}}"#,
            "\n",
            r#"{"remove":{"path":"dt=2026-11-22/hour=09/part-0.parquet","dataChange":false}}"#,
            "\n",
            r#"{"txn":{"appId":"a","version":3}}"#,
            "\n"
        );
        let commit = parse("events", text.as_bytes()).unwrap();
        assert_eq!(commit.operation.as_deref(), Some("OPTIMIZE"));
        assert_eq!(
            commit.added,
            vec![
                AddedFile {
                    path: "events/dt=2026-11-22/hour=09/part-a b.parquet".into(),
                    bytes: 12,
                    sha256: Some("ab".into()),
                    rows: Some(3),
                },
                AddedFile {
                    path: "events/dt=2026-11-22/x.parquet".into(),
                    bytes: 5,
                    sha256: None,
                    rows: None,
                },
            ]
        );
        assert_eq!(
            commit.removed[0].path,
            "events/dt=2026-11-22/hour=09/part-0.parquet"
        );
    }

    #[test]
    fn names_the_line_that_does_not_parse_and_refuses_paths_outside_the_table() {
        let err = parse("events", b"{\"commitInfo\":{}}\n{oops\n").unwrap_err();
        assert!(err.starts_with("line 2:"), "{err}");
        let add = r#"{"add":{"path":"s3://other/x.parquet","size":1}}"#;
        let err = parse("events", add.as_bytes()).unwrap_err();
        assert!(err.contains("absolute"), "{err}");
    }
}
