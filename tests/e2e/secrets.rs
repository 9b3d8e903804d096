//! Canary test: every credential in the configuration is set to a unique value, and none of them
//! may come out of the process anywhere an operator or an attacker can read: `config show`,
//! `config check`, debug logs while deliveries fail (a 500 and an unreachable destination),
//! `/metrics`, alert payloads and headers, and every file `up` writes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Result, ensure};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::support::Deadline;
use crate::support::process::{Tooltrail, path_str};
use crate::support::run_tooltrail;

/// Every credential, by where it goes. Each is unique and appears nowhere else in the config.
const INGEST_TOKEN: &str = "canary-ingest-token-7f3a";
const OK_SECRET: &str = "canary-ok-hmac-secret-5c1d";
const OK_PATH: &str = "canary-ok-path-92be";
const OK_USERINFO: &str = "canary-ok-userinfo-61aa";
const FAIL_SECRET: &str = "canary-fail-hmac-secret-0d4e";
const FAIL_PATH: &str = "canary-fail-path-3b70";
const FAIL_QUERY: &str = "canary-fail-query-c9e2";
const TEAMS_PATH: &str = "canary-teams-path-84f1";
const TEAMS_QUERY: &str = "canary-teams-query-2a6b";
const SLACK_PATH: &str = "canary-slack-path-e5d0";
const KAFKA_PASSWORD: &str = "canary-kafka-password-1b9c";
const KAFKA_JAAS: &str = "canary-kafka-jaas-7d22";
const KAFKA_KEY_PASSWORD: &str = "canary-kafka-key-password-44c0";
const KAFKA_TOKEN: &str = "canary-kafka-oauth-secret-a013";

const CANARIES: &[&str] = &[
    INGEST_TOKEN,
    OK_SECRET,
    OK_PATH,
    OK_USERINFO,
    FAIL_SECRET,
    FAIL_PATH,
    FAIL_QUERY,
    TEAMS_PATH,
    TEAMS_QUERY,
    SLACK_PATH,
    KAFKA_PASSWORD,
    KAFKA_JAAS,
    KAFKA_KEY_PASSWORD,
    KAFKA_TOKEN,
];

/// The part of every canary no other text holds.
const MARK: &str = "canary-";

/// Fails naming `what` if `text` holds any canary.
fn assert_no_canary(what: &str, text: &str) -> Result<()> {
    let found: Vec<&&str> = CANARIES.iter().filter(|c| text.contains(**c)).collect();
    ensure!(
        found.is_empty() && !text.contains(MARK),
        "{what} leaks {found:?}:\n{text}"
    );
    Ok(())
}

#[derive(Clone, Default)]
struct Received {
    requests: Arc<Mutex<Vec<(Uri, HeaderMap, Bytes)>>>,
}

impl Received {
    fn count(&self) -> usize {
        self.requests.lock().expect("receiver lock").len()
    }
}

async fn answer_ok(
    State(r): State<Received>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> &'static str {
    r.requests
        .lock()
        .expect("receiver lock")
        .push((uri, headers, body));
    "ok"
}

async fn answer_500(
    State(r): State<Received>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, &'static str) {
    r.requests
        .lock()
        .expect("receiver lock")
        .push((uri, headers, body));
    (StatusCode::INTERNAL_SERVER_ERROR, "receiver is down")
}

/// Starts a receiver on 127.0.0.1:0 answering every path with `ok` (200) or 500.
async fn receiver(ok: bool) -> Result<(String, Received)> {
    let received = Received::default();
    let app = if ok {
        axum::Router::new().fallback(answer_ok)
    } else {
        axum::Router::new().fallback(answer_500)
    };
    let app = app.with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((addr.to_string(), received))
}

