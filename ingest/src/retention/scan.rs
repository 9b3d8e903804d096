//! Listing what retention has to decide about: the partitions past the
//! shortest retention of their table, and which tenants have how many rows
//! in each of their files.
//!
//! Parquet tables are listed from the log (what the lake holds), NDJSON
//! tables from the directories. Tenants are read cheaply: an events file
//! whose row groups' `tenant_id` statistics are exact and equal holds one
//! tenant and is not read at all; otherwise only the `tenant_id` column is.
//! Quarantined records are attributed by their raw bytes' `tenant_id` (none
//! when they are not JSON or have no string `tenant_id`). Lake files never
//! change once written, so what was read is cached by path and size.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::Path;

use ::parquet::arrow::ProjectionMask;
use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use ::parquet::file::statistics::Statistics;
use arrow::array::{Array, AsArray};
use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::retention::config::RetentionConfig;
use crate::retention::{Partition, Table, plan};

/// Rows per tenant in one file. `None`: rows with no tenant (the query
/// audit) or whose tenant cannot be read (some quarantined input).
pub type TenantRows = Vec<(Option<String>, u64)>;

/// One file of a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileListing {
    /// Relative to the lake root.
    pub path: String,
    pub rows: u64,
    pub bytes: u64,
    pub tenants: TenantRows,
}

/// A partition old enough for retention to look inside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionListing {
    pub partition: Partition,
    pub files: Vec<FileListing>,
}

/// What [`scan`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    /// Partitions past the shortest retention of their table.
    pub partitions: Vec<PartitionListing>,
    /// Per table, partitions within every retention, not looked into.
    pub young: BTreeMap<Table, usize>,
}

/// Tenants already read, by (path, size).
#[derive(Debug, Default)]
pub struct TenantCache(HashMap<(String, u64), TenantRows>);

/// Lists the lake's partitions as of `now`.
pub fn scan(
    lake: &mut Lake,
    config: &RetentionConfig,
    now: DateTime<Utc>,
    cache: &mut TenantCache,
) -> Result<Listing> {
    lake.refresh()?;
    let root = lake.root().to_owned();
    let mut listing = Listing::default();
    let mut seen = HashMap::new();
    for table in Table::ALL {
        let files = if table.is_parquet() {
            from_log(lake, table)
        } else {
            from_dirs(&root, table)?
        };
        for (dir, files) in files {
            let Some(partition) = Partition::parse(table, &dir) else {
                tracing::debug!(dir, "not a partition directory; retention ignores it");
                continue;
            };
            if !plan::inspect(&partition, config, now) {
                *listing.young.entry(table).or_default() += 1;
                continue;
            }
            let mut out = Vec::with_capacity(files.len());
            for (path, bytes) in files {
                let key = (path.clone(), bytes);
                let tenants = match cache.0.remove(&key) {
                    Some(t) => t,
                    None => read_tenants(table, &root.join(&path))?,
                };
                let rows = tenants.iter().map(|(_, n)| n).sum();
                seen.insert(key, tenants.clone());
                out.push(FileListing {
                    path,
                    rows,
                    bytes,
                    tenants,
                });
            }
            listing.partitions.push(PartitionListing {
                partition,
                files: out,
            });
        }
    }
    // Keep only what is still there.
    cache.0 = seen;
    Ok(listing)
}

type DirFiles = BTreeMap<String, Vec<(String, u64)>>;

fn from_log(lake: &Lake, table: Table) -> DirFiles {
    let mut out = DirFiles::new();
    for file in lake.state().live.values() {
        if file.table != table.name() {
            continue;
        }
        if let Some((dir, _)) = file.path.rsplit_once('/') {
            out.entry(dir.to_owned())
                .or_default()
                .push((file.path.clone(), file.bytes));
        }
    }
    out
}

/// `<table>/dt=…/*.<ext>`, skipping hidden (staged) files.
fn from_dirs(root: &Path, table: Table) -> Result<DirFiles> {
    let mut out = DirFiles::new();
    let base = root.join(table.name());
    let days = match fs::read_dir(&base) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io(&base, e)),
    };
    for day in days {
        let day = day.map_err(|e| Error::io(&base, e))?;
        let name = day.file_name().to_string_lossy().into_owned();
        if !name.starts_with("dt=") || !day.path().is_dir() {
            continue;
        }
        let dir = format!("{}/{name}", table.name());
        let files = out.entry(dir.clone()).or_default();
        for file in fs::read_dir(day.path()).map_err(|e| Error::io(day.path(), e))? {
            let file = file.map_err(|e| Error::io(day.path(), e))?;
            let file_name = file.file_name().to_string_lossy().into_owned();
            let visible = !file_name.starts_with('.')
                && file_name.ends_with(&format!(".{}", table.extension()));
            if !visible {
                continue;
            }
            let meta = file.metadata().map_err(|e| Error::io(file.path(), e))?;
            if meta.is_file() {
                files.push((format!("{dir}/{file_name}"), meta.len()));
            }
        }
        files.sort();
    }
    Ok(out)
}

