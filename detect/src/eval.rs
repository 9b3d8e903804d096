//! Scoring detections against labelled incidents (as written by
//! `tooltrail simulate --labels`): recall, precision, false alerts per 1,000
//! user-days and time to detect, per detector, per scenario and in total.
//!
//! A detection *matches* an incident when it is about the same tenant and
//! user and either names one of the incident's events or falls between the
//! incident's start and [`GRACE`] after its end. A detection that matches no
//! incident is a false alert. An incident is detected when any detection
//! matches it; its time to detect is the earliest match's event time minus
//! the incident's start.
//!
//! [`anchors`] holds the two naive rules the detector must beat.

pub mod anchors;
pub mod sweep;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::alert::{Alert, Severity};

/// How long after an incident's last event a detection still counts for it.
pub const GRACE: chrono::Duration = chrono::Duration::minutes(30);

/// One labelled incident: the fields of the simulator's label records that
/// scoring needs (unknown fields are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct Incident {
    pub scenario: String,
    pub intensity: String,
    pub tenant_id: String,
    pub user_id: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub event_ids: Vec<String>,
}

/// Anything that fired: an alert, or an anchor rule's hit.
#[derive(Debug, Clone)]
pub struct Detection {
    pub source: String,
    pub tenant_id: String,
    pub user_id: String,
    pub time: DateTime<Utc>,
    pub event_ids: Vec<String>,
    /// Whether it pages someone: an alert of severity medium or higher (an
    /// anchor rule's hit always does).
    pub pages: bool,
}

impl From<&Alert> for Detection {
    fn from(a: &Alert) -> Self {
        Detection {
            source: a.detector.as_str().to_string(),
            tenant_id: a.tenant_id.clone(),
            user_id: a.user_id.clone(),
            time: a.time,
            event_ids: a.evidence.event_ids.clone(),
            pages: a.severity >= Severity::Medium,
        }
    }
}

/// Scores of one group of detections.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Score {
    pub detections: usize,
    pub true_detections: usize,
    pub false_detections: usize,
    pub incidents: usize,
    pub detected: usize,
    /// Seconds from incident start to first matching detection.
    pub ttd: Vec<i64>,
}

impl Score {
    pub fn recall(&self) -> f64 {
        ratio(self.detected, self.incidents)
    }

    pub fn precision(&self) -> f64 {
        ratio(self.true_detections, self.detections)
    }

    pub fn false_per_1000_user_days(&self, user_days: u64) -> f64 {
        if user_days == 0 {
            0.0
        } else {
            self.false_detections as f64 * 1000.0 / user_days as f64
        }
    }

    /// Median and 90th percentile time to detect, in seconds.
    pub fn ttd_quantiles(&self) -> Option<(i64, i64)> {
        if self.ttd.is_empty() {
            return None;
        }
        let mut v = self.ttd.clone();
        v.sort_unstable();
        let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
        Some((q(0.5), q(0.9)))
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// The whole evaluation.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub user_days: u64,
    pub total: Score,
    /// By detection source (detector or anchor name).
    pub by_source: BTreeMap<String, Score>,
    /// By intensity ("normal", "low_and_slow"): the hard variants are
    /// reported apart from the rest.
    pub by_intensity: BTreeMap<String, Score>,
    /// By "scenario/intensity".
    pub by_scenario: BTreeMap<String, Score>,
    /// Incidents no detection matched: "scenario/intensity user@tenant start".
    pub missed: Vec<String>,
    /// Per incident, the paging detections that matched it.
    pub pages: Vec<usize>,
}

impl Report {
    /// Incidents with at least one paging detection, of all incidents.
    pub fn paged_recall(&self) -> f64 {
        ratio(
            self.pages.iter().filter(|&&n| n > 0).count(),
            self.pages.len(),
        )
    }

