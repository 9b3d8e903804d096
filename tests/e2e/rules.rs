//! Sigma rules end to end: `rules test` on the starter pack and on a broken
//! case, `up` alerting on a rule and picking up an edited rule directory,
//! and hunting over the lake from the command line and the API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::Deadline;
use crate::support::lake::alert_records;
use crate::support::process::{Tooltrail, path_str, run_tooltrail_env};

fn starter_pack() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("rules")
}

async fn tooltrail(args: &[&str]) -> Result<std::process::Output> {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tooltrail"));
    command.args(args).kill_on_drop(true);
    Ok(tokio::time::timeout(Duration::from_secs(120), command.output()).await??)
}

/// A rule matching an AWS access key id in a message's text.
const KEY_RULE: &str = r#"title: AWS key in a call
id: 0b6f4b8e-3c1e-4a57-9d0a-7e2f1a9c5d11
name: e2e-aws-key
logsource: {product: mcp, category: tool_call}
detection:
  sel:
    arguments.text|contains: 'AKIA'
  condition: sel
level: high
rsigma.exemplars:
  - name: a key
    expect: match
    event: {tool: send, arguments: {text: AKIAIOSFODNN7EXAMPLE}}
  - name: no key
    expect: no-match
    event: {tool: send, arguments: {text: hello}}
"#;

fn key_rule() -> String {
    KEY_RULE.to_owned()
}

#[tokio::test]
async fn the_starter_pack_passes_its_tests_and_a_failing_case_fails_the_run_naming_it() -> Result<()>
{
    let pack = starter_pack();
    let out = tooltrail(&["rules", "test", path_str(&pack)?]).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout.lines().last().unwrap_or_default();
    let rules: usize = summary
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no rule count in {summary:?}"))?;
    ensure!(rules >= 15, "{summary}");
    ensure!(
        summary.contains(" 0 failed; 0 rules refused, 0 untested"),
        "{summary}"
    );

    let out = tooltrail(&["rules", "lint", path_str(&pack)?]).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.success(), "{stdout}");
    ensure!(
        stdout.trim_end().ends_with("0 errors, 0 warnings"),
        "{stdout}"
    );

    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("key.yml"),
        key_rule().replace("text: hello", "text: AKIAIOSFODNN7EXAMPLE"),
    )?;
    std::fs::write(
        dir.path().join("bad.yml"),
        "title: bad\nid: x\nlogsource: {product: windows}\ndetection:\n  s: {a: b}\n  condition: s\n",
    )?;
    let out = tooltrail(&["rules", "test", path_str(dir.path())?]).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(out.status.code() == Some(1), "{stdout}");
    ensure!(
        stdout.contains(
            "FAIL 0b6f4b8e-3c1e-4a57-9d0a-7e2f1a9c5d11 no key [no-match]: the rule matched"
        ),
        "{stdout}"
    );
    ensure!(
        stdout.contains("bad.yml:1: rule x: logsource is"),
        "{stdout}"
    );
    Ok(())
}

