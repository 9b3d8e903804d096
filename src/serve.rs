//! The HTTP listener shared by the components of a process: each component
//! contributes routes; this adds `/healthz` and `/metrics` and serves until
//! shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

#[derive(Clone)]
struct Shared {
    registry: Arc<Registry>,
    shutdown: CancellationToken,
}

/// Binds `addr` now (failing fast when it is taken) and returns the bound
/// address and a future that serves `routes` plus health and metrics until
/// `shutdown`, then finishes in-flight requests.
pub async fn bind(
    addr: SocketAddr,
    routes: Router,
    registry: Registry,
    shutdown: CancellationToken,
) -> anyhow::Result<(SocketAddr, impl Future<Output = anyhow::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {addr}: {e}"))?;
    let local = listener.local_addr()?;
    let shared = Shared {
        registry: Arc::new(registry),
        shutdown: shutdown.clone(),
    };
    let app = routes.merge(
        Router::new()
            .route("/healthz", get(healthz))
            .route("/metrics", get(metrics))
            .with_state(shared),
    );
    let serve = async move {
        // The peer address is the login back-off's key (query::auth::peer).
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
            .map_err(|e| anyhow::anyhow!("http server on {local}: {e}"))
    };
    Ok((local, serve))
}

async fn healthz(State(shared): State<Shared>) -> Response {
    if shared.shutdown.is_cancelled() {
        let body = serde_json::json!({"status": "shutting_down"});
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    axum::Json(serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
        .into_response()
}

async fn metrics(State(shared): State<Shared>) -> Response {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &shared.registry) {
        tracing::error!(error = %e, "encoding metrics failed");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
