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
use tooltrail_ingest::lake::Lake;
use tooltrail_ingest::lake::replay::Replay;

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

/// Replays the lake's events since `since` through `engine`, hour by hour
/// in event-time order.
pub fn warm(lake: &Lake, since: DateTime<Utc>, engine: &mut Engine) -> Result<Warmed> {
    run(Replay::since(lake, since), engine)
}

/// Replays the lake's events since `since` that ingest read from `topic`'s
/// `partition`, hour by hour in offset order: the state a detector consuming
/// that partition would have built.
pub fn warm_partition(
    lake: &Lake,
    since: DateTime<Utc>,
    (topic, partition): (&str, i32),
    engine: &mut Engine,
) -> Result<Warmed> {
    run(Replay::of_partition(lake, since, topic, partition), engine)
}

fn run(mut replay: Replay, engine: &mut Engine) -> Result<Warmed> {
    let mut warmed = Warmed::default();
    for hour in replay.by_ref() {
        let hour = hour.map_err(|source| Error::Warm { source })?;
        for event in &hour {
            engine.observe(event, &mut warmed.alerts);
        }
        warmed.events += hour.len() as u64;
    }
    warmed.files = replay.files();
    Ok(warmed)
}
