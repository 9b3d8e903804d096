//! Behaviour of the whole simulation.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Datelike;
use tooltrail_schemas::{ToolCallEvent, decode};

use super::*;
use crate::label::{DriftKind, Intensity, Scenario};

fn config(users: usize, days: u32, seed: u64) -> SimConfig {
    SimConfig {
        users,
        days,
        seed,
        ..SimConfig::default()
    }
}

fn run(cfg: SimConfig) -> (Vec<ToolCallEvent>, Vec<Incident>) {
    let mut sim = Simulation::new(cfg).expect("valid config");
    let events: Vec<ToolCallEvent> = sim.by_ref().collect();
    (events, sim.into_incidents())
}

/// A short run with many incidents, so that every scenario shows up.
fn attack_heavy() -> SimConfig {
    SimConfig {
        users: 80,
        days: 6,
        seed: 11,
        incident_rate: 60.0,
        ..SimConfig::default()
    }
}

#[test]
fn every_event_passes_the_contract_decoder_unchanged() {
    let (events, _) = run(config(300, 3, 5));
    assert!(events.len() > 10_000, "only {} events", events.len());
    for event in &events {
        let json = event.to_json();
        let decoded = decode(json.as_bytes()).unwrap_or_else(|e| panic!("{e}: {json}"));
        assert_eq!(&decoded, event, "{json}");
    }
}

#[test]
fn attack_events_pass_the_contract_decoder() {
    let (events, incidents) = run(attack_heavy());
    let injected: BTreeSet<&str> = incidents
        .iter()
        .flat_map(|i| i.event_ids.iter().map(String::as_str))
        .collect();
    let mut checked = 0;
    for event in events
        .iter()
        .filter(|e| injected.contains(e.event_id.as_str()))
    {
        let json = event.to_json();
        assert!(decode(json.as_bytes()).is_ok(), "{json}");
        checked += 1;
    }
    assert_eq!(checked, injected.len());
}

#[test]
fn same_seed_gives_byte_identical_output() {
    let a = run(SimConfig {
        seed: 3,
        ..attack_heavy()
    });
    let b = run(SimConfig {
        seed: 3,
        ..attack_heavy()
    });
    assert_eq!(a.0.len(), b.0.len());
    assert!(
        a.0.iter()
            .zip(&b.0)
            .all(|(x, y)| x.to_json() == y.to_json())
    );
    let labels = |i: &[Incident]| serde_json::to_string(i).expect("serializes");
    assert_eq!(labels(&a.1), labels(&b.1));
}

#[test]
fn different_seeds_give_different_populations() {
    let users = |seed| {
        let (events, _) = run(config(50, 1, seed));
        events
            .into_iter()
            .map(|e| e.kafka_key())
            .collect::<BTreeSet<_>>()
    };
    assert_ne!(users(1), users(2));
}

#[test]
fn events_come_out_sorted_by_time() {
    let (events, _) = run(attack_heavy());
    assert!(events.windows(2).all(|w| w[0].time <= w[1].time));
}

#[test]
fn event_ids_are_unique() {
    let (events, _) = run(attack_heavy());
    let ids: BTreeSet<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    assert_eq!(ids.len(), events.len());
}

#[test]
fn labels_list_exactly_injected_events_of_the_labelled_user() {
    let (events, incidents) = run(attack_heavy());
    assert!(!incidents.is_empty());
    let by_id: BTreeMap<&str, &ToolCallEvent> =
        events.iter().map(|e| (e.event_id.as_str(), e)).collect();
    let mut all = BTreeSet::new();
    for incident in &incidents {
        assert!(!incident.event_ids.is_empty(), "{incident:?}");
        for id in &incident.event_ids {
            let event = by_id
                .get(id.as_str())
                .unwrap_or_else(|| panic!("{id} not emitted"));
            assert_eq!(event.tenant_id, incident.tenant_id);
            assert_eq!(event.user_id, incident.user_id);
            assert!(incident.start <= event.time && event.time <= incident.end);
            assert!(all.insert(id.as_str()), "{id} labelled twice");
        }
    }
}

