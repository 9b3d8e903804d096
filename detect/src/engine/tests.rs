use chrono::{DateTime, Utc};
use tooltrail_schemas::ToolCallEvent;

use super::*;
use crate::alert::{DetectorKind, Severity};
use crate::config::DetectConfig;

const DAY0: i64 = 1_791_158_400; // 2026-10-05T00:00:00Z, a Monday

#[derive(Clone)]
struct Call<'a> {
    secs: i64,
    tenant: &'a str,
    user: &'a str,
    tool: &'a str,
    resource: Option<&'a str>,
    denied: bool,
    /// The status of a denial: 403 unless set (429 for a rate limit).
    denied_status: Option<u16>,
    /// The status of an allowed call: 200 unless set.
    status: Option<u16>,
    error_type: Option<&'a str>,
    ip: &'a str,
}

impl<'a> Call<'a> {
    fn new(secs: i64, user: &'a str, tool: &'a str) -> Self {
        Call {
            secs,
            tenant: "acme",
            user,
            tool,
            resource: None,
            denied: false,
            denied_status: None,
            status: None,
            error_type: None,
            ip: "10.0.0.1",
        }
    }

    fn event(&self, id: usize) -> ToolCallEvent {
        let time = DateTime::<Utc>::from_timestamp(self.secs, 0).expect("time");
        let resource = self
            .resource
            .map(|r| format!(r#","resource":"{r}""#))
            .unwrap_or_default();
        let (decision, status) = if self.denied {
            ("deny", self.denied_status.unwrap_or(403))
        } else {
            ("allow", self.status.unwrap_or(200))
        };
        let error = self
            .error_type
            .map(|e| format!(r#","error_type":"{e}""#))
            .unwrap_or_default();
        let line = format!(
            r#"{{"schema_version":1,"event_id":"e{id}","time":"{}","tenant_id":"{}","user_id":"{}","server":"github","method":"tools/call","tool":"{}","decision":"{decision}","status":{status},"client_id":"cursor","source_ip":"{}"{resource}{error}}}"#,
            tooltrail_schemas::format_time(&time),
            self.tenant,
            self.user,
            self.tool,
            self.ip,
        );
        tooltrail_schemas::decode(line.as_bytes()).expect("valid test event")
    }
}

fn engine() -> Engine {
    Engine::new(DetectConfig::default().validate().expect("defaults"))
}

fn run(engine: &mut Engine, calls: &[Call]) -> Vec<Alert> {
    let mut out = Vec::new();
    for (i, c) in calls.iter().enumerate() {
        engine.observe(&c.event(i), &mut out);
    }
    engine.finish(&mut out);
    out
}

/// A user's ordinary working weeks: a few calls an hour, 9 to 17, on
/// weekdays, with `denials_per_day` habitual denials.
fn history<'a>(user: &'a str, days: i64, denials_per_day: i64) -> Vec<Call<'a>> {
    let mut calls = Vec::new();
    for day in 0..days {
        if day % 7 >= 5 {
            continue;
        }
        for hour in 9..17 {
            for k in 0..4 {
                let secs = DAY0 + day * 86_400 + hour * 3600 + k * 600;
                calls.push(Call::new(
                    secs,
                    user,
                    ["search_issues", "get_issue"][k as usize % 2],
                ));
            }
        }
        for k in 0..denials_per_day {
            let mut c = Call::new(
                DAY0 + day * 86_400 + 10 * 3600 + k * 900 + 7,
                user,
                "search_issues",
            );
            c.denied = true;
            calls.push(c);
        }
    }
    calls
}

/// First emissions only (updates carrying repeat counts share their id).
fn by(alerts: &[Alert], detector: DetectorKind) -> Vec<&Alert> {
    alerts
        .iter()
        .filter(|a| a.detector == detector && a.repeats == 0)
        .collect()
}

/// `n` denied calls by `user`, `every` seconds apart from `start`, cycling
/// through `tools`.
fn denied_burst<'a>(
    user: &'a str,
    start: i64,
    n: i64,
    every: i64,
    tools: &[&'a str],
) -> Vec<Call<'a>> {
    (0..n)
        .map(|i| {
            let mut c = Call::new(start + i * every, user, tools[i as usize % tools.len()]);
            c.denied = true;
            c
        })
        .collect()
}

/// Pages (first emissions) at or after `t`.
fn pages_since(alerts: &[Alert], t: i64) -> Vec<&Alert> {
    alerts
        .iter()
        .filter(|a| a.time.timestamp() >= t && a.repeats == 0)
        .collect()
}

/// The last emission of alert `id`: its update with the most repeats.
fn latest<'a>(alerts: &'a [Alert], id: &str) -> &'a Alert {
    alerts
        .iter()
        .filter(|a| a.alert_id == id)
        .max_by_key(|a| a.repeats)
        .expect("the alert")
}

#[test]
fn a_burst_of_denials_pages_with_numbers_in_plain_language() {
    let mut calls = history("alice", 21, 0);
    let t = DAY0 + 22 * 86_400 + 11 * 3600;
    calls.extend(denied_burst(
        "alice",
        t,
        30,
        8,
        // No sensitive tool among them: its page would carry the spike.
        &["close_issue", "admin_x", "merge_pr"],
    ));
    let alerts = run(&mut engine(), &calls);
    let spikes = by(&alerts, DetectorKind::DenialSpike);
    assert_eq!(spikes.len(), 1, "{alerts:#?}");
    let a = spikes[0];
    assert!(a.severity >= Severity::Medium);
    assert!(a.evidence.p_value.expect("p") < 1e-6);
    assert!(
        // The burst fits in a minute: the shortest scale pages it.
        a.title.contains("denied calls in 1 min across 3 tools"),
        "{}",
        a.title
    );
    assert!(a.explanation.contains("the usual is"), "{}", a.explanation);
    assert!(!a.evidence.event_ids.is_empty() && a.evidence.event_ids.len() <= 20);
    // Detected within minutes of event time.
    assert!(a.time.timestamp() - t <= 5 * 60, "{}", a.time);
}

