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
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::backoff::{Failure, LoginLimiter, Refused};
use crate::error::QueryError;

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
    /// The refusal of a caller that is backing off now (a request let in
    /// just before the refusal started).
    pub fn refused(&self) -> Option<QueryError> {
        self.logins.check(self.ip, "http").err().map(Refused::into)
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
        return QueryError::from(refused).into_response();
    }
    PEER.scope(Peer { ip, logins }, next.run(request)).await
}
