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
//! The session's `pg_catalog` ([`crate::pg_catalog`]) describes the same
//! tables, and only those.

pub mod scoped;

use std::sync::Arc;

use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, MemoryCatalogProvider, MemoryCatalogProviderList,
    MemorySchemaProvider,
};
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
    pg_catalog: Arc<PgCatalog>,
}

impl Sessions {
    /// Sessions like `base` (with the Postgres catalog's functions added)
    /// over `tables`.
    pub fn new(base: SessionState, tables: LakeTables) -> Result<Sessions> {
        let (base, pg_catalog) = PgCatalog::install(base)?;
        Ok(Sessions {
            base,
            tables,
            pg_catalog: Arc::new(pg_catalog),
        })
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
        table != Table::Quarantine || principal.tenants == Tenants::All
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
            let provider = self.tables.provider(table);
            readable.push((table, provider.schema()));
            let scoped = ScopedTable::new(
                provider.clone(),
                tenant_filter(table, &principal.tenants),
                tenant_columns(table).to_vec(),
            );
            ctx.register_table(table.name(), Arc::new(scoped))?;
        }
        catalog.register_schema(pg_catalog::SCHEMA, self.pg_catalog.schema(&readable)?)?;
        Ok(ctx)
    }
}

/// The columns [`tenant_filter`] reads.
fn tenant_columns(table: Table) -> &'static [&'static str] {
    match table {
        Table::Events | Table::InvalidFields | Table::Alerts => &["tenant_id"],
        Table::QueryAudit => &["tenants"],
        Table::Quarantine => &[],
    }
}

/// The predicate a table's rows must meet for `tenants`; none for all.
fn tenant_filter(table: Table, tenants: &Tenants) -> Option<Expr> {
    let Tenants::Only(names) = tenants else {
        return None;
    };
    let names: Vec<Expr> = names.iter().map(|t| lit(t.as_str())).collect();
    Some(match table {
        Table::Events | Table::InvalidFields | Table::Alerts => {
            col("tenant_id").in_list(names, false)
        }
        // An admin restricted to some tenants sees the queries of principals
        // restricted to a subset of them.
        Table::QueryAudit => array_has_all(make_array(names), col("tenants")),
        // Never reached: see `may_read`. Deny every row if it ever is.
        Table::Quarantine => lit(false),
    })
}