/// Rows per tenant in one file; an empty file counts as no tenant's.
pub(crate) fn read_tenants(table: Table, path: &Path) -> Result<TenantRows> {
    let mut tenants = tenants_in(table, path)?;
    if tenants.is_empty() {
        tenants.push((None, 0));
    }
    Ok(tenants)
}

fn tenants_in(table: Table, path: &Path) -> Result<TenantRows> {
    let mut counts: BTreeMap<Option<String>, u64> = BTreeMap::new();
    match table {
        Table::Events => return events_tenants(path),
        Table::Quarantine => {
            for batch in read_columns(path, &["raw"])? {
                let raw = batch.column(0).as_binary::<i32>();
                for i in 0..raw.len() {
                    let tenant = (!raw.is_null(i))
                        .then(|| tenant_of_raw(raw.value(i)))
                        .flatten();
                    *counts.entry(tenant).or_default() += 1;
                }
            }
        }
        Table::Alerts | Table::QueryAudit => {
            let text = fs::read(path).map_err(|e| Error::io(path, e))?;
            for line in ndjson_lines(&text) {
                let tenant = if table == Table::Alerts {
                    tenant_of_raw(line)
                } else {
                    None
                };
                *counts.entry(tenant).or_default() += 1;
            }
        }
    }
    Ok(counts.into_iter().collect())
}

fn events_tenants(path: &Path) -> Result<TenantRows> {
    let file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|source| Error::ReadParquet {
            path: path.to_owned(),
            source,
        })?;
    let meta = builder.metadata();
    let leaf = builder
        .parquet_schema()
        .columns()
        .iter()
        .position(|c| c.path().string() == "tenant_id");
    if let Some(leaf) = leaf {
        // Sorted by tenant: exact, equal min and max in every row group
        // mean one tenant, and nothing needs reading.
        let mut single: Option<&[u8]> = None;
        let mut one = meta.num_row_groups() > 0;
        for rg in meta.row_groups() {
            match rg.column(leaf).statistics() {
                Some(Statistics::ByteArray(s))
                    if s.min_is_exact()
                        && s.max_is_exact()
                        && s.null_count_opt() == Some(0)
                        && s.min_opt().is_some()
                        && s.min_opt() == s.max_opt() =>
                {
                    let value = s.min_opt().map(|v| v.data()).unwrap_or_default();
                    one &= single.is_none_or(|prev| prev == value);
                    single = Some(value);
                }
                _ => one = false,
            }
        }
        if one && let Some(value) = single {
            let rows = meta.file_metadata().num_rows() as u64;
            return Ok(vec![(
                Some(String::from_utf8_lossy(value).into_owned()),
                rows,
            )]);
        }
    }
    let mut counts: BTreeMap<Option<String>, u64> = BTreeMap::new();
    for batch in read_columns(path, &["tenant_id"])? {
        let tenants = batch.column(0).as_string::<i32>();
        for i in 0..tenants.len() {
            let tenant = (!tenants.is_null(i)).then(|| tenants.value(i).to_owned());
            *counts.entry(tenant).or_default() += 1;
        }
    }
    Ok(counts.into_iter().collect())
}

/// The named top-level columns of a Parquet file, in that order.
pub(crate) fn read_columns(path: &Path, names: &[&str]) -> Result<Vec<arrow::array::RecordBatch>> {
    let wrap = |source| Error::ReadParquet {
        path: path.to_owned(),
        source,
    };
    let file = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(wrap)?;
    let schema = builder.schema().clone();
    let mut indices = Vec::with_capacity(names.len());
    for name in names {
        let idx = schema.index_of(name).map_err(|_| Error::ReadParquet {
            path: path.to_owned(),
            source: ::parquet::errors::ParquetError::General(format!("no `{name}` column")),
        })?;
        indices.push(idx);
    }
    let mask = ProjectionMask::roots(builder.parquet_schema(), indices);
    let reader = builder.with_projection(mask).build().map_err(wrap)?;
    reader.map(|b| b.map_err(Error::from)).collect()
}

/// The lines of an NDJSON file, without blank ones.
pub(crate) fn ndjson_lines(text: &[u8]) -> impl Iterator<Item = &[u8]> {
    text.split(|b| *b == b'\n')
        .filter(|line| line.iter().any(|b| !b.is_ascii_whitespace()))
}

/// The string `tenant_id` of a JSON object, if it has one.
pub(crate) fn tenant_of_raw(raw: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Tenant<'a> {
        #[serde(borrow, default)]
        tenant_id: Option<std::borrow::Cow<'a, str>>,
    }
    let parsed: Tenant<'_> = serde_json::from_slice(raw).ok()?;
    parsed
        .tenant_id
        .filter(|t| !t.is_empty())
        .map(|t| t.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tenant_of_raw_input_is_read_when_it_is_there() {
        assert_eq!(
            tenant_of_raw(br#"{"status":700,"tenant_id":"acme"}"#).as_deref(),
            Some("acme")
        );
        assert_eq!(tenant_of_raw(br#"{"tenant_id":5}"#), None);
        assert_eq!(tenant_of_raw(b"{not json"), None);
        assert_eq!(tenant_of_raw(br#"{"tenant_id":""}"#), None);
    }
}
