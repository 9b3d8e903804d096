//! Planner rules of our own, added to DataFusion's.
//!
//! [`CountBesideDistinct`]: investigations often ask, per group, how many
//! calls and how many distinct users (`count(*)`, `count(DISTINCT user_id)`).
//! DataFusion plans a single `DISTINCT` argument as a two-level group-by (by
//! the group and the distinct value, then by the group), which is several
//! times faster than its per-group distinct sets, but only when the other
//! aggregates are `sum`, `min` or `max` (`single_distinct_to_groupby`). This
//! rule, run just before it, restates each plain `count` in a grouped
//! aggregate that has one distinct argument as a `sum` of ones, which is the
//! same number for every group a `GROUP BY` produces (each has at least one
//! row), so DataFusion's rewrite applies.

use std::sync::Arc;

use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result};
use datafusion::execution::SessionStateBuilder;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::logical_expr::expr::{AggregateFunction, AggregateFunctionParams};
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, Projection, lit, when};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{Optimizer, OptimizerConfig, OptimizerRule};

/// The rule DataFusion's single-distinct rewrite is named by.
const SINGLE_DISTINCT: &str = "single_distinct_aggregation_to_group_by";

/// Adds our rules to `builder`'s optimizer, each where it must run.
pub fn install(builder: SessionStateBuilder) -> SessionStateBuilder {
    let mut rules = Optimizer::new().rules;
    let at = rules
        .iter()
        .position(|rule| rule.name() == SINGLE_DISTINCT)
        .unwrap_or(0);
    rules.insert(at, Arc::new(CountBesideDistinct));
    builder.with_optimizer_rules(rules)
}

/// See the module documentation.
#[derive(Debug, Default)]
pub struct CountBesideDistinct;

impl OptimizerRule for CountBesideDistinct {
    fn name(&self) -> &str {
        "count_beside_single_distinct"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(aggregate) = plan else {
            return Ok(Transformed::no(plan));
        };
        if !applies(&aggregate) {
            return Ok(Transformed::no(LogicalPlan::Aggregate(aggregate)));
        }
        let aggr_expr = aggregate.aggr_expr.iter().map(count_as_sum).collect();
        let rewritten = Aggregate::try_new(
            Arc::clone(&aggregate.input),
            aggregate.group_expr.clone(),
            aggr_expr,
        )?;
        // The same columns under the same names as before.
        let names = rewritten
            .schema
            .iter()
            .zip(aggregate.schema.iter())
            .map(|((qualifier, field), (old_qualifier, old_field))| {
                Expr::Column(Column::new(qualifier.cloned(), field.name()))
                    .alias_qualified(old_qualifier.cloned(), old_field.name())
            })
            .collect();
        let projection = Projection::try_new(names, Arc::new(LogicalPlan::Aggregate(rewritten)))?;
        Ok(Transformed::yes(LogicalPlan::Projection(projection)))
    }
}

/// A grouped aggregate (no grouping sets) whose distinct aggregates all take
/// the same one argument, with a plain `count` to restate and otherwise only
/// `sum`, `min` and `max`: what DataFusion's rewrite takes once the counts
/// are sums.
fn applies(aggregate: &Aggregate) -> bool {
    if aggregate.group_expr.is_empty()
        || matches!(aggregate.group_expr.first(), Some(Expr::GroupingSet(_)))
    {
        return false;
    }
    let mut distinct_arg = None;
    let mut counts = 0;
    for expr in &aggregate.aggr_expr {
        let Expr::AggregateFunction(AggregateFunction { func, params }) = expr else {
            return false;
        };
        if params.filter.is_some() || !params.order_by.is_empty() {
            return false;
        }
        if params.distinct {
            match (&params.args[..], distinct_arg) {
                ([arg], None) => distinct_arg = Some(arg),
                ([arg], Some(seen)) if seen == arg => {}
                _ => return false,
            }
            continue;
        }
        match func.name().to_lowercase().as_str() {
            "count" if params.args.len() == 1 => counts += 1,
            "sum" | "min" | "max" => {}
            _ => return false,
        }
    }
    distinct_arg.is_some() && counts > 0
}

