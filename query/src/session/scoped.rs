//! A lake table as one principal sees it: the tenant filter applied inside
//! the scan, below a barrier that no predicate of the query crosses.
//!
//! A view (`SELECT * FROM t WHERE tenant_id IN (…)`) is not enough: the
//! optimizer merges the view's filter with the query's own predicates, and
//! the Parquet reader may reorder them, so a query's expression can run on a
//! row of another tenant before the tenant filter removes it. If that
//! expression fails (`CAST(user_id AS BIGINT)`), its error message carries
//! the foreign value. Here:
//!
//! - [`ScopedTable::scan`] reads the table, keeps the principal's tenants
//!   (a `FilterExec` on the tenant columns), and wraps the result in
//!   [`TenantBarrier`]. The barrier takes no filter, limit, sort or projection
//!   from above, so DataFusion's physical optimizer (filter pushdown, dynamic
//!   filters from joins and TopK) cannot move a predicate of the query below
//!   it. Every expression of the query sees only the barrier's output.
//! - A query's predicate is handed to the scan (for partition, row-group and
//!   page pruning, and the Parquet row filter) only when it cannot fail on any
//!   value ([`cannot_fail`]): columns, literals, comparisons, `AND`/`OR`/`NOT`,
//!   `IN` lists, `BETWEEN`, null tests and casts that always succeed. Such a
//!   predicate reveals nothing by running on a foreign row first. Every other
//!   predicate runs above the barrier.
//! - The barrier reports unknown statistics, so no count or bound is answered
//!   from the statistics of files that also hold other tenants' rows.

use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::DFSchema;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::Result;
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExecBuilder;

use crate::passthrough::{Pass, PassThrough};

/// A table restricted to some tenants. Built per principal by
/// [`super::Sessions::for_principal`].
#[derive(Debug)]
pub struct ScopedTable {
    inner: Arc<dyn TableProvider>,
    /// Rows the principal may see; `None`: every row.
    tenant_filter: Option<Expr>,
    /// The columns `tenant_filter` reads.
    tenant_columns: Vec<&'static str>,
}

impl ScopedTable {
    /// `inner` as seen through `tenant_filter`, which reads only
    /// `tenant_columns`.
    pub fn new(
        inner: Arc<dyn TableProvider>,
        tenant_filter: Option<Expr>,
        tenant_columns: Vec<&'static str>,
    ) -> ScopedTable {
        ScopedTable {
            inner,
            tenant_filter,
            tenant_columns,
        }
    }
}

#[async_trait]
impl TableProvider for ScopedTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        if self.tenant_filter.is_none() {
            return self.inner.supports_filters_pushdown(filters);
        }
        let schema = self.schema();
        Ok(filters
            .iter()
            .map(|filter| {
                if cannot_fail(filter, &schema) {
                    // Applied below the barrier, with the tenant filter.
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(tenant_filter) = &self.tenant_filter else {
            return self.inner.scan(state, projection, filters, limit).await;
        };
        let schema = self.schema();
        // Below the barrier: the tenant filter, and the query's predicates
        // that cannot fail (see `supports_filters_pushdown`; the check is
        // repeated in case a caller hands over more). DataFusion pushes this
        // filter into the Parquet scan, where it prunes files, row groups and
        // pages, and filters rows as they are decoded.
        let safe: Vec<Expr> = filters
            .iter()
            .filter(|f| cannot_fail(f, &schema))
            .cloned()
            .collect();
        let mut predicate = tenant_filter.clone();
        for filter in &safe {
            predicate = predicate.and(filter.clone());
        }
        // The columns asked for, then those the filter needs.
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..schema.fields().len()).collect(),
        };
        let mut read = wanted.clone();
        let mut needed: Vec<&str> = self.tenant_columns.clone();
        needed.extend(predicate.column_refs().iter().map(|c| c.name.as_str()));
        for name in needed {
            let index = schema.index_of(name)?;
            if !read.contains(&index) {
                read.push(index);
            }
        }
        // Partition predicates among `filters` prune directories here.
        let input = self.inner.scan(state, Some(&read), &safe, None).await?;
        let input_schema = DFSchema::try_from(input.schema())?;
        let predicate = state.create_physical_expr(predicate, &input_schema)?;
        let filtered = FilterExecBuilder::new(predicate, input)
            .apply_projection(Some((0..wanted.len()).collect()))?
            .with_fetch(limit)
            .build()?;
        Ok(PassThrough::wrap(Arc::new(filtered), TenantBarrier))
    }
}

