//! Rewriting one data file without the rows of some tenants, through the
//! table's writer (sort order, encoding, statistics and SHA-256 stay the
//! lake's). The new file is invisible until the caller's commit adds it.

use std::collections::BTreeSet;

use ::parquet::file::metadata::KeyValue;
use arrow::array::{BooleanArray, RecordBatch};
use tooltrail_schemas::SCHEMA_VERSION;

use crate::retention::error::Error;
use crate::retention::scan::row_tenants;
use crate::retention::{Partition, TableKind};
use crate::table::{DataFile, Snapshot, Table};

/// The tenants whose rows go (`None`: rows with no readable tenant).
pub(crate) type Removed = BTreeSet<Option<String>>;

/// Writes the rows of `path` (in `snapshot`) that do not belong to
/// `removed` as a new file of `partition`; `None` when no row stays.
pub(crate) async fn without(
    table: &Table,
    snapshot: &Snapshot,
    partition: &Partition,
    path: &str,
    removed: &Removed,
) -> Result<Option<DataFile>, Error> {
    let mut kept = Vec::new();
    for batch in snapshot.read_file(path, None).await? {
        let filtered = keep(partition.table, &batch, removed).map_err(crate::Error::from)?;
        if filtered.num_rows() > 0 {
            kept.push(filtered);
        }
    }
    let Some(first) = kept.first() else {
        return Ok(None);
    };
    let merged =
        arrow::compute::concat_batches(&first.schema(), &kept).map_err(crate::Error::from)?;
    let metadata = vec![
        KeyValue::new(
            "tooltrail.schema_version".into(),
            SCHEMA_VERSION.to_string(),
        ),
        KeyValue::new("tooltrail.rewritten_from".into(), path.to_owned()),
    ];
    let file = table
        .write(partition.values.clone(), merged, metadata)
        .await?;
    Ok(Some(file))
}

/// The rows of `batch` whose tenant is not in `removed`.
fn keep(
    kind: TableKind,
    batch: &RecordBatch,
    removed: &Removed,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mask: BooleanArray = row_tenants(kind, batch)
        .into_iter()
        .map(|tenant| Some(!removed.contains(&tenant)))
        .collect();
    arrow::compute::filter_record_batch(batch, &mask)
}
