//! The lake's tables as outside engines and object storage see them: DuckDB
//! (`delta_scan`) and the Python `deltalake` package read every row our own
//! SQL reads, and the same commit protocol holds on S3 (`moto` in server
//! mode, which honours `If-None-Match`).

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int16Type, TimestampMicrosecondType};
use chrono::{DateTime, TimeZone, Utc};
use datafusion::prelude::SessionContext;
use serde_json::{Value, json};
use tooltrail_lake::{Commit, Location, Metrics, Partition, Position, Snapshot, Table, tables};
use tooltrail_schemas::lake::{EventBatchBuilder, Source};

fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, hour, minute, 7).unwrap()
}

/// Events with every shape a reader must map: lists empty and full, maps,
/// nulls, and two hours.
fn events(tag: &str, n: usize, time: DateTime<Utc>) -> RecordBatch {
    let mut builder = EventBatchBuilder::new();
    for i in 0..n {
        let mut event = json!({
            "schema_version": 1,
            "event_id": format!("{tag}-{i:04}"),
            "time": (time + chrono::TimeDelta::microseconds(i as i64 * 1_001)).to_rfc3339(),
            "tenant_id": format!("t{}", i % 2),
            "user_id": format!("u{}", i % 5),
            "server": "mail",
            "method": "tools/call",
            "tool": "send_mail",
            "decision": if i % 7 == 0 { "deny" } else { "allow" },
            "status": if i % 7 == 0 { 403 } else { 200 },
        });
        match i % 3 {
            0 => {}
            1 => event["scopes"] = json!([]),
            _ => event["scopes"] = json!(["mail.read", format!("s{i}")]),
        }
        if i % 2 == 0 {
            event["attributes"] = json!({"region": "eu", "n": i.to_string()});
        }
        let line = serde_json::to_vec(&event).unwrap();
        let event = tooltrail_schemas::decode(&line).unwrap();
        builder.append(
            &event,
            time,
            Source::File {
                path: "f",
                line: i as i64,
            },
        );
    }
    builder.finish().unwrap()
}

/// The table's rows through our own SQL, in the readers' script's shape.
async fn our_rows(snapshot: &Snapshot) -> Vec<Value> {
    let ctx = SessionContext::new();
    ctx.register_table("events", snapshot.provider(&ctx.state()).unwrap())
        .unwrap();
    let batches = ctx
        .sql(
            "SELECT event_id, tenant_id, user_id, time, status, scopes, attributes, dt, hour \
             FROM events ORDER BY event_id",
        )
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let mut rows = Vec::new();
    for b in &batches {
        let texts: Vec<_> = [0, 1, 2, 7, 8]
            .map(|c| arrow::compute::cast(b.column(c), &DataType::Utf8).unwrap())
            .into();
        let text = |c: usize, r: usize| {
            let at = [0, 1, 2, 7, 8].iter().position(|x| *x == c).unwrap();
            json!(texts[at].as_string::<i32>().value(r))
        };
        let times = b.column(3).as_primitive::<TimestampMicrosecondType>();
        let status = b.column(4).as_primitive::<Int16Type>();
        let scopes = b.column(5).as_list::<i32>();
        let attributes = b.column(6).as_map();
        for r in 0..b.num_rows() {
            let scopes = (!scopes.is_null(r)).then(|| strings(&scopes.value(r)));
            let attributes = (!attributes.is_null(r)).then(|| {
                let entry = attributes.value(r);
                let keys = strings(entry.column(0));
                let values = strings(entry.column(1));
                keys.into_iter()
                    .zip(values.into_iter().map(Value::from))
                    .collect::<serde_json::Map<_, _>>()
            });
            let hour: i32 = text(8, r).as_str().unwrap().parse().unwrap();
            rows.push(json!([
                text(0, r),
                text(1, r),
                text(2, r),
                times.value(r),
                status.value(r),
                scopes,
                attributes,
                text(7, r),
                hour
            ]));
        }
    }
    rows
}

/// The values of a string array, whichever string type the reader chose.
fn strings(array: &ArrayRef) -> Vec<String> {
    let array = arrow::compute::cast(array, &DataType::Utf8).unwrap();
    let array = array.as_string::<i32>();
    (0..array.len())
        .map(|i| array.value(i).to_owned())
        .collect()
}

