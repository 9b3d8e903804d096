//! Retention against real Delta tables in temporary directories, with `now`
//! injected and events dated in the past (events partition by event time).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use arrow::array::RecordBatch;
use chrono::{DateTime, TimeZone, Utc};
use tooltrail_schemas::lake::{EventBatchBuilder, QuarantineBatchBuilder, Source};

use super::config::{LegalHoldConfig, TenantRetention};
use super::scan::row_tenants;
use super::*;
use crate::metrics::{OutcomeLabel, RetentionMetrics};
use crate::table::{Commit, DataFile, Snapshot, Table};
use crate::tables::{EVENTS, QUARANTINE};
use crate::testing::alerts;
use crate::{Location, Metrics};

const DAY: u64 = 86_400;

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 12, 0, 0).unwrap()
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * DAY)
}

fn at(time: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(time).unwrap().into()
}

fn config(events_days: u64) -> RetentionConfig {
    RetentionConfig {
        events: days(events_days),
        ..RetentionConfig::default()
    }
}

fn tenant(t: &str) -> Option<String> {
    Some(t.to_owned())
}

fn never() -> bool {
    false
}

struct Lake {
    _dir: tempfile::TempDir,
    location: Location,
    events: Table,
}

impl Lake {
    async fn new() -> Lake {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::local(dir.path()).unwrap();
        let events = Table::open(&location, &EVENTS, 1, Metrics::default())
            .await
            .unwrap();
        Lake {
            _dir: dir,
            location,
            events,
        }
    }

    fn retention(&self, config: &RetentionConfig) -> Retention {
        Retention::new(&self.location, config, TABLES)
            .unwrap()
            .with_zstd_level(1)
    }

    /// Commits one file of `n` events per `(tenant, n)` at `time`.
    async fn commit_events(&mut self, time: &str, tenants: &[(&str, usize)]) -> DataFile {
        let time = at(time);
        let file = self
            .events
            .write(
                crate::table::Partition::hour(time),
                events(time, tenants),
                Vec::new(),
            )
            .await
            .unwrap();
        self.events
            .commit(&Commit::append(vec![file.clone()]))
            .await
            .unwrap();
        file
    }

    async fn snapshot(&self) -> Snapshot {
        Snapshot::load(&self.location, &EVENTS)
            .await
            .unwrap()
            .unwrap()
    }

    /// Rows per tenant in the newest version of events.
    async fn rows(&self) -> BTreeMap<Option<String>, u64> {
        rows(&self.snapshot().await, TableKind::Events).await
    }

    fn dir(&self) -> std::path::PathBuf {
        self.location.local_dir().unwrap()
    }

    /// The `operation` of the commit that created `version` of `table`.
    fn operation(&self, table: &str, version: u64) -> String {
        let path = self
            .dir()
            .join(format!("{table}/_delta_log/{version:020}.json"));
        let log = std::fs::read_to_string(path).unwrap();
        log.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|v| v["commitInfo"]["operation"].as_str().map(str::to_owned))
            .unwrap()
    }
}

fn events(time: DateTime<Utc>, tenants: &[(&str, usize)]) -> RecordBatch {
    let mut builder = EventBatchBuilder::new();
    let mut line = 0;
    for (tenant, n) in tenants {
        for i in 0..*n {
            line += 1;
            let user = format!("u{}", i % 3);
            let mut event = crate::testing::event(&format!("{tenant}-{time}-{i}"), time, &user);
            event.tenant_id = (*tenant).to_owned();
            builder.append(&event, time, Source::File { path: "f", line });
        }
    }
    builder.finish().unwrap()
}

/// Rows per tenant in the files of `snapshot`.
async fn rows(snapshot: &Snapshot, kind: TableKind) -> BTreeMap<Option<String>, u64> {
    let mut out = BTreeMap::new();
    for file in snapshot.files().unwrap() {
        for batch in snapshot.read_file(&file.path, None).await.unwrap() {
            for t in row_tenants(kind, &batch) {
                *out.entry(t).or_default() += 1;
            }
        }
    }
    out
}

