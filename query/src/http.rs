//! The SQL API over HTTP (axum): `POST /v1/sql`, `GET /v1/tables`,
//! `GET /v1/tables/{name}`. Health and metrics come from the process's
//! shared listener.
//!
//! Every request needs `Authorization: Bearer <token>`. Errors are JSON
//! `{"error": "<code>", "message": "…"}` with the status of
//! [`QueryError::http_status`].

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use serde::Deserialize;
use tooltrail_schemas::http::ApiError;

use crate::engine::{Engine, Transport};
use crate::error::QueryError;
use crate::format::{Encoder, Format};
use crate::{Principal, QueryStream};

/// The routes, for merging into the process's listener.
pub fn router(engine: Engine) -> Router {
    Router::new()
        .route("/v1/sql", post(sql))
        .route("/v1/tables", get(tables))
        .route("/v1/tables/{name}", get(table))
        // The SQL length cap is checked on the parsed body, with a JSON error.
        .layer(DefaultBodyLimit::disable())
        .with_state(engine)
}

impl IntoResponse for QueryError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = ApiError::new(status, self.code(), self.to_string()).into_response();
        match self {
            QueryError::Unauthorized => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"tooltrail\""),
                );
            }
            QueryError::LoginsRefused { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
            }
            _ => {}
        }
        response
    }
}