#[test]
fn a_denial_spike_title_never_counts_zero_tools() {
    let t = DAY0 + 22 * 86_400 + 11 * 3600;
    // 30 denials on one tool.
    let mut calls = history("alice", 21, 0);
    calls.extend(denied_burst("alice", t, 30, 8, &["close_issue"]));
    let alerts = run(&mut engine(), &calls);
    let spikes = by(&alerts, DetectorKind::DenialSpike);
    assert_eq!(spikes.len(), 1, "{alerts:#?}");
    assert!(
        spikes[0].title.ends_with("in 1 min on 1 tool"),
        "{}",
        spikes[0].title
    );
    // 30 denials, then more allowed calls than the recent events kept:
    // the tools are no longer known, and the title does not guess.
    let mut calls = history("alice", 21, 0);
    calls.extend(denied_burst("alice", t, 30, 2, &["close_issue", "admin_x"]));
    for k in 0..40 {
        calls.push(Call::new(t + 61 + k * 2, "alice", "search_issues"));
    }
    let alerts = run(&mut engine(), &calls);
    let spikes = by(&alerts, DetectorKind::DenialSpike);
    assert!(!spikes.is_empty(), "{alerts:#?}");
    for spike in spikes {
        assert!(!spike.title.contains("across 0"), "{}", spike.title);
        assert!(
            !spike.explanation.contains("across 0"),
            "{}",
            spike.explanation
        );
    }
}

#[test]
fn a_habitual_denier_is_not_news_but_the_same_burst_is_for_a_clean_user() {
    // Five denials in a few minutes, every working day: a misconfigured agent.
    let mut calls = Vec::new();
    for day in 0..21 {
        if day % 7 >= 5 {
            continue;
        }
        for k in 0..6 {
            let mut c = Call::new(DAY0 + day * 86_400 + 9 * 3600 + k * 30, "bot", "sync");
            c.denied = true;
            calls.push(c);
        }
        for k in 0..20 {
            calls.push(Call::new(
                DAY0 + day * 86_400 + 10 * 3600 + k * 300,
                "bot",
                "sync",
            ));
        }
    }
    let alerts = run(&mut engine(), &calls);
    let late: Vec<_> = by(&alerts, DetectorKind::DenialSpike)
        .into_iter()
        .filter(|a| a.time.timestamp() > DAY0 + 7 * 86_400)
        .collect();
    assert!(late.is_empty(), "habitual denials paged: {late:#?}");
}

#[test]
fn a_brand_new_user_does_not_page_on_day_one_for_ordinary_work() {
    // The tenant has weeks of history; carol joins and uses the usual tools
    // from her own address.
    let mut calls = history("alice", 21, 0);
    calls.extend(history("bob", 21, 0));
    calls.extend(history("dave", 21, 0));
    calls.extend(history("erin", 21, 0));
    let t = DAY0 + 21 * 86_400 + 9 * 3600;
    for i in 0..40 {
        let mut c = Call::new(
            t + i * 300,
            "carol",
            ["search_issues", "get_issue"][i as usize % 2],
        );
        c.ip = "192.0.2.77";
        calls.push(c);
    }
    calls.sort_by_key(|c| c.secs);
    let alerts = run(&mut engine(), &calls);
    let carol: Vec<_> = alerts.iter().filter(|a| a.user_id == "carol").collect();
    assert!(carol.is_empty(), "{carol:#?}");
}

#[test]
fn a_resource_of_another_tenant_is_critical_and_immediate() {
    let mut calls = history("alice", 2, 0);
    let t = DAY0 + 3 * 86_400;
    let mut c = Call::new(t, "alice", "read_file");
    c.resource = Some("gdrive://globex/docs/secret");
    calls.push(c);
    let mut out = Vec::new();
    let mut e = engine();
    for (i, c) in calls.iter().enumerate() {
        e.observe(&c.event(i), &mut out);
    }
    let cross = by(&out, DetectorKind::CrossTenant);
    assert_eq!(cross.len(), 1, "fires on the event itself, before finish");
    assert_eq!(cross[0].severity, Severity::Critical);
    assert_eq!(cross[0].evidence.new_values, ["globex"]);
    assert_eq!(cross[0].time.timestamp(), t);
}

#[test]
fn repeats_within_the_suppression_window_are_counted_not_paged() {
    let t = DAY0 + 86_400;
    let calls: Vec<Call> = (0..5)
        .map(|i| {
            let mut c = Call::new(t + i * 60, "alice", "read_file");
            c.resource = Some("gdrive://globex/docs/secret");
            c
        })
        .collect();
    let alerts = run(&mut engine(), &calls);
    let cross: Vec<_> = alerts
        .iter()
        .filter(|a| a.detector == DetectorKind::CrossTenant)
        .collect();
    // The first alert, then (at the end) its update carrying the count.
    assert_eq!(cross.len(), 2, "{cross:#?}");
    assert_eq!(cross[0].alert_id, cross[1].alert_id);
    assert_eq!((cross[0].repeats, cross[1].repeats), (0, 4));
}

#[test]
fn a_replay_gives_the_same_alerts_with_the_same_ids() {
    let mut calls = history("alice", 21, 1);
    let t = DAY0 + 22 * 86_400 + 11 * 3600;
    calls.extend(denied_burst("alice", t, 20, 5, &["x"]));
    let first = run(&mut engine(), &calls);
    let second = run(&mut engine(), &calls);
    assert!(!first.is_empty());
    assert_eq!(first, second);
}

