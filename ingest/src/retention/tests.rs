//! Retention against real lakes in temporary directories, with `now` injected
//! and events dated in the past (the lake partitions by event time).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use tooltrail_schemas::lake::Source;

use super::apply::apply_with;
use super::config::{LegalHoldConfig, TenantRetention};
use super::scan::read_tenants;
use super::*;
use crate::batch::{Pending, TimeWindow};
use crate::lake::Lake;
use crate::lake::log::{LogEntry, Operation};
use crate::metrics::Metrics;

const DAY: u64 = 86_400;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * DAY)
}

fn config(events_days: u64) -> RetentionConfig {
    RetentionConfig {
        events: days(events_days),
        ..RetentionConfig::default()
    }
}

/// Commits one transaction of `n` events per `(tenant, n)` at `time`
/// (all in one file per hour), received a minute later.
fn commit_events(lake: &mut Lake, time: &str, tenants: &[(&str, usize)]) -> LogEntry {
    let at: DateTime<Utc> = DateTime::parse_from_rfc3339(time).unwrap().into();
    let mut pending = Pending::new(TimeWindow {
        max_age: Duration::from_secs(20 * 365 * DAY),
        max_future: Duration::from_secs(3600),
    });
    let mut line_no = 0;
    for (tenant, n) in tenants {
        for i in 0..*n {
            line_no += 1;
            let line = format!(
                r#"{{"schema_version":1,"event_id":"{tenant}-{time}-{i}","time":"{time}","tenant_id":"{tenant}","user_id":"u{}","server":"s","method":"tools/call","tool":"t","decision":"allow","status":200}}"#,
                i % 3
            );
            let source = Source::File {
                path: "t",
                line: line_no,
            };
            pending
                .push(line.as_bytes(), at + chrono::Duration::minutes(1), source)
                .unwrap();
        }
    }
    pending
        .commit_to(lake, &Metrics::register(&mut Default::default()), "file")
        .unwrap()
        .unwrap()
        .0
}

/// Rows per tenant in the visible files of a table, as a glob reader sees them.
fn rows(root: &Path, table: Table) -> BTreeMap<Option<String>, u64> {
    let mut out = BTreeMap::new();
    for path in visible(root, table) {
        for (tenant, n) in read_tenants(table, &path).unwrap() {
            if n > 0 {
                *out.entry(tenant).or_default() += n;
            }
        }
    }
    out
}

fn visible(root: &Path, table: Table) -> Vec<PathBuf> {
    crate::lake::walk(&root.join(table.name()))
        .unwrap()
        .into_iter()
        .filter(|p| {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            !rel.split('/').any(|part| part.starts_with('.'))
                && rel.ends_with(&format!(".{}", table.extension()))
        })
        .collect()
}

fn tenant(t: &str) -> Option<String> {
    Some(t.to_owned())
}

fn last_entry(lake: &mut Lake) -> LogEntry {
    let seq = lake.refresh().unwrap().last_seq;
    let path = lake.root().join(format!("_tooltrail/log/{seq:020}.json"));
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

fn never() -> bool {
    false
}

#[test]
fn partitions_past_retention_are_deleted_whole_and_recorded_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut lake = Lake::open(dir.path(), 3).unwrap();
    let old = commit_events(
        &mut lake,
        "2026-09-01T09:15:00Z",
        &[("acme", 5), ("globex", 3)],
    );
    commit_events(&mut lake, "2026-11-20T09:15:00Z", &[("acme", 4)]);
    let mut retention = Retention::new(dir.path(), &config(30));

    // A dry run is the plan alone: the same plan twice, nothing changed.
    let plan = retention.plan(&mut lake, now()).unwrap();
    assert_eq!(plan, retention.plan(&mut lake, now()).unwrap());
    assert_eq!(plan.deletions.len(), 1, "{plan:#?}");
    assert!(
        plan.rewrites.is_empty() && plan.kept.is_empty(),
        "{plan:#?}"
    );
    let deletion = &plan.deletions[0];
    assert_eq!(deletion.partition.dir, "events/dt=2026-09-01/hour=09");
    assert_eq!(deletion.rows, 8);
    assert_eq!(
        deletion.tenants,
        vec![(tenant("acme"), 5), (tenant("globex"), 3)]
    );
    assert_eq!(deletion.bytes, old.added[0].bytes);
    assert_eq!(plan.young.get(&Table::Events), Some(&1));
    assert_eq!(rows(dir.path(), Table::Events).values().sum::<u64>(), 12);

    let summary = retention.apply(&mut lake, &plan, &never).unwrap();
    assert_eq!(summary.deleted.len(), 1, "{summary:#?}");
    assert_eq!(summary.rows_removed(), 8);
    assert_eq!(
        rows(dir.path(), Table::Events),
        BTreeMap::from([(tenant("acme"), 4)])
    );
    assert!(
        !dir.path().join("events/dt=2026-09-01").exists(),
        "the emptied day directory is gone"
    );
    let entry = last_entry(&mut lake);
    assert_eq!(entry.operation, Operation::Retention);
    assert_eq!(entry.seq, summary.deleted[0].seq);
    assert_eq!(entry.removed, vec![old.added[0].path.clone()]);
    assert!(entry.added.is_empty());
    // The log replays cleanly and no longer holds the file.
    let reopened = Lake::open(dir.path(), 3).unwrap();
    assert!(!reopened.state().live.contains_key(&old.added[0].path));
    assert_eq!(reopened.state().live.len(), 1);
    // Nothing left to do.
    assert!(retention.plan(&mut lake, now()).unwrap().is_empty());
}