/// The config: an ingest token of acme, a webhook that answers 200, a webhook and a Teams
/// destination that answer 500, a Slack destination nobody listens on; `kafka` adds a
/// `[kafka]` section with SASL and SSL credentials.
fn config(ok: &str, fail: &str, kafka: bool) -> String {
    let token_hash = hex::encode(Sha256::digest(INGEST_TOKEN.as_bytes()));
    let mut text = format!(
        r#"[log]
filter = "debug"

[http]
[[http.ingest_tokens]]
name = "gw-acme"
sha256 = "{token_hash}"
tenants = ["acme"]

[detect.delivery]
request_timeout = "2s"
[detect.delivery.retry]
base_delay = "20ms"
max_delay = "100ms"

[[detect.delivery.destinations]]
name = "siem-ok"
kind = "webhook"
url = "http://{OK_USERINFO}@{ok}/hooks/{OK_PATH}"
secret = "{OK_SECRET}"

[[detect.delivery.destinations]]
name = "siem-down"
kind = "webhook"
url = "http://{fail}/hooks/{FAIL_PATH}?sig={FAIL_QUERY}"
secret = "{FAIL_SECRET}"

[[detect.delivery.destinations]]
name = "teams-down"
kind = "teams"
url = "http://{fail}/workflows/{TEAMS_PATH}?sig={TEAMS_QUERY}"

[[detect.delivery.destinations]]
name = "slack-unreachable"
kind = "slack"
url = "http://127.0.0.1:1/services/{SLACK_PATH}"
"#
    );
    if kafka {
        text.push_str(&format!(
            r#"
[kafka]
brokers = "127.0.0.1:1"
topic = "events"
tenants = ["acme"]
[kafka.properties]
"security.protocol" = "sasl_ssl"
"sasl.mechanism" = "SCRAM-SHA-512"
"sasl.username" = "tooltrail"
"sasl.password" = "{KAFKA_PASSWORD}"
"sasl.jaas.config" = "{KAFKA_JAAS}"
"ssl.key.password" = "{KAFKA_KEY_PASSWORD}"
"sasl.oauthbearer.client.secret" = "{KAFKA_TOKEN}"
"#
        ));
    }
    text
}

/// Every file under `dir`, read as bytes and checked for canaries.
fn assert_no_canary_in_files(dir: &std::path::Path) -> Result<usize> {
    let mut checked = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path)?;
                assert_no_canary(
                    &path.display().to_string(),
                    &String::from_utf8_lossy(&bytes),
                )?;
                checked += 1;
            }
        }
    }
    Ok(checked)
}