#[test]
fn arrival_order_within_the_lateness_does_not_change_the_alerts() {
    let mut calls = history("alice", 21, 0);
    let t = DAY0 + 22 * 86_400 + 11 * 3600;
    calls.extend(denied_burst("alice", t, 25, 6, &["x"]));
    let in_order = run(&mut engine(), &calls);
    // Swap neighbours in the burst: each arrives at most 6 s late.
    let n = calls.len();
    for i in ((n - 24)..n).step_by(2) {
        calls.swap(i - 1, i);
    }
    let shuffled = run(&mut engine(), &calls);
    let ids = |v: &[Alert]| v.iter().map(|a| a.alert_id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&in_order), ids(&shuffled));
}

#[test]
fn state_per_user_stays_within_a_few_kib() {
    let mut e = engine();
    let calls = history("alice", 28, 1);
    let mut out = Vec::new();
    for (i, c) in calls.iter().enumerate() {
        e.observe(&c.event(i), &mut out);
    }
    assert_eq!(e.users(), 1);
    assert!(
        e.user_state_bytes() <= 4096,
        "{} bytes",
        e.user_state_bytes()
    );
}

#[test]
fn colleagues_who_adopted_a_tool_in_the_first_week_vouch_for_it_later() {
    // Twelve colleagues use `send_email` from day 0, while the tenant is
    // still too young to judge anyone; bob starts using it in week three.
    let mut calls = Vec::new();
    let colleagues: Vec<String> = (0..12).map(|i| format!("u{i}")).collect();
    for user in &colleagues {
        calls.extend(history(user, 21, 0));
        calls.push(Call::new(DAY0 + 3600 * 10 + 1, user, "send_email"));
    }
    calls.extend(history("bob", 21, 0));
    calls.push(Call::new(
        DAY0 + 15 * 86_400 + 11 * 3600,
        "bob",
        "send_email",
    ));
    calls.sort_by_key(|c| c.secs);
    let alerts = run(&mut engine(), &calls);
    let bob: Vec<_> = alerts.iter().filter(|a| a.user_id == "bob").collect();
    // Counted from day one: a sensitive tool most colleagues use is routine
    // and pages only with corroboration.
    assert!(bob.is_empty(), "{bob:#?}");
}

/// `calls` calls from the user's usual address, spread evenly over
/// `minutes` minutes from `start`.
fn run_of<'a>(user: &'a str, start: i64, minutes: i64, calls: i64) -> Vec<Call<'a>> {
    (0..calls)
        .map(|k| Call::new(start + k * minutes * 60 / calls, user, "get_issue"))
        .collect()
}

#[test]
fn someone_keeping_at_it_in_the_users_night_raises_off_hours() {
    let mut e = engine();
    let mut calls = history("alice", 21, 0);
    // Day 22 (a Tuesday), 02:00 UTC: 60 calls over 50 minutes, where her
    // profile has never seen a call.
    calls.extend(run_of("alice", DAY0 + 22 * 86_400 + 2 * 3600, 50, 60));
    let alerts = run(&mut e, &calls);
    let off: Vec<&Alert> = alerts
        .iter()
        .filter(|a| a.detector == DetectorKind::OffHours)
        .collect();
    // One alert; the rest of the run attaches to it as repeats.
    assert!(!off.is_empty(), "an off-hours alert, got {alerts:#?}");
    assert!(
        off.iter().all(|a| a.alert_id == off[0].alert_id),
        "{off:#?}"
    );
    assert!(off.iter().any(|a| a.repeats > 0), "{off:#?}");
    let minutes = off[0].evidence.observed.expect("observed");
    assert!(minutes >= 20.0, "judged on active minutes: {minutes}");
    assert!(off[0].evidence.p_value.expect("p") < 1e-6);
    assert!(off[0].title.contains("minutes"), "{}", off[0].title);
}

#[test]
fn a_short_burst_at_night_is_not_an_off_hours_alert() {
    let mut e = engine();
    let mut calls = history("alice", 21, 0);
    // 18 calls in 4 minutes at 02:00: a task finished late, not a session
    // someone keeps working.
    calls.extend(run_of("alice", DAY0 + 22 * 86_400 + 2 * 3600, 4, 18));
    let alerts = run(&mut e, &calls);
    assert!(
        alerts.iter().all(|a| a.detector != DetectorKind::OffHours),
        "{alerts:#?}"
    );
}

#[test]
fn a_first_file_share_is_a_sensitive_tool_by_default() {
    let mut e = engine();
    let mut calls = history("alice", 21, 0);
    calls.push(Call::new(
        DAY0 + 22 * 86_400 + 11 * 3600,
        "alice",
        "share_file",
    ));
    let alerts = run(&mut e, &calls);
    let sensitive: Vec<&Alert> = alerts
        .iter()
        .filter(|a| a.detector == DetectorKind::SensitiveTool)
        .collect();
    assert_eq!(sensitive.len(), 1, "{alerts:#?}");
    assert_eq!(sensitive[0].severity, Severity::High);
    assert!(
        sensitive[0].title.contains("share_file"),
        "{}",
        sensitive[0].title
    );
}

/// `names.len()` calls on `get_issue`, one per resource, spread over
/// `minutes` minutes from `start`.
fn touching<'a>(user: &'a str, start: i64, minutes: i64, names: &'a [String]) -> Vec<Call<'a>> {
    let n = names.len() as i64;
    names
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let mut c = Call::new(start + k as i64 * minutes * 60 / n, user, "get_issue");
            c.resource = Some(name);
            c
        })
        .collect()
}

fn resources(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|k| format!("github://acme/{prefix}-{k}"))
        .collect()
}

#[test]
fn a_sweep_of_new_resources_pages_once_as_enumeration_with_its_odds() {
    let names = resources("sweep", 40);
    let mut calls = history("alice", 21, 0);
    calls.extend(touching("alice", DAY0 + 22 * 86_400 + 11 * 3600, 3, &names));
    let alerts = run(&mut engine(), &calls);
    let sweeps = by(&alerts, DetectorKind::Enumeration);
    assert_eq!(sweeps.len(), 1, "{alerts:#?}");
    assert!(sweeps[0].evidence.p_value.expect("p") < 1e-6);
    assert!(
        sweeps[0].explanation.contains("the usual is"),
        "{}",
        sweeps[0].explanation
    );
    // The same burst is not paged a second time as first_seen_resource.
    assert!(
        by(&alerts, DetectorKind::FirstSeenResource).is_empty(),
        "{alerts:#?}"
    );
}

