//! Detection end to end: `detect --replay` and `eval` over simulated traffic,
//! and `tooltrail up` paging a webhook receiver with a signed alert.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::Notify;

use crate::support::lake::alert_records;
use crate::support::process::{Tooltrail, path_str, sql_csv};
use crate::support::run_tooltrail;

#[tokio::test]
async fn a_replay_writes_alerts_for_the_injected_attacks_and_a_rerun_gives_the_same_ids()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let (events, labels) = (dir.path().join("e.ndjson"), dir.path().join("l.ndjson"));
    run_tooltrail(
        &[
            "simulate",
            "--users",
            "200",
            "--days",
            "21",
            "--seed",
            "5",
            "--incident-rate",
            "10",
            "--out",
            path_str(&events)?,
            "--labels",
            path_str(&labels)?,
        ],
        Duration::from_secs(120),
    )
    .await?;
    let (a1, a2) = (dir.path().join("a1.ndjson"), dir.path().join("a2.ndjson"));
    let lake = dir.path().join("lake");
    for out in [&a1, &a2] {
        let mut args = vec![
            "detect",
            "--replay",
            path_str(&events)?,
            "--alerts",
            path_str(out)?,
        ];
        // The first run also backfills a lake's alerts table.
        if out == &a1 {
            args.extend(["--lake", path_str(&lake)?]);
        }
        run_tooltrail(&args, Duration::from_secs(120)).await?;
    }
    let first = std::fs::read_to_string(&a1)?;
    ensure!(
        first == std::fs::read_to_string(&a2)?,
        "a rerun changed the alerts"
    );
    let alerts: Vec<Value> = first
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .context("alerts are JSON lines")?;
    ensure!(!alerts.is_empty(), "no alerts at all");
    let sorted = |values: &[Value]| {
        let mut texts: Vec<String> = values.iter().map(Value::to_string).collect();
        texts.sort();
        texts
    };
    ensure!(
        sorted(&alert_records(&lake)?) == sorted(&alerts),
        "the lake's alerts table holds other alerts than the file"
    );
    let incidents: Vec<Value> = std::fs::read_to_string(&labels)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    // Every cross-tenant incident is caught: it is unambiguous.
    for incident in incidents.iter().filter(|i| i["scenario"] == "cross_tenant") {
        let caught = alerts
            .iter()
            .any(|a| a["detector"] == "cross_tenant" && a["user_id"] == incident["user_id"]);
        ensure!(caught, "cross-tenant incident missed: {incident}");
    }
    for a in &alerts {
        for field in [
            "alert_id",
            "time",
            "tenant_id",
            "user_id",
            "detector",
            "severity",
            "score",
            "title",
            "explanation",
            "evidence",
            "window_start",
            "window_end",
        ] {
            ensure!(!a[field].is_null(), "alert lacks {field}: {a}");
        }
    }

    let report = run_tooltrail(
        &[
            "eval",
            "--events",
            path_str(&events)?,
            "--labels",
            path_str(&labels)?,
        ],
        Duration::from_secs(120),
    )
    .await?;
    let text = String::from_utf8(report.stdout)?;
    for needle in [
        "TOTAL",
        "false/1kud",
        "ttd_p50",
        "anchor: fixed threshold",
        "anchor: new terms",
        "by intensity",
        "by scenario",
    ] {
        ensure!(
            text.contains(needle),
            "eval output lacks `{needle}`:\n{text}"
        );
    }
    Ok(())
}

#[derive(Clone, Default)]
struct Received {
    requests: Arc<Mutex<Vec<(HeaderMap, Bytes, Instant)>>>,
    arrived: Arc<Notify>,
}

async fn record(State(r): State<Received>, headers: HeaderMap, body: Bytes) -> &'static str {
    r.requests
        .lock()
        .expect("receiver lock")
        .push((headers, body, Instant::now()));
    r.arrived.notify_waiters();
    "ok"
}

