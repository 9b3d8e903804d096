//! The rules in the stream: each event through rsigma's correlation engine
//! at its event time; a match becomes an [`Alert`] of `sigma:<rule id>`,
//! suppressed per user and rule like every other detector's.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rsigma_eval::{
    CorrelationConfig, CorrelationEngine, CorrelationEventMode, EvaluationResult, ResultBody,
    TimestampFallback,
};
use rustc_hash::FxHashMap as HashMap;
use tooltrail_schemas::ToolCallEvent;

use super::RuleSource;
use super::event::McpEvent;
use super::load::RuleSet;
use crate::alert::{
    ALERT_VERSION, Alert, Detector, Evidence, MAX_SAMPLE_EVENTS, Severity, alert_id,
};

/// Fields whose values an explanation may show: the call's own, never its
/// arguments (where secrets are what rules look for).
const SHOWN: &[&str] = &[
    "tool",
    "server",
    "method",
    "decision",
    "status",
    "resource",
    "client_id",
    "agent_id",
    "source_ip",
    "required_scope",
    "policy_id",
    "error_type",
    "principal_type",
];

/// An alert open for suppression.
struct Open {
    until: i64,
    alert: Alert,
}

/// The rule engine of one stream; see the [module docs](self).
pub struct SigmaDetector {
    source: Arc<RuleSource>,
    generation: u64,
    rules: Arc<RuleSet>,
    engine: CorrelationEngine,
    suppression_secs: i64,
    /// `(tenant, user, rule id)` to its open alert.
    open: HashMap<(String, String, Arc<str>), Open>,
    /// Newest event time seen.
    newest: i64,
    evicted_at: i64,
}

/// The engine settings every tooltrail rule runs with.
pub(crate) fn engine_for(rules: &RuleSet) -> CorrelationEngine {
    let config = CorrelationConfig {
        timestamp_fields: vec!["time".into()],
        timestamp_fallback: TimestampFallback::Skip,
        // Detection rules only referenced by correlations feed them and
        // raise nothing themselves.
        emit_detections: false,
        correlation_event_mode: CorrelationEventMode::Refs,
        max_correlation_events: MAX_SAMPLE_EVENTS,
        ..CorrelationConfig::default()
    };
    let mut engine = CorrelationEngine::new(config);
    if let Err(error) = engine.add_collection(rules.collection()) {
        // Every rule compiled alone when loaded; a failure here is a bug.
        tracing::error!(%error, "sigma rules failed to load together; none run");
        return CorrelationEngine::new(CorrelationConfig::default());
    }
    engine
}

impl SigmaDetector {
    pub fn new(source: Arc<RuleSource>, suppression_secs: i64) -> Self {
        let (generation, rules) = source.current();
        SigmaDetector {
            engine: engine_for(&rules),
            source,
            generation,
            rules,
            suppression_secs: suppression_secs.max(1),
            open: HashMap::default(),
            newest: i64::MIN,
            evicted_at: i64::MIN,
        }
    }

    /// Rules loaded in this detector.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Picks up a reloaded rule set: correlation windows restart empty,
    /// open suppressions stay.
    fn refresh(&mut self) {
        if self.source.generation() == self.generation {
            return;
        }
        let (generation, rules) = self.source.current();
        self.engine = engine_for(&rules);
        self.generation = generation;
        self.rules = rules;
    }

    /// Runs the rules on one event; alerts go to `out`.
    pub fn observe(&mut self, event: &ToolCallEvent, out: &mut Vec<Alert>) {
        self.refresh();
        if self.rules.rules().is_empty() {
            return;
        }
        let secs = event.time.timestamp();
        self.newest = self.newest.max(secs);
        let results = self.engine.process_event_at(&McpEvent::new(event), secs);
        for result in results {
            self.raise(event, &result, out);
        }
    }

    /// Moves event time on to `watermark` (Unix seconds): closes expired
    /// suppressions, publishing their repeat counts, and drops correlation
    /// state that has left its window.
    pub fn advance(&mut self, watermark: i64, out: &mut Vec<Alert>) {
        self.open.retain(|_, open| {
            if open.until > watermark {
                return true;
            }
            if open.alert.repeats > 0 {
                out.push(open.alert.clone());
            }
            false
        });
        if watermark >= self.evicted_at.saturating_add(60) {
            self.engine.evict_expired(watermark);
            self.evicted_at = watermark;
        }
    }