#[test]
fn someone_whose_work_is_new_resources_every_day_is_not_a_sweep() {
    // A support desk: every working day, a triage burst of 25 tickets
    // never opened before, within 4 minutes.
    let days: Vec<Vec<String>> = (0..28)
        .map(|d| resources(&format!("ticket-{d}"), 25))
        .collect();
    let mut calls = history("sam", 28, 0);
    for (day, names) in days.iter().enumerate() {
        let day = day as i64;
        if day % 7 < 5 {
            calls.extend(touching(
                "sam",
                DAY0 + day * 86_400 + 10 * 3600 + 1800,
                4,
                names,
            ));
        }
    }
    calls.sort_by_key(|c| c.secs);
    let alerts = run(&mut engine(), &calls);
    // Once the baseline has a week and more of such days, the burst is news
    // to nobody.
    let late: Vec<_> = alerts
        .iter()
        .filter(|a| a.time.timestamp() > DAY0 + 14 * 86_400)
        .filter(|a| {
            matches!(
                a.detector.builtin(),
                Some(DetectorKind::Enumeration | DetectorKind::FirstSeenResource)
            )
        })
        .collect();
    assert!(late.is_empty(), "habitual bursts paged: {late:#?}");
}

#[test]
fn new_resources_among_known_ones_page_only_with_corroboration() {
    // 25 new resources mixed with 25 known ones: half new, not a sweep.
    let known = resources("known", 25);
    let fresh = resources("fresh", 25);
    let mixed: Vec<String> = known
        .iter()
        .zip(&fresh)
        .flat_map(|(k, f)| [k.clone(), f.clone()])
        .collect();
    let mut base = history("alice", 21, 0);
    base.extend(touching(
        "alice",
        DAY0 + 14 * 86_400 + 11 * 3600,
        60,
        &known,
    ));
    base.sort_by_key(|c| c.secs);
    let t = DAY0 + 22 * 86_400 + 11 * 3600;

    let mut alone = base.clone();
    alone.extend(touching("alice", t, 4, &mixed));
    let alerts = run(&mut engine(), &alone);
    let late: Vec<_> = alerts.iter().filter(|a| a.time.timestamp() >= t).collect();
    assert!(late.is_empty(), "a busy hour paged: {late:#?}");

    // The same burst from an address nobody in the tenant uses.
    let mut away = base;
    let mut burst = touching("alice", t, 4, &mixed);
    for c in &mut burst {
        c.ip = "203.0.113.9";
    }
    away.extend(burst);
    let alerts = run(&mut engine(), &away);
    let late = pages_since(&alerts, t);
    assert_eq!(late.len(), 1, "{alerts:#?}");
    let corroborated = late[0].evidence.details["corroborated_by"].to_string();
    assert!(
        late[0].detector == DetectorKind::FirstSeenResource
            || corroborated.contains("resources never used before"),
        "{:#?}",
        late[0]
    );
}

/// A bot's working weeks: the usual trickle, plus a batch of 40 calls in
/// five minutes on two days of the last week.
fn batch_history(user: &str) -> Vec<Call<'_>> {
    let mut calls = history(user, 21, 0);
    for day in [16, 18] {
        calls.extend(run_of(user, DAY0 + day * 86_400 + 11 * 3600 + 120, 5, 40));
    }
    calls.sort_by_key(|c| c.secs);
    calls
}

fn volume_alerts(config: DetectConfig, calls: &[Call]) -> Vec<Alert> {
    let mut e = Engine::new(config.validate().expect("valid"));
    run(&mut e, calls)
        .into_iter()
        .filter(|a| a.detector == DetectorKind::VolumeSpike && a.repeats == 0)
        .collect()
}

#[test]
fn a_burst_the_user_reaches_every_few_days_is_not_a_volume_spike_but_far_beyond_it_is() {
    // At the start of a five-minute window, so that one window holds it all.
    let at = DAY0 + 22 * 86_400 + 11 * 3600;
    // 62 calls in 5 min: far above the mean of an active window (a call or
    // two), but within reach of the 40 of the user's batches.
    let mut usual = batch_history("ci-bot");
    usual.extend(run_of("ci-bot", at, 5, 62));
    let mut config = DetectConfig::default();
    config.volume_spike.min_peak_ratio = 0.0;
    assert!(
        !volume_alerts(config, &usual).is_empty(),
        "the count model alone would page on it"
    );
    let alerts = volume_alerts(DetectConfig::default(), &usual);
    assert!(alerts.is_empty(), "{alerts:#?}");

    let mut huge = batch_history("ci-bot");
    huge.extend(run_of("ci-bot", at, 5, 150));
    let alerts = volume_alerts(DetectConfig::default(), &huge);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let explanation = &alerts[0].explanation;
    assert!(
        explanation.contains("busiest 5 min lately held 3"),
        "{explanation}"
    );
}

/// Denials of `status` on tools the user never used, 20 minutes apart, on the
/// day after three weeks of ordinary work.
fn denials_on_new_tools(status: u16, tools: &[String]) -> Vec<Alert> {
    let mut calls = history("alice", 21, 0);
    for (k, tool) in tools.iter().enumerate() {
        let secs = DAY0 + 22 * 86_400 + 9 * 3600 + k as i64 * 1200;
        let mut c = Call::new(secs, "alice", tool);
        c.denied = true;
        c.denied_status = Some(status);
        calls.push(c);
    }
    run(&mut engine(), &calls)
}

