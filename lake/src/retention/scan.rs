//! Listing what retention has to decide about: from each table's snapshot,
//! the partitions past the shortest retention of their table, and which
//! tenants have how many rows in each of their files.
//!
//! Tenants are read cheaply: the Parquet footer is fetched alone (two ranged
//! reads), and a row group whose `tenant_id` statistics are exact, without
//! nulls and with equal min and max holds that one tenant (files are sorted
//! by tenant, so this settles most files); otherwise only the `tenant_id`
//! column is read. Quarantined records are attributed by their raw bytes'
//! `tenant_id` (none when they are not JSON or have no string `tenant_id`).
//! Data files never change once written, so what was read is cached by
//! table and path.

use std::collections::{BTreeMap, HashMap};

use ::parquet::file::metadata::{FooterTail, ParquetMetaData, ParquetMetaDataReader};
use ::parquet::file::statistics::Statistics;
use arrow::array::{Array, AsArray, RecordBatch};
use chrono::{DateTime, Utc};
use deltalake::kernel::Version;
use object_store::ObjectStore;
use object_store::ObjectStoreExt;
use object_store::path::Path as StorePath;

use crate::error::Error as LakeError;
use crate::location::Location;
use crate::retention::config::RetentionConfig;
use crate::retention::error::Error;
use crate::retention::{Partition, RetainedTable, TableKind, Tenancy, plan};
use crate::table::{FileEntry, Snapshot};

/// Rows per tenant in one file. `None`: rows with no tenant (the query
/// audit) or whose tenant cannot be read (some quarantined input).
pub type TenantRows = Vec<(Option<String>, u64)>;

/// One file of a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileListing {
    /// Relative to the table's root, as the table's log names it.
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
    pub young: BTreeMap<TableKind, usize>,
    /// The version of each table listed.
    pub versions: BTreeMap<TableKind, Version>,
}

/// Tenants already read, by table and path.
#[derive(Debug, Default)]
pub struct TenantCache(HashMap<(TableKind, String), TenantRows>);

