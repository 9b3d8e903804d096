//! One delivery attempt: the request for a destination's kind, and what its
//! outcome means (delivered, retry later, or give up).

use std::time::Duration;

use chrono::Utc;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};

use super::backoff::parse_retry_after;
use super::chat::{slack_message, teams_message};
use super::config::{DestinationConfig, DestinationKind};
use super::ocsf::detection_finding;
use super::outbox::Entry;
use super::triage::{self, TriageNote};
use super::webhook::{IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use crate::alert::Alert;

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempt {
    /// A 2xx answer.
    Delivered,
    /// Worth trying again: no answer, a timeout, 408, 429 or 5xx.
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    /// Trying again will not help: any other answer.
    Permanent { reason: String },
}

/// The body and extra headers to send `alert` to `destination`. Webhooks
/// (and `ocsf` destinations with a secret) are signed at `timestamp` (unix
/// seconds), so every retry is signed afresh. Fails only if the alert cannot
/// be rendered as an OCSF finding, which no retry would change.
///
/// With `triage`, the request carries that triage change of the alert
/// instead ([`super::triage`]), keyed `<alert_id>_<triage_id>`.
pub async fn request(
    destination: &DestinationConfig,
    alert: &Alert,
    triage: Option<&TriageNote>,
    timestamp: i64,
) -> Result<(Vec<u8>, Vec<(&'static str, String)>), String> {
    let console = destination.console_url.as_deref();
    let key = match triage {
        None => alert.alert_id.clone(),
        Some(note) => format!("{}_{}", alert.alert_id, note.triage_id),
    };
    let signed = |body: Vec<u8>| {
        let mut headers = vec![(IDEMPOTENCY_HEADER, key.clone())];
        if let Some(secret) = &destination.secret {
            let signature = sign(secret.expose().as_bytes(), timestamp, &body);
            headers.push((TIMESTAMP_HEADER, timestamp.to_string()));
            headers.push((SIGNATURE_HEADER, signature));
        }
        (body, headers)
    };
    if let Some(note) = triage {
        return match destination.kind {
            DestinationKind::Webhook => Ok(signed(
                triage::webhook_body(alert, note).to_string().into_bytes(),
            )),
            DestinationKind::Slack => Ok((
                triage::slack_message(alert, note, console)
                    .to_string()
                    .into_bytes(),
                Vec::new(),
            )),
            DestinationKind::Teams => Ok((
                triage::teams_message(alert, note, console)
                    .to_string()
                    .into_bytes(),
                Vec::new(),
            )),
            DestinationKind::Ocsf => Err("an ocsf destination takes no triage changes".into()),
        };
    }
    Ok(match destination.kind {
        DestinationKind::Webhook => signed(alert.to_json().into_bytes()),
        DestinationKind::Ocsf => {
            let finding = detection_finding(alert).await.map_err(|e| {
                format!(
                    "rendering the alert as an OCSF detection finding: {}",
                    tooltrail_schemas::Report(&e)
                )
            })?;
            signed(finding.to_string().into_bytes())
        }
        DestinationKind::Slack => (
            slack_message(alert, console).to_string().into_bytes(),
            Vec::new(),
        ),
        DestinationKind::Teams => (
            teams_message(alert, console).to_string().into_bytes(),
            Vec::new(),
        ),
    })
}

/// Sends `entry` (an alert or a triage change of one) once.
pub async fn attempt(
    client: &reqwest::Client,
    destination: &DestinationConfig,
    entry: &Entry,
) -> Attempt {
    let (body, headers) = match request(
        destination,
        &entry.alert,
        entry.triage.as_ref(),
        Utc::now().timestamp(),
    )
    .await
    {
        Ok(request) => request,
        Err(reason) => return Attempt::Permanent { reason },
    };
    let mut req = client
        .post(destination.url.expose())
        .header(CONTENT_TYPE, "application/json")
        .body(body);
    for (name, value) in headers {
        req = req.header(name, value);
    }
    match req.send().await {
        Ok(response) => {
            let status = response.status();
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, Utc::now()));
            let excerpt = if status.is_success() {
                String::new()
            } else {
                body_excerpt(response).await
            };
            classify(status, retry_after, &excerpt)
        }
        Err(e) if e.is_builder() => Attempt::Permanent {
            reason: describe(e),
        },
        Err(e) => Attempt::Retry {
            reason: describe(e),
            retry_after: None,
        },
    }
}

/// What a status means for the alert.
pub fn classify(status: StatusCode, retry_after: Option<Duration>, excerpt: &str) -> Attempt {
    if status.is_success() {
        return Attempt::Delivered;
    }
    let reason = if excerpt.is_empty() {
        format!("http {status}")
    } else {
        format!("http {status}: {excerpt}")
    };
    if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        Attempt::Retry {
            reason,
            retry_after,
        }
    } else {
        Attempt::Permanent { reason }
    }
}

