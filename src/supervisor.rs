//! Runs a process's components as one tree, and stops them in dataflow
//! order.
//!
//! Each component belongs to a [`Phase`]. When the process is asked to stop
//! (a signal cancels the root token) or a component fails, the phases are
//! drained one after the other, each within its deadline:
//!
//! 1. [`Phase::Intake`]: sources stop taking records, then commit what they
//!    hold to the lake (and their offsets to Kafka). Their senders to the
//!    detector drop when they end.
//! 2. [`Phase::Detect`]: the detector is not told to stop. Its input closes
//!    once intake has ended; it then judges its open windows and publishes
//!    what they raise. Its token is cancelled only if the deadline passes.
//! 3. [`Phase::Deliver`]: delivery sends what is queued and ready, then
//!    stops; what is left waits in the outbox for the next start.
//! 4. [`Phase::Serve`]: the HTTP and Postgres listeners and the background
//!    tasks (digests, retention, exports) stop last, so the API answers while
//!    the rest drains.
//!
//! A phase that overruns its deadline is logged and left behind; the next
//! phase starts anyway. The first failure is what [`Supervisor::wait`]
//! returns.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tooltrail_detect::deliver::config::MAX_DRAIN_TIMEOUT;

/// Where a component stops in the drain; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Intake,
    Detect,
    Deliver,
    Serve,
}

impl Phase {
    const ORDER: [Phase; 4] = [Phase::Intake, Phase::Detect, Phase::Deliver, Phase::Serve];

    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Phase::Intake => "intake",
            Phase::Detect => "detect",
            Phase::Deliver => "deliver",
            Phase::Serve => "serve",
        }
    }

    /// How long the phase may take to drain.
    fn deadline(self) -> Duration {
        match self {
            // A last transaction, and a rebalance's revocation.
            Phase::Intake => Duration::from_secs(30),
            // The last windows and their publication.
            Phase::Detect => Duration::from_secs(30),
            // Delivery's own drain is bounded by `detect.delivery.drain_timeout`.
            Phase::Deliver => MAX_DRAIN_TIMEOUT + Duration::from_secs(10),
            Phase::Serve => Duration::from_secs(15),
        }
    }

    /// Whether the phase's token is cancelled when its drain begins; the
    /// detector's is not: its input closing is its signal.
    fn cancel_at_start(self) -> bool {
        self != Phase::Detect
    }
}

struct Stage {
    token: CancellationToken,
    tracker: TaskTracker,
}

pub struct Supervisor {
    /// Cancelled by a signal or a failure: the drain begins.
    root: CancellationToken,
    stages: [Stage; 4],
    failures: Arc<Mutex<Vec<anyhow::Error>>>,
}

impl Supervisor {
    /// A supervisor that drains when `root` is cancelled.
    pub fn new(root: CancellationToken) -> Self {
        let stage = || Stage {
            token: CancellationToken::new(),
            tracker: TaskTracker::new(),
        };
        Self {
            root,
            stages: [stage(), stage(), stage(), stage()],
            failures: Arc::default(),
        }
    }

    /// The token that tells `phase`'s components to stop.
    pub fn token(&self, phase: Phase) -> CancellationToken {
        self.stages[phase.index()].token.clone()
    }

    fn record(
        name: &'static str,
        root: &CancellationToken,
        failures: &Mutex<Vec<anyhow::Error>>,
        result: anyhow::Result<()>,
    ) {
        match result {
            Ok(()) => tracing::debug!(component = name, "stopped"),
            Err(e) => {
                tracing::error!(component = name, error = %format!("{e:#}"), "component failed; shutting down");
                failures
                    .lock()
                    .expect("failure list lock is never poisoned")
                    .push(e.context(name));
                root.cancel();
            }
        }
    }

    /// Runs an async component in `phase`.
    pub fn spawn<F>(&self, phase: Phase, name: &'static str, future: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (root, failures) = (self.root.clone(), Arc::clone(&self.failures));
        self.stages[phase.index()]
            .tracker
            .spawn(async move { Self::record(name, &root, &failures, future.await) });
    }

