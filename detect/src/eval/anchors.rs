//! The naive rules a security team would write first, as baselines for the
//! evaluation. Both get the same one-hour suppression per user and value as
//! the real detectors, so the comparison is about judgment, not dedup.

use std::collections::{HashMap, VecDeque};

use tooltrail_schemas::{Decision, ToolCallEvent};

use super::Detection;

const SUPPRESSION_SECS: i64 = 3600;

/// Recent denials (time, event id) and the end of the current suppression.
type DenialWindow = (VecDeque<(i64, String)>, i64);

/// "5 or more denials in 5 minutes" for any user.
#[derive(Default)]
pub struct FixedThreshold {
    denials: HashMap<(String, String), DenialWindow>,
}

pub const FIXED_THRESHOLD: &str = "anchor_fixed_5_denials_in_5m";
const THRESHOLD: usize = 5;
const WINDOW_SECS: i64 = 300;

impl FixedThreshold {
    pub fn observe(&mut self, e: &ToolCallEvent, out: &mut Vec<Detection>) {
        if !(e.decision == Decision::Deny || e.status == 403) {
            return;
        }
        let secs = e.time.timestamp();
        let (window, quiet_until) = self
            .denials
            .entry((e.tenant_id.clone(), e.user_id.clone()))
            .or_insert_with(|| (VecDeque::new(), i64::MIN));
        window.push_back((secs, e.event_id.clone()));
        while window
            .front()
            .is_some_and(|(t, _)| *t <= secs - WINDOW_SECS)
        {
            window.pop_front();
        }
        if window.len() >= THRESHOLD && secs >= *quiet_until {
            *quiet_until = secs + SUPPRESSION_SECS;
            out.push(Detection {
                source: FIXED_THRESHOLD.into(),
                tenant_id: e.tenant_id.clone(),
                user_id: e.user_id.clone(),
                time: e.time,
                event_ids: window.iter().map(|(_, id)| id.clone()).collect(),
                pages: true,
            });
        }
    }
}

/// "A tool, server, resource, client or address this user has not used in
/// the last 7 days", judged from the 8th day of data on.
#[derive(Default)]
pub struct NewTerms {
    /// (tenant, user, field, value) to the last time used.
    last_used: HashMap<(String, String, u8, String), i64>,
    /// (tenant, user, field, value) to the end of its suppression.
    quiet: HashMap<(String, String, u8, String), i64>,
    first_secs: Option<i64>,
}

pub const NEW_TERMS: &str = "anchor_new_terms_7d";
const LOOKBACK_SECS: i64 = 7 * 86_400;

impl NewTerms {
    pub fn observe(&mut self, e: &ToolCallEvent, out: &mut Vec<Detection>) {
        let secs = e.time.timestamp();
        let start = *self.first_secs.get_or_insert(secs);
        let judging = secs - start >= LOOKBACK_SECS;
        let ip = e.source_ip.map(|ip| ip.to_string());
        let fields: [(u8, Option<&str>); 5] = [
            (0, e.tool.as_deref()),
            (1, Some(e.server.as_str())),
            (2, e.resource.as_deref()),
            (3, e.client_id.as_deref()),
            (4, ip.as_deref()),
        ];
        for (field, value) in fields {
            let Some(value) = value else { continue };
            let key = (
                e.tenant_id.clone(),
                e.user_id.clone(),
                field,
                value.to_string(),
            );
            let last = self.last_used.insert(key.clone(), secs);
            let new = last.is_none_or(|t| secs - t > LOOKBACK_SECS);
            if !(new && judging) {
                continue;
            }
            let quiet = self.quiet.entry(key).or_insert(i64::MIN);
            if secs < *quiet {
                continue;
            }
            *quiet = secs + SUPPRESSION_SECS;
            out.push(Detection {
                source: NEW_TERMS.into(),
                tenant_id: e.tenant_id.clone(),
                user_id: e.user_id.clone(),
                time: e.time,
                event_ids: vec![e.event_id.clone()],
                pages: true,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(secs: i64, user: &str, denied: bool, tool: &str) -> ToolCallEvent {
        let time = chrono::DateTime::from_timestamp(secs, 0).expect("time");
        let line = format!(
            r#"{{"schema_version":1,"event_id":"e{secs}","time":"{}","tenant_id":"acme","user_id":"{user}","server":"github","method":"tools/call","tool":"{tool}","decision":"{}","status":{}}}"#,
            tooltrail_schemas::format_time(&time),
            if denied { "deny" } else { "allow" },
            if denied { 403 } else { 200 }
        );
        tooltrail_schemas::decode(line.as_bytes()).expect("valid event")
    }

    #[test]
    fn the_fixed_threshold_fires_on_the_fifth_denial_in_five_minutes_once() {
        let mut rule = FixedThreshold::default();
        let mut out = Vec::new();
        for i in 0..4 {
            rule.observe(&event(1000 + i * 100, "alice", true, "t"), &mut out);
        }
        assert!(out.is_empty(), "four denials spread over 5 min");
        for i in 0..10 {
            rule.observe(&event(2000 + i, "alice", true, "t"), &mut out);
        }
        assert_eq!(out.len(), 1, "one hit, then suppressed");
        assert_eq!(out[0].event_ids.len(), 5);
    }

    #[test]
    fn new_terms_waits_a_week_then_flags_values_unused_for_a_week() {
        let mut rule = NewTerms::default();
        let mut out = Vec::new();
        rule.observe(&event(0, "alice", false, "search"), &mut out);
        rule.observe(&event(86_400, "alice", false, "create"), &mut out);
        assert!(out.is_empty(), "still learning");
        rule.observe(&event(8 * 86_400, "alice", false, "create"), &mut out);
        assert!(out.is_empty(), "used a week ago");
        rule.observe(&event(8 * 86_400 + 10, "alice", false, "search"), &mut out);
        assert_eq!(out.len(), 1, "search last used 8 days ago");
    }
}
