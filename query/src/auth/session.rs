//! The console's sign-in sessions: a query token is exchanged once
//! (`POST /v1/session`) for a random session id in an HttpOnly,
//! SameSite=Strict cookie (Secure behind HTTPS), and the browser's requests
//! then carry the cookie instead of the token.
//!
//! [`protect`] wraps the authenticated routes. A request with
//! `Authorization` is left to the token (no cookie is looked at). Otherwise
//! its session cookie, if valid, makes the session's principal the one
//! [`crate::http::principal`] sees, and only for requests that pass the CSRF
//! check: a request that changes anything (any method but GET, HEAD and
//! OPTIONS) must carry the session's token in `X-CSRF-Token`, and a browser
//! request from another site (`Sec-Fetch-Site: cross-site`/`same-site`, or an
//! `Origin` that is not this host) is refused whatever it carries.
//!
//! Invariants:
//! - A session never outlives `lifetime` from sign-in, nor `idle_timeout`
//!   without use; sign-out ends it at once. At most `max_sessions` live;
//!   beyond, the least recently used ends.
//! - The store keeps SHA-256 hashes of session ids, never the ids, and
//!   compares CSRF tokens in constant time.
//! - Routes outside [`protect`] never see a session's principal: a cookie
//!   alone authenticates nothing there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tooltrail_schemas::http::ApiError;

use crate::Principal;
use crate::config::ConsoleConfig;

/// The session cookie's name.
pub const COOKIE: &str = "tooltrail_session";
/// The header that carries the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

tokio::task_local! {
    static SESSION: Principal;
}

/// The principal of the request's session, if [`protect`] found one.
pub fn current() -> Option<Principal> {
    SESSION.try_with(Principal::clone).ok()
}

/// A live session.
#[derive(Debug, Clone)]
struct Session {
    principal: Principal,
    csrf: String,
    created: Instant,
    used: Instant,
}

/// What sign-in gives the browser.
#[derive(Debug, Clone)]
pub struct SignedIn {
    /// The cookie's value: only the browser keeps it.
    pub id: String,
    pub csrf: String,
    /// When the session ends at the latest.
    pub expires_in: Duration,
}

/// A live session, as [`SessionStore::get`] finds it.
#[derive(Debug, Clone)]
pub struct Found {
    pub principal: Principal,
    pub csrf: String,
    /// Until the session's lifetime ends.
    pub expires_in: Duration,
}

/// The live sessions. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SessionStore {
    sessions: Arc<Mutex<HashMap<[u8; 32], Session>>>,
    config: ConsoleConfig,
}

impl SessionStore {
    pub fn new(config: &ConsoleConfig) -> SessionStore {
        SessionStore {
            sessions: Arc::default(),
            config: config.clone(),
        }
    }

    /// A new session of `principal`, made at `now`.
    pub fn create(&self, principal: Principal, now: Instant) -> SignedIn {
        let id = random_token();
        let csrf = random_token();
        let mut sessions = self.lock();
        sessions.retain(|_, s| self.live(s, now));
        while sessions.len() >= self.config.max_sessions {
            let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.used).map(|(k, _)| *k) else {
                break;
            };
            sessions.remove(&oldest);
        }
        sessions.insert(
            hash(&id),
            Session {
                principal,
                csrf: csrf.clone(),
                created: now,
                used: now,
            },
        );
        SignedIn {
            id,
            csrf,
            expires_in: self.config.lifetime,
        }
    }

    /// Session `id` at `now`, which counts as a use; `None` if there is no
    /// such live session.
    pub fn get(&self, id: &str, now: Instant) -> Option<Found> {
        let key = hash(id);
        let mut sessions = self.lock();
        let session = sessions.get_mut(&key)?;
        if !self.live(session, now) {
            sessions.remove(&key);
            return None;
        }
        session.used = now;
        Some(Found {
            principal: session.principal.clone(),
            csrf: session.csrf.clone(),
            expires_in: self
                .config
                .lifetime
                .saturating_sub(now.saturating_duration_since(session.created)),
        })
    }

    /// Ends session `id`.
    pub fn remove(&self, id: &str) {
        self.lock().remove(&hash(id));
    }

    /// Sessions held now (live or not yet swept).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn live(&self, session: &Session, now: Instant) -> bool {
        now.saturating_duration_since(session.created) < self.config.lifetime
            && now.saturating_duration_since(session.used) < self.config.idle_timeout
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.sessions
            .lock()
            .expect("no code panics while holding the session map")
    }
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn hash(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// The session id in the request's cookies.
pub fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(cookie::Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == COOKIE)
        .map(|c| c.value().to_owned())
}