#[tokio::test]
async fn up_pages_a_webhook_with_a_signed_alert_and_keeps_it_in_the_lake() -> Result<()> {
    let (hook, received) = receiver().await?;
    let setup = UpWithWebhook::new(&hook, "", "min_severity = \"high\"\n")?;
    let up = setup.start().await?;

    let now = chrono::Utc::now();
    let event = json!({
        "schema_version": 1, "event_id": "x-1", "time": now.to_rfc3339(),
        "tenant_id": "acme", "user_id": "mallory", "server": "gdrive", "method": "tools/call",
        "tool": "read_file", "resource": "gdrive://globex/finance/payroll.xlsx",
        "decision": "allow", "status": 200
    });
    let arrived = received.arrived.notified();
    let sent = Instant::now();
    let reply = up.post_events(format!("{event}\n"), &[]).await?;
    ensure!(reply.0 == 200, "{}", reply.1);
    tokio::time::timeout(Duration::from_secs(20), arrived)
        .await
        .context("no webhook within 20 s")?;
    let (headers, body, at) = received.requests.lock().expect("lock")[0].clone();
    eprintln!("ingest acknowledgement to webhook: {:?}", at - sent);

    let alert: Value = serde_json::from_slice(&body)?;
    ensure!(alert["detector"] == "cross_tenant", "{alert}");
    ensure!(alert["severity"] == "critical", "{alert}");
    ensure!(alert["evidence"]["event_ids"] == json!(["x-1"]), "{alert}");
    let header = |name: &str| -> Result<String> {
        Ok(headers
            .get(name)
            .with_context(|| format!("missing {name}"))?
            .to_str()?
            .to_string())
    };
    ensure!(header("idempotency-key")? == alert["alert_id"].as_str().unwrap_or_default());
    let timestamp = header("x-tooltrail-timestamp")?;
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes())?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(&body);
    let expected = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
    ensure!(
        header("x-tooltrail-signature")? == expected,
        "signature does not verify"
    );

    // The alert is also in the lake's alerts table. It is enqueued for delivery before it is
    // committed there, so the webhook may come first: wait for the lake a little.
    let deadline = crate::support::Deadline::after(Duration::from_secs(20));
    while !alert_records(&up.lake())?
        .iter()
        .any(|record| record["alert_id"] == alert["alert_id"])
    {
        deadline.remaining("the alert in the lake's alerts table")?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = up.get_text("/metrics").await?;
    ensure!(
        metrics.contains("tooltrail_detect_alerts_total"),
        "{metrics}"
    );
    ensure!(
        metrics.contains("tooltrail_alert_outbox_pending{destination=\"soc\"}"),
        "{metrics}"
    );
    up.stop().await?;
    Ok(())
}

