//! OTLP in: agentgateway-shaped log records from the official OpenTelemetry Python SDK over
//! OTLP/HTTP (`POST /v1/logs`, with and without gzip), spans on `/v1/traces`, a retried export,
//! and a Kafka topic of `otlp_proto` records, all through the real binary and read back with
//! `POST /v1/sql`.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, bail, ensure};
use prost::Message as _;
use rdkafka::producer::FutureRecord;
use serde_json::{Value, json};
use tooltrail_ingest::otlp::proto::{
    AnyValue, ExportLogsServiceRequest, ExportLogsServiceResponse, any_value,
};

use crate::support::process::Tooltrail;
use crate::support::{
    BROKER_TIMEOUT, Deadline, committed_offsets, create_topic, high_watermarks, kafka_brokers,
    producer, unique_name,
};

const RECORDED: &[u8] = include_bytes!("../../ingest/tests/fixtures/agentgateway_logs.binpb");

fn sha256(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// `up` with ingest tokens `tok-acme` (acme only) and `tok-all` (every tenant), the admin query
/// token `tok-root`, and `extra` config.
async fn up(dir: &Path, extra: &str) -> Result<Tooltrail> {
    let config = dir.join("tooltrail.toml");
    std::fs::write(
        &config,
        format!(
            "{extra}\n\
             [[http.ingest_tokens]]\nname = \"gw-acme\"\nsha256 = \"{}\"\ntenants = [\"acme\"]\n\
             [[http.ingest_tokens]]\nname = \"gw-all\"\nsha256 = \"{}\"\ntenants = [\"*\"]\n\
             [[query.tokens]]\nname = \"root\"\nsha256 = \"{}\"\nrole = \"admin\"\ntenants = [\"*\"]\n",
            sha256("tok-acme"),
            sha256("tok-all"),
            sha256("tok-root"),
        ),
    )?;
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    Tooltrail::up_with_config(&config, &data, &["--warm-from-lake", "0s"]).await
}

/// Rows of `sql`, as the admin sees them.
async fn sql(up: &Tooltrail, sql: &str) -> Result<Vec<Value>> {
    let reply: Value = reqwest::Client::new()
        .post(up.url("/v1/sql"))
        .bearer_auth("tok-root")
        .json(&json!({ "sql": sql }))
        .send()
        .await?
        .json()
        .await?;
    reply["rows"]
        .as_array()
        .cloned()
        .with_context(|| format!("no rows for {sql}: {reply}"))
}

/// One log record for the SDK, shaped as agentgateway's access log.
fn record(time_ns: i64, attributes: Value) -> Value {
    json!({"time_ns": time_ns, "trace_id": null, "span_id": null, "body": null, "attributes": attributes})
}

/// Sends `records` with the SDK's OTLP/HTTP exporter; returns its export results.
async fn emit(
    up: &Tooltrail,
    token: &str,
    gzip: bool,
    resource: Value,
    records: &[Value],
) -> Result<Vec<String>> {
    let spec = json!({
        "endpoint": up.url("/v1/logs"), "token": token, "gzip": gzip,
        "resource": resource, "records": records,
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/otlp_emit.py");
    let mut child = tokio::process::Command::new("python3")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("python3 with opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http (see .ci/run)")?;
    let mut stdin = child.stdin.take().context("stdin is piped")?;
    tokio::io::AsyncWriteExt::write_all(&mut stdin, spec.to_string().as_bytes()).await?;
    drop(stdin);
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .context("the SDK did not finish exporting")??;
    ensure!(
        out.status.success(),
        "otlp_emit.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result: Value = serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "otlp_emit.py printed {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })?;
    Ok(result["exports"]
        .as_array()
        .context("exports")?
        .iter()
        .map(|e| e.as_str().unwrap_or_default().to_owned())
        .collect())
}

/// What `[otlp.mapping]`'s defaults make of a record, computed from what was sent.
fn expected(record: &Value, resource_tenant: Option<&str>, token_tenant: Option<&str>) -> Value {
    let a = &record["attributes"];
    let status = a["http.status"].as_i64().expect("a status");
    let ip = a["src.addr"].as_str().map(|s| {
        s.parse::<std::net::SocketAddr>()
            .map_or_else(|_| s.to_owned(), |sa| sa.ip().to_string())
    });
    let latency = a["duration"]
        .as_str()
        .and_then(|d| d.trim_end_matches("ms").parse::<f64>().ok());
    let tenant = a["tenant.id"].as_str().or(resource_tenant).or(token_tenant);
    let mapped = [
        "tenant.id",
        "jwt.sub",
        "mcp.target",
        "mcp.method.name",
        "gen_ai.tool.name",
        "mcp.resource.uri",
        "mcp.session.id",
        "http.status",
        "src.addr",
        "trace.id",
        "mcp.error.code",
        "mcp.error.message",
        "duration",
    ];
    let rest: BTreeMap<&String, String> = a
        .as_object()
        .expect("attributes")
        .iter()
        .filter(|(k, _)| !mapped.contains(&k.as_str()))
        .map(|(k, v)| (k, v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
        .collect();
    json!({
        "tenant_id": tenant, "user_id": a["jwt.sub"], "server": a["mcp.target"],
        "method": a["mcp.method.name"], "tool": a["gen_ai.tool.name"],
        "resource": a["mcp.resource.uri"], "session_id": a["mcp.session.id"],
        "decision": if status == 401 || status == 403 { "deny" } else { "allow" },
        "status": status, "source_ip": ip, "trace_id": a["trace.id"], "latency_ms": latency,
        "jsonrpc_error_code": a["mcp.error.code"], "reason": a["mcp.error.message"],
        "time_us": record["time_ns"].as_i64().expect("a time") / 1000,
        "attributes": rest,
    })
}

/// An `events` row in the shape of [`expected`].
fn observed(row: &Value) -> Result<Value> {
    let time = row["time"].as_str().context("time")?;
    let time_us = chrono::DateTime::parse_from_rfc3339(time)
        .or_else(|_| chrono::DateTime::parse_from_rfc3339(&format!("{}Z", time.replace(' ', "T"))))
        .with_context(|| format!("time {time}"))?
        .timestamp_micros();
    let attributes: BTreeMap<String, String> = match &row["attributes"] {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect(),
        Value::Array(entries) => entries
            .iter()
            .map(|e| {
                (
                    e["key"].as_str().unwrap_or_default().to_owned(),
                    e["value"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    let mut out = json!({"time_us": time_us, "attributes": attributes});
    for field in [
        "tenant_id",
        "user_id",
        "server",
        "method",
        "tool",
        "resource",
        "session_id",
        "decision",
        "status",
        "source_ip",
        "trace_id",
        "latency_ms",
        "jsonrpc_error_code",
        "reason",
    ] {
        out[field] = row.get(field).cloned().unwrap_or(Value::Null);
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agentgateway_log_records_from_the_python_sdk_land_with_every_field_mapped() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let up = up(dir.path(), "").await?;
    let now = chrono::Utc::now().timestamp_nanos_opt().context("now")?;
    let at = |i: i64| now - 60_000_000_000 + i * 1_000_123_457;
    let agw = |i: i64, user: Option<&str>, extra: Value| {
        let mut a = json!({
            "gateway": "default/agentgateway", "listener": "mcp", "route": "default/github",
            "src.addr": format!("10.1.2.{i}:5{i}000"), "http.method": "POST", "http.path": "/mcp",
            "http.status": 200, "protocol": "mcp", "mcp.method.name": "tools/call",
            "mcp.target": "github", "mcp.resource.type": "tool", "gen_ai.tool.name": "create_issue",
            "mcp.session.id": format!("sess-{i}"), "duration": format!("{i}ms"),
        });
        if let Some(user) = user {
            a["jwt.sub"] = json!(user);
        }
        for (k, v) in extra.as_object().expect("extra attributes") {
            a[k] = v.clone();
        }
        record(at(i), a)
    };
    // From acme's gateway: its token names the tenant; the resource does not.
    let from_acme = vec![
        agw(
            1,
            Some("alice"),
            json!({"trace.id": "4bf92f3577b34da6a3ce929d0e0e4736"}),
        ),
        agw(
            2,
            Some("bob"),
            json!({
                "http.status": 403, "mcp.method.name": "resources/read", "gen_ai.tool.name": null,
                "mcp.resource.type": "resource", "mcp.resource.uri": "repo://acme/secret",
                "src.addr": "[2001:db8::7]:443",
            }),
        ),
        agw(
            3,
            Some("carol"),
            json!({"mcp.error.code": -32602, "mcp.error.message": "invalid params"}),
        ),
        // Anonymous: no user to map.
        agw(4, None, json!({"http.status": 401})),
        // Claims another tenant than its token's.
        agw(5, Some("mallory"), json!({"tenant.id": "globex"})),
    ];
    // Through a shared gateway, gzipped: the resource names the tenant.
    let from_globex = vec![
        agw(6, Some("dave"), json!({"gen_ai.tool.name": "search"})),
        agw(7, Some("erin"), json!({"http.status": 429})),
        // No MCP method: not a call that can be mapped.
        agw(8, Some("frank"), json!({"mcp.method.name": null})),
    ];
    let strip_nulls = |records: Vec<Value>| -> Vec<Value> {
        records
            .into_iter()
            .map(|mut r| {
                r["attributes"]
                    .as_object_mut()
                    .expect("attributes")
                    .retain(|_, v| !v.is_null());
                r
            })
            .collect()
    };
    let (from_acme, from_globex) = (strip_nulls(from_acme), strip_nulls(from_globex));
    let acme_resource = json!({"service.name": "agentgateway", "service.instance.id": "agw-1"});
    let globex_resource = json!({"service.name": "agentgateway", "service.instance.id": "agw-2", "tenant.id": "globex"});
    let exports = emit(&up, "tok-acme", false, acme_resource, &from_acme).await?;
    assert_eq!(exports, ["SUCCESS"], "{}", up.stderr());
    let exports = emit(&up, "tok-all", true, globex_resource, &from_globex).await?;
    assert_eq!(exports, ["SUCCESS"], "{}", up.stderr());

    // Acknowledged, so durable: every mapped field is right.
    let mut want: BTreeMap<String, Value> = BTreeMap::new();
    for (record, resource_tenant, token_tenant) in from_acme
        .iter()
        .map(|r| (r, None, Some("acme")))
        .chain(from_globex.iter().map(|r| (r, Some("globex"), None)))
    {
        let a = &record["attributes"];
        let tenant = a["tenant.id"].as_str().or(resource_tenant).or(token_tenant);
        let mappable = a.get("jwt.sub").is_some() && a.get("mcp.method.name").is_some();
        // gw-acme may write acme only; gw-all any tenant.
        let allowed = resource_tenant.is_some() || tenant == Some("acme");
        if mappable && allowed {
            let mut e = expected(record, resource_tenant, token_tenant);
            e["gateway_id"] = json!(if resource_tenant.is_some() {
                "agw-2"
            } else {
                "agw-1"
            });
            want.insert(
                a["mcp.session.id"].as_str().expect("a session").to_owned(),
                e,
            );
        }
    }
    let rows = sql(&up, "SELECT * FROM events ORDER BY session_id").await?;
    let mut got: BTreeMap<String, Value> = BTreeMap::new();
    for row in &rows {
        let mut e = observed(row)?;
        e["gateway_id"] = row["gateway_id"].clone();
        got.insert(row["session_id"].as_str().unwrap_or_default().to_owned(), e);
        assert!(
            row["event_id"]
                .as_str()
                .is_some_and(|id| id.starts_with("otlp-")),
            "{row}"
        );
    }
    assert_eq!(want.len(), 5, "alice, bob, carol, dave and erin land");
    assert_eq!(got, want);

    // What could not be mapped, or may not be written, waits in the quarantine with its reason.
    let quarantined = sql(
        &up,
        "SELECT reason, field, error FROM quarantine ORDER BY error",
    )
    .await?;
    let reasons: Vec<(String, String)> = quarantined
        .iter()
        .map(|r| {
            (
                r["reason"].as_str().unwrap_or_default().to_owned(),
                r["field"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    let mut reasons_sorted = reasons.clone();
    reasons_sorted.sort();
    assert_eq!(
        reasons_sorted,
        [
            ("missing_field".to_owned(), "method".to_owned()),
            ("missing_field".to_owned(), "user_id".to_owned()),
            ("tenant_not_allowed".to_owned(), "tenant_id".to_owned()),
        ],
        "{quarantined:?}"
    );
    let errors: Vec<&str> = quarantined
        .iter()
        .filter_map(|r| r["error"].as_str())
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("`jwt.sub`") && e.contains("`enduser.id`")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("`mcp.method.name`")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("globex") && e.contains("gw-acme")),
        "{errors:?}"
    );

    let metrics = up.get_text("/metrics").await?;
    for line in [
        "tooltrail_ingest_otlp_records_total{signal=\"logs\",transport=\"http\",outcome=\"mapped\"} 6",
        "tooltrail_ingest_otlp_records_total{signal=\"logs\",transport=\"http\",outcome=\"unmapped\"} 2",
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
    up.stop().await
}

async fn post(
    up: &Tooltrail,
    path: &str,
    token: Option<&str>,
    content_type: &str,
    body: Vec<u8>,
) -> Result<reqwest::Response> {
    let mut request = reqwest::Client::new()
        .post(up.url(path))
        .header("content-type", content_type)
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    Ok(request.send().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_export_is_answered_once_written_and_bad_requests_get_otlp_errors() -> Result<()>
{
    let dir = tempfile::tempdir()?;
    let up = up(dir.path(), "").await?;
    let protobuf = "application/x-protobuf";

    let first = post(
        &up,
        "/v1/logs",
        Some("tok-all"),
        protobuf,
        RECORDED.to_vec(),
    )
    .await?;
    assert_eq!(first.status(), 200);
    assert_eq!(first.headers()["content-type"], protobuf);
    let answer = ExportLogsServiceResponse::decode(first.bytes().await?)?;
    let partial = answer.partial_success.context("one record is anonymous")?;
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial.error_message.contains("`jwt.sub`"),
        "{}",
        partial.error_message
    );

    // The exporter's retry of the same request: answered, not written again.
    let retry = post(
        &up,
        "/v1/logs",
        Some("tok-all"),
        protobuf,
        RECORDED.to_vec(),
    )
    .await?;
    assert_eq!(retry.status(), 200);
    let answer = ExportLogsServiceResponse::decode(retry.bytes().await?)?;
    assert_eq!(answer.partial_success, None);
    let counts = sql(
        &up,
        "SELECT count(*) AS n, count(DISTINCT event_id) AS ids FROM events",
    )
    .await?;
    assert_eq!(counts, [json!({"n": 3, "ids": 3})]);
    let quarantined = sql(&up, "SELECT count(*) AS n FROM quarantine").await?;
    assert_eq!(quarantined, [json!({"n": 1})]);

    // OTLP/JSON, answered in JSON.
    let body = json!({"resourceLogs": [{"resource": {"attributes": [
        {"key": "tenant.id", "value": {"stringValue": "acme"}}]},
        "scopeLogs": [{"logRecords": [{
            "timeUnixNano": chrono::Utc::now().timestamp_nanos_opt().context("now")?,
            "attributes": [{"key": "jwt.sub", "value": {"stringValue": "zoe"}},
                           {"key": "http.status", "value": {"intValue": "200"}}]}]}]}]});
    let reply = post(
        &up,
        "/v1/logs",
        Some("tok-acme"),
        "application/json",
        body.to_string().into_bytes(),
    )
    .await?;
    assert_eq!(reply.status(), 200);
    assert_eq!(reply.headers()["content-type"], "application/json");
    let answer: Value = reply.json().await?;
    assert_eq!(
        answer["partialSuccess"]["rejectedLogRecords"],
        json!(1),
        "{answer}"
    );
    let message = answer["partialSuccess"]["errorMessage"]
        .as_str()
        .unwrap_or_default();
    assert!(message.contains("`mcp.target`"), "{message}");

    // Errors OTLP/HTTP clients understand.
    let unauthenticated = post(&up, "/v1/logs", None, protobuf, RECORDED.to_vec()).await?;
    assert_eq!(unauthenticated.status(), 401);
    let wrong_type = post(
        &up,
        "/v1/logs",
        Some("tok-all"),
        "text/plain",
        b"hello".to_vec(),
    )
    .await?;
    assert_eq!(wrong_type.status(), 415);
    let garbage = post(
        &up,
        "/v1/logs",
        Some("tok-all"),
        protobuf,
        b"\xff\xff\xff".to_vec(),
    )
    .await?;
    assert_eq!(garbage.status(), 400);
    let garbage = post(
        &up,
        "/v1/traces",
        Some("tok-all"),
        "application/json",
        b"[1]".to_vec(),
    )
    .await?;
    assert_eq!(garbage.status(), 400);
    let text = garbage.text().await?;
    assert!(text.contains("invalid_body"), "{text}");
    up.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_mcp_calls_land_and_other_spans_are_skipped() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let up = up(dir.path(), "").await?;
    let start = chrono::Utc::now().timestamp_nanos_opt().context("now")? - 5_000_000_000;
    let span = |name: &str, attributes: Value| {
        json!({
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
            "name": name, "kind": 2, "startTimeUnixNano": start.to_string(),
            "endTimeUnixNano": (start + 42_000_000).to_string(), "attributes": attributes,
            "status": {"code": 2}
        })
    };
    let kv = |k: &str, v: &str| json!({"key": k, "value": {"stringValue": v}});
    let body = json!({"resourceSpans": [{"resource": {"attributes": [kv("service.name", "mcp-github")]},
    "scopeSpans": [{"spans": [
        span("tools/call create_issue", json!([kv("mcp.method.name", "tools/call"),
            kv("gen_ai.tool.name", "create_issue"), kv("enduser.id", "alice"),
            kv("server.address", "github"), kv("mcp.session.id", "s1"),
            kv("rpc.response.status_code", "-32603")])),
        span("GET /healthz", json!([kv("http.route", "/healthz")])),
    ]}]}]});
    let reply = post(
        &up,
        "/v1/traces",
        Some("tok-acme"),
        "application/json",
        body.to_string().into_bytes(),
    )
    .await?;
    assert_eq!(reply.status(), 200);
    let answer: Value = reply.json().await?;
    assert_eq!(answer.get("partialSuccess"), None, "{answer}");
    let rows = sql(&up, "SELECT tenant_id, user_id, server, tool, status, jsonrpc_error_code, latency_ms, trace_id FROM events").await?;
    assert_eq!(
        rows,
        [
            json!({"tenant_id": "acme", "user_id": "alice", "server": "github", "tool": "create_issue",
                "status": 500, "jsonrpc_error_code": -32603, "latency_ms": 42.0,
                "trace_id": "5b8efff798038103d269b633813fc60c"})
        ]
    );
    let metrics = up.get_text("/metrics").await?;
    let skipped = "tooltrail_ingest_otlp_records_total{signal=\"traces\",transport=\"http\",outcome=\"skipped\"} 1";
    assert!(metrics.contains(skipped), "{metrics}");
    up.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_topic_of_otlp_proto_lands_each_records_events_with_its_offset() -> Result<()> {
    let brokers = kafka_brokers();
    let topic = create_topic(&brokers, "otlp", 1).await?;
    let group = unique_name("otlp-ingest");
    let producer = producer(&brokers)?;
    // The Collector's Kafka exporter: one ExportLogsServiceRequest per record. Then a record
    // that is not OTLP, then the first request's records again under another tenant.
    let mut again = ExportLogsServiceRequest::decode(RECORDED)?;
    for r in &mut again.resource_logs {
        for kv in r.resource.iter_mut().flat_map(|r| r.attributes.iter_mut()) {
            if kv.key == "tenant.id" {
                kv.value = Some(AnyValue {
                    value: Some(any_value::Value::StringValue("globex".into())),
                });
            }
        }
    }
    let payloads: [Vec<u8>; 3] = [
        RECORDED.to_vec(),
        b"{\"not\": \"otlp\"}".to_vec(),
        again.encode_to_vec(),
    ];
    for payload in &payloads {
        tokio::time::timeout(
            BROKER_TIMEOUT,
            producer.send(
                FutureRecord::<(), [u8]>::to(&topic)
                    .partition(0)
                    .payload(payload),
                BROKER_TIMEOUT,
            ),
        )
        .await
        .context("timed out producing")?
        .map_err(|(e, _)| e)?;
    }
    let ends = high_watermarks(&brokers, &topic, 1).await?;

    let dir = tempfile::tempdir()?;
    let up = up(
        dir.path(),
        &format!(
            "[kafka]\nbrokers = \"{brokers}\"\ntopic = \"{topic}\"\ngroup_id = \"{group}\"\nencoding = \"otlp_proto\"\n"
        ),
    )
    .await?;
    let deadline = Deadline::after(Duration::from_secs(60));
    loop {
        let committed = committed_offsets(&brokers, &group, &topic, 1).await?;
        if committed.get(&0) == Some(&ends.get(&0).copied()) {
            break;
        }
        if let Err(e) = deadline.remaining("kafka ingest to commit the topic's end") {
            bail!(
                "{e}: offsets {committed:?}, ends {ends:?}:\n{}",
                up.stderr()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Each record's events and rejects landed with its offset.
    let rows = sql(
        &up,
        "SELECT source_offset, tenant_id, count(*) AS n, count(DISTINCT event_id) AS ids \
         FROM events GROUP BY source_offset, tenant_id ORDER BY source_offset",
    )
    .await?;
    assert_eq!(
        rows,
        [
            json!({"source_offset": 0, "tenant_id": "acme", "n": 3, "ids": 3}),
            json!({"source_offset": 2, "tenant_id": "globex", "n": 3, "ids": 3}),
        ]
    );
    let quarantined = sql(
        &up,
        "SELECT source_offset, reason, field FROM quarantine ORDER BY source_offset",
    )
    .await?;
    let quarantined: Vec<(i64, &str, Option<&str>)> = quarantined
        .iter()
        .map(|r| {
            (
                r["source_offset"].as_i64().unwrap_or(-1),
                r["reason"].as_str().unwrap_or_default(),
                r["field"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        quarantined,
        [
            (0, "missing_field", Some("user_id")),
            (1, "not_otlp", None),
            (2, "missing_field", Some("user_id")),
        ]
    );
    let metrics = up.get_text("/metrics").await?;
    let mapped = "tooltrail_ingest_otlp_records_total{signal=\"logs\",transport=\"kafka\",outcome=\"mapped\"} 6";
    assert!(metrics.contains(mapped), "{metrics}");
    up.stop().await
}
