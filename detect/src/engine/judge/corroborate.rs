//! Corroboration: weak signals alert only together.
//!
//! A first-seen value is ordinary on its own (people adopt tools, move
//! house, change laptops); so is a single call at an odd hour. Each such
//! signal carries a weight, larger when the value is also new to the
//! tenant's other users. When the weights of *distinct* detectors for one
//! user within the correlation window reach the threshold, one alert is
//! raised: for the heaviest pending signal, listing the others as evidence.
//! Alerts raised on their own (spikes, sensitive tools, cross-tenant access)
//! count as heavy signals too. Signals that add up within the window of an
//! alert the user already has, corroborated or raised on its own, join it as
//! repeats: one page per user per window, so a new address right after a
//! denial burst is reported with that burst rather than paged again. A
//! signal about a stretch of activity (an off-hours run) counts from the
//! stretch's start: a new address as the night began corroborates the run
//! that reaches its length an hour later.

use serde_json::json;

use super::{Context, Finding};
use crate::alert::DetectorKind;
use crate::engine::user::Signal;
use crate::seen::value_hash;

/// The evidence detail naming the signals that corroborated an alert; on a
/// finding, its presence marks one raised by corroboration.
pub(super) const CORROBORATED_BY: &str = "corroborated_by";

/// Weight of an alert raised on its own, as corroboration.
pub(super) const STRONG: f32 = 3.0;
/// Weight of the first use of a sensitive tool many colleagues use.
pub(super) const SENSITIVE_COMMON: f32 = 2.0;
/// Weight of an improbable burst of resources new to the user that is not
/// a sweep (see `enumeration`).
pub(super) const NEW_RESOURCES: f32 = 2.0;
/// Weight of one call in off hours.
pub(super) const OFF_HOURS_CALL: f32 = 1.5;

/// Weight of a first-seen value used by `peers` other users of the tenant.
pub(super) fn first_seen_weight(detector: DetectorKind, peers: u32) -> f32 {
    match detector {
        // An address no colleague uses is a new network; one they share is
        // the office, the VPN or a common provider.
        DetectorKind::FirstSeenIp => {
            if peers == 0 {
                2.0
            } else {
                0.5
            }
        }
        DetectorKind::FirstSeenClient => match peers {
            0 => 2.0,
            1..=2 => 1.5,
            _ => 0.5,
        },
        _ => match peers {
            0 => 1.5,
            1..=2 => 1.0,
            3..=9 => 0.5,
            _ => 0.25,
        },
    }
}

