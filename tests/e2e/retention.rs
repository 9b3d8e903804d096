//! Retention and legal hold: `tooltrail retention apply` deletes what is due and keeps what is held.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::support::Deadline;
use crate::support::lake::lake_rows;
use crate::support::process::{Tooltrail, path_str, run_tooltrail_env};

const LIMIT: Duration = Duration::from_secs(120);

fn sha256(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// NDJSON events: `n` per tenant, all at `time`.
fn events(time: DateTime<Utc>, tenants: &[(&str, usize)]) -> String {
    let mut body = String::new();
    for (tenant, n) in tenants {
        for i in 0..*n {
            let event = json!({
                "schema_version": 1, "event_id": format!("{tenant}-{}-{i}", time.timestamp()),
                "time": time.to_rfc3339(), "tenant_id": tenant, "user_id": format!("u{}", i % 3),
                "server": "github", "method": "tools/call", "tool": "search",
                "decision": "allow", "status": 200,
            });
            body.push_str(&format!("{event}\n"));
        }
    }
    body
}

/// `events/dt=…/hour=…` of `time`.
fn hour_dir(time: DateTime<Utc>) -> String {
    time.format("events/dt=%Y-%m-%d/hour=%H").to_string()
}

/// Imports `body` into the lake at `lake` with the real binary.
async fn import(dir: &Path, lake: &Path, name: &str, body: &str) -> Result<()> {
    let file = dir.join(name);
    std::fs::write(&file, body)?;
    run_tooltrail_env(
        &[
            "ingest",
            "--file",
            path_str(&file)?,
            "--lake",
            path_str(lake)?,
        ],
        &[],
        LIMIT,
    )
    .await?;
    Ok(())
}

async fn tooltrail(config: &Path, args: &[&str]) -> Result<String> {
    let mut all = vec!["--config", path_str(config)?];
    all.extend_from_slice(args);
    let output = run_tooltrail_env(&all, &[], LIMIT).await?;
    Ok(String::from_utf8(output.stdout)?)
}

/// The line of `out` that starts with `action` and mentions `partition`.
fn line<'a>(out: &'a str, action: &str, partition: &str) -> Option<&'a str> {
    out.lines()
        .find(|l| l.starts_with(action) && l.contains(partition))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_prints_the_plan_and_apply_deletes_exactly_the_old_partitions() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let lake = dir.path().join("lake");
    let now = Utc::now();
    let old = now - chrono::Duration::days(200);
    let held = now - chrono::Duration::days(150);
    let young = now - chrono::Duration::days(2);
    import(
        dir.path(),
        &lake,
        "old.ndjson",
        &events(old, &[("acme", 5), ("globex", 3)]),
    )
    .await?;
    import(
        dir.path(),
        &lake,
        "held.ndjson",
        &events(held, &[("initech", 4)]),
    )
    .await?;
    import(
        dir.path(),
        &lake,
        "young.ndjson",
        &events(young, &[("acme", 2)]),
    )
    .await?;
    let config = dir.path().join("tooltrail.toml");
    std::fs::write(
        &config,
        format!(
            "[ingest]\nlake = \"{}\"\n\
             [retention]\nevents = \"100d\"\n\
             [[retention.legal_holds]]\nid = \"case-7\"\ntenant = \"initech\"\nreason = \"litigation\"\n",
            path_str(&lake)?
        ),
    )?;
    assert_eq!(lake_rows(&lake.join("events"))?, 14);

    let dry = tooltrail(&config, &["retention", "apply", "--dry-run"]).await?;
    let old_key = hour_dir(old).trim_start_matches("events/").to_owned();
    let held_key = hour_dir(held).trim_start_matches("events/").to_owned();
    let delete =
        line(&dry, "delete", &old_key).with_context(|| format!("no delete line:\n{dry}"))?;
    ensure!(delete.contains("acme 5, globex 3"), "{delete}");
    let keep = line(&dry, "keep", &held_key).with_context(|| format!("no keep line:\n{dry}"))?;
    ensure!(
        keep.contains("initech: legal hold case-7 on tenant initech (all time): litigation"),
        "{keep}"
    );
    ensure!(
        line(&dry, "delete", &hour_dir(young)[7..]).is_none(),
        "{dry}"
    );
    ensure!(
        dry.contains("dry run: would delete 1 partition(s) (8 rows"),
        "{dry}"
    );
    assert_eq!(
        lake_rows(&lake.join("events"))?,
        14,
        "a dry run changes nothing"
    );

    let applied = tooltrail(&config, &["retention", "apply"]).await?;
    ensure!(
        applied.contains("deleted 1 partition(s) (8 rows"),
        "{applied}"
    );
    ensure!(line(&applied, "keep", &held_key).is_some(), "{applied}");
    assert_eq!(lake_rows(&lake.join("events"))?, 6);
    // The deleted hour's file stays in storage, for readers of older versions, until vacuum.
    ensure!(
        lake.join(hour_dir(old)).exists(),
        "removed before its grace period"
    );
    let vacuumed = tooltrail(&config, &["retention", "vacuum"]).await?;
    ensure!(vacuumed.contains("events: deleted 0 file(s)"), "{vacuumed}");
    let later = (now + chrono::Duration::days(8)).to_rfc3339();
    let vacuumed = tooltrail(&config, &["retention", "vacuum", "--now", &later]).await?;
    ensure!(vacuumed.contains("events: deleted 1 file(s)"), "{vacuumed}");
    ensure!(
        std::fs::read_dir(lake.join(hour_dir(old)))?
            .next()
            .is_none(),
        "the old hour's file outlived vacuum"
    );
    assert_eq!(lake_rows(&lake.join("events"))?, 6);

    // Applying again finds nothing more to delete.
    let again = tooltrail(&config, &["retention", "apply"]).await?;
    ensure!(again.contains("deleted 0 partition(s)"), "{again}");
    Ok(())
}

