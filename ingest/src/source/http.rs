//! `POST /v1/events`: NDJSON or a JSON array of events, answered only once the
//! accepted events are durable in the lake; OTLP/HTTP's `/v1/logs` and
//! `/v1/traces` (module `otlp`) through the same door and committer.
//!
//! Handlers decode off the IO threads and hand their records to one committer
//! task, which gathers requests into one transaction (group commit), then
//! answers them all. Once it has one, it also takes the requests still being
//! decoded, waiting for them up to the group-commit delay; with none on the
//! way it commits at once.
//!
//! An `Idempotency-Key` header makes a retry safe: a key the lake already holds
//! is answered without writing anything again. The lake holds such keys for
//! [`tooltrail_lake::keys::KEY_TTL`] after their commit.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::{DateTime, Utc};
use prometheus_client::metrics::gauge::Gauge;
use serde::Serialize;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tooltrail_schemas::http::error_response;
use tooltrail_schemas::lake::Source;
use tooltrail_schemas::{DecodeError, ToolCallEvent, decode};

use crate::batch::Pending;
use crate::config::{HttpConfig, IngestConfig, OtlpConfig};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use tooltrail_lake::{KeyState, Writer};

mod otlp;

/// Accepted events, as handed to whoever else consumes the stream (the detector).
pub type EventTap = mpsc::Sender<Vec<ToolCallEvent>>;

/// One request's records, decoded, waiting for the committer.
struct Submission {
    request_id: String,
    idempotency_key: Option<String>,
    body: Bytes,
    records: Vec<(Range<usize>, Result<ToolCallEvent, DecodeError>)>,
    received_at: DateTime<Utc>,
    reply: oneshot::Sender<Result<Committed, String>>,
    /// Counted among the requests on their way until the committer takes it.
    coming: Option<OnTheWay>,
}

/// Requests past admission that the committer has not taken yet: being
/// decoded, or queued. The group commit waits for them.
#[derive(Default)]
struct Coming {
    count: AtomicUsize,
    /// Told each time one arrives or gives up.
    changed: Notify,
}

impl Coming {
    fn enter(self: &Arc<Self>) -> OnTheWay {
        self.count.fetch_add(1, Ordering::SeqCst);
        OnTheWay(self.clone())
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

/// One request on its way to the committer, counted in [`Coming`] until
/// dropped: when the committer takes it, or when the request fails first.
struct OnTheWay(Arc<Coming>);

impl Drop for OnTheWay {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_one();
    }
}

struct Committed {
    duplicate: bool,
}

/// The handle request handlers submit through.
#[derive(Clone)]
pub struct HttpIngest {
    submit: mpsc::Sender<Submission>,
    max_body_bytes: usize,
    /// Room for request bodies in flight, in KiB (`http.max_inflight_bytes`).
    inflight: Arc<Semaphore>,
    metrics: Metrics,
    /// `http.ingest_tokens`, by the SHA-256 of the token. Empty: open.
    tokens: Arc<Vec<([u8; 32], Arc<Grant>)>>,
    window: crate::batch::TimeWindow,
    /// `[otlp.mapping]`, for `/v1/logs` and `/v1/traces`.
    otlp: crate::otlp::Mapper,
    /// `otlp.dedupe_requests`.
    dedupe_otlp: bool,
    coming: Arc<Coming>,
}

/// What one ingest token may write.
#[derive(Debug)]
struct Grant {
    /// The token's `name`, for the quarantine and logs.
    name: String,
    /// `None`: every tenant (`["*"]`).
    tenants: Option<HashSet<String>>,
}

impl Grant {
    fn allows(&self, tenant: &str) -> bool {
        self.tenants.as_ref().is_none_or(|t| t.contains(tenant))
    }

