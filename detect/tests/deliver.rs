//! Alert delivery end to end: the real `Delivery` component against a local
//! webhook receiver on 127.0.0.1, with a temporary outbox folder.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use prometheus_client::registry::Registry;
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use tooltrail_detect::alert::{ALERT_VERSION, alert_id};
use tooltrail_detect::deliver::metrics::Metrics;
use tooltrail_detect::deliver::{
    Delivery, DeliveryConfig, DeliveryEvent, DeliveryHandle, DestinationConfig, DestinationKind,
    Error, Outcome, RetryConfig, Secret, TriageNote,
};
use tooltrail_detect::{Alert, DetectorKind, Evidence, Severity};

const SECRET: &str = "test-secret-0123456789";
/// Guards against a hang in real-time tests; never reached when all is well.
const GUARD: Duration = Duration::from_secs(20);
/// The same guard under paused time, where a virtual day passes in no time.
const VIRTUAL_GUARD: Duration = Duration::from_secs(24 * 3600);

// ---------------------------------------------------------------- receiver

#[derive(Debug, Clone)]
struct Recorded {
    path: String,
    headers: HeaderMap,
    body: Bytes,
    status: u16,
    at: Instant,
}

impl Recorded {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    fn key(&self) -> &str {
        self.header("idempotency-key")
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("the body is JSON")
    }
}

#[derive(Default)]
struct ReceiverState {
    requests: Mutex<Vec<Recorded>>,
    /// Fail this many requests with `fail_status`, then answer 200.
    fail_next: AtomicU32,
    /// Fail every request with `fail_status` until cleared.
    failing: AtomicBool,
    fail_status: AtomicU16,
    changed: Notify,
}

/// A webhook receiver that records every request. `/hang` never answers.
struct Receiver {
    addr: SocketAddr,
    state: Arc<ReceiverState>,
    server: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if uri.path() == "/hang" {
        std::future::pending::<()>().await;
    }
    let fail = state.failing.load(Ordering::SeqCst)
        || state
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    let status = if fail {
        StatusCode::from_u16(state.fail_status.load(Ordering::SeqCst))
            .expect("a valid status was set")
    } else {
        StatusCode::OK
    };
    state
        .requests
        .lock()
        .expect("receiver lock")
        .push(Recorded {
            path: uri.path().to_owned(),
            headers,
            body,
            status: status.as_u16(),
            at: Instant::now(),
        });
    state.changed.notify_waiters();
    let text = if fail { "simulated failure" } else { "ok" };
    (status, text).into_response()
}

