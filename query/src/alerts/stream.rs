//! `GET /v1/alerts/stream`: server-sent events that tell an open inbox its
//! alerts or their triage changed, so it shows a new alert without a reload.
//!
//! One watcher per process ([`Changes`]) reads the versions of the lake's
//! `alerts` and `alert_triage` tables every [`POLL`] while anyone listens
//! (only the log's new commits are read). On a new version each listener
//! counts what its own tenant filter lets it see, and only a listener whose
//! count moved gets a `changed` event: a tenant does not learn when another
//! tenant's alerts arrive. The watcher reads the lake, not the detector, so
//! it works the same when detection runs in another process.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde_json::Value;
use tokio::sync::watch;
use tooltrail_lake::{Location, Snapshot, TableSpec, Version, tables};

use super::{AlertsError, AlertsService};
use crate::{Principal, QueryError};

/// How often the watcher reads the tables' versions.
pub const POLL: Duration = Duration::from_millis(500);
/// Streams one principal may hold open at once (a browser tab each); one
/// more is refused with 429, so that a token cannot make every change cost
/// a query per stream it opened.
pub const MAX_STREAMS_PER_PRINCIPAL: usize = 8;

/// The watcher: a counter that moves whenever either table has a new
/// version. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Changes {
    lake: Location,
    seen: Arc<watch::Sender<u64>>,
    /// Whether the polling task is running; it ends when nobody listens.
    running: Arc<Mutex<bool>>,
    /// Per principal: its open streams, and the count they share.
    open: OpenStreams,
}

/// What one principal's streams share: the count for the watcher's latest
/// change, made by whichever stream asks first while the others wait, so a
/// change costs one query per principal, and a principal's streams never
/// take more than one of its query slots.
type Shared = tokio::sync::Mutex<Option<(u64, Value)>>;

/// Per principal: how many streams it holds open, and what they share.
type OpenStreams = Arc<Mutex<HashMap<String, (usize, Arc<Shared>)>>>;

/// One principal's open stream; counted until dropped.
struct Open {
    open: OpenStreams,
    principal: String,
    shared: Arc<Shared>,
}

impl Drop for Open {
    fn drop(&mut self) {
        let mut open = self
            .open
            .lock()
            .expect("the stream count is never poisoned");
        if let Some((n, _)) = open.get_mut(&self.principal) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.principal);
            }
        }
    }
}

impl Changes {
    pub(crate) fn new(lake: &Location) -> Changes {
        Changes {
            lake: lake.clone(),
            seen: Arc::new(watch::channel(0).0),
            running: Arc::new(Mutex::new(false)),
            open: Arc::default(),
        }
    }

    /// Counts a stream of `principal`, unless it has the most already.
    fn open(&self, principal: &str) -> Option<Open> {
        let mut open = self
            .open
            .lock()
            .expect("the stream count is never poisoned");
        let (n, shared) = open
            .entry(principal.to_owned())
            .or_insert_with(|| (0, Arc::default()));
        if *n >= MAX_STREAMS_PER_PRINCIPAL {
            return None;
        }
        *n += 1;
        Some(Open {
            open: Arc::clone(&self.open),
            principal: principal.to_owned(),
            shared: Arc::clone(shared),
        })
    }

    /// A receiver of the counter; starts the watcher if it is not running.
    fn subscribe(&self) -> watch::Receiver<u64> {
        let receiver = self.seen.subscribe();
        let mut running = self
            .running
            .lock()
            .expect("the watcher flag is never poisoned");
        if !*running {
            *running = true;
            tokio::spawn(watch_tables(self.clone()));
        }
        receiver
    }
}

