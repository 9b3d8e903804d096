//! A rule's tests: the events it must match and those it must not, carried
//! in the rule file under `rsigma.exemplars` (the format `rsigma rule test`
//! reads).
//!
//! Each test event goes through the event contract first, so a misspelt
//! field or a bad value fails the test with the decoder's error rather
//! than passing by accident; the fields a test leaves out take the values
//! of [`DEFAULTS`]. Each case runs on a fresh engine holding only its rule
//! (and, for a correlation, the rules it counts): detection cases are one
//! event, correlation cases a sequence of `events` at `offset`s from a
//! fixed start.

use chrono::{DateTime, Duration, Utc};
use rsigma_parser::{Exemplar, ExemplarPayload, Expect, correlation_exemplars, exemplars};
use serde_json::Value;
use tooltrail_schemas::ToolCallEvent;

use super::{RuleKind, RuleSet, SigmaDetector};
use crate::alert::Detector;

/// Fields a test event need not spell out, and their values. `time` is
/// the start of the test (a Monday, 09:00 UTC) plus the event's offset.
pub const DEFAULTS: &[(&str, &str)] = &[
    ("tenant_id", "test-tenant"),
    ("user_id", "test-user"),
    ("server", "test-server"),
    ("method", "tools/call"),
    ("decision", "allow"),
];

/// When a test starts: 2026-01-05T09:00:00Z.
pub const START_SECS: i64 = 1_767_603_600;

/// One test case's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CaseResult {
    pub file: std::path::PathBuf,
    pub rule: String,
    pub case: String,
    /// `match` or `no-match`.
    pub expect: &'static str,
    pub passed: bool,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Every case of a rule set.
#[derive(Debug, Default, serde::Serialize)]
pub struct Report {
    pub cases: Vec<CaseResult>,
    /// Rules with no cases at all.
    pub untested: Vec<String>,
}

impl Report {
    pub fn failed(&self) -> impl Iterator<Item = &CaseResult> {
        self.cases.iter().filter(|c| !c.passed)
    }
}

/// Runs every case of every loaded rule.
pub fn run(set: &RuleSet) -> Report {
    let mut report = Report::default();
    for info in set.rules() {
        let collection = set.collection();
        let cases = match info.kind {
            RuleKind::Detection => collection
                .rules
                .iter()
                .find(|r| r.id.as_deref() == Some(info.id.as_str()))
                .map(exemplars),
            RuleKind::Correlation => collection
                .correlations
                .iter()
                .find(|r| r.id.as_deref() == Some(info.id.as_str()))
                .map(correlation_exemplars),
        };
        let cases = match cases {
            None => continue,
            Some(Ok(cases)) => cases,
            Some(Err(shape)) => {
                report.cases.push(CaseResult {
                    file: info.file.clone(),
                    rule: info.id.clone(),
                    case: "rsigma.exemplars".into(),
                    expect: "match",
                    passed: false,
                    problem: Some(
                        shape
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join("; "),
                    ),
                });
                continue;
            }
        };
        if cases.is_empty() {
            report.untested.push(info.id.clone());
            continue;
        }
        let only = set
            .select(std::slice::from_ref(&info.id))
            .expect("a loaded rule selects");
        for case in cases {
            let outcome = run_case(&only, &info.id, &case);
            let expect = case.expect;
            let (passed, problem) = match outcome {
                Err(problem) => (false, Some(problem)),
                Ok(matched) => {
                    let passed = matched == (expect == Expect::Match);
                    let problem = (!passed).then(|| match expect {
                        Expect::Match => "the rule did not match".to_owned(),
                        Expect::NoMatch => "the rule matched".to_owned(),
                    });
                    (passed, problem)
                }
            };
            report.cases.push(CaseResult {
                file: info.file.clone(),
                rule: info.id.clone(),
                case: case.name.clone(),
                expect: expect.as_str(),
                passed,
                problem,
            });
        }
    }
    report
}

/// Whether the rule raised an alert on the case's events.
fn run_case(rules: &RuleSet, id: &str, case: &Exemplar) -> Result<bool, String> {
    let timed: Vec<(i64, &yaml_serde::Value)> = match &case.payload {
        ExemplarPayload::Event(event) => vec![(0, event)],
        ExemplarPayload::Sequence(events) => events
            .iter()
            .map(|t| (t.offset.seconds as i64, &t.event))
            .collect(),
    };
    let mut events = Vec::new();
    for (n, (offset, yaml)) in timed.into_iter().enumerate() {
        events
            .push(test_event(yaml, START_SECS + offset, n).map_err(|e| format!("event {n}: {e}"))?);
    }
    events.sort_by_key(|e| e.time);
    let mut detector = SigmaDetector::fixed(rules.clone(), 3600);
    let mut alerts = Vec::new();
    for event in &events {
        detector.observe(event, &mut alerts);
    }
    let wanted = Detector::sigma(id);
    Ok(alerts.iter().any(|a| a.detector == wanted))
}

/// The test event as the contract decodes it, defaults filled in.
fn test_event(yaml: &yaml_serde::Value, secs: i64, n: usize) -> Result<ToolCallEvent, String> {
    let mut json = serde_json::to_value(yaml).map_err(|e| e.to_string())?;
    let Value::Object(map) = &mut json else {
        return Err("is not a mapping of fields".into());
    };
    let time = DateTime::<Utc>::from_timestamp(START_SECS, 0).expect("a fixed time")
        + Duration::seconds(secs - START_SECS);
    map.entry("schema_version").or_insert(1.into());
    map.entry("event_id").or_insert(format!("test-{n}").into());
    map.entry("time")
        .or_insert(tooltrail_schemas::format_time(&time).into());
    map.entry("status").or_insert(200.into());
    for (field, value) in DEFAULTS {
        map.entry(*field).or_insert((*value).into());
    }
    let text = json.to_string();
    tooltrail_schemas::decode(text.as_bytes()).map_err(|e| {
        // The position is in JSON made from the YAML: of no use to the author.
        let message = e.to_string();
        match message.rfind(" at line ") {
            Some(at) => message[..at].to_owned(),
            None => message,
        }
    })
}
