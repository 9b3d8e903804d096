//! The export API (axum):
//!
//! | route | what |
//! | --- | --- |
//! | `POST /v1/exports` | `{"tenant_id", "from", "to", "where"?, "format"}` → 202 with the status |
//! | `GET /v1/exports` | the exports the token may read, newest first |
//! | `GET /v1/exports/{id}` | status (`queued`, `running`, `done`, `failed`), progress, the manifest and its verification once done |
//! | `GET /v1/exports/{id}/files/{name}` | a part, `manifest.json` or `manifest.json.sig`, streamed |
//! | `GET /v1/keys` | the public keys that verify manifests (no token needed) |
//!
//! Exports need `Authorization: Bearer <token>` (or the console's session) of an auditor or admin whose
//! tenants include the export's. Errors are `{"error", "message"}`, plus
//! `"field"` for a bad request.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::io::AsyncReadExt;
use tooltrail_schemas::http::ApiError;

use super::service::ExportService;
use super::{ExportError, MANIFEST, MANIFEST_SIG};
use crate::Principal;

/// Largest request body accepted.
const MAX_BODY: usize = 64 * 1024;

/// The routes, for merging into the process's listener.
pub fn router(service: ExportService) -> Router {
    Router::new()
        .route("/v1/exports", get(list).post(create))
        .route("/v1/exports/{id}", get(status))
        .route("/v1/exports/{id}/files/{name}", get(file))
        .route("/v1/keys", get(keys))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(service)
}

impl IntoResponse for ExportError {
    fn into_response(self) -> Response {
        if let ExportError::Query(e) = self {
            return e.into_response();
        }
        let status =
            StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = if matches!(self, ExportError::Io { .. } | ExportError::Internal(_)) {
            tracing::error!(error = %tooltrail_schemas::Report(&self), "export request failed");
            "internal error; see the server log".to_string()
        } else {
            self.to_string()
        };
        let error = ApiError::new(status, self.code(), message);
        match &self {
            ExportError::Invalid { field, .. } => error.with_field(*field),
            _ => error,
        }
        .into_response()
    }
}

fn principal(service: &ExportService, headers: &HeaderMap) -> Result<Principal, ExportError> {
    Ok(crate::http::principal(service.engine(), headers)?)
}

async fn create(State(service): State<ExportService>, headers: HeaderMap, body: Body) -> Response {
    let result = async {
        let principal = principal(&service, &headers)?;
        let body: Bytes =
            axum::body::to_bytes(body, MAX_BODY)
                .await
                .map_err(|_| ExportError::Invalid {
                    field: "body",
                    problem: format!("must be at most {MAX_BODY} bytes"),
                })?;
        service.create(&principal, &body).await
    }
    .await;
    match result {
        Ok(view) => {
            let location = view["links"]["self"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let mut response = (StatusCode::ACCEPTED, axum::Json(view)).into_response();
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Err(e) => e.into_response(),
    }
}

async fn list(State(service): State<ExportService>, headers: HeaderMap) -> Response {
    match principal(&service, &headers).and_then(|p| service.list(&p)) {
        Ok(view) => axum::Json(view).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn status(
    State(service): State<ExportService>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let principal = principal(&service, &headers)?;
        service.status(&principal, &id).await
    }
    .await;
    match result {
        Ok(view) => axum::Json(view).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn file(
    State(service): State<ExportService>,
    headers: HeaderMap,
    Path((id, name)): Path<(String, String)>,
) -> Response {
    let result = async {
        let principal = principal(&service, &headers)?;
        let path = service.file(&principal, &id, &name).await?;
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(ExportError::io(&path))?;
        let len = file.metadata().await.map_err(ExportError::io(&path))?.len();
        Ok::<_, ExportError>((file, len))
    }
    .await;
    let (file, len) = match result {
        Ok(opened) => opened,
        Err(e) => return e.into_response(),
    };
    let content_type = if name == MANIFEST {
        "application/json"
    } else if name == MANIFEST_SIG {
        "application/octet-stream"
    } else if name.ends_with(".parquet") {
        "application/vnd.apache.parquet"
    } else if name.ends_with(".csv") {
        "text/csv; charset=utf-8"
    } else {
        "application/x-ndjson"
    };
    let chunks = futures::stream::unfold(Some(file), |file| async move {
        let mut file = file?;
        let mut buf = Vec::with_capacity(256 * 1024);
        match (&mut file).take(256 * 1024).read_to_end(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some((Ok::<_, std::io::Error>(Bytes::from(buf)), Some(file))),
            // Break the body off: the client sees an error, not a short file.
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut response = Response::new(Body::from_stream(chunks));
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, value);
    }
    response
}

async fn keys(State(service): State<ExportService>) -> Response {
    axum::Json(service.keys()).into_response()
}
