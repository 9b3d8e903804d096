//! Where an OTLP/HTTP request's CPU time goes, stage by stage, beside the
//! NDJSON request of the same events: for `/v1/events`, splitting lines and
//! decoding each event; for `/v1/logs`, the request's content hash (the
//! idempotency key), the protobuf decode, the mapping to contract objects and
//! decoding those. The stages after (the committer, Parquet, the commit) are
//! the same for both. Requests are built like `scripts/bench_otlp.py`'s:
//! agentgateway's attribute names, one resource per tenant.
//!
//! ```text
//! tooltrail simulate --users 700 --days 1 --seed 7 --out /tmp/events.ndjson
//! cargo build --release --workspace --example otlp_stages
//! taskset -c 0 target/release/examples/otlp_stages /tmp/events.ndjson [BATCH]
//! ```

mod support;

use std::collections::BTreeMap;
use std::hint::black_box;

use anyhow::Context;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tooltrail_ingest::config::OtlpMapping;
use tooltrail_ingest::otlp::{Encoding, Mapper, decode_logs};

use support::cpu;

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// A JSON field as an attribute value, as the bench's Python client sends it.
fn attribute(key: &str, value: Option<&Value>) -> Option<KeyValue> {
    Some(match value? {
        Value::String(s) => kv(key, any_value::Value::StringValue(s.clone())),
        Value::Number(n) if n.is_i64() => kv(key, any_value::Value::IntValue(n.as_i64()?)),
        Value::Number(n) => kv(key, any_value::Value::DoubleValue(n.as_f64()?)),
        _ => return None,
    })
}

/// One `ExportLogsServiceRequest` of `events`, a resource per tenant.
fn request(events: &[Value]) -> anyhow::Result<Vec<u8>> {
    let mut by_tenant: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for e in events {
        by_tenant
            .entry(
                e["tenant_id"]
                    .as_str()
                    .context("an event without a tenant")?,
            )
            .or_default()
            .push(e);
    }
    let mut request = ExportLogsServiceRequest::default();
    for (tenant, group) in by_tenant {
        let mut records = Vec::new();
        for e in group {
            let time = chrono::DateTime::parse_from_rfc3339(e["time"].as_str().context("time")?)?;
            let nanos = time.timestamp_nanos_opt().context("time out of range")? as u64;
            let duration = e
                .get("latency_ms")
                .and_then(Value::as_f64)
                .map(|ms| Value::String(format!("{ms}ms")));
            let attributes = [
                attribute("jwt.sub", e.get("user_id")),
                attribute("mcp.target", e.get("server")),
                attribute("mcp.method.name", e.get("method")),
                attribute("gen_ai.tool.name", e.get("tool")),
                attribute("mcp.resource.uri", e.get("resource")),
                attribute("mcp.session.id", e.get("session_id")),
                attribute("src.addr", e.get("source_ip")),
                attribute("http.status", e.get("status")),
                attribute("tooltrail.decision", e.get("decision")),
                attribute("duration", duration.as_ref()),
                attribute("trace.id", e.get("trace_id")),
                attribute("mcp.client.name", e.get("client_id")),
                attribute("user_agent.original", e.get("user_agent")),
                attribute("http.method", Some(&Value::String("POST".into()))),
                attribute("http.path", Some(&Value::String("/mcp".into()))),
            ];
            records.push(LogRecord {
                time_unix_nano: nanos,
                observed_time_unix_nano: nanos,
                severity_number: 9,
                severity_text: "INFO".into(),
                attributes: attributes.into_iter().flatten().collect(),
                ..Default::default()
            });
        }
        request.resource_logs.push(ResourceLogs {
            resource: Some(Resource {
                attributes: vec![
                    kv(
                        "service.name",
                        any_value::Value::StringValue("agentgateway".into()),
                    ),
                    kv("tenant.id", any_value::Value::StringValue(tenant.into())),
                ],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                scope: Some(InstrumentationScope {
                    name: "agentgateway.access".into(),
                    ..Default::default()
                }),
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        });
    }
    Ok(request.encode_to_vec())
}

/// How often each stage runs; the fastest run counts (the machine is shared).
const RUNS: usize = 5;

/// Runs `stage` over every item `RUNS` times and prints its least CPU time
/// per event.
fn stage<T>(name: &str, events: usize, items: &[T], stage: impl Fn(&T) -> usize) -> f64 {
    let mut best = f64::MAX;
    let mut out = 0;
    for _ in 0..RUNS {
        let started = cpu();
        out = items.iter().map(&stage).sum::<usize>();
        best = best.min((cpu() - started).as_nanos() as f64 / events as f64);
    }
    println!("{name:32} {best:8.0} ns/event ({out} out)");
    best
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .context("usage: otlp_stages EVENTS.ndjson [BATCH]")?;
    let batch: usize = args.next().map(|b| b.parse()).transpose()?.unwrap_or(512);
    let text = std::fs::read_to_string(&path).with_context(|| format!("read {path}"))?;
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let events: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l))
        .collect::<Result<_, _>>()?;
    let ndjson: Vec<Vec<u8>> = lines
        .chunks(batch)
        .map(|c| {
            c.iter()
                .flat_map(|l| [l.as_bytes(), b"\n"].concat())
                .collect()
        })
        .collect();
    let otlp: Vec<Vec<u8>> = events
        .chunks(batch)
        .map(request)
        .collect::<Result<_, _>>()?;
    let n = events.len();
    println!(
        "{n} events in {} requests of {batch}; NDJSON {:.0} B/event, OTLP {:.0} B/event",
        ndjson.len(),
        ndjson.iter().map(Vec::len).sum::<usize>() as f64 / n as f64,
        otlp.iter().map(Vec::len).sum::<usize>() as f64 / n as f64
    );

    let ndjson_ns = stage("ndjson: split + decode", n, &ndjson, |body| {
        body.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter(|l| black_box(tooltrail_schemas::decode(l)).is_ok())
            .count()
    });
    let mapper = Mapper::new(&OtlpMapping::default());
    let hash = stage("otlp: sha256 content key", n, &otlp, |body| {
        black_box(Sha256::digest(body));
        0
    });
    let proto = stage("otlp: protobuf decode", n, &otlp, |body| {
        let request = decode_logs(body, Encoding::Protobuf).expect("the bench's own request");
        black_box(request).resource_logs.len()
    });
    let requests: Vec<ExportLogsServiceRequest> = otlp
        .iter()
        .map(|b| decode_logs(b, Encoding::Protobuf).expect("the bench's own request"))
        .collect();
    let map_ns = stage("otlp: map to contract objects", n, &requests, |request| {
        black_box(mapper.logs(request, None)).mapped() as usize
    });
    let mapped: Vec<_> = requests.iter().map(|r| mapper.logs(r, None)).collect();
    let decode_ns = stage("otlp: decode the objects", n, &mapped, |m| {
        m.records
            .iter()
            .filter(|r| black_box(tooltrail_schemas::decode(&m.body[r.range.clone()])).is_ok())
            .count()
    });
    let otlp_ns = hash + proto + map_ns + decode_ns;
    println!(
        "request stage: ndjson {ndjson_ns:.0} ns/event, otlp {otlp_ns:.0} ns/event ({:.2}x)",
        otlp_ns / ndjson_ns
    );
    Ok(())
}