#[tokio::test]
async fn no_credential_is_printed_logged_served_or_written_anywhere() -> Result<()> {
    let (ok, ok_received) = receiver(true).await?;
    let (fail, fail_received) = receiver(false).await?;
    let dir = tempfile::tempdir()?;
    let (full, running) = (dir.path().join("full.toml"), dir.path().join("up.toml"));
    std::fs::write(&full, config(&ok, &fail, true))?;
    // `up` would connect to the brokers: it runs without the [kafka] section.
    std::fs::write(&running, config(&ok, &fail, false))?;

    // What an operator prints and checks.
    let limit = Duration::from_secs(60);
    let shown = run_tooltrail(&["--config", path_str(&full)?, "config", "show"], limit).await?;
    let shown_text = format!(
        "{}{}",
        String::from_utf8_lossy(&shown.stdout),
        String::from_utf8_lossy(&shown.stderr)
    );
    assert_no_canary("config show", &shown_text)?;
    ensure!(shown_text.contains("<redacted>"), "{shown_text}");
    ensure!(
        shown_text.contains("\"sasl.username\" = \"tooltrail\""),
        "harmless properties stay readable:\n{shown_text}"
    );
    let checked = run_tooltrail(&["config", "check", path_str(&full)?], limit).await?;
    assert_no_canary(
        "config check",
        &format!(
            "{}{}",
            String::from_utf8_lossy(&checked.stdout),
            String::from_utf8_lossy(&checked.stderr)
        ),
    )?;

    // `up` at debug level, paging four destinations: one answers, two answer 500, one is down.
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let up = Tooltrail::start(
        &[
            "--config",
            path_str(&running)?,
            "up",
            "--data-dir",
            path_str(&data)?,
            "--listen",
            "127.0.0.1:0",
        ],
        &data,
        &[("RUST_LOG", "debug")],
    )
    .await?;
    let now = chrono::Utc::now().to_rfc3339();
    let body = [
        json!({"schema_version": 1, "event_id": "c-1", "time": now, "tenant_id": "acme",
               "user_id": "mallory", "server": "gdrive", "method": "tools/call",
               "tool": "read_file", "resource": "gdrive://globex/finance/payroll.xlsx",
               "decision": "allow", "status": 200}),
        json!({"schema_version": 1, "event_id": "c-2", "time": now, "tenant_id": "globex",
               "user_id": "eve", "server": "gdrive", "method": "tools/call",
               "tool": "read_file", "decision": "allow", "status": 200}),
    ]
    .iter()
    .map(|e| format!("{e}\n"))
    .collect::<String>();
    let bearer = format!("Bearer {INGEST_TOKEN}");
    let reply = up.post_events(body, &[("authorization", &bearer)]).await?;
    ensure!(reply.0 == 200 && reply.1["accepted"] == 1, "{}", reply.1);
    assert_no_canary("the ingest reply", &reply.1.to_string())?;
    let wrong = up
        .post_events(
            String::new(),
            &[("authorization", "Bearer canary-wrong-token")],
        )
        .await?;
    ensure!(wrong.0 == 401, "{}", wrong.1);
    assert_no_canary(
        "a 401",
        &wrong.1.to_string().replace("canary-wrong-token", ""),
    )?;

    // Wait until the alert was delivered, retried at both 500 destinations, and failed to
    // connect to the unreachable one (each failure is logged with its reason).
    let deadline = Deadline::after(Duration::from_secs(60));
    loop {
        let stderr = up.stderr();
        let retried = |name: &str| {
            stderr
                .lines()
                .filter(|l| l.contains("will retry") && l.contains(&format!("destination={name}")))
                .count()
                >= 2
        };
        if ok_received.count() >= 1
            && fail_received.count() >= 4
            && retried("siem-down")
            && retried("teams-down")
            && retried("slack-unreachable")
        {
            break;
        }
        deadline.remaining(&format!(
            "deliveries and retries (ok {}, failing {}):\n{stderr}",
            ok_received.count(),
            fail_received.count()
        ))?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The canaries were really used: the paths were called and the signature takes the secret.
    {
        let requests = ok_received.requests.lock().expect("lock");
        let (uri, headers, body) = &requests[0];
        ensure!(uri.path().contains(OK_PATH), "{uri}");
        let timestamp = headers["x-tooltrail-timestamp"].to_str()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(OK_SECRET.as_bytes())?;
        mac.update(timestamp.as_bytes());
        mac.update(b".");
        mac.update(body);
        let expected = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
        ensure!(headers["x-tooltrail-signature"] == expected.as_str());
        for (_, headers, body) in requests.iter() {
            assert_no_canary("an alert payload", &String::from_utf8_lossy(body))?;
            assert_no_canary("alert headers", &format!("{headers:?}"))?;
        }
        let failing = fail_received.requests.lock().expect("lock");
        ensure!(
            failing
                .iter()
                .any(|(uri, _, _)| uri.to_string().contains(FAIL_QUERY))
        );
        for (_, headers, body) in failing.iter() {
            assert_no_canary("an alert payload", &String::from_utf8_lossy(body))?;
            assert_no_canary("alert headers", &format!("{headers:?}"))?;
        }
    }
    let metrics = up.get_text("/metrics").await?;
    assert_no_canary("/metrics", &metrics)?;
    ensure!(
        metrics.contains("tooltrail_ingest_tenant_not_allowed_total{source=\"http\"} 1"),
        "{metrics}"
    );
    let stderr = up.stderr();
    ensure!(stderr.contains("DEBUG"), "debug logs were on:\n{stderr}");
    ensure!(
        stderr.contains("host=127.0.0.1"),
        "failures name the host:\n{stderr}"
    );
    up.stop().await?;
    assert_no_canary("the debug log", &stderr)?;
    let files = assert_no_canary_in_files(&data)?;
    ensure!(files > 0, "up wrote no files");
    Ok(())
}
