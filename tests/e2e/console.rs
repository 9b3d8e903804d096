//! The analyst console in a real browser: Debian's chromium driven through
//! chromedriver (WebDriver, `fantoccini`) against `tooltrail up`. Each step
//! saves a screenshot under `<CARGO_TARGET_TMPDIR>/console-screenshots/`.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (Debian's
//! `chromium` and `chromium-driver`, which `.ci/run` installs); the test
//! fails, saying so, when they are missing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::support::Deadline;
use crate::support::process::{Tooltrail, path_str};

const ANALYST: &str = "tok-ana";
const AUDITOR: &str = "tok-aud";
const ADMIN: &str = "tok-root";

fn sha256(token: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(token.as_bytes()))
}

/// `up` with an analyst and an auditor of acme and an admin of all.
async fn up() -> Result<(tempfile::TempDir, Tooltrail)> {
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("tooltrail.toml");
    let token = |name: &str, secret: &str, role: &str, tenants: &str| {
        format!(
            "[[query.tokens]]\nname = \"{name}\"\nsha256 = \"{}\"\nrole = \"{role}\"\ntenants = {tenants}\n",
            sha256(secret)
        )
    };
    std::fs::write(
        &config,
        format!(
            "{}{}{}",
            token("ana", ANALYST, "analyst", "[\"acme\"]"),
            token("aud", AUDITOR, "auditor", "[\"acme\"]"),
            token("root", ADMIN, "admin", "[\"*\"]"),
        ),
    )?;
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data)?;
    let up = Tooltrail::up_with_config(&config, &data, &["--warm-from-lake", "0s"]).await?;
    Ok((dir, up))
}

/// Ordinary calls of three acme users over the last hours, then one
/// cross-tenant read each (a critical alert at once), and one of a globex
/// user reading acme's files.
fn seeded_events() -> String {
    let now = chrono::Utc::now();
    let mut lines = Vec::new();
    let users = ["mallory", "eve", "trudy"];
    for (u, user) in users.iter().enumerate() {
        for i in 0..60 {
            let time = now - chrono::Duration::minutes(180 - i * 3);
            let (decision, status) = if i % 9 == 0 {
                ("deny", 403)
            } else {
                ("allow", 200)
            };
            lines.push(json!({
                "schema_version": 1, "event_id": format!("{user}-{i}"), "time": time.to_rfc3339(),
                "tenant_id": "acme", "user_id": user, "server": "github", "method": "tools/call",
                "tool": "search_code", "resource": format!("github://acme/repo{}", i % 4),
                "decision": decision, "status": status, "session_id": format!("s-{user}-{}", i / 20),
                "source_ip": format!("10.0.0.{}", 10 + u),
            }));
        }
        lines.push(json!({
            "schema_version": 1, "event_id": format!("{user}-x"), "time": now.to_rfc3339(),
            "tenant_id": "acme", "user_id": user, "server": "gdrive", "method": "tools/call",
            "tool": "read_file", "resource": format!("gdrive://globex/finance/{user}.xlsx"),
            "decision": "allow", "status": 200, "session_id": format!("s-{user}-x"),
        }));
    }
    lines.push(json!({
        "schema_version": 1, "event_id": "gus-x", "time": now.to_rfc3339(),
        "tenant_id": "globex", "user_id": "gus", "server": "gdrive", "method": "tools/call",
        "tool": "read_file", "resource": "gdrive://acme/hr/salaries.xlsx",
        "decision": "allow", "status": 200,
    }));
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// `GET path` with a bearer token: status and JSON.
async fn api(up: &Tooltrail, token: &str, path: &str) -> Result<(u16, Value)> {
    let response = reqwest::Client::new()
        .get(up.url(path))
        .bearer_auth(token)
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.json().await.unwrap_or(Value::Null)))
}

async fn sql(up: &Tooltrail, token: &str, query: &str) -> Result<Vec<Value>> {
    let response = reqwest::Client::new()
        .post(up.url("/v1/sql"))
        .bearer_auth(token)
        .json(&json!({"sql": query}))
        .send()
        .await?;
    ensure!(response.status() == 200, "{}", response.text().await?);
    let body: Value = response.json().await?;
    Ok(body["rows"].as_array().cloned().unwrap_or_default())
}