/// A destination with `triage = true` hears of an analyst's triage change of
/// an alert it was paged with: `up` wires the alerts API to the outbox.
#[tokio::test]
async fn an_analyst_closing_an_alert_is_told_to_the_destination_that_follows_triage() -> Result<()>
{
    use sha2::Digest;
    let (hook, received) = receiver().await?;
    let token = format!(
        "[[query.tokens]]\nname = \"ana\"\nsha256 = \"{}\"\nrole = \"analyst\"\ntenants = [\"acme\"]\n",
        hex::encode(Sha256::digest(b"tok-ana"))
    );
    let setup = UpWithWebhook::new(&hook, &token, "triage = true\n")?;
    let up = setup.start().await?;
    let event = json!({
        "schema_version": 1, "event_id": "x-1", "time": chrono::Utc::now().to_rfc3339(),
        "tenant_id": "acme", "user_id": "mallory", "server": "gdrive", "method": "tools/call",
        "tool": "read_file", "resource": "gdrive://globex/finance/payroll.xlsx",
        "decision": "allow", "status": 200
    });
    let paged = received.arrived.notified();
    let reply = up.post_events(format!("{event}\n"), &[]).await?;
    ensure!(reply.0 == 200, "{}", reply.1);
    tokio::time::timeout(Duration::from_secs(20), paged)
        .await
        .context("no alert at the webhook within 20 s")?;
    let alert: Value = serde_json::from_slice(&received.requests.lock().expect("lock")[0].1)?;
    let id = alert["alert_id"]
        .as_str()
        .context("an alert id")?
        .to_owned();

    // The alert is in the lake before the API can triage it.
    let client = reqwest::Client::new();
    let deadline = crate::support::Deadline::after(Duration::from_secs(20));
    let triage = loop {
        let response = client
            .post(up.url(&format!("/v1/alerts/{id}/triage")))
            .bearer_auth("tok-ana")
            .json(&json!({"status": "closed", "close_reason": "true_positive_malicious", "comment": "revoked"}))
            .send()
            .await?;
        if response.status() == 200 {
            break response.json::<Value>().await?;
        }
        ensure!(
            response.status() == 404,
            "triage: {}",
            response.text().await?
        );
        deadline.remaining("the alert in the lake")?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let deadline = crate::support::Deadline::after(Duration::from_secs(20));
    let change = loop {
        let found = received
            .requests
            .lock()
            .expect("lock")
            .iter()
            .find(|(_, body, _)| {
                serde_json::from_slice::<Value>(body).is_ok_and(|b| b["type"] == "alert.triage")
            })
            .cloned();
        if let Some(change) = found {
            break change;
        }
        deadline.remaining("the triage change at the webhook")?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (headers, body, _) = change;
    let body: Value = serde_json::from_slice(&body)?;
    ensure!(body["alert_id"] == id.as_str(), "{body}");
    ensure!(
        body["triage"]["close_reason"] == "true_positive_malicious",
        "{body}"
    );
    ensure!(body["triage"]["actor"] == "ana", "{body}");
    ensure!(
        body["triage"]["comment"] == triage["triage"]["comment"],
        "{body}"
    );
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    ensure!(key.starts_with(&format!("{id}_")), "{key}");
    up.stop().await?;
    Ok(())
}

/// An `ocsf` destination gets the alert as an OCSF Detection Finding, and the
/// `ocsf_detection_finding` view shows the very same record for it: one
/// definition behind both.
#[tokio::test]
async fn up_posts_an_alert_to_an_ocsf_destination_as_the_finding_the_view_shows() -> Result<()> {
    use tooltrail_lake::ocsf::{DETECTION_FINDING, missing_required};
    let (hook, received) = receiver().await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("tooltrail.toml");
    std::fs::write(
        &config,
        format!(
            "[[detect.delivery.destinations]]\nname = \"siem\"\nkind = \"ocsf\"\nurl = \"{hook}\"\nmin_severity = \"high\"\n"
        ),
    )?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let up = Tooltrail::up_with_config(&config, &data, &[]).await?;
    // A resource of another tenant: a cross-tenant alert, at once.
    let event = json!({
        "schema_version": 1, "event_id": "x-1", "time": chrono::Utc::now().to_rfc3339(),
        "tenant_id": "acme", "user_id": "mallory", "server": "gdrive", "method": "tools/call",
        "tool": "read_file", "resource": "gdrive://globex/finance/payroll.xlsx",
        "decision": "allow", "status": 200
    });
    let arrived = received.arrived.notified();
    let reply = up.post_events(format!("{event}\n"), &[]).await?;
    ensure!(reply.0 == 200, "{}", reply.1);
    tokio::time::timeout(Duration::from_secs(20), arrived)
        .await
        .context("no finding within 20 s")?;
    let (headers, body, _) = received.requests.lock().expect("lock")[0].clone();
    let finding: Value = serde_json::from_slice(&body)?;
    let missing = missing_required(&DETECTION_FINDING, &finding);
    ensure!(missing.is_empty(), "{missing:?} in {finding:#}");
    ensure!(finding["class_uid"] == 2004, "{finding}");
    ensure!(
        finding["finding_info"]["types"] == json!(["cross_tenant"]),
        "{finding}"
    );
    ensure!(finding["metadata"]["tenant_uid"] == "acme", "{finding}");
    ensure!(
        finding["evidences"][0]["data"]["event_ids"] == json!(["x-1"]),
        "{finding}"
    );
    let id = finding["finding_info"]["uid"].as_str().context("a uid")?;
    ensure!(headers.get("idempotency-key").and_then(|v| v.to_str().ok()) == Some(id));

    // Once the alert is in the lake, the view shows the same record.
    let deadline = crate::support::Deadline::after(Duration::from_secs(20));
    while !alert_records(&up.lake())?
        .iter()
        .any(|record| record["alert_id"] == id)
    {
        deadline.remaining("the alert in the lake's alerts table")?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let lake = up.lake();
    let out = crate::support::process::run_tooltrail_env(
        &[
            "sql",
            "--lake",
            path_str(&lake)?,
            "--format",
            "ndjson",
            "SELECT * FROM ocsf_detection_finding",
        ],
        &[],
        Duration::from_secs(60),
    )
    .await?;
    let shown: Vec<Value> = String::from_utf8(out.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    ensure!(
        shown == [finding.clone()],
        "the view shows {shown:#?}, the destination got {finding:#}"
    );
    up.stop().await?;
    Ok(())
}

const SECRET: &str = "a-long-enough-shared-secret";

/// `tooltrail up` in a temporary data directory, configured with `before`
/// (TOML sections) and one webhook destination `soc` to `hook`, with
/// `destination` as extra keys of it.
struct UpWithWebhook {
    dir: tempfile::TempDir,
}

impl UpWithWebhook {
    fn new(hook: &str, before: &str, destination: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        std::fs::write(
            dir.path().join("tooltrail.toml"),
            format!(
                "{before}[[detect.delivery.destinations]]\nname = \"soc\"\nkind = \"webhook\"\nurl = \"{hook}\"\nsecret = \"{SECRET}\"\n{destination}"
            ),
        )?;
        std::fs::create_dir_all(dir.path().join("data"))?;
        Ok(UpWithWebhook { dir })
    }

    /// Starts (or restarts) `up` on the same data directory.
    async fn start(&self) -> Result<Tooltrail> {
        let (config, data) = (
            self.dir.path().join("tooltrail.toml"),
            self.dir.path().join("data"),
        );
        Tooltrail::up_with_config(&config, &data, &[]).await
    }
}

/// Starts a webhook receiver; returns its URL and what it records.
async fn receiver() -> Result<(String, Received)> {
    let received = Received::default();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(record))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((hook, received))
}

/// `user`'s three ordinary weeks before `now` (four calls an hour, 9 to 17
/// UTC on weekdays, never denied), then thirty denials on two tools within
/// `now`'s minute: a denial spike, judged when that minute's window closes.
/// With `allowed_lateness = "5m"` the window stays open for six minutes,
/// so nothing but a shutdown's drain judges it within a test.
fn history_then_burst(user: &str, now: chrono::DateTime<chrono::Utc>) -> String {
    use chrono::{Datelike, DurationRound, Timelike};
    let line = |id: String, time: chrono::DateTime<chrono::Utc>, tool: &str, denied: bool| {
        let (decision, status) = if denied {
            ("deny", 403)
        } else {
            ("allow", 200)
        };
        format!(
            "{}\n",
            json!({
                "schema_version": 1, "event_id": id, "time": time.to_rfc3339(),
                "tenant_id": "acme", "user_id": user, "server": "github", "method": "tools/call",
                "tool": tool, "decision": decision, "status": status
            })
        )
    };
    let midnight = now
        .duration_trunc(chrono::TimeDelta::days(1))
        .expect("a day");
    let mut body = String::new();
    // Oldest first, as a gateway sends them.
    for day in (1..=21).rev() {
        let date = midnight - chrono::TimeDelta::days(day);
        if date.weekday().number_from_monday() > 5 {
            continue;
        }
        for hour in 9..17 {
            for k in 0..4 {
                let time = date + chrono::TimeDelta::minutes(hour * 60 + k * 15);
                body.push_str(&line(
                    format!("{user}-h{}", time.timestamp()),
                    time,
                    "search_issues",
                    false,
                ));
            }
        }
    }
    let minute = now
        .with_second(0)
        .expect("second 0")
        .with_nanosecond(0)
        .expect("nanosecond 0");
    for i in 0..30 {
        let time = minute + chrono::TimeDelta::seconds(i);
        body.push_str(&line(
            format!("{user}-d{i}"),
            time,
            ["close_issue", "merge_pr"][i as usize % 2],
            true,
        ));
    }
    body
}

/// The denial spikes of `user` the receiver got.
fn spikes_of(received: &Received, user: &str) -> Vec<Value> {
    received
        .requests
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|(_, body, _)| serde_json::from_slice::<Value>(body).ok())
        .filter(|a| a["user_id"] == user && a["detector"] == "denial_spike")
        .collect()
}

#[tokio::test]
async fn an_alert_raised_in_the_shutdown_drain_is_delivered_before_the_process_exits() -> Result<()>
{
    let (hook, received) = receiver().await?;
    let setup = UpWithWebhook::new(&hook, "[detect]\nallowed_lateness = \"5m\"\n", "")?;
    let up = setup.start().await?;
    let reply = up
        .post_events(history_then_burst("alice", chrono::Utc::now()), &[])
        .await?;
    ensure!(reply.0 == 200, "{}", reply.1);
    ensure!(
        spikes_of(&received, "alice").is_empty(),
        "the window was judged before the shutdown; the test needs it open"
    );
    // SIGTERM: intake stops, the detector judges its open windows, delivery
    // sends what they raised, then the process exits.
    let stderr = up.stop_with_stderr().await?;
    let spikes = spikes_of(&received, "alice");
    let all: Vec<String> = received
        .requests
        .lock()
        .expect("lock")
        .iter()
        .map(|(_, body, _)| String::from_utf8_lossy(body).into_owned())
        .collect();
    ensure!(
        spikes.len() == 1,
        "expected the burst's page, got {all:#?}\n{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn a_burst_in_flight_at_kill_9_is_alerted_once_across_restarts_and_the_lake_holds_it_once()
-> Result<()> {
    let (hook, received) = receiver().await?;
    let setup = UpWithWebhook::new(&hook, "[detect]\nallowed_lateness = \"5m\"\n", "")?;
    let up = setup.start().await?;
    let reply = up
        .post_events(history_then_burst("mallory", chrono::Utc::now()), &[])
        .await?;
    ensure!(reply.0 == 200, "{}", reply.1);
    let lake = up.lake();
    up.kill_9().await?;
    ensure!(
        spikes_of(&received, "mallory").is_empty(),
        "the window was judged before the kill; the test needs it open"
    );

    // Restarted, the detector warms from the lake; the window is open again
    // and the shutdown's drain judges it.
    setup.start().await?.stop().await?;
    ensure!(
        spikes_of(&received, "mallory").len() == 1,
        "no page for the burst after the restart"
    );
    // An idle restart, then one with a little more work: they replay the
    // same history, and neither sends nor writes anything twice.
    setup.start().await?.stop().await?;
    let up = setup.start().await?;
    let more = format!(
        "{}\n",
        json!({
            "schema_version": 1, "event_id": "m-later", "time": chrono::Utc::now().to_rfc3339(),
            "tenant_id": "acme", "user_id": "mallory", "server": "github", "method": "tools/call",
            "tool": "search_issues", "decision": "allow", "status": 200
        })
    );
    ensure!(up.post_events(more, &[]).await?.0 == 200);
    up.stop().await?;
    let spikes = spikes_of(&received, "mallory");
    ensure!(
        spikes.len() == 1,
        "expected exactly one page, got {spikes:#?}"
    );

    // Every alert version is in the lake once, and `alerts` shows each once.
    let mut versions = std::collections::HashSet::new();
    let records = alert_records(&lake)?;
    for alert in &records {
        ensure!(
            versions.insert((alert["alert_id"].to_string(), alert["repeats"].to_string())),
            "written twice: {alert}"
        );
    }
    ensure!(!records.is_empty(), "no alerts in the lake");
    let twice = sql_csv(
        &lake,
        "SELECT count(*) - count(DISTINCT alert_id) AS twice FROM alerts",
    )
    .await?;
    assert_eq!(twice, "twice\n0\n");
    Ok(())
}

#[tokio::test]
async fn up_with_kafka_detects_on_what_it_ingests() -> Result<()> {
    use crate::support::{create_topic, kafka_brokers, producer};
    use rdkafka::producer::FutureRecord;

    let brokers = kafka_brokers();
    let topic = create_topic(&brokers, "detect", 2).await?;
    let (hook, received) = receiver().await?;
    let kafka = format!(
        "[kafka]\nbrokers = \"{brokers}\"\ntopic = \"{topic}\"\ngroup_id = \"{topic}-group\"\n[kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n[ingest]\nmax_batch_delay = \"200ms\"\n"
    );
    let setup = UpWithWebhook::new(&hook, &kafka, "")?;
    let up = setup.start().await?;
    let event = json!({
        "schema_version": 1, "event_id": "k-1", "time": chrono::Utc::now().to_rfc3339(),
        "tenant_id": "acme", "user_id": "mallory", "server": "gdrive", "method": "tools/call",
        "tool": "read_file", "resource": "gdrive://globex/finance/payroll.xlsx",
        "decision": "allow", "status": 200
    })
    .to_string();
    let arrived = received.arrived.notified();
    producer(&brokers)?
        .send(
            FutureRecord::to(&topic).key("acme/mallory").payload(&event),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .context("produce")?;
    tokio::time::timeout(Duration::from_secs(60), arrived)
        .await
        .with_context(|| format!("no webhook within 60 s:\n{}", up.stderr()))?;
    let body = received.requests.lock().expect("lock")[0].1.clone();
    let alert: Value = serde_json::from_slice(&body)?;
    ensure!(alert["detector"] == "cross_tenant", "{alert}");
    ensure!(alert["evidence"]["event_ids"] == json!(["k-1"]), "{alert}");
    up.stop().await?;
    Ok(())
}

/// Runs `tooltrail` to its end, whatever its exit status.
async fn tooltrail_output(args: &[&str]) -> Result<std::process::Output> {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_tooltrail"))
        .args(args)
        .kill_on_drop(true)
        .output();
    Ok(tokio::time::timeout(Duration::from_secs(300), run).await??)
}

const SWEEP: &str = r#"
users = 60
days = 8
incident_rate = 60.0
seeds = [5, 6]

[[cell]]
name = "plain"

[[cell]]
name = "weak"
reduced = true
shape = { attack_scale = 0.33, attack_pace = 3.0 }

[[cell]]
name = "unequal"
held_out = true
shape = { rate_spread = 2.0, travel = 3.0 }
"#;

#[tokio::test]
async fn a_sweep_scores_every_cell_and_exits_1_exactly_when_a_target_is_missed() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("sweep.toml");
    std::fs::write(&file, SWEEP)?;
    let out = tooltrail_output(&["eval", "--sweep", path_str(&file)?, "--missed"]).await?;
    let (text, err) = (
        String::from_utf8(out.stdout)?,
        String::from_utf8_lossy(&out.stderr),
    );
    for needle in [
        "normal recall",
        "false/1kud",
        "\nplain ",
        "\nweak ",
        "\nunequal (held out) ",
        "by attack kind",
        "probing/normal",
        "worst tuning cell: normal recall",
        "worst held-out cell: normal recall ",
        "pages per paged incident, over all cells",
    ] {
        ensure!(text.contains(needle), "no `{needle}` in:\n{text}\n{err}");
    }
    let met = text.contains("<= 2 pages per incident: met");
    ensure!(
        met || text.contains("<= 2 pages per incident: MISSED"),
        "no verdict:\n{text}"
    );
    ensure!(
        out.status.success() == met,
        "exit {} but the verdict says met = {met}:\n{text}\n{err}",
        out.status
    );
    if !met {
        ensure!(out.status.code() == Some(1), "{}", out.status);
        ensure!(err.contains("targets missed: "), "{err}");
    }
    // Every incident a cell missed is listed, with what it was.
    for line in text.lines().filter(|l| l.starts_with("missed in ")) {
        ensure!(line.contains(": ") && line.contains(" seed "), "{line}");
    }

    // One cell alone.
    let one = tooltrail_output(&["eval", "--sweep", path_str(&file)?, "--cell", "weak"]).await?;
    let text = String::from_utf8(one.stdout)?;
    ensure!(
        text.contains("\nweak ") && !text.contains("\nplain "),
        "{text}"
    );
    Ok(())
}

#[tokio::test]
async fn a_sweep_file_with_a_wrong_knob_or_cell_is_refused_naming_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("sweep.toml");
    for (body, named) in [
        (
            SWEEP.replace("attack_scale = 0.33", "attack_scal = 0.33"),
            "attack_scal",
        ),
        (
            SWEEP.replace("attack_scale = 0.33", "attack_scale = 0.0"),
            "attack_scale",
        ),
        (SWEEP.replace("seeds = [5, 6]", "seeds = []"), "seeds"),
        (
            SWEEP.replace("name = \"weak\"", "name = \"plain\""),
            "two cells are named \"plain\"",
        ),
    ] {
        std::fs::write(&file, body)?;
        let out = tooltrail_output(&["eval", "--sweep", path_str(&file)?]).await?;
        let err = String::from_utf8_lossy(&out.stderr);
        ensure!(out.status.code() == Some(1), "{}: {err}", out.status);
        ensure!(
            err.contains(named) && err.contains("sweep.toml"),
            "`{named}` or the file not named in: {err}"
        );
    }
    std::fs::write(&file, SWEEP)?;
    let out = tooltrail_output(&["eval", "--sweep", path_str(&file)?, "--cell", "nope"]).await?;
    let err = String::from_utf8_lossy(&out.stderr);
    ensure!(
        out.status.code() == Some(1) && err.contains("no cell is named \"nope\""),
        "{err}"
    );
    Ok(())
}

/// Runs `sql` with DuckDB over the lake's events, in a session whose time
/// zone is `zone`; returns the rows as CSV lines.
async fn duckdb_rows(lake: &std::path::Path, zone: &str, sql: &str) -> Result<Vec<String>> {
    let script = r#"
import csv, duckdb, duckdb_extension_delta, os, sys
lake, zone, sql = sys.argv[1:4]
con = duckdb.connect()
con.execute("SET autoinstall_known_extensions = false")
extensions = os.path.join(os.path.dirname(duckdb_extension_delta.__file__), "extensions")
con.execute(f"LOAD '{extensions}/v{duckdb.__version__}/delta.duckdb_extension'")
con.execute(f"SET TimeZone = '{zone}'")
con.execute(f"CREATE VIEW events AS SELECT * FROM delta_scan('{lake}/events')")
out = csv.writer(sys.stdout, lineterminator="\n")
for row in con.execute(sql).fetchall():
    out.writerow(row)
"#;
    let output = tokio::process::Command::new("python3")
        .args(["-c", script, path_str(lake)?, zone, sql])
        .output()
        .await
        .context("running python3 with duckdb")?;
    ensure!(
        output.status.success(),
        "duckdb failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(String::from_utf8(output.stdout)?
        .lines()
        .map(str::to_owned)
        .collect())
}

#[tokio::test]
async fn the_sql_a_teams_card_carries_selects_the_same_rows_in_tooltrail_and_in_duckdb_in_new_york()
-> Result<()> {
    let (hook, received) = receiver().await?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("tooltrail.toml");
    std::fs::write(
        &config,
        format!(
            "[detect]\nallowed_lateness = \"5m\"\n[[detect.delivery.destinations]]\nname = \"chat\"\nkind = \"teams\"\nurl = \"{hook}\"\n"
        ),
    )?;
    let up = Tooltrail::up_with_config(&config, &dir.path().join("data"), &[]).await?;
    // A user id that is markdown in Teams and needs quoting in SQL.
    let user = "o'neil](x)";
    let reply = up
        .post_events(history_then_burst(user, chrono::Utc::now()), &[])
        .await?;
    ensure!(reply.0 == 200, "{}", reply.1);
    let lake = up.lake();
    up.stop().await?;

    let cards: Vec<Value> = received
        .requests
        .lock()
        .expect("lock")
        .iter()
        .filter_map(|(_, body, _)| serde_json::from_slice::<Value>(body).ok())
        .collect();
    let sql = cards
        .iter()
        .flat_map(|card| {
            card["attachments"][0]["content"]["body"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|block| block["type"] == "CodeBlock")
        .find_map(|block| block["codeSnippet"].as_str().map(str::to_owned))
        .with_context(|| format!("no card with a code block among {cards:#?}"))?;
    ensure!(sql.contains("user_id = 'o''neil](x)'"), "{sql}");

    // The burst's thirty calls, whoever runs it and wherever.
    let ours = sql_csv(&lake, &sql).await?.lines().count() - 1;
    ensure!(ours == 30, "tooltrail found {ours} rows for\n{sql}");
    for zone in ["UTC", "America/New_York", "Asia/Kolkata"] {
        let rows = duckdb_rows(&lake, zone, &sql).await?;
        ensure!(
            rows.len() == 30,
            "DuckDB in {zone} found {} rows for\n{sql}",
            rows.len()
        );
    }
    Ok(())
}
