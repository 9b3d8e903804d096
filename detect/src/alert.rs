//! The alert record: a persisted format (NDJSON in the lake, JSON bodies to
//! webhooks), so fields are only ever added.
//!
//! `alert_id` is a UUIDv5 of the detector, tenant, user, the value the alert
//! is about and the start of its suppression window. The same input replayed
//! gives the same ids, so a re-run or a restart after a crash never produces a
//! second alert for the same thing: receivers and the outbox treat the id as
//! an idempotency key.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Version of the alert record; bumped only for additive changes.
pub const ALERT_VERSION: u8 = 1;

/// At most this many sample event ids ride in an alert's evidence.
pub const MAX_SAMPLE_EVENTS: usize = 20;

/// How urgent an alert is, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Severity {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| {
                format!("unknown severity `{s}` (expected low, medium, high or critical)")
            })
    }
}

/// The detectors, by their stable names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectorKind {
    DenialSpike,
    MalformedSpike,
    VolumeSpike,
    FirstSeenTool,
    FirstSeenServer,
    FirstSeenResource,
    FirstSeenClient,
    FirstSeenIp,
    SensitiveTool,
    OffHours,
    Enumeration,
    CrossTenant,
}

impl DetectorKind {
    pub const ALL: [DetectorKind; 12] = [
        DetectorKind::DenialSpike,
        DetectorKind::MalformedSpike,
        DetectorKind::VolumeSpike,
        DetectorKind::FirstSeenTool,
        DetectorKind::FirstSeenServer,
        DetectorKind::FirstSeenResource,
        DetectorKind::FirstSeenClient,
        DetectorKind::FirstSeenIp,
        DetectorKind::SensitiveTool,
        DetectorKind::OffHours,
        DetectorKind::Enumeration,
        DetectorKind::CrossTenant,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DetectorKind::DenialSpike => "denial_spike",
            DetectorKind::MalformedSpike => "malformed_spike",
            DetectorKind::VolumeSpike => "volume_spike",
            DetectorKind::FirstSeenTool => "first_seen_tool",
            DetectorKind::FirstSeenServer => "first_seen_server",
            DetectorKind::FirstSeenResource => "first_seen_resource",
            DetectorKind::FirstSeenClient => "first_seen_client",
            DetectorKind::FirstSeenIp => "first_seen_ip",
            DetectorKind::SensitiveTool => "sensitive_tool",
            DetectorKind::OffHours => "off_hours",
            DetectorKind::Enumeration => "enumeration",
            DetectorKind::CrossTenant => "cross_tenant",
        }
    }

    /// Whether the detector fires on a single event (first-seen values,
    /// sensitive, cross-tenant) rather than on a closed window. New
    /// resources are judged as a burst per window, like `enumeration`.
    pub fn is_immediate(self) -> bool {
        matches!(
            self,
            DetectorKind::FirstSeenTool
                | DetectorKind::FirstSeenServer
                | DetectorKind::FirstSeenClient
                | DetectorKind::FirstSeenIp
                | DetectorKind::SensitiveTool
                | DetectorKind::CrossTenant
        )
    }
}

impl fmt::Display for DetectorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DetectorKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DetectorKind::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown detector `{s}`"))
    }
}

impl AsRef<str> for DetectorKind {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// What raised an alert: a built-in detector, or a Sigma rule
/// (`sigma:<rule id>`). Written as its name; a built-in name reads back as
/// [`Detector::Builtin`], `sigma:…` as [`Detector::Sigma`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Detector {
    Builtin(DetectorKind),
    /// The whole name, `sigma:` included.
    Sigma(std::sync::Arc<str>),
}

impl Detector {
    /// The prefix of a Sigma rule's detector name.
    pub const SIGMA_PREFIX: &'static str = "sigma:";

    /// The detector of the Sigma rule with this id.
    pub fn sigma(rule_id: &str) -> Self {
        Detector::Sigma(format!("{}{rule_id}", Self::SIGMA_PREFIX).into())
    }

    pub fn as_str(&self) -> &str {
        match self {
            Detector::Builtin(kind) => kind.as_str(),
            Detector::Sigma(name) => name,
        }
    }

    /// The built-in detector, if this is one.
    pub fn builtin(&self) -> Option<DetectorKind> {
        match self {
            Detector::Builtin(kind) => Some(*kind),
            Detector::Sigma(_) => None,
        }
    }

    /// Whether an alert of `other` passes a filter naming `self`: the same
    /// detector, or `sigma:*` for every Sigma rule.
    pub fn covers(&self, other: &Detector) -> bool {
        match (self, other) {
            (Detector::Sigma(pattern), Detector::Sigma(_)) if &**pattern == "sigma:*" => true,
            _ => self == other,
        }
    }
}

impl From<DetectorKind> for Detector {
    fn from(kind: DetectorKind) -> Self {
        Detector::Builtin(kind)
    }
}

impl PartialEq<DetectorKind> for Detector {
    fn eq(&self, other: &DetectorKind) -> bool {
        self.builtin() == Some(*other)
    }
}