#[test]
fn refusals_spread_over_new_tools_are_enumeration_but_rate_limits_are_not() {
    let tools: Vec<String> = (0..6).map(|k| format!("admin_tool_{k}")).collect();
    let alerts = denials_on_new_tools(403, &tools);
    let spread = by(&alerts, DetectorKind::Enumeration);
    assert_eq!(spread.len(), 1, "{alerts:#?}");
    assert_eq!(spread[0].evidence.observed, Some(5.0));
    assert_eq!(
        spread[0].evidence.event_ids.len(),
        5,
        "the refused calls as samples"
    );

    // An agent being throttled as it tries new things was not refused
    // access; nor was a client whose token expired.
    for status in [429, 401] {
        let alerts = denials_on_new_tools(status, &tools);
        let spread = by(&alerts, DetectorKind::Enumeration);
        assert!(spread.is_empty(), "{status}: {spread:#?}");
    }
}

#[test]
fn refusals_on_many_resources_of_a_tool_the_user_knows_are_enumeration() {
    // One API, many targets: the way a stolen cloud key is tried.
    let mut calls = history("alice", 21, 0);
    for k in 0..6 {
        let secs = DAY0 + 22 * 86_400 + 9 * 3600 + k * 1200;
        let mut c = Call::new(secs, "alice", "get_issue");
        c.resource = Some(["repo/a", "repo/b", "repo/c", "repo/d", "repo/e", "repo/f"][k as usize]);
        c.denied = true;
        calls.push(c);
    }
    let alerts = run(&mut engine(), &calls);
    let spread = by(&alerts, DetectorKind::Enumeration);
    assert_eq!(spread.len(), 1, "{alerts:#?}");
    assert_eq!(spread[0].evidence.observed, Some(5.0));
}

/// 30 calls by alice in 4 minutes with `status` and `error_type`, after
/// three weeks of clean work: the `malformed_spike` alerts.
fn failing_calls(status: u16, error_type: Option<&str>) -> usize {
    let mut calls = history("alice", 21, 0);
    let t = DAY0 + 22 * 86_400 + 11 * 3600;
    for k in 0..30 {
        let mut c = Call::new(t + k * 8, "alice", "search_issues");
        c.status = Some(status);
        c.error_type = error_type;
        calls.push(c);
    }
    let alerts = run(&mut engine(), &calls);
    by(&alerts, DetectorKind::MalformedSpike).len()
}

#[test]
fn bad_requests_and_tool_errors_are_malformed_but_rate_limits_and_misses_are_not() {
    for (status, error_type) in [
        (400, None),
        (200, Some("tool_error")),
        (200, Some("-32602")),
    ] {
        assert_eq!(
            failing_calls(status, error_type),
            1,
            "{status} {error_type:?}"
        );
    }
    for (status, error_type) in [
        (429, Some("rate_limited")),
        (404, Some("not_found")),
        (401, Some("unauthorized")),
    ] {
        assert_eq!(
            failing_calls(status, error_type),
            0,
            "{status} {error_type:?}"
        );
    }
}

/// `n` refusals of `status` by an identity first seen in the burst, in
/// `span` seconds, among colleagues with three weeks of history: the pages.
fn new_identity_burst(n: i64, span: i64, status: u16) -> Vec<Alert> {
    let mut calls = history("alice", 21, 0);
    let t = DAY0 + 22 * 86_400 + 11 * 3600;
    for k in 0..n {
        let mut c = Call::new(t + k * span / n.max(1), "new-svc", "list_secrets");
        c.denied = true;
        c.denied_status = Some(status);
        calls.push(c);
    }
    calls.sort_by_key(|c| c.secs);
    run(&mut engine(), &calls)
        .into_iter()
        .filter(|a| a.user_id == "new-svc" && a.repeats == 0)
        .collect()
}

#[test]
fn a_new_identity_refused_15_times_in_a_minute_pages_at_once() {
    // The real audit log's case: 29 refusals in 3 seconds.
    let pages = new_identity_burst(29, 3, 403);
    let spikes = by(&pages, DetectorKind::DenialSpike);
    assert_eq!(spikes.len(), 1, "{pages:#?}");
    assert_eq!(spikes[0].severity, Severity::High);
    assert!(
        spikes[0].title.contains("new identity"),
        "{}",
        spikes[0].title
    );
    let t = DAY0 + 22 * 86_400 + 11 * 3600;
    assert!(
        spikes[0].time.timestamp() - t <= 3,
        "paged at the 15th refusal"
    );
    // 15 in 50 s too; 14 is not yet a burst, nor are rate limits (the
    // window's own test may still judge those).
    let burst = |alerts: &[Alert]| {
        alerts
            .iter()
            .filter(|a| a.title.contains("new identity"))
            .count()
    };
    assert_eq!(burst(&new_identity_burst(15, 50, 403)), 1);
    assert_eq!(burst(&new_identity_burst(14, 50, 403)), 0);
    assert_eq!(burst(&new_identity_burst(29, 3, 429)), 0);
}

#[test]
fn an_attack_day_does_not_raise_the_peak_the_next_spike_is_judged_against() {
    let day = |d: i64| DAY0 + d * 86_400 + 11 * 3600;
    let mut calls = batch_history("ci-bot");
    // Day 22: a spike, and half an hour later a burst of 60 that is no
    // spike by itself, but would lift the peak if the day counted.
    calls.extend(run_of("ci-bot", day(22), 5, 150));
    calls.extend(run_of("ci-bot", day(22) + 1800, 5, 60));
    // Day 23: the same spike again. (Days 22 and 23 are October 27 and 28.)
    calls.extend(run_of("ci-bot", day(23), 5, 150));
    let alerts = volume_alerts(DetectConfig::default(), &calls);
    let days: Vec<String> = alerts
        .iter()
        .map(|a| a.time.format("%d").to_string())
        .collect();
    assert_eq!(days, ["27", "28"], "{alerts:#?}");
}

