//! `[detect.delivery]`: where alerts go. Every field is documented: these
//! comments are the user documentation of the section.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};
pub use tooltrail_schemas::{Secret, SecretUrl};

use crate::alert::{Alert, Detector, Severity};

/// The longest `drain_timeout` taken: a process gives its delivery phase
/// this long plus a margin to stop.
pub const MAX_DRAIN_TIMEOUT: Duration = Duration::from_secs(50);

/// `[detect.delivery]`: alert destinations and how hard to try to reach them.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Where alerts are sent (`[[detect.delivery.destinations]]`). Empty: alerts
    /// are only recorded, never sent.
    pub destinations: Vec<DestinationConfig>,
    /// How failed deliveries are retried.
    pub retry: RetryConfig,
    /// Longest one HTTP request may take, connecting included; longer counts as a
    /// failed attempt and is retried.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long the ids of delivered alerts are remembered, so that the same
    /// alert enqueued again (a replay, a restart) is not sent twice.
    #[serde(with = "humantime_serde")]
    pub delivered_retention: Duration,
    /// At shutdown, how long delivery goes on sending the alerts that are
    /// queued and ready (those the detector's last windows raised among
    /// them) before it stops. What is left waits in the outbox for the next
    /// start.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            destinations: Vec::new(),
            retry: RetryConfig::default(),
            request_timeout: Duration::from_secs(10),
            delivered_retention: Duration::from_secs(7 * 24 * 3600),
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// `[detect.delivery.retry]`: exponential backoff with full jitter. Attempt `n`
/// (from 0) waits a random time between 0 and `min(max_delay, base_delay * 2^n)`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Upper bound of the wait after the first failed attempt.
    #[serde(with = "humantime_serde")]
    pub base_delay: Duration,
    /// Upper bound of any wait between attempts. A `Retry-After` from the
    /// destination is honoured up to this long.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// An alert still undelivered this long after it was enqueued is moved to
    /// the dead letters at its next failed attempt.
    #[serde(with = "humantime_serde")]
    pub give_up_after: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

/// What a destination speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    /// A generic HTTP endpoint: the alert record as JSON, signed with HMAC-SHA256.
    Webhook,
    /// A Slack incoming webhook: a Block Kit message.
    Slack,
    /// A Microsoft Teams incoming webhook or Workflows URL: an Adaptive Card.
    Teams,
    /// An HTTP collector of OCSF (a SIEM, a data pipeline): the alert as one
    /// OCSF Detection Finding (class 2004), signed like a webhook when a
    /// `secret` is set.
    Ocsf,
}

impl DestinationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DestinationKind::Webhook => "webhook",
            DestinationKind::Slack => "slack",
            DestinationKind::Teams => "teams",
            DestinationKind::Ocsf => "ocsf",
        }
    }
}

/// `[[detect.delivery.destinations]]`: one place alerts go, and which alerts.
/// Its URL and secret are masked wherever it is printed or serialized.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Unique name: lowercase letters, digits, `-` and `_`, at most 64. It names
    /// the destination in metrics, logs and outbox folders, so renaming a
    /// destination orphans its pending alerts.
    pub name: String,
    /// `webhook`, `slack`, `teams` or `ocsf`.
    pub kind: DestinationKind,
    /// Where to POST (`http` or `https`). Its path and query are treated as
    /// a credential (Slack and Teams URLs embed a token): they are shown as
    /// `<redacted>`, and errors and logs name the destination by `name` and
    /// host only.
    pub url: SecretUrl,
    /// The HMAC-SHA256 key signing each request (at least 16 characters):
    /// required for `webhook`, optional for `ocsf`, refused for `slack` and
    /// `teams`. Shown as `<redacted>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<Secret>,
    /// Slack and Teams only: base URL of the console; messages then link to
    /// `<console_url>/alerts/<alert_id>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub console_url: Option<String>,
    /// Only alerts at least this severe: `low`, `medium`, `high` or `critical`.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// Only alerts of these tenants. Empty: every tenant.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// Only alerts of these detectors (e.g. `denial_spike`, a Sigma rule's
    /// `sigma:<rule id>`, or `sigma:*` for every rule). Empty: every detector.
    #[serde(default)]
    pub detectors: Vec<Detector>,
    /// At most this many requests to the destination in any 60 seconds. Alerts
    /// over the limit wait in the outbox and go out as the window frees up;
    /// none is dropped.
    #[serde(default = "default_max_per_minute")]
    pub max_per_minute: u32,
    /// Also send the triage changes made in the console or the alerts API
    /// (acknowledged, closed with a reason, reopened, assigned, commented) of
    /// the alerts this destination gets, made within a day of the alert, so
    /// that chat shows who took an alert: webhooks get `{"type":
    /// "alert.triage", …}`, Slack and Teams a short message. Not for `ocsf`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub triage: bool,
}

