//! The DataFusion provider over one [`Snapshot`](super::Snapshot): the
//! snapshot's `add` actions are the file list, and DataFusion's own Parquet
//! scan reads the files.
//!
//! - Files are pruned first by their partition values, exactly: a filter on
//!   `dt` and `hour` alone is evaluated on each file's values, and the
//!   provider reports it `Exact`, so no filter is left to run on the rows.
//! - Then by the statistics of their `add` actions (`minValues`,
//!   `maxValues`, `nullCount`, which our writers keep conservative: see
//!   [`crate::stats`]) through DataFusion's `PruningPredicate`. Such a filter
//!   is `Inexact`: it stays above the scan, and DataFusion pushes it into the
//!   Parquet reader, which prunes row groups and pages (bloom filters, page
//!   index) and filters rows as they are decoded.
//! - Partition values become constant columns of each file's rows, as for a
//!   hive-partitioned listing.
//!
//! Our writers enable neither deletion vectors nor column mapping. A table
//! another engine gave one of them is read through delta-rs's own scan
//! instead ([`needs_delta_scan`]), which applies them.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, RecordBatchOptions, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use chrono::{TimeZone, Utc};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::{Column, DFSchema, ScalarValue, Statistics};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::listing::helpers::expr_applicable_for_cols;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_optimizer::pruning::{PruningPredicateBuilder, PruningStatistics};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use deltalake::DeltaTable;
use deltalake::delta_datafusion::engine::AsObjectStoreUrl;
use deltalake::kernel::{LogDataHandler, LogicalFileView};
use object_store::ObjectMeta;
use object_store::path::Path as StorePath;

use super::TableSpec;
use page_index::WithPageIndex;

mod page_index;

/// Scans one version of one table; see the module documentation.
#[derive(Debug)]
pub(super) struct SnapshotScan {
    spec: &'static TableSpec,
    /// [`TableSpec::read_schema`]: the data columns, then the partitions.
    schema: SchemaRef,
    /// The snapshot read, holding its file list.
    table: DeltaTable,
    /// The table's directory in the store that `update_datafusion_session`
    /// registers for the table's URL (a bucket's root, say): file paths
    /// are relative to it, as in the plans other readers make.
    root: StorePath,
}

impl SnapshotScan {
    pub(super) fn new(
        spec: &'static TableSpec,
        schema: SchemaRef,
        table: DeltaTable,
    ) -> crate::error::Result<Self> {
        let root =
            StorePath::from_url_path(table.log_store().root_url().path()).map_err(|source| {
                crate::error::Error::Provider {
                    table: spec.name.to_owned(),
                    source: Box::new(DataFusionError::External(Box::new(source))),
                }
            })?;
        Ok(SnapshotScan {
            spec,
            schema,
            table,
            root,
        })
    }

    /// The data columns: the files' own, without the partition columns.
    fn file_schema(&self) -> SchemaRef {
        let data = self.schema.fields().len() - self.spec.partitions.len();
        Arc::new(Schema::new(self.schema.fields()[..data].to_vec()))
    }

    fn partition_fields(&self) -> Vec<Arc<Field>> {
        let data = self.schema.fields().len() - self.spec.partitions.len();
        self.schema.fields()[data..].to_vec()
    }

    /// Each partition column's value in every file of `log`, in the
    /// log's order of files.
    fn partition_values(&self, log: &LogDataHandler<'_>) -> Result<Vec<StringArray>> {
        self.spec
            .partitions
            .iter()
            .map(|name| {
                let values = log.min_values(&Column::from_name(*name)).ok_or_else(|| {
                    DataFusionError::Internal(format!(
                        "{}: the log holds no values of partition column {name}",
                        self.spec.name
                    ))
                })?;
                Ok(cast(&values, &DataType::Utf8)?.as_string::<i32>().clone())
            })
            .collect()
    }

    /// Which files of `log` hold rows that may pass `filters`: see the
    /// module documentation.
    fn keep(
        &self,
        session: &dyn Session,
        log: &LogDataHandler<'_>,
        partitions: &[StringArray],
        filters: &[Expr],
    ) -> Result<Vec<bool>> {
        let (on_partitions, on_data): (Vec<Expr>, Vec<Expr>) = filters
            .iter()
            .cloned()
            .partition(|f| expr_applicable_for_cols(self.spec.partitions, f));
        let mut keep = match conjunction(on_partitions) {
            Some(predicate) => {
                self.partitions_passing(session, partitions, log.num_files(), predicate)?
            }
            None => vec![true; log.num_files()],
        };
        if let Some(predicate) = conjunction(on_data) {
            let schema = DFSchema::try_from(self.schema.clone())?;
            let predicate = session.create_physical_expr(predicate, &schema)?;
            // A predicate the statistics cannot decide keeps every file.
            if let Some(pruning) = PruningPredicateBuilder::new()
                .with_file_schema(self.schema.clone())
                .build(predicate)
            {
                for (kept, may_match) in keep.iter_mut().zip(pruning.prune(log)?) {
                    *kept &= may_match;
                }
            }
        }
        Ok(keep)
    }