#[test]
fn a_shorter_tenant_override_removes_only_that_tenants_rows_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let mut lake = Lake::open(&root, 3).unwrap();
    let hour = "2026-10-20T09:30:00Z";
    commit_events(&mut lake, hour, &[("acme", 40), ("globex", 25)]); // mixed
    let globex_only = commit_events(&mut lake, hour, &[("globex", 10)]);
    commit_events(&mut lake, hour, &[("acme", 7)]);
    let mut config = config(365);
    config.tenants.insert(
        "globex".into(),
        TenantRetention {
            events: Some(days(7)),
            ..TenantRetention::default()
        },
    );
    let mut retention = Retention::new(&root, &config);
    let plan = retention.plan(&mut lake, now()).unwrap();
    assert!(plan.deletions.is_empty(), "{plan:#?}");
    assert_eq!(plan.rewrites.len(), 1);
    let rewrite = &plan.rewrites[0];
    assert_eq!(rewrite.removed, vec![(tenant("globex"), 35)]);
    assert_eq!(rewrite.drop.len(), 1);
    assert_eq!(rewrite.drop[0].path, globex_only.added[0].path);
    assert_eq!(rewrite.rewrite.len(), 1);
    assert_eq!(rewrite.rows_kept, 47);
    assert_eq!(plan.kept.len(), 1);
    assert!(
        plan.kept[0]
            .reason
            .to_string()
            .starts_with("within retention (365d")
    );

    // A reader listing the hour over and over sees acme's 47 rows every
    // time, never twice and never a gap.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (root, stop, reads) = (root.clone(), Arc::clone(&stop), Arc::clone(&reads));
        std::thread::spawn(move || {
            let hour_dir = root.join("events/dt=2026-10-20/hour=09");
            let mut wrong = Vec::new();
            while !stop.load(Ordering::Relaxed) || reads.load(Ordering::Relaxed) == 0 {
                let Ok(list) = fs::read_dir(&hour_dir) else {
                    continue;
                };
                let mut acme = 0;
                let mut ok = true;
                for entry in list.flatten() {
                    let path = entry.path();
                    if path.extension().is_some_and(|e| e == "parquet") {
                        // A file swapped out between listing and reading is an
                        // error the reader retries, never a silent miss.
                        match read_tenants(Table::Events, &path) {
                            Ok(t) => {
                                acme += t
                                    .iter()
                                    .filter(|(t, _)| t.as_deref() == Some("acme"))
                                    .map(|(_, n)| n)
                                    .sum::<u64>()
                            }
                            Err(_) => ok = false,
                        }
                    }
                }
                if ok {
                    reads.fetch_add(1, Ordering::Relaxed);
                    if acme != 47 {
                        wrong.push(acme);
                    }
                }
            }
            wrong
        })
    };
    let summary = retention.apply(&mut lake, &plan, &never).unwrap();
    stop.store(true, Ordering::Relaxed);
    let wrong = reader.join().unwrap();
    assert!(wrong.is_empty(), "a reader saw acme rows {wrong:?}");
    assert!(reads.load(Ordering::Relaxed) >= 1);

    assert_eq!(summary.rewritten.len(), 1, "{summary:#?}");
    assert_eq!(summary.rows_removed(), 35);
    assert_eq!(
        rows(&root, Table::Events),
        BTreeMap::from([(tenant("acme"), 47)])
    );
    let entry = last_entry(&mut lake);
    assert_eq!(entry.operation, Operation::Retention);
    assert_eq!(entry.removed.len(), 2);
    assert_eq!(entry.added.len(), 1);
    let added = &entry.added[0];
    assert_eq!(added.rows, 40);
    let bytes = fs::read(root.join(&added.path)).unwrap();
    use sha2::Digest;
    assert_eq!(hex::encode(sha2::Sha256::digest(&bytes)), added.sha256);
    // The rewritten file keeps the lake's sort order and says where it came from.
    let reader = ::parquet::file::reader::SerializedFileReader::new(
        fs::File::open(root.join(&added.path)).unwrap(),
    )
    .unwrap();
    use ::parquet::file::reader::FileReader;
    let kv = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .unwrap()
        .clone();
    assert!(kv.iter().any(|e| e.key == "tooltrail.rewritten_from"));
    assert_eq!(
        reader
            .metadata()
            .row_group(0)
            .sorting_columns()
            .map(|s| s.len()),
        Some(3)
    );
    let reopened = Lake::open(&root, 3).unwrap();
    assert_eq!(
        reopened.state().live.values().map(|f| f.rows).sum::<u64>(),
        47
    );
}

