//! Joins that can be cancelled while they probe. DataFusion 55's hash and
//! nested-loop joins take one probe-side batch and join all of it against
//! every matching build-side row before they poll again, and they return only
//! once they hold a batch of output. When the join filter matches nothing,
//! the whole join is one poll: `… JOIN … ON x < y` over a million equal rows
//! a side ran for minutes in a poll that no timeout could cut (issue 23), and
//! a hash join on a skewed key with a false filter, or a semi join, does the
//! same. The [`Slice`](super::slices) above the probe input cannot yield
//! inside that poll. Upstream: apache/datafusion#19358 (join operators do
//! not yield); its proposed fix yields between output batches, which a join
//! that emits nothing never reaches.
//!
//! [`ChunkProbes`], a physical rule run before the time slices, puts a
//! [`ProbeChunks`] under the probe side of every hash and nested-loop join.
//! It hands the join its batches in pieces: one row first, then as many as
//! keep the join's work on a piece near [`TARGET`] ([`Pace`]). A join whose
//! probing is cheap soon gets whole batches again; one that compares each
//! probe row with a million build rows gets one row at a time, and the
//! `Slice` above yields between them, so an abort takes effect.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::{RecordBatchStream, SendableRecordBatchStream, TaskContext};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::joins::{HashJoinExec, NestedLoopJoinExec};
use futures::Stream;

use super::slices;
use crate::passthrough::{Pass, wrap_inputs};

/// The work a join should do on one piece of its probe side: a time slice.
pub const TARGET: Duration = super::slices::SLICE;

/// See the module documentation.
#[derive(Debug)]
pub struct ChunkProbes;

impl PhysicalOptimizerRule for ChunkProbes {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // Both joins build on the left and probe with the right input.
        let probe = |node: &dyn ExecutionPlan, input: usize| {
            input == 1 && (node.is::<HashJoinExec>() || node.is::<NestedLoopJoinExec>())
        };
        wrap_inputs(plan, probe, || ProbeChunks)
    }

    fn name(&self) -> &str {
        "chunk_probes"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Cuts its input's batches into pieces sized by a [`Pace`].
#[derive(Debug)]
pub struct ProbeChunks;

impl Pass for ProbeChunks {
    const NAME: &'static str = "ProbeChunks";

    fn stream(
        &self,
        input: SendableRecordBatchStream,
        _context: &TaskContext,
    ) -> SendableRecordBatchStream {
        Box::pin(ChunkStream {
            input,
            rest: None,
            pace: Pace::default(),
            handed: None,
        })
    }
}

/// How many probe rows the join gets at a time: one at first; after a piece
/// that took more than [`TARGET`] as many as would have taken `TARGET`; after
/// one that took less than half of it, twice as many.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    rows: usize,
}

impl Default for Pace {
    fn default() -> Pace {
        Pace { rows: 1 }
    }
}

impl Pace {
    /// Rows in the next piece.
    pub fn rows(self) -> usize {
        self.rows
    }

    /// Learns that the last piece of `rows()` rows took `took`.
    pub fn took(&mut self, took: Duration) {
        if took > TARGET {
            let scaled = self.rows as u128 * TARGET.as_nanos() / took.as_nanos().max(1);
            self.rows = usize::try_from(scaled).unwrap_or(usize::MAX).max(1);
        } else if took < TARGET / 2 {
            self.rows = self.rows.saturating_mul(2);
        }
    }
}

/// When a piece was handed to the join, and where: a piece is timed only
/// when the next poll comes on the same thread with no task having yielded
/// there in between, so that time spent in other tasks is not counted.
struct Handed {
    at: Instant,
    thread: ThreadId,
    yields: u64,
}

struct ChunkStream {
    input: SendableRecordBatchStream,
    /// What is left of the input's last batch.
    rest: Option<RecordBatch>,
    pace: Pace,
    handed: Option<Handed>,
}

impl ChunkStream {
    /// The next piece of `batch`, keeping the remainder.
    fn cut(&mut self, batch: RecordBatch) -> RecordBatch {
        let rows = self.pace.rows();
        if batch.num_rows() <= rows {
            return batch;
        }
        self.rest = Some(batch.slice(rows, batch.num_rows() - rows));
        batch.slice(0, rows)
    }

    fn hand(&mut self, batch: RecordBatch) -> Poll<Option<Result<RecordBatch>>> {
        let piece = self.cut(batch);
        self.handed = Some(Handed {
            at: Instant::now(),
            thread: thread::current().id(),
            yields: slices::yields(),
        });
        Poll::Ready(Some(Ok(piece)))
    }
}

impl Stream for ChunkStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(handed) = self.handed.take()
            && handed.thread == thread::current().id()
            && handed.yields == slices::yields()
        {
            self.pace.took(handed.at.elapsed());
        }
        if let Some(rest) = self.rest.take() {
            return self.hand(rest);
        }
        match self.input.as_mut().poll_next(cx) {
            Poll::Ready(Some(Ok(batch))) => self.hand(batch),
            other => other,
        }
    }
}

impl RecordBatchStream for ChunkStream {
    fn schema(&self) -> arrow::datatypes::SchemaRef {
        self.input.schema()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use arrow::array::{Array, Int64Array};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
    use futures::{StreamExt, stream};

    #[test]
    fn a_slow_join_gets_fewer_rows_and_a_quick_one_more() {
        let mut pace = Pace::default();
        assert_eq!(pace.rows(), 1);
        for _ in 0..13 {
            pace.took(TARGET / 10);
        }
        assert_eq!(pace.rows(), 8192, "cheap probing grows to whole batches");
        // A piece of 8,192 rows took 100 x the target: 81 rows would take it.
        pace.took(TARGET * 100);
        assert_eq!(pace.rows(), 81);
        pace.took(TARGET * 1000);
        assert_eq!(pace.rows(), 1, "never fewer than one row");
        pace.took(TARGET * 3 / 4);
        assert_eq!(pace.rows(), 1, "near the target it stays");
    }

    #[test]
    fn every_probe_row_reaches_the_join_once_in_order() {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batches: Vec<Result<RecordBatch>> = [0..1000i64, 1000..1003, 1003..5000]
            .into_iter()
            .map(|range| {
                let column = Int64Array::from_iter_values(range);
                Ok(RecordBatch::try_new(Arc::clone(&schema), vec![Arc::new(column)]).unwrap())
            })
            .collect();
        let input = Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&schema),
            stream::iter(batches),
        ));
        let chunks = ChunkStream {
            input,
            rest: None,
            pace: Pace::default(),
            handed: None,
        };
        let pieces: Vec<RecordBatch> = futures::executor::block_on(chunks.collect::<Vec<_>>())
            .into_iter()
            .map(|piece| piece.unwrap())
            .collect();
        assert_eq!(pieces[0].num_rows(), 1, "the first piece is one row");
        assert!(pieces.len() > 3, "the batches were cut: {}", pieces.len());
        let rows: Vec<i64> = pieces
            .iter()
            .flat_map(|piece| {
                let column = piece.column(0).as_any().downcast_ref::<Int64Array>();
                column.unwrap().values().to_vec()
            })
            .collect();
        assert_eq!(rows, (0..5000).collect::<Vec<_>>());
        assert!(pieces.iter().all(|piece| !piece.column(0).is_empty()));
    }
}
