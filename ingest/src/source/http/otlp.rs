//! OTLP/HTTP: `POST /v1/logs` and `POST /v1/traces`.
//!
//! The same door as `/v1/events` (ingest tokens, room for bodies in flight,
//! group commit, an answer only once durable, per-record quarantine), with
//! OTLP's wire rules: `application/x-protobuf` or `application/json` bodies,
//! `Content-Encoding: gzip`, an `Export*ServiceResponse` in the request's
//! encoding whose `partial_success` counts the records quarantined, and
//! errors as a `google.rpc.Status` (400 for a body that does not decode, 401
//! for a missing or unknown token, 415 for another content type, 429 and 503
//! with `Retry-After` when a retry may succeed).

use std::io::Read as _;
use std::ops::Range;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use prost::Message;
use sha2::{Digest, Sha256};
use tooltrail_schemas::{DecodeError, ToolCallEvent, decode};

use super::{Admitted, HttpIngest, Refusal, Size, TENANT_NOT_ALLOWED, allowed, idempotency_key};
use crate::otlp::proto::{
    ExportLogsPartialSuccess, ExportLogsServiceResponse, ExportTracePartialSuccess,
    ExportTraceServiceResponse,
};
use crate::otlp::{Encoding, Mapped, Signal, decode_logs, decode_traces};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// `google.rpc.Status`, the body of an OTLP/HTTP error.
#[derive(Clone, PartialEq, Message)]
struct Status {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// The gRPC code OTLP pairs with an HTTP status.
fn grpc_code(status: StatusCode) -> i32 {
    match status.as_u16() {
        400 | 413 => 3, // INVALID_ARGUMENT
        401 => 16,      // UNAUTHENTICATED
        403 => 7,       // PERMISSION_DENIED
        415 => 12,      // UNIMPLEMENTED
        429 => 8,       // RESOURCE_EXHAUSTED
        503 => 14,      // UNAVAILABLE
        _ => 13,        // INTERNAL
    }
}

/// A response in the request's encoding.
fn encoded(status: StatusCode, encoding: Encoding, protobuf: Vec<u8>, json: Vec<u8>) -> Response {
    let (content_type, body) = match encoding {
        Encoding::Protobuf => (PROTOBUF, protobuf),
        Encoding::Json => (JSON, json),
    };
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// An error as OTLP/HTTP answers it: a `Status` in the request's encoding
/// (protobuf when the content type was not understood).
fn refuse(refusal: Refusal, encoding: Encoding) -> Response {
    let status = Status {
        code: grpc_code(refusal.status),
        message: format!("{}: {}", refusal.code, refusal.message),
    };
    let json = serde_json::json!({"code": status.code, "message": status.message}).to_string();
    let mut response = encoded(
        refusal.status,
        encoding,
        status.encode_to_vec(),
        json.into(),
    );
    if let Some(seconds) = refusal.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static(seconds));
    }
    response
}

/// The request's encoding, from its `Content-Type`.
fn encoding_of(headers: &HeaderMap) -> Result<Encoding, Refusal> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        PROTOBUF => Ok(Encoding::Protobuf),
        JSON => Ok(Encoding::Json),
        _ => Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Content-Type `{content_type}` is not OTLP/HTTP: send {PROTOBUF} or {JSON}"),
        )),
    }
}

/// Whether the body comes gzipped (`Content-Encoding`), or is refused.
fn gzipped(headers: &HeaderMap) -> Result<bool, Refusal> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "identity" | "" => Ok(false),
        "gzip" | "x-gzip" => Ok(true),
        other => Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_encoding",
            format!("Content-Encoding `{other}` is not supported: send gzip or none"),
        )),
    }
}

/// The body, inflated when it came gzipped; at most `limit` bytes either way.
fn inflate(gzipped: bool, body: Bytes, limit: usize) -> Result<Bytes, Refusal> {
    match gzipped {
        false => Ok(body),
        true => {
            let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
            let read = flate2::read::MultiGzDecoder::new(&body[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out);
            match read {
                Err(e) => Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    format!("the gzip body does not inflate: {e}"),
                )),
                Ok(n) if n > limit => Err(Refusal::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!("the request body inflates to over the {limit}-byte limit"),
                )),
                Ok(_) => Ok(out.into()),
            }
        }
    }
}

pub(super) async fn post_logs(
    State(ingest): State<HttpIngest>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    export(ingest, Signal::Logs, headers, body).await
}

