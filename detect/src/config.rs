//! The detector's settings: `[detect]` in the configuration file. Every
//! field has a default; [`DetectConfig::validate`] turns them into
//! [`Settings`] or names each bad field.

use std::time::Duration;

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::alert::DetectorKind;

/// `[detect]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Detectors to run; all of them by default.
    pub detectors: Vec<DetectorKind>,
    /// How far behind the newest event time an event may arrive and still be
    /// counted in its window. Windows are judged once the watermark (newest
    /// event time minus this) passes their end. At most 5 minutes.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// Window that spike detectors count over.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// One alert per (user, detector, value) per this long; repeats inside it
    /// are counted on the first alert and do not page again.
    #[serde(with = "humantime_serde")]
    pub suppression: Duration,
    /// Directory of Sigma rules (`*.yml`, `*.yaml`, searched recursively)
    /// run beside the detectors: `logsource: {product: mcp, category:
    /// tool_call}`, see rules/README.md. Reloaded on SIGHUP and when a file
    /// changes; a bad rule is refused with its file, line and reason, and
    /// the others run. Unset: no rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_dir: Option<std::path::PathBuf>,
    /// History a user needs before first-seen detectors judge them by their
    /// own habits; until then a value is news only if their tenant's other
    /// users don't use it either. Also how long a tenant is watched before
    /// anyone in it is judged. A week and a half: one week shows the
    /// weekdays once, and tools used weekly or less are still turning up.
    #[serde(with = "humantime_serde")]
    pub min_history: Duration,
    /// Half-life of the rate baselines: older behaviour counts for less.
    #[serde(with = "humantime_serde")]
    pub baseline_half_life: Duration,
    /// A user with no events for this long is forgotten: their state is
    /// dropped (from memory and from checkpoints), and if they come back
    /// they start over as a new user, judged against their peers. By then
    /// every first-seen memory of theirs has run out and their baselines
    /// have decayed to almost nothing. At least `first_seen.window`.
    #[serde(with = "humantime_serde")]
    pub forget_after: Duration,
    /// A spike alerts when the chance of so many events under the user's
    /// baseline is below this.
    pub p_value: f64,
    /// Weight of the tenant's pooled rate in a user's baseline, in active
    /// minutes: a user with less history than this is judged mostly by peers.
    pub prior_weight_minutes: f64,
    pub corroboration: CorroborationConfig,
    pub denial_spike: DenialSpikeConfig,
    pub malformed_spike: SpikeConfig,
    pub volume_spike: VolumeConfig,
    pub first_seen: FirstSeenConfig,
    pub sensitive_tool: SensitiveConfig,
    pub off_hours: OffHoursConfig,
    pub enumeration: EnumerationConfig,
    pub cross_tenant: CrossTenantConfig,
    /// Where alerts are sent: `[detect.delivery]` and
    /// `[[detect.delivery.destinations]]`.
    pub delivery: crate::deliver::DeliveryConfig,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            detectors: DetectorKind::ALL.to_vec(),
            allowed_lateness: Duration::from_secs(60),
            window: Duration::from_secs(300),
            suppression: Duration::from_secs(3600),
            rules_dir: None,
            min_history: Duration::from_secs(10 * 86_400),
            baseline_half_life: Duration::from_secs(14 * 86_400),
            forget_after: Duration::from_secs(90 * 86_400),
            p_value: 1e-6,
            prior_weight_minutes: 60.0,
            corroboration: CorroborationConfig::default(),
            denial_spike: DenialSpikeConfig::default(),
            malformed_spike: SpikeConfig { min_count: 5 },
            volume_spike: VolumeConfig::default(),
            first_seen: FirstSeenConfig::default(),
            sensitive_tool: SensitiveConfig::default(),
            off_hours: OffHoursConfig::default(),
            enumeration: EnumerationConfig::default(),
            cross_tenant: CrossTenantConfig::default(),
            delivery: Default::default(),
        }
    }
}

/// How weak signals (first-seen values, single off-hours calls) become
/// alerts: only together. Each signal carries a weight (see ARCHITECTURE.md,
/// "Detection model"); when the weights of distinct detectors for one user
/// within `window` add up to `threshold`, one alert is raised for the
/// heaviest of them, listing the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorroborationConfig {
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    pub threshold: f64,
}