    /// Evaluates `predicate`, on partition columns only, on the partition
    /// values of each of the `files`. A file whose values make it null or
    /// false is out.
    fn partitions_passing(
        &self,
        session: &dyn Session,
        partitions: &[StringArray],
        files: usize,
        predicate: Expr,
    ) -> Result<Vec<bool>> {
        let schema = Arc::new(Schema::new(self.partition_fields()));
        let columns = partitions
            .iter()
            .map(|values| Arc::new(values.clone()) as ArrayRef)
            .collect();
        let rows = RecordBatchOptions::new().with_row_count(Some(files));
        let batch = RecordBatch::try_new_with_options(schema.clone(), columns, &rows)?;
        let predicate = session.create_physical_expr(predicate, &DFSchema::try_from(schema)?)?;
        let result = predicate.evaluate(&batch)?.into_array(files)?;
        let passing = result.as_boolean_opt().ok_or_else(|| {
            DataFusionError::Plan(format!(
                "a filter on {} is not true or false but {}",
                self.spec.partitions.join(", "),
                result.data_type()
            ))
        })?;
        Ok((0..files)
            .map(|i| passing.is_valid(i) && passing.value(i))
            .collect())
    }

    /// File `index` of the log as DataFusion's scan reads it: its store
    /// path, size and partition values in the schema's order.
    fn partitioned_file(
        &self,
        file: &LogicalFileView,
        index: usize,
        partitions: &[StringArray],
    ) -> PartitionedFile {
        let mut partitioned = PartitionedFile::new_from_meta(ObjectMeta {
            location: StorePath::from_iter(
                self.root.parts().chain(file.object_store_path().parts()),
            ),
            size: u64::try_from(file.size()).unwrap_or_default(),
            last_modified: Utc
                .timestamp_millis_opt(file.modification_time())
                .single()
                .unwrap_or_default(),
            e_tag: None,
            version: None,
        });
        partitioned.partition_values = partitions
            .iter()
            .map(|values| {
                ScalarValue::Utf8(
                    values
                        .is_valid(index)
                        .then(|| values.value(index).to_owned()),
                )
            })
            .collect();
        partitioned
    }
}

/// Whether the snapshot uses a feature this scan does not apply: column
/// mapping, or a deletion vector on one of `files`.
pub(super) fn needs_delta_scan(table: &DeltaTable) -> bool {
    let Ok(state) = table.snapshot() else {
        return true;
    };
    // The mode's name ("none", "id", "name"): delta-rs does not export its type.
    let mapped = state
        .snapshot()
        .table_properties()
        .column_mapping_mode
        .and_then(|mode| serde_json::to_value(mode).ok())
        .is_some_and(|mode| mode != "none");
    mapped
        || state
            .log_data()
            .iter()
            .any(|f| f.deletion_vector_descriptor().is_some())
}

/// The scan of a table with no files to read (none committed, or none
/// passing the filters): no rows, in the projection's schema.
pub fn empty_scan(
    schema: &SchemaRef,
    projection: Option<&Vec<usize>>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let schema = match projection {
        Some(columns) => Arc::new(schema.project(columns)?),
        None => Arc::clone(schema),
    };
    Ok(Arc::new(EmptyExec::new(schema)))
}

#[async_trait]
impl TableProvider for SnapshotScan {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if expr_applicable_for_cols(self.spec.partitions, f) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Inexact
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        session: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let state = self.table.snapshot()?;
        let log = state.log_data();
        let mut chosen: Vec<(usize, LogicalFileView)> = Vec::new();
        let mut partitions = Vec::new();
        if log.num_files() > 0 {
            partitions = self.partition_values(&log)?;
            let keep = self.keep(session, &log, &partitions, filters)?;
            chosen = log
                .iter()
                .enumerate()
                .zip(keep)
                .filter_map(|(file, kept)| kept.then_some(file))
                .collect();
        }
        if chosen.is_empty() {
            return empty_scan(&self.schema, projection);
        }
        // Neighbouring partitions in one group: a day's files read together.
        chosen.sort_by(|(_, a), (_, b)| a.path().cmp(&b.path()));
        let rows: Option<usize> = chosen.iter().map(|(_, f)| f.num_records()).sum();
        let bytes: i64 = chosen.iter().map(|(_, f)| f.size()).sum();
        let mut statistics = Statistics::new_unknown(&self.schema);
        statistics.num_rows = rows.map_or(Precision::Absent, Precision::Inexact);
        statistics.total_byte_size = Precision::Inexact(usize::try_from(bytes).unwrap_or(0));
        let files = chosen
            .iter()
            .map(|(index, f)| self.partitioned_file(f, *index, &partitions))
            .collect();
        let groups = FileGroup::new(files).split_files(session.config().target_partitions());

        // What `ParquetFormat::create_physical_plan` does, with footers
        // cached along with their page index (see `page_index`).
        let options = session.table_options().parquet.clone();
        let metadata_size_hint = options.global.metadata_size_hint;
        let mut source = ParquetSource::new(
            TableSchema::builder(self.file_schema())
                .with_table_partition_cols(self.partition_fields())
                .build(),
        )
        .with_table_parquet_options(options);
        let url = self.table.log_store().root_url().as_object_store_url();
        let runtime = session.runtime_env();
        let readers = CachedParquetFileReaderFactory::new(
            runtime.object_store(&url)?,
            runtime.cache_manager.get_file_metadata_cache(),
        );
        source = source.with_parquet_file_reader_factory(Arc::new(WithPageIndex(readers)));
        if let Some(hint) = metadata_size_hint {
            source = source.with_metadata_size_hint(hint);
        }
        let config = FileScanConfigBuilder::new(url, Arc::new(source))
            .with_file_groups(groups)
            .with_statistics(statistics)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}
