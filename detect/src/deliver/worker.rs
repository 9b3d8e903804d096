//! One destination's delivery loop: takes the oldest pending alert, waits for
//! the rate limit, sends it, and records the outcome in the outbox.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Notify, broadcast};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::DeliveryEvent;
use super::backoff::{RateLimiter, backoff_delay};
use super::config::{DestinationConfig, RetryConfig};
use super::error::{Error, Result};
use super::metrics::{Metrics, Outcome};
use super::outbox::{Entry, Outbox};
use super::send::{Attempt, attempt};

/// Alerts enqueued since the worker last looked, and its wake-up call.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    entries: Mutex<Vec<Entry>>,
    wake: Notify,
}

impl Inbox {
    pub(crate) fn push(&self, entry: Entry) {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(entry);
        self.wake.notify_one();
    }

    fn take(&self) -> Vec<Entry> {
        std::mem::take(&mut *self.entries.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Pending alerts in sending order: fewest attempts first, then oldest. An
/// alert that keeps failing thus sinks behind the others instead of holding
/// them back.
#[derive(Default)]
struct Queue {
    entries: BTreeMap<(u32, DateTime<Utc>, String), Entry>,
    ids: HashSet<String>,
}

impl Queue {
    fn push(&mut self, entry: Entry, attempts: u32) {
        if self.ids.insert(entry.key()) {
            let key = (attempts, entry.enqueued_at, entry.key());
            self.entries.insert(key, entry);
        }
    }

    fn pop(&mut self) -> Option<(u32, Entry)> {
        let ((attempts, _, id), entry) = self.entries.pop_first()?;
        self.ids.remove(&id);
        Some((attempts, entry))
    }
}

pub(crate) struct Worker {
    pub destination: DestinationConfig,
    pub retry: RetryConfig,
    pub outbox: Arc<Outbox>,
    pub inbox: Arc<Inbox>,
    pub client: reqwest::Client,
    pub metrics: Metrics,
    pub pending: Gauge,
    pub events: broadcast::Sender<DeliveryEvent>,
    /// How long, once told to stop, the worker goes on sending what is
    /// queued and ready (`detect.delivery.drain_timeout`).
    pub drain_timeout: Duration,
}

impl Worker {
    pub(crate) async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let name = self.destination.name.clone();
        let outbox = Arc::clone(&self.outbox);
        let scan = self.blocking(move || outbox.scan(&name)).await?;
        for (path, reason) in scan.quarantined {
            error!(destination = %self.destination.name, host = %self.destination.url.host(), path = %path.display(), reason, "unreadable outbox entry moved to dead letters");
            self.pending.dec();
            self.metrics.count(&self.destination.name, Outcome::Failed);
        }
        let mut queue = Queue::default();
        for entry in scan.entries {
            queue.push(entry, 0);
        }
        let mut limiter = RateLimiter::per_minute(self.destination.max_per_minute);
        // Failed attempts in a row: the destination's backoff.
        let mut failures: u32 = 0;
        // Once told to stop, the worker drains: it sends what is queued and
        // ready until this deadline, and waits for nothing new.
        let mut drain_until: Option<Instant> = None;
        loop {
            if drain_until.is_none() && shutdown.is_cancelled() {
                drain_until = Some(Instant::now() + self.drain_timeout);
            }
            if drain_until.is_some_and(|deadline| Instant::now() >= deadline) {
                return Ok(());
            }
            for entry in self.inbox.take() {
                queue.push(entry, 0);
            }
            let Some((attempts, entry)) = queue.pop() else {
                if drain_until.is_some() {
                    return Ok(());
                }
                tokio::select! {
                    () = shutdown.cancelled() => continue,
                    () = self.inbox.wake.notified() => continue,
                }
            };
            if let Some(at) = limiter.next_slot(Instant::now()) {
                debug!(destination = %self.destination.name, host = %self.destination.url.host(), wait_ms = at.saturating_duration_since(Instant::now()).as_millis() as u64, "rate limit reached; alerts wait in the outbox");
                queue.push(entry, attempts);
                match drain_until {
                    Some(deadline) if at >= deadline => return Ok(()),
                    Some(_) => tokio::time::sleep_until(at).await,
                    None => tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep_until(at) => {}
                    },
                }
                continue;
            }
            // Enqueued while the startup scan ran, it can come twice: the
            // file tells whether it is still pending.
            if !self
                .outbox
                .is_pending(&self.destination.name, &entry.key())?
            {
                continue;
            }
            limiter.record(Instant::now());
            let attempts = attempts + 1;
            let outcome = {
                let send = attempt(&self.client, &self.destination, &entry);
                tokio::pin!(send);
                let finished = match drain_until {
                    Some(_) => None,
                    None => tokio::select! {
                        outcome = &mut send => Some(outcome),
                        () = shutdown.cancelled() => {
                            // The drain begins: the request may finish within it.
                            drain_until = Some(Instant::now() + self.drain_timeout);
                            None
                        }
                    },
                };
                match (finished, drain_until) {
                    (Some(outcome), _) => outcome,
                    (None, deadline) => {
                        let deadline = deadline.expect("set when the send was not finished");
                        match tokio::time::timeout_at(deadline, &mut send).await {
                            Ok(outcome) => outcome,
                            // Abandoned: made again, with the same
                            // idempotency key, at the next start.
                            Err(_) => return Ok(()),
                        }
                    }
                }
            };
            match outcome {
                Attempt::Delivered => {
                    failures = 0;
                    self.delivered(entry, attempts).await?;
                }
                Attempt::Permanent { reason } => {
                    failures = 0;
                    self.dead_letter(entry, reason, attempts).await?;
                }
                Attempt::Retry {
                    reason,
                    retry_after,
                } => {
                    let age = (Utc::now() - entry.enqueued_at)
                        .to_std()
                        .unwrap_or_default();
                    if age > self.retry.give_up_after {
                        let reason = format!(
                            "gave up after {attempts} attempts over {}: {reason}",
                            humantime::format_duration(Duration::from_secs(age.as_secs()))
                        );
                        self.dead_letter(entry, reason, attempts).await?;
                        continue;
                    }
                    let delay = match retry_after {
                        Some(wait) => wait.min(self.retry.max_delay),
                        None => backoff_delay(
                            failures,
                            self.retry.base_delay,
                            self.retry.max_delay,
                            rand::random::<f64>(),
                        ),
                    };
                    failures = failures.saturating_add(1);
                    warn!(destination = %self.destination.name, host = %self.destination.url.host(), alert_id = %entry.alert.alert_id, triage_id = triage_id(&entry), attempts, delay_ms = delay.as_millis() as u64, reason, "alert delivery failed; will retry");
                    self.metrics.count(&self.destination.name, Outcome::Retry);
                    self.event(&entry, Outcome::Retry, Some(reason));
                    if drain_until.is_some() {
                        // No second try in the drain: it waits in the outbox
                        // for the next start.
                        continue;
                    }
                    queue.push(entry, attempts);
                    tokio::select! {
                        () = shutdown.cancelled() => {}
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
    }

    async fn delivered(&self, entry: Entry, attempts: u32) -> Result<()> {
        let outbox = Arc::clone(&self.outbox);
        let (name, id) = (self.destination.name.clone(), entry.key());
        self.blocking(move || outbox.mark_delivered(&name, &id))
            .await?;
        let latency = (Utc::now() - entry.enqueued_at)
            .to_std()
            .unwrap_or_default();
        self.pending.dec();
        self.metrics
            .count(&self.destination.name, Outcome::Delivered);
        self.metrics
            .observe_latency(&self.destination.name, latency.as_secs_f64());
        info!(destination = %self.destination.name, host = %self.destination.url.host(), alert_id = %entry.alert.alert_id, triage_id = triage_id(&entry), attempts, latency_ms = latency.as_millis() as u64, "alert delivered");
        self.event(&entry, Outcome::Delivered, None);
        Ok(())
    }

    async fn dead_letter(&self, entry: Entry, reason: String, attempts: u32) -> Result<()> {
        let outbox = Arc::clone(&self.outbox);
        let (moved, why) = (entry.clone(), reason.clone());
        let path = self
            .blocking(move || outbox.dead_letter(&moved, &why, attempts, Utc::now()))
            .await?;
        self.pending.dec();
        self.metrics.count(&self.destination.name, Outcome::Failed);
        error!(destination = %self.destination.name, host = %self.destination.url.host(), alert_id = %entry.alert.alert_id, triage_id = triage_id(&entry), attempts, path = %path.display(), reason, "alert delivery failed for good; moved to dead letters");
        self.event(&entry, Outcome::Failed, Some(reason));
        Ok(())
    }

    fn event(&self, entry: &Entry, outcome: Outcome, reason: Option<String>) {
        // Nobody listening is fine.
        let _ = self.events.send(DeliveryEvent {
            destination: self.destination.name.clone(),
            alert_id: entry.alert.alert_id.clone(),
            triage_id: entry.triage.as_ref().map(|t| t.triage_id.clone()),
            outcome,
            reason,
        });
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|source| Error::Task {
                task: self.destination.name.clone(),
                source,
            })?
    }
}

/// The triage change an entry carries, for logs (empty for an alert).
fn triage_id(entry: &Entry) -> &str {
    entry.triage.as_ref().map_or("", |t| t.triage_id.as_str())
}