impl AsRef<str> for Detector {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Detector {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix(Self::SIGMA_PREFIX) {
            Some("") => Err(format!(
                "`{s}` names no Sigma rule (expected sigma:<rule id>)"
            )),
            Some(_) => Ok(Detector::Sigma(s.into())),
            None => s
                .parse::<DetectorKind>()
                .map(Detector::Builtin)
                .map_err(|_| {
                    format!("unknown detector `{s}` (expected a built-in name or sigma:<rule id>)")
                }),
        }
    }
}

impl Serialize for Detector {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Detector {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// What an alert rests on.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Evidence {
    /// The count observed in the window (spikes, enumeration, off-hours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<f64>,
    /// The count the user's baseline expects in such a window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected: Option<f64>,
    /// Probability of seeing `observed` or more under the baseline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_value: Option<f64>,
    /// Values new to the user (tools, servers, resources, clients, addresses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub new_values: Vec<String>,
    /// Up to [`MAX_SAMPLE_EVENTS`] event ids, oldest first.
    #[serde(default)]
    pub event_ids: Vec<String>,
    /// Other facts worth showing (e.g. `distinct_tools`, `source_ip`).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub details: serde_json::Map<String, serde_json::Value>,
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Always [`ALERT_VERSION`].
    pub alert_version: u8,
    /// Deterministic: see [`alert_id`].
    pub alert_id: String,
    /// Event time at which the detector had its evidence.
    #[serde(with = "time_format")]
    pub time: DateTime<Utc>,
    pub tenant_id: String,
    pub user_id: String,
    pub detector: Detector,
    pub severity: Severity,
    /// 0-100, higher is more certain and more serious.
    pub score: u8,
    /// One line for a pager or a chat message.
    pub title: String,
    /// Plain-language account with the numbers behind it.
    pub explanation: String,
    pub evidence: Evidence,
    #[serde(with = "time_format")]
    pub window_start: DateTime<Utc>,
    #[serde(with = "time_format")]
    pub window_end: DateTime<Utc>,
    /// Further occurrences folded into this alert by suppression (0 when
    /// the alert is first emitted; updated copies carry the count).
    #[serde(default)]
    pub repeats: u32,
}

impl Alert {
    /// One JSON line, as written to NDJSON files.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("an alert always serializes")
    }

    /// A SQL query over the lake's `events` table that shows the user's
    /// calls around the alert: the starting point of an investigation.
    ///
    /// Its times are `TIMESTAMPTZ` literals in UTC (`…Z`), so it selects the
    /// same rows in tooltrail, DuckDB and PostgreSQL whatever the session's
    /// time zone (a naive `TIMESTAMP '…'` is read in the session's zone
    /// when compared with the `time` column). Values are SQL string
    /// literals and nothing else: chat renders the query verbatim.
    pub fn investigation_sql(&self) -> String {
        let from = self.window_start - chrono::Duration::minutes(30);
        let to = self.window_end + chrono::Duration::minutes(30);
        format!(
            "SELECT time, server, tool, resource, decision, status, source_ip, client_id, session_id \
             FROM events WHERE tenant_id = {} AND user_id = {} \
             AND time BETWEEN TIMESTAMPTZ '{}' AND TIMESTAMPTZ '{}' ORDER BY time",
            sql_string(&self.tenant_id),
            sql_string(&self.user_id),
            from.format("%Y-%m-%dT%H:%M:%SZ"),
            to.format("%Y-%m-%dT%H:%M:%SZ"),
        )
    }
}

/// Folds later copies of an alert (carrying its repeat count) into the
/// first, keeping emission order.
pub fn merge_repeats(alerts: Vec<Alert>) -> Vec<Alert> {
    let mut position: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let mut merged: Vec<Alert> = Vec::new();
    for alert in alerts {
        match position.get(&alert.alert_id) {
            Some(&i) => merged[i].repeats = merged[i].repeats.max(alert.repeats),
            None => {
                position.insert(alert.alert_id.clone(), merged.len());
                merged.push(alert);
            }
        }
    }
    merged
}

/// A SQL string literal: quotes doubled.
fn sql_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Namespace for alert ids (a fixed random UUID; never change it).
const ALERT_NAMESPACE: Uuid = Uuid::from_u128(0x6c1f_9a7e_2b4d_4f0e_9d3a_51c2_87e4_0b16);

/// The id of the alert by `detector` on (`tenant`, `user`) about `value`
/// (empty for window detectors) whose suppression window starts at
/// `window_start`.
pub fn alert_id(
    detector: impl AsRef<str>,
    tenant: &str,
    user: &str,
    value: &str,
    window_start: DateTime<Utc>,
) -> String {
    let name = format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{}\u{1f}{}",
        detector.as_ref(),
        tenant,
        user,
        value,
        window_start.timestamp_micros()
    );
    Uuid::new_v5(&ALERT_NAMESPACE, name.as_bytes()).to_string()
}

