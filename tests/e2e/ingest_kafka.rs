//! `tooltrail ingest --kafka` against the real broker: every record reaches the lake exactly once
//! across SIGKILLs and consumer-group rebalances; a restart reads from the lake's positions and
//! brings Kafka's committed offsets up to them; a poison record goes to the quarantine without
//! holding up the records behind it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

use crate::support::lake::lake_rows;
use crate::support::{
    BROKER_TIMEOUT, Deadline, committed_offsets, create_topic, high_watermarks, kafka_brokers,
    rewind_group, unique_name, wait_out_killed_member_session,
};

mod harness;
mod scale;

use harness::{
    CATCH_UP, FIRST_COMMIT, IngestSetup, Kill, POLL, QuarantineRow, Simulation, SplitMix64,
    TINY_BATCHES, assert_committed_at_ends, assert_exactly_once, events_committed, lake_rows_now,
    log_writers, metric_sum, orphan_files, partition_metrics, read_quarantine, rebalances,
    valid_event, wait_for_first_commit, wait_for_metric, wait_for_partitions, wait_for_rows,
};

const PARTITIONS: i32 = 4;
/// The crash test produces at least this many events, so that the kills spread over a long load.
const CRASH_TEST_MIN_EVENTS: usize = 200_000;
/// SIGKILLs in the crash test.
const KILLS: usize = 12;
/// Seed of the kill delays; `TOOLTRAIL_TEST_SEED` overrides it to replay another schedule.
const KILL_SEED: u64 = 0x7007_7a11;