/// Whether `expr` evaluates without error on every row of a table with
/// `schema`, whatever its values: then it may run on rows the principal may
/// not see without revealing anything.
pub fn cannot_fail(expr: &Expr, schema: &SchemaRef) -> bool {
    let scalar = |t: &DataType| {
        t.is_primitive()
            || matches!(
                t,
                DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Utf8View
                    | DataType::Boolean
                    | DataType::Null
            )
    };
    match expr {
        Expr::Column(c) => schema
            .field_with_name(&c.name)
            .map(|f| scalar(f.data_type()))
            .unwrap_or(false),
        Expr::Literal(value, _) => scalar(&value.data_type()),
        Expr::Alias(alias) => cannot_fail(&alias.expr, schema),
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            matches!(
                op,
                Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
                    | Operator::And
                    | Operator::Or
                    | Operator::IsDistinctFrom
                    | Operator::IsNotDistinctFrom
            ) && cannot_fail(left, schema)
                && cannot_fail(right, schema)
        }
        Expr::Not(e)
        | Expr::IsNull(e)
        | Expr::IsNotNull(e)
        | Expr::IsTrue(e)
        | Expr::IsFalse(e)
        | Expr::IsUnknown(e)
        | Expr::IsNotTrue(e)
        | Expr::IsNotFalse(e)
        | Expr::IsNotUnknown(e) => cannot_fail(e, schema),
        Expr::Between(Between {
            expr, low, high, ..
        }) => cannot_fail(expr, schema) && cannot_fail(low, schema) && cannot_fail(high, schema),
        Expr::InList(list) => {
            cannot_fail(&list.expr, schema) && list.list.iter().all(|e| cannot_fail(e, schema))
        }
        Expr::TryCast(cast) => cannot_fail(&cast.expr, schema) && scalar(cast.field.data_type()),
        Expr::Cast(cast) => {
            cannot_fail(&cast.expr, schema)
                && expr_type(&cast.expr, schema)
                    .is_some_and(|from| cast_cannot_fail(&from, cast.field.data_type()))
        }
        _ => false,
    }
}

/// The type of an expression [`cannot_fail`] accepts, where it is plain.
fn expr_type(expr: &Expr, schema: &SchemaRef) -> Option<DataType> {
    match expr {
        Expr::Column(c) => schema
            .field_with_name(&c.name)
            .ok()
            .map(|f| f.data_type().clone()),
        Expr::Literal(value, _) => Some(value.data_type()),
        Expr::Alias(alias) => expr_type(&alias.expr, schema),
        Expr::Cast(cast) => Some(cast.field.data_type().clone()),
        Expr::TryCast(cast) => Some(cast.field.data_type().clone()),
        _ => None,
    }
}

/// Casts that succeed for every value: to text, between text types, and to
/// a wider integer or to a float.
fn cast_cannot_fail(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    if from == to {
        return true;
    }
    let text = |t: &DataType| matches!(t, Utf8 | LargeUtf8 | Utf8View);
    if text(to) {
        return text(from) || from.is_primitive() || matches!(from, Boolean | Null);
    }
    let rank = |t: &DataType| match t {
        Int8 => Some(1),
        Int16 => Some(2),
        Int32 => Some(3),
        Int64 => Some(4),
        _ => None,
    };
    match (rank(from), rank(to)) {
        (Some(a), Some(b)) => a <= b,
        (Some(_), None) => matches!(to, Float32 | Float64),
        _ => matches!((from, to), (Float32, Float64) | (Null, _)),
    }
}

/// Passes its input's batches through unchanged, and nothing through
/// itself: no filter, dynamic filter, limit, sort or projection from above
/// is pushed below it (see [`PassThrough`]). See the module documentation.
#[derive(Debug)]
pub struct TenantBarrier;

impl Pass for TenantBarrier {
    const NAME: &'static str = "TenantBarrier";
}