impl Default for CorroborationConfig {
    fn default() -> Self {
        CorroborationConfig {
            window: Duration::from_secs(3600),
            threshold: 4.0,
        }
    }
}

/// `denial_spike`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DenialSpikeConfig {
    /// Never alert on fewer denials than this in a window, however unusual.
    pub min_count: u32,
    /// Refusals of access within `new_identity_window` that page at once for
    /// an identity first seen today or yesterday (UTC), whatever its
    /// tenant's new identities usually do: the "403 spike" of a freshly
    /// created or stolen identity.
    pub new_identity_refusals: u32,
    #[serde(with = "humantime_serde")]
    pub new_identity_window: Duration,
}

impl Default for DenialSpikeConfig {
    fn default() -> Self {
        DenialSpikeConfig {
            min_count: 5,
            new_identity_refusals: 15,
            new_identity_window: Duration::from_secs(60),
        }
    }
}

/// `malformed_spike`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpikeConfig {
    /// Never alert on fewer events than this in a window, however unusual.
    pub min_count: u32,
}

/// `volume_spike`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VolumeConfig {
    /// Never alert on fewer calls than this in a window.
    pub min_count: u32,
    /// ... nor on fewer than this many times the expected count.
    pub min_ratio: f64,
    /// ... nor on fewer than this many times the user's busiest window
    /// lately (the most calls in a window on past days that raised no
    /// alert, decayed with `baseline_half_life`). Traffic made of sessions
    /// has a heavier tail than the negative binomial: a service account's
    /// batch run or a person's agent session reaches its usual peak every
    /// few days. 0 turns the check off.
    pub min_peak_ratio: f64,
    /// Over the long windows (15 min, 1 h), never alert on fewer than this
    /// many times the user's usual calls per active stretch of that length
    /// at this hour of the week; no peak is asked there: a rise sustained
    /// for an hour is not a session's burst.
    pub sustained_ratio: f64,
}

impl Default for VolumeConfig {
    fn default() -> Self {
        VolumeConfig {
            min_count: 60,
            min_ratio: 4.0,
            min_peak_ratio: 3.0,
            sustained_ratio: 3.0,
        }
    }
}

/// The `first_seen_*` detectors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FirstSeenConfig {
    /// A resource unused for this long is new again.
    #[serde(with = "humantime_serde")]
    pub resource_window: Duration,
    /// An address unused for this long is new again.
    #[serde(with = "humantime_serde")]
    pub ip_window: Duration,
    /// A tool, server or client unused for this long is new again.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// A value this many other users of the tenant use is not news.
    pub peer_users: u32,
    /// First-seen resources are a signal only when at least this many new
    /// ones come in one window, improbably many for the user (one new
    /// document is ordinary work); they page when corroborated.
    pub min_new_resources: u32,
}

impl Default for FirstSeenConfig {
    fn default() -> Self {
        FirstSeenConfig {
            resource_window: Duration::from_secs(30 * 86_400),
            ip_window: Duration::from_secs(30 * 86_400),
            window: Duration::from_secs(90 * 86_400),
            peer_users: 3,
            min_new_resources: 20,
        }
    }
}

/// `sensitive_tool`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SensitiveConfig {
    /// Tool name patterns (`*` and `?` wildcards), matched regardless of
    /// case: `delete_*` also catches `Delete_Repo`.
    pub tools: Vec<String>,
    /// A tool whose required scope contains one of these words is sensitive.
    pub scope_keywords: Vec<String>,
    /// A sensitive tool this many other users of the tenant use alerts only
    /// with corroboration.
    pub max_peer_users: u32,
}