/// RFC 3339 with microseconds and `Z`, the contract's time format.
mod time_format {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&tooltrail_schemas::format_time(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// An alert for tests across the crate.
#[cfg(test)]
pub(crate) fn test_alert() -> Alert {
    let t = DateTime::parse_from_rfc3339("2026-10-20T09:35:00Z")
        .expect("valid")
        .with_timezone(&Utc);
    Alert {
        alert_version: ALERT_VERSION,
        alert_id: alert_id(DetectorKind::DenialSpike, "acme", "alice", "", t),
        time: t,
        tenant_id: "acme".into(),
        user_id: "alice".into(),
        detector: DetectorKind::DenialSpike.into(),
        severity: Severity::High,
        score: 91,
        title: "alice@acme: 37 denied calls in 5 min".into(),
        explanation: "her usual is 0.4 per 5 min (p = 3e-12)".into(),
        evidence: Evidence {
            observed: Some(37.0),
            expected: Some(0.4),
            p_value: Some(3e-12),
            event_ids: vec!["e1".into(), "e2".into()],
            ..Evidence::default()
        },
        window_start: t,
        window_end: t + chrono::Duration::minutes(5),
        repeats: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Alert {
        test_alert()
    }

    #[test]
    fn alert_ids_are_deterministic_and_distinguish_their_inputs() {
        let t = sample().time;
        let a = alert_id(DetectorKind::FirstSeenIp, "acme", "alice", "10.0.0.1", t);
        assert_eq!(
            a,
            alert_id(DetectorKind::FirstSeenIp, "acme", "alice", "10.0.0.1", t)
        );
        assert_ne!(
            a,
            alert_id(DetectorKind::FirstSeenIp, "acme", "alice", "10.0.0.2", t)
        );
        assert_ne!(
            a,
            alert_id(DetectorKind::FirstSeenIp, "acme", "bob", "10.0.0.1", t)
        );
        assert_ne!(
            a,
            alert_id(DetectorKind::FirstSeenTool, "acme", "alice", "10.0.0.1", t)
        );
        let later = t + chrono::Duration::hours(1);
        assert_ne!(
            a,
            alert_id(
                DetectorKind::FirstSeenIp,
                "acme",
                "alice",
                "10.0.0.1",
                later
            )
        );
        // Separators keep ("ab", "c") and ("a", "bc") apart.
        assert_ne!(
            alert_id(DetectorKind::CrossTenant, "ab", "c", "", t),
            alert_id(DetectorKind::CrossTenant, "a", "bc", "", t)
        );
    }

    #[test]
    fn the_record_round_trips_through_json() {
        let alert = sample();
        let json = alert.to_json();
        assert!(json.contains(r#""detector":"denial_spike""#), "{json}");
        assert!(json.contains(r#""severity":"high""#), "{json}");
        assert!(
            json.contains(r#""time":"2026-10-20T09:35:00.000000Z""#),
            "{json}"
        );
        let back: Alert = serde_json::from_str(&json).expect("parses");
        assert_eq!(back, alert);
    }

    /// The v1 record as first shipped: every later version must still read it.
    #[test]
    fn the_golden_v1_record_still_parses() {
        let golden = include_str!("../tests/golden/alert.v1.json");
        let alert: Alert = serde_json::from_str(golden).expect("golden alert parses");
        assert_eq!(alert.alert_version, 1);
        assert_eq!(alert.detector, DetectorKind::DenialSpike);
        assert_eq!(alert.evidence.event_ids.len(), 2);
    }

    #[test]
    fn the_investigation_query_quotes_its_values() {
        let mut alert = sample();
        alert.user_id = "o'brien".into();
        let sql = alert.investigation_sql();
        assert!(sql.contains("user_id = 'o''brien'"), "{sql}");
        assert!(sql.contains("TIMESTAMPTZ '2026-10-20T09:05:00Z'"), "{sql}");
        assert!(sql.contains("TIMESTAMPTZ '2026-10-20T10:10:00Z'"), "{sql}");
    }

    #[test]
    fn names_parse_back() {
        for d in DetectorKind::ALL {
            assert_eq!(d.as_str().parse::<DetectorKind>(), Ok(d));
        }
        for s in Severity::ALL {
            assert_eq!(s.as_str().parse::<Severity>(), Ok(s));
        }
        assert!("loud".parse::<Severity>().unwrap_err().contains("loud"));
        for name in ["denial_spike", "sigma:mcp-private-key-in-arguments"] {
            let detector: Detector = name.parse().expect("a detector name");
            assert_eq!(detector.as_str(), name);
            let json = serde_json::to_string(&detector).expect("serializes");
            assert_eq!(serde_json::from_str::<Detector>(&json).ok(), Some(detector));
        }
        assert!("sigma:".parse::<Detector>().is_err());
        assert!("loud".parse::<Detector>().unwrap_err().contains("loud"));
    }

    #[test]
    fn sigma_star_covers_every_rule_and_nothing_else() {
        let all: Detector = "sigma:*".parse().expect("valid");
        assert!(all.covers(&Detector::sigma("a")));
        assert!(!all.covers(&DetectorKind::OffHours.into()));
        assert!(!Detector::sigma("a").covers(&Detector::sigma("b")));
        assert!(Detector::sigma("a").covers(&Detector::sigma("a")));
    }
}
