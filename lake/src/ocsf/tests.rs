use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use tooltrail_schemas::lake::{AlertBatchBuilder, AlertRow, EventBatchBuilder, Source};

use super::*;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("a valid time")
        .with_timezone(&Utc)
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Events as the lake stores them, received a second after their time.
fn events(lines: &[Value]) -> RecordBatch {
    let mut builder = EventBatchBuilder::new();
    for (n, line) in lines.iter().enumerate() {
        let event = tooltrail_schemas::decode(line.to_string().as_bytes()).expect("a valid event");
        let received = event.time + Duration::seconds(1);
        let source = Source::File {
            path: "f",
            line: n as i64 + 1,
        };
        builder.append(&event, received, source);
    }
    builder.finish().expect("a batch")
}

fn minimal_event() -> Value {
    json!({
        "schema_version": 1,
        "event_id": "e-min",
        "time": "2026-03-04T05:06:07.123456Z",
        "tenant_id": "acme",
        "user_id": "alice",
        "server": "github",
        "method": "resources/read",
        "decision": "allow",
        "status": 200,
    })
}

fn full_event() -> Value {
    json!({
        "schema_version": 1,
        "event_id": "e-full",
        "time": "2026-03-04T05:06:08Z",
        "tenant_id": "acme",
        "user_id": "build-bot",
        "server": "github",
        "method": "tools/call",
        "tool": "delete_repo",
        "decision": "deny",
        "status": 403,
        "resource": "repo://acme/secrets",
        "arguments": {"name": "secrets"},
        "scopes": ["repo:read"],
        "required_scope": "repo:admin",
        "policy_id": "no-deletes",
        "reason": "scope repo:admin missing",
        "error_type": "-32001",
        "jsonrpc_error_code": -32001,
        "latency_ms": 12.5,
        "client_id": "claude-desktop",
        "agent_id": "agent-7",
        "session_id": "sess-1",
        "gateway_id": "gw-1",
        "source_ip": "10.1.2.3",
        "user_agent": "mcp-client/1.0",
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "principal_type": "service",
        "attributes": {"jsonrpc.request.id": "42"},
    })
}