    /// The token's tenant, when it is bound to exactly one.
    fn only_tenant(&self) -> Option<&str> {
        match &self.tenants {
            Some(tenants) if tenants.len() == 1 => tenants.iter().next().map(String::as_str),
            _ => None,
        }
    }
}

/// Who sent a request.
enum Caller {
    /// No token is configured: anyone may write any tenant.
    Anyone,
    /// The holder of this token.
    Token(Arc<Grant>),
}

/// The committer: owns the lake's writer for HTTP ingest.
pub struct Committer {
    writer: Writer,
    receive: mpsc::Receiver<Submission>,
    coming: Arc<Coming>,
    config: HttpConfig,
    ingest: IngestConfig,
    metrics: Metrics,
    tap: Option<EventTap>,
}

/// Builds the handle and its committer. Run the committer with [`Committer::run`].
pub fn build(
    writer: Writer,
    http: &HttpConfig,
    ingest: &IngestConfig,
    otlp: &OtlpConfig,
    metrics: Metrics,
    tap: Option<EventTap>,
) -> (HttpIngest, Committer) {
    let (submit, receive) = mpsc::channel(1024);
    let coming = Arc::new(Coming::default());
    let handle = HttpIngest {
        submit,
        max_body_bytes: http.max_body_bytes,
        inflight: Arc::new(Semaphore::new(
            kib(http.max_inflight_bytes.max(http.max_body_bytes)) as usize,
        )),
        metrics: metrics.clone(),
        tokens: Arc::new(
            http.ingest_tokens
                .iter()
                .map(|t| {
                    let mut hash = [0u8; 32];
                    // Validated as 64 lowercase hex digits when loaded; a
                    // token built otherwise matches nothing.
                    let _ = hex::decode_to_slice(&t.sha256, &mut hash);
                    let tenants = (!t.tenants.iter().any(|t| t == "*"))
                        .then(|| t.tenants.iter().cloned().collect());
                    let grant = Grant {
                        name: t.name.clone(),
                        tenants,
                    };
                    (hash, Arc::new(grant))
                })
                .collect(),
        ),
        window: ingest.time_window(),
        otlp: crate::otlp::Mapper::new(&otlp.mapping),
        dedupe_otlp: otlp.dedupe_requests,
        coming: coming.clone(),
    };
    let committer = Committer {
        writer,
        receive,
        coming,
        config: http.clone(),
        ingest: ingest.clone(),
        metrics,
        tap,
    };
    (handle, committer)
}

/// How long a request waits for room among the bodies in flight before it
/// gets 503.
const OVERLOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A request's room among the bodies in flight, shown in
/// `tooltrail_ingest_http_inflight_bytes` while it is held.
struct Room {
    permit: OwnedSemaphorePermit,
    bytes: i64,
    gauge: Gauge,
}

impl Room {
    fn new(permit: OwnedSemaphorePermit, bytes: usize, gauge: Gauge) -> Room {
        let bytes = bytes as i64;
        gauge.inc_by(bytes);
        Room {
            permit,
            bytes,
            gauge,
        }
    }

    /// Gives back what is over `bytes`: a compressed body was let in at the
    /// most it could inflate to, and is held at what it did.
    pub(super) fn shrink_to(&mut self, bytes: usize) {
        let keep = kib(bytes).max(1) as usize;
        let held = self.permit.num_permits();
        if keep < held {
            drop(self.permit.split(held - keep));
            let bytes = bytes as i64;
            self.gauge.dec_by(self.bytes - bytes);
            self.bytes = bytes;
        }
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        self.gauge.dec_by(self.bytes);
    }
}

/// Reads and drops up to `limit` bytes of `body`, holding none of it.
async fn drain(body: Body, limit: usize) {
    use futures::StreamExt;
    let mut data = body.into_data_stream();
    let mut read = 0;
    while read <= limit {
        match data.next().await {
            Some(Ok(chunk)) => read += chunk.len(),
            _ => break,
        }
    }
}

/// Bytes as whole KiB, rounded up: the unit of `HttpIngest::inflight`.
fn kib(bytes: usize) -> u32 {
    bytes.div_ceil(1024).min(u32::MAX as usize) as u32
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl HttpIngest {
    /// The routes this source serves.
    pub fn router(self) -> Router {
        Router::new()
            .route("/v1/events", post(post_events))
            .route("/v1/logs", post(otlp::post_logs))
            .route("/v1/traces", post(otlp::post_traces))
            .with_state(self)
    }

    /// Who presented the request's bearer token; `None` when a token is
    /// required and none valid was given.
    fn caller(&self, headers: &HeaderMap) -> Option<Caller> {
        if self.tokens.is_empty() {
            return Some(Caller::Anyone);
        }
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))?;
        let presented = sha256(token.as_bytes());
        // Compare against every token's hash, in constant time, without
        // stopping early or branching on a match: `found` is 1 + the index.
        let mut found = 0u32;
        for (i, (hash, _)) in self.tokens.iter().enumerate() {
            let index = u32::try_from(i + 1).unwrap_or(u32::MAX);
            found = u32::conditional_select(&found, &index, hash.ct_eq(&presented));
        }
        let (_, grant) = self.tokens.get((found as usize).checked_sub(1)?)?;
        Some(Caller::Token(Arc::clone(grant)))
    }
}

#[derive(Serialize)]
struct Rejection {
    index: usize,
    reason: &'static str,
    field: Option<String>,
    error: String,
}