    /// Mean and largest number of paging detections per incident that paged.
    pub fn pages_per_paged_incident(&self) -> Option<(f64, usize)> {
        let paged: Vec<usize> = self.pages.iter().copied().filter(|&n| n > 0).collect();
        let max = paged.iter().copied().max()?;
        Some((paged.iter().sum::<usize>() as f64 / paged.len() as f64, max))
    }
}

/// The incidents of each (tenant, user), by index.
fn by_user(incidents: &[Incident]) -> HashMap<(&str, &str), Vec<usize>> {
    let mut by_user: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
    for (i, inc) in incidents.iter().enumerate() {
        by_user
            .entry((inc.tenant_id.as_str(), inc.user_id.as_str()))
            .or_default()
            .push(i);
    }
    by_user
}

/// Scores `detections` against `incidents`.
pub fn score(detections: &[Detection], incidents: &[Incident], user_days: u64) -> Report {
    let by_user = by_user(incidents);
    let id_sets: Vec<HashSet<&str>> = incidents
        .iter()
        .map(|i| i.event_ids.iter().map(String::as_str).collect())
        .collect();
    // For each incident: earliest match per source, and overall.
    let mut first_by_source: Vec<BTreeMap<&str, DateTime<Utc>>> =
        vec![BTreeMap::new(); incidents.len()];
    let mut report = Report {
        user_days,
        pages: vec![0; incidents.len()],
        ..Report::default()
    };
    for d in detections {
        let matched: Vec<usize> = by_user
            .get(&(d.tenant_id.as_str(), d.user_id.as_str()))
            .into_iter()
            .flatten()
            .copied()
            .filter(|&i| {
                let inc = &incidents[i];
                d.event_ids.iter().any(|e| id_sets[i].contains(e.as_str()))
                    || (d.time >= inc.start && d.time <= inc.end + GRACE)
            })
            .collect();
        for s in [
            &mut report.total,
            report.by_source.entry(d.source.clone()).or_default(),
        ] {
            s.detections += 1;
            if matched.is_empty() {
                s.false_detections += 1;
            } else {
                s.true_detections += 1;
            }
        }
        for i in matched {
            if d.pages {
                report.pages[i] += 1;
            }
            let first = first_by_source[i]
                .entry(d.source.as_str())
                .or_insert(d.time);
            *first = (*first).min(d.time);
        }
    }
    for (i, inc) in incidents.iter().enumerate() {
        let ttd = |t: &DateTime<Utc>| (*t - inc.start).num_seconds().max(0);
        let group = format!("{}/{}", inc.scenario, inc.intensity);
        let earliest = first_by_source[i].values().min();
        for s in [
            &mut report.total,
            report
                .by_intensity
                .entry(inc.intensity.clone())
                .or_default(),
            report.by_scenario.entry(group.clone()).or_default(),
        ] {
            s.incidents += 1;
            if let Some(t) = earliest {
                s.detected += 1;
                s.ttd.push(ttd(t));
            }
        }
        if earliest.is_none() {
            report.missed.push(format!(
                "{group} {}@{} {}",
                inc.user_id,
                inc.tenant_id,
                inc.start.format("%Y-%m-%dT%H:%M:%SZ")
            ));
        }
        for (source, t) in &first_by_source[i] {
            let s = report.by_source.entry(source.to_string()).or_default();
            s.detected += 1;
            s.ttd.push(ttd(t));
        }
    }
    for s in report.by_source.values_mut() {
        s.incidents = incidents.len();
    }
    report
}

/// How long before an incident's first event a page still counts for it,
/// under [`paging`]'s rule.
pub const PAGE_LEAD: chrono::Duration = chrono::Duration::minutes(1);
/// ... and how long after its last event.
pub const PAGE_GRACE: chrono::Duration = chrono::Duration::minutes(15);

/// Incidents and how many of them paged.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Paged {
    pub incidents: usize,
    pub paged: usize,
}

impl Paged {
    pub fn recall(&self) -> f64 {
        ratio(self.paged, self.incidents)
    }

    pub fn add(&mut self, other: Paged) {
        self.incidents += other.incidents;
        self.paged += other.paged;
    }
}

/// Paging scored by the rule the held-out sets are scored by: only pages
/// (severity medium or higher) count, matched by time alone.
#[derive(Debug, Clone, Default)]
pub struct Paging {
    pub user_days: u64,
    /// By "scenario/intensity".
    pub by_scenario: BTreeMap<String, Paged>,
    /// By intensity.
    pub by_intensity: BTreeMap<String, Paged>,
    /// Pages near no incident of their user.
    pub false_pages: usize,
    /// ... by detector.
    pub false_by_source: BTreeMap<String, usize>,
    /// For each paged incident, the pages that matched it.
    pub pages: Vec<usize>,
    /// Seconds from each paged incident's start to its first page.
    pub ttd: Vec<i64>,
    /// Indices of the incidents no page matched.
    pub missed: Vec<usize>,
}