impl Receiver {
    async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(ReceiverState {
            fail_status: AtomicU16::new(503),
            ..ReceiverState::default()
        });
        let app = Router::new()
            .fallback(receive)
            .with_state(Arc::clone(&state));
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("receiver serves");
        });
        Ok(Self {
            addr,
            state,
            server,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn fail_next(&self, n: u32, status: u16) {
        self.state.fail_status.store(status, Ordering::SeqCst);
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    fn set_failing(&self, failing: bool, status: u16) {
        self.state.fail_status.store(status, Ordering::SeqCst);
        self.state.failing.store(failing, Ordering::SeqCst);
    }

    fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().expect("receiver lock").clone()
    }

    fn successes(&self) -> Vec<Recorded> {
        let mut ok = self.requests();
        ok.retain(|r| r.status == 200);
        ok
    }

    /// Waits until the recorded requests satisfy `done`.
    async fn wait_for(
        &self,
        guard: Duration,
        done: impl Fn(&[Recorded]) -> bool,
    ) -> Result<Vec<Recorded>> {
        tokio::time::timeout(guard, async {
            loop {
                let changed = self.state.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                let requests = self.requests();
                if done(&requests) {
                    return requests;
                }
                changed.await;
            }
        })
        .await
        .context("the receiver did not see the expected requests in time")
    }
}

// ------------------------------------------------------------------ setup

fn alert(n: u32, severity: Severity, tenant: &str, detector: DetectorKind) -> Alert {
    let t = DateTime::parse_from_rfc3339("2026-10-20T09:35:00Z")
        .expect("valid time")
        .with_timezone(&Utc)
        + chrono::Duration::minutes(i64::from(n));
    Alert {
        alert_version: ALERT_VERSION,
        alert_id: alert_id(detector, tenant, "alice", &n.to_string(), t),
        time: t,
        tenant_id: tenant.into(),
        user_id: "alice".into(),
        detector: detector.into(),
        severity,
        score: 91,
        title: format!("alice@{tenant}: 37 denied calls in 5 min"),
        explanation: "her usual is 0.4 per 5 min (p = 3e-12)".into(),
        evidence: Evidence {
            observed: Some(37.0),
            expected: Some(0.4),
            p_value: Some(3e-12),
            event_ids: vec!["evt-1".into(), "evt-2".into()],
            ..Evidence::default()
        },
        window_start: t,
        window_end: t + chrono::Duration::minutes(5),
        repeats: 0,
    }
}

fn high(n: u32) -> Alert {
    alert(n, Severity::High, "acme", DetectorKind::DenialSpike)
}

fn destination(name: &str, kind: DestinationKind, url: String) -> DestinationConfig {
    DestinationConfig {
        name: name.into(),
        kind,
        url: tooltrail_schemas::SecretUrl::new(url),
        secret: (kind == DestinationKind::Webhook).then(|| Secret::new(SECRET)),
        console_url: None,
        min_severity: Severity::Medium,
        tenants: Vec::new(),
        detectors: Vec::new(),
        max_per_minute: 600,
        triage: false,
    }
}

fn webhook(name: &str, url: String) -> DestinationConfig {
    destination(name, DestinationKind::Webhook, url)
}

/// Short backoff so that retries take milliseconds.
fn config(destinations: Vec<DestinationConfig>) -> DeliveryConfig {
    DeliveryConfig {
        destinations,
        retry: RetryConfig {
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(50),
            give_up_after: Duration::from_secs(3600),
        },
        request_timeout: Duration::from_secs(30),
        // A request that hangs at shutdown is abandoned after this.
        drain_timeout: Duration::from_secs(1),
        ..DeliveryConfig::default()
    }
}

struct Running {
    handle: DeliveryHandle,
    events: broadcast::Receiver<DeliveryEvent>,
    metrics: Metrics,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), Error>>,
}

fn start(config: DeliveryConfig, outbox: &Path) -> Result<Running> {
    let metrics = Metrics::register(&mut Registry::default());
    let delivery = Delivery::build(config, outbox, metrics.clone())?;
    let handle = delivery.handle();
    let events = handle.subscribe();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(delivery.run(shutdown.clone()));
    Ok(Running {
        handle,
        events,
        metrics,
        shutdown,
        task,
    })
}

impl Running {
    /// Waits for the next event matching `wanted`.
    async fn next(
        &mut self,
        guard: Duration,
        wanted: impl Fn(&DeliveryEvent) -> bool,
    ) -> Result<DeliveryEvent> {
        tokio::time::timeout(guard, async {
            loop {
                match self.events.recv().await {
                    Ok(event) if wanted(&event) => return Ok(event),
                    Ok(_) => {}
                    Err(e) => bail!("delivery events: {e}"),
                }
            }
        })
        .await
        .context("no such delivery event in time")?
    }

    async fn outcome(&mut self, outcome: Outcome, alert: &Alert) -> Result<DeliveryEvent> {
        self.next(GUARD, |e| {
            e.outcome == outcome && e.alert_id == alert.alert_id && e.triage_id.is_none()
        })
        .await
    }

    async fn stop(self) -> Result<()> {
        self.shutdown.cancel();
        self.task.await??;
        Ok(())
    }
}