impl Default for SensitiveConfig {
    fn default() -> Self {
        SensitiveConfig {
            tools: [
                "delete_*",
                "drop_*",
                "purge_*",
                "export_*",
                "send_email",
                "*_externally",
                "create_forwarding_rule",
                "update_*_visibility",
                "update_*_payment*",
                "create_gist",
                "transfer_*",
                "grant_*",
                "rotate_*",
                // Sharing a file or folder, the usual way data leaves.
                "share_*",
                // Cloud-API names (CloudTrail's eventName, GCP's methodName):
                // destroying, opening up access, minting credentials,
                // reading secrets, blinding the audit trail, sharing
                // snapshots and images out of the account.
                "Delete*",
                "Put*Policy",
                "Attach*Policy",
                "SetIamPolicy",
                "PutBucketAcl",
                "PutBucketPublicAccessBlock",
                "CreateAccessKey",
                "CreateLoginProfile",
                "UpdateLoginProfile",
                "CreateUser",
                "AddUserToGroup",
                "GetSecretValue",
                "GetPasswordData",
                "StopLogging",
                "UpdateTrail",
                "PutEventSelectors",
                "DisableKey",
                "ScheduleKeyDeletion",
                "AuthorizeSecurityGroupIngress",
                "Modify*SnapshotAttribute",
                "ModifyImageAttribute",
            ]
            .map(String::from)
            .to_vec(),
            scope_keywords: vec!["admin".into()],
            max_peer_users: 10,
        }
    }
}

/// `off_hours`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OffHoursConfig {
    /// An hour of the week whose smoothed share of the user's activity is
    /// below this counts as off hours (1/168 would be uniform).
    pub max_share: f64,
    /// History needed before a user's profile is trusted.
    #[serde(with = "humantime_serde")]
    pub min_history: Duration,
    /// How long a run of off-hours activity is followed.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Never alert on fewer distinct minutes with off-hours calls within
    /// `window` than this, however unusual for the user. Minutes, not calls:
    /// a short burst at night (one task done late) is ordinary; someone
    /// working a stolen session keeps at it.
    pub min_active_minutes: u32,
    /// A run pages on its own once it reaches this many active minutes.
    /// Below that (from `min_active_minutes`) it is a heavy signal, as strong
    /// as an alert raised on its own, and pages only with one more signal for
    /// the user: a new address, client or tool. Set it to
    /// `min_active_minutes` to page on every such run.
    pub alone_minutes: u32,
    /// ... and only this many hours or more from the nearest hour of the
    /// day holding 2% of the user's activity: deep in their night, not an
    /// evening that ran late (which pages with one more signal).
    pub alone_hours_from_usual: u32,
    /// ... and only once the run has gone on this long (its first call to
    /// its latest): someone keeping at it for most of an hour, not one long
    /// session of late work.
    #[serde(with = "humantime_serde")]
    pub alone_span: Duration,
}

impl Default for OffHoursConfig {
    fn default() -> Self {
        OffHoursConfig {
            max_share: 0.0005,
            min_history: Duration::from_secs(14 * 86_400),
            window: Duration::from_secs(2 * 3600),
            min_active_minutes: 15,
            alone_minutes: 20,
            alone_hours_from_usual: 3,
            alone_span: Duration::from_secs(40 * 60),
        }
    }
}

/// `enumeration`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnumerationConfig {
    /// Distinct resources in one window, most of them new to the user and
    /// improbably many under the user's rate of new resources.
    pub min_distinct: u32,
    /// Share of those resources that must be new to the user.
    pub min_new_share: f64,
    /// Distinct new tools or resources refused within `denied_window` (denials
    /// other than rate limits, 429, and expired or missing credentials, 401).
    pub min_denied_distinct: u32,
    #[serde(with = "humantime_serde")]
    pub denied_window: Duration,
}

impl Default for EnumerationConfig {
    fn default() -> Self {
        EnumerationConfig {
            min_distinct: 20,
            min_new_share: 0.7,
            min_denied_distinct: 5,
            denied_window: Duration::from_secs(86_400),
        }
    }
}

/// `cross_tenant`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CrossTenantConfig {
    /// A regular expression over `resource` whose `tenant` group names the
    /// tenant the resource belongs to.
    pub pattern: String,
}

impl Default for CrossTenantConfig {
    fn default() -> Self {
        CrossTenantConfig {
            pattern: r"^[A-Za-z][A-Za-z0-9+.-]*://(?P<tenant>[^/]+)/".into(),
        }
    }
}

/// A bad setting: the field's path and what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("detect.{field}: {problem}")]
pub struct ConfigError {
    pub field: String,
    pub problem: String,
}

