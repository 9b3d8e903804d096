//! `query.max_recursion_depth`: a recursive CTE runs its recursive term
//! again for as long as the last round produced rows, so `WITH RECURSIVE r(n)
//! AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) …` never ends on its own, and
//! DataFusion 55 has no iteration limit. [`LimitRecursion`], a physical
//! optimizer rule run last, wraps the recursive term of every
//! `RecursiveQueryExec` in a [`CountRounds`] node that fails the query when
//! the term is started more than the limit's times.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::recursive_query::RecursiveQueryExec;

use crate::passthrough::{Pass, PassThrough};

/// See the module documentation.
#[derive(Debug)]
pub struct LimitRecursion {
    pub max: usize,
}

impl PhysicalOptimizerRule for LimitRecursion {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(recursive) = node.downcast_ref::<RecursiveQueryExec>() else {
                return Ok(Transformed::no(node));
            };
            let term = Arc::clone(recursive.recursive_term());
            if term.is::<PassThrough<CountRounds>>() {
                return Ok(Transformed::no(node));
            }
            let counted = PassThrough::wrap(
                term,
                CountRounds {
                    rounds: AtomicUsize::new(0),
                    max: self.max,
                },
            );
            let limited = RecursiveQueryExec::try_new(
                recursive.name().to_owned(),
                recursive.schema(),
                Arc::clone(recursive.static_term()),
                counted,
                recursive.is_distinct(),
            )?;
            Ok(Transformed::yes(Arc::new(limited) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "limit_recursion"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Passes its input through; fails when started more than `max` times.
/// The count is shared by the copies DataFusion makes of the node between
/// rounds (`reset_state`).
#[derive(Debug)]
pub struct CountRounds {
    rounds: AtomicUsize,
    max: usize,
}

impl Pass for CountRounds {
    const NAME: &'static str = "CountRounds";

    fn details(&self) -> Option<String> {
        Some(format!("max={}", self.max))
    }

    fn admit(&self) -> Result<()> {
        let round = self.rounds.fetch_add(1, Ordering::Relaxed) + 1;
        if round > self.max {
            return Err(DataFusionError::Execution(format!(
                "the recursive query ran more than {} rounds; the limit is {} (query.max_recursion_depth)",
                self.max, self.max
            )));
        }
        Ok(())
    }
}