fn hold(id: &str, tenant: &str, from: Option<&str>, to: Option<&str>) -> LegalHoldConfig {
    LegalHoldConfig {
        id: id.into(),
        tenant: tenant.into(),
        from: from.map(str::to_owned),
        to: to.map(str::to_owned),
        reason: "litigation 2026-114".into(),
    }
}

#[test]
fn a_legal_hold_keeps_a_tenants_data_past_retention_and_says_which_and_why() {
    let dir = tempfile::tempdir().unwrap();
    let mut lake = Lake::open(dir.path(), 3).unwrap();
    commit_events(&mut lake, "2026-01-10T03:00:00Z", &[("acme", 6)]);
    commit_events(&mut lake, "2026-01-10T03:00:00Z", &[("globex", 4)]);
    let mut config = config(30);
    config
        .legal_holds
        .push(hold("case-114", "acme", None, None));
    let mut retention = Retention::new(dir.path(), &config);
    let plan = retention.plan(&mut lake, now()).unwrap();
    assert_eq!(plan.rewrites.len(), 1, "{plan:#?}");
    assert_eq!(plan.rewrites[0].removed, vec![(tenant("globex"), 4)]);
    assert_eq!(plan.kept.len(), 1);
    let kept = &plan.kept[0];
    assert_eq!((kept.tenant.as_deref(), kept.rows), (Some("acme"), 6));
    assert_eq!(
        kept.reason.to_string(),
        "legal hold case-114 on tenant acme (all time): litigation 2026-114"
    );
    retention.apply(&mut lake, &plan, &never).unwrap();
    assert_eq!(
        rows(dir.path(), Table::Events),
        BTreeMap::from([(tenant("acme"), 6)])
    );
}