#[tokio::test]
async fn kafka_ingest_is_exactly_once_across_repeated_kill_9() -> Result<()> {
    let started = Instant::now();
    let brokers = kafka_brokers();
    let topic = create_topic(&brokers, "crash", PARTITIONS).await?;
    let ingest = IngestSetup::new(&brokers, &topic)?.with_batches(TINY_BATCHES);
    let sim = Simulation {
        users: 450,
        days: 7,
        seed: 41,
    };
    let (expected, ()) =
        tokio::try_join!(sim.event_ids(ingest.dir()), sim.produce(&brokers, &topic))?;
    let ends = high_watermarks(&brokers, &topic, PARTITIONS).await?;
    let produced: i64 = ends.values().sum();
    ensure!(
        produced as usize == expected.len() && expected.len() >= CRASH_TEST_MIN_EVENTS,
        "the topic holds {produced} records ({ends:?}) and the simulation {} events; want the \
         same number, at least {CRASH_TEST_MIN_EVENTS}",
        expected.len()
    );
    eprintln!(
        "produced {produced} events in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let seed = std::env::var("TOOLTRAIL_TEST_SEED")
        .ok()
        .map(|s| s.parse::<u64>().context("TOOLTRAIL_TEST_SEED is a u64"))
        .transpose()?
        .unwrap_or(KILL_SEED);
    let mut rng = SplitMix64(seed);
    let lake = ingest.lake();
    // However fast the machine, no instance may write more than its share before it is killed,
    // so that every kill lands while the load is still coming in.
    let share = (expected.len() / (KILLS + 2)) as u64;
    let mut kills = Vec::with_capacity(KILLS);
    let mut orphans_before = 0;
    for round in 1..=KILLS {
        let process = ingest.start().await?;
        // Kill only once this instance holds partitions and has made a commit, so that the kill
        // lands in the middle of the stream rather than in the group join.
        let committing = wait_for_first_commit(&process, &lake, expected.len()).await;
        let delay = Duration::from_millis(rng.between(200, 2000));
        let kill_at = Instant::now() + delay;
        while Instant::now() < kill_at && events_committed(&process).await? < share {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let rows = lake_rows_now(&lake).await?;
        let log = process.stderr();
        process.kill_9().await?;
        committing.with_context(|| format!("kill round {round}; the instance logged:\n{log}"))?;
        wait_out_killed_member_session().await;
        // New files no commit names show a kill that landed inside a commit (after its files
        // were written, before its log entry).
        let orphans = orphan_files(&lake)?;
        kills.push(Kill {
            delay,
            rows,
            orphans: orphans.saturating_sub(orphans_before),
        });
        orphans_before = orphans;
    }
    let mid_load = kills.iter().filter(|k| k.rows < expected.len()).count();
    let mid_commit = kills.iter().filter(|k| k.orphans > 0).count();
    let schedule: Vec<String> = kills
        .iter()
        .map(|k| {
            format!(
                "{}ms: {} rows, {} orphan files",
                k.delay.as_millis(),
                k.rows,
                k.orphans
            )
        })
        .collect();
    eprintln!(
        "seed {seed:#x}: {} kills, {mid_load} with the lake incomplete, {mid_commit} inside a \
         commit: {schedule:?}",
        kills.len()
    );
    ensure!(
        mid_load == KILLS,
        "only {mid_load} of {KILLS} kills hit while the lake was incomplete"
    );

    let last = ingest.start().await?;
    let caught_up = wait_for_rows(&lake, expected.len(), CATCH_UP).await;
    let log = last.stderr();
    last.stop().await?;
    caught_up.with_context(|| format!("the last instance logged:\n{log}"))?;
    assert_exactly_once(&expected, &lake).await?;
    assert_committed_at_ends(&brokers, ingest.group(), &topic, &ends).await?;
    eprintln!(
        "exactly once after {KILLS} kills; test took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::test]
async fn a_second_instance_joining_and_leaving_mid_load_loses_and_duplicates_nothing() -> Result<()>
{
    let started = Instant::now();
    let brokers = kafka_brokers();
    let topic = create_topic(&brokers, "rebalance", PARTITIONS).await?;
    let ingest = IngestSetup::new(&brokers, &topic)?
        .with_default_session()?
        .with_batches(TINY_BATCHES);
    let lake = ingest.lake();
    // The load comes in two parts: the first while A runs alone (B joins during it), the second
    // once B holds partitions, so that B has work whatever the pace of the first rebalance. (With
    // one part, A had once consumed all of it before Tansu's rebalance rounds gave B its
    // partitions: B had nothing left to commit.)
    let first = Simulation {
        users: 300,
        days: 7,
        seed: 43,
    };
    let second = Simulation {
        users: 150,
        days: 7,
        seed: 44,
    };
    let mut expected = first.event_ids(ingest.dir()).await?;
    let second_ids = second.event_ids(ingest.dir()).await?;
    let distinct: std::collections::HashSet<&String> = expected.iter().chain(&second_ids).collect();
    ensure!(
        distinct.len() == expected.len() + second_ids.len(),
        "the two simulations share event ids: pick seeds that do not"
    );
    let first_len = expected.len();
    expected.extend(second_ids);

    let a = ingest.start().await?;
    let producing = {
        let (brokers, topic) = (brokers.clone(), topic.clone());
        tokio::spawn(async move { first.produce(&brokers, &topic).await })
    };
    // B joins once A has written a fifth of the first part.
    wait_for_rows(&lake, first_len / 5, CATCH_UP)
        .await
        .with_context(|| format!("A logged:\n{}", a.stderr()))?;
    let b = ingest.start().await?;
    wait_for_partitions(&b, FIRST_COMMIT)
        .await
        .with_context(|| format!("B logged:\n{}\nA logged:\n{}", b.stderr(), a.stderr()))?;
    producing.await.context("join the producer")??;
    let producing = {
        let (brokers, topic) = (brokers.clone(), topic.clone());
        tokio::spawn(async move { second.produce(&brokers, &topic).await })
    };
    // B leaves once it has committed a share of its own, so that both rebalances split real work.
    let b_events = match wait_for_metric(&b, 5_000, FIRST_COMMIT).await {
        Ok(events) => events,
        Err(e) => {
            return Err(e.context(format!(
                "B logged:\n{}\nB's partitions:\n{}\nA logged:\n{}\nA's partitions:\n{}",
                b.stderr(),
                partition_metrics(&b).await,
                a.stderr(),
                partition_metrics(&a).await
            )));
        }
    };
    let rows_when_b_left = lake_rows_now(&lake).await?;
    let b_log = b.stderr();
    b.stop().await?;
    producing.await.context("join the producer")??;
    ensure!(
        rows_when_b_left < expected.len(),
        "the load ({} events) was all in the lake before B left: raise the number of simulated \
         users so that A has work left after the second rebalance",
        expected.len()
    );

    let caught_up = wait_for_rows(&lake, expected.len(), CATCH_UP).await;
    let a_log = a.stderr();
    let a_partitions = partition_metrics(&a).await;
    let a_assigned = metric_sum(&a, "tooltrail_ingest_partitions_assigned").await;
    a.stop().await?;
    caught_up.with_context(|| format!("A logged:\n{a_log}\nA's partitions:\n{a_partitions}"))?;
    ensure!(
        a_assigned? == u64::from(PARTITIONS.unsigned_abs()),
        "A, alone in the group again, should report all {PARTITIONS} partitions assigned:\n\
         {a_partitions}"
    );
    assert_exactly_once(&expected, &lake)
        .await
        .with_context(|| {
            format!(
                "A's rebalances:\n{}\nB's rebalances:\n{}",
                rebalances(&a_log),
                rebalances(&b_log)
            )
        })?;
    let ends = high_watermarks(&brokers, &topic, PARTITIONS).await?;
    assert_committed_at_ends(&brokers, ingest.group(), &topic, &ends).await?;

    // Both instances wrote, and A wrote again after B had left. Writers are `host:pid`; A wrote
    // the first transaction, long before B started.
    let writers = log_writers(&lake)?;
    let a_writer = writers
        .first()
        .map(|(_, w)| w.clone())
        .context("an empty log")?;
    let (by_a, by_b): (Vec<_>, Vec<_>) = writers.iter().partition(|(_, w)| *w == a_writer);
    let by_a: Vec<u64> = by_a.iter().map(|(seq, _)| *seq).collect();
    let by_b: Vec<u64> = by_b.iter().map(|(seq, _)| *seq).collect();
    let b_writers: std::collections::BTreeSet<&str> = writers
        .iter()
        .filter(|(_, w)| *w != a_writer)
        .map(|(_, w)| w.as_str())
        .collect();
    ensure!(
        b_writers.len() == 1
            && by_a
                .last()
                .is_some_and(|a| by_b.last().is_some_and(|b| a > b)),
        "want transactions by B ({b_events} events by its metrics; writers {b_writers:?}) and by \
         A ({a_writer}) after B's last one; A wrote {by_a:?}, B wrote {by_b:?}"
    );
    eprintln!(
        "{} events exactly once across two rebalances; A wrote {} transactions, B {}; test took \
         {:.1}s",
        expected.len(),
        by_a.len(),
        by_b.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::test]
async fn a_poison_record_is_quarantined_without_stalling_its_partition() -> Result<()> {
    let started = Instant::now();
    let brokers = kafka_brokers();
    let topic = create_topic(&brokers, "poison", 2).await?;

    let valid = |n: usize| valid_event(&format!("poison-ok-{n}"), &format!("user-{}", n % 3));
    let mut wrong_type = valid(1000);
    wrong_type["status"] = json!("200");
    let mut missing = valid(1001);
    missing
        .as_object_mut()
        .expect("an event is an object")
        .remove("event_id");
    let mut bad_time = valid(1002);
    bad_time["time"] = json!("yesterday at noon");
    let too_large = format!(
        "{{\"schema_version\":1,\"pad\":\"{}\"}}",
        "x".repeat(2 << 20)
    );
    let poison: Vec<(&str, Vec<u8>)> = vec![
        ("not_utf8", b"{\"event_id\":\"\xff\xfe\"}".to_vec()),
        ("not_json", b"{\"event_id\": oops".to_vec()),
        ("wrong_type", wrong_type.to_string().into_bytes()),
        ("too_large", too_large.into_bytes()),
        ("missing_field", missing.to_string().into_bytes()),
        ("not_object", b"[1, 2, 3]".to_vec()),
        // Last on its partition: the committed offset has to move past a rejected record too.
        ("bad_time", bad_time.to_string().into_bytes()),
    ];

    // Partition 0: valid, poison, valid, poison, ... ending with a poison record.
    // Partition 1: valid events only.
    let mut records: Vec<(i32, Option<&str>, Vec<u8>)> = Vec::new();
    let mut expected_ids = Vec::new();
    let mut n = 0;
    for (reason, bytes) in &poison {
        for _ in 0..3 {
            let event = valid(n);
            expected_ids.push(event["event_id"].as_str().expect("a string id").to_owned());
            records.push((0, None, event.to_string().into_bytes()));
            n += 1;
        }
        records.push((0, Some(reason), bytes.clone()));
    }
    for _ in 0..5 {
        let event = valid(n);
        expected_ids.push(event["event_id"].as_str().expect("a string id").to_owned());
        records.push((1, None, event.to_string().into_bytes()));
        n += 1;
    }
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("acks", "all")
        .set("message.max.bytes", (8 << 20).to_string())
        .create()
        .context("create the producer")?;
    // (partition, offset) -> (reason, raw bytes) of every poison record.
    let mut quarantined_expected: BTreeMap<(i32, i64), (&str, Vec<u8>)> = BTreeMap::new();
    for (partition, reason, bytes) in &records {
        let record = FutureRecord::<str, [u8]>::to(&topic)
            .partition(*partition)
            .key("acme/poison")
            .payload(bytes);
        let delivery = tokio::time::timeout(BROKER_TIMEOUT, producer.send(record, BROKER_TIMEOUT))
            .await
            .context("timed out producing")?
            .map_err(|(e, _)| e)
            .with_context(|| {
                format!(
                    "produce a {}-byte record ({}) to {topic}/{partition}",
                    bytes.len(),
                    reason.unwrap_or("valid")
                )
            })?;
        ensure!(
            delivery.partition == *partition,
            "went to partition {}",
            delivery.partition
        );
        if let Some(reason) = reason {
            quarantined_expected.insert((*partition, delivery.offset), (*reason, bytes.clone()));
        }
    }
    let ends = high_watermarks(&brokers, &topic, 2).await?;

    let ingest = IngestSetup::new(&brokers, &topic)?;
    let lake = ingest.lake();
    let process = ingest.start().await?;
    let deadline = Deadline::after(FIRST_COMMIT);
    let what = format!(
        "{} events and {} quarantined records in the lake and the group's offsets at {ends:?}",
        expected_ids.len(),
        poison.len()
    );
    loop {
        let events = lake_rows_now(&lake).await?;
        let quarantined = lake_rows(&lake.join("quarantine"))?;
        let committed = committed_offsets(&brokers, ingest.group(), &topic, 2).await?;
        let at_ends = ends
            .iter()
            .all(|(p, end)| committed.get(p) == Some(&Some(*end)));
        if events >= expected_ids.len() && quarantined >= poison.len() && at_ends {
            break;
        }
        if let Err(e) = deadline.remaining(&what) {
            bail!(
                "{e}: {events} events, {quarantined} quarantined, offsets {committed:?}; \
                 ingest logged:\n{}",
                process.stderr()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let metrics = process.get_text("/metrics").await?;
    process.stop().await?;

    assert_exactly_once(&expected_ids, &lake).await?;
    let rows = read_quarantine(&lake)?;
    let found: BTreeMap<(i32, i64), &QuarantineRow> =
        rows.iter().map(|r| ((r.partition, r.offset), r)).collect();
    ensure!(
        rows.len() == found.len(),
        "a position is quarantined twice: {:?}",
        rows.iter()
            .map(|r| (r.partition, r.offset))
            .collect::<Vec<_>>()
    );
    for ((partition, offset), (reason, raw)) in &quarantined_expected {
        let row = found
            .get(&(*partition, *offset))
            .with_context(|| format!("the {reason} record at {partition}/{offset} is not in the quarantine; it holds {found:?}"))?;
        ensure!(
            row.reason == *reason && !row.error.is_empty(),
            "{partition}/{offset}: want reason {reason} with an error message, got {row:?}"
        );
        ensure!(
            row.raw == *raw,
            "{partition}/{offset} ({reason}): the quarantine holds {} bytes, not the {} produced",
            row.raw.len(),
            raw.len()
        );
        ensure!(
            row.topic == topic,
            "{partition}/{offset}: source_name {:?}",
            row.topic
        );
    }
    ensure!(
        found.len() == quarantined_expected.len(),
        "the quarantine holds {} records, {} were poison: {found:?}",
        found.len(),
        quarantined_expected.len()
    );
    let wrong_type_row = found
        .values()
        .find(|r| r.reason == "wrong_type")
        .context("a wrong_type row")?;
    ensure!(
        wrong_type_row.error.contains("status"),
        "the error of the wrong_type record does not name the field: {wrong_type_row:?}"
    );
    for (reason, _) in &poison {
        let line = format!("tooltrail_ingest_quarantined_total{{reason=\"{reason}\"}} 1");
        ensure!(
            metrics.lines().any(|l| l == line),
            "/metrics lacks `{line}`:\n{metrics}"
        );
    }
    eprintln!(
        "{} events and {} poison records; test took {:.1}s",
        expected_ids.len(),
        poison.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::test]
async fn a_restart_takes_its_positions_from_the_lake_and_brings_kafka_up_to_date() -> Result<()> {
    let brokers = kafka_brokers();
    let topic = create_topic(&brokers, "catch-up", PARTITIONS).await?;
    let ingest = IngestSetup::new(&brokers, &topic)?;
    let lake = ingest.lake();
    let sim = Simulation {
        users: 20,
        days: 2,
        seed: 47,
    };
    let (expected, ()) =
        tokio::try_join!(sim.event_ids(ingest.dir()), sim.produce(&brokers, &topic))?;
    let ends = high_watermarks(&brokers, &topic, PARTITIONS).await?;
    let first = ingest.start().await?;
    let caught_up = wait_for_rows(&lake, expected.len(), CATCH_UP).await;
    let log = first.stderr();
    first.stop().await?;
    caught_up.with_context(|| format!("ingest logged:\n{log}"))?;

    // Kafka's offsets rewound to the start stand for a crash between the lake's commit and
    // Kafka's: the lake, not Kafka, decides where reading resumes, and Kafka is told.
    let group = ingest.group().to_owned();
    rewind_group(&brokers, &group, &topic, PARTITIONS, 0).await?;
    ensure!(
        committed_offsets(&brokers, &group, &topic, PARTITIONS)
            .await?
            .values()
            .all(|o| *o == Some(0)),
        "the group was not rewound"
    );
    let second = ingest.start().await?;
    let deadline = Deadline::after(FIRST_COMMIT);
    let want: BTreeMap<i32, Option<i64>> = ends.iter().map(|(p, e)| (*p, Some(*e))).collect();
    loop {
        let committed = committed_offsets(&brokers, &group, &topic, PARTITIONS).await?;
        if committed == want {
            break;
        }
        if let Err(e) = deadline.remaining(&format!("group {group} to commit {want:?}")) {
            bail!(
                "{e}; it has {committed:?}; ingest logged:\n{}",
                second.stderr()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    let metrics_events = events_committed(&second).await?;
    second.stop().await?;
    ensure!(
        metrics_events == 0,
        "the second instance wrote {metrics_events} events that the lake already held"
    );
    assert_exactly_once(&expected, &lake).await
}

#[tokio::test]
async fn a_poison_record_is_also_forwarded_to_the_dead_letter_topic_with_its_reason() -> Result<()>
{
    use rdkafka::Message;
    use rdkafka::message::Headers;

    let brokers = kafka_brokers();
    let topic = create_topic(&brokers, "dlq-source", 1).await?;
    let dead_letters = create_topic(&brokers, "dlq", 1).await?;
    let producer = crate::support::producer(&brokers)?;
    let valid = valid_event("dlq-ok-1", "user-1").to_string();
    let poison: &[u8] = b"{\"event_id\": oops";
    let mut poison_offset = None;
    for (payload, is_poison) in [(valid.as_bytes(), false), (poison, true)] {
        let delivery = producer
            .send(
                FutureRecord::<str, [u8]>::to(&topic)
                    .key("acme/mallory")
                    .payload(payload),
                BROKER_TIMEOUT,
            )
            .await
            .map_err(|(e, _)| e)
            .context("produce")?;
        if is_poison {
            poison_offset = Some(delivery.offset);
        }
    }
    let poison_offset = poison_offset.context("the poison record was produced")?;

    // The env of the ingest process: small batches, and the dead-letter topic.
    let env: &'static [(&'static str, &'static str)] = Box::leak(Box::new([
        ("TOOLTRAIL__INGEST__MAX_BATCH_DELAY", "200ms"),
        (
            "TOOLTRAIL__KAFKA__DEAD_LETTER_TOPIC",
            Box::leak(dead_letters.clone().into_boxed_str()) as &'static str,
        ),
    ]));
    let ingest = IngestSetup::new(&brokers, &topic)?.with_batches(env);
    let process = ingest.start().await?;

    let consumer =
        crate::support::group_consumer(&brokers, &unique_name("dlq-reader"), &dead_letters)?;
    let message = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
        .await
        .with_context(|| {
            format!(
                "nothing on the dead-letter topic within 60 s; ingest logged:\n{}",
                process.stderr()
            )
        })?
        .context("read the dead-letter topic")?;
    ensure!(
        message.payload() == Some(poison),
        "the raw bytes travel as they came"
    );
    ensure!(
        message.key() == Some(b"acme/mallory".as_slice()),
        "the key is kept"
    );
    let headers = message.headers().context("dead letters carry headers")?;
    let header = |name: &str| -> Option<String> {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    ensure!(
        header("tooltrail.reason").as_deref() == Some("not_json"),
        "{:?}",
        header("tooltrail.reason")
    );
    ensure!(
        header("tooltrail.source") == Some(format!("{topic}/0/{poison_offset}")),
        "{:?}",
        header("tooltrail.source")
    );
    ensure!(header("tooltrail.error").is_some_and(|e| !e.is_empty()));
    // It is in the quarantine too: the dead-letter topic is a copy, not the record of truth.
    let deadline = Deadline::after(Duration::from_secs(30));
    while lake_rows(&ingest.lake().join("quarantine"))? < 1 {
        deadline.remaining("the poison record in the quarantine")?;
        tokio::time::sleep(POLL).await;
    }
    process.stop().await?;
    Ok(())
}
