//! The Kafka contract tooltrail relies on, checked against the real broker: what `tooltrail
//! simulate` produces arrives once, keyed by user, one user per partition; and a consumer group
//! resumes exactly after its committed offsets.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    time::Duration,
};

use anyhow::{Context as _, Result, bail, ensure};
use rdkafka::{
    Message as _,
    consumer::{CommitMode, Consumer as _, StreamConsumer},
    producer::FutureRecord,
    topic_partition_list::{Offset, TopicPartitionList},
};

use crate::support::{
    BROKER_TIMEOUT, Deadline, committed_offsets, create_topic, group_consumer, high_watermarks,
    kafka_brokers, producer, run_tooltrail, unique_name,
};

const PARTITIONS: i32 = 4;
/// A debug build of the simulator on a busy machine: generous, but bounded.
const SIMULATE_TIMEOUT: Duration = Duration::from_secs(180);
/// Joining a group (a rebalance, maybe a session timeout of the previous member) and reading.
const CONSUME_TIMEOUT: Duration = Duration::from_secs(120);

#[tokio::test]
async fn simulated_events_round_trip_through_a_consumer_group() -> Result<()> {
    let brokers = kafka_brokers();
    let topic = create_topic(&brokers, "round-trip", PARTITIONS).await?;
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("events.jsonl");
    let out = out.to_str().context("temp path is UTF-8")?;

    let simulate = ["simulate", "--users", "50", "--days", "2", "--seed", "11"];
    run_tooltrail(&[&simulate[..], &["--out", out]].concat(), SIMULATE_TIMEOUT).await?;
    run_tooltrail(
        &[&simulate[..], &["--kafka", &brokers, "--topic", &topic]].concat(),
        SIMULATE_TIMEOUT,
    )
    .await?;
    let expected_text = std::fs::read_to_string(out).with_context(|| format!("read {out}"))?;
    let expected: Vec<&str> = expected_text.lines().collect();
    ensure!(
        !expected.is_empty(),
        "`tooltrail simulate --out` wrote no events"
    );

    // The producer has exited, so the watermarks are final: reading up to them reads everything.
    let ends = high_watermarks(&brokers, &topic, PARTITIONS).await?;
    let group = unique_name("round-trip");
    let consumer = group_consumer(&brokers, &group, &topic)?;
    let starts = (0..PARTITIONS).map(|p| (p, 0)).collect();
    let records = consume_to_ends(&consumer, &starts, &ends).await?;
    let next = next_offsets(&records);
    commit(&consumer, &topic, &next)?;
    drop(consumer);

    let committed = committed_offsets(&brokers, &group, &topic, PARTITIONS).await?;
    let want: BTreeMap<i32, Option<i64>> = ends
        .iter()
        .map(|(&p, &end)| (p, (end > 0).then_some(end)))
        .collect();
    assert_eq!(
        committed, want,
        "committed offsets are not the partition ends"
    );

    let diff = multiset_diff(&expected, records.iter().map(|r| r.value.as_str()));
    assert!(
        diff.missing.is_empty() && diff.duplicated.is_empty(),
        "{} events missing (e.g. {:?}), {} duplicated (e.g. {:?}); {} expected, {} consumed",
        diff.missing.len(),
        diff.missing.iter().take(3).collect::<Vec<_>>(),
        diff.duplicated.len(),
        diff.duplicated.iter().take(3).collect::<Vec<_>>(),
        expected.len(),
        records.len(),
    );

    let mut partitions_of_key: HashMap<&str, BTreeSet<i32>> = HashMap::new();
    for record in &records {
        let want_key = user_key(&record.value)?;
        assert_eq!(
            record.key.as_deref(),
            Some(want_key.as_str()),
            "record {}/{} has the wrong key; value: {}",
            record.partition,
            record.offset,
            record.value
        );
        partitions_of_key
            .entry(record.key.as_deref().expect("checked above"))
            .or_default()
            .insert(record.partition);
    }
    let split: Vec<_> = partitions_of_key
        .iter()
        .filter(|(_, partitions)| partitions.len() > 1)
        .collect();
    assert!(
        split.is_empty(),
        "keys spread over several partitions: {split:?}"
    );
    let used: BTreeSet<i32> = records.iter().map(|r| r.partition).collect();
    assert!(
        used.len() > 1,
        "all {} users landed in partitions {used:?}: records are not partitioned by key",
        partitions_of_key.len()
    );
    Ok(())
}

