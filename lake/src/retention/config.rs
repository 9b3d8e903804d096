//! `[retention]`: how long each table is kept, per-tenant overrides, and the
//! legal holds set in configuration. Every field is documented: these
//! comments are the user documentation of the section.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::retention::TableKind;
use crate::retention::holds::{self, LegalHold};

const DAY: u64 = 86_400;

/// `[retention]`: how long each table is kept, and what legal holds keep longer.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Whether `tooltrail up` applies retention every `interval`.
    /// `tooltrail retention apply` works either way, and `up` vacuums
    /// either way.
    pub enabled: bool,
    /// How often `tooltrail up` applies retention (the first run is at start).
    #[serde(with = "duration")]
    pub interval: Duration,
    /// How long events are kept, by event time: an hour partition
    /// (`events/dt=…/hour=…`) is deleted once it ended longer ago than this.
    #[serde(with = "duration")]
    pub events: Duration,
    /// How long quarantined input is kept, by receipt time (day partitions).
    #[serde(with = "duration")]
    pub quarantine: Duration,
    /// How long alerts are kept, by alert time (day partitions), and their
    /// triage changes (`alert_triage`), by the time of the change.
    #[serde(with = "duration")]
    pub alerts: Duration,
    /// How long the query audit is kept (day partitions). The audit of who
    /// read what has its own, longer retention: it must be at least every
    /// other retention here, tenant overrides included. Legal holds on
    /// tenants do not apply to it (its records belong to principals).
    #[serde(with = "duration")]
    pub query_audit: Duration,
    /// How long a data file outlives its removal from a table (by
    /// retention or compaction) before vacuum deletes it from storage, so
    /// that readers of older table versions (a long query, another engine's
    /// time travel) keep working. Files a writer wrote but never committed
    /// are deleted after as long. `tooltrail up` vacuums every
    /// `retention.interval`, after the retention run if `enabled`;
    /// `tooltrail retention vacuum` does it on demand.
    #[serde(with = "duration")]
    pub vacuum_grace: Duration,
    /// Per-tenant overrides, `[retention.tenants.<tenant_id>]`, each key
    /// optional: `events`, `quarantine`, `alerts`. A partition shared by
    /// tenants with different retention is rewritten without the rows that
    /// are due. Quarantined records are attributed to a tenant when their raw
    /// bytes are JSON with a string `tenant_id`; others follow the default.
    pub tenants: BTreeMap<String, TenantRetention>,
    /// Legal holds, `[[retention.legal_holds]]`: `id`, `tenant`, optional
    /// `from` and `to` (RFC 3339, or a date `YYYY-MM-DD`; `from` is
    /// inclusive, `to` exclusive, and a date as `to` includes that whole
    /// day), and `reason`. A hold keeps the tenant's rows in every partition
    /// that overlaps its range, whatever their retention. Holds set in
    /// configuration cannot be removed through the admin API.
    pub legal_holds: Vec<LegalHoldConfig>,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            enabled: true,
            interval: Duration::from_secs(3600),
            events: Duration::from_secs(365 * DAY),
            quarantine: Duration::from_secs(90 * DAY),
            alerts: Duration::from_secs(365 * DAY),
            query_audit: Duration::from_secs(7 * 365 * DAY),
            vacuum_grace: crate::vacuum::DEFAULT_GRACE,
            tenants: BTreeMap::new(),
            legal_holds: Vec::new(),
        }
    }
}

/// `[retention.tenants.<tenant_id>]`: one tenant's retention, where it
/// differs from the default.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TenantRetention {
    /// How long this tenant's events are kept.
    #[serde(with = "duration::option", skip_serializing_if = "Option::is_none")]
    pub events: Option<Duration>,
    /// How long this tenant's quarantined input is kept (records whose
    /// tenant can be read from their raw bytes).
    #[serde(with = "duration::option", skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<Duration>,
    /// How long this tenant's alerts are kept.
    #[serde(with = "duration::option", skip_serializing_if = "Option::is_none")]
    pub alerts: Option<Duration>,
}

