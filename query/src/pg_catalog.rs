//! The Postgres system catalog, for SQL clients: what psql's `\d`, DBeaver's
//! schema browser and Metabase's sync ask before they run a query.
//!
//! Built on datafusion-pg-catalog. Its tables describe the tables the
//! principal may read (see [`crate::session`]), and nothing else: no other
//! table, and no statistic (row counts and sizes read as 0). The static
//! tables (`pg_type`, `pg_proc`, …) are loaded once per engine. Object ids
//! must not change between a client's queries (psql's `\d` looks a table's
//! oid up, then its columns by that oid, in two sessions), so there is one
//! provider, with its oid assignments, per set of readable tables, and it
//! lists them in a fixed order.
//!
//! Clients' catalog queries use Postgres syntax DataFusion does not parse
//! (`OPERATOR(pg_catalog.~)`, `COLLATE pg_catalog.default`, `'t'::regclass`),
//! so Postgres-wire queries that read `pg_catalog` are rewritten first
//! ([`PgCatalog::parse_catalog_query`]).

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::SchemaProvider;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::session_state::SessionState;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement;
use datafusion::sql::sqlparser::ast::{Statement as SqlStatement, visit_relations};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion_pg_catalog::pg_catalog::catalog_info::CatalogInfo;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::{
    PG_CATALOG_TABLES, PgCatalogSchemaProvider, PgCatalogStaticTables,
};
use datafusion_pg_catalog::setup_pg_catalog;
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use crate::tables::Table;

/// The schema name clients look the catalog up by.
pub const SCHEMA: &str = "pg_catalog";

/// What every session shares: the static tables, the SQL rewriter, and a
/// provider per set of readable tables.
#[derive(Debug)]
pub struct PgCatalog {
    catalog: String,
    schema: String,
    static_tables: Arc<PgCatalogStaticTables>,
    parser: PostgresCompatibilityParser,
    providers: Mutex<HashMap<Vec<Table>, Arc<dyn SchemaProvider>>>,
}

impl PgCatalog {
    /// Installs the Postgres functions clients call (`format_type`,
    /// `pg_table_is_visible`, `has_table_privilege`, …) and type names
    /// (`regclass`, …) into `base`, and loads the static tables.
    pub fn install(base: SessionState) -> Result<(SessionState, PgCatalog)> {
        let options = &base.config().options().catalog;
        let (catalog, schema) = (
            options.default_catalog.clone(),
            options.default_schema.clone(),
        );
        let ctx = SessionContext::new_with_state(base);
        setup_pg_catalog(&ctx, &catalog, EmptyContextProvider).map_err(|e| *e)?;
        let pg = PgCatalog {
            catalog,
            schema,
            static_tables: Arc::new(PgCatalogStaticTables::try_new()?),
            parser: PostgresCompatibilityParser::new(),
            providers: Mutex::new(HashMap::new()),
        };
        Ok((ctx.state(), pg))
    }

    /// The `pg_catalog` schema for a session that reads `tables`.
    pub fn schema(&self, tables: &[(Table, SchemaRef)]) -> Result<Arc<dyn SchemaProvider>> {
        let key: Vec<Table> = tables.iter().map(|(t, _)| *t).collect();
        let mut providers = self.providers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(provider) = providers.get(&key) {
            return Ok(Arc::clone(provider));
        }
        let listing = Listing {
            catalog: self.catalog.clone(),
            schema: self.schema.clone(),
            tables: tables
                .iter()
                .map(|(t, s)| (t.name(), Arc::clone(s)))
                .collect(),
        };
        let provider: Arc<dyn SchemaProvider> = Arc::new(PgCatalogSchemaProvider::try_new(
            listing,
            Arc::clone(&self.static_tables),
            EmptyContextProvider,
        )?);
        providers.insert(key, Arc::clone(&provider));
        Ok(provider)
    }

    /// A client's catalog query, rewritten into what DataFusion plans; `None`
    /// for anything else, which the caller parses the usual way.
    ///
    /// Only statements that read `pg_catalog` relations are taken: the
    /// rewriter also blanks correlated subqueries in select lists and caps
    /// scalar subqueries at one row, which suits a client's introspection
    /// but would quietly change an investigator's answer.
    pub fn parse_catalog_query(&self, sql: &str) -> Option<Statement> {
        // Every catalog relation, and the schema, is named `pg_…`: most
        // queries are spared a second parse.
        let names_pg = sql
            .as_bytes()
            .windows(3)
            .any(|w| w.eq_ignore_ascii_case(b"pg_"));
        if !names_pg {
            return None;
        }
        // Judged on what the client wrote: the rewriter replaces some catalog
        // queries it cannot translate by an empty `SELECT … WHERE false`.
        let written = Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?;
        if !written.iter().any(reads_catalog) {
            return None;
        }
        let mut statements = self.parser.parse(sql).ok()?;
        if statements.len() != 1 {
            return None;
        }
        statements.pop().map(|s| Statement::Statement(Box::new(s)))
    }
}

/// Whether `statement` reads a relation of `pg_catalog`, named as such
/// (`pg_catalog.pg_class`) or bare (`pg_class`, on Postgres' search path).
fn reads_catalog(statement: &SqlStatement) -> bool {
    let mut found = false;
    let _ = visit_relations(statement, |name| {
        let parts: Vec<&str> = name
            .0
            .iter()
            .filter_map(|part| part.as_ident().map(|i| i.value.as_str()))
            .collect();
        found |= match parts.as_slice() {
            [.., schema, _] => *schema == SCHEMA,
            [table] => PG_CATALOG_TABLES.contains(table),
            [] => false,
        };
        ControlFlow::<()>::Continue(())
    });
    found
}

/// What `pg_catalog` describes: the readable tables, in one schema, in a
/// fixed order. (They are tenant-filtered views in the session, but to a
/// client they are the tables: `\dt` lists them, DBeaver shows them as such.)
#[derive(Debug, Clone)]
struct Listing {
    catalog: String,
    schema: String,
    tables: Vec<(&'static str, SchemaRef)>,
}

impl Listing {
    fn table(&self, catalog: &str, schema: &str, table: &str) -> Option<&SchemaRef> {
        if catalog != self.catalog || schema != self.schema {
            return None;
        }
        self.tables
            .iter()
            .find(|(name, _)| *name == table)
            .map(|(_, s)| s)
    }
}

#[async_trait]
impl CatalogInfo for Listing {
    async fn catalog_names(&self) -> Result<Vec<String>, DataFusionError> {
        Ok(vec![self.catalog.clone()])
    }

    async fn schema_names(&self, catalog: &str) -> Result<Option<Vec<String>>, DataFusionError> {
        Ok((catalog == self.catalog).then(|| vec![self.schema.clone(), SCHEMA.to_owned()]))
    }

    async fn table_names(
        &self,
        catalog: &str,
        schema: &str,
    ) -> Result<Option<Vec<String>>, DataFusionError> {
        if catalog != self.catalog {
            return Ok(None);
        }
        Ok(Some(if schema == self.schema {
            self.tables
                .iter()
                .map(|(name, _)| name.to_string())
                .collect()
        } else {
            Vec::new()
        }))
    }

    async fn table_schema(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<SchemaRef>, DataFusionError> {
        Ok(self.table(catalog, schema, table).cloned())
    }

    async fn table_type(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<TableType>, DataFusionError> {
        Ok(self.table(catalog, schema, table).map(|_| TableType::Base))
    }
}
