//! The legal-hold admin API (the holds themselves are
//! `tooltrail_lake::retention`'s), merged into `up`'s listener:
//!
//! - `GET /v1/legal-holds`: every hold on the caller's tenants, configured
//!   and set through the API;
//! - `POST /v1/legal-holds` with `{"tenant", "from"?, "to"?, "reason"}`:
//!   201 and the hold, with its new `id`;
//! - `DELETE /v1/legal-holds/{id}`: 200 and the removed hold; 404 if no such
//!   hold was set through the API; 409 for a configured hold.
//!
//! A bearer token of role `admin` is required (401 without a valid one, 403
//! for other roles), and a hold can only name a tenant the token covers.
//! Errors are `{"error": "<code>", "message": "…"}`. Setting and removing a
//! hold is logged at INFO with who did it.

use std::sync::Arc;

use crate::{Engine, Principal, QueryError, Role};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use tooltrail_lake::retention::{Error as HoldError, HoldStore, LegalHold, NewHold};

#[derive(Clone)]
struct Admin {
    holds: Arc<HoldStore>,
    query: Engine,
}

/// The routes, for merging into the process's listener.
pub fn router(holds: HoldStore, query: Engine) -> Router {
    let state = Admin {
        holds: Arc::new(holds),
        query,
    };
    Router::new()
        .route("/v1/legal-holds", get(list).post(create))
        .route("/v1/legal-holds/{id}", delete(remove))
        .with_state(state)
}

use tooltrail_schemas::http::error_response as error;

/// The caller, if it holds an admin token.
fn admin(state: &Admin, headers: &HeaderMap) -> Result<Principal, QueryError> {
    let principal = crate::http::principal(&state.query, headers)?;
    if principal.role < Role::Admin {
        let message = format!(
            "legal holds need the admin role; {} is {}",
            principal.name, principal.role
        );
        return Err(QueryError::Forbidden(message));
    }
    Ok(principal)
}

fn internal(failure: HoldError) -> Response {
    tracing::error!(error = %tooltrail_schemas::Report(&failure), "legal hold store failed");
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the legal hold store failed; see the server log",
    )
}

async fn list(State(state): State<Admin>, headers: HeaderMap) -> Response {
    let principal = match admin(&state, &headers) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let holds = match state.holds.all().await {
        Ok(holds) => holds,
        Err(e) => return internal(e),
    };
    let visible: Vec<&LegalHold> = holds
        .iter()
        .filter(|h| principal.tenants.allows(&h.tenant))
        .collect();
    axum::Json(serde_json::json!({"holds": visible})).into_response()
}

async fn create(State(state): State<Admin>, headers: HeaderMap, body: Bytes) -> Response {
    let principal = match admin(&state, &headers) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let new: NewHold = match serde_json::from_slice(&body) {
        Ok(new) => new,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                "invalid_hold",
                format!(
                    "the body must be JSON {{\"tenant\", \"from\"?, \"to\"?, \"reason\"}}: {e}"
                ),
            );
        }
    };
    if !principal.tenants.allows(new.tenant.trim()) {
        return QueryError::Forbidden(format!(
            "{} may not set holds on tenant {}",
            principal.name, new.tenant
        ))
        .into_response();
    }
    let hold = match state
        .holds
        .add(new, &principal.name, chrono::Utc::now())
        .await
    {
        Ok(hold) => hold,
        Err(e @ HoldError::InvalidHold { .. }) => {
            return error(StatusCode::BAD_REQUEST, "invalid_hold", e.to_string());
        }
        Err(e) => return internal(e),
    };
    log_change(&hold, &principal, "set");
    let mut response = (StatusCode::CREATED, axum::Json(&hold)).into_response();
    if let Ok(location) = HeaderValue::from_str(&format!("/v1/legal-holds/{}", hold.id)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

async fn remove(
    State(state): State<Admin>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let principal = match admin(&state, &headers) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    // A hold on a tenant the caller does not cover is as good as absent.
    let all = match state.holds.all().await {
        Ok(all) => all,
        Err(e) => return internal(e),
    };
    if let Some(hold) = all.iter().find(|h| h.id == id)
        && !principal.tenants.allows(&hold.tenant)
    {
        return not_found(&id);
    }
    let removed = match state.holds.remove(&id).await {
        Ok(hold) => hold,
        Err(e @ HoldError::HoldInConfig { .. }) => {
            return error(StatusCode::CONFLICT, "hold_in_config", e.to_string());
        }
        Err(HoldError::HoldNotFound { .. }) => return not_found(&id),
        Err(e) => return internal(e),
    };
    log_change(&removed, &principal, "removed");
    axum::Json(serde_json::json!({"removed": removed})).into_response()
}

/// Logs who set or removed a hold, and which.
fn log_change(hold: &LegalHold, by: &Principal, change: &'static str) {
    tracing::info!(
        hold = %hold.id,
        tenant = %hold.tenant,
        range = %hold.range(),
        reason = %hold.reason,
        by = %by.name,
        "legal hold {change}"
    );
}

fn not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no legal hold `{id}` was set through the API"),
    )
}
