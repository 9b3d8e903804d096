//! Alert delivery: a durable outbox and one sender per destination (generic
//! webhook, Slack, Microsoft Teams, OCSF Detection Finding), with routing,
//! rate limits, retries and dead letters.
//!
//! - [`Delivery`]: `build` validates the [`DeliveryConfig`] and opens the
//!   outbox; `run` delivers until shutdown, each destination on its own task so
//!   that one that is down never delays another.
//! - [`DeliveryHandle`]: cheap to clone; [`DeliveryHandle::enqueue`] makes an
//!   alert durable for every destination whose routing matches, then wakes
//!   that destination's sender at once (no polling delay).
//! - [`outbox`]: the on-disk format. [`metrics::Metrics`]: the
//!   `tooltrail_alert_*` metrics.
//!
//! # Guarantees
//!
//! At least once, with an idempotency key. `enqueue` returns only once the
//! alert is on disk (temporary file, fsync, rename, fsync of the folder), so
//! an alert survives a destination being down for hours and any number of
//! restarts: on start every pending file is picked up again. Enqueueing the
//! same `alert_id` again does nothing while it is pending, after it was
//! delivered (delivered ids are remembered for `delivered_retention`, 7 days
//! by default) or after it was dead-lettered. A crash between a destination's
//! `200` and the outbox noting it can send the alert once more, with the same
//! `Idempotency-Key`. On shutdown the senders stop (an attempt in flight gets
//! one more second to finish, else it is abandoned and made again after the
//! restart) and whatever is undelivered stays in the outbox.
//!
//! # Routing, rate limits, retries
//!
//! A destination gets alerts at least `min_severity` (default `medium`), of
//! its `tenants` and `detectors` (empty lists: all). It is sent at most
//! `max_per_minute` requests in any 60 seconds (default 60); alerts over the
//! limit are not dropped: they wait in the outbox and go out as the window
//! frees up. A failed attempt is retried when there was no answer (connect
//! error, timeout) or the answer was 408, 429 or 5xx, after a wait drawn
//! uniformly from `[0, min(max_delay, base_delay * 2^n))` for the `n`th
//! failure in a row (full jitter; defaults 1 s and 5 min), or after the
//! answer's `Retry-After` (up to `max_delay`). Any other answer (4xx, 3xx) is
//! permanent: the alert moves to `dead/<destination>/<alert_id>.json` with the
//! reason, logged at ERROR. So does an alert still failing `give_up_after`
//! (default 24 h) after it was enqueued. Move a dead letter back into
//! `pending/<destination>/` to have it retried at the next start.
//!
//! # Verifying webhook requests
//!
//! A `webhook` destination receives `POST` with the alert record as the JSON
//! body (the same record the lake stores) and these headers:
//!
//! | header | value |
//! |---|---|
//! | `Content-Type` | `application/json` |
//! | `X-Tooltrail-Timestamp` | unix seconds when the request was signed (each retry is signed afresh) |
//! | `X-Tooltrail-Signature` | `v1=` and the lowercase hex HMAC-SHA256, keyed with the destination's `secret`, of `<timestamp>.<body>` |
//! | `Idempotency-Key` | the `alert_id`: the same on every retry and after restarts |
//!
//! A receiver should, before trusting the body: take the raw body bytes (not
//! re-serialized JSON); compute the HMAC of the timestamp header, a `.`, and
//! those bytes; compare it with the signature in constant time; reject a
//! timestamp more than 5 minutes from its own clock (a replayed request); and
//! treat a second request with an `Idempotency-Key` it has already processed
//! as a success without acting again. Answer 2xx once the alert is safe; 408,
//! 429 (with `Retry-After`) or 5xx to have it retried; any other 4xx sends it
//! to the dead letters.
//!
//! ```python
//! import hashlib, hmac, time
//!
//! TOLERANCE_SECONDS = 300
//!
//! def verify(secret: bytes, headers, body: bytes) -> bool:
//!     """headers: the request's headers; body: the raw request body."""
//!     timestamp = headers.get("X-Tooltrail-Timestamp", "")
//!     signature = headers.get("X-Tooltrail-Signature", "")
//!     if not timestamp.isdigit() or not signature.startswith("v1="):
//!         return False
//!     if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
//!         return False  # too old or too far ahead: possibly replayed
//!     expected = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
//!     return hmac.compare_digest(expected, signature[len("v1="):])
//! ```
//!
//! In Rust, [`webhook::verify`] does the same.
//!
//! # OCSF destinations
//!
//! An `ocsf` destination receives `POST` with the alert as one OCSF 1.x
//! Detection Finding (class 2004) as the JSON body ([`ocsf`]: the record
//! the `ocsf_detection_finding` SQL view shows for it), with
//! `Idempotency-Key`; with a `secret`, it is signed exactly like a webhook
//! (`X-Tooltrail-Timestamp`, `X-Tooltrail-Signature`). Retries and dead
//! letters are as for any destination.
//!
//! # Example
//!
//! ```no_run
//! # async fn example(config: tooltrail_detect::deliver::DeliveryConfig, alert: tooltrail_detect::Alert)
//! # -> Result<(), tooltrail_detect::deliver::Error> {
//! use tokio_util::sync::CancellationToken;
//! use tooltrail_detect::deliver::{Delivery, metrics::Metrics};
//!
//! let metrics = Metrics::register(&mut Default::default());
//! let delivery = Delivery::build(config, "/var/lib/tooltrail/outbox".as_ref(), metrics)?;
//! let handle = delivery.handle();
//! let shutdown = CancellationToken::new();
//! let task = tokio::spawn(delivery.run(shutdown.clone()));
//! handle.enqueue(&alert)?; // durable once this returns
//! shutdown.cancel();
//! task.await.expect("delivery task")?;
//! # Ok(()) }
//! ```