fn hmac_hex(secret: &str, message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

// ------------------------------------------------------------------ tests

#[tokio::test]
async fn webhook_requests_carry_a_signature_receivers_can_verify() -> Result<()> {
    let receiver = Receiver::start().await?;
    let dir = tempfile::tempdir()?;
    let mut running = start(
        config(vec![webhook("siem", receiver.url("/hook"))]),
        dir.path(),
    )?;
    let alert = high(1);
    assert_eq!(running.handle.enqueue(&alert)?, 1);
    running.outcome(Outcome::Delivered, &alert).await?;

    let [request] = &receiver.requests()[..] else {
        bail!("expected one request, got {:?}", receiver.requests());
    };
    assert_eq!(request.path, "/hook");
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(request.key(), alert.alert_id);
    assert_eq!(request.body, alert.to_json().as_bytes());
    // The documented algorithm: v1= hex HMAC-SHA256(secret, "<timestamp>.<body>").
    let timestamp = request.header("x-tooltrail-timestamp");
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(&request.body);
    assert_eq!(
        request.header("x-tooltrail-signature"),
        format!("v1={}", hmac_hex(SECRET, &signed))
    );
    let age = Utc::now().timestamp() - timestamp.parse::<i64>()?;
    assert!((0..300).contains(&age), "timestamp is {age}s old");
    let back: Alert = serde_json::from_slice(&request.body)?;
    assert_eq!(back, alert);
    running.stop().await
}

/// An `ocsf` destination gets each alert as one OCSF Detection Finding,
/// signed when it has a secret, and a retry sends the same finding again.
#[tokio::test]
async fn an_ocsf_destination_receives_each_alert_as_a_detection_finding() -> Result<()> {
    use tooltrail_lake::ocsf::{DETECTION_FINDING, missing_required};
    let receiver = Receiver::start().await?;
    receiver.fail_next(1, 503);
    let dir = tempfile::tempdir()?;
    let mut siem = destination("siem", DestinationKind::Ocsf, receiver.url("/ocsf"));
    siem.secret = Some(Secret::new(SECRET));
    let mut running = start(config(vec![siem]), dir.path())?;
    let alert = high(1);
    assert_eq!(running.handle.enqueue(&alert)?, 1);
    running.outcome(Outcome::Delivered, &alert).await?;

    let [failed, request] = &receiver.requests()[..] else {
        bail!(
            "expected a failure and a retry, got {:?}",
            receiver.requests()
        );
    };
    assert_eq!((failed.status, request.status), (503, 200));
    assert_eq!(failed.body, request.body, "a retry sends the same finding");
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(request.key(), alert.alert_id);
    let timestamp = request.header("x-tooltrail-timestamp");
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(&request.body);
    assert_eq!(
        request.header("x-tooltrail-signature"),
        format!("v1={}", hmac_hex(SECRET, &signed))
    );
    let finding = request.json();
    assert_eq!(
        missing_required(&DETECTION_FINDING, &finding),
        Vec::<String>::new()
    );
    assert_eq!(finding["class_uid"], 2004);
    assert_eq!(finding["type_uid"], 200401);
    assert_eq!(finding["finding_info"]["uid"], alert.alert_id.as_str());
    assert_eq!(finding["finding_info"]["title"], alert.title.as_str());
    assert_eq!(finding["metadata"]["tenant_uid"], alert.tenant_id.as_str());
    assert_eq!(finding["severity_id"], 4, "high");
    running.stop().await
}

#[tokio::test]
async fn slack_and_teams_get_their_message_formats() -> Result<()> {
    let receiver = Receiver::start().await?;
    let dir = tempfile::tempdir()?;
    let mut slack = destination("slack", DestinationKind::Slack, receiver.url("/slack"));
    slack.console_url = Some("https://console.example.com".into());
    let teams = destination("teams", DestinationKind::Teams, receiver.url("/teams"));
    let running = start(config(vec![slack, teams]), dir.path())?;
    let alert = alert(1, Severity::Critical, "acme", DetectorKind::CrossTenant);
    assert_eq!(running.handle.enqueue(&alert)?, 2);
    let requests = receiver.wait_for(GUARD, |r| r.len() == 2).await?;
    let body = |path: &str| {
        requests
            .iter()
            .find(|r| r.path == path)
            .map(Recorded::json)
            .expect("a request on the path")
    };

    let slack = body("/slack");
    assert!(
        slack["text"]
            .as_str()
            .expect("fallback")
            .contains("[CRITICAL]")
    );
    let blocks = slack["blocks"].as_array().expect("blocks");
    let kinds: Vec<&str> = blocks.iter().filter_map(|b| b["type"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "header",
            "section",
            "section",
            "section",
            "section",
            "rich_text",
            "actions",
            "context"
        ]
    );
    let header = blocks[0]["text"]["text"].as_str().expect("header");
    assert!(
        header.contains("CRITICAL") && header.contains("alice@acme"),
        "{header}"
    );
    assert!(
        blocks[1]["text"]["text"]
            .as_str()
            .expect("title")
            .contains(&alert.title)
    );
    let fields: Vec<&str> = blocks[2]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .filter_map(|f| f["text"].as_str())
        .collect();
    assert!(
        fields[0].contains("cross_tenant") && fields[1].contains("91/100"),
        "{fields:?}"
    );
    assert!(fields[2].starts_with("*Window*"), "{fields:?}");
    assert!(
        blocks[3]["text"]["text"]
            .as_str()
            .expect("events")
            .contains("`evt-1`")
    );
    assert_eq!(blocks[4]["text"]["text"], "*Investigate*");
    assert_eq!(
        blocks[5]["elements"][0]["elements"][0]["text"],
        alert.investigation_sql()
    );
    assert_eq!(
        blocks[6]["elements"][0]["url"],
        format!("https://console.example.com/alerts/{}", alert.alert_id)
    );

    let teams = body("/teams");
    assert_eq!(teams["type"], "message");
    let attachment = &teams["attachments"][0];
    assert_eq!(
        attachment["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    let card = &attachment["content"];
    assert_eq!(card["type"], "AdaptiveCard");
    assert_eq!(card["version"], "1.4");
    let card_body = card["body"].as_array().expect("card body");
    let facts = card_body
        .iter()
        .find(|b| b["type"] == "FactSet")
        .and_then(|b| b["facts"].as_array())
        .expect("facts");
    let titles: Vec<&str> = facts.iter().filter_map(|f| f["title"].as_str()).collect();
    assert_eq!(titles, ["Detector", "Score", "Window", "User", "Alert id"]);
    assert!(
        card_body
            .iter()
            .any(|b| b["type"] == "CodeBlock" && b["codeSnippet"] == alert.investigation_sql())
    );
    assert!(card.get("actions").is_none(), "no console_url, no button");
    running.stop().await
}

#[tokio::test]
async fn alerts_are_routed_by_severity_tenant_and_detector() -> Result<()> {
    let receiver = Receiver::start().await?;
    let dir = tempfile::tempdir()?;
    let default = webhook("default", receiver.url("/default"));
    let mut everything = webhook("everything", receiver.url("/everything"));
    everything.min_severity = Severity::Low;
    let mut critical = webhook("critical", receiver.url("/critical"));
    critical.min_severity = Severity::Critical;
    let mut acme = webhook("acme", receiver.url("/acme"));
    acme.min_severity = Severity::Low;
    acme.tenants = vec!["acme".into()];
    let mut cross = webhook("cross", receiver.url("/cross"));
    cross.detectors = vec![
        DetectorKind::CrossTenant.into(),
        DetectorKind::SensitiveTool.into(),
    ];
    let mut running = start(
        config(vec![default, everything, critical, acme, cross]),
        dir.path(),
    )?;

    let low = alert(1, Severity::Low, "acme", DetectorKind::DenialSpike);
    let medium_globex = alert(2, Severity::Medium, "globex", DetectorKind::DenialSpike);
    let critical_cross = alert(3, Severity::Critical, "globex", DetectorKind::CrossTenant);
    let h = &running.handle;
    assert_eq!(h.enqueue(&low)?, 2, "everything, acme");
    assert_eq!(h.enqueue(&medium_globex)?, 2, "default, everything");
    assert_eq!(h.enqueue(&critical_cross)?, 4, "all but acme");
    for _ in 0..8 {
        running
            .next(GUARD, |e| e.outcome == Outcome::Delivered)
            .await?;
    }

    let got = |path: &str| {
        let mut ids: Vec<String> = receiver
            .requests()
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.key().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let ids = |alerts: &[&Alert]| {
        let mut ids: Vec<String> = alerts.iter().map(|a| a.alert_id.clone()).collect();
        ids.sort();
        ids
    };
    assert_eq!(got("/default"), ids(&[&medium_globex, &critical_cross]));
    assert_eq!(
        got("/everything"),
        ids(&[&low, &medium_globex, &critical_cross])
    );
    assert_eq!(got("/critical"), ids(&[&critical_cross]));
    assert_eq!(got("/acme"), ids(&[&low]));
    assert_eq!(got("/cross"), ids(&[&critical_cross]));
    running.stop().await
}

#[tokio::test]
async fn a_receiver_failing_then_recovering_gets_the_alert_exactly_once() -> Result<()> {
    let receiver = Receiver::start().await?;
    receiver.fail_next(3, 503);
    let dir = tempfile::tempdir()?;
    let mut running = start(
        config(vec![webhook("siem", receiver.url("/hook"))]),
        dir.path(),
    )?;
    let alert = high(1);
    running.handle.enqueue(&alert)?;
    running.outcome(Outcome::Delivered, &alert).await?;

    let requests = receiver.requests();
    assert_eq!(requests.len(), 4, "three failures, then the success");
    assert!(requests.iter().all(|r| r.key() == alert.alert_id));
    assert_eq!(receiver.successes().len(), 1);
    let m = &running.metrics;
    assert_eq!(m.deliveries("siem", Outcome::Retry), 3);
    assert_eq!(m.deliveries("siem", Outcome::Delivered), 1);
    assert_eq!(m.deliveries("siem", Outcome::Failed), 0);
    assert_eq!(m.pending_count("siem"), 0);
    running.stop().await
}

#[tokio::test]
async fn pending_alerts_survive_a_restart_and_go_out_once_the_receiver_is_back() -> Result<()> {
    let receiver = Receiver::start().await?;
    receiver.set_failing(true, 503);
    let dir = tempfile::tempdir()?;
    let cfg = config(vec![webhook("siem", receiver.url("/hook"))]);

    let mut first = start(cfg.clone(), dir.path())?;
    let alert = high(1);
    first.handle.enqueue(&alert)?;
    first.outcome(Outcome::Retry, &alert).await?;
    // Crash: the dispatcher is dropped mid-flight, no clean shutdown.
    first.task.abort();
    let _ = first.task.await;
    drop(first.handle);
    let pending = dir
        .path()
        .join(format!("pending/siem/{}.json", alert.alert_id));
    assert!(pending.exists(), "the alert waits in the outbox");

    receiver.set_failing(false, 503);
    let mut second = start(cfg, dir.path())?;
    assert_eq!(second.metrics.pending_count("siem"), 1);
    second.outcome(Outcome::Delivered, &alert).await?;
    let ok = receiver.successes();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].key(), alert.alert_id);
    assert!(!pending.exists());
    assert_eq!(second.metrics.pending_count("siem"), 0);
    // And it stays delivered.
    assert_eq!(second.handle.enqueue(&alert)?, 0);
    second.stop().await
}

#[tokio::test]
async fn shutdown_stops_promptly_and_keeps_undelivered_alerts() -> Result<()> {
    let receiver = Receiver::start().await?;
    receiver.set_failing(true, 500);
    let dir = tempfile::tempdir()?;
    let mut cfg = config(vec![webhook("siem", receiver.url("/hook"))]);
    // Waits long enough that only a prompt shutdown ends the test in time.
    cfg.retry.base_delay = Duration::from_secs(3600);
    cfg.retry.max_delay = Duration::from_secs(3600);
    let mut running = start(cfg, dir.path())?;
    let alert = high(1);
    running.handle.enqueue(&alert)?;
    running.outcome(Outcome::Retry, &alert).await?;
    let handle = running.handle.clone();
    tokio::time::timeout(GUARD, running.stop()).await??;
    // Still durable, and enqueueing while stopped is fine too.
    let outbox = handle.outbox_dir().join("pending/siem");
    assert!(outbox.join(format!("{}.json", alert.alert_id)).exists());
    assert_eq!(handle.enqueue(&high(2))?, 1);
    assert_eq!(std::fs::read_dir(outbox)?.count(), 2);
    Ok(())
}

#[tokio::test]
async fn alerts_queued_when_told_to_stop_are_sent_in_the_drain() -> Result<()> {
    let receiver = Receiver::start().await?;
    let dir = tempfile::tempdir()?;
    let running = start(
        config(vec![webhook("siem", receiver.url("/hook"))]),
        dir.path(),
    )?;
    // Told to stop first, then handed the alerts the detector's last
    // windows raised: the drain still sends them, then stops.
    running.shutdown.cancel();
    let alerts = [high(1), high(2)];
    for alert in &alerts {
        running.handle.enqueue(alert)?;
    }
    tokio::time::timeout(GUARD, running.stop()).await??;
    assert_eq!(receiver.requests().len(), alerts.len());
    Ok(())
}

#[tokio::test]
async fn a_permanent_rejection_goes_to_dead_letters_and_is_not_retried() -> Result<()> {
    let receiver = Receiver::start().await?;
    receiver.fail_next(1, 400);
    let dir = tempfile::tempdir()?;
    let mut running = start(
        config(vec![webhook("siem", receiver.url("/hook"))]),
        dir.path(),
    )?;
    let rejected = high(1);
    running.handle.enqueue(&rejected)?;
    let event = running.outcome(Outcome::Failed, &rejected).await?;
    assert!(
        event.reason.as_deref().is_some_and(|r| r.contains("400")),
        "{event:?}"
    );

    let letter = dir
        .path()
        .join(format!("dead/siem/{}.json", rejected.alert_id));
    let letter: Value = serde_json::from_slice(&std::fs::read(letter)?)?;
    assert_eq!(letter["alert"]["alert_id"], rejected.alert_id.as_str());
    assert_eq!(letter["attempts"], 1);
    assert!(
        letter["reason"]
            .as_str()
            .is_some_and(|r| r.contains("400 Bad Request"))
    );
    // The next alert goes through, and the rejected one was never tried again.
    let next = high(2);
    running.handle.enqueue(&next)?;
    running.outcome(Outcome::Delivered, &next).await?;
    let keys: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| r.key().to_owned())
        .collect();
    assert_eq!(keys, [rejected.alert_id.clone(), next.alert_id.clone()]);
    assert_eq!(running.metrics.deliveries("siem", Outcome::Failed), 1);
    assert_eq!(running.metrics.deliveries("siem", Outcome::Retry), 0);
    assert_eq!(running.handle.enqueue(&rejected)?, 0, "dead stays dead");
    running.stop().await
}

#[tokio::test]
async fn enqueue_is_idempotent_and_delivered_alerts_are_not_sent_again() -> Result<()> {
    let receiver = Receiver::start().await?;
    let dir = tempfile::tempdir()?;
    let cfg = config(vec![webhook("siem", receiver.url("/hook"))]);
    let mut running = start(cfg.clone(), dir.path())?;
    let alert = high(1);
    assert_eq!(running.handle.enqueue(&alert)?, 1);
    assert_eq!(running.handle.enqueue(&alert)?, 0, "already pending");
    running.outcome(Outcome::Delivered, &alert).await?;
    assert_eq!(running.handle.enqueue(&alert)?, 0, "already delivered");
    running.stop().await?;

    // Nor after a restart (a replay of the same input gives the same ids).
    let mut again = start(cfg, dir.path())?;
    assert_eq!(again.handle.enqueue(&alert)?, 0);
    let other = high(2);
    assert_eq!(again.handle.enqueue(&other)?, 1);
    again.outcome(Outcome::Delivered, &other).await?;
    let keys: Vec<String> = receiver
        .requests()
        .iter()
        .map(|r| r.key().to_owned())
        .collect();
    assert_eq!(keys, [alert.alert_id.clone(), other.alert_id.clone()]);
    again.stop().await
}

/// A destination that follows triage gets each change of an alert it was
/// sent, signed, once, under its own key; one that does not follow triage,
/// or that the alert does not route to, gets none.
#[tokio::test]
async fn destinations_that_follow_triage_get_each_change_once() -> Result<()> {
    let receiver = Receiver::start().await?;
    let dir = tempfile::tempdir()?;
    let following = DestinationConfig {
        triage: true,
        ..webhook("soc", receiver.url("/soc"))
    };
    let only_critical = DestinationConfig {
        triage: true,
        min_severity: Severity::Critical,
        ..webhook("pager", receiver.url("/pager"))
    };
    let not_following = webhook("siem", receiver.url("/siem"));
    let cfg = config(vec![following, only_critical, not_following]);
    let mut running = start(cfg.clone(), dir.path())?;
    let alert = high(1);
    assert_eq!(running.handle.enqueue(&alert)?, 2);
    let note = TriageNote {
        triage_id: "0195c0de-0000-7000-8000-000000000001".into(),
        status: "closed".into(),
        assignee: Some("ana".into()),
        close_reason: Some("false_positive".into()),
        comment: Some("the nightly backup job".into()),
        actor: "ana".into(),
        // The wire carries microseconds, as the lake does.
        time: DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).expect("now"),
    };
    assert_eq!(running.handle.enqueue_triage(&alert, &note)?, 1, "soc only");
    assert_eq!(
        running.handle.enqueue_triage(&alert, &note)?,
        0,
        "already pending"
    );
    running
        .next(GUARD, |e| {
            e.outcome == Outcome::Delivered
                && e.triage_id.as_deref() == Some(note.triage_id.as_str())
        })
        .await?;
    let requests = receiver.wait_for(GUARD, |r| r.len() >= 3).await?;
    let triage: Vec<&Recorded> = requests
        .iter()
        .filter(|r| r.json()["type"] == "alert.triage")
        .collect();
    let [change] = triage[..] else {
        bail!("expected one triage request, got {requests:?}");
    };
    assert_eq!(change.path, "/soc");
    assert_eq!(
        change.key(),
        format!("{}_{}", alert.alert_id, note.triage_id)
    );
    let body = change.json();
    assert_eq!(body["alert_id"], alert.alert_id.as_str());
    assert_eq!(body["triage"]["close_reason"], "false_positive");
    let back: TriageNote = serde_json::from_value(body["triage"].clone())?;
    assert_eq!(back, note);
    let timestamp = change.header("x-tooltrail-timestamp");
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(&change.body);
    assert_eq!(
        change.header("x-tooltrail-signature"),
        format!("v1={}", hmac_hex(SECRET, &signed))
    );
    running.stop().await?;
    // Delivered once: not again after a restart.
    let again = start(cfg, dir.path())?;
    assert_eq!(again.handle.enqueue_triage(&alert, &note)?, 0);
    again.stop().await
}

