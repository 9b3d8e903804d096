//! `tooltrail up` with HTTP ingest (the embedded default) and `tooltrail ingest --file`: what a
//! gateway and an operator rely on.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, Result};
use serde_json::{Value, json};

use crate::support::lake::{lake_rows, read_event_ids};
use crate::support::process::{Tooltrail, path_str};
use crate::support::run_tooltrail;

fn event(id: &str, user: &str) -> Value {
    json!({
        "schema_version": 1, "event_id": id, "time": chrono::Utc::now().to_rfc3339(),
        "tenant_id": "acme", "user_id": user, "server": "github", "method": "tools/call",
        "tool": "create_issue", "decision": "allow", "status": 200
    })
}

fn ndjson(events: &[Value]) -> String {
    events.iter().map(|e| format!("{e}\n")).collect()
}

#[tokio::test]
async fn acknowledged_events_are_already_durable_and_rejects_are_itemized() -> Result<()> {
    let up = Tooltrail::up(&[]).await?;
    let body = format!(
        "{}{}\n{}not json\n{}",
        ndjson(&[event("e1", "alice")]),
        json!({"schema_version": 1, "event_id": "bad-status", "time": "2026-11-22T09:00:00Z",
               "tenant_id": "acme", "user_id": "bob", "server": "s", "method": "tools/call",
               "tool": "t", "decision": "allow", "status": 700}),
        ndjson(&[event("e2", "alice")]),
        ndjson(&[event("e3", "bob")]),
    );
    let reply = up.post_events(body, &[]).await?;
    assert_eq!(reply.0, 200, "{}", reply.1);
    assert_eq!(reply.1["accepted"], 3);
    let rejected = reply.1["rejected"].as_array().context("rejected list")?;
    let summary: Vec<(u64, &str, Option<&str>)> = rejected
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["reason"].as_str().unwrap(),
                r["field"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [(1, "out_of_range", Some("status")), (3, "not_json", None)]
    );
    assert!(rejected[0]["error"].as_str().unwrap().contains("700"));

    // No waiting: the reply came after the commit.
    let mut ids = read_event_ids(&up.lake())?;
    ids.sort();
    assert_eq!(ids, ["e1", "e2", "e3"]);
    assert_eq!(lake_rows(&up.lake().join("quarantine"))?, 2);
    up.stop().await
}

#[tokio::test]
async fn a_json_array_body_is_accepted() -> Result<()> {
    let up = Tooltrail::up(&[]).await?;
    let body = serde_json::to_string(&[event("a1", "amy"), event("a2", "amy")])?;
    let reply = up.post_json(body).await?;
    assert_eq!(
        (reply.0, reply.1["accepted"].clone()),
        (200, json!(2)),
        "{}",
        reply.1
    );
    up.stop().await
}

#[tokio::test]
async fn an_oversized_body_gets_413_with_a_json_error() -> Result<()> {
    let up = Tooltrail::up(&[("TOOLTRAIL__HTTP__MAX_BODY_BYTES", "1000")]).await?;
    let many: Vec<Value> = (0..20).map(|i| event(&format!("big{i}"), "amy")).collect();
    let reply = up.post_events(ndjson(&many), &[]).await?;
    assert_eq!(reply.0, 413);
    assert_eq!(reply.1["error"], "body_too_large");
    assert!(read_event_ids(&up.lake())?.is_empty());
    up.stop().await
}

fn sha256(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

fn event_of(id: &str, tenant: &str) -> Value {
    let mut e = event(id, "amy");
    e["tenant_id"] = json!(tenant);
    e
}

/// `up` with two ingest tokens: `gw-acme` (`tok-acme`) may write acme, `gw-all` (`tok-all`)
/// any tenant.
async fn up_with_ingest_tokens(dir: &std::path::Path) -> Result<Tooltrail> {
    let config = dir.join("tooltrail.toml");
    std::fs::write(
        &config,
        format!(
            "[[http.ingest_tokens]]\nname = \"gw-acme\"\nsha256 = \"{}\"\ntenants = [\"acme\"]\n\
             [[http.ingest_tokens]]\nname = \"gw-all\"\nsha256 = \"{}\"\ntenants = [\"*\"]\n",
            sha256("tok-acme"),
            sha256("tok-all")
        ),
    )?;
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    Tooltrail::up_with_config(&config, &data, &[]).await
}

#[tokio::test]
async fn a_configured_ingest_token_is_required() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let up = up_with_ingest_tokens(dir.path()).await?;
    let body = ndjson(&[event("t1", "amy")]);
    let denied = up.post_events(body.clone(), &[]).await?;
    assert_eq!(
        (denied.0, denied.1["error"].as_str()),
        (401, Some("unauthorized"))
    );
    let wrong = up
        .post_events(body.clone(), &[("authorization", "Bearer nope")])
        .await?;
    assert_eq!(wrong.0, 401);
    // The hash itself is not a token.
    let hash = format!("Bearer {}", sha256("tok-acme"));
    let by_hash = up
        .post_events(body.clone(), &[("authorization", &hash)])
        .await?;
    assert_eq!(by_hash.0, 401);
    let ok = up
        .post_events(body, &[("authorization", "Bearer tok-acme")])
        .await?;
    assert_eq!(ok.0, 200, "{}", ok.1);
    up.stop().await
}

