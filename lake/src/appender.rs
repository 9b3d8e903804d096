//! Group commit of small records to one table: the query audit's rows,
//! alerts, anything written a few rows at a time by many callers.
//!
//! A caller [`Appender::append`]s a batch of rows for one partition and
//! waits; a task ([`AppenderTask::run`]) takes what the callers queued,
//! writes one data file per partition and commits them as one Delta
//! version, then answers every caller of that group with the version. So
//! the log grows by at most one version per [`AppenderOptions::interval`]
//! over time, however many callers append, after a burst of up to
//! [`AppenderOptions::burst`] commits that go without waiting: a caller on a
//! table that was quiet waits only for its own commit, and under sustained
//! appends callers wait for the next commit and share it (a token bucket,
//! the generic cell rate algorithm).
//!
//! Invariants:
//! - `append` returns `Ok` only once the commit that holds its rows exists:
//!   the rows are durable and every reader of a later snapshot sees them.
//! - A group is one commit: its rows are all in the table or none is. When
//!   writing or committing fails, every caller of the group gets the error
//!   (files written for it stay orphans, which vacuum removes).
//! - A caller that stops waiting does not withdraw its rows: once queued
//!   they are committed with their group.
//! - On shutdown (the token, or every [`Appender`] dropped) the task stops
//!   taking appends, commits everything already queued, and ends. An append
//!   after that fails with [`AppendError::Stopped`].
//!
//! ```no_run
//! # async fn demo(batch: arrow::array::RecordBatch) -> Result<(), Box<dyn std::error::Error>> {
//! use tooltrail_lake::appender::{Appender, AppenderOptions};
//! use tooltrail_lake::{Location, Metrics, Partition, tables};
//!
//! let lake = Location::parse("/var/lib/tooltrail/lake")?;
//! let options = AppenderOptions::default();
//! let (audit, task) =
//!     Appender::open(&lake, &tables::QUERY_AUDIT, options, Metrics::default()).await?;
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let running = tokio::spawn(task.run(shutdown.clone()));
//! let today = chrono::Utc::now().date_naive();
//! audit.append(Partition::day(today), batch).await?;
//! shutdown.cancel();
//! running.await?;
//! # Ok(())
//! # }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::location::Location;
use crate::metrics::Metrics;
use crate::table::{Commit, Committed, Partition, Table, TableSpec};

/// How an [`Appender`] gathers appends into commits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppenderOptions {
    /// Sustained, the least time from the start of one commit to the start
    /// of the next: appends that arrive meanwhile wait and go into the next
    /// commit together.
    pub interval: Duration,
    /// Commits that may start back to back, without waiting for
    /// `interval`, once the table has been quiet for `burst` intervals.
    pub burst: u32,
    /// Appends queued and not yet taken before `append` waits for room.
    pub capacity: usize,
    /// Most appends in one commit; the rest wait for the next.
    pub max_appends: usize,
    /// zstd level of the data files.
    pub zstd_level: i32,
}

impl Default for AppenderOptions {
    fn default() -> Self {
        AppenderOptions {
            interval: Duration::from_millis(200),
            // Five interactive queries in a row, each a start and an end
            // record, see no wait; a loop of them settles at the interval.
            burst: 10,
            capacity: 1024,
            max_appends: 4096,
            zstd_level: 3,
        }
    }
}

/// Why an append did not commit. Cloned to every caller of a group.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AppendError {
    /// The rows do not fit the table: a caller's bug, nothing was queued.
    #[error("appending to {table}: {problem}")]
    Mismatch {
        table: &'static str,
        problem: String,
    },
    /// Writing or committing the group this append was in failed.
    #[error("appending to {table}: the group commit failed")]
    Commit {
        table: &'static str,
        #[source]
        source: Arc<Error>,
    },
    /// The appender's task has stopped (shutdown) or was dropped before it
    /// reported on this append.
    #[error("appending to {table}: the appender has stopped")]
    Stopped { table: &'static str },
}

impl AppendError {
    /// Whether appending the same rows again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            AppendError::Commit { source, .. } => source.is_retryable(),
            AppendError::Mismatch { .. } | AppendError::Stopped { .. } => false,
        }
    }
}

type Answer = Result<Committed, AppendError>;

/// One caller's rows, and where to answer it.
struct Request {
    partition: Partition,
    batch: RecordBatch,
    done: oneshot::Sender<Answer>,
}

/// Appends rows to one table through its [`AppenderTask`]. Cheap to clone.
#[derive(Clone)]
pub struct Appender {
    spec: &'static TableSpec,
    queue: mpsc::Sender<Request>,
}

impl std::fmt::Debug for Appender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appender")
            .field("table", &self.spec.name)
            .finish_non_exhaustive()
    }
}

