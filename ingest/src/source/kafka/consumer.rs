//! What every tooltrail consumer group shares: ingest's (into the lake) and
//! the detector's (`detect --kafka`). Both keep their own record of where
//! each partition stands (the lake's log, the detector's checkpoints), so
//! both consume the same way:
//!
//! - offsets are never committed or stored automatically; each is committed
//!   only after the state that covers it is durable, and only for lag
//!   monitoring: on assignment, a partition is positioned from the
//!   consumer's own record, whatever Kafka's committed offset says;
//! - partitions are assigned by range, so that a group's members split a
//!   topic's partitions the same way whichever of the two groups they are in;
//! - a partition with no record of its own starts at the earliest offset;
//! - what is owed to Kafka goes at most once per `auto.commit.interval.ms`
//!   ([`OffsetCommits`]), and at once on revocation and shutdown;
//! - the rebalance callback is ours ([`GroupContext`]): on assignment the
//!   consumer positions the new partitions from its own record, on
//!   revocation it makes what it consumed durable before they go, and a
//!   failure inside the callback is kept for the poll loop to return.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use tooltrail_schemas::SecretMap;

/// The next offset to read in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub topic: String,
    pub partition: i32,
    pub next_offset: i64,
}

/// A consumer's client configuration: the shared settings above, then the
/// operator's `properties` (credentials, TLS), which win.
pub fn client_config(brokers: &str, group: &str, properties: &SecretMap) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range");
    for (k, v) in properties.expose() {
        client.set(k, v);
    }
    client
}

/// A producer's client configuration on the same brokers, with the same
/// credentials (librdkafka ignores the consumer-only properties, with a
/// warning).
pub fn producer_config(brokers: &str, properties: &SecretMap) -> ClientConfig {
    let mut client = ClientConfig::new();
    client.set("bootstrap.servers", brokers);
    for (k, v) in properties.expose() {
        client.set(k, v);
    }
    client
}

/// How often a consumer commits to Kafka what its own record already holds:
/// `auto.commit.interval.ms` from the operator's `properties`, as librdkafka
/// reads it for its own auto commit (default 5 s). Committing after every
/// small transaction instead floods the group coordinator, and a member's
/// heartbeats queue behind those commits on its connection: with a slow
/// broker, its session runs out.
pub fn commit_interval(properties: &SecretMap) -> Duration {
    const DEFAULT: Duration = Duration::from_secs(5);
    properties
        .expose()
        .find(|(key, _)| *key == "auto.commit.interval.ms")
        .and_then(|(_, ms)| ms.trim().parse().ok())
        .map_or(DEFAULT, Duration::from_millis)
}

/// The offsets a consumer owes Kafka, the furthest per partition, and when
/// they are due: at most once per interval, and all at once when the
/// partitions go.
#[derive(Debug)]
pub struct OffsetCommits {
    owed: BTreeMap<(String, i32), i64>,
    interval: Duration,
    last: Instant,
}

impl OffsetCommits {
    pub fn new(interval: Duration, now: Instant) -> Self {
        OffsetCommits {
            owed: BTreeMap::new(),
            interval,
            last: now,
        }
    }

    /// Adds positions the consumer's own record now holds.
    pub fn owe(&mut self, positions: Vec<Position>) {
        for p in positions {
            let next = self
                .owed
                .entry((p.topic, p.partition))
                .or_insert(p.next_offset);
            *next = (*next).max(p.next_offset);
        }
    }

    /// What to commit now: everything owed once an interval has passed since
    /// the last commit, else nothing.
    pub fn due(&mut self, now: Instant) -> Vec<Position> {
        if self.owed.is_empty() || now.saturating_duration_since(self.last) < self.interval {
            return Vec::new();
        }
        self.last = now;
        self.take()
    }

    /// Everything owed, now (revocation, shutdown).
    pub fn take(&mut self) -> Vec<Position> {
        std::mem::take(&mut self.owed)
            .into_iter()
            .map(|((topic, partition), next_offset)| Position {
                topic,
                partition,
                next_offset,
            })
            .collect()
    }
}

/// Commits `positions` to Kafka. The consumer's own record already holds
/// them: a failure only delays what lag monitoring sees, so it is logged,
/// not returned.
pub fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    positions: &[Position],
    mode: CommitMode,
) {
    if positions.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for p in positions {
        if let Err(error) =
            tpl.add_partition_offset(&p.topic, p.partition, Offset::Offset(p.next_offset))
        {
            tracing::warn!(topic = %p.topic, partition = p.partition, %error, "cannot build offset list");
        }
    }
    if let Err(error) = consumer.commit(&tpl, mode) {
        tracing::warn!(%error, "committing offsets to kafka failed; the consumer's own record holds them");
    }
}

