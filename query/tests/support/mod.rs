//! A small lake written through the real ingest path, and an engine over it
//! with one token per kind of principal.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use tooltrail_detect::Alert;
use tooltrail_detect::sink::AlertLake;
use tooltrail_ingest::batch::{Pending, TimeWindow};
use tooltrail_ingest::metrics::Metrics;
use tooltrail_lake::{Location, Writer};
use tooltrail_query::auth::token_hash;
use tooltrail_query::config::TokenConfig;
use tooltrail_query::{Engine, QueryConfig, QueryMetrics, Role};
use tooltrail_schemas::lake::Source;

/// A multi-threaded runtime for tests that drive the async engine.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Runs `future` to completion on a runtime of its own, on a thread of its
/// own: callable from a test's async code and from plain code alike.
pub fn blocking<T: Send>(future: impl std::future::Future<Output = T> + Send) -> T {
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(future)
            })
            .join()
            .unwrap()
    })
}

/// The lake's writer of `root`, as ingest opens it.
pub fn writer(root: &Path) -> Writer {
    let location = Location::local(root).unwrap();
    blocking(Writer::open(&location, 1, Default::default())).unwrap()
}

/// Commits what `pending` holds, as ingest does.
pub fn commit(pending: &mut Pending, lake: &mut Writer) {
    let metrics = Metrics::register(&mut Default::default());
    blocking(pending.commit_to(lake, &metrics, "file")).unwrap();
}

/// Accepts the fixed, long-past event times the test lakes use.
pub fn wide_window() -> TimeWindow {
    TimeWindow {
        max_age: Duration::from_secs(10 * 365 * 86400),
        max_future: Duration::from_secs(365 * 86400),
    }
}

/// [`write_lake`] in a temporary directory, and an engine over it.
pub fn lake_with(config: QueryConfig) -> (tempfile::TempDir, Engine) {
    let dir = tempfile::tempdir().unwrap();
    write_lake(dir.path());
    let engine = engine(dir.path(), &config);
    (dir, engine)
}

/// Events per tenant in [`write_lake`].
pub const ACME: usize = 120;
pub const GLOBEX: usize = 80;
pub const INITECH: usize = 40;

/// Writes `n` events of `tenant`, spread over hour 09 of 2026-11-22 (or 10
/// when `later`), through ingest's own commit path.
pub fn write_events(lake: &mut Writer, tenant: &str, n: usize, first: usize, hour: u32) {
    let mut pending = Pending::new(wide_window());
    let received = Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap();
    for i in first..first + n {
        let (decision, status) = if i % 10 == 0 {
            ("deny", 403)
        } else {
            ("allow", 200)
        };
        let line = format!(
            r#"{{"schema_version":1,"event_id":"{tenant}-e{i}","time":"2026-11-22T{hour:02}:{:02}:{:02}Z","tenant_id":"{tenant}","user_id":"u{}@{tenant}","server":"github","method":"tools/call","tool":"tool_{}","resource":"github://{tenant}/repo/{}","arguments":{{"query":"needle-{tenant}-{i}","limit":{}}},"decision":"{decision}","status":{status},"session_id":"s-{tenant}-{}","source_ip":"10.0.0.{}"}}"#,
            i % 60,
            i % 60,
            i % 5,
            i % 7,
            i % 13,
            i % 50,
            i % 4,
            i % 200,
        );
        pending
            .push(
                line.as_bytes(),
                received,
                Source::File {
                    path: "test",
                    line: i as i64,
                },
            )
            .unwrap();
    }
    commit(&mut pending, lake);
}

/// A lake with three tenants' events, a quarantined record and alerts.
pub fn write_lake(root: &Path) {
    let mut lake = writer(root);
    write_events(&mut lake, "acme", ACME, 0, 9);
    write_events(&mut lake, "globex", GLOBEX, 0, 10);
    write_events(&mut lake, "initech", INITECH, 0, 9);
    // One record that fails validation goes to the quarantine.
    let mut pending = Pending::new(wide_window());
    let _ = pending.push(
        br#"{"tenant_id":"globex","broken":true}"#,
        Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap(),
        Source::File {
            path: "test",
            line: 1,
        },
    );
    commit(&mut pending, &mut lake);
    let mut text = String::new();
    for (tenant, n) in [("acme", 2), ("globex", 3)] {
        for k in 0..n {
            text.push_str(&format!(
                r#"{{"alert_version":1,"alert_id":"{tenant}-a{k}","time":"2026-11-22T09:40:00.000000Z","tenant_id":"{tenant}","user_id":"u1@{tenant}","detector":"denial_spike","severity":"high","score":88,"title":"t","explanation":"x","evidence":{{"observed":37.0,"expected":0.4,"p_value":3e-12,"event_ids":["{tenant}-e10","{tenant}-e20"],"details":{{"distinct_tools":9}}}},"window_start":"2026-11-22T09:35:00.000000Z","window_end":"2026-11-22T09:40:00.000000Z","repeats":0}}"#
            ));
            text.push('\n');
        }
    }
    write_alerts(root, &text);
}

/// Commits alert records (NDJSON, as the detector publishes them) to the
/// lake's `alerts` table through the detector's own sink, one commit.
pub fn write_alerts(root: &Path, ndjson: &str) {
    let alerts: Vec<Alert> = ndjson
        .lines()
        .map(|line| serde_json::from_str(line).expect("an alert record"))
        .collect();
    let location = Location::local(root).unwrap();
    blocking(async {
        let mut sink = AlertLake::open(&location, Default::default()).await?;
        sink.write(&alerts).await
    })
    .unwrap();
}

/// Tokens: `analyst-acme`, `analyst-acme-initech`, `auditor-acme`,
/// `auditor-all`, `admin-all`, `admin-globex`; each token's text is its name.
pub fn config() -> QueryConfig {
    let token = |name: &str, role: Role, tenants: &[&str]| TokenConfig {
        name: name.into(),
        sha256: token_hash(name),
        role,
        tenants: tenants.iter().map(|t| t.to_string()).collect(),
    };
    QueryConfig {
        tokens: vec![
            token("analyst-acme", Role::Analyst, &["acme"]),
            token("analyst-acme-initech", Role::Analyst, &["acme", "initech"]),
            token("auditor-acme", Role::Auditor, &["acme"]),
            token("auditor-all", Role::Auditor, &["*"]),
            token("admin-all", Role::Admin, &["*"]),
            token("admin-globex", Role::Admin, &["globex"]),
        ],
        ..QueryConfig::default()
    }
}

pub fn engine(root: &Path, config: &QueryConfig) -> Engine {
    Engine::open(
        &tooltrail_lake::Location::local(root).unwrap(),
        config,
        &root.join("_tooltrail/spill"),
        QueryMetrics::unregistered(),
    )
    .unwrap()
}
