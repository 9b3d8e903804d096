//! The lake's tables as DataFusion sees them. `events` and `quarantine` are
//! Delta tables: each scan reads the table's newest version (only the
//! commits since the last scan are read) and plans over its files, pruned by
//! their partition values and statistics. `alerts` and `query_audit` are
//! listing tables over NDJSON files. Schemas are fixed by the lake's formats
//! rather than inferred.
//!
//! These providers are never registered by name. [`crate::session`] wraps
//! each in a tenant-filtered view, and that view is all a query can reach.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::TableType;
use datafusion::logical_expr::TableProviderFilterPushDown;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use tooltrail_lake::{Location, Snapshot, TableSpec};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::TableProvider;
use datafusion::catalog::view::ViewTable;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::datasource::provider_as_source;
use datafusion::error::Result;
use datafusion::execution::cache::cache_manager::FileStatisticsCache;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{Expr, ExprFunctionExt, LogicalPlanBuilder, col, lit};

use crate::auth::Role;

/// A table a query may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Events,
    Alerts,
    Quarantine,
    QueryAudit,
}

impl Table {
    pub const ALL: [Table; 4] = [
        Table::Events,
        Table::Alerts,
        Table::Quarantine,
        Table::QueryAudit,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Alerts => "alerts",
            Table::Quarantine => "quarantine",
            Table::QueryAudit => "query_audit",
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The least role that may read the table.
    pub fn min_role(self) -> Role {
        match self {
            Table::Events | Table::Alerts => Role::Analyst,
            Table::Quarantine => Role::Auditor,
            Table::QueryAudit => Role::Admin,
        }
    }

    /// What the table holds, for `GET /v1/tables`.
    pub fn description(self) -> &'static str {
        match self {
            Table::Events => "every accepted tool-call event (Parquet, by dt and hour)",
            Table::Alerts => {
                "detector alerts (NDJSON, by dt): each alert_id once, its latest version (the highest repeats)"
            }
            Table::Quarantine => "input that failed validation, with its raw bytes and reason",
            Table::QueryAudit => "every query run against this endpoint: who, what, outcome",
        }
    }

    fn dir(self) -> &'static str {
        self.name()
    }
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn string_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// The alert record (`detect/src/alert.rs`) as a table. `evidence.details`
/// has no fixed shape and is left out.
pub fn alerts_schema() -> SchemaRef {
    let evidence = DataType::Struct(
        vec![
            Field::new("observed", DataType::Float64, true),
            Field::new("expected", DataType::Float64, true),
            Field::new("p_value", DataType::Float64, true),
            Field::new("new_values", string_list(), true),
            Field::new("event_ids", string_list(), true),
        ]
        .into(),
    );
    Arc::new(Schema::new(vec![
        Field::new("alert_version", DataType::Int16, true),
        Field::new("alert_id", DataType::Utf8, false),
        Field::new("time", utc_micros(), false),
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, false),
        Field::new("detector", DataType::Utf8, false),
        Field::new("severity", DataType::Utf8, false),
        Field::new("score", DataType::Int16, true),
        Field::new("title", DataType::Utf8, true),
        Field::new("explanation", DataType::Utf8, true),
        Field::new("evidence", evidence, true),
        Field::new("window_start", utc_micros(), true),
        Field::new("window_end", utc_micros(), true),
        Field::new("repeats", DataType::Int64, true),
    ]))
}

/// A `query_audit` record (see [`crate::audit`]).
pub fn query_audit_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("query_id", DataType::Utf8, false),
        Field::new("phase", DataType::Utf8, false),
        Field::new("time", utc_micros(), false),
        Field::new("principal", DataType::Utf8, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("tenants", string_list(), false),
        Field::new("transport", DataType::Utf8, false),
        Field::new("sql", DataType::Utf8, false),
        Field::new("sql_sha256", DataType::Utf8, false),
        Field::new("outcome", DataType::Utf8, true),
        Field::new("error", DataType::Utf8, true),
        Field::new("rows", DataType::Int64, true),
        Field::new("bytes", DataType::Int64, true),
        Field::new("duration_ms", DataType::Float64, true),
    ]))
}

/// The providers, built once and shared by every session.
#[derive(Debug, Clone)]
pub struct LakeTables {
    pub events: Arc<DeltaTable>,
    /// One row per alert: see [`latest_versions`].
    pub alerts: Arc<dyn TableProvider>,
    pub quarantine: Arc<DeltaTable>,
    pub query_audit: Arc<ListingTable>,
}