#[test]
fn a_hold_with_a_time_range_protects_only_that_range_and_its_removal_lets_the_next_run_delete() {
    let dir = tempfile::tempdir().unwrap();
    let mut lake = Lake::open(dir.path(), 3).unwrap();
    commit_events(&mut lake, "2026-01-10T03:00:00Z", &[("acme", 2)]);
    commit_events(&mut lake, "2026-03-10T03:00:00Z", &[("acme", 3)]);
    let mut retention = Retention::new(dir.path(), &config(30));
    let new = NewHold {
        tenant: "acme".into(),
        from: Some("2026-02-01".into()),
        to: Some("2026-03-31".into()),
        reason: "regulator request".into(),
    };
    let set = retention.holds().add(new, "root", now()).unwrap();
    let plan = retention.plan(&mut lake, now()).unwrap();
    let deleted: Vec<&str> = plan
        .deletions
        .iter()
        .map(|d| d.partition.dir.as_str())
        .collect();
    assert_eq!(deleted, ["events/dt=2026-01-10/hour=03"]);
    assert_eq!(plan.kept.len(), 1);
    assert_eq!(plan.kept[0].partition.dir, "events/dt=2026-03-10/hour=03");
    assert!(
        plan.kept[0].reason.to_string().contains(&set.id),
        "{}",
        plan.kept[0].reason
    );
    retention.apply(&mut lake, &plan, &never).unwrap();
    assert_eq!(
        rows(dir.path(), Table::Events),
        BTreeMap::from([(tenant("acme"), 3)])
    );

    retention.holds().remove(&set.id).unwrap();
    let plan = retention.plan(&mut lake, now()).unwrap();
    assert_eq!(plan.deletions.len(), 1);
    retention.apply(&mut lake, &plan, &never).unwrap();
    assert!(rows(dir.path(), Table::Events).is_empty());
}

#[test]
fn a_hold_set_after_planning_stops_the_deletion_it_covers() {
    let dir = tempfile::tempdir().unwrap();
    let mut lake = Lake::open(dir.path(), 3).unwrap();
    commit_events(&mut lake, "2026-01-10T03:00:00Z", &[("acme", 2)]);
    let mut retention = Retention::new(dir.path(), &config(30));
    let plan = retention.plan(&mut lake, now()).unwrap();
    assert_eq!(plan.deletions.len(), 1);
    let new = NewHold {
        tenant: "acme".into(),
        reason: "late notice".into(),
        ..NewHold::default()
    };
    retention.holds().add(new, "root", now()).unwrap();
    let summary = retention.apply(&mut lake, &plan, &never).unwrap();
    assert!(summary.deleted.is_empty());
    assert_eq!(summary.skipped.len(), 1);
    assert!(
        summary.skipped[0].why.contains("late notice"),
        "{summary:#?}"
    );
    assert_eq!(rows(dir.path(), Table::Events).values().sum::<u64>(), 2);
}

fn write_ndjson(root: &Path, rel: &str, lines: &[String]) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(
        path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
}

fn alert(id: &str, tenant: &str, time: &str) -> String {
    format!(
        r#"{{"alert_version":1,"alert_id":"{id}","time":"{time}","tenant_id":"{tenant}","repeats":0}}"#
    )
}

/// Alerts on a day past 365 days (acme) and on a day acme shares with globex.
fn write_old_alerts(root: &Path) {
    write_ndjson(
        root,
        "alerts/dt=2025-10-01/part-1-1.ndjson",
        &[alert("a1", "acme", "2025-10-01T10:00:00Z")],
    );
    write_ndjson(
        root,
        "alerts/dt=2026-09-01/part-2-1.ndjson",
        &[
            alert("a2", "acme", "2026-09-01T10:00:00Z"),
            alert("a3", "globex", "2026-09-01T11:00:00Z"),
        ],
    );
}

fn audit(id: &str, time: &str) -> String {
    format!(
        r#"{{"query_id":"{id}","phase":"start","time":"{time}","principal":"root","sql":"select 1"}}"#
    )
}

