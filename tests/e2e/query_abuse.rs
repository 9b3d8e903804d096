//! Issue 23's attacks on the real binary: a query deep enough to overflow
//! the planner's stack once took the whole process down (`up` and `tooltrail
//! sql`), and a doubling recursive CTE grew it by gigabytes. Each is now
//! refused, the process lives, and its memory stays bounded.

use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::support::process::{Tooltrail, path_str, run_tooltrail_env};

fn sha256(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// `up` with an analyst token `tok-acme` and `extra` lines in `[query]`.
async fn up(extra: &str) -> Result<(tempfile::TempDir, Tooltrail)> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("tooltrail.toml");
    std::fs::write(
        &config,
        format!(
            "[query]\n{extra}\n\
             [[query.tokens]]\nname = \"ana\"\nsha256 = \"{}\"\nrole = \"analyst\"\ntenants = [\"acme\"]\n",
            sha256("tok-acme"),
        ),
    )?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let up = Tooltrail::up_with_config(&config, &data, &["--warm-from-lake", "0s"]).await?;
    let now = chrono::Utc::now().to_rfc3339();
    let event = json!({
        "schema_version": 1, "event_id": "acme-1", "time": now, "tenant_id": "acme",
        "user_id": "u1", "server": "github", "method": "tools/call", "tool": "search",
        "decision": "allow", "status": 200, "session_id": "s1",
    });
    let (status, reply) = up.post_events(format!("{event}\n"), &[]).await?;
    ensure!(status == 200, "ingest: {status} {reply}");
    Ok((dir, up))
}

async fn post_sql(up: &Tooltrail, sql: &str) -> Result<(u16, Value)> {
    let response = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()?
        .post(up.url("/v1/sql"))
        .bearer_auth("tok-acme")
        .json(&json!({ "sql": sql }))
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.context("a JSON reply")?))
}

fn chain(term: &str, op: &str, terms: usize) -> String {
    format!(
        "SELECT {} FROM events",
        vec![term; terms].join(&format!(" {op} "))
    )
}

/// The peak resident memory of `pid` (VmHWM), in bytes.
fn peak_rss(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .context("VmHWM in /proc/<pid>/status")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .context("a VmHWM value")?
        .parse()?;
    Ok(kib * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deep_expressions_get_400_and_up_lives() -> Result<()> {
    let (_dir, up) = up("max_sql_bytes = 16777216").await?;
    let mut attacks = Vec::new();
    for terms in [10_000, 100_000, 1_000_000] {
        attacks.push(chain("status", "+", terms));
    }
    attacks.push(chain("status = 1", "OR", 10_000));
    attacks.push(chain("status = 1", "AND", 10_000));
    attacks.push(chain("user_id", "||", 10_000));
    attacks.push(format!(
        "SELECT {}1{} FROM events",
        "CASE WHEN status > 0 THEN ".repeat(10_000),
        " ELSE 0 END".repeat(10_000)
    ));
    for sql in &attacks {
        let (status, body) = post_sql(&up, sql).await?;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some("query_too_complex")),
            "{body}"
        );
    }
    let (status, body) = post_sql(&up, "SELECT count(*) AS n FROM events").await?;
    assert_eq!((status, &body["rows"][0]["n"]), (200, &json!(1)), "{body}");
    let (status, _) = up.get("/healthz").await?;
    assert_eq!(status, 200);
    up.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_doubling_recursive_cte_fails_within_the_memory_limit() -> Result<()> {
    let limit: u64 = 256 << 20;
    let (_dir, up) = up(&format!("memory_limit_bytes = {limit}")).await?;
    let (status, body) = post_sql(
        &up,
        "WITH RECURSIVE r(s, n) AS (SELECT 'xx', 1 UNION ALL SELECT s || s, n + 1 FROM r WHERE n < 40) \
         SELECT max(length(s)) FROM r",
    )
    .await?;
    assert!([400, 503].contains(&status), "{status} {body}");
    let pid = up.pid().context("up runs")?;
    let peak = peak_rss(pid)?;
    assert!(
        peak < limit + (256 << 20),
        "peak RSS {} MiB against memory_limit_bytes {} MiB",
        peak >> 20,
        limit >> 20
    );
    up.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_command_refuses_a_deep_expression_and_exits_cleanly() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let lake = dir.path().join("lake");
    // An empty lake: its tables, created by an import of nothing.
    let empty = dir.path().join("empty.ndjson");
    std::fs::write(&empty, "")?;
    run_tooltrail_env(
        &[
            "ingest",
            "--file",
            path_str(&empty)?,
            "--lake",
            path_str(&lake)?,
        ],
        &[],
        Duration::from_secs(60),
    )
    .await?;
    let sql = chain("1", "+", 8_000).replace(" FROM events", "");
    let command = Command::new(env!("CARGO_BIN_EXE_tooltrail"))
        .args(["sql", "--lake", path_str(&lake)?, &sql])
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&command.stderr);
    assert_eq!(command.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("query.max_expr_depth"), "{stderr}");
    // The same engine answers a query it can plan.
    let ok = run_tooltrail_env(
        &["sql", "--lake", path_str(&lake)?, "SELECT 1 + 1 AS two"],
        &[],
        Duration::from_secs(60),
    )
    .await?;
    assert!(String::from_utf8_lossy(&ok.stdout).contains('2'));
    Ok(())
}

use tokio::process::Command;
