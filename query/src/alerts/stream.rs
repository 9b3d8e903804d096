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

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde_json::Value;
use tokio::sync::watch;
use tooltrail_lake::{Location, Snapshot, TableSpec, Version, tables};

use super::AlertsService;
use crate::Principal;

/// How often the watcher reads the tables' versions.
pub const POLL: Duration = Duration::from_millis(500);

/// The watcher: a counter that moves whenever either table has a new
/// version. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Changes {
    lake: Location,
    seen: Arc<watch::Sender<u64>>,
    /// Whether the polling task is running; it ends when nobody listens.
    running: Arc<Mutex<bool>>,
}

impl Changes {
    pub(crate) fn new(lake: &Location) -> Changes {
        Changes {
            lake: lake.clone(),
            seen: Arc::new(watch::channel(0).0),
            running: Arc::new(Mutex::new(false)),
        }
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
    pub fn stream(
        &self,
        principal: Principal,
    ) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
        let service = self.clone();
        let receiver = self.changes.subscribe();
        let events = futures::stream::unfold(
            (service, principal, receiver, None::<Value>, false),
            |(service, principal, mut receiver, mut last, mut started)| async move {
                loop {
                    if started {
                        receiver.changed().await.ok()?;
                    }
                    started = true;
                    match service.rows(&principal, FINGERPRINT).await {
                        Ok(rows) => {
                            let now = rows.into_iter().next().map(Value::Object);
                            if now.is_some() && now != last {
                                let data = now.as_ref().map(Value::to_string).unwrap_or_default();
                                last = now;
                                let event = Event::default().event("changed").data(data);
                                return Some((
                                    Ok(event),
                                    (service, principal, receiver, last, started),
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
        Sse::new(events).keep_alive(KeepAlive::default())
    }
}