    /// Runs a blocking component of `phase` on its own thread.
    pub fn spawn_blocking<F>(&self, phase: Phase, name: &'static str, work: F)
    where
        F: FnOnce() -> anyhow::Result<()> + Send + 'static,
    {
        let (root, failures) = (self.root.clone(), Arc::clone(&self.failures));
        let handle = tokio::task::spawn_blocking(work);
        self.stages[phase.index()].tracker.spawn(async move {
            let result = handle
                .await
                .unwrap_or_else(|e| Err(anyhow::anyhow!("panicked: {e}")));
            Self::record(name, &root, &failures, result);
        });
    }

    /// Waits for the signal to stop (or a failure), drains the phases in
    /// order, and returns the first failure, if any.
    pub async fn wait(self) -> anyhow::Result<()> {
        for stage in &self.stages {
            stage.tracker.close();
        }
        self.root.cancelled().await;
        for phase in Phase::ORDER {
            let stage = &self.stages[phase.index()];
            if phase.cancel_at_start() {
                stage.token.cancel();
            }
            let started = std::time::Instant::now();
            if tokio::time::timeout(phase.deadline(), stage.tracker.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    phase = phase.name(),
                    deadline_s = phase.deadline().as_secs(),
                    "phase did not drain within its deadline; going on without it"
                );
            } else {
                tracing::debug!(
                    phase = phase.name(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "phase drained"
                );
            }
            stage.token.cancel();
        }
        let mut failures = self
            .failures
            .lock()
            .expect("failure list lock is never poisoned");
        match failures.drain(..).next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The order components saw their phase end in.
    type Log = Arc<Mutex<Vec<&'static str>>>;

    fn note(log: &Log, what: &'static str) {
        log.lock().expect("log lock").push(what);
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_goes_intake_detect_deliver_serve_and_the_detector_ends_on_its_input() {
        let root = CancellationToken::new();
        let supervisor = Supervisor::new(root.clone());
        let log: Log = Arc::default();
        let (tap, mut events) = tokio::sync::mpsc::channel::<u32>(4);
        for phase in [Phase::Serve, Phase::Deliver, Phase::Intake] {
            let (token, log) = (supervisor.token(phase), Arc::clone(&log));
            let tap = (phase == Phase::Intake).then(|| tap.clone());
            supervisor.spawn(phase, phase.name(), async move {
                token.cancelled().await;
                // Intake flushes a last record on its way out.
                if let Some(tap) = tap {
                    tap.send(7).await?;
                }
                note(&log, phase.name());
                Ok(())
            });
        }
        drop(tap);
        let (token, detector_log) = (supervisor.token(Phase::Detect), Arc::clone(&log));
        supervisor.spawn(Phase::Detect, "detector", async move {
            let mut seen = Vec::new();
            while let Some(event) = events.recv().await {
                seen.push(event);
            }
            anyhow::ensure!(
                !token.is_cancelled(),
                "told to stop before its input closed"
            );
            anyhow::ensure!(seen == [7], "the last record flushed reaches the detector");
            note(&detector_log, "detect");
            Ok(())
        });
        root.cancel();
        supervisor.wait().await.expect("a clean drain");
        assert_eq!(
            *log.lock().expect("log lock"),
            ["intake", "detect", "deliver", "serve"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_starts_the_drain_and_is_returned_and_a_stuck_phase_is_left_behind() {
        let supervisor = Supervisor::new(CancellationToken::new());
        supervisor.spawn(Phase::Intake, "stuck", async {
            std::future::pending::<()>().await;
            Ok(())
        });
        let serve = supervisor.token(Phase::Serve);
        supervisor.spawn(Phase::Serve, "server", async move {
            serve.cancelled().await;
            Ok(())
        });
        supervisor.spawn(Phase::Deliver, "delivery", async {
            anyhow::bail!("outbox disk is gone")
        });
        let error = supervisor.wait().await.expect_err("the failure");
        assert!(
            format!("{error:#}").contains("outbox disk is gone"),
            "{error:#}"
        );
    }
}