impl Context<'_> {
    /// Records a weak signal and raises an alert if the user's signals now
    /// add up.
    pub(super) fn signal(&mut self, finding: Finding, weight: f32) {
        let since = finding.window.0;
        self.episode_signal(finding, weight, since);
    }

    /// [`signal`](Self::signal) for part of an episode that began at
    /// `since` (an off-hours run): signals within the correlation window of
    /// its start still count, however long it has gone on.
    pub(super) fn episode_signal(&mut self, finding: Finding, weight: f32, since: i64) {
        let value = value_hash(0, &finding.value);
        let detector = finding.detector;
        let secs = finding.time;
        let since = since.min(secs);
        self.push_signal(
            Signal {
                secs,
                detector,
                value,
                weight,
                finding: Some(Box::new(finding)),
            },
            since,
        );
        self.corroborate(secs);
    }

    /// An alert raised on its own also corroborates weak signals.
    pub(super) fn strong_signal(&mut self, detector: DetectorKind, secs: i64) {
        self.push_signal(
            Signal {
                secs,
                detector,
                value: 0,
                weight: STRONG,
                finding: None,
            },
            secs,
        );
        self.corroborate(secs);
    }

    /// Adds `signal`, whose episode began at `since`, dropping signals older
    /// than the correlation window before that.
    fn push_signal(&mut self, signal: Signal, since: i64) {
        let horizon = since - self.settings.corroboration_secs;
        let signals = &mut self.user.signals;
        signals.retain(|s| s.secs > horizon);
        match signals
            .iter_mut()
            .find(|s| s.detector == signal.detector && s.value == signal.value)
        {
            // The same thing seen again; a heavier sighting of it (an
            // off-hours call, then a whole run) takes its place.
            Some(known) if signal.weight > known.weight => *known = signal,
            Some(_) => {}
            None => signals.push(signal),
        }
    }

    fn corroborate(&mut self, secs: i64) {
        let signals = &self.user.signals;
        let mut best: [f32; DetectorKind::ALL.len()] = [0.0; DetectorKind::ALL.len()];
        for s in signals {
            let slot = &mut best[s.detector as usize];
            *slot = slot.max(s.weight);
        }
        let total: f32 = best.iter().sum();
        if f64::from(total) < self.settings.corroboration_threshold {
            return;
        }
        if self.join_open_alert(secs) {
            return;
        }
        let signals = &self.user.signals;
        // The heaviest pending weak signal becomes the alert.
        let Some(lead) = signals
            .iter()
            .enumerate()
            .filter(|(_, s)| s.finding.is_some())
            .max_by(|(i, a), (j, b)| a.weight.total_cmp(&b.weight).then(j.cmp(i)))
            .map(|(i, _)| i)
        else {
            return;
        };
        let others: Vec<String> = signals
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != lead)
            .map(|(_, s)| match &s.finding {
                Some(f) => what_happened(f).to_string(),
                None => format!("a {} alert", s.detector),
            })
            .collect();
        let mut event_ids: Vec<String> = Vec::new();
        for s in signals.iter() {
            if let Some(f) = &s.finding {
                event_ids.extend(f.evidence.event_ids.iter().cloned());
            }
        }
        let mut finding = *self.user.signals[lead]
            .finding
            .take()
            .expect("the lead is pending");
        for s in &mut self.user.signals {
            s.finding = None;
        }
        event_ids.dedup();
        event_ids.truncate(crate::alert::MAX_SAMPLE_EVENTS);
        finding.evidence.event_ids = event_ids;
        finding
            .evidence
            .details
            .insert(CORROBORATED_BY.into(), json!(others));
        finding
            .evidence
            .details
            .insert("signal_weight".into(), json!(f64::from(total)));
        let window_mins = self.settings.corroboration_secs / 60;
        finding.explanation = format!(
            "{}. Within {window_mins} min the same user also showed: {}",
            finding.explanation,
            others.join("; ")
        );
        finding.time = secs;
        self.raise(finding);
    }

    /// One page per user per correlation window: once an alert for the user
    /// is out (corroborated or raised on its own), pending weak signals that
    /// add up within `corroboration.window` of it join that alert as
    /// repeats, naming themselves in its `corroborated_by` and `new_values`
    /// (the update published when its suppression ends carries them). A
    /// signal more severe than that alert still pages here; `Context::emit`
    /// then joins it to the page as well, raising the page's severity.
    fn join_open_alert(&mut self, secs: i64) -> bool {
        let since = secs - self.settings.corroboration_secs;
        let user = &mut *self.user;
        let pending = user
            .signals
            .iter()
            .filter_map(|s| s.finding.as_ref().map(|f| f.severity))
            .max();
        let Some(open) = user.suppressions.iter_mut().find(|s| {
            s.until > secs
                && s.alert.time.timestamp() > since
                && pending.is_some_and(|p| p <= s.alert.severity)
        }) else {
            return false;
        };
        let alert = &mut open.alert;
        for finding in user.signals.iter_mut().filter_map(|s| s.finding.take()) {
            absorb(alert, *finding);
            self.stats.suppressed += 1;
        }
        true
    }
}

/// Joins `finding` to the open `alert` as a repeat: it names itself in
/// `corroborated_by`, and its new values and sample events are added.
pub(super) fn absorb(alert: &mut crate::alert::Alert, finding: Finding) {
    alert.repeats += 1;
    let what = what_happened(&finding);
    if let serde_json::Value::Array(list) = alert
        .evidence
        .details
        .entry(CORROBORATED_BY)
        .or_insert_with(|| json!([]))
        && !list.iter().any(|v| v.as_str() == Some(what))
    {
        list.push(json!(what));
    }
    let evidence = &mut alert.evidence;
    for value in finding.evidence.new_values {
        if !evidence.new_values.contains(&value) {
            evidence.new_values.push(value);
        }
    }
    for id in finding.evidence.event_ids {
        if evidence.event_ids.len() < crate::alert::MAX_SAMPLE_EVENTS
            && !evidence.event_ids.contains(&id)
        {
            evidence.event_ids.push(id);
        }
    }
}

/// A finding's title without the user it names ("first use of tool `x`").
fn what_happened(f: &Finding) -> &str {
    f.title
        .split_once(": ")
        .map_or(f.title.as_str(), |(_, t)| t)
}
