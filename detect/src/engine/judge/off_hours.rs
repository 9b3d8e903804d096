//! `off_hours`: calls in hours of the week where the user's own smoothed
//! profile is near zero.
//!
//! The profile counts the user's calls per hour of the week (decayed),
//! smoothed across neighbouring hours and across days (see
//! [`crate::baseline::HourProfile::share`]); it is trusted once the user has
//! `off_hours.min_history` of history. A call in an hour holding less than
//! `off_hours.max_share` of the activity is an off-hours call. One such call
//! is a weak signal (people do work late, and a task finished at night is a
//! short burst); an alert needs off-hours calls in `min_active_minutes`
//! distinct minutes within `off_hours.window`: someone keeping at it. It
//! cannot tell travel or an on-call week from a stolen session by itself;
//! corroborating signals (a new address or client) can. A run shorter than
//! `off_hours.alone_minutes` is a heavy signal that pages only with one of
//! them.

use chrono::{DateTime, Utc};
use serde_json::json;
use tooltrail_schemas::ToolCallEvent;

use super::corroborate::{OFF_HOURS_CALL, STRONG};
use super::{Context, Finding, round3, with_trigger};
use crate::alert::{DetectorKind, Evidence, Severity};
use crate::baseline::{DAY, HourProfile};
use crate::baseline::{Moments, Prior};
use crate::engine::user::flag;

const HOUR: i64 = 3600;
/// Calls expected in an hour the user never works in: not zero.
const MIN_EXPECTED: f64 = 0.05;
/// The share of a user's activity an hour of the day must hold to count as
/// one of their usual hours, for how deep into their night a run is (a
/// working hour holds about an eighth).
const USUAL_HOUR_SHARE: f64 = 0.02;

impl Context<'_> {
    /// Whether an off-hours run is in progress at `secs`: an off-hours call
    /// within `off_hours.window` before it.
    pub(super) fn in_off_hours_run(&self, secs: i64) -> bool {
        let since = secs - self.settings.off_hours_window_secs;
        self.user.off_hours_calls.iter().any(|t| *t > since)
    }

    /// One call in off hours, with the share of the user's activity its hour
    /// holds.
    pub(super) fn off_hours_event(&mut self, e: &ToolCallEvent, share: f64, secs: i64) {
        if !self.settings.enabled(DetectorKind::OffHours) {
            return;
        }
        let window = self.settings.off_hours_window_secs;
        let user = &mut *self.user;
        user.off_hours_calls.retain(|t| *t > secs - window);
        if user.off_hours_calls.is_empty() {
            // A new run: nothing of it is in the profile yet.
            user.off_hours_run_mass = 0.0;
        }
        // One entry per minute: a run is judged by how long someone keeps at
        // it, not by how fast their client calls.
        if !user.off_hours_calls.iter().any(|t| t / 60 == secs / 60) {
            user.off_hours_calls.push(secs);
        }
        user.off_hours_share = if user.off_hours_calls.len() == 1 {
            share as f32
        } else {
            user.off_hours_share.min(share as f32)
        };
        // How deep into the user's night: measured as the run begins, as
        // the run's own calls soon make a light user's night look usual;
        // the deepest point reached counts.
        let depth = user
            .hours
            .hours_from_usual(HourProfile::hour_of_week(secs), USUAL_HOUR_SHARE);
        user.off_hours_depth = if user.off_hours_calls.len() == 1 {
            depth as u8
        } else {
            user.off_hours_depth.max(depth as u8)
        };
        let minutes = user.off_hours_calls.len() as u32;
        let first = user.off_hours_calls.iter().copied().min().unwrap_or(secs);
        let who = self.who();
        let when = at(secs).format("%a %H:%M UTC");
        // Expected active minutes in the window: this hour's share of the
        // user's decayed activity per day of history, as calls per hour,
        // over the window's hours (a call is at most one active minute).
        let days = f64::from(self.user.history_days((secs / DAY) as u32).max(1));
        let hours = window as f64 / HOUR as f64;
        let expected = (share * self.user.hours.total() / days * hours).max(MIN_EXPECTED);
        let pred = Moments::default().predict(
            Prior {
                mean: expected,
                weight: 1e6,
                // Minutes within the window are the run itself; the count
                // is judged as Poisson, and `min_active_minutes` guards the
                // rest.
                dispersion: 1.0,
            },
            1.0,
            1.0,
        );
        let p = pred.tail(u64::from(minutes));
        if minutes >= self.settings.off_hours_min_minutes && p < self.settings.p_value {
            let ids = with_trigger(self.user.samples(first, secs + 1, flag::OFF_HOURS), e);
            let share = f64::from(self.user.off_hours_share);
            let mut evidence = Evidence {
                observed: Some(f64::from(minutes)),
                expected: Some(round3(pred.expected)),
                p_value: Some(p),
                event_ids: ids,
                ..Evidence::default()
            };
            evidence
                .details
                .insert("hour_share_percent".into(), json!(round3(share * 100.0)));
            let mut finding = Finding {
                detector: DetectorKind::OffHours,
                value: String::new(),
                severity: if p < 1e-12 {
                    Severity::High
                } else {
                    Severity::Medium
                },
                score: 65,
                title: format!(
                    "{who}: active in {minutes} minutes at hours they are almost never active"
                ),
                explanation: format!(
                    "{who} made calls in {minutes} distinct minutes within {hours:.0} h, in hours of the week where they are almost never active (the latest at {when}, an hour holding {:.3}% of their activity); the usual is {:.2} active minutes in such a stretch (p = {p:.1e})",
                    share * 100.0,
                    pred.expected
                ),
                evidence,
                window: (first, secs),
                time: secs,
            };
            let depth = self.user.off_hours_depth;
            finding
                .evidence
                .details
                .insert("hours_from_usual".into(), json!(depth));
            if minutes >= self.settings.off_hours_alone_minutes
                && u32::from(depth) >= self.settings.off_hours_alone_depth
                && secs - first >= self.settings.off_hours_alone_span_secs
            {
                self.raise(finding);
            } else {
                self.episode_signal(finding, STRONG, first);
            }
            return;
        }
        self.episode_signal(
            Finding {
                detector: DetectorKind::OffHours,
                value: String::new(),
                severity: Severity::Medium,
                score: 50,
                title: format!("{who}: a call at {when}, an hour they are almost never active"),
                explanation: format!(
                    "{who} made a call at {when}, an hour of the week holding {:.3}% of their activity",
                    share * 100.0
                ),
                evidence: Evidence {
                    event_ids: vec![e.event_id.clone()],
                    details: [("hour_share_percent".to_string(), json!(round3(share * 100.0)))]
                        .into_iter()
                        .collect(),
                    ..Evidence::default()
                },
                window: (secs, secs),
                time: secs,
            },
            OFF_HOURS_CALL,
            first,
        );
    }
}

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::<Utc>::from_timestamp(secs, 0).unwrap_or_default()
}
