//! Runs a process's components as one tree: a component that fails cancels
//! the others, and the process waits for all of them to drain.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct Supervisor {
    tracker: TaskTracker,
    token: CancellationToken,
    failures: Arc<Mutex<Vec<anyhow::Error>>>,
}

impl Supervisor {
    pub fn new(token: CancellationToken) -> Self {
        Self {
            tracker: TaskTracker::new(),
            token,
            failures: Arc::default(),
        }
    }

    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    fn record(
        name: &'static str,
        token: &CancellationToken,
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
                token.cancel();
            }
        }
    }

    /// Runs an async component.
    pub fn spawn<F>(&self, name: &'static str, future: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (token, failures) = (self.token.clone(), Arc::clone(&self.failures));
        self.tracker
            .spawn(async move { Self::record(name, &token, &failures, future.await) });
    }

    /// Runs a blocking component on its own thread.
    pub fn spawn_blocking<F>(&self, name: &'static str, work: F)
    where
        F: FnOnce() -> anyhow::Result<()> + Send + 'static,
    {
        let (token, failures) = (self.token.clone(), Arc::clone(&self.failures));
        let handle = tokio::task::spawn_blocking(work);
        self.tracker.spawn(async move {
            let result = handle
                .await
                .unwrap_or_else(|e| Err(anyhow::anyhow!("panicked: {e}")));
            Self::record(name, &token, &failures, result);
        });
    }

    /// Waits until every component has stopped; the first failure, if any.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.tracker.close();
        self.tracker.wait().await;
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