#[tokio::test]
async fn committed_offsets_resume_a_consumer_group() -> Result<()> {
    const FIRST_ROUND: usize = 100;
    const SECOND_ROUND: usize = 50;
    // Not a multiple of FIRST_ROUND: at least one partition is committed part way through.
    const READ_BEFORE_COMMIT: usize = 150;

    let brokers = kafka_brokers();
    let topic = create_topic(&brokers, "resume", PARTITIONS).await?;
    let mut produced = produce_round(&brokers, &topic, "first", FIRST_ROUND).await?;

    let group = unique_name("resume");
    let first = group_consumer(&brokers, &group, &topic)?;
    let deadline = Deadline::after(CONSUME_TIMEOUT);
    let mut read_first = Vec::new();
    while read_first.len() < READ_BEFORE_COMMIT {
        let what = format!(
            "the first consumer to read {READ_BEFORE_COMMIT} records (read {})",
            read_first.len()
        );
        read_first.push(receive(&first, &deadline, &what).await?);
    }
    let committed_by_first = next_offsets(&read_first);
    commit(&first, &topic, &committed_by_first)?;
    drop(first);

    let committed = committed_offsets(&brokers, &group, &topic, PARTITIONS).await?;
    let want: BTreeMap<i32, Option<i64>> = (0..PARTITIONS)
        .map(|p| (p, committed_by_first.get(&p).copied()))
        .collect();
    assert_eq!(
        committed, want,
        "the broker does not hold the offsets just committed"
    );
    assert!(
        committed
            .values()
            .any(|c| c.is_some_and(|c| 0 < c && c < FIRST_ROUND as i64)),
        "no partition was committed part way through: {committed:?}"
    );

    // New records on every partition: the second consumer must read from every partition, and the
    // first record it gets from each shows where it resumed.
    produced.extend(produce_round(&brokers, &topic, "second", SECOND_ROUND).await?);
    let ends = high_watermarks(&brokers, &topic, PARTITIONS).await?;
    let starts: BTreeMap<i32, i64> = committed
        .iter()
        .map(|(&p, &c)| (p, c.unwrap_or(0)))
        .collect();
    let second = group_consumer(&brokers, &group, &topic)?;
    let read_second = consume_to_ends(&second, &starts, &ends).await?;

    for partition in 0..PARTITIONS {
        let offsets = |records: &[Received]| -> Vec<i64> {
            records
                .iter()
                .filter(|r| r.partition == partition)
                .map(|r| r.offset)
                .collect()
        };
        let (start, end) = (starts[&partition], ends[&partition]);
        assert_eq!(
            offsets(&read_first),
            (0..start).collect::<Vec<_>>(),
            "first consumer on partition {partition}: not offsets 0..{start} in order"
        );
        assert_eq!(
            offsets(&read_second),
            (start..end).collect::<Vec<_>>(),
            "second consumer on partition {partition}: did not resume at the committed offset \
             {start} and read on to {end} in order"
        );
    }
    let read: Vec<&str> = read_first
        .iter()
        .chain(&read_second)
        .map(|r| r.value.as_str())
        .collect();
    let expected: Vec<&str> = produced.iter().map(String::as_str).collect();
    let diff = multiset_diff(&expected, read.iter().copied());
    assert!(
        diff.missing.is_empty() && diff.duplicated.is_empty(),
        "across the two consumers: missing {:?}, duplicated {:?}",
        diff.missing,
        diff.duplicated
    );
    Ok(())
}

/// One record as the test saw it.
#[derive(Debug)]
struct Received {
    partition: i32,
    offset: i64,
    key: Option<String>,
    value: String,
}

/// The next record from `consumer`, or an error naming `what` once `deadline` passes.
async fn receive(consumer: &StreamConsumer, deadline: &Deadline, what: &str) -> Result<Received> {
    let left = deadline.remaining(what)?;
    let message = match tokio::time::timeout(left, consumer.recv()).await {
        Ok(message) => message.with_context(|| format!("receive while waiting for {what}"))?,
        Err(_) => bail!("timed out waiting for {what}"),
    };
    let text = |bytes: Option<&[u8]>, part: &str| -> Result<Option<String>> {
        bytes
            .map(|b| String::from_utf8(b.to_vec()))
            .transpose()
            .with_context(|| {
                format!(
                    "{part} of {}/{} is not UTF-8",
                    message.partition(),
                    message.offset()
                )
            })
    };
    Ok(Received {
        partition: message.partition(),
        offset: message.offset(),
        key: text(message.key(), "key")?,
        value: text(message.payload(), "value")?.unwrap_or_default(),
    })
}