#[tokio::test]
async fn events_become_api_activity_with_every_required_attribute() {
    let rows = to_json(&API_ACTIVITY, events(&[minimal_event(), full_event()]))
        .await
        .expect("rendered");
    assert_eq!(rows.len(), 2);
    for row in &rows {
        assert_eq!(
            missing_required(&API_ACTIVITY, row),
            Vec::<String>::new(),
            "{row:#}"
        );
        assert_eq!(row["class_uid"], 6003);
        assert_eq!(row["category_uid"], 6);
        let activity = row["activity_id"].as_i64().expect("activity_id");
        assert_eq!(row["type_uid"], 6003 * 100 + activity, "{row:#}");
        assert_eq!(row["metadata"]["version"], SCHEMA_VERSION);
        assert_eq!(row["metadata"]["product"]["name"], "tooltrail");
        assert_eq!(
            row["metadata"]["product"]["version"],
            env!("CARGO_PKG_VERSION")
        );
        assert_eq!(row["metadata"]["tenant_uid"], "acme");
        assert_eq!(row["metadata"]["profiles"], json!(["security_control"]));
        assert_eq!(row["api"]["service"]["name"], "github");
    }

    let (min, full) = (&rows[0], &rows[1]);
    assert_eq!(min["activity_id"], 2, "resources/read is a Read: {min:#}");
    assert_eq!(min["time"], millis(at("2026-03-04T05:06:07.123Z")));
    assert_eq!(min["metadata"]["uid"], "e-min");
    assert_eq!(
        min["metadata"]["logged_time"],
        millis(at("2026-03-04T05:06:08.123Z"))
    );
    assert_eq!(
        (&min["action_id"], &min["action"]),
        (&json!(1), &json!("Allowed"))
    );
    assert_eq!(min["disposition_id"], 1);
    assert_eq!(min["status_id"], 1);
    assert_eq!(min["actor"], json!({"user": {"uid": "alice"}}));
    assert_eq!(min["api"]["operation"], "resources/read");
    assert_eq!(
        min["src_endpoint"],
        json!({"name": "unknown"}),
        "no address, no client"
    );
    for absent in [
        "resources",
        "policy",
        "http_request",
        "duration",
        "status_detail",
    ] {
        assert!(min.get(absent).is_none(), "{absent} in {min:#}");
    }

    assert_eq!(full["activity_id"], 99, "tools/call is Other: {full:#}");
    assert_eq!(full["activity_name"], "Other");
    assert_eq!(
        (&full["action_id"], &full["action"]),
        (&json!(2), &json!("Denied"))
    );
    assert_eq!(
        (&full["disposition_id"], &full["disposition"]),
        (&json!(2), &json!("Blocked"))
    );
    assert_eq!(
        (&full["status_id"], &full["status_code"]),
        (&json!(2), &json!("403"))
    );
    assert_eq!(full["status_detail"], "scope repo:admin missing");
    assert_eq!(full["duration"], 12);
    assert_eq!(
        full["actor"],
        json!({
            "user": {"uid": "build-bot", "type_id": 4, "type": "Service"},
            "session": {"uid": "sess-1"},
            "app_name": "claude-desktop",
        })
    );
    assert_eq!(full["api"]["operation"], "delete_repo");
    assert_eq!(full["api"]["request"]["uid"], "e-full");
    assert_eq!(
        full["api"]["response"],
        json!({"code": 403, "error": "-32001", "error_message": "scope repo:admin missing"})
    );
    assert_eq!(
        full["src_endpoint"],
        json!({"ip": "10.1.2.3", "name": "claude-desktop"})
    );
    assert_eq!(full["dst_endpoint"], json!({"svc_name": "github"}));
    assert_eq!(
        full["resources"],
        json!([{"uid": "repo://acme/secrets", "type": "MCP resource"}])
    );
    assert_eq!(full["policy"], json!({"uid": "no-deletes"}));
    assert_eq!(
        full["http_request"],
        json!({"user_agent": "mcp-client/1.0"})
    );
    assert_eq!(
        full["metadata"]["correlation_uid"],
        "0af7651916cd43dd8448eb211c80319c"
    );
    assert_eq!(full["unmapped"]["agent_id"], "agent-7");
    assert_eq!(
        full["unmapped"]["attributes"],
        json!({"jsonrpc.request.id": "42"})
    );
    assert_eq!(full["unmapped"]["arguments"], r#"{"name":"secrets"}"#);
}

struct AlertCase {
    id: &'static str,
    detector: &'static str,
    severity: &'static str,
    observed: Option<f64>,
    expected: Option<f64>,
    new_values: Vec<String>,
    repeats: i64,
}

fn alerts(cases: &[AlertCase]) -> RecordBatch {
    let start = at("2026-03-04T05:00:00Z");
    let end = at("2026-03-04T05:05:00Z");
    let event_ids = vec!["e1".to_owned(), "e2".to_owned()];
    let mut builder = AlertBatchBuilder::new();
    for case in cases {
        builder.append(&AlertRow {
            alert_version: 1,
            alert_id: case.id,
            time: end,
            tenant_id: "acme",
            user_id: "alice",
            detector: case.detector,
            severity: case.severity,
            score: 88,
            title: "alice@acme: a title",
            explanation: "alice@acme: an explanation",
            observed: case.observed,
            expected: case.expected,
            p_value: case.observed.map(|_| 3e-12),
            new_values: &case.new_values,
            event_ids: &event_ids,
            window_start: start,
            window_end: end,
            repeats: case.repeats,
            record: "{}",
        });
    }
    builder.finish().expect("a batch")
}

fn case(id: &'static str, detector: &'static str, severity: &'static str) -> AlertCase {
    AlertCase {
        id,
        detector,
        severity,
        observed: None,
        expected: None,
        new_values: Vec::new(),
        repeats: 0,
    }
}

#[tokio::test]
async fn alerts_become_detection_findings_with_every_required_attribute() {
    let spike = AlertCase {
        observed: Some(37.0),
        expected: Some(0.4),
        ..case("a-spike", "denial_spike", "high")
    };
    let first_seen = AlertCase {
        new_values: vec!["delete_repo".into(), "drop_db".into()],
        repeats: 2,
        ..case("a-new", "first_seen_tool", "medium")
    };
    let rule = case("a-rule", "cross_tenant", "critical");
    let low = case("a-low", "sensitive_tool", "low");
    let rows = to_json(&DETECTION_FINDING, alerts(&[spike, first_seen, rule, low]))
        .await
        .expect("rendered");
    assert_eq!(rows.len(), 4);
    for row in &rows {
        assert_eq!(
            missing_required(&DETECTION_FINDING, row),
            Vec::<String>::new(),
            "{row:#}"
        );
        assert_eq!(row["class_uid"], 2004);
        assert_eq!(row["category_uid"], 2);
        let activity = row["activity_id"].as_i64().expect("activity_id");
        assert_eq!(row["type_uid"], 2004 * 100 + activity, "{row:#}");
        assert_eq!(row["metadata"]["version"], SCHEMA_VERSION);
        assert_eq!(row["metadata"]["tenant_uid"], "acme");
        assert_eq!(row["time"], millis(at("2026-03-04T05:05:00Z")));
        assert_eq!(row["is_alert"], true);
        assert_ne!(row["finding_info"]["analytic"]["type_id"], 0, "{row:#}");
        assert_eq!(
            row["evidences"][0]["data"]["event_ids"],
            json!(["e1", "e2"]),
            "{row:#}"
        );
        assert_eq!(row["evidences"][0]["actor"]["user"]["uid"], "alice");
    }
    let severities: Vec<&Value> = rows.iter().map(|r| &r["severity_id"]).collect();
    assert_eq!(severities, [&json!(4), &json!(3), &json!(5), &json!(2)]);

    let spike = &rows[0];
    assert_eq!(spike["activity_id"], 1, "a first version is Create");
    assert_eq!(spike["finding_info"]["uid"], "a-spike");
    assert_eq!(spike["finding_info"]["title"], "alice@acme: a title");
    assert_eq!(spike["finding_info"]["types"], json!(["denial_spike"]));
    assert_eq!(spike["metadata"]["uid"], "a-spike/0");
    let analysis = &spike["anomaly_analyses"][0];
    assert_eq!(
        analysis["analysis_targets"],
        json!([{"name": "alice", "type": "User"}])
    );
    let anomaly = &analysis["anomalies"][0];
    assert_eq!(anomaly["observation_parameter"], "denied calls");
    assert_eq!(anomaly["observations"][0]["value"], "37.0");
    assert_eq!(
        anomaly["observations"][0]["timespan"],
        json!({
            "start_time": millis(at("2026-03-04T05:00:00Z")),
            "end_time": millis(at("2026-03-04T05:05:00Z")),
            "duration": 300_000,
        })
    );
    assert_eq!(analysis["baselines"][0]["observations"][0]["value"], "0.4");
    assert_eq!(spike["unmapped"]["p_value"], 3e-12);

    let first_seen = &rows[1];
    assert_eq!(first_seen["activity_id"], 2, "a later version is Update");
    assert_eq!(first_seen["metadata"]["uid"], "a-new/2");
    let anomaly = &first_seen["anomaly_analyses"][0]["anomalies"][0];
    assert_eq!(anomaly["observations"][0]["value"], "delete_repo, drop_db");
    assert_eq!(anomaly["observed_pattern"], "UNSEEN");
    assert!(first_seen["anomaly_analyses"][0].get("baselines").is_none());

    let rule = &rows[2];
    assert!(rule.get("anomaly_analyses").is_none(), "{rule:#}");
    assert_eq!(rule["finding_info"]["analytic"]["type"], "Rule");
}

#[test]
fn the_required_table_covers_the_base_event_the_classes_and_their_objects() {
    let required = |class: &str| -> Vec<&str> {
        REQUIRED
            .iter()
            .filter(|r| r.class == class && r.kind == RuleKind::Required)
            .map(|r| r.path)
            .collect()
    };
    let base = [
        "activity_id",
        "category_uid",
        "class_uid",
        "metadata",
        "metadata.product",
        "metadata.version",
        "severity_id",
        "time",
        "type_uid",
    ];
    for class in CLASSES {
        let rules = required(class.name);
        for path in base {
            assert!(rules.contains(&path), "{}: {path} missing", class.name);
        }
    }
    let api = required("api_activity");
    for path in ["actor", "api", "api.operation", "src_endpoint"] {
        assert!(api.contains(&path), "api_activity: {path}");
    }
    let finding = required("detection_finding");
    for path in [
        "finding_info",
        "finding_info.uid",
        "anomaly_analyses.anomalies.observations.value",
    ] {
        assert!(finding.contains(&path), "detection_finding: {path}");
    }
}

#[test]
fn missing_required_names_each_broken_rule() {
    let record = json!({
        "activity_id": 1,
        "category_uid": 2,
        "class_uid": 2004,
        "severity_id": null,
        "time": 1,
        "type_uid": 200401,
        "metadata": {"version": "1.8.0", "product": {"vendor_name": "x"}},
        "finding_info": {"title": "no uid"},
        "anomaly_analyses": [{"analysis_targets": [], "anomalies": [{"observation_parameter": "x", "observations": [{"count": 1}]}]}],
        "evidences": [{"name": "nothing"}],
    });
    let broken = missing_required(&DETECTION_FINDING, &record);
    for expected in [
        "severity_id: required, but absent or null",
        "metadata.product: needs at least one of name, uid",
        "finding_info.uid: required, but absent or null",
        "anomaly_analyses.analysis_targets: required, but absent or null",
        "anomaly_analyses.anomalies.observations.value: required, but absent or null",
        "evidences: needs at least one of actor, api, connection_info, data, database, databucket, device, dst_endpoint, email, file, process, query, resources, src_endpoint, url, user, job, script",
    ] {
        assert!(
            broken.iter().any(|b| b == expected),
            "{expected} not in {broken:#?}"
        );
    }
}