/// `[[retention.legal_holds]]`: a legal hold set in configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LegalHoldConfig {
    /// A unique name for the hold (letters, digits, `.`, `_`, `-`), e.g. `"case-2026-114"`.
    pub id: String,
    /// The tenant whose data the hold keeps.
    pub tenant: String,
    /// Start of the held range (inclusive), RFC 3339 or `YYYY-MM-DD`. Absent: from the beginning.
    #[serde(
        default,
        deserialize_with = "time_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub from: Option<String>,
    /// End of the held range (exclusive; a date includes that day). Absent: no end.
    #[serde(
        default,
        deserialize_with = "time_text",
        skip_serializing_if = "Option::is_none"
    )]
    pub to: Option<String>,
    /// Why the data is held (case, request, ticket); printed with everything it keeps.
    pub reason: String,
}

/// A time as text, quoted or as a bare TOML date or datetime (which the
/// configuration loader hands over as a one-entry map holding its text).
fn time_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Plain(String),
        Toml(BTreeMap<String, String>),
    }
    Ok(match Option::<Text>::deserialize(d)? {
        None => None,
        Some(Text::Plain(text)) => Some(text),
        Some(Text::Toml(map)) if map.len() == 1 => map.into_values().next(),
        Some(Text::Toml(_)) => {
            return Err(serde::de::Error::custom(
                "expected a time: RFC 3339 or YYYY-MM-DD",
            ));
        }
    })
}

/// The shortest retention accepted: partitions are hours.
const MIN_RETENTION: Duration = Duration::from_secs(3600);

impl RetentionConfig {
    /// How long `table` keeps rows of `tenant` (`None`: rows whose tenant is
    /// unknown, and tables without tenants).
    pub fn retention(&self, table: TableKind, tenant: Option<&str>) -> Duration {
        let default = match table {
            TableKind::Events => self.events,
            TableKind::Quarantine => self.quarantine,
            TableKind::Alerts | TableKind::AlertTriage => self.alerts,
            TableKind::QueryAudit => return self.query_audit,
        };
        let Some(over) = tenant.and_then(|t| self.tenants.get(t)) else {
            return default;
        };
        let value = match table {
            TableKind::Events => over.events,
            TableKind::Quarantine => over.quarantine,
            TableKind::Alerts | TableKind::AlertTriage => over.alerts,
            TableKind::QueryAudit => None,
        };
        value.unwrap_or(default)
    }

    /// The shortest and longest retention any tenant has in `table`.
    pub fn bounds(&self, table: TableKind) -> (Duration, Duration) {
        let mut all = vec![self.retention(table, None)];
        all.extend(
            self.tenants
                .keys()
                .map(|tenant| self.retention(table, Some(tenant))),
        );
        let min = all.iter().copied().min().unwrap_or_default();
        let max = all.iter().copied().max().unwrap_or_default();
        (min, max)
    }

    /// The legal holds set in configuration, parsed. [`validate`](Self::validate)
    /// reports the ones that do not parse; they are left out here.
    pub fn holds(&self) -> Vec<LegalHold> {
        self.legal_holds
            .iter()
            .filter_map(|h| LegalHold::from_config(h).ok())
            .collect()
    }