    /// The end of a stream: every open suppression's count goes out.
    pub fn finish(&mut self, out: &mut Vec<Alert>) {
        let mut open: Vec<Open> = self.open.drain().map(|(_, o)| o).collect();
        open.sort_by(|a, b| a.alert.alert_id.cmp(&b.alert.alert_id));
        out.extend(
            open.into_iter()
                .filter(|o| o.alert.repeats > 0)
                .map(|o| o.alert),
        );
    }

    fn raise(&mut self, event: &ToolCallEvent, result: &EvaluationResult, out: &mut Vec<Alert>) {
        let Some(id) = result.header.rule_id.as_deref() else {
            return;
        };
        let Some(info) = self.rules.rule(id) else {
            return;
        };
        if !info.alerts {
            return;
        }
        let secs = event.time.timestamp();
        let key = (
            event.tenant_id.clone(),
            event.user_id.clone(),
            Arc::<str>::from(id),
        );
        if let Some(open) = self.open.get_mut(&key) {
            if open.until > secs {
                open.alert.repeats += 1;
                if open.alert.evidence.event_ids.len() < MAX_SAMPLE_EVENTS {
                    open.alert.evidence.event_ids.push(event.event_id.clone());
                }
                return;
            }
            let closed = self.open.remove(&key).expect("found above");
            if closed.alert.repeats > 0 {
                out.push(closed.alert);
            }
        }
        let alert = build(event, result, info, self.suppression_secs);
        self.open.insert(
            key,
            Open {
                until: secs + self.suppression_secs,
                alert: alert.clone(),
            },
        );
        out.push(alert);
    }
}

/// The alert for one match.
pub(crate) fn build(
    event: &ToolCallEvent,
    result: &EvaluationResult,
    info: &super::RuleInfo,
    suppression_secs: i64,
) -> Alert {
    let detector = Detector::sigma(&info.id);
    let secs = event.time.timestamp();
    let at = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap_or_default();
    let mut details = serde_json::Map::new();
    details.insert("rule_id".into(), info.id.clone().into());
    details.insert("rule_title".into(), info.title.clone().into());
    if !info.references.is_empty() {
        details.insert("references".into(), info.references.clone().into());
    }
    let (what, window_start, event_ids) = match &result.body {
        ResultBody::Detection(d) => {
            let mut fields: Vec<String> = Vec::new();
            for m in &d.matched_fields {
                let shown = SHOWN.contains(&m.field.as_str());
                let text = match (&m.value, shown) {
                    (serde_json::Value::String(s), true) => format!("{}={}", m.field, clip(s)),
                    (serde_json::Value::Null, _) | (_, false) => m.field.clone(),
                    (v, true) => format!("{}={v}", m.field),
                };
                if !fields.contains(&text) {
                    fields.push(text);
                }
            }
            let names: Vec<&str> = d.matched_fields.iter().map(|m| m.field.as_str()).collect();
            details.insert("matched_fields".into(), names.into());
            let what = if fields.is_empty() {
                "matched".to_owned()
            } else {
                format!("matched on {}", fields.join(", "))
            };
            // Single-event alerts key on the suppression period they fall
            // in, so events reordered within it give the same id.
            let start = secs - secs.rem_euclid(suppression_secs);
            (what, start, vec![event.event_id.clone()])
        }
        ResultBody::Correlation(c) => {
            let group: Vec<String> = c
                .group_key
                .iter()
                .filter(|(k, _)| !super::USER_KEY.contains(&k.as_str()))
                .map(|(k, v)| format!("{k}={}", clip(v)))
                .collect();
            details.insert(
                "correlation_type".into(),
                format!("{:?}", c.correlation_type).to_lowercase().into(),
            );
            details.insert("aggregated_value".into(), c.aggregated_value.into());
            let ids: Vec<String> = c
                .event_refs
                .iter()
                .flatten()
                .filter_map(|r| r.id.clone())
                .take(MAX_SAMPLE_EVENTS)
                .collect();
            let what = format!(
                "{} in {}{}",
                c.aggregated_value,
                humantime::format_duration(std::time::Duration::from_secs(c.timespan_secs)),
                if group.is_empty() {
                    String::new()
                } else {
                    format!(" for {}", group.join(", "))
                }
            );
            let start = secs - c.timespan_secs as i64;
            (
                what,
                start,
                if ids.is_empty() {
                    vec![event.event_id.clone()]
                } else {
                    ids
                },
            )
        }
    };
    let score = match info.severity {
        Severity::Low => 40,
        Severity::Medium => 60,
        Severity::High => 80,
        Severity::Critical => 95,
    };
    let call = match &event.tool {
        Some(tool) => format!("{} on {}", clip(tool), clip(&event.server)),
        None => format!("{} on {}", clip(&event.method), clip(&event.server)),
    };
    Alert {
        alert_version: ALERT_VERSION,
        alert_id: alert_id(
            &detector,
            &event.tenant_id,
            &event.user_id,
            "",
            at(window_start),
        ),
        time: event.time,
        tenant_id: event.tenant_id.clone(),
        user_id: event.user_id.clone(),
        severity: info.severity,
        score,
        title: format!("{}@{}: {}", event.user_id, event.tenant_id, info.title),
        explanation: format!(
            "Sigma rule {} ({}) {what}; the last call was {call}.",
            info.id, info.title
        ),
        evidence: Evidence {
            event_ids,
            details,
            ..Evidence::default()
        },
        window_start: at(window_start),
        window_end: event.time,
        repeats: 0,
        detector,
    }
}