/// The start of an error response's body, on one line, for the reason.
async fn body_excerpt(mut response: reqwest::Response) -> String {
    const MAX: usize = 512;
    let mut bytes = Vec::new();
    while bytes.len() < MAX {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]);
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The error and its causes, without the URL (Slack and Teams URLs hold a
/// token).
fn describe(e: reqwest::Error) -> String {
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if timeout && !text.contains("timed out") {
        text.push_str(" (timed out)");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::config::{Secret, SecretUrl};
    use crate::deliver::test_alert;
    use crate::deliver::webhook::verify;

    #[test]
    fn success_retryable_and_permanent_statuses_are_told_apart() {
        let wait = Some(Duration::from_secs(7));
        assert_eq!(classify(StatusCode::OK, None, ""), Attempt::Delivered);
        assert_eq!(classify(StatusCode::ACCEPTED, None, ""), Attempt::Delivered);
        for status in [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::REQUEST_TIMEOUT,
            StatusCode::TOO_MANY_REQUESTS,
        ] {
            assert!(
                matches!(classify(status, wait, ""), Attempt::Retry { retry_after, .. } if retry_after == wait),
                "{status}"
            );
        }
        for status in [
            StatusCode::BAD_REQUEST,
            StatusCode::UNAUTHORIZED,
            StatusCode::FORBIDDEN,
            StatusCode::NOT_FOUND,
            StatusCode::GONE,
            StatusCode::MOVED_PERMANENTLY,
        ] {
            assert!(
                matches!(classify(status, None, ""), Attempt::Permanent { .. }),
                "{status}"
            );
        }
        assert_eq!(
            classify(StatusCode::NOT_FOUND, None, "no_service"),
            Attempt::Permanent {
                reason: "http 404 Not Found: no_service".into()
            }
        );
    }

    #[tokio::test]
    async fn webhook_requests_carry_a_verifiable_signature_and_the_alert_id() {
        let alert = test_alert();
        let destination = DestinationConfig {
            name: "siem".into(),
            kind: DestinationKind::Webhook,
            url: SecretUrl::new("https://siem.example.com/hook"),
            secret: Some(Secret::new("0123456789abcdef")),
            console_url: None,
            min_severity: crate::alert::Severity::Low,
            tenants: Vec::new(),
            detectors: Vec::new(),
            max_per_minute: 60,
            triage: false,
        };
        let (body, headers) = request(&destination, &alert, None, 1_760_000_000)
            .await
            .expect("a request");
        assert_eq!(body, alert.to_json().into_bytes());
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
                .expect("header present")
        };
        assert_eq!(header(IDEMPOTENCY_HEADER), alert.alert_id);
        assert!(verify(
            b"0123456789abcdef",
            header(TIMESTAMP_HEADER),
            header(SIGNATURE_HEADER),
            &body,
            1_760_000_010
        ));
    }

    fn ocsf_destination(secret: Option<&str>) -> DestinationConfig {
        DestinationConfig {
            name: "siem".into(),
            kind: DestinationKind::Ocsf,
            url: SecretUrl::new("https://siem.example.com/ocsf"),
            secret: secret.map(Secret::new),
            console_url: None,
            min_severity: crate::alert::Severity::Low,
            tenants: Vec::new(),
            detectors: Vec::new(),
            max_per_minute: 60,
            triage: false,
        }
    }

    #[tokio::test]
    async fn ocsf_requests_carry_the_alert_as_a_detection_finding() {
        use tooltrail_lake::ocsf::{DETECTION_FINDING, missing_required};
        let alert = test_alert();
        let (body, headers) = request(&ocsf_destination(None), &alert, None, 1_760_000_000)
            .await
            .expect("a request");
        let finding: serde_json::Value = serde_json::from_slice(&body).expect("json");
        assert_eq!(
            missing_required(&DETECTION_FINDING, &finding),
            Vec::<String>::new()
        );
        assert_eq!(finding["class_uid"], 2004);
        assert_eq!(finding["finding_info"]["uid"], alert.alert_id.as_str());
        let analysis = &finding["anomaly_analyses"][0];
        assert_eq!(analysis["anomalies"][0]["observations"][0]["value"], "37.0");
        assert_eq!(analysis["baselines"][0]["observations"][0]["value"], "0.4");
        assert_eq!(
            headers,
            vec![(IDEMPOTENCY_HEADER, alert.alert_id.clone())],
            "unsigned without a secret"
        );

        let (signed_body, headers) = request(
            &ocsf_destination(Some("0123456789abcdef")),
            &alert,
            None,
            1_760_000_000,
        )
        .await
        .expect("a request");
        assert_eq!(signed_body, body);
        let header = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
                .expect("header present")
        };
        assert!(verify(
            b"0123456789abcdef",
            header(TIMESTAMP_HEADER),
            header(SIGNATURE_HEADER),
            &body,
            1_760_000_010
        ));
    }
}
