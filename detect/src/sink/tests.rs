use super::*;

fn alert(time: &str) -> Alert {
    let t = chrono::DateTime::parse_from_rfc3339(time)
        .expect("time")
        .with_timezone(&chrono::Utc);
    Alert {
        time: t,
        ..crate::alert::test_alert()
    }
}

fn lake(dir: &tempfile::TempDir) -> Location {
    Location::local(dir.path()).expect("a local lake")
}

/// Every alert in the table's latest version, rebuilt from `record`, with
/// the `dt` of its file.
async fn stored(location: &Location) -> Vec<(String, Alert)> {
    let snapshot = Snapshot::load(location, &tables::ALERTS)
        .await
        .expect("load")
        .expect("the table exists");
    let mut out = Vec::new();
    for file in snapshot.files().expect("files") {
        let day = file
            .partition
            .iter()
            .find(|(k, _)| k == "dt")
            .and_then(|(_, v)| v.clone())
            .expect("a dt partition");
        for batch in snapshot
            .read_file(&file.path, Some(&["record"]))
            .await
            .expect("read")
        {
            for record in batch.column(0).as_string::<i32>().iter() {
                let alert: Alert =
                    serde_json::from_str(record.expect("a record")).expect("an alert");
                out.push((day.clone(), alert));
            }
        }
    }
    out.sort_by(|a, b| (&a.0, &a.1.alert_id, a.1.repeats).cmp(&(&b.0, &b.1.alert_id, b.1.repeats)));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_detector_knows_each_alert_the_lake_holds_and_its_highest_repeat_count() {
    let dir = tempfile::tempdir().expect("tempdir");
    let location = lake(&dir);
    let mut sink = AlertLake::open(&location, Metrics::default())
        .await
        .expect("open");
    assert!(sink.written().await.expect("empty").is_empty());
    let first = alert("2026-10-20T10:00:00Z");
    let update = Alert {
        repeats: 4,
        ..first.clone()
    };
    let other = Alert {
        alert_id: "other".into(),
        ..alert("2026-10-21T10:00:00Z")
    };
    sink.write(&[first.clone(), other]).await.expect("write");
    sink.write(&[update]).await.expect("write");
    drop(sink);

    let restarted = AlertLake::open(&location, Metrics::default())
        .await
        .expect("reopen");
    let written = restarted.written().await.expect("read");
    assert_eq!(written.len(), 2);
    assert_eq!(written[&first.alert_id], 4);
    assert_eq!(written["other"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_of_several_days_land_in_their_day_partitions_in_one_commit_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let location = lake(&dir);
    let mut sink = AlertLake::open(&location, Metrics::default())
        .await
        .expect("open");
    let before = Snapshot::load(&location, &tables::ALERTS)
        .await
        .expect("load")
        .and_then(|s| s.version())
        .expect("created");
    let mut late = alert("2026-10-20T23:59:00Z");
    late.evidence
        .details
        .insert("distinct_tools".into(), 7.into());
    let early = Alert {
        alert_id: "next-day".into(),
        ..alert("2026-10-21T00:01:00Z")
    };
    let committed = sink
        .write(&[late.clone(), early.clone()])
        .await
        .expect("write");
    assert_eq!(committed.version, before + 1, "one commit for both days");

    let stored = stored(&location).await;
    assert_eq!(
        stored,
        [
            ("2026-10-20".to_string(), late),
            ("2026-10-21".to_string(), early)
        ],
        "each on its day, the record whole (evidence.details too)"
    );
}