/// The principal of a request's `Authorization: Bearer <token>`, or, without
/// that header, of its console session (set by
/// [`crate::auth::session::protect`] once the CSRF check passed); a missing or
/// wrong token is [`QueryError::Unauthorized`]. Every authenticated route of
/// tooltrail (SQL, alerts, exports, legal holds) goes through here.
///
/// Behind [`crate::auth::peer::guard`], each presented token counts for or
/// against the caller's address in the login back-off, and an address that is
/// backing off has no token checked: 429 `too_many_failed_logins`, from the
/// guard or, for a request already past it when the refusal started, here.
pub fn principal(engine: &Engine, headers: &HeaderMap) -> Result<Principal, QueryError> {
    let peer = crate::auth::peer::current();
    if let Some(refused) = peer.as_ref().and_then(|p| p.refused()) {
        engine.metrics().auth_failures.inc();
        return Err(refused);
    }
    let authorization = headers.get(header::AUTHORIZATION);
    if authorization.is_none()
        && let Some(principal) = crate::auth::session::current()
    {
        return Ok(principal);
    }
    let token = authorization
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match token {
        Some(token) if !token.is_empty() => {
            let principal = engine.authenticate(token);
            if let Some(peer) = &peer {
                peer.record(principal.is_ok());
            }
            principal
        }
        _ => {
            engine.metrics().auth_failures.inc();
            Err(QueryError::Unauthorized)
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SqlRequest {
    sql: String,
    format: Option<String>,
}

async fn sql(State(engine): State<Engine>, headers: HeaderMap, body: Body) -> Response {
    match run_sql(engine, headers, body).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn run_sql(engine: Engine, headers: HeaderMap, body: Body) -> Result<Response, QueryError> {
    let principal = principal(&engine, &headers)?;
    // Room for the SQL escaped in JSON, and the other fields.
    let limit = engine.config().max_sql_bytes * 2 + 4096;
    let body = match read_body(body, limit).await? {
        Ok(body) => body,
        Err((read, head)) => {
            // Refused unread: the audit keeps the start of the body.
            let e = QueryError::SqlTooLarge {
                len: read,
                max: engine.config().max_sql_bytes,
            };
            let head = String::from_utf8_lossy(&head);
            engine
                .audit_refused(&principal, &head, Transport::Http, &e)
                .await?;
            return Err(e);
        }
    };
    let request: SqlRequest = serde_json::from_slice(&body).map_err(|e| {
        QueryError::Sql(format!(
            "the body must be JSON {{\"sql\": \"…\", \"format\": \"json|ndjson|csv|arrow|parquet\"}}: {e}"
        ))
    })?;
    let format = match &request.format {
        Some(f) => f.parse::<Format>().map_err(QueryError::Sql)?,
        None => headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .and_then(Format::from_accept)
            .unwrap_or(Format::Json),
    };
    let mut stream = engine
        .execute(
            &principal,
            &request.sql,
            Transport::Http,
            format.interactive(),
        )
        .await?;
    // Wait for the first batch before committing to 200, so that a query
    // failing early gets its proper status.
    let first = match stream.next().await {
        Some(Err(e)) => return Err(e),
        other => other,
    };
    let schema = stream.schema();
    let mut encoder =
        Encoder::new(format, &schema).map_err(|e| QueryError::Internal(e.to_string()))?;
    let head = encoder.begin(&schema);
    let cap = engine.config().max_rows;
    let body = async_stream(head, first, stream, encoder, cap);
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    if format.interactive() {
        h.insert("x-tooltrail-row-cap", HeaderValue::from(cap as u64));
    }
    Ok(response)
}

/// The request body when it is at most `limit` bytes; otherwise how many
/// bytes were read before giving up, and the first
/// [`AUDIT_PREFIX_BYTES`](crate::engine::AUDIT_PREFIX_BYTES) of them.
async fn read_body(
    body: Body,
    limit: usize,
) -> Result<Result<Bytes, (usize, Vec<u8>)>, QueryError> {
    let mut chunks = body.into_data_stream();
    let mut read = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| QueryError::Sql(format!("reading the request body: {e}")))?;
        if read.len() + chunk.len() > limit {
            let total = read.len() + chunk.len();
            read.extend_from_slice(&chunk);
            read.truncate(crate::engine::AUDIT_PREFIX_BYTES);
            return Ok(Err((total, read)));
        }
        read.extend_from_slice(&chunk);
    }
    Ok(Ok(Bytes::from(read)))
}

/// The body: the head, each batch as it comes, then the close, or an error
/// record / a broken body if the query fails midway.
fn async_stream(
    head: Vec<u8>,
    first: Option<Result<arrow::array::RecordBatch, QueryError>>,
    stream: QueryStream,
    encoder: Encoder,
    cap: usize,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    struct St {
        head: Option<Vec<u8>>,
        first: Option<Option<Result<arrow::array::RecordBatch, QueryError>>>,
        stream: QueryStream,
        encoder: Encoder,
        cap: usize,
        done: bool,
    }
    let state = St {
        head: Some(head),
        first: Some(first),
        stream,
        encoder,
        cap,
        done: false,
    };
    futures::stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if let Some(head) = st.head.take()
            && !head.is_empty()
        {
            return Some((Ok(Bytes::from(head)), st));
        }
        let next = match st.first.take() {
            Some(first) => first,
            None => st.stream.next().await,
        };
        let item = match next {
            Some(Ok(batch)) => st
                .encoder
                .batch(&batch)
                .map_err(|e| QueryError::Internal(e.to_string())),
            None => {
                st.done = true;
                let truncated = st.stream.truncated().then_some(st.cap);
                st.encoder
                    .finish(truncated)
                    .map_err(|e| QueryError::Internal(e.to_string()))
            }
            Some(Err(e)) => Err(e),
        };
        match item {
            Ok(bytes) => Some((Ok(Bytes::from(bytes)), st)),
            Err(e) => {
                st.done = true;
                tracing::warn!(query_id = st.stream.query_id(), error = %e, "query failed while streaming");
                match st.encoder.fail(e.code(), &e.to_string()) {
                    Some(record) => Some((Ok(Bytes::from(record)), st)),
                    // Break the chunked body off: the client sees an error,
                    // never a result that merely looks short.
                    None => Some((Err(std::io::Error::other(e.to_string())), st)),
                }
            }
        }
    })
}

async fn tables(State(engine): State<Engine>, headers: HeaderMap) -> Response {
    let principal = match principal(&engine, &headers) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let list: Vec<serde_json::Value> = engine
        .tables(&principal)
        .into_iter()
        .map(|t| serde_json::json!({"name": t.name(), "description": t.description()}))
        .collect();
    axum::Json(serde_json::json!({"tables": list})).into_response()
}

async fn table(
    State(engine): State<Engine>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let result = principal(&engine, &headers).and_then(|p| engine.table_schema(&p, &name));
    match result {
        Ok(schema) => {
            let columns: Vec<serde_json::Value> = schema
                .fields()
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "name": f.name(),
                        "type": f.data_type().to_string(),
                        "nullable": f.is_nullable(),
                    })
                })
                .collect();
            axum::Json(serde_json::json!({"name": name, "columns": columns})).into_response()
        }
        Err(e) => e.into_response(),
    }
}
