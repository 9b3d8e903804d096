//! The alerts API and the console's sessions on a real socket, over a lake
//! written through ingest's and the detector's own paths.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tooltrail_query::alerts::{TriageChange, TriageNotifier};
use tooltrail_query::auth::session::{self, SessionStore};
use tooltrail_query::{AlertsService, Engine};

struct Api {
    _dir: tempfile::TempDir,
    addr: SocketAddr,
    client: Client,
}

impl Api {
    async fn start() -> Api {
        Api::start_with(None).await
    }

    /// With `notifier` told of triage changes.
    async fn start_with(notifier: Option<Arc<dyn TriageNotifier>>) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        let engine: Engine = tokio::task::spawn_blocking(move || {
            support::write_lake(&root);
            support::engine(&root, &support::config())
        })
        .await
        .unwrap();
        let lake = tooltrail_lake::Location::local(dir.path()).unwrap();
        let (mut alerts, task) = AlertsService::new(engine.clone(), &lake, Default::default());
        if let Some(notifier) = notifier {
            alerts = alerts.with_notifier(notifier);
        }
        tokio::spawn(task.run(tokio_util::sync::CancellationToken::new()));
        let sessions = SessionStore::new(&Default::default());
        let routes = tooltrail_query::alerts::http::router(alerts)
            .merge(tooltrail_query::http::router(engine.clone()))
            .merge(tooltrail_query::console::router(engine, sessions.clone()));
        let app = session::protect(routes, sessions).merge(tooltrail_query::console::files());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        Api {
            _dir: dir,
            addr,
            client: Client::new(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `method path` with a bearer token: the status and the JSON body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .request(method, self.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    async fn sql(&self, token: &str, sql: &str) -> Vec<Value> {
        let (status, body) = self.post("/v1/sql", token, json!({"sql": sql})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["rows"].as_array().unwrap().clone()
    }
}

fn ids(page: &Value) -> Vec<String> {
    page["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["alert_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_lists_only_the_callers_tenants_and_pages_through_them() {
    let api = Api::start().await;
    let (status, page) = api.get("/v1/alerts", "analyst-acme").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let mut all = ids(&page);
    all.sort();
    assert_eq!(all, ["acme-a0", "acme-a1"]);
    let first = &page["alerts"][0];
    assert_eq!(first["status"], "open");
    assert_eq!(first["tenant_id"], "acme");
    assert_eq!(first["severity"], "high");
    assert!(first.get("severity_rank").is_none());

    let (_, admin) = api.get("/v1/alerts?tenant=globex", "admin-all").await;
    assert_eq!(ids(&admin).len(), 3);
    let (_, none) = api.get("/v1/alerts?tenant=globex", "analyst-acme").await;
    assert!(
        ids(&none).is_empty(),
        "a tenant filter never widens the token's tenants"
    );

    let mut seen = Vec::new();
    let mut path = "/v1/alerts?limit=2&sort=severity".to_owned();
    loop {
        let (status, page) = api.get(&path, "admin-all").await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/alerts?limit=2&sort=severity&cursor={cursor}"),
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(seen.len(), 5, "every alert once across pages: {seen:?}");
    assert_eq!(sorted.len(), 5);

    let (status, error) = api.get("/v1/alerts?status=opne", "analyst-acme").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        (error["error"].as_str(), error["field"].as_str()),
        (Some("invalid_request"), Some("status"))
    );
    let (status, _) = api.get("/v1/alerts", "wrong-token").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triage_is_recorded_in_the_lake_and_shapes_the_inbox() {
    let api = Api::start().await;
    let (status, body) = api
        .post(
            "/v1/alerts/acme-a0/triage",
            "analyst-acme",
            json!({"status": "acknowledged", "assignee": "ana"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["triage"]["actor"], "analyst-acme");

    let (status, error) = api
        .post(
            "/v1/alerts/acme-a0/triage",
            "analyst-acme",
            json!({"status": "closed"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error["field"], "close_reason");

    let (status, body) = api
        .post(
            "/v1/alerts/acme-a0/triage",
            "analyst-acme",
            json!({"status": "closed", "close_reason": "true_positive_benign", "comment": "nightly job"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (_, open) = api
        .get("/v1/alerts?status=open,acknowledged", "analyst-acme")
        .await;
    assert_eq!(ids(&open), ["acme-a1"]);
    let (_, closed) = api.get("/v1/alerts?status=closed", "analyst-acme").await;
    assert_eq!(ids(&closed), ["acme-a0"]);
    let row = &closed["alerts"][0];
    assert_eq!(
        row["assignee"], "ana",
        "what a change leaves out is carried over"
    );
    assert_eq!(row["close_reason"], "true_positive_benign");
    assert_eq!(row["triaged_by"], "analyst-acme");

    let (_, detail) = api.get("/v1/alerts/acme-a0", "analyst-acme").await;
    let history: Vec<&str> = detail["triage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["acknowledged", "closed"]);
    assert_eq!(detail["alert"]["status"], "closed");

    let rows = api
        .sql(
            "analyst-acme",
            "SELECT alert_id, status, close_reason, actor FROM alert_triage ORDER BY time",
        )
        .await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["close_reason"], "true_positive_benign");
    let theirs = api
        .sql("admin-globex", "SELECT alert_id FROM alert_triage")
        .await;
    assert!(
        theirs.is_empty(),
        "triage rows are tenant-filtered like everything else"
    );

    let (status, _) = api
        .post(
            "/v1/alerts/acme-a1/triage",
            "auditor-acme",
            json!({"status": "acknowledged"}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "auditors read, they do not triage"
    );
    let (status, _) = api.get("/v1/alerts/acme-a1", "auditor-acme").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_alert_is_not_found_whatever_is_asked() {
    let api = Api::start().await;
    let (status, body) = api.get("/v1/alerts/globex-a0", "analyst-acme").await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(!body.to_string().contains("globex-e"), "{body}");
    let (status, _) = api
        .post(
            "/v1/alerts/globex-a0/triage",
            "analyst-acme",
            json!({"status": "acknowledged"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = api
        .post(
            "/v1/alerts/triage",
            "analyst-acme",
            json!({"alert_ids": ["acme-a1", "globex-a0", "x' OR '1'='1"], "status": "acknowledged"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["triaged"], json!(["acme-a1"]));
    assert_eq!(body["not_found"], json!(["globex-a0", "x' OR '1'='1"]));
    let rows = api
        .sql("admin-all", "SELECT alert_id FROM alert_triage")
        .await;
    assert_eq!(rows, [json!({"alert_id": "acme-a1"})]);
    let (status, _) = api.get("/v1/users/globex/u1@globex", "analyst-acme").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_comes_with_its_evidence_and_the_series_around_it() {
    let api = Api::start().await;
    let (status, body) = api.get("/v1/alerts/acme-a0", "analyst-acme").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let events: Vec<&str> = body["events"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["acme-e10", "acme-e20"]);
    assert_eq!(
        body["alert"]["record"]["evidence"]["details"]["distinct_tools"],
        9
    );
    assert_eq!(body["alert"]["event_ids"], json!(["acme-e10", "acme-e20"]));
    let series = &body["series"];
    assert_eq!(series["measure"], "denials");
    assert_eq!(series["bucket_seconds"], 300);
    assert_eq!(series["expected"], 0.4);
    let points = series["points"].as_array().unwrap();
    assert_eq!(points.len(), 24 + 2 + 6);
    let calls: i64 = points.iter().map(|p| p["calls"].as_i64().unwrap()).sum();
    let denials: i64 = points.iter().map(|p| p["denials"].as_i64().unwrap()).sum();
    // support::write_events: acme's 120 events fill 09:00-09:59, user
    // u{i % 5}, denied when i % 10 = 0: u1's are the 24 of i = 1, 6, …, 116,
    // none denied, all within the series' 07:35-10:15.
    assert_eq!((calls, denials), (24, 0));
    assert!(
        body["sql"]
            .as_str()
            .unwrap()
            .contains("user_id = 'u1@acme'")
    );
    let rows = api.sql("analyst-acme", body["sql"].as_str().unwrap()).await;
    assert!(!rows.is_empty(), "the ready query runs as given");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_page_shows_their_hours_first_seen_values_and_alerts() {
    let api = Api::start().await;
    // The lake's events are of 2026-11-22; the page looks back from now, so
    // it looks at a user with no recent calls: empty series, their alerts.
    let (status, body) = api
        .get("/v1/users/acme/u1@acme?days=30", "analyst-acme")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["hourly"].as_array().unwrap().len(), 30 * 24);
    assert_eq!(ids(&json!({"alerts": body["alerts"]})).len(), 2);
    let (status, error) = api
        .get("/v1/users/acme/u1@acme?days=9", "analyst-acme")
        .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("days"))
    );
}

/// Signs in with `token`: the session cookie and the CSRF token.
async fn sign_in(api: &Api, token: &str) -> (String, String) {
    let response = api
        .client
        .post(api.url("/v1/session"))
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let body: Value = response.json().await.unwrap();
    let pair = cookie.split(';').next().unwrap().to_owned();
    (pair, body["csrf"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_cookie_reads_and_needs_its_csrf_token_to_change_anything() {
    let api = Api::start().await;
    let wrong = api
        .client
        .post(api.url("/v1/session"))
        .json(&json!({"token": "nope"}))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get("set-cookie").is_none());

    let (cookie, csrf) = sign_in(&api, "analyst-acme").await;
    let with_cookie = |method: Method, path: &str| {
        api.client
            .request(method, api.url(path))
            .header("cookie", cookie.clone())
    };
    let me: Value = with_cookie(Method::GET, "/v1/session")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (me["principal"].as_str(), me["role"].as_str()),
        (Some("analyst-acme"), Some("analyst"))
    );
    let inbox = with_cookie(Method::GET, "/v1/alerts").send().await.unwrap();
    assert_eq!(inbox.status(), StatusCode::OK);

    let body = json!({"status": "acknowledged"});
    let forged = with_cookie(Method::POST, "/v1/alerts/acme-a0/triage")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN, "no CSRF token");
    let cross = with_cookie(Method::POST, "/v1/alerts/acme-a0/triage")
        .header("x-csrf-token", &csrf)
        .header("sec-fetch-site", "cross-site")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN, "from another site");
    let rows = api
        .sql("admin-all", "SELECT alert_id FROM alert_triage")
        .await;
    assert!(rows.is_empty(), "refused changes left no row");
    let ok = with_cookie(Method::POST, "/v1/alerts/acme-a0/triage")
        .header("x-csrf-token", &csrf)
        .header("sec-fetch-site", "same-origin")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);

    let out = with_cookie(Method::DELETE, "/v1/session")
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    let after = with_cookie(Method::GET, "/v1/alerts").send().await.unwrap();
    assert_eq!(after.status(), StatusCode::UNAUTHORIZED, "signed out");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_stream_is_told_when_its_alerts_change() {
    let api = Api::start().await;
    let response = api
        .client
        .get(api.url("/v1/alerts/stream"))
        .bearer_auth("analyst-acme")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.bytes_stream();
    let mut text = String::new();
    let mut next_event = async || -> Value {
        loop {
            if let Some(end) = text.find("\n\n") {
                let event: String = text.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                    assert!(event.contains("event: changed"), "{event}");
                    return serde_json::from_str(data).unwrap();
                }
                continue;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(30), body.next())
                .await
                .expect("an event within 30 s")
                .unwrap()
                .unwrap();
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    let first = next_event().await;
    assert_eq!(first["triage_version"], 0);
    // Another tenant's change is not news to this stream; its own is.
    let (status, _) = api
        .post(
            "/v1/alerts/globex-a0/triage",
            "admin-all",
            json!({"status": "acknowledged"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = api
        .post(
            "/v1/alerts/acme-a0/triage",
            "analyst-acme",
            json!({"status": "acknowledged"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let second = next_event().await;
    assert_eq!(second["triage_version"], 1, "{second}");
    assert_eq!(second["alerts_version"], first["alerts_version"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_is_served_under_its_policy_and_chat_links_open_an_alert() {
    let api = Api::start().await;
    let page = api.client.get(api.url("/")).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        policy.contains("script-src 'self'") && !policy.contains("unsafe-inline"),
        "{policy}"
    );
    assert!(page.text().await.unwrap().contains("/console/app.js"));
    let script = api
        .client
        .get(api.url("/console/app.js"))
        .send()
        .await
        .unwrap();
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    let missing = api
        .client
        .get(api.url("/console/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let plain = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let link = plain.get(api.url("/alerts/acme-a0")).send().await.unwrap();
    assert!(link.status().is_redirection());
    assert_eq!(link.headers()["location"], "/#/alerts/acme-a0");
    let odd = plain
        .get(api.url("/alerts/%3Cscript%3E"))
        .send()
        .await
        .unwrap();
    assert_eq!(odd.status(), StatusCode::NOT_FOUND);
}

#[derive(Default)]
struct Recorder(Mutex<Vec<TriageChange>>);

impl TriageNotifier for Recorder {
    fn notify(&self, change: &TriageChange) {
        self.0.lock().unwrap().push(change.clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_of_a_fresh_alert_is_told_to_the_notifier_with_its_record() {
    let recorder = Arc::new(Recorder::default());
    let api = Api::start_with(Some(recorder.clone())).await;
    let now = chrono::Utc::now();
    let fresh = format!(
        r#"{{"alert_version":1,"alert_id":"acme-fresh","time":"{}","tenant_id":"acme","user_id":"u1@acme","detector":"cross_tenant","severity":"critical","score":95,"title":"fresh","explanation":"x","evidence":{{"event_ids":[]}},"window_start":"{}","window_end":"{}","repeats":0}}"#,
        now.to_rfc3339(),
        now.to_rfc3339(),
        now.to_rfc3339()
    );
    let root = api._dir.path().to_owned();
    tokio::task::spawn_blocking(move || support::write_alerts(&root, &format!("{fresh}\n")))
        .await
        .unwrap();
    let (status, body) = api
        .post(
            "/v1/alerts/acme-fresh/triage",
            "analyst-acme",
            json!({"status": "acknowledged"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // support::write_lake's alerts are of 2026-11-22: history, not news.
    let (status, _) = api
        .post(
            "/v1/alerts/acme-a0/triage",
            "analyst-acme",
            json!({"status": "acknowledged"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let told = recorder.0.lock().unwrap().clone();
    let [change] = &told[..] else {
        panic!("expected one change, got {told:?}");
    };
    assert_eq!(
        (change.alert_id.as_str(), change.status.as_str()),
        ("acme-fresh", "acknowledged")
    );
    assert_eq!(change.actor, "analyst-acme");
    let record: Value = serde_json::from_str(&change.record).unwrap();
    assert_eq!(record["title"], "fresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_holds_a_bounded_number_of_streams_and_a_bulk_change_takes_many_ids() {
    let api = Api::start().await;
    let open = async || {
        api.client
            .get(api.url("/v1/alerts/stream"))
            .bearer_auth("analyst-acme")
            .send()
            .await
            .unwrap()
    };
    let mut held = Vec::new();
    for _ in 0..tooltrail_query::alerts::stream::MAX_STREAMS_PER_PRINCIPAL {
        let response = open().await;
        assert_eq!(response.status(), StatusCode::OK);
        held.push(response);
    }
    let refused = open().await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let other = api
        .client
        .get(api.url("/v1/alerts/stream"))
        .bearer_auth("admin-all")
        .send()
        .await
        .unwrap();
    assert_eq!(
        other.status(),
        StatusCode::OK,
        "another token has its own streams"
    );
    drop(held.pop());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let again = open().await;
        if again.status() == StatusCode::OK {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a closed stream frees its place"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut ids: Vec<String> = (0..300).map(|i| format!("missing-{i}")).collect();
    ids[7] = "acme-a0".into();
    ids[250] = "acme-a1".into();
    let (status, body) = api
        .post(
            "/v1/alerts/triage",
            "analyst-acme",
            json!({"alert_ids": ids, "status": "acknowledged"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let mut triaged: Vec<&str> = body["triaged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    triaged.sort();
    assert_eq!(triaged, ["acme-a0", "acme-a1"]);
    assert_eq!(body["not_found"].as_array().unwrap().len(), 298);
}
