//! The SQL API of `tooltrail up`: tokens, formats, JSON errors, streaming
//! failures, and hostile queries that must not starve a normal one.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::support::process::{Tooltrail, path_str};

const ACME: usize = 300;
const GLOBEX: usize = 50;

fn sha256(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

fn events(tenant: &str, n: usize) -> String {
    let mut body = String::new();
    let now = chrono::Utc::now() - chrono::Duration::minutes(30);
    for i in 0..n {
        let time = (now + chrono::Duration::milliseconds(i as i64)).to_rfc3339();
        body.push_str(
            &json!({
                "schema_version": 1, "event_id": format!("{tenant}-{i}"), "time": time,
                "tenant_id": tenant, "user_id": format!("u{}", i % 7), "server": "github",
                "method": "tools/call", "tool": "search", "decision": "allow", "status": 200,
                "session_id": format!("s{}", i % 3), "arguments": {"q": format!("needle {i}")},
            })
            .to_string(),
        );
        body.push('\n');
    }
    body
}

/// `up` with an analyst token for acme, an admin token, and `extra` config.
async fn up(extra: &str) -> Result<(tempfile::TempDir, Tooltrail)> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("tooltrail.toml");
    std::fs::write(
        &config,
        format!(
            "[query]\n{extra}\n\
             [[query.tokens]]\nname = \"ana\"\nsha256 = \"{}\"\nrole = \"analyst\"\ntenants = [\"acme\"]\n\
             [[query.tokens]]\nname = \"mallory\"\nsha256 = \"{}\"\nrole = \"analyst\"\ntenants = [\"globex\"]\n\
             [[query.tokens]]\nname = \"root\"\nsha256 = \"{}\"\nrole = \"admin\"\ntenants = [\"*\"]\n",
            sha256("tok-acme"),
            sha256("tok-mallory"),
            sha256("tok-admin")
        ),
    )?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let up = Tooltrail::up_with_config(&config, &data, &["--warm-from-lake", "0s"]).await?;
    for (tenant, n) in [("acme", ACME), ("globex", GLOBEX)] {
        let (status, reply) = up.post_events(events(tenant, n), &[]).await?;
        ensure!(status == 200, "ingest: {status} {reply}");
    }
    Ok((dir, up))
}