pub(super) async fn post_traces(
    State(ingest): State<HttpIngest>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    export(ingest, Signal::Traces, headers, body).await
}

/// One export request, mapped, filed and answered once durable.
async fn export(ingest: HttpIngest, signal: Signal, headers: HeaderMap, body: Body) -> Response {
    let encoding = match encoding_of(&headers) {
        Ok(encoding) => encoding,
        Err(refusal) => return refuse(refusal, Encoding::Protobuf),
    };
    let gzipped = match gzipped(&headers) {
        Ok(gzipped) => gzipped,
        Err(refusal) => return refuse(refusal, encoding),
    };
    // A gzipped body is let in at the most it may inflate to, so that the
    // bodies in flight stay within `http.max_inflight_bytes` inflated.
    let size = if gzipped {
        Size::Inflated
    } else {
        Size::AsSent
    };
    let Admitted {
        grant,
        mut room,
        body,
    } = match ingest.admit(&headers, body, size).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refuse(refusal, encoding),
    };
    let coming = ingest.coming.enter();
    let body = match inflate(gzipped, body, ingest.max_body_bytes) {
        Ok(body) => body,
        Err(refusal) => return refuse(refusal, encoding),
    };
    room.shrink_to(body.len());
    let key = match idempotency_key(&headers) {
        Ok(Some(key)) => Some(key),
        Ok(None) if ingest.dedupe_otlp => Some(content_key(signal, &body)),
        Ok(None) => None,
        Err(message) => {
            return refuse(
                Refusal::new(StatusCode::BAD_REQUEST, "invalid_idempotency_key", message),
                encoding,
            );
        }
    };
    let received_at = Utc::now();
    let window = ingest.window;
    let mapper = ingest.otlp.clone();
    let token = grant.clone();
    let decoded = tokio::task::spawn_blocking(move || {
        let default_tenant = token.as_ref().and_then(|g| g.only_tenant());
        let mapped = match signal {
            Signal::Logs => decode_logs(&body, encoding).map(|r| mapper.logs(&r, default_tenant)),
            Signal::Traces => {
                decode_traces(&body, encoding).map(|r| mapper.traces(&r, default_tenant))
            }
        }?;
        let records = mapped
            .records
            .iter()
            .map(|record| {
                let result = match &record.unmapped {
                    Some(problem) => Err(problem.clone()),
                    None => decode(&mapped.body[record.range.clone()])
                        .and_then(|e| match &token {
                            Some(grant) => allowed(grant, e),
                            None => Ok(e),
                        })
                        .and_then(|e| window.check(e.time, received_at).map(|()| e)),
                };
                (record.range.clone(), result)
            })
            .collect::<Vec<_>>();
        Ok::<_, String>((mapped, records))
    })
    .await;
    let (mapped, records) = match decoded {
        Ok(Ok(decoded)) => decoded,
        Ok(Err(message)) => {
            return refuse(
                Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    format!("not an OTLP {} export request: {message}", signal.as_str()),
                ),
                encoding,
            );
        }
        Err(e) => {
            return refuse(
                Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
                encoding,
            );
        }
    };
    ingest.metrics.otlp(signal.as_str(), "http", &mapped);
    let summary = Summary::of(signal, &records);
    super::warn_refused(grant.as_ref(), summary.refused);
    let Mapped { body, .. } = mapped;
    match ingest
        .submit(key, Bytes::from(body), records, received_at, coming)
        .await
    {
        // A request already committed (a retry) was taken the first time.
        Ok((_, committed)) if committed.duplicate => respond(signal, encoding, 0, String::new()),
        Ok(_) => respond(signal, encoding, summary.rejected, summary.message),
        Err(refusal) => refuse(refusal, encoding),
    }
}

/// The idempotency key of a request without one: its content's hash.
fn content_key(signal: Signal, body: &[u8]) -> String {
    let digest = Sha256::digest(body);
    format!("otlp:{}:{}", signal.as_str(), hex::encode(&digest[..16]))
}

/// What the partial success says about the quarantined records.
struct Summary {
    rejected: i64,
    refused: usize,
    message: String,
}

