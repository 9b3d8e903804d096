//! One physical plan node for the engine's own wrappers: each passes its one
//! input's batches up with the input's schema, partitioning and order, and
//! differs only in what it does when it is executed (count, cut, yield, or
//! nothing but stand in the way of the optimizer). A wrapper implements
//! [`Pass`]; the plan holds a [`PassThrough`] of it.
//!
//! No filter, limit, sort, projection or dynamic filter is pushed through a
//! `PassThrough` (DataFusion's defaults for a node that does not say), and it
//! reports unknown statistics.

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr,
    PlanProperties, ReplaceChildrenOptions,
};

/// What a [`PassThrough`] does. Copies of a node made by the optimizer or
/// between rounds of a recursive query share one `Pass`.
pub trait Pass: fmt::Debug + Send + Sync + 'static {
    /// The node's name in plans.
    const NAME: &'static str;

    /// Whether the input may start; by default it may.
    fn admit(&self) -> Result<()> {
        Ok(())
    }

    /// The stream the node gives for its input's; by default the input's.
    fn stream(
        &self,
        input: SendableRecordBatchStream,
        _context: &TaskContext,
    ) -> SendableRecordBatchStream {
        input
    }

    /// What EXPLAIN shows after the name, such as `max=100`.
    fn details(&self) -> Option<String> {
        None
    }
}

/// `plan` with a [`PassThrough`] of `P` above input `i` of every node for
/// which `wraps(node, i)` holds, and not twice above one input.
pub fn wrap_inputs<P: Pass>(
    plan: Arc<dyn ExecutionPlan>,
    wraps: impl Fn(&dyn ExecutionPlan, usize) -> bool,
    pass: impl Fn() -> P,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        if node.is::<PassThrough<P>>() {
            return Ok(Transformed::no(node));
        }
        let mut changed = false;
        let children = node
            .children()
            .into_iter()
            .enumerate()
            .map(|(i, child)| {
                if child.is::<PassThrough<P>>() || !wraps(node.as_ref(), i) {
                    return Arc::clone(child);
                }
                changed = true;
                PassThrough::wrap(Arc::clone(child), pass())
            })
            .collect();
        if !changed {
            return Ok(Transformed::no(node));
        }
        let options = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute);
        Ok(Transformed::yes(node.replace_children(children, options)?))
    })
    .map(|t| t.data)
}

/// A plan node that runs its input through a [`Pass`].
#[derive(Debug)]
pub struct PassThrough<P> {
    input: Arc<dyn ExecutionPlan>,
    pass: Arc<P>,
}

impl<P: Pass> PassThrough<P> {
    /// `input` run through `pass`.
    pub fn wrap(input: Arc<dyn ExecutionPlan>, pass: P) -> Arc<dyn ExecutionPlan> {
        Arc::new(PassThrough {
            input,
            pass: Arc::new(pass),
        })
    }
}

impl<P: Pass> DisplayAs for PassThrough<P> {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pass.details() {
            Some(details) => write!(f, "{}: {details}", P::NAME),
            None => f.write_str(P::NAME),
        }
    }
}

impl<P: Pass> ExecutionPlan for PassThrough<P> {
    fn name(&self) -> &str {
        P::NAME
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        datafusion::common::assert_eq_or_internal_err!(
            children.len(),
            1,
            "{} takes one child",
            P::NAME
        );
        Ok(Arc::new(PassThrough {
            input: children.swap_remove(0),
            pass: Arc::clone(&self.pass),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.pass.admit()?;
        let input = self.input.execute(partition, Arc::clone(&context))?;
        Ok(self.pass.stream(input, &context))
    }
}
