//! Cancellation that takes effect: a query's task can only be aborted when it
//! yields, and DataFusion operators that find their input always ready (an
//! aggregate over a cross or nested-loop join) loop for seconds without
//! yielding: in a debug build a cancelled `events a, events b, events c,
//! events d` join held its thread 3 s past its 504. [`TimeSlices`], a
//! physical rule run last, puts a [`Slice`] above every operator's input;
//! after [`SLICE`] of batches in a row it hands its batch over at the next
//! poll and returns `Pending` once (waking itself at once), so the task
//! yields and an abort drops it. The slices also keep each query's account
//! of work, and make a heavy query give way to light ones ([`super::shares`]).

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use futures::{Stream, ready};
use tokio::time::Sleep;

use super::shares::{PAUSE, Share};
use crate::passthrough::{Pass, wrap_inputs};

/// The longest a query's task runs on ready batches before it yields.
pub const SLICE: Duration = Duration::from_millis(2);

/// See the module documentation.
#[derive(Debug)]
pub struct TimeSlices;

impl PhysicalOptimizerRule for TimeSlices {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        wrap_inputs(plan, |_, _| true, || Slice)
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
pub struct Slice;

impl Pass for Slice {
    const NAME: &'static str = "Slice";

    fn stream(
        &self,
        input: SendableRecordBatchStream,
        context: &TaskContext,
    ) -> SendableRecordBatchStream {
        Box::pin(SliceStream {
            input,
            share: context.session_config().get_extension::<Share>(),
            since: None,
            held: None,
            pause: None,
        })
    }
}

thread_local! {
    /// How many times a [`Slice`] on this thread has yielded.
    static YIELDS: Cell<u64> = const { Cell::new(0) };
    /// Time spent in the polls of the [`Slice`]s below the one polling now.
    static BELOW: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// How many times a [`Slice`] on the calling thread has yielded: when it is
/// unchanged and the thread is the same, no task yielded here in between.
pub fn yields() -> u64 {
    YIELDS.with(Cell::get)
}

struct SliceStream {
    input: SendableRecordBatchStream,
    /// The query's account, where the engine runs it.
    share: Option<Arc<Share>>,
    /// When the current run of ready batches began.
    since: Option<Instant>,
    /// A batch kept back while the task yields.
    held: Option<Result<RecordBatch>>,
    /// A heavy query's sleep while a light one runs.
    pause: Option<Pin<Box<Sleep>>>,
}

impl SliceStream {
    /// Polls the input, adding the time spent in it, less that of the
    /// slices below, to the query's account.
    fn poll_input(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<RecordBatch>>> {
        let Some(share) = &self.share else {
            return self.input.as_mut().poll_next(cx);
        };
        let started = Instant::now();
        let outer = BELOW.with(|below| below.replace(Duration::ZERO));
        let polled = self.input.as_mut().poll_next(cx);
        let took = started.elapsed();
        let below = BELOW.with(|below| below.replace(outer + took));
        share.worked(took.saturating_sub(below));
        polled
    }

    fn gives_way(&self) -> bool {
        self.share.as_ref().is_some_and(|share| share.gives_way())
    }

    /// Ends the task's turn: at once, or after a [`PAUSE`] when the query
    /// gives way to a light one.
    fn end_turn(&mut self, cx: &mut Context<'_>) {
        YIELDS.with(|n| n.set(n.get() + 1));
        if self.gives_way() {
            let mut pause = Box::pin(tokio::time::sleep(PAUSE));
            if pause.as_mut().poll(cx).is_pending() {
                self.pause = Some(pause);
                return;
            }
        }
        cx.waker().wake_by_ref();
    }
}

impl Stream for SliceStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.held.is_some() && self.pause.is_none() && self.gives_way() {
            // Resumed after its turn, the query looks again before it works:
            // a lighter query may have come meanwhile.
            self.pause = Some(Box::pin(tokio::time::sleep(PAUSE)));
        }
        while let Some(pause) = &mut self.pause {
            ready!(pause.as_mut().poll(cx));
            self.pause = None;
            if self.gives_way() {
                self.pause = Some(Box::pin(tokio::time::sleep(PAUSE)));
            }
        }
        if let Some(held) = self.held.take() {
            self.since = None;
            return Poll::Ready(Some(held));
        }
        match self.poll_input(cx) {
            Poll::Ready(Some(item)) => {
                let now = Instant::now();
                let since = *self.since.get_or_insert(now);
                if now.duration_since(since) >= SLICE {
                    self.held = Some(item);
                    self.end_turn(cx);
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
