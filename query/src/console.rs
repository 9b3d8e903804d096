//! The analyst console (issue 28): static files built into the binary and
//! served at `/` and `/console/…`, and the few routes only the console
//! needs: sign-in sessions (`/v1/session`) and the example investigations
//! (`/v1/queries`). Everything else the console shows comes from the JSON
//! API that any client can call.
//!
//! The files (`query/console/`) are plain ES modules with vendored,
//! versioned libraries and their licences: no Node build step, nothing
//! fetched from elsewhere at run time. Every file is answered with a strict
//! Content-Security-Policy (no inline script or style, nothing from another
//! origin), gzip when the browser takes it, and an ETag.

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::LazyLock;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tooltrail_schemas::http::ApiError;

use crate::auth::session::{self, SessionStore};
use crate::engine::Engine;
use crate::{Principal, QueryError, Tenants};

/// The policy every console file is served with.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

#[derive(rust_embed::Embed)]
#[folder = "console/"]
#[exclude = "README.md"]
struct Files;

#[derive(rust_embed::Embed)]
#[folder = "../queries/"]
#[include = "*.sql"]
struct Examples;

/// A console file as served.
struct Asset {
    raw: Bytes,
    gzip: Bytes,
    etag: HeaderValue,
    content_type: &'static str,
}

static ASSETS: LazyLock<HashMap<String, Asset>> = LazyLock::new(|| {
    Files::iter()
        .filter_map(|path| {
            let file = Files::get(&path)?;
            let raw = Bytes::from(file.data.into_owned());
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            encoder.write_all(&raw).ok()?;
            let gzip = Bytes::from(encoder.finish().ok()?);
            let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&raw)[..12]));
            Some((
                path.to_string(),
                Asset {
                    etag: HeaderValue::from_str(&etag).ok()?,
                    content_type: content_type(&path),
                    raw,
                    gzip,
                },
            ))
        })
        .collect()
});

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or_default() {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "json" => "application/json",
        _ => "text/plain; charset=utf-8",
    }
}

/// The console's files, and how many bytes they take gzip-compressed, for
/// the size budget.
pub fn compressed_size() -> usize {
    ASSETS.values().map(|a| a.gzip.len()).sum()
}

/// `/` and `/console/{path}`: the files, no authentication; and
/// `/alerts/{id}`, where chat messages link (`console_url` of a Slack or
/// Teams destination), sent on to the console's page of the alert.
pub fn files() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/console/{*path}", get(file))
        .route("/alerts/{id}", get(alert_link))
}

async fn alert_link(Path(id): Path<String>) -> Response {
    if !crate::alerts::plausible_id(&id) {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no alert {id:?}"),
        )
        .into_response();
    }
    axum::response::Redirect::to(&format!("/#/alerts/{id}")).into_response()
}

/// `/v1/session` (sign in, who am I, sign out) and `/v1/queries`; wrap them
/// in [`session::protect`] with the same store.
pub fn router(engine: Engine, sessions: SessionStore) -> Router {
    Router::new()
        .route("/v1/session", get(whoami).post(sign_in).delete(sign_out))
        .route("/v1/queries", get(examples))
        .with_state((engine, sessions))
}

async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn file(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(asset) = ASSETS.get(path) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no console file {path:?}"),
        )
        .into_response();
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|tag| tag == asset.etag)
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else if accepts_gzip(headers) {
        let mut r = asset.gzip.clone().into_response();
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        asset.raw.clone().into_response()
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::ETAG, asset.etag.clone());
    h.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|p| p.trim().replace(' ', "") == "q=0");
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

type ConsoleState = (Engine, SessionStore);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: String,
}

/// `POST /v1/session`: a token for a session cookie. The token is checked as
/// a bearer token is, under the same login back-off.
async fn sign_in(
    State((engine, sessions)): State<ConsoleState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if session::cross_site(&headers) {
        return session::csrf_refused();
    }
    let Ok(SignIn { token }) = serde_json::from_slice::<SignIn>(&body) else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be JSON {\"token\": \"…\"}",
        )
        .with_field("body")
        .into_response();
    };
    let mut presented = HeaderMap::new();
    let Ok(bearer) = HeaderValue::from_str(&format!("Bearer {}", token.trim())) else {
        return QueryError::Unauthorized.into_response();
    };
    presented.insert(header::AUTHORIZATION, bearer);
    let principal = match crate::http::principal(&engine, &presented) {
        Ok(principal) => principal,
        Err(e) => return e.into_response(),
    };
    let signed = sessions.create(principal.clone(), Instant::now());
    let mut cookie = cookie::Cookie::build((session::COOKIE, signed.id))
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::seconds(
            i64::try_from(signed.expires_in.as_secs()).unwrap_or(i64::MAX),
        ));
    if behind_https(&headers) {
        cookie = cookie.secure(true);
    }
    tracing::info!(principal = %principal.name, "console sign-in");
    let body = view(&principal, &signed.csrf, signed.expires_in);
    let mut response = axum::Json(body).into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie.build().to_string()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    no_store(response)
}