#[tokio::test]
async fn partitions_past_retention_are_removed_whole_in_one_delete_commit_and_old_versions_still_read_them()
 {
    let mut lake = Lake::new().await;
    let old = lake
        .commit_events("2026-09-01T09:15:00Z", &[("acme", 5), ("globex", 3)])
        .await;
    lake.commit_events("2026-11-20T09:15:00Z", &[("acme", 4)])
        .await;
    let before = lake.snapshot().await;
    let mut retention = lake.retention(&config(30));

    // A dry run is the plan alone: the same plan twice, the version unchanged.
    let plan = retention.plan(now()).await.unwrap();
    assert_eq!(plan, retention.plan(now()).await.unwrap());
    assert_eq!(lake.snapshot().await.version(), before.version());
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
    assert_eq!(deletion.bytes, old.add.size as u64);
    assert_eq!(plan.young.get(&TableKind::Events), Some(&1));
    let dry = text::dry_run_line(&plan);
    assert!(
        dry.starts_with("dry run: would delete 1 partition(s) (8 rows,"),
        "{dry}"
    );

    let summary = retention.apply(&plan, &never).await.unwrap();
    assert_eq!(summary.deleted.len(), 1, "{summary:#?}");
    assert_eq!(summary.rows_removed(), 8);
    assert_eq!(lake.rows().await, BTreeMap::from([(tenant("acme"), 4)]));
    // One version, a DELETE in the table's history.
    let after = lake.snapshot().await;
    let version = after.version().unwrap();
    assert_eq!(Some(version - 1), before.version());
    assert_eq!(summary.deleted[0].version, version);
    assert_eq!(lake.operation("events", version), "DELETE");
    let line = text::summary_line(&plan, &summary);
    assert!(
        line.ends_with(&format!("; events log entry {version}")),
        "{line}"
    );
    // Nothing was deleted from storage: a reader of the previous version
    // still reads the file, until vacuum.
    assert!(lake.dir().join("events").join(&old.add.path).exists());
    let old_rows = rows(&before, TableKind::Events).await;
    assert_eq!(old_rows.values().sum::<u64>(), 12);
    // Nothing left to do.
    assert!(retention.plan(now()).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_partition_within_retention_is_kept_and_not_even_read() {
    let mut lake = Lake::new().await;
    lake.commit_events("2026-11-01T09:15:00Z", &[("acme", 3)])
        .await;
    let version = lake.snapshot().await.version();
    let mut retention = lake.retention(&config(30));
    let plan = retention.plan(now()).await.unwrap();
    assert!(plan.is_empty(), "{plan:#?}");
    assert!(plan.kept.is_empty(), "not looked into: {plan:#?}");
    assert_eq!(plan.young.get(&TableKind::Events), Some(&1));
    let summary = retention.apply(&plan, &never).await.unwrap();
    assert_eq!(summary, RetentionSummary::default());
    assert_eq!(lake.snapshot().await.version(), version);
    assert_eq!(lake.rows().await, BTreeMap::from([(tenant("acme"), 3)]));
}

#[tokio::test]
async fn a_shorter_tenant_override_rewrites_a_mixed_partition_keeping_the_other_tenants_rows() {
    let mut lake = Lake::new().await;
    let hour = "2026-10-20T09:30:00Z";
    lake.commit_events(hour, &[("acme", 40), ("globex", 25)])
        .await; // mixed
    let globex_only = lake.commit_events(hour, &[("globex", 10)]).await;
    let acme_only = lake.commit_events(hour, &[("acme", 7)]).await;
    let mut config = config(365);
    config.tenants.insert(
        "globex".into(),
        TenantRetention {
            events: Some(days(7)),
            ..TenantRetention::default()
        },
    );
    let before = lake.snapshot().await;
    let mut retention = lake.retention(&config);
    let plan = retention.plan(now()).await.unwrap();
    assert!(plan.deletions.is_empty(), "{plan:#?}");
    assert_eq!(plan.rewrites.len(), 1);
    let rewrite = &plan.rewrites[0];
    assert_eq!(rewrite.removed, vec![(tenant("globex"), 35)]);
    assert_eq!(rewrite.drop.len(), 1);
    assert_eq!(rewrite.drop[0].path, globex_only.add.path);
    assert_eq!(rewrite.rewrite.len(), 1);
    assert_eq!(rewrite.rows_kept, 47);
    assert_eq!(plan.kept.len(), 1);
    assert!(
        plan.kept[0]
            .reason
            .to_string()
            .starts_with("within retention (365d"),
        "{}",
        plan.kept[0].reason
    );

    let summary = retention.apply(&plan, &never).await.unwrap();
    assert_eq!(summary.rewritten.len(), 1, "{summary:#?}");
    assert_eq!(summary.rows_removed(), 35);
    assert_eq!(lake.rows().await, BTreeMap::from([(tenant("acme"), 47)]));
    // One commit swapped the files: the untouched one stays, the rewritten
    // one holds acme's 40 rows.
    let after = lake.snapshot().await;
    assert_eq!(after.version(), before.version().map(|v| v + 1));
    assert_eq!(lake.operation("events", after.version().unwrap()), "DELETE");
    let files = after.files().unwrap();
    assert_eq!(files.len(), 2, "{files:#?}");
    assert!(files.iter().any(|f| f.path == acme_only.add.path));
    let new = files.iter().find(|f| f.path != acme_only.add.path).unwrap();
    assert_eq!(new.rows, Some(40));
    assert!(
        new.path.starts_with("dt=2026-10-20/hour=09/"),
        "{}",
        new.path
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

#[tokio::test]
async fn a_legal_hold_in_the_configuration_keeps_a_tenants_data_past_retention_and_says_why() {
    let mut lake = Lake::new().await;
    lake.commit_events("2026-01-10T03:00:00Z", &[("acme", 6)])
        .await;
    lake.commit_events("2026-01-10T03:00:00Z", &[("globex", 4)])
        .await;
    let mut config = config(30);
    config
        .legal_holds
        .push(hold("case-114", "acme", None, None));
    let mut retention = lake.retention(&config);
    let plan = retention.plan(now()).await.unwrap();
    assert_eq!(plan.rewrites.len(), 1, "{plan:#?}");
    assert_eq!(plan.rewrites[0].removed, vec![(tenant("globex"), 4)]);
    assert_eq!(plan.kept.len(), 1);
    let kept = &plan.kept[0];
    assert_eq!((kept.tenant.as_deref(), kept.rows), (Some("acme"), 6));
    let why = "legal hold case-114 on tenant acme (all time): litigation 2026-114";
    assert_eq!(kept.reason.to_string(), why);
    let report = text::plan(&plan, &lake.location, false);
    let keep = report.lines().find(|l| l.starts_with("keep")).unwrap();
    assert!(
        keep.contains("dt=2026-01-10/hour=03") && keep.ends_with(&format!("acme: {why}")),
        "{report}"
    );
    retention.apply(&plan, &never).await.unwrap();
    assert_eq!(lake.rows().await, BTreeMap::from([(tenant("acme"), 6)]));
}

#[tokio::test]
async fn a_stored_hold_protects_only_its_range_and_its_release_lets_the_next_run_delete() {
    let mut lake = Lake::new().await;
    lake.commit_events("2026-01-10T03:00:00Z", &[("acme", 2)])
        .await;
    lake.commit_events("2026-03-10T03:00:00Z", &[("acme", 3)])
        .await;
    let mut retention = lake.retention(&config(30));
    let new = NewHold {
        tenant: "acme".into(),
        from: Some("2026-02-01".into()),
        to: Some("2026-03-31".into()),
        reason: "regulator request".into(),
    };
    let set = retention.holds().add(new, "root", now()).await.unwrap();
    let plan = retention.plan(now()).await.unwrap();
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
    retention.apply(&plan, &never).await.unwrap();
    assert_eq!(lake.rows().await, BTreeMap::from([(tenant("acme"), 3)]));

    retention.holds().remove(&set.id).await.unwrap();
    let plan = retention.plan(now()).await.unwrap();
    assert_eq!(plan.deletions.len(), 1);
    retention.apply(&plan, &never).await.unwrap();
    assert!(lake.rows().await.is_empty());
}

#[tokio::test]
async fn a_hold_set_after_planning_stops_the_deletion_it_covers() {
    let mut lake = Lake::new().await;
    lake.commit_events("2026-01-10T03:00:00Z", &[("acme", 2)])
        .await;
    let mut retention = lake.retention(&config(30));
    let plan = retention.plan(now()).await.unwrap();
    assert_eq!(plan.deletions.len(), 1);
    let version = lake.snapshot().await.version();
    // Another process (up's API) sets the hold.
    let other = HoldStore::open(&lake.location, &RetentionConfig::default()).unwrap();
    let new = NewHold {
        tenant: "acme".into(),
        reason: "late notice".into(),
        ..NewHold::default()
    };
    other.add(new, "root", now()).await.unwrap();
    let summary = retention.apply(&plan, &never).await.unwrap();
    assert!(summary.deleted.is_empty());
    assert_eq!(summary.skipped.len(), 1);
    assert!(
        summary.skipped[0].why.contains("late notice"),
        "{summary:#?}"
    );
    assert_eq!(lake.snapshot().await.version(), version);
    assert_eq!(lake.rows().await.values().sum::<u64>(), 2);
}

#[tokio::test]
async fn holds_set_by_two_processes_at_once_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let config = RetentionConfig::default();
    let (a, b) = (
        HoldStore::open(&location, &config).unwrap(),
        HoldStore::open(&location, &config).unwrap(),
    );
    let add = |store: HoldStore, who: &'static str| async move {
        let mut ids = Vec::new();
        for i in 0..15 {
            let new = NewHold {
                tenant: format!("t{i}"),
                reason: format!("case {who}-{i}"),
                ..NewHold::default()
            };
            ids.push(store.add(new, who, now()).await.unwrap().id);
        }
        ids
    };
    let (from_a, from_b) = tokio::join!(
        tokio::spawn(add(a.clone(), "a")),
        tokio::spawn(add(b.clone(), "b"))
    );
    let mut expected: Vec<String> = from_a.unwrap().into_iter().chain(from_b.unwrap()).collect();
    expected.sort();
    let all: Vec<String> = a.all().await.unwrap().into_iter().map(|h| h.id).collect();
    assert_eq!(all, expected);
    // Releasing through one is seen by the other.
    b.remove(&expected[0]).await.unwrap();
    assert_eq!(a.all().await.unwrap().len(), 29);
}

#[tokio::test]
async fn another_run_that_removed_the_files_first_makes_this_one_skip_not_fail() {
    let mut lake = Lake::new().await;
    lake.commit_events("2026-01-10T03:00:00Z", &[("acme", 2)])
        .await;
    let mut slow = lake.retention(&config(30));
    let plan = slow.plan(now()).await.unwrap();
    let mut fast = lake.retention(&config(30));
    let fast_plan = fast.plan(now()).await.unwrap();
    assert_eq!(
        fast.apply(&fast_plan, &never).await.unwrap().deleted.len(),
        1
    );
    let summary = slow.apply(&plan, &never).await.unwrap();
    assert!(summary.failed.is_empty(), "{summary:#?}");
    assert_eq!(summary.skipped.len(), 1, "{summary:#?}");
    assert!(
        summary.skipped[0].why.contains("changed since"),
        "{summary:#?}"
    );
    assert!(slow.plan(now()).await.unwrap().is_empty());
}

#[tokio::test]
async fn quarantined_input_is_attributed_by_its_raw_tenant_and_unknown_input_is_kept_by_any_hold() {
    let lake = Lake::new().await;
    let mut quarantine = Table::open(&lake.location, &QUARANTINE, 1, Metrics::default())
        .await
        .unwrap();
    let received = Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).unwrap();
    let mut builder = QuarantineBatchBuilder::new();
    let lines: [&[u8]; 3] = [
        br#"{"schema_version":1,"tenant_id":"acme","status":700}"#,
        br#"{"schema_version":1,"tenant_id":"globex","status":700}"#,
        b"{not json",
    ];
    for (i, raw) in lines.into_iter().enumerate() {
        let error = tooltrail_schemas::decode(raw).unwrap_err();
        let source = Source::File {
            path: "q",
            line: i as i64,
        };
        builder.append(raw, &error, received, source);
    }
    let day = crate::table::Partition::day(received.date_naive());
    let file = quarantine
        .write(day, builder.finish().unwrap(), Vec::new())
        .await
        .unwrap();
    quarantine
        .commit(&Commit::append(vec![file]))
        .await
        .unwrap();
    let snapshot = || async {
        Snapshot::load(&lake.location, &QUARANTINE)
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(
        rows(&snapshot().await, TableKind::Quarantine).await,
        BTreeMap::from([(None, 1), (tenant("acme"), 1), (tenant("globex"), 1)])
    );
    let mut config = RetentionConfig::default();
    config
        .legal_holds
        .push(hold("case-1", "acme", Some("2026-04-01"), None));
    let mut retention = lake.retention(&config);
    let plan = retention.plan(now()).await.unwrap();
    assert_eq!(plan.rewrites.len(), 1, "{plan:#?}");
    assert_eq!(plan.rewrites[0].partition.dir, "quarantine/dt=2026-05-01");
    assert_eq!(plan.rewrites[0].removed, vec![(tenant("globex"), 1)]);
    let kept: Vec<Option<&str>> = plan.kept.iter().map(|k| k.tenant.as_deref()).collect();
    assert_eq!(kept, [None, Some("acme")]);
    retention.apply(&plan, &never).await.unwrap();
    assert_eq!(
        rows(&snapshot().await, TableKind::Quarantine).await,
        BTreeMap::from([(None, 1), (tenant("acme"), 1)])
    );
}

#[tokio::test(start_paused = true)]
async fn the_periodic_task_applies_retention_as_of_its_clock_until_cancelled() {
    let mut lake = Lake::new().await;
    lake.commit_events("2026-01-10T03:00:00Z", &[("acme", 2)])
        .await;
    lake.commit_events("2026-11-22T03:00:00Z", &[("acme", 1)])
        .await;
    let metrics = RetentionMetrics::default();
    let asked = Arc::new(AtomicUsize::new(0));
    let clock = {
        let asked = Arc::clone(&asked);
        Arc::new(move || {
            asked.fetch_add(1, Ordering::SeqCst);
            now()
        })
    };
    let task = Periodic::new(&lake.location, config(30), TABLES, metrics.clone())
        .with_zstd_level(1)
        .with_clock(clock);
    let token = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(task.run(token.clone()));
    let ok = OutcomeLabel { outcome: "ok" };
    // Two runs: the first at start, the next an interval (1h) later.
    while metrics.runs.get_or_create(&ok).get() < 2 {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    token.cancel();
    running.await.unwrap();
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    assert_eq!(lake.rows().await, BTreeMap::from([(tenant("acme"), 1)]));
    let events = Metrics::table("events");
    assert_eq!(metrics.partitions.get_or_create(&events).get(), 1);
    assert_eq!(metrics.rows.get_or_create(&events).get(), 2);
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
fn the_configuration_refuses_unknown_keys_and_reads_durations_as_text() {
    let parsed: RetentionConfig = serde_json::from_value(serde_json::json!({
        "events": "400d",
        "tenants": {"acme": {"events": "30d"}},
    }))
    .unwrap();
    assert_eq!(parsed.events, days(400));
    assert_eq!(parsed.quarantine, days(90), "the default");
    assert_eq!(parsed.retention(TableKind::Events, Some("acme")), days(30));
    let err = serde_json::from_value::<RetentionConfig>(serde_json::json!({"event": "1d"}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field `event`"), "{err}");
    let written = serde_json::to_value(&parsed).unwrap();
    assert_eq!(written["events"], "400d");
}

#[test]
fn every_table_kind_is_named_as_the_configuration_names_it() {
    for kind in TableKind::ALL {
        assert_eq!(TableKind::of_name(kind.name()), Some(kind));
    }
    assert!(RetainedTable::new(&EVENTS).is_ok());
    let unknown = crate::table::TableSpec {
        name: "nope",
        ..EVENTS
    };
    let unknown: &'static crate::table::TableSpec = Box::leak(Box::new(unknown));
    assert!(matches!(
        RetainedTable::new(unknown),
        Err(Error::UnknownTable { .. })
    ));
}

#[tokio::test]
async fn a_one_tenant_file_is_settled_by_its_footer_statistics_and_a_mixed_one_is_not() {
    let mut lake = Lake::new().await;
    let one = lake
        .commit_events("2026-01-10T03:00:00Z", &[("acme", 4)])
        .await;
    let mixed = lake
        .commit_events("2026-01-10T03:00:00Z", &[("acme", 1), ("globex", 2)])
        .await;
    let snapshot = lake.snapshot().await;
    let store = lake.location.store("events").unwrap();
    let entry = |path: &str| {
        snapshot
            .files()
            .unwrap()
            .into_iter()
            .find(|f| f.path == path)
            .unwrap()
    };
    let meta = super::scan::footer(store.as_ref(), &snapshot, &entry(&one.add.path))
        .await
        .unwrap();
    assert_eq!(
        super::scan::from_statistics(&meta, "tenant_id"),
        Some(BTreeMap::from([(tenant("acme"), 4)]))
    );
    let meta = super::scan::footer(store.as_ref(), &snapshot, &entry(&mixed.add.path))
        .await
        .unwrap();
    assert_eq!(super::scan::from_statistics(&meta, "tenant_id"), None);
    let tenants = super::scan::read_tenants(
        &snapshot,
        store.as_ref(),
        TableKind::Events,
        &entry(&mixed.add.path),
    )
    .await
    .unwrap();
    assert_eq!(tenants, vec![(tenant("acme"), 1), (tenant("globex"), 2)]);
}

#[tokio::test]
async fn old_alerts_go_by_the_alerts_retention_and_a_hold_keeps_its_tenants_alerts() {
    let lake = Lake::new().await;
    let mut table = Table::open(
        &lake.location,
        &crate::tables::ALERTS,
        1,
        Metrics::default(),
    )
    .await
    .unwrap();
    let (old, young) = (at("2026-05-01T10:00:00Z"), at("2026-11-20T10:00:00Z"));
    for (time, batch) in [
        (old, alerts(old, &[("acme", "a1"), ("initech", "i1")])),
        (old, alerts(old, &[("globex", "g1")])),
        (young, alerts(young, &[("acme", "a2")])),
    ] {
        let partition = crate::table::Partition::day(time.date_naive());
        let file = table.write(partition, batch, Vec::new()).await.unwrap();
        table.commit(&Commit::append(vec![file])).await.unwrap();
    }
    let mut config = RetentionConfig {
        alerts: days(100),
        ..RetentionConfig::default()
    };
    config
        .legal_holds
        .push(hold("case-9", "initech", None, None));
    let mut retention = lake.retention(&config);
    let plan = retention.plan(now()).await.unwrap();
    retention.apply(&plan, &never).await.unwrap();

    let snapshot = Snapshot::load(&lake.location, &crate::tables::ALERTS)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        rows(&snapshot, TableKind::Alerts).await,
        BTreeMap::from([(tenant("acme"), 1), (tenant("initech"), 1)]),
        "the old day keeps only initech's held alert; the young day is untouched"
    );
}

#[tokio::test(start_paused = true)]
async fn the_periodic_task_vacuums_removed_files_once_their_grace_has_passed() {
    let mut lake = Lake::new().await;
    let file = lake
        .commit_events("2026-01-10T03:00:00Z", &[("acme", 2)])
        .await;
    let on_disk = lake.dir().join("events").join(&file.add.path);
    // Retention removes the file at the first run (wall-clock time); the
    // task's clock is far enough ahead that the grace has passed by then.
    let far = Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).unwrap();
    let metrics = RetentionMetrics::default();
    let task = Periodic::new(&lake.location, config(30), TABLES, metrics.clone())
        .with_zstd_level(1)
        .with_clock(Arc::new(move || far));
    let token = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(task.run(token.clone()));
    let ok = OutcomeLabel { outcome: "ok" };
    while metrics.runs.get_or_create(&ok).get() < 2 {
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    token.cancel();
    running.await.unwrap();
    assert_eq!(lake.rows().await, BTreeMap::new());
    assert!(
        !on_disk.exists(),
        "{} outlived its grace",
        on_disk.display()
    );
}

/// Files removed by something else than retention (here, an earlier manual
/// apply) still leave storage when `up`'s retention is off.
#[tokio::test(start_paused = true)]
async fn the_periodic_task_vacuums_with_retention_disabled_and_deletes_no_rows() {
    let mut lake = Lake::new().await;
    let removed = lake
        .commit_events("2026-01-10T03:00:00Z", &[("acme", 2)])
        .await;
    let mut retention = lake.retention(&config(30));
    let plan = retention.plan(now()).await.unwrap();
    retention.apply(&plan, &never).await.unwrap();
    let on_disk = lake.dir().join("events").join(&removed.add.path);
    assert!(
        on_disk.exists(),
        "removed from the table, not yet from storage"
    );
    // Old enough for a 30-day retention: an enabled task would delete it.
    lake.commit_events("2026-01-11T03:00:00Z", &[("acme", 3)])
        .await;

    let far = Utc.with_ymd_and_hms(2100, 1, 1, 0, 0, 0).unwrap();
    let mut disabled = config(30);
    disabled.enabled = false;
    let metrics = RetentionMetrics::default();
    let task = Periodic::new(&lake.location, disabled, TABLES, metrics.clone())
        .with_clock(Arc::new(move || far));
    let token = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(task.run(token.clone()));
    // The clock is paused: each sleep lets the task run an interval's work.
    for _ in 0..10 {
        if !on_disk.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    token.cancel();
    running.await.unwrap();
    assert!(
        !on_disk.exists(),
        "{} outlived its grace",
        on_disk.display()
    );
    assert_eq!(
        lake.rows().await,
        BTreeMap::from([(tenant("acme"), 3)]),
        "retention is off: the old day stays"
    );
    let ok = OutcomeLabel { outcome: "ok" };
    assert_eq!(metrics.runs.get_or_create(&ok).get(), 0, "no retention run");
}

#[tokio::test]
async fn vacuum_keeps_a_removed_file_within_its_grace_and_leaves_absent_tables_uncreated() {
    let mut lake = Lake::new().await;
    let file = lake
        .commit_events("2026-01-10T03:00:00Z", &[("acme", 2)])
        .await;
    let mut retention = lake.retention(&config(30));
    let plan = retention.plan(now()).await.unwrap();
    retention.apply(&plan, &never).await.unwrap();
    let vacuumed = crate::vacuum::vacuum_tables(
        &lake.location,
        TABLES,
        crate::vacuum::DEFAULT_GRACE,
        Utc::now(),
    )
    .await
    .unwrap();
    let names: Vec<&str> = vacuumed.iter().map(|(t, _)| *t).collect();
    assert_eq!(names, ["events"]);
    assert!(vacuumed[0].1.deleted.is_empty());
    assert!(lake.dir().join("events").join(&file.add.path).exists());
    assert!(!lake.dir().join("alerts").exists());
}