/// What DuckDB and Python `deltalake` read from `table_uri`.
fn their_rows(table_uri: &str, env: &[(&str, String)]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rows.json");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/delta_readers.py");
    let status = Command::new("python3")
        .arg(&script)
        .arg(table_uri)
        .arg(&out)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .status()
        .expect("python3 runs");
    assert!(status.success(), "{} failed", script.display());
    serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap()
}

async fn write_two_hours(location: &Location) {
    let mut table = Table::open(location, &tables::EVENTS, 3, Metrics::default())
        .await
        .unwrap();
    for (tag, time, n) in [("a", at(9, 1), 40), ("b", at(10, 59), 25)] {
        let file = table
            .write(Partition::hour(time), events(tag, n, time), Vec::new())
            .await
            .unwrap();
        let commit = Commit::append(vec![file]).with_positions(vec![Position {
            app_id: Position::app_id("g", "audit", 0),
            first: if tag == "a" { 0 } else { 40 },
            last: if tag == "a" { 39 } else { 64 },
        }]);
        table.commit(&commit).await.unwrap();
    }
}

#[tokio::test]
async fn duckdb_and_python_deltalake_read_the_rows_our_sql_reads() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    write_two_hours(&location).await;
    let snapshot = Snapshot::load(&location, &tables::EVENTS)
        .await
        .unwrap()
        .unwrap();
    let ours = our_rows(&snapshot).await;
    assert_eq!(ours.len(), 65);
    let theirs = their_rows(location.table_url("events").as_str(), &[]);
    assert_eq!(theirs["duckdb"], json!(ours), "DuckDB delta_scan");
    assert_eq!(theirs["deltalake"], json!(ours), "Python deltalake");
}

/// `moto` in server mode on a free port, killed on drop.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server (pip install 'moto[server]') runs");
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "moto did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Moto { child, endpoint }
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "testing".into()),
            ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ]
    }

    async fn create_bucket(&self, bucket: &str) {
        let response = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{response:?}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn on_s3_concurrent_writers_commit_everything_and_readers_agree() {
    let moto = Moto::start();
    // The lake takes the usual AWS settings from the environment; this test
    // binary's other test does not touch S3.
    for (key, value) in moto.env() {
        // SAFETY: set before any S3 client exists; no other thread reads
        // these variables concurrently in this test binary.
        unsafe { std::env::set_var(key, value) };
    }
    moto.create_bucket("audit").await;
    let location = Location::parse("s3://audit/tooltrail").unwrap();
    write_two_hours(&location).await;

    // Three writers racing on one table: every commit lands once.
    let mut tasks = Vec::new();
    for w in 0..3 {
        let location = location.clone();
        tasks.push(tokio::spawn(async move {
            let mut table = Table::open(&location, &tables::EVENTS, 3, Metrics::default())
                .await
                .unwrap();
            let mut conflicts = 0;
            for c in 0..5u32 {
                let time = at(11, c);
                let tag = format!("w{w}c{c}");
                let file = table
                    .write(Partition::hour(time), events(&tag, 4, time), Vec::new())
                    .await
                    .unwrap();
                let commit = Commit::append(vec![file]);
                conflicts += table.commit(&commit).await.unwrap().conflicts;
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.unwrap();
    }
    eprintln!("commit conflicts among 3 writers on S3: {conflicts}");

    let snapshot = Snapshot::load(&location, &tables::EVENTS)
        .await
        .unwrap()
        .unwrap();
    let ours = our_rows(&snapshot).await;
    assert_eq!(ours.len(), 65 + 3 * 5 * 4);
    assert_eq!(
        snapshot
            .position(&Position::app_id("g", "audit", 0))
            .await
            .unwrap(),
        Some(64)
    );
    let theirs = their_rows(location.table_url("events").as_str(), &moto.env());
    assert_eq!(theirs["duckdb"], json!(ours), "DuckDB delta_scan on S3");
    assert_eq!(theirs["deltalake"], json!(ours), "Python deltalake on S3");
}