/// Reads until the consumer has delivered every partition from `starts` up to `ends`.
async fn consume_to_ends(
    consumer: &StreamConsumer,
    starts: &BTreeMap<i32, i64>,
    ends: &BTreeMap<i32, i64>,
) -> Result<Vec<Received>> {
    let deadline = Deadline::after(CONSUME_TIMEOUT);
    let mut next = starts.clone();
    let mut records = Vec::new();
    while ends
        .iter()
        .any(|(p, end)| next.get(p).copied().unwrap_or(0) < *end)
    {
        let what = format!(
            "the consumer to reach the partition ends {ends:?} (now at {next:?}, {} records)",
            records.len()
        );
        let record = receive(consumer, &deadline, &what).await?;
        let at = next.entry(record.partition).or_insert(0);
        *at = (*at).max(record.offset + 1);
        records.push(record);
    }
    Ok(records)
}

/// For each partition that delivered records, the offset after the last one: what to commit.
fn next_offsets(records: &[Received]) -> BTreeMap<i32, i64> {
    let mut next = BTreeMap::new();
    for record in records {
        let at = next.entry(record.partition).or_insert(0);
        *at = (*at).max(record.offset + 1);
    }
    next
}

/// Commits exactly `offsets` (the next offset to read, per partition) and waits for the broker.
fn commit(consumer: &StreamConsumer, topic: &str, offsets: &BTreeMap<i32, i64>) -> Result<()> {
    let mut list = TopicPartitionList::new();
    for (&partition, &offset) in offsets {
        list.add_partition_offset(topic, partition, Offset::Offset(offset))
            .context("build the commit list")?;
    }
    consumer
        .commit(&list, CommitMode::Sync)
        .with_context(|| format!("commit {offsets:?} on {topic}"))
}

/// Produces `per_partition` records to every partition, keyed by user, and waits for the acks.
/// Returns the values produced.
async fn produce_round(
    brokers: &str,
    topic: &str,
    round: &str,
    per_partition: usize,
) -> Result<Vec<String>> {
    let producer = producer(brokers)?;
    let mut values = Vec::new();
    let mut deliveries = Vec::new();
    for partition in 0..PARTITIONS {
        for i in 0..per_partition {
            let key = format!("tenant-{partition}/user-{}", i % 7);
            let value = format!("{round}-{partition}-{i}");
            let record = FutureRecord::to(topic)
                .partition(partition)
                .key(&key)
                .payload(&value);
            let delivery = producer
                .send_result(record)
                .map_err(|(error, _)| error)
                .with_context(|| format!("enqueue {value}"))?;
            deliveries.push((value.clone(), delivery));
            values.push(value);
        }
    }
    let deadline = Deadline::after(BROKER_TIMEOUT);
    for (value, delivery) in deliveries {
        let what = format!("the broker to acknowledge {value}");
        let left = deadline.remaining(&what)?;
        match tokio::time::timeout(left, delivery).await {
            Err(_) => bail!("timed out waiting for {what}"),
            Ok(Err(_canceled)) => bail!("the producer dropped {value}"),
            Ok(Ok(Err((error, _)))) => bail!("producing {value} failed: {error}"),
            Ok(Ok(Ok(_delivery))) => {}
        }
    }
    Ok(values)
}

/// `<tenant_id>/<user_id>` of a JSON event: the key every event must be produced with.
fn user_key(value: &str) -> Result<String> {
    let event: serde_json::Value = serde_json::from_str(value)
        .with_context(|| format!("record value is not JSON: {value}"))?;
    let field = |name: &str| {
        event[name]
            .as_str()
            .with_context(|| format!("record value has no string {name}: {value}"))
    };
    Ok(format!("{}/{}", field("tenant_id")?, field("user_id")?))
}

struct MultisetDiff<'a> {
    missing: Vec<&'a str>,
    duplicated: Vec<&'a str>,
}

/// What `actual` lacks from `expected` and what it holds more often than `expected`, as multisets.
fn multiset_diff<'a>(
    expected: &[&'a str],
    actual: impl Iterator<Item = &'a str>,
) -> MultisetDiff<'a> {
    let mut counts: HashMap<&str, i64> = HashMap::new();
    for value in expected {
        *counts.entry(value).or_default() += 1;
    }
    for value in actual {
        *counts.entry(value).or_default() -= 1;
    }
    let mut diff = MultisetDiff {
        missing: Vec::new(),
        duplicated: Vec::new(),
    };
    for (value, count) in counts {
        let list = if count > 0 {
            &mut diff.missing
        } else {
            &mut diff.duplicated
        };
        list.extend(std::iter::repeat_n(value, count.unsigned_abs() as usize));
    }
    diff
}
