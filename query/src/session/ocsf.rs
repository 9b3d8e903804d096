//! The OCSF views, `ocsf_api_activity` and `ocsf_detection_finding`, as
//! each session sees them: `tooltrail_lake::ocsf`'s SQL for the class over
//! the session's own, tenant-scoped `events` or `alerts`.
//!
//! Each view's SQL is planned once, when the engine opens, over a stand-in
//! for its lake table that has the table's schema and refuses to be scanned
//! ([`Unbound`]). A session takes that plan and points its one table scan
//! at the principal's [`super::ScopedTable`] ([`Views::bind`]), so a view's
//! expressions run above the same tenant filter and barrier as any query of
//! `events` or `alerts`: isolation stays in one place. A plan with the
//! stand-in left in it cannot read anything.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider, SchemaProvider, Session,
};
use datafusion::common::plan_err;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::{TableProvider, TableType, provider_as_source};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;

use crate::tables::{LakeTables, Table};

/// Each OCSF view's plan over its stand-in table.
#[derive(Debug, Clone)]
pub struct Views {
    plans: HashMap<Table, LogicalPlan>,
}

impl Views {
    /// Plans every OCSF view of [`Table::ALL`] with `base`'s functions over
    /// stand-ins with the schemas of `tables`.
    pub fn plan(base: &SessionState, tables: &LakeTables) -> Result<Views> {
        let catalogs = Arc::new(MemoryCatalogProviderList::new());
        let catalog = Arc::new(MemoryCatalogProvider::new());
        let schema = Arc::new(MemorySchemaProvider::new());
        let options = base.config().options();
        catalog.register_schema(&options.catalog.default_schema, schema.clone())?;
        catalogs.register_catalog(options.catalog.default_catalog.clone(), catalog);
        let state = SessionStateBuilder::new_from_existing(base.clone())
            .with_catalog_list(catalogs)
            .build();
        let mut plans = HashMap::new();
        for table in Table::ALL {
            let Some(class) = table.ocsf() else { continue };
            let source = table.source();
            let stand_in = Unbound {
                schema: tables.provider(source).schema(),
            };
            // The view's source is the only table its SQL can name.
            schema.register_table(source.name().to_owned(), Arc::new(stand_in))?;
            // Planning reads nothing: the stand-in is only asked its schema.
            let plan = futures::executor::block_on(state.create_logical_plan(&class.sql()));
            schema.deregister_table(source.name())?;
            plans.insert(table, plan?);
        }
        Ok(Views { plans })
    }

    /// The schema of the OCSF view `table`.
    pub fn schema(&self, table: Table) -> Option<SchemaRef> {
        self.plans
            .get(&table)
            .map(|plan| Arc::new(plan.schema().as_arrow().clone()))
    }

    /// The OCSF view `table` reading `source`, the session's scoped
    /// provider of [`Table::source`].
    pub fn bind(&self, table: Table, source: Arc<dyn TableProvider>) -> Result<ViewTable> {
        let (Some(plan), Some(class)) = (self.plans.get(&table), table.ocsf()) else {
            return plan_err!("{} is not an OCSF view", table.name());
        };
        let name = table.source().name();
        let mut bound = 0;
        let plan = plan
            .clone()
            .transform_up(|node| match node {
                LogicalPlan::TableScan(mut scan) if scan.table_name.table() == name => {
                    scan.source = provider_as_source(Arc::clone(&source));
                    bound += 1;
                    Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
                }
                LogicalPlan::TableScan(scan) => {
                    plan_err!("the OCSF view {} reads {}", table.name(), scan.table_name)
                }
                other => Ok(Transformed::no(other)),
            })?
            .data;
        if bound != 1 {
            return plan_err!(
                "the OCSF view {} scans {name} {bound} times, not once",
                table.name()
            );
        }
        Ok(ViewTable::new(plan, Some(class.sql())))
    }
}

/// A lake table's schema with nothing behind it: what a view is planned
/// over before a session binds it to its scoped table.
#[derive(Debug)]
struct Unbound {
    schema: SchemaRef,
}

#[async_trait]
impl TableProvider for Unbound {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        _state: &dyn Session,
        _projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(DataFusionError::Internal(
            "an OCSF view was not bound to a session's tables".into(),
        ))
    }
}