#[tokio::test]
async fn a_token_writes_only_its_tenants_and_the_rest_is_quarantined_with_its_name() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let up = up_with_ingest_tokens(dir.path()).await?;
    let body = ndjson(&[
        event_of("a1", "acme"),
        event_of("b1", "globex"),
        event_of("a2", "acme"),
        event_of("b2", "globex"),
    ]);
    let reply = up
        .post_events(body, &[("authorization", "Bearer tok-acme")])
        .await?;
    assert_eq!(reply.0, 200, "{}", reply.1);
    assert_eq!(reply.1["accepted"], 2, "{}", reply.1);
    let rejected = reply.1["rejected"].as_array().context("rejected list")?;
    let summary: Vec<(u64, &str, Option<&str>)> = rejected
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap_or(u64::MAX),
                r["reason"].as_str().unwrap_or_default(),
                r["field"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (1, "tenant_not_allowed", Some("tenant_id")),
            (3, "tenant_not_allowed", Some("tenant_id"))
        ]
    );
    let message = rejected[0]["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("globex") && message.contains("gw-acme"),
        "{message}"
    );

    // acme's events landed; globex's are evidence in the quarantine, naming the token.
    let mut ids = read_event_ids(&up.lake())?;
    ids.sort();
    assert_eq!(ids, ["a1", "a2"]);
    let quarantine = quarantine_rows(&up.lake())?;
    assert_eq!(quarantine.len(), 2, "{quarantine:?}");
    for (reason, error, raw) in &quarantine {
        assert_eq!(reason, "tenant_not_allowed");
        assert!(error.contains("gw-acme"), "{error}");
        assert!(raw.contains("\"globex\""), "{raw}");
    }
    let metrics = up.get_text("/metrics").await?;
    assert!(
        metrics.contains(r#"tooltrail_ingest_tenant_not_allowed_total{source="http"} 2"#),
        "{metrics}"
    );

    // A `*` token writes any tenant.
    let reply = up
        .post_events(
            ndjson(&[event_of("b3", "globex"), event_of("c1", "initech")]),
            &[("authorization", "Bearer tok-all")],
        )
        .await?;
    assert_eq!(
        (reply.0, reply.1["accepted"].clone()),
        (200, json!(2)),
        "{}",
        reply.1
    );
    assert!(reply.1["rejected"].as_array().is_some_and(Vec::is_empty));
    up.stop().await
}

/// `(reason, error, raw)` of every quarantined record.
fn quarantine_rows(lake: &std::path::Path) -> Result<Vec<(String, String, String)>> {
    use arrow::array::AsArray;
    let mut rows = Vec::new();
    for file in crate::support::lake::parquet_files(&lake.join("quarantine"))? {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(&file)?,
        )?
        .build()?;
        for batch in reader {
            let batch = batch?;
            let column = |name: &str| {
                batch
                    .column_by_name(name)
                    .with_context(|| format!("quarantine lacks {name}"))
            };
            let (reason, error, raw) = (column("reason")?, column("error")?, column("raw")?);
            let (reason, error, raw) = (
                reason.as_string::<i32>(),
                error.as_string::<i32>(),
                raw.as_binary::<i32>(),
            );
            for i in 0..batch.num_rows() {
                rows.push((
                    reason.value(i).to_owned(),
                    error.value(i).to_owned(),
                    String::from_utf8_lossy(raw.value(i)).into_owned(),
                ));
            }
        }
    }
    Ok(rows)
}