/// `GET /v1/session`: who the cookie signs in, with the CSRF token.
async fn whoami(State((_, sessions)): State<ConsoleState>, headers: HeaderMap) -> Response {
    let found = session::cookie(&headers).and_then(|id| sessions.get(&id, Instant::now()));
    match found {
        Some(found) => no_store(
            axum::Json(view(&found.principal, &found.csrf, found.expires_in)).into_response(),
        ),
        None => QueryError::Unauthorized.into_response(),
    }
}

/// `DELETE /v1/session`: signs out (the CSRF check has passed).
async fn sign_out(State((_, sessions)): State<ConsoleState>, headers: HeaderMap) -> Response {
    if session::current().is_none() {
        return QueryError::Unauthorized.into_response();
    }
    if let Some(id) = session::cookie(&headers) {
        sessions.remove(&id);
    }
    let expired = cookie::Cookie::build((session::COOKIE, ""))
        .http_only(true)
        .same_site(cookie::SameSite::Strict)
        .path("/")
        .max_age(cookie::time::Duration::ZERO)
        .build();
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&expired.to_string()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

fn view(principal: &Principal, csrf: &str, expires_in: std::time::Duration) -> Value {
    let tenants = match &principal.tenants {
        Tenants::All => vec!["*".to_owned()],
        Tenants::Only(set) => set.iter().cloned().collect(),
    };
    let mut body = json!({
        "principal": principal.name,
        "role": principal.role,
        "tenants": tenants,
        "csrf": csrf,
    });
    if !expires_in.is_zero()
        && let Ok(left) = chrono::Duration::from_std(expires_in)
    {
        body["expires_at"] = Value::from(tooltrail_schemas::format_time(&(Utc::now() + left)));
    }
    body
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Whether the request reached us through HTTPS (a TLS-terminating proxy
/// says so in `X-Forwarded-Proto` or `Forwarded`).
fn behind_https(headers: &HeaderMap) -> bool {
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    text("x-forwarded-proto").eq_ignore_ascii_case("https")
        || text("forwarded")
            .split([';', ','])
            .any(|p| p.trim().eq_ignore_ascii_case("proto=https"))
}

/// `GET /v1/queries`: the example investigations of `queries/`, each with
/// its leading comment as title and description.
async fn examples(State((engine, _)): State<ConsoleState>, headers: HeaderMap) -> Response {
    if let Err(e) = crate::http::principal(&engine, &headers) {
        return e.into_response();
    }
    let mut names: Vec<String> = Examples::iter().map(|n| n.to_string()).collect();
    names.sort();
    let queries: Vec<Value> = names
        .iter()
        .filter_map(|name| {
            let file = Examples::get(name)?;
            let sql = String::from_utf8_lossy(&file.data).into_owned();
            let comments: Vec<&str> = sql
                .lines()
                .take_while(|l| l.starts_with("--"))
                .map(|l| l.trim_start_matches('-').trim())
                .collect();
            Some(json!({
                "name": name.trim_end_matches(".sql"),
                "title": comments.first().copied().unwrap_or_default(),
                "description": comments.join(" "),
                "sql": sql,
            }))
        })
        .collect();
    axum::Json(json!({"queries": queries})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_console_file_is_embedded_with_its_type_and_the_budget_holds() {
        assert!(
            ASSETS.contains_key("index.html"),
            "index.html is served at /"
        );
        assert!(ASSETS.contains_key("app.js"));
        assert!(!ASSETS.contains_key("README.md"));
        for (path, asset) in ASSETS.iter() {
            assert!(!asset.raw.is_empty(), "{path} is empty");
            if path.ends_with(".js") || path.ends_with(".mjs") {
                assert!(asset.content_type.starts_with("text/javascript"), "{path}");
            }
        }
        let size = compressed_size();
        assert!(
            size <= 300 * 1024,
            "the console's files take {size} bytes gzip-compressed"
        );
    }

    #[test]
    fn no_console_page_holds_inline_script() {
        let html = String::from_utf8_lossy(&ASSETS["index.html"].raw).to_lowercase();
        for script in html.split("<script").skip(1) {
            let tag = script.split('>').next().unwrap_or_default();
            assert!(
                tag.contains("src="),
                "an inline <script> in index.html: <script{tag}>"
            );
        }
        assert!(
            !html.contains(" style=\""),
            "an inline style attribute in index.html"
        );
        assert!(!html.contains("<style"), "an inline <style> in index.html");
    }

    #[test]
    fn gzip_is_taken_unless_refused() {
        let with = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(v));
            accepts_gzip(&h)
        };
        assert!(with("gzip, deflate, br"));
        assert!(with("br;q=1.0, gzip;q=0.8"));
        assert!(!with("gzip;q=0"));
        assert!(!with("identity"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