/// Lists the partitions of `tables` in the lake at `lake`, as of `now`. A
/// table no writer has created yet has nothing to list.
pub async fn scan(
    lake: &Location,
    tables: &[RetainedTable],
    config: &RetentionConfig,
    now: DateTime<Utc>,
    cache: &mut TenantCache,
) -> Result<Listing, Error> {
    let mut listing = Listing::default();
    let mut seen = HashMap::new();
    for table in tables {
        let Some(snapshot) = Snapshot::load(lake, table.spec).await? else {
            continue;
        };
        if let Some(version) = snapshot.version() {
            listing.versions.insert(table.kind, version);
        }
        let store = lake.store(table.spec.name)?;
        let mut partitions: BTreeMap<Partition, Vec<FileEntry>> = BTreeMap::new();
        for file in snapshot.files()? {
            match Partition::of(table.kind, table.spec, &file) {
                Some(partition) => partitions.entry(partition).or_default().push(file),
                None => {
                    tracing::warn!(
                        table = table.spec.name,
                        path = file.path,
                        "a file's partition is not a date; retention leaves it"
                    );
                }
            }
        }
        for (partition, files) in partitions {
            if !plan::inspect(&partition, config, now) {
                *listing.young.entry(table.kind).or_default() += 1;
                continue;
            }
            let mut out = Vec::with_capacity(files.len());
            for file in files {
                let key = (table.kind, file.path.clone());
                let tenants = match cache.0.remove(&key) {
                    Some(t) => t,
                    None => read_tenants(&snapshot, store.as_ref(), table.kind, &file).await?,
                };
                let rows = tenants.iter().map(|(_, n)| n).sum();
                seen.insert(key, tenants.clone());
                out.push(FileListing {
                    path: file.path,
                    rows,
                    bytes: u64::try_from(file.size).unwrap_or(0),
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

/// Rows per tenant in one file; an empty file counts as no tenant's.
pub(crate) async fn read_tenants(
    snapshot: &Snapshot,
    store: &dyn ObjectStore,
    kind: TableKind,
    file: &FileEntry,
) -> Result<TenantRows, Error> {
    let mut counts: BTreeMap<Option<String>, u64> = BTreeMap::new();
    match kind.tenancy() {
        Tenancy::None => {
            let rows = match file.rows {
                Some(rows) => rows as u64,
                None => footer(store, snapshot, file)
                    .await?
                    .file_metadata()
                    .num_rows() as u64,
            };
            counts.insert(None, rows);
        }
        Tenancy::Column(column) => {
            let meta = footer(store, snapshot, file).await?;
            match from_statistics(&meta, column) {
                Some(rows) => counts = rows,
                None => {
                    for batch in snapshot.read_file(&file.path, Some(&[column])).await? {
                        for tenant in row_tenants(kind, &batch) {
                            *counts.entry(tenant).or_default() += 1;
                        }
                    }
                }
            }
        }
        Tenancy::RawJson(column) => {
            for batch in snapshot.read_file(&file.path, Some(&[column])).await? {
                for tenant in row_tenants(kind, &batch) {
                    *counts.entry(tenant).or_default() += 1;
                }
            }
        }
    }
    counts.retain(|_, n| *n > 0);
    let mut tenants: TenantRows = counts.into_iter().collect();
    if tenants.is_empty() {
        tenants.push((None, 0));
    }
    Ok(tenants)
}

/// The tenant of each row of `batch`, by `kind`'s tenancy.
pub(crate) fn row_tenants(kind: TableKind, batch: &RecordBatch) -> Vec<Option<String>> {
    let rows = batch.num_rows();
    match kind.tenancy() {
        Tenancy::None => vec![None; rows],
        Tenancy::Column(name) => match batch
            .column_by_name(name)
            .and_then(|c| c.as_string_opt::<i32>())
        {
            Some(tenants) => (0..rows)
                .map(|i| (!tenants.is_null(i)).then(|| tenants.value(i).to_owned()))
                .collect(),
            None => vec![None; rows],
        },
        Tenancy::RawJson(name) => match batch
            .column_by_name(name)
            .and_then(|c| c.as_binary_opt::<i32>())
        {
            Some(raw) => (0..rows)
                .map(|i| {
                    (!raw.is_null(i))
                        .then(|| tenant_of_raw(raw.value(i)))
                        .flatten()
                })
                .collect(),
            None => vec![None; rows],
        },
    }
}

/// Rows per tenant from the row groups' statistics of `column`, when every
/// row group holds one tenant by exact statistics; `None` otherwise.
pub(crate) fn from_statistics(
    meta: &ParquetMetaData,
    column: &str,
) -> Option<BTreeMap<Option<String>, u64>> {
    let leaf = meta
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.path().string() == column)?;
    let mut counts: BTreeMap<Option<String>, u64> = BTreeMap::new();
    for rg in meta.row_groups() {
        let Some(Statistics::ByteArray(s)) = rg.column(leaf).statistics() else {
            return None;
        };
        let exact = s.min_is_exact() && s.max_is_exact() && s.null_count_opt() == Some(0);
        let value = s
            .min_opt()
            .filter(|min| exact && s.max_opt() == Some(*min))?;
        let tenant = std::str::from_utf8(value.data()).ok()?.to_owned();
        *counts.entry(Some(tenant)).or_default() += u64::try_from(rg.num_rows()).ok()?;
    }
    Some(counts)
}

/// The Parquet footer of `file`, read with two ranged reads.
pub(crate) async fn footer(
    store: &dyn ObjectStore,
    snapshot: &Snapshot,
    file: &FileEntry,
) -> Result<ParquetMetaData, Error> {
    let name = format!("{}/{}", snapshot.spec().name, file.path);
    let path = StorePath::from(file.path.as_str());
    let size = u64::try_from(file.size).unwrap_or(0);
    let corrupt = |message: String| {
        Error::Lake(LakeError::CorruptFile {
            path: name.clone(),
            message,
        })
    };
    if size < 8 {
        return Err(corrupt(format!("{size} bytes is too short for parquet")));
    }
    let get = |range: std::ops::Range<u64>| {
        let (path, name) = (&path, &name);
        async move {
            store
                .get_range(path, range)
                .await
                .map_err(|e| LakeError::store(format!("reading the footer of {name}"), e))
        }
    };
    let tail = get(size - 8..size).await?;
    let tail: [u8; 8] = tail
        .as_ref()
        .try_into()
        .map_err(|_| corrupt("a short read".into()))?;
    let tail = FooterTail::try_new(&tail).map_err(|e| corrupt(e.to_string()))?;
    let length = tail.metadata_length() as u64;
    if length + 8 > size {
        return Err(corrupt(format!("a {length}-byte footer in {size} bytes")));
    }
    let bytes = get(size - 8 - length..size - 8).await?;
    let meta = ParquetMetaDataReader::decode_metadata(&bytes).map_err(|source| {
        Error::Lake(LakeError::ReadParquet {
            path: name.clone(),
            source,
        })
    })?;
    Ok(meta)
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