/// Polls the versions until nobody listens.
async fn watch_tables(changes: Changes) {
    let mut alerts = Watched::new(&tables::ALERTS);
    let mut triage = Watched::new(&tables::ALERT_TRIAGE);
    let mut ticks = tokio::time::interval(POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        {
            let mut running = changes
                .running
                .lock()
                .expect("the watcher flag is never poisoned");
            if changes.seen.receiver_count() == 0 {
                *running = false;
                return;
            }
        }
        let moved = alerts.moved(&changes.lake).await | triage.moved(&changes.lake).await;
        if moved {
            changes.seen.send_modify(|n| *n += 1);
        }
    }
}

/// One table's snapshot, read forward.
struct Watched {
    spec: &'static TableSpec,
    snapshot: Option<Snapshot>,
}

impl Watched {
    fn new(spec: &'static TableSpec) -> Watched {
        Watched {
            spec,
            snapshot: None,
        }
    }

    /// Whether the table has a newer version than last time. A read that
    /// fails is logged and counts as no change; the next poll tries again.
    async fn moved(&mut self, lake: &Location) -> bool {
        let before: Option<Version> = self.snapshot.as_ref().and_then(Snapshot::version);
        let read = match self.snapshot.as_mut() {
            Some(snapshot) => snapshot.update().await,
            None => Snapshot::load(lake, self.spec).await.map(|s| {
                self.snapshot = s;
            }),
        };
        if let Err(error) = read {
            tracing::warn!(table = self.spec.name, %error, "reading the table's version for the alert stream");
            return false;
        }
        self.snapshot.as_ref().and_then(Snapshot::version) != before
    }
}

/// What a listener sees: its alerts (their versions counted) and triage rows.
const FINGERPRINT: &str = "SELECT \
    (SELECT count(*) + coalesce(sum(repeats), 0) FROM alerts) AS alerts_version, \
    (SELECT count(*) FROM alert_triage) AS triage_version";

impl AlertsService {
    /// The event stream of `principal`: a `changed` event at the start and
    /// whenever what the principal sees of alerts or triage changes.
    /// At most [`MAX_STREAMS_PER_PRINCIPAL`] at once.
    pub fn stream(
        &self,
        principal: Principal,
    ) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>, AlertsError> {
        let held = self.changes.open(&principal.name).ok_or_else(|| {
            AlertsError::Query(QueryError::Busy(format!(
                "{MAX_STREAMS_PER_PRINCIPAL} alert streams of this token are open already"
            )))
        })?;
        let service = self.clone();
        let receiver = self.changes.subscribe();
        let events = futures::stream::unfold(
            (service, principal, receiver, None::<Value>, false, held),
            |(service, principal, mut receiver, mut last, mut started, held)| async move {
                loop {
                    if started {
                        receiver.changed().await.ok()?;
                    }
                    started = true;
                    let change = *receiver.borrow_and_update();
                    match service.fingerprint(&principal, &held.shared, change).await {
                        Ok(now) => {
                            if now.is_some() && now != last {
                                let data = now.as_ref().map(Value::to_string).unwrap_or_default();
                                last = now;
                                let event = Event::default().event("changed").data(data);
                                return Some((
                                    Ok(event),
                                    (service, principal, receiver, last, started, held),
                                ));
                            }
                        }
                        Err(error) => {
                            tracing::warn!(principal = %principal.name, %error, "counting alerts for the alert stream");
                        }
                    }
                }
            },
        );
        Ok(Sse::new(events).keep_alive(KeepAlive::default()))
    }

    /// What `principal` sees at the watcher's `change`: counted once per
    /// principal and change, shared by its streams.
    async fn fingerprint(
        &self,
        principal: &Principal,
        shared: &Shared,
        change: u64,
    ) -> Result<Option<Value>, QueryError> {
        let mut cached = shared.lock().await;
        if let Some((counted, value)) = cached.as_ref()
            && *counted == change
        {
            return Ok(Some(value.clone()));
        }
        let rows = self.rows(principal, FINGERPRINT).await?;
        let now = rows.into_iter().next().map(Value::Object);
        if let Some(value) = &now {
            *cached = Some((change, value.clone()));
        }
        Ok(now)
    }
}