#[test]
fn later_signals_in_the_correlation_window_join_the_alert_that_paged() {
    // At 03:00, from an address nobody in the tenant uses, alice tries one
    // tool she never used, then three more within minutes.
    let mut calls = history("alice", 21, 0);
    let t = DAY0 + 22 * 86_400 + 3 * 3600;
    for (k, tool) in ["t1", "t2", "t3", "t4"].into_iter().enumerate() {
        let mut c = Call::new(t + k as i64 * 120, "alice", tool);
        c.ip = "203.0.113.9";
        calls.push(c);
    }
    // Two hours later, the next such run is news again.
    let mut c = Call::new(t + 2 * 3600, "alice", "t5");
    c.ip = "198.51.100.7";
    calls.push(c);
    let alerts = run(&mut engine(), &calls);

    let pages = pages_since(&alerts, t);
    assert_eq!(pages.len(), 2, "one page per run: {pages:#?}");
    let first = pages[0];
    assert_eq!(first.time.timestamp(), t);
    assert!(first.evidence.details.contains_key("corroborated_by"));
    assert_eq!(pages[1].time.timestamp(), t + 2 * 3600);

    // The first alert's update carries the later tools, as repeats.
    let update = latest(&alerts, &first.alert_id);
    assert_eq!(update.repeats, 3, "{update:#?}");
    let joined = update.evidence.details["corroborated_by"].to_string();
    for tool in ["t2", "t3", "t4"] {
        assert!(
            joined.contains(&format!("`{tool}`")),
            "{tool} missing: {joined}"
        );
        assert!(update.evidence.new_values.contains(&tool.to_string()));
    }
}

#[test]
fn a_night_session_pages_alone_only_when_long_and_otherwise_with_a_new_address() {
    let night = DAY0 + 22 * 86_400 + 2 * 3600;
    let with_run = |minutes: i64, calls: i64, ip: &'static str| {
        let mut history = history("alice", 21, 0);
        let mut session = run_of("alice", night, minutes, calls);
        session[25].ip = ip;
        history.extend(session);
        run(&mut engine(), &history)
    };
    // 30 active minutes at 02:00 from her usual address: someone may well
    // finish a task at night; a signal, not a page.
    let usual = with_run(30, 36, "10.0.0.1");
    assert!(usual.is_empty(), "{usual:#?}");
    // The same session with a call from an address nobody in the tenant
    // uses pages, naming the address.
    let away = with_run(30, 36, "203.0.113.9");
    let pages: Vec<_> = away.iter().filter(|a| a.repeats == 0).collect();
    assert_eq!(pages.len(), 1, "{away:#?}");
    assert_eq!(pages[0].detector, DetectorKind::OffHours);
    let corroborated = pages[0].evidence.details["corroborated_by"].to_string();
    assert!(corroborated.contains("203.0.113.9"), "{corroborated}");
    // Someone keeping at it past `alone_minutes` pages on their own.
    let long = with_run(50, 60, "10.0.0.1");
    let pages: Vec<_> = long.iter().filter(|a| a.repeats == 0).collect();
    assert_eq!(pages.len(), 1, "{long:#?}");
    assert!(!pages[0].evidence.details.contains_key("corroborated_by"));
    assert!(pages[0].evidence.observed.expect("observed") >= 40.0);
}

#[test]
fn a_more_severe_signal_after_a_page_updates_it_instead_of_paging_again() {
    // Twelve colleagues send mail: for alice it is a common sensitive tool,
    // a signal rather than a page on its own.
    let mut calls = Vec::new();
    for i in 0..12 {
        let user: &'static str = Box::leak(format!("u{i}").into_boxed_str());
        calls.extend(history(user, 21, 0));
        calls.push(Call::new(DAY0 + 10 * 3600 + 1, user, "send_email"));
    }
    calls.extend(history("alice", 21, 0));
    // At 03:00, from an address nobody uses, a tool she never used pages
    // (medium); two minutes later she sends mail for the first time, and
    // then deletes a repository.
    let t = DAY0 + 22 * 86_400 + 3 * 3600;
    for (k, tool) in ["t1", "send_email", "delete_repo"].into_iter().enumerate() {
        let mut c = Call::new(t + k as i64 * 120, "alice", tool);
        c.ip = "203.0.113.9";
        calls.push(c);
    }
    calls.sort_by_key(|c| c.secs);
    let alerts = run(&mut engine(), &calls);
    let pages: Vec<_> = alerts
        .iter()
        .filter(|a| a.user_id == "alice" && a.repeats == 0)
        .collect();
    assert_eq!(pages.len(), 1, "one incident, one page: {pages:#?}");
    assert_eq!(pages[0].severity, Severity::Medium);
    // The page's update says high at once, and names what joined it.
    let update = alerts
        .iter()
        .find(|a| a.alert_id == pages[0].alert_id && a.severity == Severity::High)
        .expect("an update raising the severity");
    assert!(
        update.time.timestamp() <= t + 240,
        "sent when it rose: {}",
        update.time
    );
    let joined =
        latest(&alerts, &pages[0].alert_id).evidence.details["corroborated_by"].to_string();
    assert!(joined.contains("`delete_repo`"), "{joined}");
}

#[test]
fn a_hijacked_users_burst_of_signals_is_one_page() {
    // The demo's case: in one minute, eleven sensitive tools, denials on
    // new tools and a denial burst, all from one user.
    let mut calls = history("alice", 21, 0);
    let t = DAY0 + 22 * 86_400 + 11 * 3600;
    let tools: Vec<String> = (0..11).map(|k| format!("delete_thing_{k}")).collect();
    for (k, tool) in tools.iter().enumerate() {
        calls.push(Call::new(t + k as i64, "alice", tool));
    }
    calls.extend(denied_burst(
        "alice",
        t + 20,
        30,
        1,
        &[
            "admin_a", "admin_b", "admin_c", "admin_d", "admin_e", "admin_f",
        ],
    ));
    calls.sort_by_key(|c| c.secs);
    let alerts = run(&mut engine(), &calls);
    let pages: Vec<_> = alerts
        .iter()
        .filter(|a| a.severity >= Severity::Medium && a.repeats == 0)
        .collect();
    assert_eq!(pages.len(), 1, "{pages:#?}");
    let last = latest(&alerts, &pages[0].alert_id);
    let joined = last.evidence.details["corroborated_by"].to_string();
    for tool in &tools[1..] {
        assert!(
            joined.contains(&format!("`{tool}`")),
            "{tool} missing: {joined}"
        );
    }
    assert!(
        joined.contains("denied"),
        "the denials joined too: {joined}"
    );
}

