//! Helpers shared by the end-to-end tests: the broker address, unique topics, consumers, deadlines
//! and running the real binary.

pub mod lake;
pub mod process;

use std::{
    collections::BTreeMap,
    process::Output,
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result, bail};
use rdkafka::{
    ClientConfig,
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    consumer::{BaseConsumer, Consumer as _, StreamConsumer},
    producer::FutureProducer,
    topic_partition_list::{Offset, TopicPartitionList},
};

/// How long a broker round trip (create a topic, fetch metadata, commit) may take.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(30);

/// The consumer group session timeout the kill tests give the instances they SIGKILL: a killed
/// member never leaves its group, so the coordinator only hands its partitions on once this much
/// time has passed without its heartbeat.
pub const GROUP_SESSION_TIMEOUT: Duration = Duration::from_millis(6000);

/// The `[kafka.properties]` lines that set [`GROUP_SESSION_TIMEOUT`] (and a heartbeat well inside
/// it) in a tooltrail config.
pub fn group_session_properties() -> String {
    format!(
        "\"session.timeout.ms\" = \"{}\"\n\"heartbeat.interval.ms\" = \"500\"\n",
        GROUP_SESSION_TIMEOUT.as_millis()
    )
}

/// After a SIGKILL, waits until the killed member's group session has expired, so that the next
/// instance joins a group the coordinator no longer counts the dead member in.
///
/// Real Kafka copes with a restart inside the session as well: the group rebalances again once
/// the dead member expires. Tansu 0.6.0 does not always. Seen in CI: a restarted instance was
/// assigned no partitions beside the dead member (`partitions assigned ... partitions=[]`) and was
/// never offered any in the next 90 s. Its source shows a way there: the group-level
/// `Wrapper::missed_heartbeat`, run before each SyncGroup and after each heartbeat, drops an
/// expired member and turns the group Formed -> Forming, with no leader and the same generation;
/// the Forming state's heartbeat then finds nobody left to drop and answers "no error" rather
/// than "rebalance in progress", so the live member is never told to rejoin. Joining after the
/// session has run out takes that path away; what the kill tests check, exactly once across
/// SIGKILLs, does not depend on how soon the next instance starts.
pub async fn wait_out_killed_member_session() {
    tokio::time::sleep(GROUP_SESSION_TIMEOUT + Duration::from_millis(500)).await;
}

/// The broker under test, `host:port`, from `TOOLTRAIL_TEST_KAFKA`.
///
/// Panics when it is unset: a Kafka test that skips itself could never fail.
pub fn kafka_brokers() -> String {
    match std::env::var("TOOLTRAIL_TEST_KAFKA") {
        Ok(brokers) if !brokers.trim().is_empty() => brokers,
        _ => panic!(
            "TOOLTRAIL_TEST_KAFKA is not set: start the broker with `scripts/kafka-broker.sh start` \
             and `eval $(scripts/kafka-broker.sh env)`, or run `scripts/test`"
        ),
    }
}

/// A name no other test or test run uses: `tooltrail-e2e-<label>-<pid>-<nanos>-<n>`.
pub fn unique_name(label: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("tooltrail-e2e-{label}-{}-{nanos}-{n}", std::process::id())
}

/// A point in time after which a wait gives up with a message saying what it waited for.
#[derive(Clone, Copy, Debug)]
pub struct Deadline {
    at: Instant,
    limit: Duration,
}

impl Deadline {
    pub fn after(limit: Duration) -> Self {
        Self {
            at: Instant::now() + limit,
            limit,
        }
    }

    /// The time left, or an error naming `what` once the deadline has passed.
    pub fn remaining(&self, what: &str) -> Result<Duration> {
        match self.at.checked_duration_since(Instant::now()) {
            Some(left) if !left.is_zero() => Ok(left),
            _ => bail!("timed out after {:?} waiting for {what}", self.limit),
        }
    }
}

