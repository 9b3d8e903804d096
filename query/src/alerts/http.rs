//! The alerts API's routes (see [`crate::alerts`] for the table). Every
//! route authenticates through [`crate::http::principal`]: a bearer token, or
//! the console's session behind [`crate::auth::session::protect`].

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde::de::DeserializeOwned;
use serde_json::json;
use tooltrail_schemas::http::ApiError;

use super::list::ListRequest;
use super::triage::{BulkBody, TriageBody};
use super::{AlertsError, AlertsService};
use crate::Principal;

/// Largest request body accepted (a bulk change of 500 ids fits).
const MAX_BODY: usize = 64 * 1024;

/// The routes, for merging into the process's listener.
pub fn router(service: AlertsService) -> Router {
    Router::new()
        .route("/v1/alerts", get(list))
        .route("/v1/alerts/stream", get(stream))
        .route("/v1/alerts/triage", post(bulk))
        .route("/v1/alerts/{id}", get(detail))
        .route("/v1/alerts/{id}/triage", post(triage))
        .route("/v1/users/{tenant}/{user}", get(user))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(service)
}

impl IntoResponse for AlertsError {
    fn into_response(self) -> Response {
        if let AlertsError::Query(e) = self {
            return e.into_response();
        }
        let status =
            StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = match &self {
            AlertsError::Triage(_) => {
                tracing::error!(error = %tooltrail_schemas::Report(&self), "a triage change failed");
                "the triage change was not saved; see the server log".to_owned()
            }
            other => other.to_string(),
        };
        let error = ApiError::new(status, self.code(), message);
        match &self {
            AlertsError::Invalid { field, .. } => error.with_field(*field),
            _ => error,
        }
        .into_response()
    }
}

fn principal(service: &AlertsService, headers: &HeaderMap) -> Result<Principal, AlertsError> {
    Ok(crate::http::principal(service.engine(), headers)?)
}

fn body<T: DeserializeOwned>(bytes: &Bytes) -> Result<T, AlertsError> {
    serde_json::from_slice(bytes).map_err(|e| AlertsError::invalid("body", e.to_string()))
}

fn answer(result: Result<serde_json::Value, AlertsError>) -> Response {
    match result {
        Ok(value) => axum::Json(value).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn list(
    State(service): State<AlertsService>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    answer(
        async {
            let principal = principal(&service, &headers)?;
            let request = ListRequest::parse(&params)?;
            let page = service.list(&principal, &request).await?;
            Ok(json!({"alerts": page.alerts, "next_cursor": page.next_cursor}))
        }
        .await,
    )
}

async fn detail(
    State(service): State<AlertsService>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    answer(
        async {
            let principal = principal(&service, &headers)?;
            service.detail(&principal, &id).await
        }
        .await,
    )
}

async fn triage(
    State(service): State<AlertsService>,
    headers: HeaderMap,
    Path(id): Path<String>,
    bytes: Bytes,
) -> Response {
    answer(
        async {
            let principal = principal(&service, &headers)?;
            let change = body::<TriageBody>(&bytes)?.check()?;
            let row = service.triage(&principal, &id, change).await?;
            Ok(json!({"triage": row}))
        }
        .await,
    )
}

async fn bulk(State(service): State<AlertsService>, headers: HeaderMap, bytes: Bytes) -> Response {
    answer(
        async {
            let principal = principal(&service, &headers)?;
            let (ids, change) = body::<BulkBody>(&bytes)?.check()?;
            let outcome = service.triage_bulk(&principal, &ids, change).await?;
            Ok(json!({"triaged": outcome.triaged, "not_found": outcome.not_found}))
        }
        .await,
    )
}

async fn user(
    State(service): State<AlertsService>,
    headers: HeaderMap,
    Path((tenant, user)): Path<(String, String)>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    answer(
        async {
            let principal = principal(&service, &headers)?;
            let days = match params.get("days").map(String::as_str) {
                None | Some("7") => 7,
                Some("30") => 30,
                Some(other) => {
                    return Err(AlertsError::invalid(
                        "days",
                        format!("{other:?} is not 7 or 30"),
                    ));
                }
            };
            let tenant = super::list::name("tenant", &tenant)?;
            let user = super::list::name("user", &user)?;
            if let Some(unknown) = params.keys().find(|k| *k != "days") {
                return Err(AlertsError::invalid(
                    "query",
                    format!("unknown parameter {unknown:?} (expected days)"),
                ));
            }
            service
                .user(&principal, &tenant, &user, days, Utc::now())
                .await
        }
        .await,
    )
}

async fn stream(State(service): State<AlertsService>, headers: HeaderMap) -> Response {
    match principal(&service, &headers).and_then(|p| service.stream(p)) {
        Ok(stream) => stream.into_response(),
        Err(e) => e.into_response(),
    }
}