#[test]
fn a_new_address_as_a_night_run_began_corroborates_it_more_than_an_hour_later() {
    let night = DAY0 + 22 * 86_400 + 2 * 3600;
    let with_first_ip = |ip: &'static str| {
        let mut calls = history("alice", 21, 0);
        // 16 calls six minutes apart: the run reaches `min_active_minutes`
        // 84 minutes after its first call, the only one from `ip`, and
        // stays short of `alone_minutes`.
        let mut session = run_of("alice", night, 96, 16);
        session[0].ip = ip;
        calls.extend(session);
        run(&mut engine(), &calls)
    };
    let usual = with_first_ip("10.0.0.1");
    assert!(usual.is_empty(), "{usual:#?}");
    let away = with_first_ip("203.0.113.9");
    let pages: Vec<_> = away.iter().filter(|a| a.repeats == 0).collect();
    assert_eq!(pages.len(), 1, "{away:#?}");
    assert_eq!(pages[0].detector, DetectorKind::OffHours);
    assert!(pages[0].time.timestamp() - night >= 3600, "{:#?}", pages[0]);
    let corroborated = pages[0].evidence.details["corroborated_by"].to_string();
    assert!(corroborated.contains("203.0.113.9"), "{corroborated}");
}

#[test]
fn signals_after_an_alert_raised_on_its_own_join_it_instead_of_paging_again() {
    let mut calls = history("alice", 21, 0);
    let t = DAY0 + 22 * 86_400 + 11 * 3600;
    calls.extend(denied_burst("alice", t, 30, 8, &["search_issues"]));
    // Five minutes later: a tool she never used, from an address nobody in
    // the tenant uses. With the burst, those add up.
    let mut c = Call::new(t + 600, "alice", "t1");
    c.ip = "203.0.113.9";
    calls.push(c);
    let alerts = run(&mut engine(), &calls);
    let pages = pages_since(&alerts, t);
    assert_eq!(pages.len(), 1, "one page for the episode: {alerts:#?}");
    assert_eq!(pages[0].detector, DetectorKind::DenialSpike);
    let update = latest(&alerts, &pages[0].alert_id);
    let joined = update.evidence.details["corroborated_by"].to_string();
    assert!(
        joined.contains("203.0.113.9") || joined.contains("`t1`"),
        "{update:#?}"
    );
}

#[test]
fn a_seventeen_minute_night_session_from_a_new_address_pages() {
    // 17 calls a minute apart at 02:00, the first from an address nobody in
    // the tenant uses: past `min_active_minutes`, so the run and the address
    // together page.
    let mut calls = history("alice", 21, 0);
    let mut session = run_of("alice", DAY0 + 22 * 86_400 + 2 * 3600, 17, 17);
    session[0].ip = "203.0.113.9";
    calls.extend(session);
    let alerts = run(&mut engine(), &calls);
    let pages: Vec<_> = alerts.iter().filter(|a| a.repeats == 0).collect();
    assert_eq!(pages.len(), 1, "{alerts:#?}");
    assert_eq!(pages[0].detector, DetectorKind::OffHours);
}

#[test]
fn a_light_users_long_night_is_judged() {
    // Three calls an hour, 9 to 15, on weekdays for three weeks: 270
    // calls, a profile of well under 200 once decayed.
    let mut calls: Vec<Call> = history("alice", 21, 0)
        .into_iter()
        .filter(|c| c.secs % 3600 < 1800 && c.secs % 86_400 < 15 * 3600)
        .collect();
    // Day 22, 02:00: 60 calls over 50 minutes.
    calls.extend(run_of("alice", DAY0 + 22 * 86_400 + 2 * 3600, 50, 60));
    let alerts = run(&mut engine(), &calls);
    let off = by(&alerts, DetectorKind::OffHours);
    assert_eq!(off.len(), 1, "{alerts:#?}");
    assert!(off[0].evidence.observed.expect("observed") >= 40.0);
}

#[test]
fn a_user_idle_past_forget_after_is_forgotten_and_starts_over_when_back() {
    let mut engine = engine();
    let forget = i64::from(engine.settings().forget_after_days);
    let mut calls = history("amy", 14, 0);
    calls.extend(history("cleo", 14, 0));
    // Bob keeps the stream, and so the watermark, moving, one call a day;
    // Cleo comes back just before she would be forgotten.
    let last_day = 13 + forget + 2;
    for day in 14..=last_day {
        calls.push(Call::new(
            DAY0 + day * 86_400 + 12 * 3600,
            "bob",
            "search_issues",
        ));
    }
    calls.push(Call::new(
        DAY0 + (11 + forget) * 86_400 + 12 * 3600,
        "cleo",
        "get_issue",
    ));
    calls.sort_by_key(|c| c.secs);
    let mut out = Vec::new();
    for (i, c) in calls.iter().enumerate() {
        engine.observe(&c.event(i), &mut out);
    }
    let known = |engine: &Engine, user: &str| engine.users.contains_key(&user_key("acme", user));
    assert!(
        !known(&engine, "amy"),
        "idle since day 11 (a Friday), past {forget} days"
    );
    assert!(known(&engine, "cleo") && known(&engine, "bob"));
    assert_eq!(engine.stats().forgotten, 1);
    assert_eq!(engine.users(), 2);

    // Back after all that time, Amy starts over: a new user, history from today.
    let back = DAY0 + (last_day + 1) * 86_400 + 10 * 3600;
    engine.observe(
        &Call::new(back, "amy", "search_issues").event(calls.len()),
        &mut out,
    );
    let amy = &engine.users[&user_key("acme", "amy")];
    assert_eq!(amy.first_day, (back / 86_400) as u32);
    assert_eq!(amy.history_days(amy.first_day), 0);
}

