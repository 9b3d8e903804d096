//! What each [`Shape`] knob does to the traffic, and that the default shape
//! leaves it alone.

use std::collections::{BTreeMap, BTreeSet};

use tooltrail_schemas::ToolCallEvent;

use super::*;
use crate::config::Shape;
use crate::label::{Drift, DriftKind, Intensity, Scenario};

fn run(cfg: SimConfig) -> (Vec<ToolCallEvent>, Vec<Incident>) {
    let mut sim = Simulation::new(cfg).expect("valid config");
    let events: Vec<ToolCallEvent> = sim.by_ref().collect();
    (events, sim.into_incidents())
}

/// Many incidents of every scenario, generated on their own (without the
/// normal traffic around them, which the knobs below do not touch).
fn incidents(shape: Shape) -> Vec<Incident> {
    let cfg = SimConfig {
        users: 300,
        days: 14,
        seed: 11,
        incident_rate: 150.0,
        shape,
        ..SimConfig::default()
    };
    cfg.validate().expect("valid config");
    let world = World::build(&cfg);
    let schedule = attack::plan(&world, cfg.incident_rate);
    let mut calls = Vec::new();
    schedule
        .values()
        .flatten()
        .map(|p| attack::generate(&world, p, &[], &mut calls))
        .collect()
}

fn span_s(i: &Incident) -> f64 {
    (i.end - i.start).as_seconds_f64()
}

/// Per scenario, the median of `f` over normal-intensity incidents.
fn medians(incidents: &[Incident], f: impl Fn(&Incident) -> f64) -> BTreeMap<Scenario, f64> {
    let mut by: BTreeMap<Scenario, Vec<f64>> = BTreeMap::new();
    for i in incidents
        .iter()
        .filter(|i| i.intensity == Intensity::Normal)
    {
        by.entry(i.scenario).or_default().push(f(i));
    }
    by.into_iter()
        .map(|(s, mut v)| {
            v.sort_by(f64::total_cmp);
            (s, v[v.len() / 2])
        })
        .collect()
}

fn heavy(shape: Shape) -> SimConfig {
    SimConfig {
        users: 80,
        days: 6,
        seed: 11,
        incident_rate: 60.0,
        shape,
        ..SimConfig::default()
    }
}

#[test]
fn default_shape_spelled_out_gives_the_same_traffic() {
    let spelled = Shape {
        attack_scale: 1.0,
        attack_pace: 1.0,
        rate_spread: 1.0,
        burstiness: 1.0,
        zones: 1.0,
        travel: 1.0,
        on_call: 1.0,
        adoption: 1.0,
    };
    let a = run(heavy(Shape::default()));
    let b = run(heavy(spelled));
    assert_eq!(a.0, b.0);
    assert_eq!(a.1, b.1);
}

#[test]
fn attack_scale_shrinks_normal_incidents_and_nothing_else() {
    let (full_events, full) = run(heavy(Shape::default()));
    let (reduced_events, reduced) = run(heavy(Shape {
        attack_scale: 0.33,
        ..Shape::default()
    }));
    assert_eq!(full.len(), reduced.len());
    // The same plan: incidents pair up by victim and scenario.
    let key = |i: &Incident| (i.scenario, i.tenant_id.clone(), i.user_id.clone());
    let reduced_by: BTreeMap<_, &Incident> = reduced.iter().map(|i| (key(i), i)).collect();
    for i in &full {
        let r = reduced_by[&key(i)];
        match i.intensity {
            Intensity::LowAndSlow => assert_eq!(i, r, "low-and-slow incidents stay as they are"),
            Intensity::Normal => assert!(
                r.event_ids.len() <= i.event_ids.len(),
                "{} grew from {} to {} events",
                i.scenario,
                i.event_ids.len(),
                r.event_ids.len()
            ),
        }
    }
    // Normal traffic is untouched: only incident events differ.
    let injected = |incidents: &[Incident]| -> BTreeSet<String> {
        incidents.iter().flat_map(|i| i.event_ids.clone()).collect()
    };
    let (a, b) = (injected(&full), injected(&reduced));
    let normal = |events: Vec<ToolCallEvent>, injected: &BTreeSet<String>| -> Vec<ToolCallEvent> {
        events
            .into_iter()
            .filter(|e| !injected.contains(&e.event_id))
            .collect()
    };
    assert!(normal(full_events, &a) == normal(reduced_events, &b));
}