async fn sql(
    up: &Tooltrail,
    token: Option<&str>,
    body: Value,
    accept: Option<&str>,
) -> Result<reqwest::Response> {
    let mut request = reqwest::Client::new().post(up.url("/v1/sql")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(accept) = accept {
        request = request.header("accept", accept);
    }
    Ok(request.send().await?)
}

async fn error_of(response: reqwest::Response) -> Result<(u16, String, String)> {
    let status = response.status().as_u16();
    let body: Value = response.json().await.context("a JSON error body")?;
    Ok((
        status,
        body["error"].as_str().unwrap_or_default().to_string(),
        body["message"].as_str().unwrap_or_default().to_string(),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_answers_sql_in_every_format_for_the_tokens_tenants_only() -> Result<()> {
    let (_dir, up) = up("").await?;
    let count = json!({"sql": "SELECT tenant_id, count(*) AS n FROM events GROUP BY tenant_id"});

    let (status, code, _) = error_of(sql(&up, None, count.clone(), None).await?).await?;
    assert_eq!((status, code.as_str()), (401, "unauthorized"));
    let (status, ..) = error_of(sql(&up, Some("tok-wrong"), count.clone(), None).await?).await?;
    assert_eq!(status, 401);

    let reply: Value = sql(&up, Some("tok-acme"), count.clone(), None)
        .await?
        .json()
        .await?;
    assert_eq!(
        reply["rows"],
        json!([{"tenant_id": "acme", "n": ACME}]),
        "{reply}"
    );
    assert_eq!(reply["truncated"], json!(false));

    let all = json!({"sql": "SELECT event_id, tenant_id FROM events"});
    let ndjson = sql(
        &up,
        Some("tok-acme"),
        all.clone(),
        Some("application/x-ndjson"),
    )
    .await?;
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    let text = ndjson.text().await?;
    assert_eq!(text.lines().count(), ACME);
    assert!(text.lines().all(|l| l.contains("\"tenant_id\":\"acme\"")));

    let mut csv_body = all.clone();
    csv_body["format"] = json!("csv");
    let csv = sql(&up, Some("tok-acme"), csv_body, None)
        .await?
        .text()
        .await?;
    assert_eq!(csv.lines().next(), Some("event_id,tenant_id"));
    assert_eq!(csv.lines().count(), ACME + 1);

    let mut arrow_body = all.clone();
    arrow_body["format"] = json!("arrow");
    let bytes = sql(&up, Some("tok-acme"), arrow_body, None)
        .await?
        .bytes()
        .await?;
    let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)?;
    let rows: usize = reader
        .map(|b| b.map(|b| b.num_rows()))
        .sum::<Result<_, _>>()?;
    assert_eq!(rows, ACME);

    let mut parquet_body = all.clone();
    parquet_body["format"] = json!("parquet");
    let bytes = sql(&up, Some("tok-acme"), parquet_body, None)
        .await?
        .bytes()
        .await?;
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
    let rows: usize = reader
        .map(|b| b.map(|b| b.num_rows()))
        .sum::<Result<_, _>>()?;
    assert_eq!(rows, ACME);

    // JSON errors with the right status.
    let (status, code, message) =
        error_of(sql(&up, Some("tok-acme"), json!({"sql": "SELEC 1"}), None).await?).await?;
    assert_eq!((status, code.as_str()), (400, "sql_error"));
    assert!(message.contains("Line: 1, Column: 1"), "{message}");
    let (status, code, _) = error_of(
        sql(
            &up,
            Some("tok-acme"),
            json!({"sql": "SELECT * FROM query_audit"}),
            None,
        )
        .await?,
    )
    .await?;
    assert_eq!((status, code.as_str()), (403, "forbidden"));
    let (status, code, _) = error_of(
        sql(
            &up,
            Some("tok-acme"),
            json!({"sql": "DROP TABLE events"}),
            None,
        )
        .await?,
    )
    .await?;
    assert_eq!((status, code.as_str()), (403, "read_only"));
    let huge = json!({"sql": format!("SELECT '{}'", "x".repeat(200_000))});
    let (status, code, _) = error_of(sql(&up, Some("tok-acme"), huge, None).await?).await?;
    assert_eq!((status, code.as_str()), (413, "sql_too_large"));

    // Tables and schemas, per role.
    let client = reqwest::Client::new();
    let tables: Value = client
        .get(up.url("/v1/tables"))
        .bearer_auth("tok-acme")
        .send()
        .await?
        .json()
        .await?;
    let names: Vec<&str> = tables["tables"]
        .as_array()
        .context("tables")?
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "events",
            "invalid_fields",
            "alerts",
            "alert_triage",
            "ocsf_api_activity",
            "ocsf_detection_finding"
        ]
    );
    let schema: Value = client
        .get(up.url("/v1/tables/ocsf_api_activity"))
        .bearer_auth("tok-acme")
        .send()
        .await?
        .json()
        .await?;
    let columns: Vec<&str> = schema["columns"]
        .as_array()
        .context("columns")?
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    for required in [
        "class_uid",
        "metadata",
        "actor",
        "api",
        "src_endpoint",
        "action_id",
    ] {
        assert!(columns.contains(&required), "{required} in {columns:?}");
    }
    let schema: Value = client
        .get(up.url("/v1/tables/events"))
        .bearer_auth("tok-acme")
        .send()
        .await?
        .json()
        .await?;
    assert!(
        schema["columns"]
            .as_array()
            .context("columns")?
            .iter()
            .any(|c| c["name"] == "dt")
    );
    let forbidden = client
        .get(up.url("/v1/tables/query_audit"))
        .bearer_auth("tok-acme")
        .send()
        .await?;
    assert_eq!(forbidden.status().as_u16(), 403);

    // The admin sees both tenants and the audit of ana's queries.
    let reply: Value = sql(&up, Some("tok-admin"), count, None)
        .await?
        .json()
        .await?;
    assert_eq!(reply["row_count"], json!(2));
    let audit: Value = sql(
        &up,
        Some("tok-admin"),
        json!({"sql": "SELECT count(*) AS n FROM query_audit WHERE principal = 'ana' AND phase = 'start'"}),
        None,
    )
    .await?
    .json()
    .await?;
    assert!(audit["rows"][0]["n"].as_i64().unwrap_or(0) >= 8, "{audit}");
    let metrics = up.get_text("/metrics").await?;
    assert!(
        metrics.contains("tooltrail_query_queries_total{transport=\"http\",outcome=\"ok\"}"),
        "{metrics}"
    );
    up.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_streaming_began_is_visible_to_the_client() -> Result<()> {
    let (_dir, up) = up("timeout = \"2s\"\nmax_rows = 100000000").await?;
    // Millions of rows: the timeout strikes while they stream.
    let cross = "SELECT a.event_id, b.event_id, c.event_id FROM events a, events b, events c";
    let response = sql(
        &up,
        Some("tok-acme"),
        json!({"sql": cross, "format": "ndjson"}),
        None,
    )
    .await?;
    assert_eq!(response.status().as_u16(), 200);
    let text = response.text().await?;
    let last: Value = serde_json::from_str(text.lines().last().context("a last line")?)?;
    assert_eq!(last["error"], json!("timeout"), "{last}");
    assert!(
        text.lines().count() > 1000,
        "rows streamed before the failure"
    );

    let response = sql(
        &up,
        Some("tok-acme"),
        json!({"sql": cross, "format": "json"}),
        None,
    )
    .await?;
    assert_eq!(response.status().as_u16(), 200);
    let read = response.bytes().await;
    assert!(
        read.is_err(),
        "a broken json body must fail to read, not look complete"
    );
    up.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_queries_do_not_starve_a_normal_one() -> Result<()> {
    let (_dir, up) =
        up("timeout = \"3s\"\nmax_concurrent = 8\nmax_concurrent_per_principal = 4").await?;
    let hostile = [
        "SELECT count(*) FROM events a, events b, events c, events d".to_string(),
        format!("SELECT {}1{}", "(".repeat(5000), ")".repeat(5000)),
        "SELECT repeat(event_id, 1000000000) FROM events".to_string(),
        format!("SELECT '{}' LIKE '%x%y%z%'", "x".repeat(60_000)),
        "SELECT a.arguments, b.arguments FROM events a, events b ORDER BY a.arguments || b.arguments".to_string(),
    ];
    let mut attacks = Vec::new();
    for i in 0..20 {
        let sql_text = hostile[i % hostile.len()].clone();
        let url = up.url("/v1/sql");
        attacks.push(tokio::spawn(async move {
            let response = reqwest::Client::new()
                .post(url)
                .bearer_auth("tok-mallory")
                .json(&json!({"sql": sql_text, "format": "ndjson"}))
                .send()
                .await?;
            let status = response.status().as_u16();
            let _ = response.bytes().await;
            anyhow::Ok(status)
        }));
    }
    // While they run, a normal query answers, correctly.
    let started = std::time::Instant::now();
    let reply: Value = sql(
        &up,
        Some("tok-acme"),
        json!({"sql": "SELECT count(*) AS n FROM events WHERE user_id = 'u1'"}),
        None,
    )
    .await?
    .json()
    .await?;
    let normal_took = started.elapsed();
    let expected = (0..ACME).filter(|i| i % 7 == 1).count();
    assert_eq!(reply["rows"][0]["n"], json!(expected), "{reply}");
    let mut statuses = Vec::new();
    for attack in attacks {
        statuses.push(attack.await??);
    }
    assert!(
        statuses
            .iter()
            .all(|s| [200, 400, 413, 429, 503, 504].contains(s)),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&429),
        "the per-principal cap turned some away: {statuses:?}"
    );
    let (status, _) = up.get("/healthz").await?;
    assert_eq!(status, 200);
    eprintln!(
        "normal query answered in {normal_took:?} under attack; attack statuses {statuses:?}"
    );
    up.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sql_command_runs_the_same_engine_on_a_lake() -> Result<()> {
    let (dir, up) = up("").await?;
    let lake = up.lake();
    up.stop().await?;
    let counts = crate::support::process::sql_csv(
        &lake,
        "SELECT tenant_id, count(*) AS n FROM events GROUP BY 1 ORDER BY 1",
    )
    .await?;
    assert_eq!(
        counts,
        format!("tenant_id,n\nacme,{ACME}\nglobex,{GLOBEX}\n")
    );
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_tooltrail"))
        .args(["sql", "--lake", path_str(&lake)?, "DELETE FROM events"])
        .output()
        .await?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only"));
    drop(dir);
    Ok(())
}

/// Runs SQL through `psql -At` (given on its standard input, so that it may
/// be longer than a command line, stopping at the first error, with SQLSTATEs
/// in its messages) against `up`'s Postgres wire with a token.
fn psql_client(
    up: &Tooltrail,
) -> Result<impl Fn(&str, &str) -> std::io::Result<std::process::Output> + use<>> {
    let addr = up
        .stderr()
        .lines()
        .find_map(|l| l.strip_prefix("postgres wire on ").map(str::to_owned))
        .context("up prints the postgres wire address")?;
    let (host, port) = addr.rsplit_once(':').context("host:port")?;
    let conninfo = format!("host={host} port={port} user=ana dbname=tooltrail sslmode=disable");
    Ok(move |token: &str, sql: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new("psql")
            .env("PGPASSWORD", token)
            .args([conninfo.as_str(), "-At", "-v", "ON_ERROR_STOP=1"])
            .args(["-v", "VERBOSITY=verbose", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(sql.as_bytes())?;
        stdin.write_all(b";\n")?;
        drop(stdin);
        child.wait_with_output()
    })
}

/// Issue 23: an expression deep enough to overflow the planner's stack is
/// refused over the Postgres wire with SQLSTATE 54001, and `up` lives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_gets_54001_for_a_deep_expression_and_up_lives() -> Result<()> {
    let (_dir, up) = up("pgwire.listen = \"127.0.0.1:0\"\nmax_sql_bytes = 16777216").await?;
    let psql = psql_client(&up)?;
    let chain = |term: &str, op: &str, terms: usize| {
        format!(
            "SELECT {} FROM events",
            vec![term; terms].join(&format!(" {op} "))
        )
    };
    let attacks = [
        chain("status", "+", 10_000),
        chain("status", "+", 1_000_000),
        chain("status = 1", "OR", 10_000),
        chain("user_id", "||", 10_000),
        format!(
            "SELECT {}1{} FROM events",
            "CASE WHEN status > 0 THEN ".repeat(10_000),
            " ELSE 0 END".repeat(10_000)
        ),
    ];
    for sql in &attacks {
        let out = psql("tok-acme", sql)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} bytes answered", sql.len());
        assert!(stderr.contains("54001"), "{stderr}");
        assert!(stderr.contains("max_expr_depth"), "{stderr}");
    }
    let out = psql("tok-acme", "SELECT count(*) FROM events")?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8(out.stdout)?.trim(), ACME.to_string());
    up.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_connects_to_up_with_a_token_and_sees_its_tenant_only() -> Result<()> {
    let (_dir, up) = up("pgwire.listen = \"127.0.0.1:0\"").await?;
    let psql = psql_client(&up)?;
    let out = psql(
        "tok-acme",
        "SELECT tenant_id, count(*) FROM events GROUP BY 1",
    )?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout)?.trim(),
        format!("acme|{ACME}")
    );
    let out = psql("tok-wrong", "SELECT 1")?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("authentication"));
    up.stop().await
}