#[tokio::test]
async fn a_hanging_destination_does_not_delay_another() -> Result<()> {
    let receiver = Receiver::start().await?;
    let dir = tempfile::tempdir()?;
    // The hanging request times out only after 30 s, past the guard: if the
    // destinations shared a sender, the healthy one would miss the guard.
    let cfg = config(vec![
        webhook("stuck", receiver.url("/hang")),
        webhook("healthy", receiver.url("/hook")),
    ]);
    let mut running = start(cfg, dir.path())?;
    let alert = high(1);
    assert_eq!(running.handle.enqueue(&alert)?, 2);
    let event = running
        .next(GUARD, |e| e.outcome == Outcome::Delivered)
        .await?;
    assert_eq!(event.destination, "healthy");
    assert_eq!(running.metrics.pending_count("stuck"), 1);
    running.stop().await
}

#[tokio::test(start_paused = true)]
async fn the_rate_limit_holds_alerts_back_without_dropping_them() -> Result<()> {
    let receiver = Receiver::start().await?;
    let dir = tempfile::tempdir()?;
    let mut siem = webhook("siem", receiver.url("/hook"));
    siem.max_per_minute = 2;
    let mut running = start(config(vec![siem]), dir.path())?;
    let t0 = Instant::now();
    let alerts: Vec<Alert> = (1..=5).map(high).collect();
    for alert in &alerts {
        assert_eq!(running.handle.enqueue(alert)?, 1);
    }
    for _ in 0..2 {
        running
            .next(VIRTUAL_GUARD, |e| e.outcome == Outcome::Delivered)
            .await?;
    }
    assert!(t0.elapsed() < Duration::from_secs(60));
    assert_eq!(
        running.metrics.pending_count("siem"),
        3,
        "held back, not dropped"
    );

    let requests = receiver.wait_for(VIRTUAL_GUARD, |r| r.len() == 5).await?;
    let minute = |r: &Recorded| r.at.duration_since(t0).as_secs() / 60;
    let minutes: Vec<u64> = requests.iter().map(minute).collect();
    assert_eq!(minutes, [0, 0, 1, 1, 2], "two a minute");
    let keys: Vec<&str> = requests.iter().map(Recorded::key).collect();
    let expected: Vec<&str> = alerts.iter().map(|a| a.alert_id.as_str()).collect();
    assert_eq!(keys, expected, "all of them, oldest first");
    running
        .next(VIRTUAL_GUARD, |e| e.alert_id == alerts[4].alert_id)
        .await?;
    assert_eq!(running.metrics.pending_count("siem"), 0);
    running.stop().await
}