#[test]
fn alerts_and_query_audit_partitions_are_deleted_per_their_own_retention() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut lake = Lake::open(root, 3).unwrap();
    // Alerts: one day past 365 days, one mixed day with a 30-day tenant.
    write_old_alerts(root);
    write_ndjson(
        root,
        "alerts/dt=2026-09-01/part-2-2.ndjson",
        &[alert("a4", "globex", "2026-09-01T12:00:00Z")],
    );
    // The query audit: 8 and 2 years old; kept 7 years.
    write_ndjson(
        root,
        "query_audit/dt=2018-11-01/part-1-7.ndjson",
        &[
            audit("q1", "2018-11-01T00:00:00Z"),
            audit("q1", "2018-11-01T00:00:01Z"),
        ],
    );
    write_ndjson(
        root,
        "query_audit/dt=2024-11-01/part-1-7.ndjson",
        &[audit("q2", "2024-11-01T00:00:00Z")],
    );
    let mut config = RetentionConfig::default();
    config.tenants.insert(
        "globex".into(),
        TenantRetention {
            alerts: Some(days(30)),
            ..TenantRetention::default()
        },
    );
    assert!(config.validate().is_empty(), "{:?}", config.validate());
    let mut retention = Retention::new(root, &config);
    let plan = retention.plan(&mut lake, now()).unwrap();
    let deleted: Vec<&str> = plan
        .deletions
        .iter()
        .map(|d| d.partition.dir.as_str())
        .collect();
    assert_eq!(
        deleted,
        ["alerts/dt=2025-10-01", "query_audit/dt=2018-11-01"]
    );
    assert_eq!(plan.deletions[1].rows, 2);
    assert_eq!(plan.rewrites.len(), 1);
    assert_eq!(plan.rewrites[0].removed, vec![(tenant("globex"), 2)]);
    let summary = retention.apply(&mut lake, &plan, &never).unwrap();
    assert_eq!(
        (summary.deleted.len(), summary.rewritten.len()),
        (2, 1),
        "{summary:#?}"
    );

    assert_eq!(
        rows(root, Table::Alerts),
        BTreeMap::from([(tenant("acme"), 1)])
    );
    assert_eq!(rows(root, Table::QueryAudit), BTreeMap::from([(None, 1)]));
    assert!(!root.join("query_audit/dt=2018-11-01").exists());
    // Every deletion is in the log, though these tables are otherwise not.
    let entries: Vec<LogEntry> = (1..=lake.refresh().unwrap().last_seq)
        .map(|seq| {
            let path = root.join(format!("_tooltrail/log/{seq:020}.json"));
            serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
        })
        .collect();
    let removed: Vec<&str> = entries
        .iter()
        .flat_map(|e| e.removed.iter().map(String::as_str))
        .collect();
    assert_eq!(
        removed,
        [
            "alerts/dt=2025-10-01/part-1-1.ndjson",
            "query_audit/dt=2018-11-01/part-1-7.ndjson",
            "alerts/dt=2026-09-01/part-2-1.ndjson",
            "alerts/dt=2026-09-01/part-2-2.ndjson",
        ]
    );
    assert!(entries.iter().all(|e| e.operation == Operation::Retention));
    let rewritten = &entries[2].added[0];
    assert_eq!((rewritten.table.as_str(), rewritten.rows), ("alerts", 1));
    let text = fs::read_to_string(root.join(&rewritten.path)).unwrap();
    assert!(
        text.contains(r#""alert_id":"a2""#) && !text.contains("globex"),
        "{text}"
    );
}

#[test]
fn the_query_audit_must_outlive_every_other_retention() {
    let mut config = RetentionConfig::default();
    assert!(config.validate().is_empty());
    config.tenants.insert(
        "acme".into(),
        TenantRetention {
            events: Some(days(10 * 365)),
            ..TenantRetention::default()
        },
    );
    let issues = config.validate();
    assert_eq!(issues.len(), 1, "{issues:?}");
    assert_eq!(issues[0].0, "retention.query_audit");
    assert!(
        issues[0].1.contains("retention.tenants.acme.events"),
        "{}",
        issues[0].1
    );
    let short = RetentionConfig {
        events: Duration::from_secs(60),
        ..RetentionConfig::default()
    };
    assert_eq!(short.validate()[0].0, "retention.events");
}

#[test]
fn a_crash_after_the_log_entry_is_finished_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut lake = Lake::open(root, 3).unwrap();
    commit_events(&mut lake, "2026-01-10T03:00:00Z", &[("acme", 2)]);
    commit_events(
        &mut lake,
        "2026-01-11T03:00:00Z",
        &[("acme", 2), ("globex", 2)],
    );
    write_ndjson(
        root,
        "alerts/dt=2024-10-01/part-1-1.ndjson",
        &[alert("a1", "acme", "2024-10-01T10:00:00Z")],
    );
    let mut config = config(30);
    config.tenants.insert(
        "acme".into(),
        TenantRetention {
            events: Some(days(300)),
            ..TenantRetention::default()
        },
    );
    // Both hours are over 300 days old: every row is due.
    let mut retention = Retention::new(root, &config);
    let plan = retention.plan(&mut lake, now()).unwrap();
    assert_eq!(
        (plan.deletions.len(), plan.rewrites.len()),
        (3, 0),
        "{plan:#?}"
    );
    let holds = HoldStore::open(root, &config);
    let summary = apply_with(&mut lake, &plan, &holds, &never, false).unwrap();
    assert_eq!(summary.deleted.len(), 3);
    assert_eq!(
        rows(root, Table::Events).values().sum::<u64>(),
        6,
        "committed, not yet finished"
    );
    assert_eq!(rows(root, Table::Alerts).values().sum::<u64>(), 1);
    drop(lake);

    let mut lake = Lake::open(root, 3).unwrap();
    assert!(rows(root, Table::Events).is_empty());
    assert!(rows(root, Table::Alerts).is_empty());
    assert!(lake.state().live.is_empty());
    // Finishing twice is harmless, and there is nothing left to plan.
    drop(Lake::open(root, 3).unwrap());
    assert!(retention.plan(&mut lake, now()).unwrap().is_empty());
}