    /// Checks rules that types alone cannot express; `(path, problem)` pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut issues = Vec::new();
        let show = |d: Duration| duration::format(d);
        if self.interval.is_zero() {
            issues.push(("retention.interval".into(), "must be more than 0s".into()));
        }
        let check_min = |issues: &mut Vec<(String, String)>, path: String, value: Duration| {
            if value < MIN_RETENTION {
                issues.push((
                    path,
                    format!(
                        "must be at least 1h (partitions are hours), got {}",
                        show(value)
                    ),
                ));
            }
        };
        check_min(&mut issues, "retention.events".into(), self.events);
        check_min(&mut issues, "retention.quarantine".into(), self.quarantine);
        check_min(&mut issues, "retention.alerts".into(), self.alerts);
        check_min(
            &mut issues,
            "retention.query_audit".into(),
            self.query_audit,
        );
        let mut others = vec![
            ("retention.events".to_owned(), self.events),
            ("retention.quarantine".to_owned(), self.quarantine),
            ("retention.alerts".to_owned(), self.alerts),
        ];
        for (tenant, over) in &self.tenants {
            for (key, value) in [
                ("events", over.events),
                ("quarantine", over.quarantine),
                ("alerts", over.alerts),
            ] {
                if let Some(value) = value {
                    let path = format!("retention.tenants.{tenant}.{key}");
                    check_min(&mut issues, path.clone(), value);
                    others.push((path, value));
                }
            }
            if tenant.is_empty() {
                issues.push(("retention.tenants".into(), "a tenant id is empty".into()));
            }
        }
        if let Some((path, longest)) = others.iter().max_by_key(|(_, d)| *d)
            && *longest > self.query_audit
        {
            issues.push((
                "retention.query_audit".into(),
                format!(
                    "must be at least as long as every other retention (the query audit outlives \
                     what it audits): {} is shorter than {path} = {}",
                    show(self.query_audit),
                    show(*longest)
                ),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, hold) in self.legal_holds.iter().enumerate() {
            let at = format!("retention.legal_holds[{i}]");
            // The id and the rest separately, so that both are named.
            if let Err(problem) = holds::check_id(&hold.id) {
                issues.push((format!("{at}.id"), problem));
            }
            let range = holds::parse_range(
                &hold.tenant,
                hold.from.as_deref(),
                hold.to.as_deref(),
                &hold.reason,
            );
            if let Err((field, problem)) = range {
                issues.push((format!("{at}.{field}"), problem));
            }
            if !seen.insert(hold.id.as_str()) {
                issues.push((
                    format!("{at}.id"),
                    format!("`{}` is used by another hold; ids must be unique", hold.id),
                ));
            }
        }
        issues
    }
}

/// A duration as configuration writes it: `"400d"`, or humantime's form
/// when it is not whole days.
pub fn format_duration(d: Duration) -> String {
    duration::format(d)
}

/// Durations as `"400d"`: parsed by humantime, written in whole days when
/// they are whole days (humantime would write 365 days as months and hours).
pub(crate) mod duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn format(d: Duration) -> String {
        let secs = d.as_secs();
        if secs > 0 && secs.is_multiple_of(super::DAY) && d.subsec_nanos() == 0 {
            format!("{}d", secs / super::DAY)
        } else {
            humantime_serde::re::humantime::format_duration(d).to_string()
        }
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        humantime_serde::deserialize(d)
    }

    pub mod option {
        use std::time::Duration;

        use serde::{Deserializer, Serializer};

        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => s.serialize_str(&super::format(*d)),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            humantime_serde::option::deserialize(d)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_toml_date_is_read_as_its_text() {
        // How the configuration loader hands over `from = 2026-01-01`.
        let hold: LegalHoldConfig = serde_json::from_value(serde_json::json!({
            "id": "case-1", "tenant": "acme", "reason": "r",
            "from": {"$__toml_private_datetime": "2026-01-01"}, "to": "2026-02-01",
        }))
        .unwrap();
        assert_eq!(hold.from.as_deref(), Some("2026-01-01"));
        assert_eq!(hold.to.as_deref(), Some("2026-02-01"));
    }

    #[test]
    fn every_bad_field_of_a_hold_is_named() {
        let config = RetentionConfig {
            legal_holds: vec![LegalHoldConfig {
                id: "a b".into(),
                tenant: String::new(),
                reason: "r".into(),
                ..LegalHoldConfig::default()
            }],
            ..RetentionConfig::default()
        };
        let paths: Vec<String> = config.validate().into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            paths,
            [
                "retention.legal_holds[0].id",
                "retention.legal_holds[0].tenant"
            ]
        );
    }
}