/// Expressions that fail on another tenant's rows (and would name the value
/// in the error, or tell by failing that the row exists) answer over HTTP
/// and psql as if those rows did not exist.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_expressions_never_see_another_tenants_rows_over_http_or_psql() -> Result<()> {
    let (_dir, up) = up("pgwire.listen = \"127.0.0.1:0\"").await?;
    let psql = psql_client(&up)?;
    let guard = "tenant_id <> 'acme'";
    let predicates = [
        format!("CAST(CASE WHEN {guard} THEN event_id ELSE '0' END AS BIGINT) = 0"),
        format!("1 / (CASE WHEN {guard} THEN 0 ELSE 1 END) = 1"),
        format!("regexp_like('x', CASE WHEN {guard} THEN '(' || event_id ELSE 'x' END)"),
        format!("make_array(1, 2)[CASE WHEN {guard} THEN CAST(event_id AS BIGINT) ELSE 1 END] = 1"),
        format!(
            "CAST(json_get_str(CASE WHEN {guard} THEN arguments ELSE '{{\"q\":\"1\"}}' END, 'q') AS BIGINT) = 1"
        ),
    ];
    for predicate in &predicates {
        let query = format!("SELECT count(*) AS n FROM events WHERE {predicate}");
        let response = sql(&up, Some("tok-acme"), json!({ "sql": query }), None).await?;
        let status = response.status().as_u16();
        let reply: Value = response.json().await?;
        assert_eq!(status, 200, "{query}: {reply}");
        assert_eq!(reply["rows"], json!([{"n": ACME}]), "{query}");

        let out = psql("tok-acme", &query)?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{query}: {stderr}");
        assert!(!stderr.contains("globex"), "{query}: {stderr}");
        assert_eq!(
            String::from_utf8(out.stdout)?.trim(),
            ACME.to_string(),
            "{query}"
        );
    }
    up.stop().await
}
