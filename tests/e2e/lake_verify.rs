//! The signed digest chain: `tooltrail lake digest`/`verify` catch each kind of tampering.
//!
//! A lake written by `up` (which digests at start), digested again, compacted and digested once
//! more verifies with zero findings, both with `tooltrail lake verify` and with the outside
//! auditor's script (`scripts/verify_lake_digests.py`: python3, openssl, sha256sum, no tooltrail
//! code) given the key from `tooltrail keys public`. A modified and a deleted file are then named
//! by both, and `lake verify` exits 1.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use serde_json::{Value, json};

use crate::support::Deadline;
use crate::support::process::{Tooltrail, path_str};
use crate::support::run_tooltrail;

const LIMIT: Duration = Duration::from_secs(120);

fn events(prefix: &str, n: usize, time: chrono::DateTime<chrono::Utc>) -> String {
    (0..n)
        .map(|i| {
            let event = json!({
                "schema_version": 1, "event_id": format!("{prefix}-{i}"), "time": time.to_rfc3339(),
                "tenant_id": "acme", "user_id": format!("u{}", i % 3), "server": "github",
                "method": "tools/call", "tool": "create_issue", "decision": "allow", "status": 200
            });
            format!("{event}\n")
        })
        .collect()
}

/// Runs the binary, or a program, to completion: exit code, stdout, stderr.
async fn run(program: &str, args: &[&str]) -> Result<(i32, String, String)> {
    let output = tokio::time::timeout(
        LIMIT,
        tokio::process::Command::new(program)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .with_context(|| format!("`{program} {}` did not finish", args.join(" ")))??;
    Ok((
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    ))
}

async fn lake_verify(lake: &Path, public_key: &Path) -> Result<(i32, String, String)> {
    run(
        env!("CARGO_BIN_EXE_tooltrail"),
        &[
            "lake",
            "verify",
            "--lake",
            path_str(lake)?,
            "--public-key",
            path_str(public_key)?,
        ],
    )
    .await
}

async fn auditor_script(lake: &Path, public_key: &Path) -> Result<(i32, String, String)> {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/verify_lake_digests.py"
    );
    run("python3", &[script, path_str(lake)?, path_str(public_key)?]).await
}

