//! The query runtime: the tokio runtime every query is parsed, planned and
//! run on, apart from the process's runtime (HTTP, ingest, the detector).
//!
//! - `query.threads` workers (default: half the cores, at least one), so a
//!   heavy query takes at most that share of the machine;
//! - on Linux the workers run at a lower priority (nice 10, best effort), so
//!   ingest and the HTTP listener win a contended core;
//! - each thread has a [`STACK_BYTES`] stack, so that an expression as deep
//!   as `query.max_expr_depth` allows is safe in DataFusion's recursive
//!   planner, optimizer and evaluation.
//!
//! DataFusion's own tasks (repartitioning, spills) are spawned from the
//! query's task and so land here too.
//!
//! Planning never yields (DataFusion folds `array_repeat(1, 1000000)` into a
//! constant there, a second in a debug build), so it runs [`off_workers`]:
//! on a thread of its own, at the same priority, where the operating system
//! shares the cores between it and the workers' time slices.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::sync::oneshot;

use crate::error::QueryError;

/// Stack of each query thread. The default 2 MiB overflows planning a
/// 2,000-term expression; 64 MiB takes well over `query.max_expr_depth`'s
/// default of 1,000 (and is virtual memory, committed only where touched).
pub const STACK_BYTES: usize = 64 << 20;

/// How many polls a query worker makes between looks at work woken from
/// outside it and at its I/O and timer driver.
const REMOTE_INTERVAL: u32 = 2;

/// Blocking threads beyond two per worker; see [`QueryRuntime::new`].
const BLOCKING_HEADROOM: usize = 64;

/// The niceness of query threads.
const NICE: i32 = 10;

/// Owns the runtime; shuts it down without blocking when the engine goes,
/// which may be inside another runtime.
pub struct QueryRuntime {
    runtime: Option<Runtime>,
}

impl QueryRuntime {
    /// A runtime of `threads` workers.
    pub fn new(threads: usize) -> Result<QueryRuntime, QueryError> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            // DataFusion's few blocking calls (file listing, spills), the
            // local object store's reads, and delta-kernel's: its executor
            // blocks a worker in `block_in_place` while a task it spawned on
            // this runtime loads the log, and the worker that takes over
            // comes from this pool. With a pool of 2, two such loads (or
            // one beside a file read) left no thread to run the load, and
            // the query hung until its timeout. These threads mostly wait;
            // the CPU stays bounded by the workers.
            .max_blocking_threads(threads.max(1) * 2 + BLOCKING_HEADROOM)
            .thread_stack_size(STACK_BYTES)
            // A query's task runs up to a time slice (ms) per poll, not
            // tokio's microseconds: by default a worker looks at tasks woken
            // from outside (a file read finished on a blocking thread, a new
            // query) every 61 polls, and at timers and sockets as seldom, so
            // a small query waited seconds behind a heavy one, 0.6 s per
            // file it read. Looking every other poll costs a lock and an
            // epoll of no time, next to a slice.
            .global_queue_interval(REMOTE_INTERVAL)
            .event_interval(REMOTE_INTERVAL)
            .thread_name_fn(|| format!("tt-query-{}", NEXT.fetch_add(1, Ordering::Relaxed)))
            .on_thread_start(lower_priority)
            .enable_all()
            .build()
            .map_err(|e| QueryError::Internal(format!("starting the query runtime: {e}")))?;
        Ok(QueryRuntime {
            runtime: Some(runtime),
        })
    }

    /// Where queries are spawned.
    pub fn handle(&self) -> &Handle {
        self.runtime
            .as_ref()
            .expect("the runtime is taken only on drop")
            .handle()
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Dropping a runtime blocks, which panics inside another
            // runtime; running queries are cancelled either way.
            runtime.shutdown_background();
        }
    }
}

/// Runs `work` on a thread of its own, niced and with a [`STACK_BYTES`]
/// stack, inside `runtime` (its I/O, timers and spawned tasks are the
/// runtime's). Dropping the returned future cancels `work` at its next
/// await.
pub async fn off_workers<T: Send + 'static>(
    runtime: Handle,
    work: impl Future<Output = Result<T, QueryError>> + Send + 'static,
) -> Result<T, QueryError> {
    let (done_tx, done_rx) = oneshot::channel();
    let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("tt-plan".to_owned())
        .stack_size(STACK_BYTES)
        .spawn(move || {
            lower_priority();
            runtime.block_on(async move {
                tokio::select! {
                    result = work => {
                        let _ = done_tx.send(result);
                    }
                    // Sent never: the sender is dropped with the caller.
                    _ = cancel_rx => {}
                }
            });
        })
        .map_err(|e| QueryError::Internal(format!("starting a planning thread: {e}")))?;
    let result = done_rx.await;
    drop(cancel_tx);
    result.map_err(|_| {
        QueryError::Internal("the planning thread ended without an answer (see the log)".into())
    })?
}

/// The default `query.threads`: half the cores, at least one.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().div_ceil(2))
        .unwrap_or(1)
}

/// Lowers the calling thread's priority (Linux; elsewhere nothing).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take and return plain integers; on
        // Linux PRIO_PROCESS with a thread id changes only that thread.
        let result = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, NICE)
        };
        if result != 0 {
            tracing::debug!(
                error = %std::io::Error::last_os_error(),
                "query thread priority not lowered"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_threads_run_niced_on_a_large_stack() {
        let runtime = QueryRuntime::new(1).unwrap();
        let (nice, deep) = runtime
            .handle()
            .block_on(async {
                tokio::spawn(async {
                    // A recursion a 2 MiB stack would not take.
                    fn recurse(n: usize) -> usize {
                        let pad = std::hint::black_box([0u8; 1024]);
                        if n == 0 {
                            pad[0] as usize
                        } else {
                            recurse(n - 1) + pad[1] as usize + 1
                        }
                    }
                    #[cfg(target_os = "linux")]
                    // SAFETY: see `lower_priority`.
                    let nice = unsafe {
                        libc::getpriority(libc::PRIO_PROCESS, libc::syscall(libc::SYS_gettid) as _)
                    };
                    #[cfg(not(target_os = "linux"))]
                    let nice = NICE;
                    (nice, recurse(20_000))
                })
                .await
            })
            .unwrap();
        assert_eq!(nice, NICE);
        assert_eq!(deep, 20_000);
    }

    #[test]
    fn work_off_the_workers_leaves_them_free_and_stops_when_dropped() {
        let runtime = QueryRuntime::new(1).unwrap();
        let handle = runtime.handle().clone();
        runtime.handle().block_on(async {
            // Work that blocks its thread until told to stop: on the one
            // worker it would stall every other task.
            let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
            let blocking = tokio::spawn(off_workers(handle.clone(), async move {
                stop_rx.recv().ok();
                Ok(7)
            }));
            let free = tokio::spawn(async { 6 * 7 }).await.unwrap();
            assert_eq!(free, 42, "the worker ran another task meanwhile");
            stop_tx.send(()).unwrap();
            assert_eq!(blocking.await.unwrap().unwrap(), 7);

            // Dropped while it awaits, the work is cancelled.
            let (ran_tx, ran_rx) = oneshot::channel::<()>();
            let waiting = tokio::spawn(off_workers(handle.clone(), async move {
                std::future::pending::<()>().await;
                let _ = ran_tx.send(());
                Ok(())
            }));
            waiting.abort();
            assert!(waiting.await.unwrap_err().is_cancelled());
            assert!(ran_rx.await.is_err(), "the work was dropped unfinished");
        });
    }
}