/// Whether the request came from a page of another site. Browsers send
/// `Sec-Fetch-Site`; older ones only `Origin`, compared with `Host`.
pub fn cross_site(headers: &HeaderMap) -> bool {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    match (text(header::ORIGIN), text(header::HOST)) {
        (Some(origin), Some(host)) => {
            let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
            !origin_host.eq_ignore_ascii_case(host)
        }
        // `Origin: null` and the like, without a host to compare with.
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// `routes` answering to session cookies (see the module's docs).
pub fn protect(routes: Router, store: SessionStore) -> Router {
    routes.layer(axum::middleware::from_fn_with_state(store, layer))
}

async fn layer(State(store): State<SessionStore>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    if headers.contains_key(header::AUTHORIZATION) {
        return next.run(request).await;
    }
    let Some(id) = cookie(headers) else {
        return next.run(request).await;
    };
    let Some(Found {
        principal, csrf, ..
    }) = store.get(&id, Instant::now())
    else {
        // An ended session: the handler answers 401 as to no credentials.
        return next.run(request).await;
    };
    let safe = matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS
    );
    if !safe {
        let presented = headers
            .get(CSRF_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        let matches = bool::from(presented.ct_eq(csrf.as_bytes()));
        if !matches || cross_site(headers) {
            return csrf_refused();
        }
    }
    SESSION.scope(principal, next.run(request)).await
}

/// 403 for a request that failed the CSRF check.
pub fn csrf_refused() -> Response {
    ApiError::new(
        axum::http::StatusCode::FORBIDDEN,
        "csrf_failed",
        "this request changes something and must come from the console's own page with its X-CSRF-Token header",
    )
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Role, Tenants};

    fn store(idle: u64, lifetime: u64, max: usize) -> SessionStore {
        SessionStore::new(&ConsoleConfig {
            idle_timeout: Duration::from_secs(idle),
            lifetime: Duration::from_secs(lifetime),
            max_sessions: max,
        })
    }

    fn ana() -> Principal {
        Principal {
            name: "ana".into(),
            role: Role::Analyst,
            tenants: Tenants::Only(["acme".to_owned()].into()),
        }
    }

    #[test]
    fn a_session_ends_when_idle_at_its_lifetime_or_at_sign_out() {
        let store = store(60, 300, 10);
        let t0 = Instant::now();
        let s = store.create(ana(), t0);
        let at = |secs| t0 + Duration::from_secs(secs);
        assert_eq!(store.get(&s.id, at(59)).map(|f| f.principal), Some(ana()));
        assert_eq!(
            store.get(&s.id, at(59)).map(|f| f.expires_in),
            Some(Duration::from_secs(241))
        );
        assert!(
            store.get(&s.id, at(118)).is_some(),
            "each use restarts the idle clock"
        );
        assert!(store.get(&s.id, at(177)).is_some());
        assert!(store.get(&s.id, at(236)).is_some());
        assert!(store.get(&s.id, at(295)).is_some());
        assert!(
            store.get(&s.id, at(301)).is_none(),
            "used, but past its lifetime"
        );
        let idle = store.create(ana(), t0);
        assert!(
            store.get(&idle.id, at(61)).is_none(),
            "idle past the timeout"
        );
        let out = store.create(ana(), t0);
        store.remove(&out.id);
        assert!(store.get(&out.id, t0).is_none());
        assert!(store.get("not-a-session", t0).is_none());
    }

    #[test]
    fn beyond_the_limit_the_least_recently_used_session_ends() {
        let store = store(600, 600, 2);
        let t0 = Instant::now();
        let a = store.create(ana(), t0);
        let b = store.create(ana(), t0 + Duration::from_secs(1));
        assert!(store.get(&a.id, t0 + Duration::from_secs(2)).is_some());
        let c = store.create(ana(), t0 + Duration::from_secs(3));
        assert_eq!(store.len(), 2);
        assert!(store.get(&b.id, t0 + Duration::from_secs(4)).is_none());
        assert!(store.get(&a.id, t0 + Duration::from_secs(4)).is_some());
        assert!(store.get(&c.id, t0 + Duration::from_secs(4)).is_some());
    }

    #[test]
    fn ids_and_csrf_tokens_are_random_and_distinct() {
        let store = store(60, 60, 10);
        let t0 = Instant::now();
        let (a, b) = (store.create(ana(), t0), store.create(ana(), t0));
        assert_ne!(a.id, b.id);
        assert_ne!(a.id, a.csrf);
        assert_eq!(a.id.len(), 64);
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            format!("theme=dark; {COOKIE}=abc123; x=1").parse().unwrap(),
        );
        assert_eq!(cookie(&headers).as_deref(), Some("abc123"));
        assert_eq!(cookie(&HeaderMap::new()), None);
    }

    #[test]
    fn requests_from_other_sites_are_told_apart() {
        let headers = |pairs: &[(&'static str, &str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, v.parse().unwrap());
            }
            h
        };
        assert!(!cross_site(&headers(&[("sec-fetch-site", "same-origin")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "cross-site")])));
        assert!(cross_site(&headers(&[("sec-fetch-site", "same-site")])));
        assert!(!cross_site(&headers(&[
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080")
        ])));
        assert!(cross_site(&headers(&[
            ("origin", "https://evil.example"),
            ("host", "127.0.0.1:8080")
        ])));
        assert!(
            !cross_site(&headers(&[("host", "127.0.0.1:8080")])),
            "curl sends no Origin"
        );
    }
}
