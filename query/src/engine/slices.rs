//! Cancellation that takes effect: a query's task can only be aborted when it
//! yields, and DataFusion operators that find their input always ready (an
//! aggregate over a cross or nested-loop join) loop for seconds without
//! yielding: in a debug build a cancelled `events a, events b, events c,
//! events d` join held its thread 3 s past its 504. [`TimeSlices`], a
//! physical rule run last, puts a [`Slice`] above every operator's input;
//! after [`SLICE`] of batches in a row it hands its batch over at the next
//! poll and returns `Pending` once (waking itself at once), so the task
//! yields and an abort drops it.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr, PlanProperties,
};
use futures::Stream;

/// The longest a query's task runs on ready batches before it yields.
pub const SLICE: Duration = Duration::from_millis(10);

/// See the module documentation.
#[derive(Debug)]
pub struct TimeSlices;

impl PhysicalOptimizerRule for TimeSlices {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = plan
            .transform_up(|node| {
                if node.children().is_empty() || node.is::<Slice>() {
                    return Ok(Transformed::no(node));
                }
                let children = node
                    .children()
                    .into_iter()
                    .map(|child| {
                        if child.is::<Slice>() {
                            Arc::clone(child)
                        } else {
                            Arc::new(Slice {
                                input: Arc::clone(child),
                            }) as Arc<dyn ExecutionPlan>
                        }
                    })
                    .collect();
                #[allow(deprecated)]
                let node = node.with_new_children(children)?;
                Ok(Transformed::yes(node))
            })
            .map(|t| t.data)?;
        Ok(plan)
    }

    fn name(&self) -> &str {
        "time_slices"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Passes its input through, yielding after [`SLICE`] of ready batches.
#[derive(Debug)]
pub struct Slice {
    input: Arc<dyn ExecutionPlan>,
}

impl DisplayAs for Slice {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "Slice")
    }
}

impl ExecutionPlan for Slice {
    fn name(&self) -> &str {
        "Slice"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children
            .pop()
            .ok_or_else(|| DataFusionError::Internal("Slice takes one child".to_owned()))?;
        Ok(Arc::new(Slice { input }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        Ok(Box::pin(SliceStream {
            input: self.input.execute(partition, context)?,
            since: None,
            held: None,
        }))
    }
}

struct SliceStream {
    input: SendableRecordBatchStream,
    /// When the current run of ready batches began.
    since: Option<Instant>,
    /// A batch kept back while the task yields.
    held: Option<Result<RecordBatch>>,
}

impl Stream for SliceStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(held) = self.held.take() {
            self.since = None;
            return Poll::Ready(Some(held));
        }
        match self.input.as_mut().poll_next(cx) {
            Poll::Ready(Some(item)) => {
                let now = Instant::now();
                let since = *self.since.get_or_insert(now);
                if now.duration_since(since) >= SLICE {
                    self.held = Some(item);
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                Poll::Ready(Some(item))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                self.since = None;
                Poll::Pending
            }
        }
    }
}

impl RecordBatchStream for SliceStream {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        self.input.schema()
    }
}
