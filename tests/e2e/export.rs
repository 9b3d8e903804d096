//! Signed compliance exports: `POST /v1/exports` on `tooltrail up`, `tooltrail export` on a
//! lake, and checking them with `tooltrail export verify` and the outside auditor's script.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use arrow::array::{Array, RecordBatch, StringArray};
use serde_json::{Value, json};

use crate::support::Deadline;
use crate::support::process::{Tooltrail, path_str, run_tooltrail_env};

const ACME: usize = 150;
const GLOBEX: usize = 50;

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Tenant events: every 5th denied with 403, tools alternating search/fetch.
fn events(tenant: &str, n: usize) -> String {
    let start = chrono::Utc::now() - chrono::Duration::minutes(30);
    let mut body = String::new();
    for i in 0..n {
        let denied = i % 5 == 0;
        body.push_str(
            &json!({
                "schema_version": 1, "event_id": format!("{tenant}-{i}"),
                "time": (start + chrono::Duration::milliseconds(i as i64)).to_rfc3339(),
                "tenant_id": tenant, "user_id": format!("u{}", i % 4), "server": "github",
                "method": "tools/call", "tool": if i % 2 == 0 { "search" } else { "fetch" },
                "decision": if denied { "deny" } else { "allow" },
                "status": if denied { 403 } else { 200 },
                "scopes": ["repo:read"], "attributes": {"k": "v, with a comma"},
                "arguments": {"q": format!("needle {i}\nsecond line")},
            })
            .to_string(),
        );
        body.push('\n');
    }
    body
}

/// `up` with tokens for an auditor of acme, an analyst of acme, an auditor of globex and an
/// admin, parts of at most 10 rows, and both tenants' events ingested.
async fn up_with_events(dir: &Path) -> Result<Tooltrail> {
    let config = dir.join("tooltrail.toml");
    let mut text = String::from("[query.exports]\npart_max_rows = 10\n");
    for (name, role, tenants) in [
        ("aud", "auditor", "[\"acme\"]"),
        ("ana", "analyst", "[\"acme\"]"),
        ("gaud", "auditor", "[\"globex\"]"),
        ("root", "admin", "[\"*\"]"),
    ] {
        text.push_str(&format!(
            "[[query.tokens]]\nname = \"{name}\"\nsha256 = \"{}\"\nrole = \"{role}\"\ntenants = {tenants}\n",
            sha256_hex(format!("tok-{name}").as_bytes())
        ));
    }
    std::fs::write(&config, text)?;
    let data = dir.join("data");
    std::fs::create_dir_all(&data)?;
    let up = Tooltrail::up_with_config(&config, &data, &["--warm-from-lake", "0s"]).await?;
    for (tenant, n) in [("acme", ACME), ("globex", GLOBEX)] {
        let (status, reply) = up.post_events(events(tenant, n), &[]).await?;
        ensure!(status == 200, "ingest: {status} {reply}");
    }
    Ok(up)
}

fn range() -> (String, String) {
    let now = chrono::Utc::now();
    (
        (now - chrono::Duration::hours(2)).to_rfc3339(),
        (now + chrono::Duration::hours(1)).to_rfc3339(),
    )
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

/// POSTs an export request as `token`: the status and the JSON reply.
async fn start_export(up: &Tooltrail, token: &str, body: Value) -> Result<(u16, Value)> {
    let response = client()
        .post(up.url("/v1/exports"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.context("a JSON reply")?))
}

async fn get_json(up: &Tooltrail, token: &str, path: &str) -> Result<(u16, Value)> {
    let response = client().get(up.url(path)).bearer_auth(token).send().await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.context("a JSON reply")?))
}