#[test]
fn reduced_attack_scale_gives_smaller_incidents_of_every_scenario() {
    let size = |i: &Incident| i.event_ids.len() as f64;
    let full = medians(&incidents(Shape::default()), size);
    let reduced = medians(
        &incidents(Shape {
            attack_scale: 0.33,
            ..Shape::default()
        }),
        size,
    );
    assert_eq!(full.len(), Scenario::ALL.len(), "{full:?}");
    for (scenario, median) in &full {
        let r = reduced[scenario];
        assert!(r < *median, "{scenario}: {r} at 0.33, {median} at 1");
        assert!(
            r <= (median * 0.6).max(1.0),
            "{scenario}: {r} at 0.33, {median} at 1"
        );
    }
}

#[test]
fn slower_attack_pace_spreads_incidents_and_faster_packs_them() {
    let full = medians(&incidents(Shape::default()), span_s);
    let slow = medians(
        &incidents(Shape {
            attack_pace: 3.0,
            ..Shape::default()
        }),
        span_s,
    );
    for (scenario, median) in &full {
        if *median > 0.0 {
            assert!(
                slow[scenario] > median * 1.5,
                "{scenario}: {slow:?} vs {full:?}"
            );
        }
    }
    let fast = incidents(Shape {
        attack_pace: 0.02,
        ..Shape::default()
    });
    let probes: Vec<&Incident> = fast
        .iter()
        .filter(|i| i.scenario == Scenario::Probing && i.intensity == Intensity::Normal)
        .collect();
    assert!(!probes.is_empty());
    for probe in probes {
        // 2-15 minutes at pace 1.
        assert!(span_s(probe) <= 18.0, "{probe:?}");
    }
}

#[test]
fn paced_off_hours_sessions_stay_in_the_local_night() {
    let cfg = SimConfig {
        users: 300,
        days: 14,
        seed: 11,
        incident_rate: 150.0,
        shape: Shape {
            attack_pace: 3.0,
            ..Shape::default()
        },
        ..SimConfig::default()
    };
    let world = World::build(&cfg);
    let schedule = attack::plan(&world, cfg.incident_rate);
    let mut checked = 0;
    for p in schedule.values().flatten() {
        if p.scenario != Scenario::OffHours || p.intensity != Intensity::Normal {
            continue;
        }
        let mut calls = Vec::new();
        attack::generate(&world, p, &[], &mut calls);
        let tz = i64::from(world.users[p.user as usize].tz_min) * crate::call::MINUTE;
        for c in &calls {
            let local = (c.time + tz).rem_euclid(crate::call::DAY);
            assert!(local < 6 * crate::call::HOUR, "{local} into the day");
        }
        checked += 1;
    }
    assert!(checked > 0);
}

#[test]
fn exfiltration_is_both_a_fixed_burst_and_a_rise_over_the_users_own_rate() {
    let all = incidents(Shape::default());
    let exfil: Vec<&Incident> = all
        .iter()
        .filter(|i| i.scenario == Scenario::Exfiltration && i.intensity == Intensity::Normal)
        .collect();
    // The burst form reads 100 or more; the sustained one follows the user.
    assert!(exfil.iter().any(|i| i.event_ids.len() < 100), "{exfil:#?}");
    assert!(exfil.iter().any(|i| i.event_ids.len() >= 100), "{exfil:#?}");
    let sweeps = all
        .iter()
        .filter(|i| i.scenario == Scenario::Enumeration && i.intensity == Intensity::Normal);
    assert!(sweeps.clone().any(|i| i.event_ids.len() < 40));
    assert!(sweeps.clone().any(|i| i.event_ids.len() >= 40));
}

#[test]
fn rate_spread_widens_per_user_daily_volume() {
    let spread = |rate_spread: f64| {
        let sim = Simulation::new(SimConfig {
            users: 2000,
            shape: Shape {
                rate_spread,
                ..Shape::default()
            },
            ..SimConfig::default()
        })
        .expect("valid config");
        let mut v: Vec<f64> = sim.world.users.iter().map(|u| u.calls_per_day).collect();
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        (v[v.len() * 95 / 100] / v[v.len() * 5 / 100], mean)
    };
    let ((today, mean), (wide, wide_mean)) = (spread(1.0), spread(2.0));
    assert!(wide > today * 3.0, "p95/p5 {wide} against {today}");
    assert!(wide > 50.0, "two orders of magnitude, roughly: {wide}");
    // More unequal, not busier.
    let ratio = wide_mean / mean;
    assert!((0.8..1.25).contains(&ratio), "mean volume changed {ratio}x");
}