#[tokio::test]
async fn the_old_plain_token_list_fails_config_check_showing_the_new_form() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("old.toml");
    std::fs::write(&config, "[http]\ningest_tokens = [\"s3cret-old-token\"]\n")?;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tooltrail"))
        .args([
            "config",
            "check",
            crate::support::process::path_str(&config)?,
        ])
        .output()
        .await?;
    assert_eq!(out.status.code(), Some(78));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("http.ingest_tokens"), "{err}");
    assert!(err.contains("[[http.ingest_tokens]]"), "{err}");
    assert!(err.contains("sha256") && err.contains("tenants"), "{err}");
    assert!(
        !err.contains("s3cret-old-token"),
        "the token is echoed:\n{err}"
    );
    Ok(())
}

#[tokio::test]
async fn acknowledged_events_survive_kill_9_exactly_once_and_retries_are_idempotent() -> Result<()>
{
    let data = tempfile::tempdir()?;
    let up = Tooltrail::up_in(data.path(), &[]).await?;
    let mut sent = Vec::new();
    for batch in 0..5 {
        let events: Vec<Value> = (0..200)
            .map(|i| event(&format!("k{batch}-{i}"), "amy"))
            .collect();
        sent.extend(
            events
                .iter()
                .map(|e| e["event_id"].as_str().unwrap().to_owned()),
        );
        let key = format!("batch-{batch}");
        let reply = up
            .post_events(ndjson(&events), &[("idempotency-key", &key)])
            .await?;
        assert_eq!(reply.0, 200, "{}", reply.1);
    }
    up.kill_9().await?;

    // Restart on the same data; the gateway retries the last batch it is unsure of.
    let up = Tooltrail::up_in(data.path(), &[]).await?;
    let events: Vec<Value> = (0..200).map(|i| event(&format!("k4-{i}"), "amy")).collect();
    let retry = up
        .post_events(ndjson(&events), &[("idempotency-key", "batch-4")])
        .await?;
    assert_eq!(retry.0, 200, "{}", retry.1);
    assert_eq!(retry.1["duplicate"], true);
    assert_eq!(retry.1["accepted"], 0);

    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for id in read_event_ids(&up.lake())? {
        *counts.entry(id).or_default() += 1;
    }
    let missing: Vec<&String> = sent.iter().filter(|id| !counts.contains_key(*id)).collect();
    let duplicated: Vec<(&String, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events missing",
        missing.len()
    );
    assert!(
        duplicated.is_empty(),
        "{} events stored twice",
        duplicated.len()
    );
    assert_eq!(counts.len(), sent.len());
    up.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_up_instances_taking_http_into_one_lake_lose_no_commit() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let lake = dir.path().join("shared-lake");
    let lake_arg = path_str(&lake)?.to_owned();
    let mut instances = Vec::new();
    for name in ["a", "b"] {
        let data = dir.path().join(name);
        let args = [
            "up",
            "--data-dir",
            path_str(&data)?,
            "--listen",
            "127.0.0.1:0",
            "--lake",
            &lake_arg,
        ];
        // Commit as often as possible, so that the two writers race for versions.
        let env = [("TOOLTRAIL__INGEST__MAX_BATCH_DELAY", "1ms")];
        instances.push(Tooltrail::start(&args, &data, &env).await?);
    }
    // Each instance takes 30 requests of 20 events, all sent at once.
    let mut sent = Vec::new();
    let mut requests = Vec::new();
    for (n, up) in instances.iter().enumerate() {
        for request in 0..30 {
            let events: Vec<Value> = (0..20)
                .map(|i| event(&format!("i{n}-r{request}-{i}"), "amy"))
                .collect();
            sent.extend(
                events
                    .iter()
                    .map(|e| e["event_id"].as_str().unwrap().to_owned()),
            );
            requests.push((up, ndjson(&events)));
        }
    }
    let replies = futures::future::try_join_all(
        requests
            .into_iter()
            .map(|(up, body)| async move { up.post_events(body, &[]).await }),
    )
    .await?;
    for (status, reply) in &replies {
        assert_eq!(
            (*status, reply["accepted"].as_u64()),
            (200, Some(20)),
            "{reply}"
        );
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for id in read_event_ids(&lake)? {
        *counts.entry(id).or_default() += 1;
    }
    sent.sort();
    assert_eq!(counts.keys().cloned().collect::<Vec<_>>(), sent);
    assert!(
        counts.values().all(|n| *n == 1),
        "an event was stored twice"
    );
    let mut conflicts = 0.0;
    for up in instances {
        let metrics = up.get_text("/metrics").await?;
        conflicts += metrics
            .lines()
            .filter(|l| l.starts_with("tooltrail_lake_commit_conflicts_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>();
        up.stop().await?;
    }
    eprintln!(
        "{} events from two writers; {conflicts} commit conflicts retried",
        sent.len()
    );
    Ok(())
}

#[tokio::test]
async fn an_unusable_idempotency_key_is_refused_naming_the_header_and_nothing_is_written()
-> Result<()> {
    let up = Tooltrail::up(&[]).await?;
    let body = ndjson(&[event("i1", "amy")]);
    let long = "k".repeat(256);
    for (key, problem) in [
        (long.as_str(), "256 bytes long; at most 255"),
        ("clé-é", "printable ASCII"),
        ("  ", "empty"),
    ] {
        let reply = up
            .post_events(body.clone(), &[("idempotency-key", key)])
            .await?;
        assert_eq!(reply.0, 400, "{key:?}: {}", reply.1);
        assert_eq!(reply.1["error"], "invalid_idempotency_key");
        let message = reply.1["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("Idempotency-Key") && message.contains(problem),
            "{message}"
        );
    }
    assert!(read_event_ids(&up.lake())?.is_empty());
    // The longest key allowed is taken, and a retry with it is a duplicate.
    let longest = "k".repeat(255);
    for duplicate in [false, true] {
        let reply = up
            .post_events(body.clone(), &[("idempotency-key", &longest)])
            .await?;
        assert_eq!(reply.0, 200, "{}", reply.1);
        assert_eq!(reply.1["duplicate"].as_bool().unwrap_or(false), duplicate);
    }
    assert_eq!(read_event_ids(&up.lake())?, ["i1"]);
    up.stop().await
}

#[tokio::test]
async fn requests_past_the_inflight_limit_get_503_to_retry_and_nothing_is_lost() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Tooltrail::up(&[
        ("TOOLTRAIL__HTTP__MAX_BODY_BYTES", "65536"),
        ("TOOLTRAIL__HTTP__MAX_INFLIGHT_BYTES", "65536"),
    ])
    .await?;
    // A slow client announces a body of 63 KiB (of the 64 allowed in flight),
    // sends half of it, and holds.
    let mut slow = Vec::new();
    while ndjson(&slow).len() <= 62 * 1024 {
        slow.push(event(&format!("slow{}", slow.len()), "amy"));
    }
    let slow_body = ndjson(&slow);
    assert!(slow_body.len() <= 63 * 1024);
    let mut conn = tokio::net::TcpStream::connect(up.addr()).await?;
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nhost: {}\r\ncontent-type: application/x-ndjson\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        up.addr(),
        slow_body.len()
    );
    conn.write_all(head.as_bytes()).await?;
    let (first, rest) = slow_body.as_bytes().split_at(slow_body.len() / 2);
    conn.write_all(first).await?;
    let held = format!("tooltrail_ingest_http_inflight_bytes {}", slow_body.len());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !up.get_text("/metrics").await?.contains(&held) {
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "the slow request never took its room"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Another client's 2-3 KiB cannot fit: after waiting, it is told to retry.
    let fast: Vec<Value> = (0..8).map(|i| event(&format!("fast{i}"), "bob")).collect();
    let client = reqwest::Client::new();
    let post = || {
        client
            .post(up.url("/v1/events"))
            .header("content-type", "application/x-ndjson")
            .header("idempotency-key", "fast-1")
            .body(ndjson(&fast))
            .send()
    };
    let refused = post().await?;
    assert_eq!(refused.status().as_u16(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let reply: Value = refused.json().await?;
    assert_eq!(reply["error"], "overloaded");
    assert!(
        up.get_text("/metrics")
            .await?
            .contains("tooltrail_ingest_http_overloaded_total 1")
    );

    // The slow body completes and is taken; the retry now fits.
    conn.write_all(rest).await?;
    let mut answer = String::new();
    conn.read_to_string(&mut answer).await?;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let retried = post().await?;
    assert_eq!(retried.status().as_u16(), 200);
    let mut ids = read_event_ids(&up.lake())?;
    ids.sort();
    let mut sent: Vec<String> = slow
        .iter()
        .chain(&fast)
        .map(|e| e["event_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    sent.sort();
    assert_eq!(ids, sent);
    assert!(
        up.get_text("/metrics")
            .await?
            .contains("tooltrail_ingest_http_inflight_bytes 0")
    );
    up.stop().await
}

#[tokio::test]
async fn metrics_and_health_report_what_happened() -> Result<()> {
    let up = Tooltrail::up(&[]).await?;
    let body = format!("{}[1,2]\n", ndjson(&[event("m1", "amy")]));
    assert_eq!(up.post_events(body, &[]).await?.0, 200);
    let health = up.get("/healthz").await?;
    assert_eq!(health.0, 200);
    let metrics = up.get_text("/metrics").await?;
    assert!(
        metrics.contains(r#"tooltrail_ingest_events_total{source="http"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"tooltrail_ingest_quarantined_total{reason="not_object"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("tooltrail_ingest_files_committed_total"),
        "{metrics}"
    );
    assert!(
        metrics.contains("tooltrail_ingest_commit_seconds"),
        "{metrics}"
    );
    up.stop().await
}

#[tokio::test]
async fn sigterm_drains_and_exits_cleanly() -> Result<()> {
    let up = Tooltrail::up(&[]).await?;
    assert_eq!(
        up.post_events(ndjson(&[event("s1", "amy")]), &[]).await?.0,
        200
    );
    let status = up.terminate().await?;
    assert!(status.success(), "exit status {status}");
    Ok(())
}

#[tokio::test]
async fn file_import_is_exactly_once_across_reruns() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("events.ndjson");
    let lake = dir.path().join("lake");
    let mut lines: Vec<String> = (0..250)
        .map(|i| event(&format!("f{i}"), "amy").to_string())
        .collect();
    lines.insert(10, "{\"schema_version\": 1}".into());
    std::fs::write(&file, lines.join("\n"))?;
    let (file_s, lake_s) = (file.to_str().unwrap(), lake.to_str().unwrap());
    let env = [("TOOLTRAIL__INGEST__MAX_BATCH_RECORDS", "100")];

    let first = crate::support::process::run_tooltrail_env(
        &["ingest", "--file", file_s, "--lake", lake_s],
        &env,
        Duration::from_secs(120),
    )
    .await?;
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(out.contains("250 events, 1 quarantined"), "{out}");
    assert!(out.contains("3 commits"), "{out}");
    let second = run_tooltrail(
        &["ingest", "--file", file_s, "--lake", lake_s],
        Duration::from_secs(120),
    )
    .await?;
    let out = String::from_utf8_lossy(&second.stdout);
    assert!(
        out.contains("0 events"),
        "a rerun must not import again: {out}"
    );
    let ids = read_event_ids(&lake)?;
    assert_eq!(ids.len(), 250);
    assert_eq!(lake_rows(&lake.join("quarantine"))?, 1);
    Ok(())
}

#[tokio::test]
async fn a_history_import_says_which_flag_lets_old_events_in_and_a_rerun_with_it_brings_just_them()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("audit-2023.ndjson");
    let lake = dir.path().join("lake");
    let mut lines: Vec<String> = (0..40)
        .map(|i| {
            let mut e = event(&format!("h{i}"), "amy");
            e["time"] = json!(format!("2023-03-{:02}T10:00:00Z", 1 + i % 28));
            e.to_string()
        })
        .collect();
    lines.push(event("recent", "amy").to_string());
    lines.insert(5, "{\"schema_version\": 1}".into());
    std::fs::write(&file, lines.join("\n"))?;
    let (file_s, lake_s) = (path_str(&file)?, path_str(&lake)?);

    let first = run_tooltrail(
        &["ingest", "--file", file_s, "--lake", lake_s],
        Duration::from_secs(120),
    )
    .await?;
    let out = String::from_utf8_lossy(&first.stdout);
    assert!(out.contains("1 events, 41 quarantined"), "{out}");
    assert!(
        out.contains("quarantined 40 line(s), out_of_range (time): lines 1, 2, 3, 4, 5, ..."),
        "{out}"
    );
    assert!(
        out.contains("quarantined 1 line(s), missing_field (event_id): lines 6"),
        "{out}"
    );
    assert!(
        out.contains("--max-event-age <AGE>") && out.contains("--any-age"),
        "{out}"
    );

    let history = run_tooltrail(
        &[
            "ingest",
            "--file",
            file_s,
            "--lake",
            lake_s,
            "--max-event-age",
            "5y",
        ],
        Duration::from_secs(120),
    )
    .await?;
    let out = String::from_utf8_lossy(&history.stdout);
    assert!(
        out.contains("imported 40 line(s) an earlier import had quarantined"),
        "{out}"
    );
    let again = run_tooltrail(
        &["ingest", "--file", file_s, "--lake", lake_s, "--any-age"],
        Duration::from_secs(120),
    )
    .await?;
    assert!(!String::from_utf8_lossy(&again.stdout).contains("an earlier import had"));
    let mut ids = read_event_ids(&lake)?;
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 41, "every event once: {ids:?}");
    assert_eq!(read_event_ids(&lake)?.len(), 41);

    // `up` keeps its guard: the flags belong to a file import.
    let refused = crate::support::process::run_tooltrail_env(
        &[
            "ingest",
            "--kafka",
            "127.0.0.1:1",
            "--topic",
            "t",
            "--any-age",
        ],
        &[],
        Duration::from_secs(30),
    )
    .await;
    assert!(refused.is_err(), "--any-age needs --file");
    Ok(())
}

#[tokio::test]
async fn an_invalid_optional_field_keeps_the_event_with_the_value_set_aside() -> Result<()> {
    let up = Tooltrail::up(&[]).await?;
    let mut internal = event("svc", "amy");
    internal["source_ip"] = json!("AWS Internal");
    internal["trace_id"] = json!("not-a-trace");
    let mut plain = event("plain", "amy");
    plain["source_ip"] = json!("10.1.2.3");
    let mut bad_tenant = event("bad-tenant", "amy");
    bad_tenant["tenant_id"] = json!(7);
    let reply = up
        .post_events(ndjson(&[internal, plain, bad_tenant]), &[])
        .await?;
    assert_eq!(reply.0, 200, "{}", reply.1);
    assert_eq!(reply.1["accepted"], 2, "{}", reply.1);
    assert_eq!(reply.1["rejected"][0]["field"], "tenant_id", "{}", reply.1);

    let rows = crate::support::process::sql_csv(
        &up.lake(),
        "SELECT event_id, source_ip, trace_id, \
         attributes['tooltrail.invalid.source_ip'] AS why \
         FROM invalid_fields ORDER BY event_id",
    )
    .await?;
    assert_eq!(
        rows.trim(),
        "event_id,source_ip,trace_id,why\n\
         svc,,,\"{\"\"reason\"\":\"\"not an IPv4 or IPv6 address\"\",\"\"value\"\":\"\"AWS Internal\"\"}\"",
        "only the event with invalid fields, its values set aside"
    );
    let metrics = up.get_text("/metrics").await?;
    for field in ["source_ip", "trace_id"] {
        let line = format!("tooltrail_ingest_invalid_fields_total{{field=\"{field}\"}} 1");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
    up.stop().await
}

#[tokio::test]
async fn compact_merges_small_files_and_keeps_every_event() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("events.ndjson");
    let lake = dir.path().join("lake");
    let two_hours_ago = chrono::Utc::now() - chrono::Duration::hours(3);
    let lines: Vec<String> = (0..300)
        .map(|i| {
            let mut e = event(&format!("c{i}"), "amy");
            e["time"] = json!(two_hours_ago.to_rfc3339());
            e.to_string()
        })
        .collect();
    std::fs::write(&file, lines.join("\n"))?;
    let (file_s, lake_s) = (file.to_str().unwrap(), lake.to_str().unwrap());
    let small = [("TOOLTRAIL__INGEST__MAX_BATCH_RECORDS", "50")];
    let limit = Duration::from_secs(120);
    crate::support::process::run_tooltrail_env(
        &["ingest", "--file", file_s, "--lake", lake_s],
        &small,
        limit,
    )
    .await?;
    let before = crate::support::lake::parquet_files(&lake.join("events"))?.len();
    assert_eq!(before, 6);

    let out = run_tooltrail(&["compact", "--lake", lake_s], limit).await?;
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("events: compacted 1 partitions: 6 files into 1, 300 rows"),
        "{out}"
    );
    assert_eq!(
        crate::support::lake::parquet_files(&lake.join("events"))?.len(),
        1
    );
    let mut ids = read_event_ids(&lake)?;
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 300);
    assert_eq!(lake_rows(&lake.join("events"))?, 300);

    // Ingest still resumes correctly on the compacted lake: nothing is imported twice.
    let rerun = run_tooltrail(&["ingest", "--file", file_s, "--lake", lake_s], limit).await?;
    assert!(String::from_utf8_lossy(&rerun.stdout).contains("0 events"));
    Ok(())
}