/// What a consumer group member does as partitions come and go. Every call
/// is on the polling thread, inside `poll`, with the state locked.
pub trait Rebalance: Send + 'static {
    type Error: Send;

    /// Positions the newly assigned partitions in `tpl` from the consumer's
    /// own record; returns positions to tell Kafka at once (lag monitoring).
    fn assigned(&mut self, tpl: &mut TopicPartitionList) -> Result<Vec<Position>, Self::Error>;

    /// Makes what was consumed from the partitions in `tpl` durable before
    /// they go; returns the positions to commit.
    fn revoked(&mut self, tpl: &TopicPartitionList) -> Result<Vec<Position>, Self::Error>;

    /// A rebalance failed and the assignment is dropped.
    fn lost(&mut self);

    /// Keeps a failure inside the callback for the poll loop to return.
    fn failed(&mut self, error: Self::Error);

    /// A Kafka failure as the consumer's error.
    fn kafka_error(context: &str, source: KafkaError) -> Self::Error;

    /// librdkafka's periodic statistics (`statistics.interval.ms`).
    fn statistics(&self, _statistics: &Statistics) {}
}

/// The client context of a consumer whose state is `R`: it runs `R`'s
/// rebalance steps in order and commits what they return.
pub struct GroupContext<R> {
    pub state: Arc<Mutex<R>>,
}

impl<R> GroupContext<R> {
    pub fn new(state: Arc<Mutex<R>>) -> Self {
        GroupContext { state }
    }
}

/// Locks a consumer's state. Its holders (the poll loop and the rebalance
/// callback, on one thread) never panic while holding it.
pub fn lock<R>(state: &Mutex<R>) -> MutexGuard<'_, R> {
    state
        .lock()
        .expect("consumer state lock is never poisoned: holders do not panic")
}

impl<R: Rebalance> ClientContext for GroupContext<R> {
    fn stats(&self, statistics: Statistics) {
        lock(&self.state).statistics(&statistics);
    }
}

impl<R: Rebalance> ConsumerContext for GroupContext<R> {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let mut state = lock(&self.state);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let positions = match state.assigned(tpl) {
                    Ok(positions) => positions,
                    Err(error) => {
                        state.failed(error);
                        return;
                    }
                };
                match consumer.assign(tpl) {
                    Ok(()) => commit(consumer, &positions, CommitMode::Async),
                    Err(source) => state.failed(R::kafka_error("assigning partitions", source)),
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                match state.revoked(tpl) {
                    Ok(positions) => commit(consumer, &positions, CommitMode::Sync),
                    Err(error) => state.failed(error),
                }
                if let Err(source) = consumer.unassign() {
                    state.failed(R::kafka_error("unassigning partitions", source));
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance failed; dropping the assignment");
                state.lost();
                if let Err(error) = consumer.unassign() {
                    tracing::warn!(%error, "unassigning after a failed rebalance");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(partition: i32, next_offset: i64) -> Position {
        Position {
            topic: "events".into(),
            partition,
            next_offset,
        }
    }

    #[test]
    fn owed_offsets_go_once_an_interval_has_passed_the_furthest_per_partition() {
        let start = Instant::now();
        let mut commits = OffsetCommits::new(Duration::from_secs(5), start);
        commits.owe(vec![at(0, 100), at(1, 50)]);
        commits.owe(vec![at(0, 90), at(0, 200)]);
        assert!(commits.due(start + Duration::from_secs(4)).is_empty());
        assert_eq!(
            commits.due(start + Duration::from_secs(5)),
            [at(0, 200), at(1, 50)]
        );
        // Nothing owed: nothing due, and the interval runs from the last commit.
        assert!(commits.due(start + Duration::from_secs(20)).is_empty());
        commits.owe(vec![at(1, 60)]);
        assert!(commits.due(start + Duration::from_secs(9)).is_empty());
        assert_eq!(commits.due(start + Duration::from_secs(10)), [at(1, 60)]);
    }

    #[test]
    fn revocation_takes_everything_owed_whenever_it_comes() {
        let start = Instant::now();
        let mut commits = OffsetCommits::new(Duration::from_secs(5), start);
        commits.owe(vec![at(2, 7)]);
        assert_eq!(commits.take(), [at(2, 7)]);
        assert!(commits.take().is_empty());
        assert!(commits.due(start + Duration::from_secs(60)).is_empty());
    }

    #[test]
    fn the_interval_is_the_operators_auto_commit_interval() {
        let interval = |value: Option<&str>| {
            let properties: SecretMap = value
                .map(|v| ("auto.commit.interval.ms", v))
                .into_iter()
                .chain([("sasl.password", "1500")])
                .collect();
            commit_interval(&properties)
        };
        assert_eq!(interval(None), Duration::from_secs(5));
        assert_eq!(interval(Some("1500")), Duration::from_millis(1500));
        // Not a number: librdkafka refuses it when the consumer is created.
        assert_eq!(interval(Some("soon")), Duration::from_secs(5));
    }
}