impl Paging {
    pub fn false_per_1000_user_days(&self) -> f64 {
        if self.user_days == 0 {
            0.0
        } else {
            self.false_pages as f64 * 1000.0 / self.user_days as f64
        }
    }

    /// Adds another run's scores (another seed of the same cell).
    pub fn add(&mut self, other: &Paging) {
        self.user_days += other.user_days;
        for (k, v) in &other.by_scenario {
            self.by_scenario.entry(k.clone()).or_default().add(*v);
        }
        for (k, v) in &other.by_intensity {
            self.by_intensity.entry(k.clone()).or_default().add(*v);
        }
        self.false_pages += other.false_pages;
        for (k, v) in &other.false_by_source {
            *self.false_by_source.entry(k.clone()).or_default() += v;
        }
        self.pages.extend(&other.pages);
        self.ttd.extend(&other.ttd);
    }
}

/// Scores pages the way the held-out sets are scored: an incident is paged
/// when a page about its user falls between [`PAGE_LEAD`] before its start
/// and [`PAGE_GRACE`] after its end; a page near no incident of its user is
/// a false page.
pub fn paging(detections: &[Detection], incidents: &[Incident], user_days: u64) -> Paging {
    let by_user = by_user(incidents);
    let mut first: Vec<Option<DateTime<Utc>>> = vec![None; incidents.len()];
    let mut pages = vec![0usize; incidents.len()];
    let mut report = Paging {
        user_days,
        ..Paging::default()
    };
    for d in detections.iter().filter(|d| d.pages) {
        let mut matched = false;
        for &i in by_user
            .get(&(d.tenant_id.as_str(), d.user_id.as_str()))
            .into_iter()
            .flatten()
        {
            let inc = &incidents[i];
            if d.time >= inc.start - PAGE_LEAD && d.time <= inc.end + PAGE_GRACE {
                matched = true;
                pages[i] += 1;
                first[i] = Some(first[i].map_or(d.time, |t| t.min(d.time)));
            }
        }
        if !matched {
            report.false_pages += 1;
            *report.false_by_source.entry(d.source.clone()).or_default() += 1;
        }
    }
    for (i, inc) in incidents.iter().enumerate() {
        let hit = Paged {
            incidents: 1,
            paged: usize::from(first[i].is_some()),
        };
        let group = format!("{}/{}", inc.scenario, inc.intensity);
        report.by_scenario.entry(group).or_default().add(hit);
        report
            .by_intensity
            .entry(inc.intensity.clone())
            .or_default()
            .add(hit);
        if let Some(t) = first[i] {
            report.pages.push(pages[i]);
            report.ttd.push((t - inc.start).num_seconds().max(0));
        } else {
            report.missed.push(i);
        }
    }
    report
}

