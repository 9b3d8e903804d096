//! Tenant isolation, in one place.
//!
//! Every query runs in a session built for its principal. The session's
//! catalog holds, for each table the principal's role may read, a
//! [`ScopedTable`] named after the table: the lake's provider with the
//! principal's tenant filter applied inside its scan, below a barrier that
//! no predicate of the query is moved across (see [`scoped`]). The
//! unfiltered providers are never registered under any name, so no SQL can
//! name them: not `events`, not a qualified `datafusion.public.events`, not
//! `information_schema`, which lists only these tables. Whatever the query
//! does above the scan (OR-tricks, subqueries, joins, aggregates, failing
//! casts), its expressions see only rows the filter let through, so neither
//! its results nor its error messages can carry another tenant's values.
//!
//! The OCSF views (`ocsf_api_activity`, `ocsf_detection_finding`) are plans
//! over the session's scoped `events` and `alerts` ([`ocsf`]): they add no
//! isolation of their own and need none.
//!
//! The session's `pg_catalog` ([`crate::pg_catalog`]) describes the same
//! tables, and only those.

pub mod ocsf;
pub mod scoped;

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider,
};
use datafusion::datasource::TableProvider;
use datafusion::error::Result;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::session_state::SessionState;
use datafusion::functions_nested::expr_fn::{array_has_all, make_array};
use datafusion::logical_expr::{col, lit};
use datafusion::prelude::{Expr, SessionContext};

use crate::auth::{Principal, Tenants};
use crate::pg_catalog::{self, PgCatalog};
use crate::tables::{LakeTables, Table};

pub use scoped::ScopedTable;

/// Builds sessions: shared configuration, functions, memory pool and table
/// providers; a fresh catalog per principal.
#[derive(Clone)]
pub struct Sessions {
    base: SessionState,
    tables: LakeTables,
    views: ocsf::Views,
    pg_catalog: Arc<PgCatalog>,
}

impl Sessions {
    /// Sessions like `base` (with the Postgres catalog's functions added)
    /// over `tables`.
    pub fn new(base: SessionState, tables: LakeTables) -> Result<Sessions> {
        let (base, pg_catalog) = PgCatalog::install(base)?;
        let views = ocsf::Views::plan(&base, &tables)?;
        Ok(Sessions {
            base,
            tables,
            views,
            pg_catalog: Arc::new(pg_catalog),
        })
    }

    /// The columns of `table`.
    pub fn schema(&self, table: Table) -> SchemaRef {
        match self.views.schema(table) {
            Some(view) => view,
            None => self.tables.provider(table).schema(),
        }
    }

    pub fn tables(&self) -> &LakeTables {
        &self.tables
    }

    pub fn pg_catalog(&self) -> &PgCatalog {
        &self.pg_catalog
    }

    /// Whether `principal` may read `table` at all.
    pub fn may_read(principal: &Principal, table: Table) -> bool {
        if principal.role < table.min_role() {
            return false;
        }
        // Quarantined input could not be parsed, so its tenant is unknown:
        // only a principal trusted with every tenant sees it.
        table.source() != Table::Quarantine || principal.tenants == Tenants::All
    }

    /// A session that sees only what `principal` may see.
    pub fn for_principal(&self, principal: &Principal) -> Result<SessionContext> {
        let catalogs = Arc::new(MemoryCatalogProviderList::new());
        let catalog = Arc::new(MemoryCatalogProvider::new());
        let schema = Arc::new(MemorySchemaProvider::new());
        let options = self.base.config().options();
        catalog.register_schema(&options.catalog.default_schema, schema)?;
        catalogs.register_catalog(options.catalog.default_catalog.clone(), catalog.clone());
        let state = SessionStateBuilder::new_from_existing(self.base.clone())
            .with_catalog_list(catalogs)
            .build();
        let ctx = SessionContext::new_with_state(state);
        let mut readable = Vec::new();
        for table in Table::ALL {
            if !Self::may_read(principal, table) {
                continue;
            }
            let source = table.source();
            let scoped = Arc::new(ScopedTable::new(
                self.tables.provider(source),
                tenant_filter(source, &principal.tenants),
                tenant_columns(source).to_vec(),
            ));
            let provider: Arc<dyn TableProvider> = match table.ocsf() {
                None => scoped,
                Some(_) => Arc::new(self.views.bind(table, scoped)?),
            };
            readable.push((table, provider.schema()));
            ctx.register_table(table.name(), provider)?;
        }
        catalog.register_schema(pg_catalog::SCHEMA, self.pg_catalog.schema(&readable)?)?;
        Ok(ctx)
    }
}

/// The columns [`tenant_filter`] reads.
fn tenant_columns(table: Table) -> &'static [&'static str] {
    match table {
        Table::Events | Table::InvalidFields | Table::Alerts | Table::AlertTriage => &["tenant_id"],
        Table::QueryAudit => &["tenants"],
        // Views: scoped through the table they read (`Table::source`).
        Table::Quarantine | Table::OcsfApiActivity | Table::OcsfDetectionFinding => &[],
    }
}

/// The predicate a table's rows must meet for `tenants`; none for all.
fn tenant_filter(table: Table, tenants: &Tenants) -> Option<Expr> {
    let Tenants::Only(names) = tenants else {
        return None;
    };
    let names: Vec<Expr> = names.iter().map(|t| lit(t.as_str())).collect();
    Some(match table {
        Table::Events | Table::InvalidFields | Table::Alerts | Table::AlertTriage => {
            col("tenant_id").in_list(names, false)
        }
        // An admin restricted to some tenants sees the queries of principals
        // restricted to a subset of them.
        Table::QueryAudit => array_has_all(make_array(names), col("tenants")),
        // Never reached: see `may_read`, and views are scoped through the
        // table they read. Deny every row if it ever is.
        Table::Quarantine | Table::OcsfApiActivity | Table::OcsfDetectionFinding => lit(false),
    })
}