#[derive(Serialize)]
struct Reply {
    request_id: String,
    accepted: usize,
    rejected: Vec<Rejection>,
    /// True when the `Idempotency-Key` was already committed: nothing was written.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    duplicate: bool,
}

/// Longest `Idempotency-Key` taken, in bytes (as Stripe's): the key is held
/// in the lake's state for a day and written into its log.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 255;

/// The request's `Idempotency-Key`, as the lake's key (`http:<key>`). A key
/// that cannot be used is refused rather than ignored: ignoring it would turn
/// the client's retry into a duplicate.
fn idempotency_key(headers: &HeaderMap) -> std::result::Result<Option<String>, String> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .map_err(|_| "the Idempotency-Key header must be printable ASCII".to_string())?
        .trim();
    if key.is_empty() {
        return Err("the Idempotency-Key header is empty".into());
    }
    if key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(format!(
            "the Idempotency-Key header is {} bytes long; at most {MAX_IDEMPOTENCY_KEY_BYTES} are allowed",
            key.len()
        ));
    }
    Ok(Some(format!("http:{key}")))
}

/// Why a request was not taken, before or at its commit. Each route writes
/// it in its own body format.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// `Retry-After`, in seconds, for a refusal worth retrying.
    retry_after: Option<&'static str>,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn retry_after(mut self, seconds: &'static str) -> Refusal {
        self.retry_after = Some(seconds);
        self
    }

    /// The `{"error", "message"}` body of `/v1/events`.
    fn into_response(self) -> Response {
        let mut response = error_response(self.status, self.code, self.message);
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                header::HeaderValue::from_static(seconds),
            );
        }
        response
    }
}

/// A request let in: who sent it, its room among the bodies in flight, and
/// its body.
struct Admitted {
    /// `None`: no token is configured.
    grant: Option<Arc<Grant>>,
    room: Room,
    body: Bytes,
}

/// How much room a request's body takes among the bodies in flight.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Size {
    /// Its length, as announced.
    AsSent,
    /// The most a body may be (`http.max_body_bytes`): it comes compressed,
    /// and is held inflated.
    Inflated,
}

impl HttpIngest {
    /// Authenticates a request, waits for room for its body and reads it.
    async fn admit(
        &self,
        headers: &HeaderMap,
        body: Body,
        size: Size,
    ) -> Result<Admitted, Refusal> {
        let Some(caller) = self.caller(headers) else {
            return Err(Refusal::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required",
            ));
        };
        let grant = match caller {
            Caller::Anyone => None,
            Caller::Token(grant) => Some(grant),
        };
        // Room for the body before reading it: by its announced length, or the
        // most it may be. A longer announced body gets 413 from the read below.
        let announced = match size {
            Size::AsSent => headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(self.max_body_bytes)
                .min(self.max_body_bytes),
            Size::Inflated => self.max_body_bytes,
        };
        let Ok(Ok(permit)) = tokio::time::timeout(
            OVERLOAD_WAIT,
            Arc::clone(&self.inflight).acquire_many_owned(kib(announced).max(1)),
        )
        .await
        else {
            self.metrics.http_overloaded.inc();
            // Read the body and let it go, so that the client sees the answer
            // rather than a connection closed while it was still sending.
            drain(body, self.max_body_bytes).await;
            return Err(Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded",
                "too many request bodies in flight (http.max_inflight_bytes); retry in a moment, with the same Idempotency-Key",
            )
            .retry_after("1"));
        };
        let room = Room::new(permit, announced, self.metrics.http_inflight_bytes.clone());
        let body = axum::body::to_bytes(body, self.max_body_bytes)
            .await
            .map_err(|_| {
                Refusal::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    format!(
                        "the request body is over the {}-byte limit",
                        self.max_body_bytes
                    ),
                )
            })?;
        Ok(Admitted { grant, room, body })
    }

    /// Hands decoded records to the committer and waits until they are
    /// durable (or the key was committed before).
    async fn submit(
        &self,
        idempotency_key: Option<String>,
        body: Bytes,
        records: Vec<(Range<usize>, Result<ToolCallEvent, DecodeError>)>,
        received_at: DateTime<Utc>,
        coming: OnTheWay,
    ) -> Result<(String, Committed), Refusal> {
        let request_id = uuid::Uuid::now_v7().simple().to_string();
        let (reply, answer) = oneshot::channel();
        let submission = Submission {
            request_id: request_id.clone(),
            idempotency_key,
            body,
            records,
            received_at,
            reply,
            coming: Some(coming),
        };
        let shutting_down = || {
            Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                "ingest is shutting down",
            )
            .retry_after("5")
        };
        if self.submit.send(submission).await.is_err() {
            return Err(shutting_down());
        }
        match answer.await {
            Ok(Ok(committed)) => Ok((request_id, committed)),
            Ok(Err(message)) => {
                Err(
                    Refusal::new(StatusCode::SERVICE_UNAVAILABLE, "lake_unavailable", message)
                        .retry_after("1"),
                )
            }
            Err(_) => Err(shutting_down()),
        }
    }
}