fn default_min_severity() -> Severity {
    Severity::Medium
}

fn default_max_per_minute() -> u32 {
    60
}

impl DestinationConfig {
    /// Whether `alert` goes to this destination.
    pub fn routes(&self, alert: &Alert) -> bool {
        alert.severity >= self.min_severity
            && (self.tenants.is_empty() || self.tenants.contains(&alert.tenant_id))
            && (self.detectors.is_empty()
                || self.detectors.iter().any(|d| d.covers(&alert.detector)))
    }
}

/// Shortest webhook secret accepted.
const MIN_SECRET_LEN: usize = 16;

impl DeliveryConfig {
    /// Every problem, as (`detect.delivery.<field>`, what is wrong).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        let mut issue = |path: String, problem: String| issues.push((path, problem));
        let at = |field: &str| format!("detect.delivery.{field}");
        if self.request_timeout.is_zero() {
            issue(at("request_timeout"), "must be more than 0s".into());
        }
        if self.delivered_retention.is_zero() {
            issue(at("delivered_retention"), "must be more than 0s".into());
        }
        if self.drain_timeout > MAX_DRAIN_TIMEOUT {
            let max = humantime::format_duration(MAX_DRAIN_TIMEOUT);
            issue(at("drain_timeout"), format!("must be at most {max}"));
        }
        let retry = &self.retry;
        if retry.base_delay.is_zero() {
            issue(at("retry.base_delay"), "must be more than 0s".into());
        }
        if retry.max_delay < retry.base_delay {
            issue(
                at("retry.max_delay"),
                "must be at least retry.base_delay".into(),
            );
        }
        if retry.give_up_after.is_zero() {
            issue(at("retry.give_up_after"), "must be more than 0s".into());
        }
        let mut names = BTreeSet::new();
        for (i, d) in self.destinations.iter().enumerate() {
            let at = |field: &str| format!("detect.delivery.destinations[{i}].{field}");
            if !valid_name(&d.name) {
                issue(
                    at("name"),
                    format!(
                        "`{}` must be 1 to 64 lowercase letters, digits, `-` or `_`",
                        d.name
                    ),
                );
            } else if !names.insert(d.name.as_str()) {
                issue(
                    at("name"),
                    format!("`{}` names another destination too", d.name),
                );
            }
            if let Err(problem) = check_url(d.url.expose()) {
                // Never echo the URL: it may hold a token.
                issue(at("url"), problem);
            }
            match (d.kind, &d.secret) {
                (DestinationKind::Webhook, None) => {
                    issue(at("secret"), "is required for webhook destinations".into());
                }
                (DestinationKind::Webhook | DestinationKind::Ocsf, Some(s))
                    if s.expose().len() < MIN_SECRET_LEN =>
                {
                    issue(
                        at("secret"),
                        format!("must be at least {MIN_SECRET_LEN} characters"),
                    );
                }
                (DestinationKind::Slack | DestinationKind::Teams, Some(_)) => {
                    issue(
                        at("secret"),
                        "is only used by webhook and ocsf destinations".into(),
                    );
                }
                _ => {}
            }
            if d.triage && d.kind == DestinationKind::Ocsf {
                issue(
                    at("triage"),
                    "is for webhook, slack and teams destinations: OCSF has no class for a triage change".into(),
                );
            }
            match (d.kind, &d.console_url) {
                (DestinationKind::Webhook | DestinationKind::Ocsf, Some(_)) => {
                    issue(
                        at("console_url"),
                        "is only used by slack and teams destinations".into(),
                    );
                }
                (_, Some(url)) => {
                    if let Err(problem) = check_url(url) {
                        issue(at("console_url"), problem);
                    }
                }
                _ => {}
            }
            if d.max_per_minute == 0 {
                issue(at("max_per_minute"), "must be at least 1".into());
            }
            if d.tenants.iter().any(|t| t.is_empty()) {
                issue(at("tenants"), "must not hold an empty tenant id".into());
            }
        }
        issues
    }
}

