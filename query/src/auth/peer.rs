//! The login back-off on the HTTP API. [`guard`] wraps the authenticated
//! routes (SQL, exports, legal holds): a request from an address that is
//! backing off gets 429 `too_many_failed_logins` with `Retry-After` before
//! any handler runs; the others run with their address in scope, so that
//! [`crate::http::principal`], the one door of those routes, records each
//! failed or successful login ([`current`]).
//!
//! The address is the TCP peer (axum's `ConnectInfo`), never a header a
//! client can write: behind a reverse proxy every request has the proxy's
//! address, and `query.login_backoff.max_failures = 0` turns the back-off off.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::backoff::{Failure, LoginLimiter};

tokio::task_local! {
    static PEER: Peer;
}

/// The caller of the request being served, and the back-off it answers to.
#[derive(Debug, Clone)]
pub struct Peer {
    pub ip: IpAddr,
    logins: Arc<LoginLimiter>,
}

impl Peer {
    /// Whether the caller is backing off now (a request let in just before
    /// the refusal started).
    pub fn refused(&self) -> bool {
        self.logins.check(self.ip, "http").is_err()
    }

    /// Records a login that presented a token: `ok` if it was right.
    pub fn record(&self, ok: bool) -> Option<Failure> {
        if ok {
            self.logins.success(self.ip);
            None
        } else {
            Some(self.logins.failure(self.ip, "http"))
        }
    }
}

/// The caller of the request being served, if it came through [`guard`].
pub fn current() -> Option<Peer> {
    PEER.try_with(Peer::clone).ok()
}

/// `routes` behind the back-off. The server must provide
/// `ConnectInfo<SocketAddr>` (`into_make_service_with_connect_info`);
/// without it, requests pass unguarded.
pub fn guard(routes: Router, logins: Arc<LoginLimiter>) -> Router {
    routes.layer(axum::middleware::from_fn_with_state(logins, layer))
}

async fn layer(State(logins): State<Arc<LoginLimiter>>, request: Request, next: Next) -> Response {
    let Some(ConnectInfo(addr)) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .copied()
    else {
        return next.run(request).await;
    };
    let ip = addr.ip();
    if let Err(refused) = logins.check(ip, "http") {
        let secs =
            refused.retry_after.as_secs() + u64::from(refused.retry_after.subsec_nanos() > 0);
        let body = serde_json::json!({
            "error": "too_many_failed_logins",
            "message": format!("too many failed logins from this address: try again in {secs}s"),
        });
        let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        return response;
    }
    PEER.scope(Peer { ip, logins }, next.run(request)).await
}