/// Warns once per request about records its token may not write.
fn warn_refused(grant: Option<&Arc<Grant>>, refused: usize) {
    if let Some(grant) = grant
        && refused > 0
    {
        tracing::warn!(
            token = %grant.name,
            refused,
            "ingest token sent events of tenants it may not write; quarantined"
        );
    }
}

async fn post_events(State(ingest): State<HttpIngest>, headers: HeaderMap, body: Body) -> Response {
    let Admitted {
        grant,
        room: _room,
        body,
    } = match ingest.admit(&headers, body, Size::AsSent).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal.into_response(),
    };
    let coming = ingest.coming.enter();
    let idempotency_key = match idempotency_key(&headers) {
        Ok(key) => key,
        Err(message) => {
            return error_response(StatusCode::BAD_REQUEST, "invalid_idempotency_key", message);
        }
    };
    let is_json_array = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    let received_at = Utc::now();
    let window = ingest.window;
    let decode_body = body.clone();
    let token = grant.clone();
    let decoded = tokio::task::spawn_blocking(move || {
        let ranges = if is_json_array {
            split_array(&decode_body)
        } else {
            Ok(split_lines(&decode_body))
        };
        ranges.map(|ranges| {
            ranges
                .into_iter()
                .map(|r| {
                    let result = decode(&decode_body[r.clone()])
                        .and_then(|e| match &token {
                            Some(grant) => allowed(grant, e),
                            None => Ok(e),
                        })
                        .and_then(|e| window.check(e.time, received_at).map(|()| e));
                    (r, result)
                })
                .collect::<Vec<_>>()
        })
    })
    .await;
    let records = match decoded {
        Ok(Ok(records)) => records,
        Ok(Err(message)) => {
            return error_response(StatusCode::BAD_REQUEST, "invalid_body", message);
        }
        Err(e) => {
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string());
        }
    };
    let rejected: Vec<Rejection> = records
        .iter()
        .enumerate()
        .filter_map(|(index, (_, r))| {
            r.as_ref().err().map(|e| Rejection {
                index,
                reason: e.reason(),
                field: e.field_name().map(str::to_owned),
                error: e.to_string(),
            })
        })
        .collect();
    let accepted = records.len() - rejected.len();
    warn_refused(
        grant.as_ref(),
        rejected
            .iter()
            .filter(|r| r.reason == TENANT_NOT_ALLOWED)
            .count(),
    );
    match ingest
        .submit(idempotency_key, body, records, received_at, coming)
        .await
    {
        Ok((request_id, committed)) => {
            let accepted = if committed.duplicate { 0 } else { accepted };
            let reply = Reply {
                request_id,
                accepted,
                rejected,
                duplicate: committed.duplicate,
            };
            (StatusCode::OK, axum::Json(reply)).into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// The reason code of an event its token may not write.
const TENANT_NOT_ALLOWED: &str = "tenant_not_allowed";

/// `event`, if `grant` may write its tenant.
fn allowed(grant: &Grant, event: ToolCallEvent) -> Result<ToolCallEvent, DecodeError> {
    if grant.allows(&event.tenant_id) {
        return Ok(event);
    }
    Err(DecodeError::TenantNotAllowed {
        tenant: event.tenant_id,
        credential: format!("ingest token `{}`", grant.name),
    })
}

/// Line ranges of an NDJSON body, blank lines skipped.
fn split_lines(body: &[u8]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in body.iter().enumerate() {
        if *b == b'\n' {
            push_trimmed(body, start..i, &mut out);
            start = i + 1;
        }
    }
    push_trimmed(body, start..body.len(), &mut out);
    out
}

fn push_trimmed(body: &[u8], mut range: Range<usize>, out: &mut Vec<Range<usize>>) {
    if range.end > range.start && body[range.end - 1] == b'\r' {
        range.end -= 1;
    }
    if body[range.clone()].iter().any(|b| !b.is_ascii_whitespace()) {
        out.push(range);
    }
}

/// Element ranges of a JSON array body.
fn split_array(body: &[u8]) -> Result<Vec<Range<usize>>, String> {
    let elements: Vec<&serde_json::value::RawValue> =
        serde_json::from_slice(body).map_err(|e| format!("body is not a JSON array: {e}"))?;
    let base = body.as_ptr() as usize;
    Ok(elements
        .into_iter()
        .map(|raw| {
            let start = raw.get().as_ptr() as usize - base;
            start..start + raw.get().len()
        })
        .collect())
}

impl Committer {
    /// Gathers submissions into transactions until `shutdown`, then commits
    /// what is left and returns.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<()> {
        loop {
            let first = tokio::select! {
                biased;
                s = self.receive.recv() => s,
                () = shutdown.cancelled() => {
                    self.receive.close();
                    self.receive.recv().await
                }
            };
            let Some(first) = first else { return Ok(()) };
            let batch = self.gather(first).await;
            self.commit(batch).await?;
        }
    }

    /// `first` and the requests that join it: those queued, and those still
    /// being decoded, waited for up to `http.group_commit_delay` (a request
    /// decoded at the same time as `first` shares its commit instead of
    /// waiting for the next). With none on the way, no wait.
    async fn gather(&mut self, first: Submission) -> Vec<Submission> {
        let deadline = Instant::now() + self.config.group_commit_delay;
        let mut records = 0;
        let mut batch = Vec::new();
        let mut next = Some(first);
        loop {
            if let Some(mut s) = next.take() {
                // Taken: no longer on its way.
                s.coming = None;
                records += s.records.len();
                batch.push(s);
            }
            if records >= self.ingest.max_batch_records {
                return batch;
            }
            if let Ok(s) = self.receive.try_recv() {
                next = Some(s);
                continue;
            }
            if self.coming.count() == 0 {
                return batch;
            }
            // A request that arrived or gave up since the count was read left
            // a permit: this wait then ends at once, and the loop looks again.
            let changed = self.coming.changed.notified();
            tokio::select! {
                s = self.receive.recv() => match s {
                    Some(s) => next = Some(s),
                    None => return batch,
                },
                () = changed => {}
                () = tokio::time::sleep_until(deadline) => return batch,
            }
        }
    }

    async fn commit(&mut self, batch: Vec<Submission>) -> Result<()> {
        // What the lake holds under each request's key, as of now.
        let mut held = Vec::with_capacity(batch.len());
        let mut checked = Ok(());
        for sub in &batch {
            let state = match &sub.idempotency_key {
                Some(key) if checked.is_ok() => match self.writer.key_state(key).await {
                    Ok(state) => state,
                    Err(e) => {
                        checked = Err(Error::from(e));
                        KeyState::New
                    }
                },
                _ => KeyState::New,
            };
            held.push(state);
        }
        let metrics = self.metrics.clone();
        let window = self.ingest.time_window();
        let tapping = self.tap.is_some();
        let (replies, taken, tapped) = tokio::task::spawn_blocking(move || {
            let mut pending = Pending::new(window);
            let mut replies = Vec::with_capacity(batch.len());
            let mut tapped = Vec::new();
            let mut seen_keys = std::collections::HashSet::new();
            for (sub, held) in batch.into_iter().zip(held) {
                let key = sub.idempotency_key;
                let duplicate = key
                    .as_ref()
                    .is_some_and(|k| held == KeyState::Committed || !seen_keys.insert(k.clone()));
                if !duplicate {
                    if let Some(key) = &key {
                        pending.add_key(key.clone());
                    }
                    // A retry of a request whose rejects are in already (a
                    // crash fell between the two commits): its events only.
                    pending.file_rejects(held != KeyState::Quarantined);
                    for (index, (range, decoded)) in sub.records.into_iter().enumerate() {
                        let source = Source::Http {
                            request_id: &sub.request_id,
                            index: index as i64,
                        };
                        let raw = &sub.body[range];
                        // A rejection is filed in the quarantine; the reply counted it.
                        let _ = match decoded {
                            Ok(event) => {
                                let filed =
                                    pending.push_decoded(raw, Ok(&event), sub.received_at, source);
                                // Decoded once, by the handler: the detector takes it as is.
                                if tapping {
                                    tapped.push(event);
                                }
                                filed
                            }
                            Err(error) => {
                                pending.push_decoded(raw, Err(error), sub.received_at, source)
                            }
                        };
                    }
                }
                replies.push((sub.reply, key, duplicate));
            }
            let taken = if pending.is_empty() {
                Ok(None)
            } else {
                pending.take().map(Some)
            };
            (replies, taken, tapped)
        })
        .await
        .map_err(|_| Error::WriterGone)?;
        let outcome = match (checked, taken) {
            (Err(e), _) | (_, Err(e)) => Err(e),
            (Ok(()), Ok(None)) => Ok(()),
            (Ok(()), Ok(Some((batch, stats)))) => {
                crate::batch::commit(&mut self.writer, batch, &stats, &metrics, "http")
                    .await
                    .map(drop)
            }
        };
        for (reply, key, duplicate) in replies {
            let answer = match &outcome {
                Ok(()) => Ok(Committed { duplicate }),
                // Another writer committed this request's key first: what it
                // holds under the key is this request's retry, already in.
                Err(Error::Lake(tooltrail_lake::Error::KeyConflict { key: taken, .. }))
                    if key.as_ref() == Some(taken) =>
                {
                    Ok(Committed { duplicate: true })
                }
                Err(Error::Lake(tooltrail_lake::Error::KeyConflict { .. })) => Err(
                    "another writer committed a request of this batch first; retry with the same Idempotency-Key"
                        .to_string(),
                ),
                Err(e) => Err(e.to_string()),
            };
            // A client that hung up is not waiting for the answer.
            let _ = reply.send(answer);
        }
        match outcome {
            Ok(()) => {
                if let Some(tap) = &self.tap
                    && !tapped.is_empty()
                    && tap.send(tapped).await.is_err()
                {
                    self.metrics.detector_gone.inc();
                    return Err(Error::DetectorGone);
                }
                Ok(())
            }
            Err(Error::Lake(tooltrail_lake::Error::KeyConflict { key, .. })) => {
                tracing::warn!(%key, "another writer committed an idempotency key of this batch first; its request was answered as a duplicate, the others 503");
                // The writer's view of the keys is stale: read the new commits.
                self.writer.refresh().await?;
                Ok(())
            }
            Err(e) if e.is_retryable() => {
                tracing::error!(error = %tooltrail_schemas::Report(&e), "http ingest commit failed; requests were answered 503");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event_of(tenant: &str) -> ToolCallEvent {
        let line = format!(
            r#"{{"schema_version":1,"event_id":"e1","time":"2026-11-22T09:30:00Z","tenant_id":"{tenant}","user_id":"u","server":"s","method":"tools/call","tool":"t","decision":"allow","status":200}}"#
        );
        decode(line.as_bytes()).expect("a valid event")
    }

    #[test]
    fn a_token_writes_its_tenants_only_and_a_star_token_writes_any() {
        let acme = Grant {
            name: "gw-acme".into(),
            tenants: Some(["acme".to_string()].into()),
        };
        assert!(allowed(&acme, event_of("acme")).is_ok());
        let refused = allowed(&acme, event_of("globex")).unwrap_err();
        assert_eq!(refused.reason(), TENANT_NOT_ALLOWED);
        assert_eq!(refused.field_name(), Some("tenant_id"));
        let message = refused.to_string();
        assert!(
            message.contains("globex") && message.contains("gw-acme"),
            "{message}"
        );
        let any = Grant {
            name: "gw-all".into(),
            tenants: None,
        };
        assert!(allowed(&any, event_of("globex")).is_ok());
    }

    fn ingest_with(tokens: &[(&str, &str, &[&str])]) -> HttpIngest {
        let dir = tempfile::tempdir().expect("temp dir");
        let http = HttpConfig {
            ingest_tokens: tokens
                .iter()
                .map(|(name, token, tenants)| crate::config::IngestToken {
                    name: (*name).into(),
                    sha256: hex::encode(sha256(token.as_bytes())),
                    tenants: tenants.iter().map(|t| (*t).to_string()).collect(),
                })
                .collect(),
            ..HttpConfig::default()
        };
        let location = tooltrail_lake::Location::local(dir.path()).expect("a location");
        let open = tooltrail_lake::Writer::open(&location, 1, Default::default());
        let writer = tokio::runtime::Runtime::new()
            .expect("a runtime")
            .block_on(open)
            .expect("a writer");
        built(writer, &http).0
    }

    /// The handle and committer over `writer`, with default ingest and OTLP
    /// settings and metrics of their own.
    fn built(writer: Writer, http: &HttpConfig) -> (HttpIngest, Committer) {
        let mut registry = prometheus_client::registry::Registry::default();
        build(
            writer,
            http,
            &IngestConfig::default(),
            &OtlpConfig::default(),
            Metrics::register(&mut registry),
            None,
        )
    }

    fn bearer(token: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("a header value"),
        );
        headers
    }

    #[test]
    fn a_compressed_body_holds_room_for_its_inflated_size_until_it_is_known() {
        let ingest = ingest_with(&[("gw", "tok", &["acme"])]);
        let total = ingest.inflight.available_permits();
        let runtime = tokio::runtime::Runtime::new().expect("a runtime");
        let compressed = Body::from(vec![0u8; 3000]);
        let mut admitted = runtime
            .block_on(ingest.admit(&bearer("tok"), compressed, Size::Inflated))
            .unwrap_or_else(|r| panic!("admitted: {}", r.message));
        // Let in at the most a body may inflate to, not at its 3 KB on the wire.
        assert_eq!(
            total - ingest.inflight.available_permits(),
            kib(ingest.max_body_bytes) as usize
        );
        admitted.room.shrink_to(40_000);
        assert_eq!(total - ingest.inflight.available_permits(), 40);
        drop(admitted);
        assert_eq!(ingest.inflight.available_permits(), total);

        let plain = Body::from(vec![0u8; 3000]);
        let mut headers = bearer("tok");
        headers.insert(header::CONTENT_LENGTH, "3000".parse().expect("a value"));
        let admitted = runtime
            .block_on(ingest.admit(&headers, plain, Size::AsSent))
            .unwrap_or_else(|r| panic!("admitted: {}", r.message));
        assert_eq!(total - ingest.inflight.available_permits(), 3);
        drop(admitted);
    }

    #[test]
    fn a_presented_token_is_matched_to_its_own_grant() {
        let ingest = ingest_with(&[
            ("gw-acme", "tok-acme", &["acme"]),
            ("gw-globex", "tok-globex", &["globex"]),
        ]);
        let name = |headers: &HeaderMap| match ingest.caller(headers) {
            Some(Caller::Token(grant)) => Some(grant.name.clone()),
            Some(Caller::Anyone) => Some("anyone".into()),
            None => None,
        };
        assert_eq!(name(&bearer("tok-acme")).as_deref(), Some("gw-acme"));
        assert_eq!(name(&bearer("tok-globex")).as_deref(), Some("gw-globex"));
        assert_eq!(name(&bearer("tok-other")), None);
        assert_eq!(name(&HeaderMap::new()), None);
        let open = ingest_with(&[]);
        assert!(matches!(
            open.caller(&HeaderMap::new()),
            Some(Caller::Anyone)
        ));
    }

    #[test]
    fn splits_ndjson_lines_skipping_blanks_and_carriage_returns() {
        let body = b"{\"a\":1}\r\n\n  \n{\"b\":2}";
        let ranges = split_lines(body);
        let parts: Vec<&[u8]> = ranges.into_iter().map(|r| &body[r]).collect();
        assert_eq!(parts, [&b"{\"a\":1}"[..], &b"{\"b\":2}"[..]]);
    }

    #[test]
    fn splits_a_json_array_into_its_elements() {
        let body = br#"[ {"a":1} , {"b":[1,2]} ]"#;
        let parts: Vec<&[u8]> = split_array(body)
            .unwrap()
            .into_iter()
            .map(|r| &body[r])
            .collect();
        assert_eq!(parts, [&br#"{"a":1}"#[..], &br#"{"b":[1,2]}"#[..]]);
        assert!(
            split_array(b"{\"a\":1}")
                .unwrap_err()
                .contains("not a JSON array")
        );
    }

    /// Two writers on one lake, each with its own committer running.
    async fn post(ingest: &HttpIngest, key: &str, id: &str) -> (StatusCode, serde_json::Value) {
        let mut headers = HeaderMap::new();
        headers.insert("idempotency-key", key.parse().expect("a header value"));
        let line = format!(
            r#"{{"schema_version":1,"event_id":"{id}","time":"{}","tenant_id":"acme","user_id":"u","server":"s","method":"tools/call","tool":"t","decision":"allow","status":200}}"#,
            tooltrail_schemas::format_time(&Utc::now())
        );
        let response = post_events(State(ingest.clone()), headers, Body::from(line)).await;
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .expect("a body");
        (status, serde_json::from_slice(&body).expect("a JSON reply"))
    }

    #[tokio::test]
    async fn a_key_another_writer_committed_first_is_answered_as_a_duplicate_and_ingest_goes_on() {
        let dir = tempfile::tempdir().expect("temp dir");
        let location = tooltrail_lake::Location::local(dir.path()).expect("a location");
        let open = || tooltrail_lake::Writer::open(&location, 1, Default::default());
        let writer = |lake| {
            let (handle, committer) = built(lake, &HttpConfig::default());
            let stop = CancellationToken::new();
            let running = tokio::spawn(committer.run(stop.clone()));
            (handle, stop, running)
        };
        // Both open the lake before either commits: B's view of the keys is stale.
        let (a, stop_a, running_a) = writer(open().await.expect("a writer"));
        let (b, stop_b, running_b) = writer(open().await.expect("a writer"));
        let (status, reply) = post(&a, "retry-1", "e1").await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(reply["accepted"], 1);
        // The client's retry of the same request reaches B.
        let (status, reply) = post(&b, "retry-1", "e1").await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(reply["duplicate"], true, "{reply}");
        assert_eq!(reply["accepted"], 0, "{reply}");
        // B is still taking requests.
        let (status, reply) = post(&b, "other", "e2").await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        assert_eq!(reply["accepted"], 1, "{reply}");
        for (stop, running) in [(stop_a, running_a), (stop_b, running_b)] {
            stop.cancel();
            running
                .await
                .expect("joined")
                .expect("the committer ends cleanly");
        }
        let events = tooltrail_lake::Snapshot::load(&location, &tooltrail_lake::tables::EVENTS)
            .await
            .expect("readable")
            .expect("created");
        let rows: usize = events
            .files()
            .expect("files")
            .iter()
            .map(|f| f.rows.expect("row counts"))
            .sum();
        assert_eq!(rows, 2, "e1 once, e2 once");
    }

    /// A committer with a group-commit delay of an hour, on a fresh lake.
    async fn committer() -> (HttpIngest, Committer, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let location = tooltrail_lake::Location::local(dir.path()).expect("a location");
        let writer = tooltrail_lake::Writer::open(&location, 1, Default::default())
            .await
            .expect("a writer");
        let http = HttpConfig {
            group_commit_delay: std::time::Duration::from_secs(3600),
            ..HttpConfig::default()
        };
        let (handle, committer) = built(writer, &http);
        (handle, committer, dir)
    }

    /// A request of one event, as a handler submits it.
    fn submission(coming: OnTheWay) -> Submission {
        let (reply, _) = oneshot::channel();
        Submission {
            request_id: uuid::Uuid::now_v7().simple().to_string(),
            idempotency_key: None,
            body: Bytes::new(),
            records: vec![(0..0, Ok(event_of("acme")))],
            received_at: Utc::now(),
            reply,
            coming: Some(coming),
        }
    }

    // The clock is paused: a wait for the group-commit delay would move it
    // on by the hour the committers here are given.

    #[tokio::test(start_paused = true)]
    async fn a_lone_request_is_committed_without_waiting_out_the_delay() {
        let (handle, mut committer, _dir) = committer().await;
        let started = Instant::now();
        let first = submission(handle.coming.enter());
        let batch = committer.gather(first).await;
        assert_eq!(batch.len(), 1);
        assert_eq!(
            Instant::now(),
            started,
            "no request was on its way: no wait"
        );
        assert_eq!(handle.coming.count(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_still_being_decoded_shares_the_commit_of_the_one_before_it() {
        let (handle, mut committer, _dir) = committer().await;
        let started = Instant::now();
        let decoding = handle.coming.enter();
        let first = submission(handle.coming.enter());
        let gathering = tokio::spawn(async move { committer.gather(first).await.len() });
        // The committer has the first request and waits for the second.
        tokio::task::yield_now().await;
        assert!(
            !gathering.is_finished(),
            "it waits for the request on its way"
        );
        handle
            .submit
            .send(submission(decoding))
            .await
            .expect("the committer listens");
        assert_eq!(gathering.await.expect("joined"), 2, "one commit for both");
        assert_eq!(Instant::now(), started, "the delay is a limit, not a wait");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_fails_on_its_way_ends_the_wait_and_a_slow_one_is_left_for_the_next_commit()
     {
        let (handle, mut committer, _dir) = committer().await;
        let started = Instant::now();
        let failing = handle.coming.enter();
        let first = submission(handle.coming.enter());
        let (batch, ()) = tokio::join!(committer.gather(first), async {
            tokio::task::yield_now().await;
            drop(failing);
        });
        assert_eq!(batch.len(), 1);
        assert_eq!(Instant::now(), started);

        // One that never arrives is waited for as long as the delay, no longer.
        let _slow = handle.coming.enter();
        let first = submission(handle.coming.enter());
        let batch = committer.gather(first).await;
        assert_eq!(batch.len(), 1);
        assert_eq!(
            Instant::now() - started,
            std::time::Duration::from_secs(3600)
        );
    }
}