/// Destination names become folder names and metric labels.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn check_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("is not a valid URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "must be an http or https URL, not `{}`",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::DetectorKind;

    fn webhook(name: &str) -> DestinationConfig {
        DestinationConfig {
            name: name.into(),
            kind: DestinationKind::Webhook,
            url: SecretUrl::new("https://siem.example.com/hooks/tooltrail"),
            secret: Some(Secret::new("0123456789abcdef0123")),
            console_url: None,
            min_severity: Severity::Medium,
            tenants: Vec::new(),
            detectors: Vec::new(),
            max_per_minute: 60,
            triage: false,
        }
    }

    #[test]
    fn a_full_section_parses_from_toml_with_defaults_filled_in() {
        let config: DeliveryConfig = toml_from(
            r#"
            request_timeout = "5s"
            [retry]
            base_delay = "500ms"
            max_delay = "2m"
            [[destinations]]
            name = "siem"
            kind = "webhook"
            url = "https://siem.example.com/hooks/tooltrail"
            secret = "a-long-enough-secret"
            [[destinations]]
            name = "soc-slack"
            kind = "slack"
            url = "https://hooks.slack.com/services/T0/B0/XXXX"
            console_url = "https://tooltrail.example.com"
            min_severity = "high"
            tenants = ["acme"]
            detectors = ["cross_tenant", "denial_spike"]
            max_per_minute = 20
            [[destinations]]
            name = "security-lake"
            kind = "ocsf"
            url = "https://collector.example.com/ocsf"
            "#,
        );
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        assert_eq!(config.request_timeout, Duration::from_secs(5));
        assert_eq!(config.retry.base_delay, Duration::from_millis(500));
        assert_eq!(config.retry.give_up_after, Duration::from_secs(24 * 3600));
        let siem = &config.destinations[0];
        assert_eq!(siem.min_severity, Severity::Medium);
        assert_eq!(siem.max_per_minute, 60);
        let slack = &config.destinations[1];
        assert_eq!(slack.kind, DestinationKind::Slack);
        assert_eq!(
            slack.detectors,
            [DetectorKind::CrossTenant, DetectorKind::DenialSpike]
        );
        let ocsf = &config.destinations[2];
        assert_eq!((ocsf.kind, &ocsf.secret), (DestinationKind::Ocsf, &None));
    }

    fn toml_from(text: &str) -> DeliveryConfig {
        toml::from_str(text).expect("valid delivery config")
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<DeliveryConfig>(
            r#"
            [[destinations]]
            name = "x"
            kind = "webhook"
            url = "https://x.example.com"
            secrett = "typo"
            "#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("secrett"), "{err}");
    }

    #[test]
    fn validation_names_each_bad_field() {
        let mut bad_name = webhook("Bad Name");
        bad_name.max_per_minute = 0;
        let mut no_secret = webhook("no-secret");
        no_secret.secret = None;
        no_secret.url = SecretUrl::new("ftp://x.example.com");
        let mut short_secret = webhook("short");
        short_secret.secret = Some(Secret::new("short"));
        short_secret.console_url = Some("https://console.example.com".into());
        let mut slack = webhook("slack");
        slack.kind = DestinationKind::Slack;
        slack.console_url = Some("not a url".into());
        slack.tenants = vec![String::new()];
        let config = DeliveryConfig {
            destinations: vec![bad_name, no_secret, short_secret, slack, webhook("slack")],
            retry: RetryConfig {
                base_delay: Duration::ZERO,
                max_delay: Duration::ZERO,
                give_up_after: Duration::ZERO,
            },
            request_timeout: Duration::ZERO,
            delivered_retention: Duration::ZERO,
            drain_timeout: Duration::from_secs(51),
        };
        let paths: Vec<String> = config.validate().into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            [
                "detect.delivery.request_timeout",
                "detect.delivery.delivered_retention",
                "detect.delivery.drain_timeout",
                "detect.delivery.retry.base_delay",
                "detect.delivery.retry.give_up_after",
                "detect.delivery.destinations[0].name",
                "detect.delivery.destinations[0].max_per_minute",
                "detect.delivery.destinations[1].url",
                "detect.delivery.destinations[1].secret",
                "detect.delivery.destinations[2].secret",
                "detect.delivery.destinations[2].console_url",
                "detect.delivery.destinations[3].secret",
                "detect.delivery.destinations[3].console_url",
                "detect.delivery.destinations[3].tenants",
                "detect.delivery.destinations[4].name",
            ]
        );
    }

    #[test]
    fn debug_output_and_serialization_mask_secrets_and_url_tokens() {
        let mut d = webhook("siem");
        d.url = SecretUrl::new("https://hooks.slack.com/services/T0/B0/TOKEN?q=QUERY");
        let config = DeliveryConfig {
            destinations: vec![d],
            ..DeliveryConfig::default()
        };
        for shown in [
            format!("{config:?}"),
            toml::to_string(&config).expect("serializes"),
            serde_json::to_string(&config).expect("serializes"),
        ] {
            assert!(!shown.contains("0123456789abcdef"), "{shown}");
            assert!(!shown.contains("TOKEN"), "{shown}");
            assert!(!shown.contains("QUERY"), "{shown}");
            assert!(
                shown.contains("https://hooks.slack.com/<redacted>"),
                "{shown}"
            );
        }
    }

    #[test]
    fn validation_never_echoes_a_url() {
        let mut d = webhook("siem");
        d.url = SecretUrl::new("gopher://canary-host/canary-path");
        let config = DeliveryConfig {
            destinations: vec![d],
            ..DeliveryConfig::default()
        };
        let issues = config.validate();
        assert_eq!(issues.len(), 1, "{issues:?}");
        assert!(!issues[0].1.contains("canary"), "{issues:?}");
    }
}
