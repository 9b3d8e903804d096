//! The lake's tables as DataFusion sees them: each is a Delta table, and
//! each scan reads the table's newest version (only the
//! commits since the last scan are read) and plans over its files, pruned by
//! their partition values and statistics. Schemas are fixed by the lake's
//! formats rather than inferred.
//!
//! These providers are never registered by name. [`crate::session`] wraps
//! each in a tenant-filtered view, and that view is all a query can reach.
//!
//! Two more tables are views over those: `ocsf_api_activity` and
//! `ocsf_detection_finding`, the lake's `events` and `alerts` as OCSF
//! classes (`tooltrail_lake::ocsf`). Each session plans them over its own
//! tenant-filtered `events` and `alerts` ([`crate::session::ocsf`]), so they
//! show exactly the rows those show.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::datasource::TableType;
use datafusion::logical_expr::TableProviderFilterPushDown;
use datafusion::physical_plan::ExecutionPlan;
use tooltrail_lake::{Location, Snapshot, TableSpec, empty_scan, ocsf, tables};

use arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::catalog::view::ViewTable;
use datafusion::datasource::provider_as_source;
use datafusion::error::Result;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{Expr, ExprFunctionExt, LogicalPlanBuilder, col, lit};

use datafusion::functions_nested::expr_fn::{array_to_string, map_keys};
use tooltrail_schemas::INVALID_PREFIX;

use crate::auth::Role;

/// A table a query may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Table {
    Events,
    /// The events that arrived with an invalid optional field.
    InvalidFields,
    Alerts,
    /// Every triage change of an alert; its latest row is its state.
    AlertTriage,
    Quarantine,
    QueryAudit,
    /// `events` as OCSF API Activity.
    OcsfApiActivity,
    /// `alerts` as OCSF Detection Finding.
    OcsfDetectionFinding,
}

impl Table {
    pub const ALL: [Table; 8] = [
        Table::Events,
        Table::InvalidFields,
        Table::Alerts,
        Table::AlertTriage,
        Table::Quarantine,
        Table::QueryAudit,
        Table::OcsfApiActivity,
        Table::OcsfDetectionFinding,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::InvalidFields => "invalid_fields",
            Table::Alerts => "alerts",
            Table::AlertTriage => "alert_triage",
            Table::Quarantine => "quarantine",
            Table::QueryAudit => "query_audit",
            Table::OcsfApiActivity => ocsf::API_ACTIVITY.view,
            Table::OcsfDetectionFinding => ocsf::DETECTION_FINDING.view,
        }
    }

    /// The OCSF class the table shows, for the OCSF views.
    pub fn ocsf(self) -> Option<&'static ocsf::Class> {
        match self {
            Table::OcsfApiActivity => Some(&ocsf::API_ACTIVITY),
            Table::OcsfDetectionFinding => Some(&ocsf::DETECTION_FINDING),
            Table::Events
            | Table::InvalidFields
            | Table::Alerts
            | Table::AlertTriage
            | Table::Quarantine
            | Table::QueryAudit => None,
        }
    }

    /// The lake table the rows come from: the table itself, or what an OCSF
    /// view reads.
    pub fn source(self) -> Table {
        match self {
            Table::OcsfApiActivity => Table::Events,
            Table::OcsfDetectionFinding => Table::Alerts,
            other => other,
        }
    }

    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The least role that may read the table.
    pub fn min_role(self) -> Role {
        match self {
            Table::Events
            | Table::InvalidFields
            | Table::Alerts
            | Table::AlertTriage
            | Table::OcsfApiActivity
            | Table::OcsfDetectionFinding => Role::Analyst,
            Table::Quarantine => Role::Auditor,
            Table::QueryAudit => Role::Admin,
        }
    }

    /// What the table holds, for `GET /v1/tables`.
    pub fn description(self) -> &'static str {
        match self {
            Table::Events => "every accepted tool-call event (by dt and hour)",
            Table::InvalidFields => {
                "the events that arrived with an invalid optional field: the field is empty, its raw value and the reason are in attributes['tooltrail.invalid.<field>']"
            }
            Table::Alerts => {
                "detector alerts (by dt): each alert_id once, its latest version (the highest repeats); the whole published record in `record`"
            }
            Table::AlertTriage => {
                "every triage change of an alert (by dt of the change): status (open, acknowledged, closed), assignee, close_reason, comment, actor; an alert's current state is its latest row"
            }
            Table::Quarantine => "input that failed validation, with its raw bytes and reason",
            Table::QueryAudit => "every query run against this endpoint: who, what, outcome",
            Table::OcsfApiActivity => {
                "events as OCSF API Activity (class_uid 6003) with the security_control profile; metadata.version names the OCSF version"
            }
            Table::OcsfDetectionFinding => {
                "alerts (each alert's latest version) as OCSF Detection Finding (class_uid 2004) with the security_control profile"
            }
        }
    }
}