impl Summary {
    fn of(
        signal: Signal,
        records: &[(Range<usize>, Result<ToolCallEvent, DecodeError>)],
    ) -> Summary {
        let mut by_reason: std::collections::BTreeMap<&'static str, usize> = Default::default();
        let mut first: Option<String> = None;
        for (_, result) in records {
            if let Err(error) = result {
                *by_reason.entry(error.reason()).or_default() += 1;
                first.get_or_insert_with(|| error.to_string());
            }
        }
        let rejected: usize = by_reason.values().sum();
        let refused = by_reason.get(TENANT_NOT_ALLOWED).copied().unwrap_or(0);
        let message = match first {
            None => String::new(),
            Some(first) => {
                let reasons: Vec<String> =
                    by_reason.iter().map(|(r, n)| format!("{n} {r}")).collect();
                format!(
                    "{rejected} of {} {}s quarantined ({}); the first: {first}",
                    records.len(),
                    signal.record(),
                    reasons.join(", "),
                )
            }
        };
        Summary {
            rejected: rejected as i64,
            refused,
            message,
        }
    }
}

/// 200 with the signal's `Export*ServiceResponse`.
fn respond(signal: Signal, encoding: Encoding, rejected: i64, message: String) -> Response {
    let partial = rejected > 0 || !message.is_empty();
    let (count_field, protobuf) = match signal {
        Signal::Logs => (
            "rejectedLogRecords",
            ExportLogsServiceResponse {
                partial_success: partial.then(|| ExportLogsPartialSuccess {
                    rejected_log_records: rejected,
                    error_message: message.clone(),
                }),
            }
            .encode_to_vec(),
        ),
        Signal::Traces => (
            "rejectedSpans",
            ExportTraceServiceResponse {
                partial_success: partial.then(|| ExportTracePartialSuccess {
                    rejected_spans: rejected,
                    error_message: message.clone(),
                }),
            }
            .encode_to_vec(),
        ),
    };
    // OTLP/JSON leaves out what is unset.
    let json = if partial {
        serde_json::json!({"partialSuccess": {count_field: rejected, "errorMessage": message}})
    } else {
        serde_json::json!({})
    };
    encoded(
        StatusCode::OK,
        encoding,
        protobuf,
        json.to_string().into_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_and_encodings_are_told_apart() {
        let with = |pairs: &[(header::HeaderName, &str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(name, value.parse().expect("a header value"));
            }
            headers
        };
        let ct = |v: &str| with(&[(header::CONTENT_TYPE, v)]);
        assert_eq!(
            encoding_of(&ct("application/x-protobuf")).ok(),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            encoding_of(&ct("application/json; charset=utf-8")).ok(),
            Some(Encoding::Json)
        );
        let refused = encoding_of(&ct("text/plain")).expect_err("refused");
        assert_eq!(refused.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(
            refused.message.contains("text/plain"),
            "{}",
            refused.message
        );

        let body = b"{\"resourceLogs\":[]}".repeat(100);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &body).expect("compressed");
        let gz = Bytes::from(gz.finish().expect("compressed"));
        let gzip = gzipped(&with(&[(header::CONTENT_ENCODING, "gzip")])).expect("gzip");
        assert!(gzip);
        assert!(!gzipped(&with(&[])).expect("identity"));
        let inflated = inflate(gzip, gz.clone(), body.len()).expect("inflates");
        assert_eq!(&inflated[..], &body[..]);
        let over = inflate(gzip, gz, body.len() - 1).expect_err("over the limit");
        assert_eq!(over.status, StatusCode::PAYLOAD_TOO_LARGE);
        let garbage = inflate(gzip, Bytes::from_static(b"not gzip"), 100).expect_err("refused");
        assert_eq!(garbage.status, StatusCode::BAD_REQUEST);
        let br = with(&[(header::CONTENT_ENCODING, "br")]);
        let refused = gzipped(&br).expect_err("refused");
        assert_eq!(refused.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn a_partial_success_counts_the_quarantined_records_and_names_the_first() {
        let ok = decode(
            br#"{"schema_version":1,"event_id":"e","time":"2026-11-22T09:30:00Z","tenant_id":"t","user_id":"u","server":"s","method":"m","decision":"allow","status":200}"#,
        );
        let missing = decode(br#"{"schema_version":1}"#);
        let records = vec![(0..0, ok), (0..0, missing.clone()), (0..0, missing)];
        let summary = Summary::of(Signal::Logs, &records);
        assert_eq!(summary.rejected, 2);
        assert!(
            summary
                .message
                .starts_with("2 of 3 log records quarantined (2 missing_field)"),
            "{}",
            summary.message
        );
        let response = respond(Signal::Logs, Encoding::Protobuf, 2, summary.message);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROTOBUF);
    }
}