/// Validated settings, in the units the engine uses.
#[derive(Debug, Clone)]
pub struct Settings {
    pub enabled: [bool; DetectorKind::ALL.len()],
    pub lateness_secs: i64,
    pub window_minutes: i64,
    pub suppression_secs: i64,
    pub min_history_days: u32,
    pub half_life_days: f64,
    pub forget_after_days: u32,
    pub p_value: f64,
    pub prior_weight: f64,
    pub denial_min: u32,
    pub new_identity_refusals: u32,
    pub new_identity_window_secs: i64,
    pub malformed_min: u32,
    pub volume: VolumeConfig,
    pub resource_window_days: u32,
    pub ip_window_days: u32,
    pub value_window_days: u32,
    pub peer_users: u32,
    pub min_new_resources: u32,
    pub sensitive_tools: GlobSet,
    pub sensitive_scopes: Vec<String>,
    pub sensitive_max_peers: u32,
    pub off_hours_share: f64,
    pub off_hours_history_days: u32,
    pub off_hours_window_secs: i64,
    pub off_hours_min_minutes: u32,
    pub off_hours_alone_minutes: u32,
    pub off_hours_alone_depth: u32,
    pub off_hours_alone_span_secs: i64,
    pub corroboration_secs: i64,
    pub corroboration_threshold: f64,
    pub enumeration: EnumerationConfig,
    pub denied_window_secs: i64,
    pub tenant_pattern: Regex,
    /// The pattern is the default `scheme://tenant/...`: parsed without the
    /// regex engine, on the hot path.
    pub default_tenant_pattern: bool,
    /// Sigma rules run beside the detectors (`detect.rules_dir`); set by
    /// whoever loads them, since loading reads files.
    pub rules: Option<std::sync::Arc<crate::sigma::RuleSource>>,
}

impl Settings {
    pub fn enabled(&self, kind: DetectorKind) -> bool {
        self.enabled[kind as usize]
    }
}