/// An append queued and not yet answered; see [`Appender::submit`].
#[must_use = "the rows are committed either way; await it to know when"]
pub struct Pending {
    table: &'static str,
    done: oneshot::Receiver<Answer>,
}

impl Pending {
    /// Waits until the commit that holds the rows exists, or fails.
    pub async fn committed(self) -> Answer {
        self.done
            .await
            .map_err(|_| AppendError::Stopped { table: self.table })?
    }
}

impl Appender {
    /// Opens (or creates) `spec`'s table at `location` now, failing fast,
    /// and returns the appender with the task that commits for it: spawn
    /// [`AppenderTask::run`].
    pub async fn open(
        location: &Location,
        spec: &'static TableSpec,
        options: AppenderOptions,
        metrics: Metrics,
    ) -> Result<(Appender, AppenderTask)> {
        let table = Table::open(location, spec, options.zstd_level, metrics.clone()).await?;
        let (appender, mut task) = Appender::new(location, spec, options, metrics);
        task.table = Some(table);
        Ok((appender, task))
    }

    /// Like [`Appender::open`], for a caller that cannot wait: no IO here,
    /// the task opens the table before its first commit (and, if that fails,
    /// again before the next one; the callers of the failed group get the
    /// error).
    pub fn new(
        location: &Location,
        spec: &'static TableSpec,
        options: AppenderOptions,
        metrics: Metrics,
    ) -> (Appender, AppenderTask) {
        let (queue, requests) = mpsc::channel(options.capacity.max(1));
        let task = AppenderTask {
            spec,
            location: location.clone(),
            metrics,
            options,
            table: None,
            requests,
        };
        (Appender { spec, queue }, task)
    }

    pub fn spec(&self) -> &'static TableSpec {
        self.spec
    }

    /// Appends `batch` (the table's data columns, no partition columns) to
    /// `partition` and waits until it is committed.
    pub async fn append(&self, partition: Partition, batch: RecordBatch) -> Answer {
        self.submit(partition, batch).await?.committed().await
    }

    /// Queues `batch` for `partition` (waiting only for room in the queue)
    /// and returns what tells when it is committed.
    pub async fn submit(
        &self,
        partition: Partition,
        batch: RecordBatch,
    ) -> Result<Pending, AppendError> {
        self.check(&partition, &batch)?;
        let (done, answer) = oneshot::channel();
        let request = Request {
            partition,
            batch,
            done,
        };
        self.queue.send(request).await.map_err(|_| self.stopped())?;
        Ok(Pending {
            table: self.spec.name,
            done: answer,
        })
    }

    /// [`Appender::append`] for a thread outside any async runtime (the task
    /// runs on one elsewhere). Panics if called from async code.
    pub fn blocking_append(&self, partition: Partition, batch: RecordBatch) -> Answer {
        self.check(&partition, &batch)?;
        let (done, answer) = oneshot::channel();
        let request = Request {
            partition,
            batch,
            done,
        };
        self.queue
            .blocking_send(request)
            .map_err(|_| self.stopped())?;
        answer.blocking_recv().map_err(|_| self.stopped())?
    }

    fn stopped(&self) -> AppendError {
        AppendError::Stopped {
            table: self.spec.name,
        }
    }

    /// Refuses rows that could not be committed with the others: one
    /// caller's mistake must not fail its whole group.
    fn check(&self, partition: &Partition, batch: &RecordBatch) -> Result<(), AppendError> {
        let mismatch = |problem: String| AppendError::Mismatch {
            table: self.spec.name,
            problem,
        };
        if partition.values().len() != self.spec.partitions.len() {
            return Err(mismatch(format!(
                "partition {:?} does not have the table's {} values ({})",
                partition.values(),
                self.spec.partitions.len(),
                self.spec.partitions.join(", ")
            )));
        }
        let expected = (self.spec.schema)();
        if batch.schema().fields() != expected.fields() {
            return Err(mismatch(format!(
                "rows with columns ({}) are not the table's ({})",
                names(batch.schema().fields()),
                names(expected.fields())
            )));
        }
        Ok(())
    }
}