/// A value as shown in an explanation: at most 80 characters.
fn clip(s: &str) -> String {
    if s.chars().count() <= 80 {
        s.to_owned()
    } else {
        format!("{}…", s.chars().take(79).collect::<String>())
    }
}

/// For tests and hunts: a detector over a fixed rule set.
impl SigmaDetector {
    pub fn fixed(rules: RuleSet, suppression_secs: i64) -> Self {
        SigmaDetector::new(Arc::new(RuleSource::fixed(rules)), suppression_secs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::sigma::load::test_rules as rules;

    fn call(secs: i64, user: &str, tool: &str, arguments: &str) -> ToolCallEvent {
        let time = DateTime::<Utc>::from_timestamp(T0 + secs, 0).expect("valid");
        tooltrail_schemas::decode(
            format!(
                r#"{{"schema_version":1,"event_id":"e{secs}{user}","time":"{}","tenant_id":"acme",
                "user_id":"{user}","server":"gmail","method":"tools/call","tool":"{tool}",
                "resource":"r{secs}","decision":"allow","status":200,"arguments":{arguments}}}"#,
                tooltrail_schemas::format_time(&time)
            )
            .as_bytes(),
        )
        .expect("a valid event")
    }

    /// 2026-01-05T09:00:00Z.
    const T0: i64 = 1_767_603_600;

    const KEY_RULE: &str = "title: AWS key in arguments\nid: aws-key\n\
        logsource: {product: mcp, category: tool_call}\ndetection:\n  sel:\n    \
        arguments.text|re: 'AKIA[0-9A-Z]{16}'\n  condition: sel\nlevel: critical\n";