#[test]
fn every_scenario_and_intensity_is_generated_when_incidents_are_plentiful() {
    let (_, incidents) = run(attack_heavy());
    let scenarios: BTreeSet<Scenario> = incidents.iter().map(|i| i.scenario).collect();
    assert_eq!(scenarios, Scenario::ALL.into_iter().collect());
    let intensities: BTreeSet<Intensity> = incidents.iter().map(|i| i.intensity).collect();
    assert_eq!(intensities.len(), 2);
}

#[test]
fn low_and_slow_incidents_never_burst() {
    let (events, incidents) = run(attack_heavy());
    let time: BTreeMap<&str, i64> = events
        .iter()
        .map(|e| (e.event_id.as_str(), e.time_micros()))
        .collect();
    // The most injected events in any ten minutes.
    let peak = |incident: &Incident| {
        let mut t: Vec<i64> = incident
            .event_ids
            .iter()
            .map(|id| time[id.as_str()])
            .collect();
        t.sort_unstable();
        let window = 10 * 60 * 1_000_000;
        (0..t.len())
            .map(|i| t[i..].iter().take_while(|&&x| x - t[i] < window).count())
            .max()
    };
    let mut bursts = Vec::new();
    for incident in &incidents {
        let peak = peak(incident).unwrap_or(0);
        match incident.intensity {
            Intensity::LowAndSlow => assert!(peak <= 6, "{peak} in 10 minutes: {incident:?}"),
            Intensity::Normal => bursts.push(peak),
        }
    }
    bursts.sort_unstable();
    assert!(bursts[bursts.len() / 2] > 6, "{bursts:?}");
}

#[test]
fn every_scenario_is_planned_for_a_thousand_users_over_four_weeks() {
    let sim = Simulation::new(config(1000, 28, 1)).expect("valid config");
    let planned: Vec<_> = sim.schedule.values().flatten().collect();
    let scenarios: BTreeSet<Scenario> = planned.iter().map(|p| p.scenario).collect();
    assert_eq!(scenarios, Scenario::ALL.into_iter().collect());
    // A few per 100 users per week of window: 3 x 10 x 2 = 60.
    assert!((40..=80).contains(&planned.len()), "{}", planned.len());
}

#[test]
fn attacks_stay_inside_the_attack_window() {
    let cfg = SimConfig {
        attack_days: Some(2),
        ..attack_heavy()
    };
    let mut sim = Simulation::new(cfg).expect("valid config");
    let window = sim.attack_window();
    let events: BTreeMap<String, ToolCallEvent> =
        sim.by_ref().map(|e| (e.event_id.clone(), e)).collect();
    assert!(!sim.incidents().is_empty());
    for incident in sim.incidents() {
        assert!(
            window.contains(&incident.start) && window.contains(&incident.end),
            "{incident:?}"
        );
        for id in &incident.event_ids {
            assert!(window.contains(&events[id].time));
        }
    }
}

#[test]
fn no_attacks_without_a_window() {
    let cfg = SimConfig {
        attack_days: Some(0),
        ..attack_heavy()
    };
    let (_, incidents) = run(cfg);
    assert!(incidents.is_empty());
}

#[test]
fn weekends_are_quieter_than_weekdays() {
    let mut sim = Simulation::new(config(200, 7, 9)).expect("valid config");
    let mut per_day = [0usize; 7];
    for e in sim.by_ref() {
        per_day[e.time.weekday().num_days_from_monday() as usize] += 1;
    }
    let weekend = (per_day[5] + per_day[6]) as f64 / 2.0;
    // Tuesday to Thursday, away from the weekend's time-zone edges.
    let weekday = (per_day[1] + per_day[2] + per_day[3]) as f64 / 3.0;
    assert!(
        weekend < weekday * 0.4,
        "weekend {weekend}, weekday {weekday}"
    );
}

#[test]
fn working_day_volume_per_user_is_in_the_target_range() {
    // Tuesday to Thursday, away from the weekend's time-zone edges.
    let start = crate::config::default_start() + chrono::Duration::days(1);
    let cfg = SimConfig {
        users: 300,
        days: 3,
        seed: 4,
        start,
        attack_days: Some(0),
        ..SimConfig::default()
    };
    let (events, _) = run(cfg);
    let per_user_day = events.len() as f64 / 300.0 / 3.0;
    assert!((50.0..=150.0).contains(&per_user_day), "{per_user_day}");
}