#[test]
fn a_rewrite_interrupted_after_its_log_entry_is_swapped_in_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut lake = Lake::open(root, 3).unwrap();
    commit_events(
        &mut lake,
        "2026-01-10T03:00:00Z",
        &[("acme", 2), ("globex", 3)],
    );
    write_ndjson(
        root,
        "alerts/dt=2026-01-10/part-1-1.ndjson",
        &[
            alert("a1", "acme", "2026-01-10T10:00:00Z"),
            alert("a2", "globex", "2026-01-10T10:00:00Z"),
        ],
    );
    let mut config = config(30);
    config.alerts = days(30);
    config
        .legal_holds
        .push(hold("keep-acme", "acme", None, None));
    let mut retention = Retention::new(root, &config);
    let plan = retention.plan(&mut lake, now()).unwrap();
    assert_eq!(plan.rewrites.len(), 2, "{plan:#?}");
    apply_with(&mut lake, &plan, retention.holds(), &never, false).unwrap();
    drop(lake);
    Lake::open(root, 3).unwrap();
    assert_eq!(
        rows(root, Table::Events),
        BTreeMap::from([(tenant("acme"), 2)])
    );
    assert_eq!(
        rows(root, Table::Alerts),
        BTreeMap::from([(tenant("acme"), 1)])
    );
}

#[test]
fn quarantined_input_is_attributed_by_its_raw_tenant_and_unknown_input_is_kept_by_any_hold() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut lake = Lake::open(root, 3).unwrap();
    let received = Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).unwrap();
    let mut pending = Pending::new(TimeWindow {
        max_age: Duration::from_secs(3600),
        max_future: Duration::from_secs(3600),
    });
    let lines = [
        r#"{"schema_version":1,"tenant_id":"acme","status":700}"#,
        r#"{"schema_version":1,"tenant_id":"globex","status":700}"#,
        "{not json",
    ];
    for (i, line) in lines.iter().enumerate() {
        let source = Source::File {
            path: "q",
            line: i as i64,
        };
        let _ = pending.push(line.as_bytes(), received, source);
    }
    pending
        .commit_to(
            &mut lake,
            &Metrics::register(&mut Default::default()),
            "file",
        )
        .unwrap();
    assert_eq!(
        rows(root, Table::Quarantine),
        BTreeMap::from([(None, 1), (tenant("acme"), 1), (tenant("globex"), 1)])
    );
    let mut config = RetentionConfig::default();
    config
        .legal_holds
        .push(hold("case-1", "acme", Some("2026-04-01"), None));
    let mut retention = Retention::new(root, &config);
    let plan = retention.plan(&mut lake, now()).unwrap();
    assert_eq!(plan.rewrites.len(), 1, "{plan:#?}");
    assert_eq!(plan.rewrites[0].removed, vec![(tenant("globex"), 1)]);
    let kept: Vec<Option<&str>> = plan.kept.iter().map(|k| k.tenant.as_deref()).collect();
    assert_eq!(kept, [None, Some("acme")]);
    retention.apply(&mut lake, &plan, &never).unwrap();
    assert_eq!(
        rows(root, Table::Quarantine),
        BTreeMap::from([(None, 1), (tenant("acme"), 1)])
    );
}