    #[test]
    fn a_match_is_an_alert_of_the_rule_that_never_shows_the_argument() {
        let mut detector = SigmaDetector::fixed(rules(KEY_RULE), 3600);
        let mut out = Vec::new();
        detector.observe(
            &call(
                0,
                "alice",
                "send_message",
                r#"{"text":"AKIAIOSFODNN7EXAMPLE"}"#,
            ),
            &mut out,
        );
        detector.observe(
            &call(5, "alice", "send_message", r#"{"text":"hello"}"#),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        let alert = &out[0];
        assert_eq!(alert.detector.as_str(), "sigma:aws-key");
        assert_eq!(alert.severity, Severity::Critical);
        assert_eq!(alert.title, "alice@acme: AWS key in arguments");
        assert!(
            alert.explanation.contains("aws-key"),
            "{}",
            alert.explanation
        );
        assert!(
            alert.explanation.contains("arguments.text"),
            "{}",
            alert.explanation
        );
        assert!(
            !alert.to_json().contains("AKIAIOSFODNN7EXAMPLE"),
            "{}",
            alert.to_json()
        );
        assert_eq!(alert.evidence.event_ids, ["e0alice"]);
    }

    #[test]
    fn repeats_within_suppression_fold_into_the_first_alert() {
        let mut detector = SigmaDetector::fixed(rules(KEY_RULE), 3600);
        let mut out = Vec::new();
        let key = r#"{"text":"AKIAIOSFODNN7EXAMPLE"}"#;
        for secs in [0, 60, 120] {
            detector.observe(&call(secs, "alice", "send_message", key), &mut out);
        }
        detector.observe(&call(30, "bob", "send_message", key), &mut out);
        assert_eq!(out.len(), 2, "one per user");
        detector.advance(T0 + 3599, &mut out);
        assert_eq!(out.len(), 2, "still open");
        detector.advance(T0 + 3600, &mut out);
        assert_eq!(out.len(), 3, "the closed suppression publishes its count");
        assert_eq!(out[2].alert_id, out[0].alert_id);
        assert_eq!(out[2].repeats, 2);
        detector.observe(&call(7300, "alice", "send_message", key), &mut out);
        assert_eq!(out.len(), 4, "a new period, a new alert");
        assert_ne!(out[3].alert_id, out[0].alert_id);
    }

    #[test]
    fn correlations_count_each_users_events_by_event_time() {
        let yaml = "title: delete\nid: delete\nlogsource: {product: mcp, category: tool_call}\n\
            detection:\n  sel: {tool|startswith: delete_}\n  condition: sel\n---\n\
            title: Mass deletion\nid: mass-delete\ncorrelation:\n  type: value_count\n  \
            rules: [delete]\n  timespan: 10m\n  condition: {gte: 5, field: resource}\nlevel: high\n";
        let mut detector = SigmaDetector::fixed(rules(yaml), 3600);
        let mut out = Vec::new();
        // Alice and Bob delete 4 each, interleaved: neither reaches 5.
        for i in 0..4 {
            detector.observe(&call(i * 10, "alice", "delete_file", "{}"), &mut out);
            detector.observe(&call(i * 10 + 1, "bob", "delete_file", "{}"), &mut out);
        }
        assert!(out.is_empty(), "{out:#?}");
        // Alice, well past the window of her first four: they have left it.
        for secs in [700, 701, 702, 703] {
            detector.observe(&call(secs, "alice", "delete_file", "{}"), &mut out);
        }
        assert!(out.is_empty(), "4 in the window: {out:#?}");
        detector.observe(&call(704, "alice", "delete_file", "{}"), &mut out);
        assert_eq!(out.len(), 1, "{out:#?}");
        assert_eq!(out[0].detector.as_str(), "sigma:mass-delete");
        assert_eq!(out[0].user_id, "alice");
        assert!(
            out[0].explanation.contains("5 in 10m"),
            "{}",
            out[0].explanation
        );
        assert_eq!(out[0].evidence.event_ids.len(), 5, "{:?}", out[0].evidence);
    }

    #[test]
    fn a_reload_swaps_the_rules_at_the_next_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("a.yml"), KEY_RULE).expect("write");
        let source = Arc::new(RuleSource::load(dir.path()));
        let mut detector = SigmaDetector::new(source.clone(), 3600);
        let mut out = Vec::new();
        detector.observe(
            &call(
                0,
                "alice",
                "send_message",
                r#"{"text":"AKIAIOSFODNN7EXAMPLE"}"#,
            ),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        std::fs::write(
            dir.path().join("a.yml"),
            KEY_RULE.replace("aws-key", "aws-key-2"),
        )
        .expect("write");
        std::fs::write(
            dir.path().join("b.yml"),
            "title: broken\nid: b\ndetection: [",
        )
        .expect("write");
        let reloaded = source.reload();
        assert_eq!(reloaded.rules().len(), 1);
        assert_eq!(reloaded.errors().len(), 1, "the broken file is refused");
        detector.observe(
            &call(
                1,
                "alice",
                "send_message",
                r#"{"text":"AKIAIOSFODNN7EXAMPLE"}"#,
            ),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[1].detector.as_str(), "sigma:aws-key-2");
    }
}
