use chrono::{DateTime, TimeZone, Utc};
use tooltrail_schemas::lake::{EventBatchBuilder, QuarantineBatchBuilder, Source};

use super::*;
use crate::Error;

const TOPIC: &str = "audit";

fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 9, 30, 0).unwrap()
}

fn app() -> String {
    Position::app_id("tooltrail", TOPIC, 0)
}

/// Kafka records `offsets`: every fifth is malformed and quarantined; the
/// source leaves out rejects `resume` says are in already.
fn batch(offsets: std::ops::RangeInclusive<i64>, resume: Resume) -> Batch {
    let mut events = EventBatchBuilder::new();
    let mut rejects = QuarantineBatchBuilder::new();
    for offset in offsets.clone() {
        let source = Source::Kafka {
            topic: TOPIC,
            partition: 0,
            offset,
        };
        if offset % 5 == 0 {
            if resume.already_quarantined(offset) {
                continue;
            }
            let raw = b"{not json";
            let error = tooltrail_schemas::decode(raw).unwrap_err();
            rejects.append(raw, &error, at(), source);
        } else {
            let event = crate::testing::event(&format!("e{offset}"), at(), "u");
            events.append(&event, at(), source);
        }
    }
    let mut batch = Batch {
        positions: vec![Position {
            app_id: app(),
            first: *offsets.start(),
            last: *offsets.end(),
        }],
        ..Batch::default()
    };
    if !events.is_empty() {
        batch
            .events
            .push((Partition::hour(at()), events.finish().unwrap()));
    }
    if !rejects.is_empty() {
        batch
            .quarantine
            .push((Partition::day(at().date_naive()), rejects.finish().unwrap()));
    }
    batch
}

async fn rows(location: &Location, spec: &'static crate::TableSpec) -> usize {
    let snapshot = crate::Snapshot::load(location, spec)
        .await
        .unwrap()
        .unwrap();
    snapshot
        .files()
        .unwrap()
        .iter()
        .map(|f| f.rows.unwrap())
        .sum()
}

#[tokio::test]
async fn a_crash_between_the_two_commits_neither_loses_nor_doubles_a_record() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let mut writer = Writer::open(&location, 1, Metrics::default())
        .await
        .unwrap();

    // The first batch's rejects were committed, then the process died
    // before its events were.
    let mut first = batch(0..=19, Resume::default());
    let mut quarantine = Table::open(&location, &QUARANTINE, 1, Metrics::default())
        .await
        .unwrap();
    let (partition, rejects) = first.quarantine.pop().unwrap();
    let file = quarantine
        .write(partition, rejects, Vec::new())
        .await
        .unwrap();
    let commit = Commit::append(vec![file]).with_positions(first.positions.clone());
    quarantine.commit(&commit).await.unwrap();

    // Restarted, the source resumes where `events` stands and reads a
    // larger batch, leaving out the rejects `quarantine` holds.
    writer.refresh().await.unwrap();
    let resume = writer.resume(&app()).await.unwrap();
    assert_eq!(
        resume,
        Resume {
            next: None,
            quarantined_through: Some(19)
        }
    );
    let outcome = writer.commit(batch(0..=29, resume)).await.unwrap();
    assert!(outcome.events.is_some() && outcome.quarantine.is_some());
    assert_eq!(rows(&location, &EVENTS).await, 24, "4 of every 5 of 30");
    assert_eq!(
        rows(&location, &QUARANTINE).await,
        6,
        "offsets 0, 5, ..., 25 once each"
    );
    let resume = writer.resume(&app()).await.unwrap();
    assert_eq!(resume.next, Some(30));
    assert_eq!(resume.quarantined_through, Some(29));
}

#[tokio::test]
async fn a_writer_that_lost_its_partition_is_fenced_and_writes_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let mut owner = Writer::open(&location, 1, Metrics::default())
        .await
        .unwrap();
    let mut zombie = Writer::open(&location, 1, Metrics::default())
        .await
        .unwrap();
    owner.commit(batch(0..=9, Resume::default())).await.unwrap();
    let err = zombie
        .commit(batch(5..=14, Resume::default()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Fenced { .. }), "{err}");
    assert_eq!(rows(&location, &EVENTS).await, 8);
    // Its rejects were fenced as well (offset 5 is in `quarantine` already).
    // Reading on from where the table stands writes only what is new.
    zombie.refresh().await.unwrap();
    let resume = zombie.resume(&app()).await.unwrap();
    assert_eq!(resume.next, Some(10));
    zombie.commit(batch(10..=14, resume)).await.unwrap();
    assert_eq!(rows(&location, &EVENTS).await, 12);
    assert_eq!(
        rows(&location, &QUARANTINE).await,
        3,
        "offsets 0, 5 and 10 once each"
    );
}

#[tokio::test]
async fn an_idempotency_key_is_new_then_committed_and_a_half_commit_is_recognised() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let mut writer = Writer::open(&location, 1, Metrics::default())
        .await
        .unwrap();
    let key = "http:req-1".to_owned();
    assert_eq!(writer.key_state(&key).await.unwrap(), KeyState::New);
    let mut with_key = batch(0..=9, Resume::default());
    with_key.positions.clear();
    with_key.keys = vec![key.clone()];
    writer.commit(with_key).await.unwrap();
    assert_eq!(writer.key_state(&key).await.unwrap(), KeyState::Committed);

    // Only the rejects of a request made it in.
    let half = "http:req-2".to_owned();
    let mut quarantine = Table::open(&location, &QUARANTINE, 1, Metrics::default())
        .await
        .unwrap();
    quarantine
        .commit(&Commit::append(Vec::new()).with_keys(vec![half.clone()]))
        .await
        .unwrap();
    writer.refresh().await.unwrap();
    assert_eq!(
        writer.key_state(&half).await.unwrap(),
        KeyState::Quarantined
    );
}
