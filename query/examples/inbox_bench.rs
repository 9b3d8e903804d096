//! How fast the alerts API answers an inbox over many alerts.
//!
//! `cargo run --release --example inbox_bench` writes a temporary lake of
//! `TOOLTRAIL_BENCH_ALERTS` alerts (default 10,000) over 30 days, committed
//! 50 at a time through the detector's own sink as `up` does (200 files,
//! uncompacted), plus a triage change for one alert in five (40 commits),
//! serves the alerts API on 127.0.0.1 and times, over HTTP with a bearer
//! token, `TOOLTRAIL_BENCH_ROUNDS` (default 30) requests of each kind of
//! inbox page: the newest 50, the open ones, by severity, the fifth page
//! through cursors, one tenant's, and one alert with its evidence. Prints
//! p50, p95 and max per kind, twice: requests 1 s apart, as analysts click,
//! and back to back. Every read is in the query audit, whose group commit
//! lets 10 commits go at once and then one per 200 ms
//! (`AppenderOptions::default`), so back-to-back requests from one client
//! wait for the audit's next commit as well. Target (issue 28): the inbox in
//! ≤ 300 ms.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{TimeDelta, Utc};
use serde_json::{Value, json};
use tooltrail_detect::Alert;
use tooltrail_detect::sink::AlertLake;
use tooltrail_lake::Location;
use tooltrail_query::auth::token_hash;
use tooltrail_query::config::TokenConfig;
use tooltrail_query::{AlertsService, Engine, QueryConfig, QueryMetrics, Role};

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const SEVERITIES: [&str; 4] = ["low", "medium", "high", "critical"];
const DETECTORS: [&str; 5] = [
    "denial_spike",
    "volume_spike",
    "first_seen_tool",
    "cross_tenant",
    "off_hours",
];

fn alert(i: usize, n: usize) -> Alert {
    let now = Utc::now();
    let time = now - TimeDelta::seconds((30 * 86_400 * i / n) as i64);
    let tenant = ["acme", "globex", "initech"][i % 3];
    let record = json!({
        "alert_version": 1,
        "alert_id": format!("bench-{i:06}"),
        "time": time.to_rfc3339(),
        "tenant_id": tenant,
        "user_id": format!("user{}@{tenant}", i % 400),
        "detector": DETECTORS[i % DETECTORS.len()],
        "severity": SEVERITIES[(i * 7) % 4],
        "score": (i % 100) as i64,
        "title": format!("user{} did something unusual #{i}", i % 400),
        "explanation": "a long enough explanation of what the detector saw and why it matters",
        "evidence": {"observed": 37.0, "expected": 0.4, "p_value": 3e-12,
                     "event_ids": [format!("e{i}-1"), format!("e{i}-2")]},
        "window_start": (time - TimeDelta::minutes(5)).to_rfc3339(),
        "window_end": time.to_rfc3339(),
        "repeats": 0,
    });
    serde_json::from_value(record).expect("an alert record")
}

async fn serve(app: axum::Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    addr
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let n = setting("TOOLTRAIL_BENCH_ALERTS", 10_000);
    let rounds = setting("TOOLTRAIL_BENCH_ROUNDS", 30);
    let dir = tempfile::tempdir()?;
    let lake = Location::local(dir.path())?;
    let started = Instant::now();
    let mut sink = AlertLake::open(&lake, Default::default()).await?;
    let alerts: Vec<Alert> = (0..n).map(|i| alert(i, n)).collect();
    for chunk in alerts.chunks(50) {
        sink.write(chunk).await?;
    }
    let config = QueryConfig {
        tokens: vec![TokenConfig {
            name: "bench".into(),
            sha256: token_hash("bench"),
            role: Role::Admin,
            tenants: vec!["*".into()],
        }],
        ..QueryConfig::default()
    };
    let engine = Engine::open(
        &lake,
        &config,
        &dir.path().join("spill"),
        QueryMetrics::unregistered(),
    )?;
    let (service, task) = AlertsService::new(engine.clone(), &lake, Default::default());
    tokio::spawn(task.run(tokio_util::sync::CancellationToken::new()));
    let addr = serve(tooltrail_query::alerts::http::router(service)).await;
    let client = reqwest::Client::new();
    let url = |path: &str| format!("http://{addr}{path}");
    for chunk in alerts.iter().step_by(5).collect::<Vec<_>>().chunks(50) {
        let ids: Vec<&str> = chunk.iter().map(|a| a.alert_id.as_str()).collect();
        let reply = client
            .post(url("/v1/alerts/triage"))
            .bearer_auth("bench")
            .json(&json!({"alert_ids": ids, "status": "acknowledged", "assignee": "ana"}))
            .send()
            .await?;
        anyhow::ensure!(reply.status() == 200, "{}", reply.text().await?);
    }
    println!(
        "lake: {n} alerts in {} commits, {} triage rows; written in {:.1} s",
        n.div_ceil(50),
        n / 5,
        started.elapsed().as_secs_f64()
    );

    // The fifth page's cursor, found once.
    let mut cursor = String::new();
    for _ in 0..4 {
        let page: Value = client
            .get(url(&format!("/v1/alerts?limit=50&cursor={cursor}")))
            .bearer_auth("bench")
            .send()
            .await?
            .json()
            .await?;
        cursor = page["next_cursor"]
            .as_str()
            .with_context(|| format!("a next page: {page}"))?
            .to_owned();
    }
    let kinds = [
        ("newest 50", "/v1/alerts?limit=50".to_owned()),
        ("open only", "/v1/alerts?limit=50&status=open".to_owned()),
        (
            "by severity",
            "/v1/alerts?limit=50&sort=severity".to_owned(),
        ),
        ("fifth page", format!("/v1/alerts?limit=50&cursor={cursor}")),
        ("one tenant", "/v1/alerts?limit=50&tenant=globex".to_owned()),
        ("an alert", "/v1/alerts/bench-004242".to_owned()),
    ];
    for (mode, pause) in [
        ("1 s apart", Duration::from_secs(1)),
        ("back to back", Duration::ZERO),
    ] {
        println!(
            "{:<12} {:>8} {:>8} {:>8}   ({mode})",
            "request", "p50 ms", "p95 ms", "max ms"
        );
        for (name, path) in &kinds {
            let mut times = Vec::with_capacity(rounds);
            for _ in 0..rounds {
                tokio::time::sleep(pause).await;
                let start = Instant::now();
                let reply = client.get(url(path)).bearer_auth("bench").send().await?;
                anyhow::ensure!(reply.status() == 200, "{name}: {}", reply.text().await?);
                reply.bytes().await?;
                times.push(start.elapsed());
            }
            times.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!(
                "{name:<12} {:>8.1} {:>8.1} {:>8.1}",
                ms(times[times.len() / 2]),
                ms(times[(times.len() * 95 / 100).min(times.len() - 1)]),
                ms(times[times.len() - 1])
            );
        }
    }
    engine.settle_audit().await;
    Ok(())
}