impl Report {
    /// A plain-text table.
    pub fn render(&self, title: &str) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{title}");
        let _ = writeln!(
            out,
            "  {:<26} {:>7} {:>6} {:>6} {:>9} {:>8} {:>10} {:>9} {:>9}",
            "",
            "alerts",
            "true",
            "false",
            "precision",
            "recall",
            "false/1kud",
            "ttd_p50",
            "ttd_p90"
        );
        let row = |out: &mut String, name: &str, s: &Score, recall: bool| {
            let (p50, p90) = s
                .ttd_quantiles()
                .map_or(("-".into(), "-".into()), |(a, b)| {
                    (duration(a), duration(b))
                });
            let recall = if recall {
                format!("{:.3}", s.recall())
            } else {
                format!("{}/{}", s.detected, s.incidents)
            };
            let _ = writeln!(
                out,
                "  {:<26} {:>7} {:>6} {:>6} {:>9.3} {:>8} {:>10.2} {:>9} {:>9}",
                name,
                s.detections,
                s.true_detections,
                s.false_detections,
                s.precision(),
                recall,
                s.false_per_1000_user_days(self.user_days),
                p50,
                p90
            );
        };
        for (name, s) in &self.by_source {
            row(&mut out, name, s, false);
        }
        row(&mut out, "TOTAL", &self.total, true);
        if let Some((mean, max)) = self.pages_per_paged_incident() {
            let _ = writeln!(
                out,
                "  paged (severity medium or higher): recall {:.3}, paging alerts per paged incident: mean {mean:.2}, max {max}",
                self.paged_recall()
            );
        }
        let _ = writeln!(out, "  by intensity:");
        for (name, s) in &self.by_intensity {
            let _ = writeln!(
                out,
                "    {:<30} {:>3}/{:<3} recall {:.3}",
                name,
                s.detected,
                s.incidents,
                s.recall()
            );
        }
        let _ = writeln!(out, "  by scenario ({} user-days):", self.user_days);
        for (name, s) in &self.by_scenario {
            let (p50, p90) = s
                .ttd_quantiles()
                .map_or(("-".into(), "-".into()), |(a, b)| {
                    (duration(a), duration(b))
                });
            let _ = writeln!(
                out,
                "    {:<30} {:>3}/{:<3} recall {:.2}  ttd p50 {p50} p90 {p90}",
                name,
                s.detected,
                s.incidents,
                s.recall()
            );
        }
        for m in &self.missed {
            let _ = writeln!(out, "  missed: {m}");
        }
        out
    }
}