async fn call(
    up: &Tooltrail,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<(u16, Value)> {
    let mut request = reqwest::Client::new().request(method, up.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.context("a JSON body")?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_set_through_the_admin_api_keeps_that_tenant_at_the_next_apply() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let lake = data.join("lake");
    let old = Utc::now() - chrono::Duration::days(200);
    import(
        dir.path(),
        &lake,
        "old.ndjson",
        &events(old, &[("acme", 6), ("globex", 4)]),
    )
    .await?;
    let config = dir.path().join("tooltrail.toml");
    std::fs::write(
        &config,
        format!(
            "[retention]\nevents = \"100d\"\nenabled = false\n\
             [[retention.legal_holds]]\nid = \"cfg-hold\"\ntenant = \"initech\"\nreason = \"audit\"\n\
             [[query.tokens]]\nname = \"ana\"\nsha256 = \"{}\"\nrole = \"analyst\"\ntenants = [\"*\"]\n\
             [[query.tokens]]\nname = \"root\"\nsha256 = \"{}\"\nrole = \"admin\"\ntenants = [\"*\"]\n",
            sha256("tok-analyst"),
            sha256("tok-admin")
        ),
    )?;
    let up = Tooltrail::up_with_config(&config, &data, &["--warm-from-lake", "0s"]).await?;
    let hold = json!({"tenant": "acme", "reason": "subpoena 42"});
    let post = reqwest::Method::POST;

    let bad_time = json!({"tenant": "acme", "from": "not a time", "reason": "x"});
    for (token, body, status, code) in [
        (None, &hold, 401, "unauthorized"),
        (Some("tok-analyst"), &hold, 403, "forbidden"),
        (Some("tok-admin"), &bad_time, 400, "invalid_hold"),
    ] {
        let (got, reply) = call(
            &up,
            post.clone(),
            "/v1/legal-holds",
            token,
            Some(body.clone()),
        )
        .await?;
        assert_eq!(
            (got, reply["error"].as_str()),
            (status, Some(code)),
            "{reply}"
        );
    }
    let (status, created) =
        call(&up, post, "/v1/legal-holds", Some("tok-admin"), Some(hold)).await?;
    assert_eq!(status, 201, "{created}");
    let id = created["id"]
        .as_str()
        .context("the new hold's id")?
        .to_owned();
    assert_eq!(created["created_by"], json!("root"));

    let (status, listed) = call(
        &up,
        reqwest::Method::GET,
        "/v1/legal-holds",
        Some("tok-admin"),
        None,
    )
    .await?;
    assert_eq!(status, 200);
    let ids: Vec<&str> = listed["holds"]
        .as_array()
        .context("holds")?
        .iter()
        .filter_map(|h| h["id"].as_str())
        .collect();
    assert_eq!(ids, ["cfg-hold", id.as_str()], "{listed}");

    let holds = tooltrail(&config, &["retention", "holds", "--lake", path_str(&lake)?]).await?;
    ensure!(
        holds.contains("cfg-hold") && holds.contains(&id) && holds.contains("root"),
        "{holds}"
    );

    // Another process honours the hold `up` stored.
    let applied = tooltrail(&config, &["retention", "apply", "--lake", path_str(&lake)?]).await?;
    let key = hour_dir(old).trim_start_matches("events/").to_owned();
    let rewrite =
        line(&applied, "rewrite", &key).with_context(|| format!("no rewrite:\n{applied}"))?;
    ensure!(
        rewrite.contains("removes globex 4; keeps 6 rows"),
        "{rewrite}"
    );
    let keep = line(&applied, "keep", &key).with_context(|| format!("no keep:\n{applied}"))?;
    ensure!(
        keep.contains(&format!(
            "acme: legal hold {id} on tenant acme (all time): subpoena 42"
        )),
        "{keep}"
    );
    assert_eq!(lake_rows(&lake.join("events"))?, 6);

    let delete = reqwest::Method::DELETE;
    let (status, body) = call(
        &up,
        delete.clone(),
        "/v1/legal-holds/cfg-hold",
        Some("tok-admin"),
        None,
    )
    .await?;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("hold_in_config")),
        "{body}"
    );
    let (status, body) = call(
        &up,
        delete.clone(),
        &format!("/v1/legal-holds/{id}"),
        Some("tok-admin"),
        None,
    )
    .await?;
    assert_eq!(
        (status, body["removed"]["id"].as_str()),
        (200, Some(id.as_str())),
        "{body}"
    );
    let (status, _) = call(
        &up,
        delete,
        &format!("/v1/legal-holds/{id}"),
        Some("tok-admin"),
        None,
    )
    .await?;
    assert_eq!(status, 404);
    ensure!(up.stderr().contains("legal hold set"), "{}", up.stderr());

    // Without the hold, the next apply deletes the rest.
    let applied = tooltrail(&config, &["retention", "apply", "--lake", path_str(&lake)?]).await?;
    ensure!(line(&applied, "delete", &key).is_some(), "{applied}");
    assert_eq!(lake_rows(&lake.join("events"))?, 0);
    up.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_applies_retention_on_its_interval() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("data");
    let lake = data.join("lake");
    let old = Utc::now() - chrono::Duration::days(200);
    import(
        dir.path(),
        &lake,
        "old.ndjson",
        &events(old, &[("acme", 3)]),
    )
    .await?;
    let config = dir.path().join("tooltrail.toml");
    // No grace: the run after the one that removes the old hour's file deletes it.
    std::fs::write(
        &config,
        "[retention]\nevents = \"100d\"\ninterval = \"1s\"\nvacuum_grace = \"0s\"\n",
    )?;
    let up = Tooltrail::up_with_config(&config, &data, &["--warm-from-lake", "0s"]).await?;
    let deadline = Deadline::after(Duration::from_secs(60));
    let old_hour = lake.join(hour_dir(old));
    while lake_rows(&lake.join("events"))? > 0
        || std::fs::read_dir(&old_hour).is_ok_and(|mut files| files.next().is_some())
    {
        deadline.remaining("up to delete the old partition and vacuum its file")?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logged = Deadline::after(Duration::from_secs(30));
    while !up.stderr().contains("retention applied") {
        logged.remaining("the retention summary in the log")?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Operators see it in the metrics.
    let metrics = up.get_text("/metrics").await?;
    for line in [
        "tooltrail_retention_partitions_total{table=\"events\"} 1",
        "tooltrail_retention_rows_deleted_total{table=\"events\"} 3",
    ] {
        assert!(metrics.contains(line), "{line} not in\n{metrics}");
    }
    assert!(
        metrics.contains("tooltrail_retention_runs_total{outcome=\"ok\"}"),
        "{metrics}"
    );
    up.stop().await
}