/// The providers, built once and shared by every session.
#[derive(Debug, Clone)]
pub struct LakeTables {
    pub events: Arc<DeltaTable>,
    /// See [`with_invalid_fields`].
    pub invalid_fields: Arc<dyn TableProvider>,
    /// One row per alert: see [`latest_versions`].
    pub alerts: Arc<dyn TableProvider>,
    pub alert_triage: Arc<DeltaTable>,
    pub quarantine: Arc<DeltaTable>,
    pub query_audit: Arc<DeltaTable>,
}

impl LakeTables {
    /// Providers over the lake at `location`. A table no writer has created
    /// yet reads as empty.
    pub fn new(location: &Location) -> Result<LakeTables> {
        let table = |spec| DeltaTable::new(location.clone(), spec).map(Arc::new);
        let events = table(&tables::EVENTS)?;
        Ok(LakeTables {
            invalid_fields: with_invalid_fields(events.clone())?,
            events,
            alerts: latest_versions(table(&tables::ALERTS)?)?,
            alert_triage: table(&tables::ALERT_TRIAGE)?,
            quarantine: table(&tables::QUARANTINE)?,
            query_audit: table(&tables::QUERY_AUDIT)?,
        })
    }

    /// The lake provider behind `table`; for an OCSF view, the provider of
    /// the table it reads ([`Table::source`]).
    pub fn provider(&self, table: Table) -> Arc<dyn TableProvider> {
        match table.source() {
            Table::Events => self.events.clone(),
            Table::InvalidFields => self.invalid_fields.clone(),
            Table::Alerts => self.alerts.clone(),
            Table::AlertTriage => self.alert_triage.clone(),
            Table::Quarantine => self.quarantine.clone(),
            Table::QueryAudit => self.query_audit.clone(),
            Table::OcsfApiActivity | Table::OcsfDetectionFinding => {
                unreachable!("a view's source is a lake table")
            }
        }
    }
}

/// The events whose `attributes` hold a `tooltrail.invalid.<field>` key:
/// ingest kept them with that optional field empty (see
/// `tooltrail_schemas::invalid_field`).
fn with_invalid_fields(events: Arc<DeltaTable>) -> Result<Arc<dyn TableProvider>> {
    let keys = array_to_string(map_keys(col("attributes")), lit("\n"));
    // Every key is on its own line: a marker starts the text or follows a newline.
    let marked = keys
        .clone()
        .like(lit(format!("{INVALID_PREFIX}%")))
        .or(keys.like(lit(format!("%\n{INVALID_PREFIX}%"))));
    let plan = LogicalPlanBuilder::scan("events", provider_as_source(events), None)?
        .filter(marked)?
        .build()?;
    Ok(Arc::new(ViewTable::new(plan, None)))
}

/// The lake's `alerts` table holds every version of an alert: the first,
/// and each update carrying a higher repeat count. The `alerts` SQL table
/// shows each `alert_id` once, as its latest version (the highest
/// `repeats`; of equal ones, the latest day's).
fn latest_versions(versions: Arc<DeltaTable>) -> Result<Arc<dyn TableProvider>> {
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
        // Loads of several tables (a join plans its scans at once) and of
        // several queries run side by side: each holds a query worker in
        // delta-kernel's `block_in_place`, and the runtime's blocking pool
        // has room for the workers that take over (`engine::runtime`).
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
            None => empty_scan(&self.schema, projection),
            Some(snapshot) => {
                let provider = snapshot.provider(state).map_err(external)?;
                provider.scan(state, projection, filters, limit).await
            }
        }
    }
}