fn duration(secs: i64) -> String {
    if secs < 120 {
        format!("{secs}s")
    } else if secs < 7200 {
        format!("{:.1}m", secs as f64 / 60.0)
    } else {
        format!("{:.1}h", secs as f64 / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn incident(user: &str, start: &str, end: &str, ids: &[&str]) -> Incident {
        Incident {
            scenario: "probing".into(),
            intensity: "normal".into(),
            tenant_id: "acme".into(),
            user_id: user.into(),
            start: t(start),
            end: t(end),
            event_ids: ids.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Three incidents on three days: alice's ten minutes (events a1, a2),
    /// bob's and carol's five (b1, c1).
    fn alice_bob_and_carol() -> Vec<Incident> {
        vec![
            incident(
                "alice",
                "2026-10-20T10:00:00Z",
                "2026-10-20T10:10:00Z",
                &["a1", "a2"],
            ),
            incident(
                "bob",
                "2026-10-21T10:00:00Z",
                "2026-10-21T10:05:00Z",
                &["b1"],
            ),
            incident(
                "carol",
                "2026-10-22T10:00:00Z",
                "2026-10-22T10:05:00Z",
                &["c1"],
            ),
        ]
    }

    fn det(source: &str, user: &str, time: &str, ids: &[&str]) -> Detection {
        Detection {
            source: source.into(),
            tenant_id: "acme".into(),
            user_id: user.into(),
            time: t(time),
            event_ids: ids.iter().map(|s| s.to_string()).collect(),
            pages: true,
        }
    }

    #[test]
    fn detections_match_by_event_or_by_time_and_the_rest_are_false() {
        let mut incidents = alice_bob_and_carol();
        incidents[2].intensity = "low_and_slow".into();
        let detections = vec![
            // By event id, even though late.
            det("denial_spike", "alice", "2026-10-20T13:00:00Z", &["a2"]),
            // By time, within the grace period.
            det("first_seen_ip", "bob", "2026-10-21T10:20:00Z", &[]),
            // Right user, far too late, unrelated events: false.
            det("first_seen_ip", "bob", "2026-10-21T12:00:00Z", &["zz"]),
            // Another user: false.
            det("off_hours", "dave", "2026-10-20T10:01:00Z", &["a1"]),
        ];
        let r = score(&detections, &incidents, 2000);
        assert_eq!(r.total.detections, 4);
        assert_eq!(r.total.true_detections, 2);
        assert_eq!(r.total.false_detections, 2);
        assert_eq!((r.total.detected, r.total.incidents), (2, 3));
        assert!((r.total.false_per_1000_user_days(2000) - 1.0).abs() < 1e-9);
        assert_eq!(r.missed.len(), 1);
        assert!(r.missed[0].contains("carol@acme"), "{:?}", r.missed);
        // carol's incident is the low-and-slow one: reported apart.
        let slow = &r.by_intensity["low_and_slow"];
        let normal = &r.by_intensity["normal"];
        assert_eq!((slow.detected, slow.incidents), (0, 1));
        assert_eq!((normal.detected, normal.incidents), (2, 2));
        // alice: 3 h; bob: 20 min.
        let mut ttd = r.total.ttd.clone();
        ttd.sort_unstable();
        assert_eq!(ttd, vec![1200, 3 * 3600]);
        let ip = &r.by_source["first_seen_ip"];
        assert_eq!(
            (ip.true_detections, ip.false_detections, ip.detected),
            (1, 1, 1)
        );
    }

    #[test]
    fn pages_are_counted_per_incident_and_low_alerts_do_not_page() {
        let incidents = vec![
            incident(
                "alice",
                "2026-10-20T10:00:00Z",
                "2026-10-20T10:10:00Z",
                &["e1"],
            ),
            incident(
                "bob",
                "2026-10-20T10:00:00Z",
                "2026-10-20T10:10:00Z",
                &["e2"],
            ),
            incident(
                "carol",
                "2026-10-20T10:00:00Z",
                "2026-10-20T10:10:00Z",
                &["e3"],
            ),
        ];
        let quiet = |mut d: Detection| {
            d.pages = false;
            d
        };
        let detections = vec![
            det("denial_spike", "alice", "2026-10-20T10:01:00Z", &["e1"]),
            det("sensitive_tool", "alice", "2026-10-20T10:01:00Z", &[]),
            det("enumeration", "alice", "2026-10-20T10:02:00Z", &[]),
            det("denial_spike", "bob", "2026-10-20T10:01:00Z", &["e2"]),
            quiet(det(
                "first_seen_ip",
                "carol",
                "2026-10-20T10:01:00Z",
                &["e3"],
            )),
        ];
        let report = score(&detections, &incidents, 100);
        assert_eq!(report.pages, [3, 1, 0]);
        assert_eq!(report.total.recall(), 1.0, "a low alert still detects");
        assert!((report.paged_recall() - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(report.pages_per_paged_incident(), Some((2.0, 3)));
        assert!(
            report
                .render("t")
                .contains("paging alerts per paged incident: mean 2.00, max 3"),
            "{}",
            report.render("t")
        );
    }

    #[test]
    fn quantiles_and_rendering_handle_empty_groups() {
        let r = score(
            &[],
            &[incident(
                "a",
                "2026-10-20T10:00:00Z",
                "2026-10-20T10:00:00Z",
                &[],
            )],
            10,
        );
        assert_eq!(r.total.recall(), 0.0);
        assert!(r.total.ttd_quantiles().is_none());
        let text = r.render("empty");
        assert!(text.contains("TOTAL"), "{text}");
        assert!(text.contains("missed: probing/normal a@acme"), "{text}");
    }

    #[test]
    fn paging_counts_pages_by_time_alone_within_a_minute_before_and_15_after() {
        let incidents = alice_bob_and_carol();
        let mut low = det("off_hours", "carol", "2026-10-22T10:01:00Z", &["c1"]);
        low.pages = false;
        let detections = vec![
            // 30 s early, then during: alice paged twice.
            det("enumeration", "alice", "2026-10-20T09:59:30Z", &[]),
            det("volume_spike", "alice", "2026-10-20T10:24:00Z", &[]),
            // Names bob's event but 20 minutes after the end: a false page.
            det("denial_spike", "bob", "2026-10-21T10:25:00Z", &["b1"]),
            // A low alert never pages.
            low,
        ];
        let p = paging(&detections, &incidents, 2000);
        assert_eq!(
            p.by_intensity["normal"],
            Paged {
                incidents: 3,
                paged: 1
            }
        );
        assert_eq!(p.pages, vec![2]);
        assert_eq!(p.ttd, vec![0]);
        assert_eq!(p.missed, vec![1, 2]);
        assert_eq!(p.false_pages, 1);
        assert_eq!(p.false_by_source["denial_spike"], 1);
        assert!((p.false_per_1000_user_days() - 0.5).abs() < 1e-9);
    }
}