/// Creates a topic named from `label` with `partitions` partitions and waits until the broker's
/// metadata shows all of them. Returns the topic name.
pub async fn create_topic(brokers: &str, label: &str, partitions: i32) -> Result<String> {
    let topic = unique_name(label);
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("create the admin client")?;
    let options = AdminOptions::new().operation_timeout(Some(BROKER_TIMEOUT));
    let results = tokio::time::timeout(
        BROKER_TIMEOUT,
        admin.create_topics(
            &[NewTopic::new(
                &topic,
                partitions,
                TopicReplication::Fixed(1),
            )],
            &options,
        ),
    )
    .await
    .with_context(|| format!("timed out after {BROKER_TIMEOUT:?} creating topic {topic}"))?
    .with_context(|| format!("create topic {topic}"))?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((name, code)) => bail!("broker refused to create topic {name}: {code:?}"),
        }
    }

    let deadline = Deadline::after(BROKER_TIMEOUT);
    let what = format!("metadata to show topic {topic} with {partitions} partitions");
    loop {
        let left = deadline.remaining(&what)?;
        let seen = {
            let metadata = admin
                .inner()
                .fetch_metadata(Some(&topic), left.min(Duration::from_secs(5)));
            match metadata {
                Ok(metadata) => metadata
                    .topics()
                    .iter()
                    .find(|t| t.name() == topic && t.error().is_none())
                    .map(|t| {
                        t.partitions()
                            .iter()
                            .filter(|p| p.error().is_none())
                            .count()
                    }),
                Err(_) => None,
            }
        };
        if seen == Some(partitions as usize) {
            return Ok(topic);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A consumer in `group` subscribed to `topic`, reading from the start, committing only by hand.
pub fn group_consumer(brokers: &str, group: &str, topic: &str) -> Result<StreamConsumer> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .create()
        .context("create the group consumer")?;
    consumer
        .subscribe(&[topic])
        .with_context(|| format!("subscribe to {topic}"))?;
    Ok(consumer)
}

/// A producer that waits for the broker's acknowledgement of every record.
pub fn producer(brokers: &str) -> Result<FutureProducer> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("acks", "all")
        .create()
        .context("create the producer")
}

/// The high watermark (next offset to be written) of each partition of `topic`.
pub async fn high_watermarks(
    brokers: &str,
    topic: &str,
    partitions: i32,
) -> Result<BTreeMap<i32, i64>> {
    let brokers = brokers.to_owned();
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .create()
            .context("create the watermark client")?;
        (0..partitions)
            .map(|partition| {
                let (_low, high) = client
                    .fetch_watermarks(&topic, partition, BROKER_TIMEOUT)
                    .with_context(|| format!("fetch watermarks of {topic}/{partition}"))?;
                Ok((partition, high))
            })
            .collect()
    })
    .await
    .context("join the watermark task")?
}

/// The offsets committed by `group` on each partition of `topic`; `None` where nothing is committed.
pub async fn committed_offsets(
    brokers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> Result<BTreeMap<i32, Option<i64>>> {
    let (brokers, group, topic) = (brokers.to_owned(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        // A member of the group that never subscribes: it can read the group's offsets without
        // joining it and causing a rebalance.
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .context("create the offset reader")?;
        let mut list = TopicPartitionList::new();
        for partition in 0..partitions {
            list.add_partition(&topic, partition);
        }
        let committed = client
            .committed_offsets(list, BROKER_TIMEOUT)
            .with_context(|| format!("fetch the offsets of group {group}"))?;
        let mut offsets = BTreeMap::new();
        for elem in committed.elements_for_topic(&topic) {
            let partition = elem.partition();
            elem.error()
                .with_context(|| format!("group {group} offset on {topic}/{partition}"))?;
            let offset = match elem.offset() {
                Offset::Offset(offset) => Some(offset),
                Offset::Invalid => None,
                other => bail!("group {group} has offset {other:?} on {topic}/{partition}"),
            };
            offsets.insert(partition, offset);
        }
        Ok(offsets)
    })
    .await
    .context("join the offset task")?
}

/// Commits `offset` for `group` on every partition of `topic`, as a member that never joins: what
/// Kafka holds after a crash between a commit to the lake and the commit to Kafka, or after an
/// operator rewound the group.
pub async fn rewind_group(
    brokers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
    offset: i64,
) -> Result<()> {
    let (brokers, group, topic) = (brokers.to_owned(), group.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let client: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &brokers)
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .create()
            .context("create the offset writer")?;
        let mut list = TopicPartitionList::new();
        for partition in 0..partitions {
            list.add_partition_offset(&topic, partition, Offset::Offset(offset))?;
        }
        client
            .commit(&list, rdkafka::consumer::CommitMode::Sync)
            .with_context(|| format!("rewind group {group} on {topic} to {offset}"))
    })
    .await
    .context("join the offset task")?
}

/// Runs the real `tooltrail` binary with `args`; fails with its stderr unless it exits 0 within
/// `limit`.
pub async fn run_tooltrail(args: &[&str], limit: Duration) -> Result<Output> {
    process::run_tooltrail_env(args, &[], limit).await
}
