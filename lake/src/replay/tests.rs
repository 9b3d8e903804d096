use chrono::TimeZone;
use tooltrail_schemas::lake::{EventBatchBuilder, Source};

use super::*;
use crate::table::{Commit, Table};
use crate::tables::EVENTS;
use crate::{Location, Metrics};

fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, hour, minute, 0).unwrap()
}

/// Events `ids` at `time` minus their id in seconds, from Kafka `partition`
/// at offset = id.
fn events(ids: &[i64], time: DateTime<Utc>, partition: i32) -> arrow::array::RecordBatch {
    let mut builder = EventBatchBuilder::new();
    for &id in ids {
        let t = time - TimeDelta::seconds(id);
        let event = crate::testing::event(&format!("e{partition}-{id}"), t, "u");
        let source = Source::Kafka {
            topic: "audit",
            partition,
            offset: id,
        };
        builder.append(&event, t, source);
    }
    builder.finish().unwrap()
}

async fn drain(mut replay: Replay) -> Vec<Vec<String>> {
    let mut hours = Vec::new();
    while let Some(hour) = replay.next_hour().await {
        hours.push(hour.unwrap().into_iter().map(|e| e.event_id).collect());
    }
    hours
}

#[tokio::test]
async fn replays_hours_since_a_time_in_time_order_or_one_partition_in_offset_order() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let mut table = Table::open(&location, &EVENTS, 1, Metrics::default())
        .await
        .unwrap();
    for (ids, time, partition) in [
        (vec![1, 2], at(8, 30), 0),
        (vec![3, 4], at(9, 30), 0),
        (vec![5, 6], at(9, 40), 1),
        (vec![7], at(10, 5), 0),
    ] {
        let file = table
            .write(
                Partition::hour(time),
                events(&ids, time, partition),
                Vec::new(),
            )
            .await
            .unwrap();
        table.commit(&Commit::append(vec![file])).await.unwrap();
    }
    let snapshot = table.snapshot().await.unwrap();
    // Since 09:00: the 08 hour is skipped whole; 09's files merge in time order.
    let hours = drain(Replay::since(&snapshot, at(9, 0)).unwrap()).await;
    assert_eq!(
        hours,
        vec![vec!["e0-4", "e0-3", "e1-6", "e1-5"], vec!["e0-7"]]
    );
    // Partition 0 only, in offset order.
    let hours = drain(Replay::of_partition(&snapshot, at(8, 0), "audit", 0).unwrap()).await;
    assert_eq!(
        hours,
        vec![vec!["e0-1", "e0-2"], vec!["e0-3", "e0-4"], vec!["e0-7"]]
    );
}