#[tokio::test(start_paused = true)]
async fn an_alert_outlasts_a_destination_down_for_an_hour() -> Result<()> {
    let receiver = Receiver::start().await?;
    receiver.set_failing(true, 503);
    let dir = tempfile::tempdir()?;
    let mut cfg = config(vec![webhook("siem", receiver.url("/hook"))]);
    cfg.retry = RetryConfig::default(); // 1 s doubling to 5 min
    let mut running = start(cfg, dir.path())?;
    let alert = high(1);
    running.handle.enqueue(&alert)?;
    tokio::time::sleep(Duration::from_secs(3600)).await; // virtual: no real wait
    let failures = receiver.requests().len();
    assert!(failures >= 10, "kept retrying: {failures} attempts");
    assert_eq!(running.metrics.pending_count("siem"), 1);

    receiver.set_failing(false, 503);
    running
        .next(VIRTUAL_GUARD, |e| e.outcome == Outcome::Delivered)
        .await?;
    assert_eq!(receiver.successes().len(), 1);
    assert_eq!(
        running.metrics.deliveries("siem", Outcome::Retry),
        u64::try_from(failures)?
    );
    running.stop().await
}

#[tokio::test]
async fn build_rejects_an_invalid_configuration_naming_the_field() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut bad = webhook("siem", "not a url".into());
    bad.secret = None;
    let err = Delivery::build(
        config(vec![bad]),
        dir.path(),
        Metrics::register(&mut Registry::default()),
    )
    .err()
    .context("an invalid config is refused")?;
    let text = err.to_string();
    assert!(
        text.contains("detect.delivery.destinations[0].url"),
        "{text}"
    );
    assert!(
        text.contains("detect.delivery.destinations[0].secret"),
        "{text}"
    );
    Ok(())
}

#[test]
fn the_documented_example_config_parses_and_validates() -> Result<()> {
    let config: DeliveryConfig = toml::from_str(EXAMPLE)?;
    assert_eq!(config.validate(), Vec::new());
    assert_eq!(config.destinations.len(), 3);
    Ok(())
}

/// The example in the report and README: keep them in sync.
const EXAMPLE: &str = r#"
request_timeout = "10s"
delivered_retention = "7days"

[retry]
base_delay = "1s"
max_delay = "5m"
give_up_after = "24h"

[[destinations]]
name = "siem"
kind = "webhook"
url = "https://siem.example.com/hooks/tooltrail"
secret = "change-me-to-a-long-random-string"

[[destinations]]
name = "soc-slack"
kind = "slack"
url = "https://hooks.slack.com/services/T000/B000/XXXXXXXX"
console_url = "https://tooltrail.example.com"
min_severity = "high"
max_per_minute = 20

[[destinations]]
name = "acme-teams"
kind = "teams"
url = "https://prod-00.westeurope.logic.azure.com/workflows/abc/triggers/manual/paths/invoke?sig=XXXX"
tenants = ["acme"]
detectors = ["cross_tenant", "sensitive_tool", "denial_spike"]
min_severity = "medium"
"#;