/// Polls the export's status until it is done; fails at once if it failed.
async fn wait_done(up: &Tooltrail, token: &str, id: &str) -> Result<Value> {
    let deadline = Deadline::after(Duration::from_secs(60));
    loop {
        let (status, view) = get_json(up, token, &format!("/v1/exports/{id}")).await?;
        ensure!(status == 200, "GET export {id}: {status} {view}");
        match view["status"].as_str() {
            Some("done") => return Ok(view),
            Some("failed") => bail!("export {id} failed: {view}"),
            _ => {}
        }
        deadline.remaining(&format!("export {id} to finish"))?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Downloads every file of a done export into `dir`.
async fn download(up: &Tooltrail, token: &str, view: &Value, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let files = view["links"]["files"].as_object().context("file links")?;
    for (name, link) in files {
        let response = client()
            .get(up.url(link.as_str().context("a link")?))
            .bearer_auth(token)
            .send()
            .await?;
        ensure!(
            response.status() == 200,
            "GET {link}: {}",
            response.status()
        );
        std::fs::write(dir.join(name), response.bytes().await?)?;
    }
    Ok(())
}

/// (tenant_id, status, tool) of every row in a part file.
fn rows_of(format: &str, path: &Path) -> Result<Vec<(String, String, String)>> {
    let bytes = std::fs::read(path)?;
    let bytes = bytes.as_slice();
    let batches: Vec<RecordBatch> = match format {
        // API Activity records, each with every attribute OCSF requires.
        "ocsf" => {
            use tooltrail_lake::ocsf::{API_ACTIVITY, missing_required};
            return std::str::from_utf8(bytes)?
                .lines()
                .map(|line| {
                    let row: Value = serde_json::from_str(line)?;
                    let missing = missing_required(&API_ACTIVITY, &row);
                    ensure!(missing.is_empty(), "{missing:?} in {row}");
                    ensure!(row["class_uid"] == 6003, "{row}");
                    let action = if row["api"]["response"]["code"] == 403 {
                        2
                    } else {
                        1
                    };
                    ensure!(row["action_id"] == action, "{row}");
                    Ok((
                        row["metadata"]["tenant_uid"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        row["api"]["response"]["code"].to_string(),
                        row["api"]["operation"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                    ))
                })
                .collect();
        }
        "ndjson" => {
            return std::str::from_utf8(bytes)?
                .lines()
                .map(|line| {
                    let row: Value = serde_json::from_str(line)?;
                    Ok((
                        row["tenant_id"].as_str().unwrap_or_default().to_owned(),
                        row["status"].to_string(),
                        row["tool"].as_str().unwrap_or_default().to_owned(),
                    ))
                })
                .collect();
        }
        "parquet" => parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(path)?,
        )?
        .build()?
        .collect::<Result<_, _>>()?,
        "csv" => {
            let (schema, _) = arrow::csv::reader::Format::default()
                .with_header(true)
                .infer_schema(std::io::Cursor::new(bytes), None)?;
            arrow::csv::ReaderBuilder::new(std::sync::Arc::new(schema))
                .with_header(true)
                .build(std::io::Cursor::new(bytes))?
                .collect::<Result<_, _>>()?
        }
        other => bail!("unknown format {other}"),
    };
    let mut rows = Vec::new();
    for batch in batches {
        let column = |name: &str| -> Result<StringArray> {
            let array = batch.column_by_name(name).context("a column")?;
            let text = arrow::compute::cast(array, &arrow::datatypes::DataType::Utf8)?;
            Ok(text
                .as_any()
                .downcast_ref::<StringArray>()
                .context("utf8")?
                .clone())
        };
        let (tenant, status, tool) = (column("tenant_id")?, column("status")?, column("tool")?);
        for i in 0..batch.num_rows() {
            rows.push((
                tenant.value(i).to_owned(),
                status.value(i).to_owned(),
                tool.value(i).to_owned(),
            ));
        }
    }
    Ok(rows)
}

/// Runs a command; its exit code and stdout + stderr.
fn run(program: &str, args: &[&str]) -> Result<(i32, String)> {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("run {program}"))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.code().unwrap_or(-1), text))
}

fn tooltrail(args: &[&str]) -> Result<(i32, String)> {
    run(env!("CARGO_BIN_EXE_tooltrail"), args)
}

fn auditor_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/verify_export.sh")
}

