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
//! - a partition with no record of its own starts at the earliest offset.

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
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