fn names(fields: &arrow::datatypes::Fields) -> String {
    fields
        .iter()
        .map(|f| format!("{} {}", f.name(), f.data_type()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// When the next commit may start: at most `burst` back to back, then one
/// per `interval` (the generic cell rate algorithm).
#[derive(Debug)]
struct Pacing {
    interval: Duration,
    /// How far ahead of now the schedule may run: `burst - 1` intervals.
    slack: Duration,
    /// When the schedule is next free: one interval after the last commit
    /// started, or after the schedule's previous free time if that was later.
    free: Option<Instant>,
}

impl Pacing {
    fn new(interval: Duration, burst: u32) -> Pacing {
        Pacing {
            interval,
            slack: interval * burst.saturating_sub(1),
            free: None,
        }
    }

    /// The instant the next commit must wait for, if it is after `now`.
    fn ready_at(&self, now: Instant) -> Option<Instant> {
        let ready = self.free?.checked_sub(self.slack)?;
        (ready > now).then_some(ready)
    }

    /// Books a commit starting at `now`.
    fn start(&mut self, now: Instant) {
        let from = self.free.map_or(now, |free| free.max(now));
        self.free = Some(from + self.interval);
    }
}

/// The task that commits an [`Appender`]'s groups; see the module docs.
pub struct AppenderTask {
    spec: &'static TableSpec,
    location: Location,
    metrics: Metrics,
    options: AppenderOptions,
    /// `None` until opened ([`Appender::new`] opens on the first commit).
    table: Option<Table>,
    requests: mpsc::Receiver<Request>,
}

impl AppenderTask {
    /// Commits groups of appends until `shutdown` is cancelled or every
    /// [`Appender`] is dropped, then commits what is queued and returns.
    /// Failures go to the callers, not here.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut pacing = Pacing::new(self.options.interval, self.options.burst);
        loop {
            let first = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                request = self.requests.recv() => match request {
                    Some(request) => request,
                    None => break,
                },
            };
            let mut group = vec![first];
            let mut stopping = false;
            if let Some(ready) = pacing.ready_at(Instant::now()) {
                let ready = tokio::time::sleep_until(ready);
                tokio::pin!(ready);
                while group.len() < self.options.max_appends {
                    tokio::select! {
                        biased;
                        () = shutdown.cancelled() => {
                            stopping = true;
                            break;
                        }
                        () = &mut ready => break,
                        request = self.requests.recv() => match request {
                            Some(request) => group.push(request),
                            None => {
                                stopping = true;
                                break;
                            }
                        },
                    }
                }
            }
            self.take_queued(&mut group);
            pacing.start(Instant::now());
            self.flush(group).await;
            if stopping {
                break;
            }
        }
        // No more appends; what was queued before is committed.
        self.requests.close();
        loop {
            let mut group = Vec::new();
            self.take_queued(&mut group);
            if group.is_empty() {
                break;
            }
            self.flush(group).await;
        }
        tracing::debug!(table = self.spec.name, "appender stopped");
    }

    /// Adds what is queued now to `group`, up to the most one commit takes.
    fn take_queued(&mut self, group: &mut Vec<Request>) {
        while group.len() < self.options.max_appends {
            match self.requests.try_recv() {
                Ok(request) => group.push(request),
                Err(_) => break,
            }
        }
    }

    /// Commits `group` and answers each of its callers.
    async fn flush(&mut self, group: Vec<Request>) {
        let appends = group.len();
        let answer = match self.commit(&group).await {
            Ok(committed) => {
                tracing::debug!(
                    table = self.spec.name,
                    appends,
                    version = committed.version,
                    conflicts = committed.conflicts,
                    "group committed"
                );
                Ok(committed)
            }
            Err(error) => {
                tracing::warn!(
                    table = self.spec.name,
                    appends,
                    %error,
                    "group commit failed; every append in it is refused"
                );
                Err(AppendError::Commit {
                    table: self.spec.name,
                    source: Arc::new(error),
                })
            }
        };
        for request in group {
            // A caller that stopped waiting needs no answer.
            let _ = request.done.send(answer.clone());
        }
    }

    /// Writes one file per partition of `group` and commits them together.
    async fn commit(&mut self, group: &[Request]) -> Result<Committed> {
        if self.table.is_none() {
            let table = Table::open(
                &self.location,
                self.spec,
                self.options.zstd_level,
                self.metrics.clone(),
            )
            .await?;
            self.table = Some(table);
        }
        let table = self.table.as_mut().expect("opened above");
        let mut partitions: BTreeMap<&Partition, Vec<&RecordBatch>> = BTreeMap::new();
        for request in group {
            partitions
                .entry(&request.partition)
                .or_default()
                .push(&request.batch);
        }
        let schema = (self.spec.schema)();
        let mut files = Vec::with_capacity(partitions.len());
        for (partition, batches) in partitions {
            let batch = concat_batches(&schema, batches)?;
            if batch.num_rows() == 0 {
                continue;
            }
            files.push(table.write(partition.clone(), batch, Vec::new()).await?);
        }
        if files.is_empty() {
            // Only empty batches: nothing to commit, the table is as it was.
            return Ok(Committed {
                version: table.version(),
                conflicts: 0,
            });
        }
        table.commit(&Commit::append(files)).await
    }
}

impl std::fmt::Debug for AppenderTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppenderTask")
            .field("table", &self.spec.name)
            .field("location", &self.location)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