pub mod backoff;
pub mod chat;
pub mod config;
mod error;
pub mod metrics;
pub mod ocsf;
pub mod outbox;
mod send;
pub mod triage;
pub mod webhook;
mod worker;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::Utc;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::broadcast;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

pub use config::{DeliveryConfig, DestinationConfig, DestinationKind, RetryConfig, Secret};
pub use error::{Error, Result};
pub use metrics::Outcome;
pub use triage::TriageNote;

use crate::alert::Alert;
use metrics::Metrics;
use outbox::{Outbox, valid_alert_id};
use worker::{Inbox, Worker};

/// How often delivered ids older than the retention are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// What happened to one alert at one destination (for observers and tests).
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryEvent {
    pub destination: String,
    pub alert_id: String,
    /// Set when what was sent is a triage change of the alert.
    pub triage_id: Option<String>,
    pub outcome: Outcome,
    /// Why the attempt failed (`retry` and `failed`).
    pub reason: Option<String>,
}

struct Destination {
    config: DestinationConfig,
    inbox: Arc<Inbox>,
    pending: Gauge,
}

struct Shared {
    outbox: Arc<Outbox>,
    destinations: Vec<Destination>,
    events: broadcast::Sender<DeliveryEvent>,
}

/// Enqueues alerts for delivery. Cheap to clone; usable before, during and
/// after [`Delivery::run`] (alerts enqueued while it is not running wait in
/// the outbox for the next run).
#[derive(Clone)]
pub struct DeliveryHandle {
    shared: Arc<Shared>,
}

impl DeliveryHandle {
    /// Makes `alert` durable in the outbox for every destination whose routing
    /// matches and that has not had it yet, and wakes their senders. Returns
    /// how many destinations it was newly queued for.
    ///
    /// Blocking file IO (with fsync): from async code, use
    /// [`DeliveryHandle::enqueue_async`] or `spawn_blocking`.
    pub fn enqueue(&self, alert: &Alert) -> Result<usize> {
        if !valid_alert_id(&alert.alert_id) {
            return Err(Error::InvalidAlertId(alert.alert_id.clone()));
        }
        let now = Utc::now();
        let mut queued = 0;
        for destination in &self.shared.destinations {
            if !destination.config.routes(alert) {
                continue;
            }
            let name = &destination.config.name;
            match self.shared.outbox.enqueue(name, alert, now)? {
                Some(entry) => {
                    destination.pending.inc();
                    destination.inbox.push(entry);
                    queued += 1;
                    debug!(destination = %name, alert_id = %alert.alert_id, "alert enqueued");
                }
                None => {
                    debug!(destination = %name, alert_id = %alert.alert_id, "alert already queued or delivered")
                }
            }
        }
        Ok(queued)
    }

    /// Makes the triage change `note` of `alert` durable in the outbox for
    /// every destination that follows triage (`triage = true`) and whose
    /// routing matches the alert, and wakes their senders. Returns how many
    /// destinations it was newly queued for. Blocking file IO, like
    /// [`DeliveryHandle::enqueue`].
    pub fn enqueue_triage(&self, alert: &Alert, note: &TriageNote) -> Result<usize> {
        let now = Utc::now();
        let mut queued = 0;
        for destination in &self.shared.destinations {
            if !destination.config.triage || !destination.config.routes(alert) {
                continue;
            }
            let name = &destination.config.name;
            if let Some(entry) = self.shared.outbox.enqueue_triage(name, alert, note, now)? {
                destination.pending.inc();
                destination.inbox.push(entry);
                queued += 1;
                debug!(destination = %name, alert_id = %alert.alert_id, triage_id = %note.triage_id, "triage change enqueued");
            }
        }
        Ok(queued)
    }

    /// [`DeliveryHandle::enqueue`] on the blocking pool.
    pub async fn enqueue_async(&self, alert: Alert) -> Result<usize> {
        let handle = self.clone();
        tokio::task::spawn_blocking(move || handle.enqueue(&alert))
            .await
            .map_err(|source| Error::Task {
                task: "enqueue".into(),
                source,
            })?
    }

