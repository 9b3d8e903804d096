//! The lake in object storage: `tooltrail up --lake s3://…` against `moto` in server mode, with
//! nothing but the usual AWS environment. Events go in over HTTP, a kill -9 loses no
//! acknowledged event and doubles none, SQL reads them back from the bucket, and the digest
//! chain written into the bucket verifies.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::support::Deadline;
use crate::support::process::{Tooltrail, path_str, run_tooltrail_env};

const LIMIT: Duration = Duration::from_secs(120);
const LAKE: &str = "s3://audit/tooltrail";

/// `moto` in server mode on a free port; killed on drop.
struct Moto {
    _child: Child,
    endpoint: String,
}

impl Moto {
    async fn start() -> Result<Moto> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("moto_server runs (pip install 'moto[server]')")?;
        let deadline = Deadline::after(Duration::from_secs(30));
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            deadline.remaining("moto to listen")?;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Moto {
            _child: child,
            endpoint: format!("http://127.0.0.1:{port}"),
        })
    }

    /// What any AWS client of this endpoint is given; the lake takes nothing else.
    fn env(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
        ]
    }

    async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let response = reqwest::Client::new()
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await?;
        ensure!(response.status().is_success(), "{response:?}");
        Ok(())
    }

    /// The keys under `prefix` in `bucket` (ListObjectsV2, first page).
    async fn keys(&self, bucket: &str, prefix: &str) -> Result<Vec<String>> {
        let body = reqwest::Client::new()
            .get(format!(
                "{}/{bucket}?list-type=2&prefix={prefix}",
                self.endpoint
            ))
            .send()
            .await?
            .text()
            .await?;
        Ok(body
            .split("<Key>")
            .skip(1)
            .filter_map(|rest| rest.split("</Key>").next())
            .map(str::to_owned)
            .collect())
    }
}

fn batch(name: &str, n: usize) -> (Vec<String>, String) {
    let now = chrono::Utc::now().to_rfc3339();
    let ids: Vec<String> = (0..n).map(|i| format!("{name}-{i}")).collect();
    let body = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let event = json!({
                "schema_version": 1, "event_id": id, "time": now, "tenant_id": "acme",
                "user_id": format!("u{}", i % 4), "server": "github", "method": "tools/call",
                "tool": "create_issue", "decision": "allow", "status": 200
            });
            format!("{event}\n")
        })
        .collect();
    (ids, body)
}

async fn up(data: &std::path::Path, env: &[(&str, &str)]) -> Result<Tooltrail> {
    let args = [
        "up",
        "--data-dir",
        path_str(data)?,
        "--listen",
        "127.0.0.1:0",
        "--lake",
        LAKE,
    ];
    Tooltrail::start(&args, data, env).await
}

async fn tooltrail(args: &[&str], env: &[(&str, &str)]) -> Result<String> {
    let out = run_tooltrail_env(args, env, LIMIT).await?;
    Ok(String::from_utf8(out.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_on_s3_keeps_each_acknowledged_event_once_through_a_kill_9_and_its_digests_verify()
-> Result<()> {
    let moto = Moto::start().await?;
    moto.create_bucket("audit").await?;
    let env = moto.env();
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");

    let first = up(&data, &env).await?;
    let mut sent = Vec::new();
    for name in ["b1", "b2", "b3"] {
        let (ids, body) = batch(name, 40);
        let (status, reply) = first
            .post_events(body, &[("idempotency-key", name)])
            .await?;
        ensure!(status == 200 && reply["accepted"] == 40, "{status} {reply}");
        sent.extend(ids);
    }
    first.kill_9().await?;

    // Restarted on the same bucket; the gateway retries the batch it was unsure of.
    let second = up(&data, &env).await?;
    let (_, body) = batch("b3", 40);
    let (status, reply) = second
        .post_events(body, &[("idempotency-key", "b3")])
        .await?;
    ensure!(status == 200, "{status} {reply}");
    ensure!(
        reply["duplicate"] == true && reply["accepted"] == 0,
        "{reply}"
    );
    let (ids, body) = batch("b4", 10);
    let (status, reply) = second.post_events(body, &[]).await?;
    ensure!(status == 200 && reply["accepted"] == 10, "{status} {reply}");
    sent.extend(ids);
    second.stop().await?;

    let keys = moto.keys("audit", "tooltrail/events/_delta_log/").await?;
    ensure!(!keys.is_empty(), "no Delta log in the bucket");
    ensure!(
        !data.join("lake").exists(),
        "the lake went to the local disk"
    );

    let csv = tooltrail(
        &[
            "sql",
            "--lake",
            LAKE,
            "--format",
            "csv",
            "SELECT event_id, count(*) AS n FROM events GROUP BY event_id ORDER BY event_id",
        ],
        &env,
    )
    .await?;
    let mut stored: BTreeMap<String, u64> = BTreeMap::new();
    for line in csv.lines().skip(1) {
        let (id, n) = line.split_once(',').context("id,n")?;
        stored.insert(id.to_owned(), n.parse()?);
    }
    sent.sort();
    ensure!(
        stored.keys().cloned().collect::<Vec<_>>() == sent,
        "{} stored, {} acknowledged",
        stored.len(),
        sent.len()
    );
    let doubled: Vec<_> = stored.iter().filter(|(_, n)| **n > 1).collect();
    ensure!(doubled.is_empty(), "stored twice: {doubled:?}");

    let key = data.join("signing-key.pem");
    let key = path_str(&key)?;
    let out = tooltrail(&["lake", "digest", "--lake", LAKE, "--key", key], &env).await?;
    ensure!(out.contains("wrote digest"), "{out}");
    let public = run_tooltrail_env(&["keys", "public", "--key", key], &[], LIMIT).await?;
    let public_key = dir.path().join("tooltrail.pub.pem");
    std::fs::write(&public_key, &public.stdout)?;
    let report = tooltrail(
        &[
            "lake",
            "verify",
            "--lake",
            LAKE,
            "--public-key",
            path_str(&public_key)?,
            "--format",
            "json",
        ],
        &env,
    )
    .await?;
    let report: Value = serde_json::from_str(&report)?;
    ensure!(
        report["findings"].as_array().is_some_and(Vec::is_empty),
        "{report:#}"
    );
    Ok(())
}