/// `count(x)` as `sum(CASE WHEN x IS NOT NULL THEN 1 ELSE 0 END)`, and
/// `count(*)` (a count of a literal) as `sum(1)`; anything else as it is.
fn count_as_sum(expr: &Expr) -> Expr {
    let Expr::AggregateFunction(AggregateFunction {
        func,
        params: AggregateFunctionParams { distinct, args, .. },
    }) = expr
    else {
        return expr.clone();
    };
    if *distinct || !func.name().eq_ignore_ascii_case("count") {
        return expr.clone();
    }
    let one = match &args[0] {
        Expr::Literal(value, _) if !value.is_null() => lit(1i64),
        arg => when(arg.clone().is_not_null(), lit(1i64))
            .otherwise(lit(0i64))
            .expect("a CASE with one branch and an ELSE"),
    };
    Expr::AggregateFunction(AggregateFunction::new_udf(
        sum_udaf(),
        vec![one],
        false,
        None,
        vec![],
        None,
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::execution::SessionStateBuilder;
    use datafusion::prelude::SessionContext;

    fn context(with_rule: bool) -> SessionContext {
        let builder = SessionStateBuilder::new().with_default_features();
        let builder = if with_rule {
            super::install(builder)
        } else {
            builder
        };
        let ctx = SessionContext::new_with_state(builder.build());
        // Groups with NULLs in the counted and the distinct columns, and a
        // group whose counted column is NULL throughout.
        let tenants = ["a", "a", "a", "a", "b", "b", "c", "c", "c"];
        let users = [
            Some("u1"),
            Some("u1"),
            Some("u2"),
            None,
            Some("u3"),
            Some("u3"),
            None,
            None,
            Some("u4"),
        ];
        let tools = [
            Some("x"),
            None,
            Some("y"),
            Some("x"),
            None,
            None,
            Some("z"),
            Some("z"),
            None,
        ];
        let cost = [1, 2, 3, 4, 5, 6, 7, 8, 9];
        let schema = Arc::new(Schema::new(vec![
            Field::new("tenant", DataType::Utf8, false),
            Field::new("user", DataType::Utf8, true),
            Field::new("tool", DataType::Utf8, true),
            Field::new("cost", DataType::Int64, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(tenants.to_vec())),
                Arc::new(StringArray::from(users.to_vec())),
                Arc::new(StringArray::from(tools.to_vec())),
                Arc::new(Int64Array::from(cost.to_vec())),
            ],
        )
        .unwrap();
        ctx.register_batch("t", batch).unwrap();
        ctx
    }

    async fn run(ctx: &SessionContext, sql: &str) -> (String, String) {
        let df = ctx.sql(sql).await.unwrap();
        let plan = format!(
            "{}",
            df.clone().into_optimized_plan().unwrap().display_indent()
        );
        let batches = df.collect().await.unwrap();
        (pretty_format_batches(&batches).unwrap().to_string(), plan)
    }

    #[tokio::test]
    async fn counts_beside_a_distinct_count_answer_as_before_through_the_two_level_group_by() {
        let sql = "SELECT tenant, count(*) AS calls, count(tool) AS with_tool, \
                   count(DISTINCT user) AS users, sum(cost) AS cost, max(tool) AS last_tool \
                   FROM t GROUP BY tenant ORDER BY tenant";
        let (expected, plain_plan) = run(&context(false), sql).await;
        let (got, plan) = run(&context(true), sql).await;
        assert_eq!(got, expected, "{plan}");
        assert!(
            expected.contains("| a      | 4     | 3         | 2     | 10   | y         |"),
            "{expected}"
        );
        assert!(
            expected.contains("| c      | 3     | 2         | 1     | 24   | z         |"),
            "{expected}"
        );
        // Without the rule DataFusion keeps per-group distinct sets; with it,
        // the distinct argument becomes a grouping key.
        assert!(
            plain_plan.contains("count(DISTINCT t.user)"),
            "{plain_plan}"
        );
        assert!(!plan.contains("DISTINCT"), "{plan}");
    }

    #[tokio::test]
    async fn ungrouped_and_other_aggregates_are_left_alone() {
        for sql in [
            // An empty input must still count 0, which a sum would not.
            "SELECT count(*), count(DISTINCT user) FROM t WHERE cost > 100",
            "SELECT tenant, count(*), count(DISTINCT user), avg(cost) FROM t GROUP BY tenant ORDER BY tenant",
            "SELECT tenant, count(*), count(DISTINCT user), count(DISTINCT tool) FROM t GROUP BY tenant ORDER BY tenant",
        ] {
            let (expected, plain_plan) = run(&context(false), sql).await;
            let (got, plan) = run(&context(true), sql).await;
            assert_eq!(got, expected, "{sql}");
            assert_eq!(plan, plain_plan, "{sql}");
        }
    }
}