/// The alert ids `token` sees, waiting until there are `n`.
async fn alert_ids(up: &Tooltrail, token: &str, n: usize) -> Result<Vec<String>> {
    let deadline = Deadline::after(Duration::from_secs(60));
    loop {
        let (status, page) = api(up, token, "/v1/alerts").await?;
        ensure!(status == 200, "{page}");
        let ids: Vec<String> = page["alerts"]
            .as_array()
            .context("alerts")?
            .iter()
            .filter_map(|a| a["alert_id"].as_str().map(str::to_owned))
            .collect();
        if ids.len() >= n {
            return Ok(ids);
        }
        deadline.remaining(&format!("{n} alerts for {token}, have {}", ids.len()))?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// chromedriver on a free port, and a headless chromium session through it
/// that downloads into `downloads`.
struct Browser {
    client: Client,
    _driver: Child,
    shots: PathBuf,
}

impl Browser {
    async fn start(downloads: &Path) -> Result<Browser> {
        for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
            ensure!(
                Path::new(tool).exists(),
                "{tool} is missing: install Debian's chromium and chromium-driver (.ci/run does)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let driver = Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start chromedriver")?;
        let profile = downloads.join("profile");
        let capabilities = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,800",
                    format!("--user-data-dir={}", path_str(&profile)?),
                ],
                "prefs": {
                    "download.default_directory": path_str(downloads)?,
                    "download.prompt_for_download": false,
                },
            },
        });
        let Value::Object(capabilities) = capabilities else {
            bail!("capabilities are an object");
        };
        let deadline = Deadline::after(Duration::from_secs(30));
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(client) => break client,
                Err(e) => {
                    deadline.remaining(&format!("chromedriver to start a session ({e})"))?;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        };
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("console-screenshots");
        std::fs::create_dir_all(&shots)?;
        Ok(Browser {
            client,
            _driver: driver,
            shots,
        })
    }

    async fn goto(&self, url: &str) -> Result<()> {
        Ok(self.client.goto(url).await?)
    }

    /// The element at `css`, waiting up to 20 s for it.
    async fn find(&self, css: &str) -> Result<fantoccini::elements::Element> {
        self.client
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("no {css} on the page"))
    }

    async fn click(&self, css: &str) -> Result<()> {
        Ok(self.find(css).await?.click().await?)
    }

    async fn type_into(&self, css: &str, text: &str) -> Result<()> {
        let field = self.find(css).await?;
        field.clear().await?;
        Ok(field.send_keys(text).await?)
    }

    /// Waits until the text at `css` satisfies `ok`; returns it.
    async fn text_until(&self, css: &str, ok: impl Fn(&str) -> bool) -> Result<String> {
        let deadline = Deadline::after(Duration::from_secs(20));
        loop {
            if let Ok(element) = self.client.find(Locator::Css(css)).await
                && let Ok(text) = element.text().await
                && ok(&text)
            {
                return Ok(text);
            }
            deadline.remaining(&format!("the text of {css}"))?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn count(&self, css: &str) -> Result<usize> {
        Ok(self.client.find_all(Locator::Css(css)).await?.len())
    }

    async fn screenshot(&self, name: &str) -> Result<()> {
        let png = self.client.screenshot().await?;
        std::fs::write(self.shots.join(format!("{name}.png")), png)?;
        Ok(())
    }

    /// The page's text (for a JSON answer the browser shows as text).
    async fn body_text(&self) -> Result<String> {
        Ok(self.find("body").await?.text().await?)
    }
}

/// A page of another origin (another port of the same host: same site, so
/// a SameSite=Strict cookie still goes along) whose form posts a triage
/// change to tooltrail as soon as it loads.
async fn forging_site(target: String) -> Result<SocketAddr> {
    let page = format!(
        "<!doctype html><form id=f method=POST action=\"{target}\" enctype=\"text/plain\">\
         <input name='{{\"status\":\"closed\",\"close_reason\":\"other\",\"x\":\"' value='\"}}'></form>\
         <script>document.getElementById('f').submit()</script>"
    );
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            async move { axum::response::Html(page) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_analyst_triages_investigates_and_queries_in_the_console() -> Result<()> {
    let (dir, up) = up().await?;
    let (status, reply) = up.post_events(seeded_events(), &[]).await?;
    ensure!(status == 200, "ingest: {status} {reply}");
    let ids = alert_ids(&up, ANALYST, 3).await?;
    let theirs = alert_ids(&up, ADMIN, 4)
        .await?
        .into_iter()
        .find(|id| !ids.contains(id))
        .context("the globex alert")?;
    let downloads = dir.path().join("downloads");
    std::fs::create_dir_all(&downloads)?;
    let browser = Browser::start(&downloads).await?;
    let result = walk(&browser, &up, &ids, &theirs, &downloads).await;
    if result.is_err() {
        let _ = browser.screenshot("failure").await;
    }
    browser.client.clone().close().await?;
    up.stop().await?;
    result
}

async fn walk(
    browser: &Browser,
    up: &Tooltrail,
    ids: &[String],
    theirs: &str,
    downloads: &Path,
) -> Result<()> {
    let base = up.url("/");

    // Sign in.
    browser.goto(&base).await?;
    browser.find("form#signin").await?;
    browser.screenshot("01-sign-in").await?;
    browser.type_into("input#token", "wrong").await?;
    browser.click("form#signin button[type=submit]").await?;
    browser
        .text_until("#signin-error", |t| !t.is_empty())
        .await?;
    browser.type_into("input#token", ANALYST).await?;
    browser.click("form#signin button[type=submit]").await?;

    // The inbox shows the seeded run's alerts, and only acme's.
    browser.find("table#inbox tr[data-alert-id]").await?;
    let deadline = Deadline::after(Duration::from_secs(20));
    while browser.count("table#inbox tr[data-alert-id]").await? < ids.len() {
        deadline.remaining("every alert in the inbox")?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ensure!(browser.count("table#inbox tr[data-alert-id]").await? == ids.len());
    ensure!(
        browser
            .count(&format!("tr[data-alert-id=\"{theirs}\"]"))
            .await?
            == 0,
        "another tenant's alert is in the inbox"
    );
    browser.screenshot("02-inbox").await?;

    // A new alert appears in the open inbox without a reload.
    let now = chrono::Utc::now();
    let raised = json!({
        "schema_version": 1, "event_id": "oscar-x", "time": now.to_rfc3339(),
        "tenant_id": "acme", "user_id": "oscar", "server": "gdrive", "method": "tools/call",
        "tool": "read_file", "resource": "gdrive://globex/legal/contract.pdf",
        "decision": "allow", "status": 200,
    });
    let sent = std::time::Instant::now();
    let (status, reply) = up.post_events(format!("{raised}\n"), &[]).await?;
    ensure!(status == 200, "ingest: {status} {reply}");
    let deadline = Deadline::after(Duration::from_secs(20));
    while browser.count("table#inbox tr[data-alert-id]").await? < ids.len() + 1 {
        deadline.remaining("the new alert in the open inbox")?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "a new alert appeared in the open inbox {:?} after its event was sent",
        sent.elapsed()
    );
    browser.find("table#inbox tr.new").await?;

    // Acknowledge one from the inbox.
    let first = &ids[0];
    browser
        .click(&format!("tr[data-alert-id=\"{first}\"] input[data-select]"))
        .await?;
    browser.click("#bulk-ack").await?;
    browser
        .text_until(&format!("tr[data-alert-id=\"{first}\"] td.status"), |t| {
            t.contains("acknowledged")
        })
        .await?;

    // The alert page: chart, evidence, triage; close it with a reason.
    let second = &ids[1];
    browser.goto(&format!("{base}#/alerts/{second}")).await?;
    browser.find("h1#alert-title").await?;
    browser.find("#alert-chart canvas").await?;
    browser.find("table#evidence tbody tr").await?;
    browser.screenshot("03-alert").await?;
    let reason = browser.find("select#triage-close-reason").await?;
    reason.select_by_value("true_positive_malicious").await?;
    browser.click("#close").await?;
    browser
        .text_until("ol#triage-history", |t| t.contains("closed"))
        .await?;
    browser.screenshot("04-alert-closed").await?;
    let rows = sql(
        up,
        ADMIN,
        "SELECT alert_id, status, close_reason, actor FROM alert_triage ORDER BY time",
    )
    .await?;
    ensure!(rows.len() == 2, "{rows:?}");
    ensure!(rows[0]["alert_id"] == first.as_str() && rows[0]["status"] == "acknowledged");
    ensure!(rows[1]["alert_id"] == second.as_str() && rows[1]["status"] == "closed");
    ensure!(rows[1]["close_reason"] == "true_positive_malicious" && rows[1]["actor"] == "ana");

    // The user page.
    browser.click("a#user-link").await?;
    browser
        .text_until("h1#user-title", |t| !t.is_empty())
        .await?;
    browser.find("#user-chart canvas").await?;
    browser.find("table#first-seen").await?;
    browser.screenshot("05-user").await?;

    // A query, and its result as CSV.
    browser.goto(&format!("{base}#/sql")).await?;
    browser
        .type_into(
            "textarea#sql-editor",
            "SELECT user_id, count(*) AS calls FROM events GROUP BY user_id ORDER BY user_id",
        )
        .await?;
    browser.click("#run-sql").await?;
    browser
        .text_until("table#sql-result", |t| t.contains("mallory"))
        .await?;
    browser.screenshot("06-sql").await?;
    browser.click("#download-csv").await?;
    let csv = downloads.join("result.csv");
    let deadline = Deadline::after(Duration::from_secs(20));
    let text = loop {
        if let Ok(text) = std::fs::read_to_string(&csv)
            && text.lines().count() == 5
        {
            break text;
        }
        deadline.remaining("result.csv in the download directory")?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // A header, then eve, mallory, oscar and trudy.
    ensure!(text.starts_with("user_id,calls"), "{text}");
    ensure!(
        text.contains("mallory,61") && text.contains("oscar,1"),
        "{text}"
    );

    // Another tenant's alert is not found, in the page and in the API.
    browser.goto(&format!("{base}#/alerts/{theirs}")).await?;
    browser
        .text_until("#alert-error", |t| {
            t.contains(&format!("no alert \"{theirs}\""))
        })
        .await?;
    browser.screenshot("07-not-found").await?;
    browser
        .goto(&up.url(&format!("/v1/alerts/{theirs}")))
        .await?;
    ensure!(browser.body_text().await?.contains("not_found"));

    // A forged cross-site POST, with the session cookie, is refused.
    let third = &ids[2];
    let forger = forging_site(up.url(&format!("/v1/alerts/{third}/triage"))).await?;
    browser.goto(&format!("http://{forger}/")).await?;
    let answer = browser.text_until("body", |t| t.contains("error")).await?;
    ensure!(answer.contains("csrf_failed"), "{answer}");
    let rows = sql(
        up,
        ADMIN,
        &format!("SELECT * FROM alert_triage WHERE alert_id = '{third}'"),
    )
    .await?;
    ensure!(rows.is_empty(), "the forged change was recorded: {rows:?}");

    // Sign out: the session is gone.
    browser.goto(&base).await?;
    browser.click("button#signout").await?;
    browser.find("form#signin").await?;
    browser.goto(&up.url("/v1/session")).await?;
    ensure!(browser.body_text().await?.contains("unauthorized"));

    // An auditor reads but has no triage controls that work.
    browser.goto(&base).await?;
    browser.type_into("input#token", AUDITOR).await?;
    browser.click("form#signin button[type=submit]").await?;
    browser.find("table#inbox tr[data-alert-id]").await?;
    browser.goto(&format!("{base}#/exports")).await?;
    browser.find("form#new-export").await?;
    browser.screenshot("08-exports").await?;
    eprintln!("screenshots in {}", browser.shots.display());
    Ok(())
}