#[test]
fn resource_uris_name_the_tenant_except_in_cross_tenant_attacks() {
    let (events, incidents) = run(attack_heavy());
    let cross: BTreeSet<&str> = incidents
        .iter()
        .filter(|i| i.scenario == Scenario::CrossTenant)
        .flat_map(|i| i.event_ids.iter().map(String::as_str))
        .collect();
    let mut foreign = 0;
    for e in &events {
        let Some(uri) = &e.resource else { continue };
        let (_, rest) = uri.split_once("://").unwrap_or_else(|| panic!("{uri}"));
        let (tenant, path) = rest.split_once('/').unwrap_or_else(|| panic!("{uri}"));
        assert!(!path.is_empty(), "{uri}");
        if tenant != e.tenant_id {
            assert!(
                cross.contains(e.event_id.as_str()),
                "{uri} for {}",
                e.tenant_id
            );
            foreign += 1;
        }
    }
    assert_eq!(foreign, cross.len());
}

#[test]
fn resource_reads_carry_a_resource_and_no_tool() {
    let (events, _) = run(config(100, 2, 2));
    let mut reads = 0;
    for e in &events {
        match e.method.as_str() {
            "resources/read" => {
                reads += 1;
                assert!(e.resource.is_some() && e.tool.is_none(), "{}", e.to_json());
            }
            "tools/call" => assert!(e.tool.is_some()),
            _ => assert!(e.tool.is_none()),
        }
    }
    let share = reads as f64 / events.len() as f64;
    assert!((0.03..0.25).contains(&share), "{share}");
}

#[test]
fn denials_are_consistent_with_decision_and_status() {
    let (events, _) = run(attack_heavy());
    let mut denied = 0;
    for e in &events {
        match e.decision {
            tooltrail_schemas::Decision::Deny => {
                denied += 1;
                assert!(matches!(e.status, 401 | 403 | 429), "{}", e.to_json());
                assert!(e.policy_id.is_some() && e.reason.is_some());
            }
            tooltrail_schemas::Decision::Allow => {
                assert!(!matches!(e.status, 401 | 403 | 429), "{}", e.to_json());
                assert!(e.policy_id.is_none());
            }
        }
        if e.status == 400 {
            assert_eq!(e.jsonrpc_error_code, Some(-32602));
            assert_eq!(e.error_type.as_deref(), Some("-32602"));
        }
    }
    assert!(denied > 0);
}

#[test]
fn benign_drift_is_listed_and_not_labelled() {
    let sim = Simulation::new(config(1000, 28, 1)).expect("valid config");
    let kinds: BTreeSet<DriftKind> = sim.drifts().iter().map(|d| d.kind).collect();
    for kind in [
        DriftKind::TeamAdoption,
        DriftKind::IpChange,
        DriftKind::ClientChange,
        DriftKind::Travel,
        DriftKind::OnCallWeek,
        DriftKind::NewUser,
    ] {
        assert!(kinds.contains(&kind), "no {kind:?}");
    }
}

#[test]
fn new_users_have_no_events_before_joining() {
    let cfg = config(300, 5, 8);
    let mut sim = Simulation::new(cfg).expect("valid config");
    let joins: BTreeMap<(String, String), chrono::DateTime<chrono::Utc>> = sim
        .drifts()
        .iter()
        .filter(|d| d.kind == DriftKind::NewUser)
        .map(|d| ((d.tenant_id.clone(), d.user_ids[0].clone()), d.start))
        .collect();
    assert!(!joins.is_empty());
    for e in sim.by_ref() {
        if let Some(join) = joins.get(&(e.tenant_id.clone(), e.user_id.clone())) {
            assert!(e.time >= *join, "{} before joining at {join}", e.to_json());
        }
    }
}

#[test]
fn pending_calls_stay_small_compared_with_a_day() {
    let mut sim = Simulation::new(attack_heavy()).expect("valid config");
    for _ in 0..4 {
        sim.advance_day();
        assert!(
            sim.pending.len() * 10 < sim.ready.len().max(100),
            "{} pending",
            sim.pending.len()
        );
    }
}