#[test]
fn a_compacted_hour_deleted_by_retention_leaves_a_lake_that_reopens_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut lake = Lake::open(root, 3).unwrap();
    for _ in 0..3 {
        commit_events(
            &mut lake,
            "2026-01-10T03:00:00Z",
            &[("acme", 2), ("globex", 2)],
        );
    }
    let options = crate::lake::compact::CompactOptions::default();
    let compacted = crate::lake::compact::compact(&mut lake, &options, now()).unwrap();
    assert_eq!(compacted.hours, 1);
    let mut config = config(30);
    config
        .legal_holds
        .push(hold("keep-acme", "acme", None, None));
    let mut retention = Retention::new(root, &config);
    // First a rewrite of the compacted file (acme held), then the rest.
    let plan = retention.plan(&mut lake, now()).unwrap();
    assert_eq!(plan.rewrites.len(), 1, "{plan:#?}");
    retention.apply(&mut lake, &plan, &never).unwrap();
    drop(Lake::open(root, 3).unwrap());
    let mut config = config.clone();
    config.legal_holds.clear();
    let mut retention = Retention::new(root, &config);
    let plan = retention.plan(&mut lake, now()).unwrap();
    assert_eq!(plan.deletions.len(), 1, "{plan:#?}");
    retention.apply(&mut lake, &plan, &never).unwrap();
    let reopened = Lake::open(root, 3).unwrap();
    assert!(reopened.state().live.is_empty());
    assert!(rows(root, Table::Events).is_empty());
}

#[test]
fn a_second_run_at_the_same_time_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut lake = Lake::open(dir.path(), 3).unwrap();
    let mut retention = Retention::new(dir.path(), &config(30));
    let plan = retention.plan(&mut lake, now()).unwrap();
    let held = fs::File::create(dir.path().join("_tooltrail/retention.lock")).unwrap();
    held.lock().unwrap();
    let err = retention.apply(&mut lake, &plan, &never).unwrap_err();
    assert!(matches!(err, crate::Error::RetentionBusy { .. }), "{err}");
}

#[test]
fn a_lake_after_retention_verifies_clean_in_the_digest_chain_and_a_deletion_by_hand_does_not() {
    use crate::lake::digest::{Finding, verify, write_digest};
    use tooltrail_schemas::signing::{Keyring, Signer};

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut lake = Lake::open(root, 3).unwrap();
    // Past 365 days: deleted whole. Mixed with a 30-day tenant: rewritten.
    commit_events(&mut lake, "2025-10-01T09:15:00Z", &[("acme", 2)]);
    commit_events(
        &mut lake,
        "2026-09-01T09:15:00Z",
        &[("acme", 5), ("globex", 3)],
    );
    let young = commit_events(&mut lake, "2026-11-20T09:15:00Z", &[("acme", 4)]);
    write_old_alerts(root);
    let signer = Signer::from_seed([9; 32]);
    let keyring = Keyring::new(vec![signer.public_key().clone()]);
    write_digest(root, &signer, Utc::now()).unwrap();

    let mut config = RetentionConfig::default();
    config.tenants.insert(
        "globex".into(),
        TenantRetention {
            events: Some(days(30)),
            alerts: Some(days(30)),
            ..TenantRetention::default()
        },
    );
    let mut retention = Retention::new(root, &config);
    let plan = retention.plan(&mut lake, now()).unwrap();
    let summary = retention.apply(&mut lake, &plan, &never).unwrap();
    assert_eq!(
        (summary.deleted.len(), summary.rewritten.len()),
        (2, 2),
        "{summary:#?}"
    );
    assert_eq!(
        rows(root, Table::Events),
        BTreeMap::from([(tenant("acme"), 9)])
    );
    write_digest(root, &signer, Utc::now()).unwrap();

    // Legitimate maintenance: nothing to report.
    let report = verify(root, &keyring, None, Utc::now()).unwrap();
    assert!(report.findings.is_empty(), "{:#?}", report.findings);

    // The same lake with a file deleted by hand is caught and named.
    fs::remove_file(root.join(&young.added[0].path)).unwrap();
    let report = verify(root, &keyring, None, Utc::now()).unwrap();
    assert!(
        matches!(
            report.findings.as_slice(),
            [Finding::DeletedFile { path, .. }] if *path == young.added[0].path
        ),
        "{:#?}",
        report.findings
    );
}
