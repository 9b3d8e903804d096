//! Warming an engine from the lake: the lake holds every event ingest ever
//! acknowledged, so a detector's state is rebuilt by replaying the recent
//! part of it before intake starts. This is how detection state survives a
//! restart, including `kill -9`: windows that were open at the crash are
//! judged again, and raise the alerts they would have raised, with the same
//! ids. The [`Publisher`](crate::publish::Publisher) drops those the lake
//! already holds.
//!
//! `tooltrail detect --kafka` warms one Kafka partition at a time: only the
//! events ingest read from that partition, in offset order.

use chrono::{DateTime, Utc};
use tooltrail_lake::Snapshot;
use tooltrail_lake::replay::Replay;

use super::{Error, Result};
use crate::{Alert, Engine};

/// What warming did.
#[derive(Debug, Default)]
pub struct Warmed {
    pub events: u64,
    pub files: usize,
    /// Every alert the replay raised, published or not.
    pub alerts: Vec<Alert>,
}

/// Replays the events of `events` (a snapshot of the lake's `events`
/// table) since `since` through `engine`, hour by hour in event-time order.
pub async fn warm(events: &Snapshot, since: DateTime<Utc>, engine: &mut Engine) -> Result<Warmed> {
    let replay = Replay::since(events, since).map_err(|source| Error::Warm { source })?;
    run(replay, engine).await
}

/// Replays the events since `since` that ingest read from `topic`'s
/// `partition`, hour by hour in offset order: the state a detector consuming
/// that partition would have built.
pub async fn warm_partition(
    events: &Snapshot,
    since: DateTime<Utc>,
    (topic, partition): (&str, i32),
    engine: &mut Engine,
) -> Result<Warmed> {
    let replay = Replay::of_partition(events, since, topic, partition)
        .map_err(|source| Error::Warm { source })?;
    run(replay, engine).await
}

async fn run(mut replay: Replay, engine: &mut Engine) -> Result<Warmed> {
    let mut warmed = Warmed::default();
    while let Some(hour) = replay.next_hour().await {
        let hour = hour.map_err(|source| Error::Warm { source })?;
        for event in &hour {
            engine.observe(event, &mut warmed.alerts);
        }
        warmed.events += hour.len() as u64;
    }
    warmed.files = replay.files();
    Ok(warmed)
}