    /// Every attempt's outcome from now on. A slow receiver misses events
    /// (`RecvError::Lagged`); delivery never waits for it.
    pub fn subscribe(&self) -> broadcast::Receiver<DeliveryEvent> {
        self.shared.events.subscribe()
    }

    /// The outbox folder.
    pub fn outbox_dir(&self) -> &Path {
        self.shared.outbox.root()
    }
}

/// The delivery component: see the [module docs](self).
pub struct Delivery {
    shared: Arc<Shared>,
    config: DeliveryConfig,
    client: reqwest::Client,
    metrics: Metrics,
}

impl Delivery {
    /// Validates `config`, opens (creating as needed) the outbox in
    /// `outbox_dir`, and counts what is pending there.
    pub fn build(config: DeliveryConfig, outbox_dir: &Path, metrics: Metrics) -> Result<Self> {
        let issues = config.validate();
        if !issues.is_empty() {
            return Err(Error::Config(issues));
        }
        let names: Vec<&str> = config
            .destinations
            .iter()
            .map(|d| d.name.as_str())
            .collect();
        let outbox = Outbox::open(outbox_dir, &names)?;
        let mut destinations = Vec::with_capacity(config.destinations.len());
        for d in &config.destinations {
            let pending = metrics.pending(&d.name);
            let waiting = outbox.count_pending(&d.name)?;
            pending.set(i64::try_from(waiting).unwrap_or(i64::MAX));
            if waiting > 0 {
                debug!(destination = %d.name, pending = waiting, "alerts waiting in the outbox");
            }
            destinations.push(Destination {
                config: d.clone(),
                inbox: Arc::new(Inbox::default()),
                pending,
            });
        }
        let client = reqwest::Client::builder()
            .timeout(config.request_timeout)
            .user_agent(concat!("tooltrail/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(Error::HttpClient)?;
        let (events, _) = broadcast::channel(1024);
        Ok(Self {
            shared: Arc::new(Shared {
                outbox: Arc::new(outbox),
                destinations,
                events,
            }),
            config,
            client,
            metrics,
        })
    }

    pub fn handle(&self) -> DeliveryHandle {
        DeliveryHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Delivers until `shutdown`, then returns with undelivered alerts left in
    /// the outbox. A failing outbox (disk) stops every sender and is returned.
    pub async fn run(self, shutdown: CancellationToken) -> Result<()> {
        let stop = shutdown.child_token();
        let mut tasks = JoinSet::new();
        let mut names = HashMap::new();
        for d in &self.shared.destinations {
            let worker = Worker {
                destination: d.config.clone(),
                retry: self.config.retry.clone(),
                outbox: Arc::clone(&self.shared.outbox),
                inbox: Arc::clone(&d.inbox),
                client: self.client.clone(),
                metrics: self.metrics.clone(),
                pending: d.pending.clone(),
                events: self.shared.events.clone(),
                drain_timeout: self.config.drain_timeout,
            };
            let id = tasks.spawn(worker.run(stop.clone())).id();
            names.insert(id, d.config.name.clone());
        }
        let id = tasks
            .spawn(prune(
                Arc::clone(&self.shared.outbox),
                self.config
                    .destinations
                    .iter()
                    .map(|d| d.name.clone())
                    .collect(),
                self.config.delivered_retention,
                stop.clone(),
            ))
            .id();
        names.insert(id, "prune".into());
        let mut failure = None;
        while let Some(joined) = tasks.join_next_with_id().await {
            let result = match joined {
                Ok((_, result)) => result,
                Err(source) => Err(Error::Task {
                    task: names.get(&source.id()).cloned().unwrap_or_default(),
                    source,
                }),
            };
            if let Err(error) = result {
                warn!(error = %tooltrail_schemas::Report(&error), "alert delivery stopping");
                stop.cancel();
                failure.get_or_insert(error);
            }
        }
        failure.map_or(Ok(()), Err)
    }
}

/// Forgets delivered ids older than `retention`, at start and then hourly.
async fn prune(
    outbox: Arc<Outbox>,
    destinations: Vec<String>,
    retention: Duration,
    shutdown: CancellationToken,
) -> Result<()> {
    let mut tick = tokio::time::interval(PRUNE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let outbox = Arc::clone(&outbox);
        let names = destinations.clone();
        let removed = tokio::task::spawn_blocking(move || {
            let now = SystemTime::now();
            names.iter().try_fold(0, |n, name| {
                Ok::<_, Error>(n + outbox.prune_delivered(name, now, retention)?)
            })
        })
        .await
        .map_err(|source| Error::Task {
            task: "prune".into(),
            source,
        })??;
        if removed > 0 {
            debug!(removed, "forgot delivered alert ids past their retention");
        }
    }
}

#[cfg(test)]
pub(crate) use crate::alert::test_alert;