async fn wait_for(path: &Path, what: &str) -> Result<()> {
    let deadline = Deadline::after(Duration::from_secs(30));
    while !path.exists() {
        tokio::time::sleep(deadline.remaining(what)?.min(Duration::from_millis(50))).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_digested_compacted_lake_verifies_clean_and_tampering_is_named_by_tooltrail_and_the_auditor_script()
-> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let lake = data.join("lake");
    // The test compacts by command, at a point of its choosing: `up`'s own compaction could merge
    // the first transactions before the others land.
    let up = Tooltrail::up_in(&data, &[("TOOLTRAIL__COMPACTION__ENABLED", "false")]).await?;
    // `up` digests at start.
    wait_for(
        &lake.join("_tooltrail/digest/00000000000000000001.json"),
        "up's first digest",
    )
    .await?;
    // Three transactions in an hour that is over (compaction merges them), one in this hour.
    let old = chrono::Utc::now() - chrono::Duration::hours(3);
    for batch in 0..3 {
        let (status, reply) = up
            .post_events(events(&format!("old{batch}"), 20, old), &[])
            .await?;
        ensure!(status == 200 && reply["accepted"] == 20, "{status} {reply}");
    }
    let (status, reply) = up
        .post_events(events("now", 5, chrono::Utc::now()), &[])
        .await?;
    ensure!(status == 200 && reply["accepted"] == 5, "{status} {reply}");
    up.stop().await?;

    let key = data.join("signing-key.pem");
    let (lake_s, key_s) = (path_str(&lake)?, path_str(&key)?);
    let digest = ["lake", "digest", "--lake", lake_s, "--key", key_s];
    let out = run_tooltrail(&digest, LIMIT).await?;
    let out = String::from_utf8_lossy(&out.stdout);
    ensure!(out.contains("wrote digest 2 "), "{out}");
    let out = run_tooltrail(&["compact", "--lake", lake_s], LIMIT).await?;
    let out = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.contains("events: compacted 1 partitions: 3 files into 1"),
        "{out}"
    );
    let out = run_tooltrail(&digest, LIMIT).await?;
    let out = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.contains("wrote digest 3 ") && out.contains("1 file added, 3 removed"),
        "{out}"
    );

    let public = run_tooltrail(&["keys", "public", "--key", key_s], LIMIT).await?;
    let public_key = dir.path().join("tooltrail.pub.pem");
    std::fs::write(&public_key, &public.stdout)?;

    let (code, out, err) = lake_verify(&lake, &public_key).await?;
    ensure!(code == 0, "lake verify exited {code}:\n{out}\n{err}");
    ensure!(
        out.contains("3 digests") && out.contains(", 0 pending, 0 findings"),
        "{out}"
    );
    let (code, out, err) = auditor_script(&lake, &public_key).await?;
    ensure!(code == 0, "the auditor script exited {code}:\n{out}\n{err}");
    ensure!(
        out.contains("3 digests") && out.contains(" 0 findings"),
        "{out}"
    );

    // The JSON report says the same, in full.
    let json_report = run_tooltrail(
        &[
            "lake",
            "verify",
            "--lake",
            lake_s,
            "--public-key",
            path_str(&public_key)?,
            "--format",
            "json",
        ],
        LIMIT,
    )
    .await?;
    let report: Value = serde_json::from_slice(&json_report.stdout)?;
    // Every data file the chain lists and storage still holds: the live ones and the three
    // compaction removed (kept until vacuum), of every table (the events, and whatever alerts
    // `up` raised).
    let mut stored = 0;
    for table in ["events", "quarantine", "alerts", "query_audit"] {
        let mut dirs = vec![lake.join(table)];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).into_iter().flatten() {
                let path = entry?.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.extension().is_some_and(|e| e == "parquet")
                    && !path.to_string_lossy().contains("_delta_log")
                {
                    stored += 1;
                }
            }
        }
    }
    ensure!(
        report["findings"] == json!([]) && report["files_checked"] == stored,
        "{report}; storage holds {stored} data files"
    );

    // Tamper: flip a byte of the compacted file, delete this hour's file.
    let files = crate::support::lake::parquet_files(&lake.join("events"))?;
    ensure!(files.len() == 2, "{files:?}");
    let old_hour = format!("hour={}", old.format("%H"));
    let (compacted, current): (Vec<_>, Vec<_>) = files
        .iter()
        .partition(|p| p.to_string_lossy().contains(&old_hour));
    let (compacted, current) = (compacted[0], current[0]);
    let mut bytes = std::fs::read(compacted)?;
    bytes[64] ^= 0xff;
    std::fs::write(compacted, bytes)?;
    std::fs::remove_file(current)?;
    let rel =
        |p: &Path| -> Result<String> { Ok(p.strip_prefix(&lake)?.to_string_lossy().into_owned()) };
    let (compacted, current) = (rel(compacted)?, rel(current)?);

    let (code, out, err) = lake_verify(&lake, &public_key).await?;
    ensure!(code == 1, "lake verify exited {code}:\n{out}\n{err}");
    ensure!(
        out.contains(&format!("modified file {compacted}:"))
            && out.contains(&format!("deleted file {current}:"))
            && out.contains(", 2 findings"),
        "{out}"
    );
    ensure!(err.contains("failed verification: 2 findings"), "{err}");
    let (code, out, _) = auditor_script(&lake, &public_key).await?;
    ensure!(code == 1, "the auditor script exited {code}:\n{out}");
    ensure!(
        out.contains(&format!("modified: {compacted}"))
            && out.contains(&format!("deleted: {current}"))
            && out.contains(" 2 findings"),
        "{out}"
    );
    Ok(())
}