impl DetectConfig {
    /// Checks every field; all problems are reported, not just the first.
    pub fn validate(&self) -> Result<Settings, Vec<ConfigError>> {
        let mut errors = Vec::new();
        let mut bad = |field: &str, problem: String| {
            errors.push(ConfigError {
                field: field.into(),
                problem,
            })
        };
        let days = |d: Duration| (d.as_secs() / 86_400) as u32;
        if self.allowed_lateness > Duration::from_secs(300) {
            bad("allowed_lateness", "must be at most 5m".into());
        }
        let window_minutes = (self.window.as_secs() / 60) as i64;
        if !(1..=30).contains(&window_minutes) || !self.window.as_secs().is_multiple_of(60) {
            bad("window", "must be whole minutes between 1m and 30m".into());
        }
        if !(self.corroboration.threshold.is_finite() && self.corroboration.threshold > 0.0) {
            bad("corroboration.threshold", "must be positive".into());
        }
        if self.suppression.is_zero() {
            bad("suppression", "must be positive".into());
        }
        if self.baseline_half_life < Duration::from_secs(86_400) {
            bad("baseline_half_life", "must be at least 1 day".into());
        }
        if !(self.p_value > 0.0 && self.p_value < 0.5) {
            bad("p_value", format!("{} is not in (0, 0.5)", self.p_value));
        }
        if self.forget_after < self.first_seen.window {
            bad(
                "forget_after",
                format!(
                    "must be at least first_seen.window ({} days): a user's first-seen memory must not be dropped before it runs out",
                    self.first_seen.window.as_secs() / 86_400
                ),
            );
        }
        if !(self.prior_weight_minutes.is_finite() && self.prior_weight_minutes > 0.0) {
            bad("prior_weight_minutes", "must be positive".into());
        }
        if !(self.volume_spike.min_ratio.is_finite() && self.volume_spike.min_ratio >= 1.0) {
            bad("volume_spike.min_ratio", "must be at least 1".into());
        }
        // Counted over the recent events each user keeps.
        let most = crate::engine::RECENT_EVENTS as u32;
        if !(2..=most).contains(&self.denial_spike.new_identity_refusals) {
            bad(
                "denial_spike.new_identity_refusals",
                format!("must be between 2 and {most}"),
            );
        }
        let window = self.denial_spike.new_identity_window;
        if window.is_zero() || window > Duration::from_secs(3600) {
            bad(
                "denial_spike.new_identity_window",
                "must be between 1s and 1h".into(),
            );
        }
        if !(self.volume_spike.sustained_ratio.is_finite()
            && self.volume_spike.sustained_ratio >= 1.0)
        {
            bad("volume_spike.sustained_ratio", "must be at least 1".into());
        }
        if !(self.volume_spike.min_peak_ratio.is_finite()
            && self.volume_spike.min_peak_ratio >= 0.0)
        {
            bad(
                "volume_spike.min_peak_ratio",
                "must be 0 (off) or more".into(),
            );
        }
        for (field, d) in [
            (
                "first_seen.resource_window",
                self.first_seen.resource_window,
            ),
            ("first_seen.ip_window", self.first_seen.ip_window),
            ("first_seen.window", self.first_seen.window),
        ] {
            if days(d) < 2 {
                bad(field, "must be at least 2 days".into());
            }
        }
        let mut globs = GlobSetBuilder::new();
        for (i, pattern) in self.sensitive_tool.tools.iter().enumerate() {
            match GlobBuilder::new(pattern).case_insensitive(true).build() {
                Ok(g) => {
                    globs.add(g);
                }
                Err(e) => bad(&format!("sensitive_tool.tools[{i}]"), e.to_string()),
            }
        }
        let sensitive_tools = globs.build().unwrap_or_else(|e| {
            bad("sensitive_tool.tools", e.to_string());
            GlobSet::empty()
        });
        if !(self.off_hours.max_share > 0.0 && self.off_hours.max_share < 1.0 / 168.0) {
            bad("off_hours.max_share", "must be in (0, 1/168)".into());
        }
        if !(60..=86_400).contains(&self.off_hours.window.as_secs()) {
            bad(
                "off_hours.window",
                "must be between 1 minute and 1 day".into(),
            );
        }
        if !(self.enumeration.min_new_share >= 0.0 && self.enumeration.min_new_share <= 1.0) {
            bad("enumeration.min_new_share", "must be in [0, 1]".into());
        }
        if self.enumeration.min_distinct < 2 {
            bad("enumeration.min_distinct", "must be at least 2".into());
        }
        let tenant_pattern = match Regex::new(&self.cross_tenant.pattern) {
            Ok(re) if re.capture_names().any(|n| n == Some("tenant")) => re,
            Ok(_) => {
                bad("cross_tenant.pattern", "has no `tenant` group".into());
                Regex::new("$^").expect("a valid regex")
            }
            Err(e) => {
                bad("cross_tenant.pattern", e.to_string());
                Regex::new("$^").expect("a valid regex")
            }
        };
        for (path, problem) in self.delivery.validate() {
            let field = path.strip_prefix("detect.").unwrap_or(&path).to_string();
            errors.push(ConfigError { field, problem });
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut enabled = [false; DetectorKind::ALL.len()];
        for d in &self.detectors {
            enabled[*d as usize] = true;
        }
        Ok(Settings {
            enabled,
            lateness_secs: self.allowed_lateness.as_secs() as i64,
            window_minutes,
            suppression_secs: self.suppression.as_secs() as i64,
            min_history_days: days(self.min_history),
            half_life_days: self.baseline_half_life.as_secs_f64() / 86_400.0,
            forget_after_days: days(self.forget_after),
            p_value: self.p_value,
            prior_weight: self.prior_weight_minutes,
            denial_min: self.denial_spike.min_count,
            new_identity_refusals: self.denial_spike.new_identity_refusals,
            new_identity_window_secs: self.denial_spike.new_identity_window.as_secs() as i64,
            malformed_min: self.malformed_spike.min_count,
            volume: self.volume_spike.clone(),
            resource_window_days: days(self.first_seen.resource_window),
            ip_window_days: days(self.first_seen.ip_window),
            value_window_days: days(self.first_seen.window),
            peer_users: self.first_seen.peer_users,
            min_new_resources: self.first_seen.min_new_resources,
            sensitive_tools,
            sensitive_scopes: self.sensitive_tool.scope_keywords.clone(),
            sensitive_max_peers: self.sensitive_tool.max_peer_users,
            off_hours_share: self.off_hours.max_share,
            off_hours_history_days: days(self.off_hours.min_history),
            off_hours_window_secs: self.off_hours.window.as_secs() as i64,
            off_hours_min_minutes: self.off_hours.min_active_minutes,
            off_hours_alone_minutes: self.off_hours.alone_minutes,
            off_hours_alone_depth: self.off_hours.alone_hours_from_usual,
            off_hours_alone_span_secs: self.off_hours.alone_span.as_secs() as i64,
            corroboration_secs: self.corroboration.window.as_secs() as i64,
            corroboration_threshold: self.corroboration.threshold,
            enumeration: self.enumeration.clone(),
            denied_window_secs: self.enumeration.denied_window.as_secs() as i64,
            tenant_pattern,
            default_tenant_pattern: self.cross_tenant.pattern
                == CrossTenantConfig::default().pattern,
            rules: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid() {
        let s = DetectConfig::default()
            .validate()
            .expect("defaults validate");
        assert!(DetectorKind::ALL.iter().all(|d| s.enabled(*d)));
        assert!(s.sensitive_tools.is_match("delete_repository"));
        assert!(s.sensitive_tools.is_match("share_channel_externally"));
        assert!(!s.sensitive_tools.is_match("search_issues"));
        // Any case, and cloud-API names.
        for tool in [
            "Delete_Repository",
            "DELETE_REPOSITORY",
            "DeleteBucket",
            "PutUserPolicy",
            "AttachRolePolicy",
            "CreateAccessKey",
            "GetSecretValue",
            "StopLogging",
            "ModifyDBSnapshotAttribute",
        ] {
            assert!(s.sensitive_tools.is_match(tool), "{tool}");
        }
        for tool in ["ListBuckets", "GetObject", "DescribeInstances", "PutObject"] {
            assert!(!s.sensitive_tools.is_match(tool), "{tool}");
        }
        let caps = s
            .tenant_pattern
            .captures("gdrive://acme/docs/x")
            .expect("matches");
        assert_eq!(&caps["tenant"], "acme");
    }

    #[test]
    fn every_bad_field_is_named() {
        let config = DetectConfig {
            allowed_lateness: Duration::from_secs(600),
            p_value: 2.0,
            denial_spike: DenialSpikeConfig {
                new_identity_refusals: 25,
                ..DenialSpikeConfig::default()
            },
            forget_after: Duration::from_secs(30 * 86_400),
            sensitive_tool: SensitiveConfig {
                tools: vec!["ok_*".into(), "bad[".into()],
                scope_keywords: vec![],
                max_peer_users: 10,
            },
            cross_tenant: CrossTenantConfig {
                pattern: "://(?P<org>[^/]+)".into(),
            },
            ..DetectConfig::default()
        };
        let errors = config.validate().expect_err("invalid");
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "allowed_lateness",
                "p_value",
                "forget_after",
                "denial_spike.new_identity_refusals",
                "sensitive_tool.tools[1]",
                "cross_tenant.pattern"
            ]
        );
        assert!(
            errors[3].to_string().contains("between 2 and 20"),
            "{}",
            errors[3]
        );
        assert!(
            errors[2]
                .to_string()
                .contains("first_seen.window (90 days)"),
            "{}",
            errors[2]
        );
        assert!(errors[5].to_string().contains("no `tenant` group"));
    }

    #[test]
    fn toml_uses_human_durations_and_rejects_unknown_keys() {
        let c: DetectConfig =
            toml::from_str("suppression = \"30m\"\n[first_seen]\nip_window = \"14d\"\n")
                .expect("parses");
        assert_eq!(c.suppression, Duration::from_secs(1800));
        assert_eq!(c.first_seen.ip_window, Duration::from_secs(14 * 86_400));
        let err = toml::from_str::<DetectConfig>("supression = \"30m\"").expect_err("typo");
        assert!(err.to_string().contains("supression"), "{err}");
    }
}