#[test]
fn burstier_traffic_has_longer_sessions_and_about_the_same_volume() {
    let sessions = |burstiness: f64| {
        let (events, _) = run(SimConfig {
            users: 150,
            days: 3,
            seed: 4,
            attack_days: Some(0),
            shape: Shape {
                burstiness,
                ..Shape::default()
            },
            ..SimConfig::default()
        });
        let ids: BTreeSet<&str> = events
            .iter()
            .filter_map(|e| e.session_id.as_deref())
            .collect();
        (events.len() as f64, events.len() as f64 / ids.len() as f64)
    };
    let (volume, per_session) = sessions(1.0);
    let (bursty_volume, bursty_per_session) = sessions(2.0);
    assert!(
        bursty_per_session > per_session * 1.6,
        "{bursty_per_session} calls per session against {per_session}"
    );
    let ratio = bursty_volume / volume;
    assert!((0.8..1.25).contains(&ratio), "volume changed {ratio}x");
}

fn drifts(shape: Shape) -> Vec<Drift> {
    let sim = Simulation::new(SimConfig {
        users: 1000,
        days: 28,
        seed: 1,
        shape,
        ..SimConfig::default()
    })
    .expect("valid config");
    sim.drifts().to_vec()
}

fn of(drifts: &[Drift], kind: DriftKind) -> Vec<&Drift> {
    drifts.iter().filter(|d| d.kind == kind).collect()
}

#[test]
fn drift_knobs_multiply_their_drift_and_keep_todays() {
    let today = drifts(Shape::default());
    let more = drifts(Shape {
        travel: 3.0,
        on_call: 2.0,
        adoption: 3.0,
        ..Shape::default()
    });
    for kind in [
        DriftKind::Travel,
        DriftKind::IpChange,
        DriftKind::ClientChange,
        DriftKind::TeamAdoption,
    ] {
        let (before, after) = (of(&today, kind), of(&more, kind));
        assert!(after.len() > before.len() * 2, "{kind:?}: {after:#?}");
        // A sweep cell adds drift to today's; it does not redraw it.
        assert!(before.iter().all(|d| after.contains(d)), "{kind:?}");
    }
    // Two engineers at once wherever the rota has two.
    let (before, after) = (
        of(&today, DriftKind::OnCallWeek).len(),
        of(&more, DriftKind::OnCallWeek).len(),
    );
    assert!(
        after > before * 3 / 2 && after <= before * 2,
        "{after} against {before}"
    );
    // Nothing else moves: the same people join mid-period.
    assert_eq!(
        of(&today, DriftKind::NewUser),
        of(&more, DriftKind::NewUser)
    );

    let fewer = drifts(Shape {
        travel: 0.2,
        ..Shape::default()
    });
    let (before, after) = (of(&today, DriftKind::Travel), of(&fewer, DriftKind::Travel));
    assert!(
        after.len() < before.len(),
        "{} against {}",
        after.len(),
        before.len()
    );
    assert!(after.iter().all(|d| before.contains(d)));
}

#[test]
fn zones_move_people_and_nothing_else() {
    let world = |zones: f64| {
        World::build(&SimConfig {
            users: 1000,
            days: 28,
            shape: Shape {
                zones,
                ..Shape::default()
            },
            ..SimConfig::default()
        })
    };
    let (today, more) = (world(1.0), world(3.0));
    let mut moved = 0;
    for (a, b) in today.users.iter().zip(&more.users) {
        assert_eq!(
            (&a.id, a.role, a.calls_per_day, a.join_day),
            (&b.id, b.role, b.calls_per_day, b.join_day)
        );
        moved += usize::from(a.tz_min != b.tz_min);
    }
    assert!(moved > 100, "{moved}");
    assert_eq!(today.drifts, more.drifts);
}

#[test]
fn invalid_knobs_are_refused_with_the_knob_named() {
    let err = Simulation::new(heavy(Shape {
        attack_pace: f64::NAN,
        ..Shape::default()
    }))
    .expect_err("refused");
    assert!(
        err.to_string().starts_with("shape.attack_pace must be"),
        "{err}"
    );
}