/// Copies an export directory.
fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        std::fs::copy(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_exports_one_tenant_in_each_format_and_anyone_can_verify_it() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let up = up_with_events(dir.path()).await?;
    let (from, to) = range();
    let request = |format: &str, predicate: Option<&str>| json!({"tenant_id": "acme", "from": from, "to": to, "where": predicate, "format": format});

    // Who may export what.
    let (status, reply) = start_export(&up, "tok-ana", request("csv", None)).await?;
    assert_eq!(
        (status, reply["error"].as_str()),
        (403, Some("forbidden")),
        "{reply}"
    );
    let (status, reply) = start_export(&up, "tok-gaud", request("csv", None)).await?;
    assert_eq!(status, 403, "{reply}");
    assert!(
        reply["message"]
            .as_str()
            .unwrap_or_default()
            .contains("\"acme\""),
        "{reply}"
    );
    let (status, _) = start_export(&up, "tok-nobody", request("csv", None)).await?;
    assert_eq!(status, 401);
    let injection = "1=1) UNION SELECT * FROM query_audit WHERE (1=1";
    let (status, reply) = start_export(&up, "tok-aud", request("csv", Some(injection))).await?;
    assert_eq!(
        (status, reply["field"].as_str()),
        (400, Some("where")),
        "{reply}"
    );
    assert!(
        reply["message"]
            .as_str()
            .unwrap_or_default()
            .contains(injection),
        "{reply}"
    );
    let (status, reply) =
        start_export(&up, "tok-aud", request("csv", Some("no_such_column = 1"))).await?;
    assert_eq!(
        (status, reply["field"].as_str()),
        (400, Some("where")),
        "{reply}"
    );
    let (status, reply) = start_export(&up, "tok-aud", request("xlsx", None)).await?;
    assert_eq!(
        (status, reply["field"].as_str()),
        (400, Some("format")),
        "{reply}"
    );

    let keys: Value = client()
        .get(up.url("/v1/keys"))
        .send()
        .await?
        .json()
        .await?;
    let key = &keys["keys"][0];
    assert_eq!(
        (key["algorithm"].as_str(), key["current"].as_bool()),
        (Some("ed25519"), Some(true))
    );
    let public_pem = dir.path().join("tooltrail.pub.pem");
    std::fs::write(
        &public_pem,
        key["public_key_pem"].as_str().context("a PEM")?,
    )?;
    let pem = path_str(&public_pem)?;

    // (format, predicate, rows expected): every 5th acme event is a 403, every 2nd a search.
    let cases = [
        (
            "parquet",
            Some("tool = 'search' AND status >= 400"),
            ACME / 10,
        ),
        ("csv", Some("status >= 400"), ACME / 5),
        ("ndjson", None, ACME),
        ("ocsf", Some("status >= 400"), ACME / 5),
    ];
    let mut exports = Vec::new();
    for (format, predicate, expected) in cases {
        let (status, reply) = start_export(&up, "tok-aud", request(format, predicate)).await?;
        assert_eq!(status, 202, "{reply}");
        let id = reply["id"].as_str().context("an id")?.to_owned();
        assert_eq!(reply["links"]["self"], json!(format!("/v1/exports/{id}")));
        let view = wait_done(&up, "tok-aud", &id).await?;
        let manifest = &view["manifest"];
        assert_eq!(
            manifest["totals"]["rows"],
            json!(expected),
            "{format}: {manifest}"
        );
        assert_eq!(
            manifest["totals"]["parts"],
            json!(expected.div_ceil(10)),
            "{format}"
        );
        assert_eq!(manifest["scope"]["tenant_id"], json!("acme"));
        assert_eq!(
            manifest["requested_by"],
            json!({"principal": "aud", "role": "auditor"})
        );
        assert_eq!(manifest["key_id"], key["key_id"]);
        assert_eq!(manifest["format"], json!(format));
        assert!(
            !manifest["source_files"]
                .as_array()
                .context("sources")?
                .is_empty()
        );

        // Downloaded parts hold acme's rows only, filtered by the predicate.
        let local = dir.path().join(format!("download-{format}"));
        download(&up, "tok-aud", &view, &local).await?;
        let mut rows = Vec::new();
        for part in manifest["parts"].as_array().context("parts")? {
            let path = local.join(part["name"].as_str().context("name")?);
            assert_eq!(json!(sha256_hex(&std::fs::read(&path)?)), part["sha256"]);
            rows.extend(rows_of(format, &path)?);
        }
        assert_eq!(rows.len(), expected, "{format}");
        assert!(rows.iter().all(|(tenant, ..)| tenant == "acme"), "{format}");
        if predicate.is_some() {
            assert!(
                rows.iter().all(|(_, status, _)| status == "403"),
                "{format}"
            );
        }
        if format == "parquet" {
            assert!(rows.iter().all(|(.., tool)| tool == "search"));
        }

        // Both verifiers pass, on the download and on the server's own directory.
        for export_dir in [local.clone(), dir.path().join("data/exports").join(&id)] {
            let d = path_str(&export_dir)?;
            let (code, out) = tooltrail(&["export", "verify", d, "--public-key", pem])?;
            assert_eq!(code, 0, "{out}");
            assert!(out.starts_with("OK "), "{out}");
            let (code, out) = run("bash", &[path_str(&auditor_script())?, d, pem])?;
            assert_eq!(code, 0, "{out}");
            assert!(!out.contains("FAIL"), "{out}");
        }
        exports.push((id, local, manifest.clone()));
    }

    // Tampering is caught and named.
    let (_, local, manifest) = &exports[1];
    let flipped = dir.path().join("flipped");
    copy_dir(local, &flipped)?;
    let part = manifest["parts"][1]["name"].as_str().context("a part")?;
    let mut bytes = std::fs::read(flipped.join(part))?;
    let last = bytes.len() - 2;
    bytes[last] ^= 0x01;
    std::fs::write(flipped.join(part), &bytes)?;
    let (code, out) = tooltrail(&["export", "verify", path_str(&flipped)?, "--public-key", pem])?;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("part {part}: sha256 ")), "{out}");
    let (code, out) = run(
        "bash",
        &[path_str(&auditor_script())?, path_str(&flipped)?, pem],
    )?;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("FAIL part {part}: sha256")), "{out}");

    let edited = dir.path().join("edited");
    copy_dir(local, &edited)?;
    let text = std::fs::read_to_string(edited.join("manifest.json"))?;
    std::fs::write(
        edited.join("manifest.json"),
        text.replace("\"status >= 400\"", "\"status >= 500\""),
    )?;
    let (code, out) = tooltrail(&["export", "verify", path_str(&edited)?, "--public-key", pem])?;
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("signature: manifest.json.sig does not verify"),
        "{out}"
    );
    let (code, out) = run(
        "bash",
        &[path_str(&auditor_script())?, path_str(&edited)?, pem],
    )?;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("FAIL signature"), "{out}");

    // Reading an export needs the same rights as making it.
    let id = &exports[0].0;
    for token in ["tok-ana", "tok-gaud"] {
        let (status, reply) = get_json(&up, token, &format!("/v1/exports/{id}")).await?;
        assert_eq!(status, 403, "{token}: {reply}");
        let response = client()
            .get(up.url(&format!("/v1/exports/{id}/files/manifest.json")))
            .bearer_auth(token)
            .send()
            .await?;
        assert_eq!(response.status(), 403, "{token}");
    }
    let (status, _) = get_json(&up, "tok-aud", &format!("/v1/exports/{id}/files/..%2Fx")).await?;
    assert_eq!(status, 404);
    let (status, listed) = get_json(&up, "tok-root", "/v1/exports").await?;
    assert_eq!(status, 200);
    assert_eq!(
        listed["exports"].as_array().map(Vec::len),
        Some(exports.len()),
        "{listed}"
    );

    // Each export is in the query audit, as the export's query, by its requester.
    let query_id = exports[0].2["query_id"].as_str().context("query_id")?;
    let sql = format!(
        "SELECT phase, transport, principal, coalesce(outcome, '-') AS outcome, \
         coalesce(rows, -1) AS rows, sql_sha256 FROM query_audit \
         WHERE query_id = '{query_id}' ORDER BY phase DESC"
    );
    let deadline = Deadline::after(Duration::from_secs(30));
    let audit = loop {
        let reply: Value = client()
            .post(up.url("/v1/sql"))
            .bearer_auth("tok-root")
            .json(&json!({"sql": sql}))
            .send()
            .await?
            .json()
            .await?;
        if reply["row_count"] == json!(2) {
            break reply;
        }
        deadline.remaining("the export's query_audit records")?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let sha = &exports[0].2["sql_sha256"];
    assert_eq!(
        audit["rows"],
        json!([
            {"phase": "start", "transport": "export", "principal": "aud", "outcome": "-", "rows": -1, "sql_sha256": sha},
            {"phase": "end", "transport": "export", "principal": "aud", "outcome": "ok", "rows": ACME / 10, "sql_sha256": sha},
        ])
    );
    let metrics = up.get_text("/metrics").await?;
    let done = format!(
        "tooltrail_exports_total{{outcome=\"done\"}} {}",
        exports.len()
    );
    assert!(metrics.contains(&done), "{metrics}");
    up.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_exports_survive_a_restart_and_the_cli_exports_a_lake_locally() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let up = up_with_events(dir.path()).await?;
    let (from, to) = range();
    let body = json!({"tenant_id": "globex", "from": from, "to": to, "format": "ndjson"});
    let (status, reply) = start_export(&up, "tok-gaud", body).await?;
    assert_eq!(status, 202, "{reply}");
    let id = reply["id"].as_str().context("an id")?.to_owned();
    let before = wait_done(&up, "tok-gaud", &id).await?;
    up.stop().await?;

    let config = dir.path().join("tooltrail.toml");
    let data = dir.path().join("data");
    let up = Tooltrail::up_with_config(&config, &data, &["--warm-from-lake", "0s"]).await?;
    let after = wait_done(&up, "tok-gaud", &id).await?;
    assert_eq!(after["manifest"], before["manifest"]);
    assert_eq!(after["manifest"]["totals"]["rows"], json!(GLOBEX));
    assert_eq!(after["verification"], json!({"ok": true, "findings": []}));
    // A part changed on the server's disk: its status says so, naming it.
    let part = after["manifest"]["parts"][0]["name"]
        .as_str()
        .context("a part")?
        .to_owned();
    let path = data.join("exports").join(&id).join(&part);
    let mut bytes = std::fs::read(&path)?;
    bytes[0] ^= 1;
    std::fs::write(&path, bytes)?;
    let (_, tampered) = get_json(&up, "tok-gaud", &format!("/v1/exports/{id}")).await?;
    assert_eq!(tampered["verification"]["ok"], json!(false), "{tampered}");
    let findings = tampered["verification"]["findings"].to_string();
    assert!(findings.contains(&part), "{findings}");
    up.stop().await?;

    // The same lake, exported at the console as the local operator.
    let key = data.join("signing-key.pem");
    let out = dir.path().join("local-export");
    let lake = data.join("lake");
    let output = run_tooltrail_env(
        &[
            "--config",
            path_str(&config)?,
            "export",
            "--lake",
            path_str(&lake)?,
            "--tenant",
            "acme",
            "--from",
            &from,
            "--to",
            &to,
            "--where",
            "decision = 'deny'",
            "--format",
            "csv",
            "--out",
            path_str(&out)?,
            "--key",
            path_str(&key)?,
            "--part-max-rows",
            "7",
        ],
        &[],
        Duration::from_secs(120),
    )
    .await?;
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        path_str(&out)?
    );
    let manifest: Value = serde_json::from_slice(&std::fs::read(out.join("manifest.json"))?)?;
    assert_eq!(manifest["totals"]["rows"], json!(ACME / 5));
    assert_eq!(manifest["totals"]["parts"], json!((ACME / 5).div_ceil(7)));
    assert_eq!(
        manifest["requested_by"]["principal"],
        json!("local-operator")
    );

    let public = run_tooltrail_env(
        &["keys", "public", "--key", path_str(&key)?],
        &[],
        Duration::from_secs(30),
    )
    .await?;
    let public_pem = dir.path().join("pub.pem");
    std::fs::write(&public_pem, &public.stdout)?;
    let (code, text) = tooltrail(&[
        "export",
        "verify",
        path_str(&out)?,
        "--public-key",
        path_str(&public_pem)?,
    ])?;
    assert_eq!(code, 0, "{text}");
    let (code, text) = run(
        "bash",
        &[
            path_str(&auditor_script())?,
            path_str(&out)?,
            path_str(&public_pem)?,
        ],
    )?;
    assert_eq!(code, 0, "{text}");

    // Another key is not trusted, and an extra file is named.
    let other = dir.path().join("other.pem");
    run_tooltrail_env(
        &["keys", "generate", "--out", path_str(&other)?],
        &[],
        Duration::from_secs(30),
    )
    .await?;
    std::fs::write(out.join("notes.txt"), "added later")?;
    let other_public = run_tooltrail_env(
        &["keys", "public", "--key", path_str(&other)?],
        &[],
        Duration::from_secs(30),
    )
    .await?;
    let other_pem = dir.path().join("other.pub.pem");
    std::fs::write(&other_pem, &other_public.stdout)?;
    let (code, text) = tooltrail(&[
        "export",
        "verify",
        path_str(&out)?,
        "--public-key",
        path_str(&other_pem)?,
    ])?;
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("which is not trusted"), "{text}");
    assert!(
        text.contains("notes.txt: not listed in the manifest"),
        "{text}"
    );
    Ok(())
}