impl LakeTables {
    /// Providers over the lake at `root`, creating the table directories so
    /// that an empty lake is an empty table, not an error. `statistics` keeps
    /// each file's statistics (min/max, row counts) once read: lake files
    /// never change in place, and without it every query reads them again
    /// for every file it might scan (a fifth of the CPU of a query over a
    /// month of hourly files).
    pub fn new(root: &Path, statistics: Option<Arc<FileStatisticsCache>>) -> Result<LakeTables> {
        for table in [Table::Alerts, Table::QueryAudit] {
            std::fs::create_dir_all(root.join(table.dir()))?;
        }
        let location = Location::local(root).map_err(external)?;
        let daily = vec![("dt".to_string(), DataType::Utf8)];
        let ndjson = || Arc::new(JsonFormat::default()) as _;
        Ok(LakeTables {
            events: Arc::new(DeltaTable::new(
                location.clone(),
                &tooltrail_lake::tables::EVENTS,
            )?),
            alerts: latest_versions(listing(
                root,
                Table::Alerts,
                ListingOptions::new(ndjson())
                    .with_file_extension(".ndjson")
                    .with_table_partition_cols(daily.clone()),
                alerts_schema(),
                &statistics,
            )?)?,
            quarantine: Arc::new(DeltaTable::new(
                location,
                &tooltrail_lake::tables::QUARANTINE,
            )?),
            query_audit: listing(
                root,
                Table::QueryAudit,
                ListingOptions::new(ndjson())
                    .with_file_extension(".ndjson")
                    .with_table_partition_cols(daily),
                query_audit_schema(),
                &statistics,
            )?,
        })
    }

    pub fn provider(&self, table: Table) -> Arc<dyn TableProvider> {
        match table {
            Table::Events => self.events.clone(),
            Table::Alerts => self.alerts.clone(),
            Table::Quarantine => self.quarantine.clone(),
            Table::QueryAudit => self.query_audit.clone(),
        }
    }
}

/// The lake's `alerts/` holds every version of an alert: the first, and
/// each update carrying a higher repeat count. The `alerts` table shows each
/// `alert_id` once, as its latest version (the highest `repeats`; of equal
/// ones, the latest day's).
fn latest_versions(versions: Arc<ListingTable>) -> Result<Arc<dyn TableProvider>> {
    let columns: Vec<Expr> = versions
        .schema()
        .fields()
        .iter()
        .map(|f| col(f.name()))
        .collect();
    let latest_first = row_number()
        .partition_by(vec![col("alert_id")])
        .order_by(vec![
            col("repeats").sort(false, true),
            col("dt").sort(false, true),
        ])
        .build()?
        .alias("__version");
    let plan = LogicalPlanBuilder::scan("alerts", provider_as_source(versions), None)?
        .window(vec![latest_first])?
        .filter(col("__version").eq(lit(1u64)))?
        .project(columns)?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

fn listing(
    root: &Path,
    table: Table,
    options: ListingOptions,
    schema: SchemaRef,
    statistics: &Option<Arc<FileStatisticsCache>>,
) -> Result<Arc<ListingTable>> {
    let dir = std::fs::canonicalize(root.join(table.dir()))?;
    let url = ListingTableUrl::parse(format!("{}/", dir.display()))?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    Ok(Arc::new(
        ListingTable::try_new(config)?.with_cache(statistics.clone()),
    ))
}

fn external(e: tooltrail_lake::Error) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(e))
}

/// A Delta table of the lake, read at its newest version by every scan.
#[derive(Debug)]
pub struct DeltaTable {
    location: Location,
    spec: &'static TableSpec,
    schema: SchemaRef,
    /// The version the last scan read; `None` until the table exists.
    snapshot: tokio::sync::Mutex<Option<Snapshot>>,
}

impl DeltaTable {
    fn new(location: Location, spec: &'static TableSpec) -> Result<DeltaTable> {
        Ok(DeltaTable {
            schema: spec.read_schema().map_err(external)?,
            location,
            spec,
            snapshot: tokio::sync::Mutex::new(None),
        })
    }

    /// The newest version, or `None` while no writer has created the table.
    pub async fn snapshot(&self) -> Result<Option<Snapshot>> {
        let mut held = self.snapshot.lock().await;
        match held.as_mut() {
            Some(snapshot) => snapshot.update().await.map_err(external)?,
            None => {
                *held = Snapshot::load(&self.location, self.spec)
                    .await
                    .map_err(external)?
            }
        }
        Ok(held.clone())
    }
}

#[async_trait]
impl TableProvider for DeltaTable {
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
        // The scan prunes files and row groups with them; the filter stays
        // above it for the rows.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match self.snapshot().await? {
            None => {
                let schema = match projection {
                    Some(columns) => Arc::new(self.schema.project(columns)?),
                    None => self.schema.clone(),
                };
                Ok(Arc::new(EmptyExec::new(schema)))
            }
            Some(snapshot) => {
                let provider = snapshot.provider(state).map_err(external)?;
                provider.scan(state, projection, filters, limit).await
            }
        }
    }
}
