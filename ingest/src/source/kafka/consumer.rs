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
//! - the rebalance callback is ours ([`GroupContext`]): on assignment the
//!   consumer positions the new partitions from its own record, on
//!   revocation it makes what it consumed durable before they go, and a
//!   failure inside the callback is kept for the poll loop to return.

use std::sync::{Arc, Mutex, MutexGuard};

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