#[test]
fn a_rise_sustained_for_an_hour_pages_though_no_five_minutes_is_a_burst() {
    // Four calls an hour is the usual; 90 spread over an hour is a bulk read
    // at 22 times that, yet no 5 or 15 minutes of it reaches `min_count`.
    let at = DAY0 + 22 * 86_400 + 11 * 3600;
    let mut calls = history("alice", 21, 0);
    calls.extend(run_of("alice", at, 60, 90));
    let alerts = volume_alerts(DetectConfig::default(), &calls);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
    let a = &alerts[0];
    assert!(a.title.ends_with("calls in 1 h"), "{}", a.title);
    assert!(a.severity >= Severity::Medium);
    assert!(
        a.explanation.contains("sustained rise"),
        "{}",
        a.explanation
    );
    // Judged once the hour it filled has passed, not a day later.
    assert!(a.time.timestamp() - at <= 75 * 60, "{}", a.time);

    // The same calls at the user's usual pace are not news.
    let mut usual = history("alice", 21, 0);
    usual.extend(run_of("alice", at, 60, 6));
    assert!(volume_alerts(DetectConfig::default(), &usual).is_empty());
}

#[test]
fn a_sweep_spread_over_most_of_an_hour_is_enumeration() {
    // 40 resources never used before, one a minute: no 5 or 15 minutes
    // hold `min_distinct` of them, the hour does.
    let names = resources("slow-sweep", 40);
    let mut calls = history("alice", 21, 0);
    calls.extend(touching(
        "alice",
        DAY0 + 22 * 86_400 + 11 * 3600,
        40,
        &names,
    ));
    calls.sort_by_key(|c| c.secs);
    let alerts = run(&mut engine(), &calls);
    let sweeps = by(&alerts, DetectorKind::Enumeration);
    assert_eq!(sweeps.len(), 1, "{alerts:#?}");
    assert!(
        sweeps[0].title.contains("distinct new resources in 1 h"),
        "{}",
        sweeps[0].title
    );
}

#[test]
fn twenty_calls_over_an_hour_deep_in_the_night_page_alone_but_a_late_evening_does_not() {
    let day = DAY0 + 22 * 86_400;
    let pages_for = |start: i64| {
        let mut calls = history("alice", 21, 0);
        // 24 calls, one every 2.5 minutes, for an hour, usual address.
        calls.extend(run_of("alice", start, 60, 24));
        let alerts = run(&mut engine(), &calls);
        alerts
            .into_iter()
            .filter(|a| a.repeats == 0 && a.detector == DetectorKind::OffHours)
            .collect::<Vec<_>>()
    };
    // 02:00, seven hours before her day starts.
    let night = pages_for(day + 2 * 3600);
    assert_eq!(night.len(), 1, "{night:#?}");
    assert!(night[0].evidence.details["hours_from_usual"].as_u64() >= Some(3));
    assert!(night[0].time.timestamp() - (day + 2 * 3600) >= 40 * 60);
    // 18:00, the hour after her day ends: a task finished late, not a page.
    let evening = pages_for(day + 18 * 3600);
    assert!(evening.is_empty(), "{evening:#?}");
}

#[test]
fn a_new_identity_is_judged_against_the_tenants_new_identities() {
    // A hundred veterans, each with a misconfigured agent refused twice a
    // day: the tenant's pooled rate is theirs.
    let mut calls = Vec::new();
    for v in 0..100 {
        let name: &'static str = Box::leak(format!("v{v}").into_boxed_str());
        calls.extend(history(name, 21, 2));
    }
    let with_bots = |refused: bool| {
        let mut calls = calls.clone();
        // Five new bots a day for ten days, each finding its way for three
        // minutes; in one tenant they are never refused, in the other as
        // often as the newcomer below.
        for day in 12..22 {
            for bot in 0..5 {
                let start = DAY0 + day * 86_400 + (9 + bot) * 3600;
                let name: &'static str = Box::leak(format!("bot-{day}-{bot}").into_boxed_str());
                calls.extend((0..36).map(|k| {
                    let mut c = Call::new(start + k * 5, name, "search_issues");
                    c.denied = refused && k % 2 == 0;
                    c
                }));
            }
        }
        // Day 22: a new identity refused 14 times in a minute, just below
        // the immediate floor of 15.
        let t = DAY0 + 22 * 86_400 + 15 * 3600;
        calls.extend((0..28).map(|k| {
            let mut c = Call::new(t + k * 2, "newbie", "search_issues");
            c.denied = k % 2 == 0;
            c
        }));
        calls.sort_by_key(|c| c.secs);
        run(&mut engine(), &calls)
            .into_iter()
            .filter(|a| {
                a.user_id == "newbie" && a.detector == DetectorKind::DenialSpike && a.repeats == 0
            })
            .count()
    };
    assert_eq!(with_bots(false), 1, "new identities here are never refused");
    assert_eq!(with_bots(true), 0, "as this tenant's new identities are");
}

#[test]
fn a_rise_sustained_past_the_suppression_pages_once() {
    // 200 calls over 100 minutes against four an hour: the hour's test pages
    // early on, and the hour that still holds the rise when the suppression
    // ends is its tail, not a second incident.
    let at = DAY0 + 22 * 86_400 + 11 * 3600;
    let mut calls = history("alice", 21, 0);
    calls.extend(run_of("alice", at, 100, 200));
    // Ordinary work for two more hours after it.
    for k in 0..24 {
        calls.push(Call::new(at + 100 * 60 + k * 300, "alice", "search_issues"));
    }
    let alerts = volume_alerts(DetectConfig::default(), &calls);
    assert_eq!(alerts.len(), 1, "{alerts:#?}");
}