/// `up` with `detect.rules_dir`: a call with a key raises `sigma:<id>`; a
/// rule file added while it runs is picked up, a broken one refused.
#[tokio::test]
async fn up_alerts_on_a_rule_and_picks_up_an_edited_rule_directory() -> Result<()> {
    let rules = tempfile::tempdir()?;
    std::fs::write(rules.path().join("key.yml"), key_rule())?;
    let up = Tooltrail::up(&[("TOOLTRAIL__DETECT__RULES_DIR", path_str(rules.path())?)]).await?;
    let now = chrono::Utc::now();
    let call = |id: &str, tool: &str, text: &str| {
        json!({
            "schema_version": 1, "event_id": id, "time": now.to_rfc3339(),
            "tenant_id": "acme", "user_id": "alice", "server": "slack", "method": "tools/call",
            "tool": tool, "decision": "allow", "status": 200, "arguments": {"text": text}
        })
        .to_string()
    };
    let (status, reply) = up
        .post_events(
            format!("{}\n", call("k-1", "send", "key AKIAIOSFODNN7EXAMPLE")),
            &[],
        )
        .await?;
    ensure!(status == 200, "{reply}");
    let sigma = |detector: &str| -> Result<Option<Value>> {
        Ok(alert_records(&up.lake())?
            .into_iter()
            .find(|a| a["detector"] == detector))
    };
    let deadline = Deadline::after(Duration::from_secs(30));
    let alert = loop {
        if let Some(alert) = sigma("sigma:0b6f4b8e-3c1e-4a57-9d0a-7e2f1a9c5d11")? {
            break alert;
        }
        deadline.remaining("the rule's alert in the lake")?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    ensure!(alert["severity"] == "high", "{alert}");
    ensure!(alert["evidence"]["event_ids"] == json!(["k-1"]), "{alert}");
    ensure!(
        !alert.to_string().contains("AKIAIOSFODNN7EXAMPLE"),
        "the key leaked: {alert}"
    );

    // A new rule and a broken file: the reload logs both, then the new rule runs.
    let drop_rule = key_rule()
        .replace(
            "0b6f4b8e-3c1e-4a57-9d0a-7e2f1a9c5d11",
            "9d2e7c41-8a0b-4f3e-b6d5-1c9a7e3f2b08",
        )
        .replace("e2e-aws-key", "e2e-drop")
        .replace("arguments.text|contains: 'AKIA'", "tool: drop_database");
    std::fs::write(rules.path().join("drop.yml"), drop_rule)?;
    std::fs::write(
        rules.path().join("broken.yml"),
        "title: broken\nid: b\ndetection: [\n",
    )?;
    let deadline = Deadline::after(Duration::from_secs(30));
    while !up.stderr().contains("rule files changed")
        || up.stderr().matches("sigma rules loaded").count() < 2
    {
        deadline.remaining("the reload")?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(up.stderr().contains("broken.yml"), "{}", up.stderr());
    let (status, reply) = up
        .post_events(format!("{}\n", call("d-1", "drop_database", "prod")), &[])
        .await?;
    ensure!(status == 200, "{reply}");
    let deadline = Deadline::after(Duration::from_secs(30));
    while sigma("sigma:9d2e7c41-8a0b-4f3e-b6d5-1c9a7e3f2b08")?.is_none() {
        deadline.remaining("the new rule's alert")?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    up.stop().await?;
    Ok(())
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// Hunting finds what a rule would have raised over history, for the
/// tenants the caller may read: the command line as the operator (or one
/// `--tenant`), the API as the token.
#[tokio::test]
async fn a_hunt_finds_past_matches_within_the_callers_tenants() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let rules = dir.path().join("rules");
    std::fs::create_dir_all(&rules)?;
    std::fs::write(rules.join("key.yml"), key_rule())?;
    let config = dir.path().join("tooltrail.toml");
    std::fs::write(
        &config,
        format!(
            "[detect]\nrules_dir = \"{}\"\n[query]\n\
             [[query.tokens]]\nname = \"ana\"\nsha256 = \"{}\"\nrole = \"analyst\"\ntenants = [\"acme\"]\n",
            path_str(&rules)?,
            sha256("tok-acme"),
        ),
    )?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let up = Tooltrail::up_with_config(&config, &data, &["--warm-from-lake", "0s"]).await?;
    let mut body = String::new();
    for (i, tenant) in ["acme", "globex", "acme"].iter().enumerate() {
        let text = if i == 2 {
            "nothing here"
        } else {
            "AKIAIOSFODNN7EXAMPLE"
        };
        body.push_str(
            &json!({
                "schema_version": 1, "event_id": format!("h-{i}"), "time": format!("2026-11-0{}T10:00:00Z", i + 1),
                "tenant_id": tenant, "user_id": "bob", "server": "slack", "method": "tools/call",
                "tool": "send", "decision": "allow", "status": 200, "arguments": {"text": text}
            })
            .to_string(),
        );
        body.push('\n');
    }
    let (status, reply) = up.post_events(body, &[]).await?;
    ensure!(status == 200, "{reply}");

    let client = reqwest::Client::new();
    let hunt = |body: Value| {
        client
            .post(up.url("/v1/rules/hunt"))
            .bearer_auth("tok-acme")
            .json(&body)
            .send()
    };
    let reply =
        hunt(json!({"rules": ["e2e-aws-key"], "from": "2026-11-01", "to": "2026-12-01"})).await?;
    ensure!(reply.status() == 200, "{}", reply.text().await?);
    let found: Value = reply.json().await?;
    let alerts = found["alerts"].as_array().context("alerts")?;
    ensure!(alerts.len() == 1, "{found}");
    ensure!(
        alerts[0]["tenant_id"] == "acme" && alerts[0]["evidence"]["event_ids"] == json!(["h-0"]),
        "{found}"
    );
    let reply = hunt(json!({"rules": ["nope"], "from": "2026-11-01", "to": "2026-12-01"})).await?;
    ensure!(reply.status() == 400, "{}", reply.status());
    let error: Value = reply.json().await?;
    ensure!(
        error["error"] == "invalid_hunt"
            && error["message"]
                .as_str()
                .unwrap_or_default()
                .contains("nope"),
        "{error}"
    );
    let lake = up.lake();
    up.stop().await?;

    // The operator sees both tenants; `--tenant` narrows; nothing is raised.
    let hunt_cli = |extra: &[&str]| {
        let mut args = vec![
            "rules",
            "hunt",
            "--lake",
            path_str(&lake).expect("utf-8"),
            "--rules-dir",
            path_str(&rules).expect("utf-8"),
            "--from",
            "2026-11-01",
            "--to",
            "2026-12-01",
        ];
        args.extend_from_slice(extra);
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let alerts_before = alert_records(&lake)?.len();
    for (extra, tenants) in [
        (vec![], vec!["acme", "globex"]),
        (vec!["--tenant", "globex"], vec!["globex"]),
    ] {
        let args = hunt_cli(&extra);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_tooltrail_env(&args, &[], Duration::from_secs(60)).await?;
        let mut found: Vec<String> = String::from_utf8(out.stdout)?
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l)
                    .map(|a| a["tenant_id"].as_str().unwrap_or_default().to_owned())
            })
            .collect::<Result<_, _>>()?;
        found.sort();
        ensure!(found == tenants, "{extra:?}: {found:?}");
    }
    ensure!(
        alert_records(&lake)?.len() == alerts_before,
        "a hunt without --raise raised alerts"
    );

    // A starter-pack rule that searches every string with a regular
    // expression, narrowed by the literals its matches hold.
    let pack = starter_pack();
    let out = run_tooltrail_env(
        &[
            "rules",
            "hunt",
            "--lake",
            path_str(&lake)?,
            "--rules-dir",
            path_str(&pack)?,
            "--from",
            "2026-11-01",
            "--to",
            "2026-12-01",
            "mcp-aws-access-key-in-arguments",
        ],
        &[],
        Duration::from_secs(60),
    )
    .await?;
    let found: Vec<Value> = String::from_utf8(out.stdout)?
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    ensure!(found.len() == 2, "{found:#?}");
    let stderr = String::from_utf8(out.stderr)?;
    ensure!(
        stderr.contains("2 events replayed"),
        "the prefilter let more through: {stderr}"
    );
    Ok(())
}
