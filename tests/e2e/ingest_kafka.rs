//! `tooltrail ingest --kafka` against the real broker: every record reaches the lake exactly once
//! across SIGKILLs and consumer-group rebalances, and a poison record goes to the quarantine
//! without holding up the records behind it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail, ensure};
use arrow::array::{Array, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use rdkafka::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::support::lake::{lake_rows, parquet_files, read_event_ids};
use crate::support::process::{Tooltrail, path_str};
use crate::support::{
    BROKER_TIMEOUT, Deadline, committed_offsets, create_topic, high_watermarks, kafka_brokers,
    run_tooltrail, unique_name,
};

const PARTITIONS: i32 = 4;
/// A debug build of the simulator producing a few hundred thousand events on a busy machine.
const SIMULATE_TIMEOUT: Duration = Duration::from_secs(300);
/// Catching up with everything produced after the last crash or rebalance.
const CATCH_UP: Duration = Duration::from_secs(300);
/// Joining the group (after a killed member's session expires) and committing a first batch.
const FIRST_COMMIT: Duration = Duration::from_secs(90);
/// How often the tests look at the lake or the metrics while waiting.
const POLL: Duration = Duration::from_millis(250);

/// Small transactions, so that a crash or a rebalance lands among many commits.
const SMALL_BATCHES: &[(&str, &str)] = &[
    ("TOOLTRAIL__INGEST__MAX_BATCH_RECORDS", "5000"),
    ("TOOLTRAIL__INGEST__MAX_BATCH_DELAY", "200ms"),
];

/// Events to produce for the crash test; the brief asks for at least this many.
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
    let ingest = IngestSetup::new(&brokers, &topic)?;
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
    let mut kills = Vec::with_capacity(KILLS);
    for round in 1..=KILLS {
        let process = ingest.start().await?;
        // Kill only once this instance holds partitions and has made a commit, so that the kill
        // lands in the middle of the stream rather than in the group join.
        let committing = wait_for_first_commit(&process, &lake, expected.len()).await;
        let delay = Duration::from_millis(rng.between(200, 2000));
        tokio::time::sleep(delay).await;
        let rows = lake_rows_now(&lake).await?;
        let log = process.stderr();
        process.kill_9().await?;
        committing.with_context(|| format!("kill round {round}; the instance logged:\n{log}"))?;
        kills.push((delay, rows));
    }
    let mid_load = kills
        .iter()
        .filter(|(_, rows)| *rows < expected.len())
        .count();
    eprintln!(
        "seed {seed:#x}: {} kills ({mid_load} with the lake incomplete), (delay, lake rows) \
         {kills:?}",
        kills.len()
    );
    ensure!(
        mid_load >= KILLS / 2,
        "only {mid_load} of {KILLS} kills hit while the lake was incomplete: the load is too \
         small for this machine, raise the number of simulated users"
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
    let ingest = IngestSetup::new(&brokers, &topic)?;
    let lake = ingest.lake();
    let sim = Simulation {
        users: 300,
        days: 7,
        seed: 43,
    };
    let expected = sim.event_ids(ingest.dir()).await?;

    let a = ingest.start().await?;
    let producing = {
        let (brokers, topic) = (brokers.clone(), topic.clone());
        tokio::spawn(async move { sim.produce(&brokers, &topic).await })
    };
    // B joins once A has written a fifth of the load.
    wait_for_rows(&lake, expected.len() / 5, CATCH_UP)
        .await
        .with_context(|| format!("A logged:\n{}", a.stderr()))?;
    let b = ingest.start().await?;
    // B leaves once it has committed a share of its own, so that both rebalances split real work.
    let b_events = wait_for_metric(&b, 10_000, FIRST_COMMIT)
        .await
        .with_context(|| format!("B logged:\n{}\nA logged:\n{}", b.stderr(), a.stderr()))?;
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
    a.stop().await?;
    caught_up.with_context(|| format!("A logged:\n{a_log}"))?;
    eprintln!(
        "DEBUG A:\n{}\nDEBUG B:\n{}",
        rebalances(&a_log),
        rebalances(&b_log)
    );
    assert_exactly_once(&expected, &lake).await?;
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

    // A group with no offsets in Kafka stands for a crash between the lake's commit and Kafka's:
    // the lake, not Kafka, decides where reading resumes, and Kafka is told.
    let group = unique_name("catch-up");
    let second = ingest.start_in_group(&group).await?;
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

/// A topic, a consumer group and a lake, and how to run `tooltrail ingest` on them.
struct IngestSetup {
    brokers: String,
    topic: String,
    group: String,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl IngestSetup {
    fn new(brokers: &str, topic: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("tooltrail.toml");
        // A member killed with SIGKILL never leaves the group: the coordinator hands its
        // partitions to the restarted instance only once its session has expired (librdkafka's
        // default is 45 s).
        std::fs::write(
            &config,
            format!(
                "[kafka]\nbrokers = {brokers:?}\ntopic = {topic:?}\n\n[kafka.properties]\n\
                 \"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"500\"\n"
            ),
        )?;
        Ok(Self {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            group: unique_name("ingest"),
            dir,
            config,
        })
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn lake(&self) -> PathBuf {
        self.dir.path().join("lake")
    }

    fn group(&self) -> &str {
        &self.group
    }

    /// Starts `tooltrail ingest --kafka` with small batches; returns once it listens.
    async fn start(&self) -> Result<Tooltrail> {
        self.start_in_group(&self.group).await
    }

    /// Starts an instance in another consumer group, on the same lake.
    async fn start_in_group(&self, group: &str) -> Result<Tooltrail> {
        let lake = self.lake();
        Tooltrail::start(
            &[
                "--config",
                path_str(&self.config)?,
                "ingest",
                "--kafka",
                &self.brokers,
                "--topic",
                &self.topic,
                "--group",
                group,
                "--lake",
                path_str(&lake)?,
                "--listen",
                "127.0.0.1:0",
            ],
            self.dir.path(),
            SMALL_BATCHES,
        )
        .await
    }
}

/// `tooltrail simulate` settings; the same settings give the same events.
#[derive(Clone, Copy)]
struct Simulation {
    users: usize,
    days: u32,
    seed: u64,
}

impl Simulation {
    /// Arguments shared by `--out` and `--kafka`. The period ends yesterday, so that every event
    /// lies inside ingest's accepted time window whenever the test runs.
    fn args(&self) -> Vec<String> {
        let start = chrono::Utc::now().date_naive() - chrono::Days::new(u64::from(self.days) + 1);
        [
            "simulate",
            "--users",
            &self.users.to_string(),
            "--days",
            &self.days.to_string(),
            "--seed",
            &self.seed.to_string(),
            "--start",
            &start.format("%Y-%m-%d").to_string(),
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// The `event_id` of every event the simulation produces, from its `--out` file in `dir`.
    async fn event_ids(&self, dir: &Path) -> Result<Vec<String>> {
        let out = dir.join(format!("simulated-{}.jsonl", self.seed));
        let mut args = self.args();
        args.extend(["--out".to_owned(), path_str(&out)?.to_owned()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_tooltrail(&args, SIMULATE_TIMEOUT).await?;
        tokio::task::spawn_blocking(move || {
            #[derive(Deserialize)]
            struct Id<'a> {
                event_id: &'a str,
            }
            let text =
                std::fs::read_to_string(&out).with_context(|| format!("read {}", out.display()))?;
            let mut ids = Vec::new();
            for line in text.lines() {
                let id: Id = serde_json::from_str(line)
                    .with_context(|| format!("a simulated event without an event_id: {line}"))?;
                ids.push(id.event_id.to_owned());
            }
            let _ = std::fs::remove_file(&out);
            Ok(ids)
        })
        .await
        .context("join the reader")?
    }

    /// Produces the simulation to `topic`.
    async fn produce(&self, brokers: &str, topic: &str) -> Result<()> {
        let mut args = self.args();
        args.extend(["--kafka", brokers, "--topic", topic].map(str::to_owned));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_tooltrail(&args, SIMULATE_TIMEOUT).await?;
        Ok(())
    }
}

/// A valid event, timed now.
fn valid_event(id: &str, user: &str) -> Value {
    json!({
        "schema_version": 1, "event_id": id, "time": chrono::Utc::now().to_rfc3339(),
        "tenant_id": "acme", "user_id": user, "server": "github", "method": "tools/call",
        "tool": "create_issue", "decision": "allow", "status": 200
    })
}

/// Rows in `<lake>/events`, read off the blocking thread.
async fn lake_rows_now(lake: &Path) -> Result<usize> {
    let events = lake.join("events");
    tokio::task::spawn_blocking(move || lake_rows(&events))
        .await
        .context("join the lake reader")?
}

/// Waits until `<lake>/events` holds at least `want` rows.
async fn wait_for_rows(lake: &Path, want: usize, limit: Duration) -> Result<()> {
    let deadline = Deadline::after(limit);
    loop {
        let rows = lake_rows_now(lake).await?;
        if rows >= want {
            return Ok(());
        }
        deadline.remaining(&format!("{want} rows in the lake (it holds {rows})"))?;
        tokio::time::sleep(POLL).await;
    }
}

/// Valid events this process has committed to the lake, from its `/metrics`.
async fn events_committed(process: &Tooltrail) -> Result<u64> {
    let metrics = process.get_text("/metrics").await?;
    metrics
        .lines()
        .filter(|l| l.starts_with("tooltrail_ingest_events_total{"))
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .with_context(|| format!("a counter line: {l}"))
        })
        .sum()
}

/// Waits until the process has committed at least `want` events; returns how many it has.
async fn wait_for_metric(process: &Tooltrail, want: u64, limit: Duration) -> Result<u64> {
    let deadline = Deadline::after(limit);
    loop {
        let events = events_committed(process).await?;
        if events >= want {
            return Ok(events);
        }
        deadline.remaining(&format!(
            "the instance to commit {want} events (it has {events})"
        ))?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until a freshly started instance commits its first transaction, or the lake already
/// holds every event (then there is nothing left for it to commit).
async fn wait_for_first_commit(process: &Tooltrail, lake: &Path, total: usize) -> Result<()> {
    let deadline = Deadline::after(FIRST_COMMIT);
    let mut last_lake_check = Instant::now();
    loop {
        if events_committed(process).await? > 0 {
            return Ok(());
        }
        if last_lake_check.elapsed() > Duration::from_secs(2) {
            if lake_rows_now(lake).await? >= total {
                return Ok(());
            }
            last_lake_check = Instant::now();
        }
        deadline.remaining("the instance to commit its first transaction")?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Fails unless the lake holds every one of `expected` exactly once, and nothing else.
async fn assert_exactly_once(expected: &[String], lake: &Path) -> Result<()> {
    let lake = lake.to_owned();
    let actual = tokio::task::spawn_blocking(move || read_event_ids(&lake))
        .await
        .context("join the lake reader")??;
    let mut counts: HashMap<&str, usize> = HashMap::with_capacity(expected.len());
    for id in expected {
        ensure!(
            counts.insert(id, 0).is_none(),
            "the expected events repeat id {id}"
        );
    }
    let mut unexpected = Vec::new();
    for id in &actual {
        match counts.get_mut(id.as_str()) {
            Some(n) => *n += 1,
            None => unexpected.push(id.as_str()),
        }
    }
    let mut missing: Vec<&str> = counts
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(id, _)| *id)
        .collect();
    let mut duplicated: Vec<(&str, usize)> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, n)| (*id, *n))
        .collect();
    missing.sort_unstable();
    duplicated.sort_unstable();
    ensure!(
        missing.is_empty() && duplicated.is_empty() && unexpected.is_empty(),
        "not exactly once: {} expected, {} in the lake; {} missing (e.g. {:?}), {} duplicated \
         (id, copies, e.g. {:?}), {} unexpected (e.g. {:?})",
        expected.len(),
        actual.len(),
        missing.len(),
        &missing[..missing.len().min(5)],
        duplicated.len(),
        &duplicated[..duplicated.len().min(5)],
        unexpected.len(),
        &unexpected[..unexpected.len().min(5)],
    );
    Ok(())
}

/// Fails unless `group` has committed exactly the partition ends `ends` of `topic`.
async fn assert_committed_at_ends(
    brokers: &str,
    group: &str,
    topic: &str,
    ends: &BTreeMap<i32, i64>,
) -> Result<()> {
    let partitions = i32::try_from(ends.len())?;
    let committed = committed_offsets(brokers, group, topic, partitions).await?;
    let want: BTreeMap<i32, Option<i64>> = ends.iter().map(|(p, e)| (*p, Some(*e))).collect();
    ensure!(
        committed == want,
        "group {group} committed {committed:?}, not the partition ends {want:?}"
    );
    Ok(())
}

/// `(seq, writer)` of every entry in the lake's commit log.
fn log_writers(lake: &Path) -> Result<Vec<(u64, String)>> {
    #[derive(Deserialize)]
    struct Entry {
        seq: u64,
        writer: String,
    }
    let dir = lake.join("_tooltrail").join("log");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            let entry: Entry = serde_json::from_slice(&std::fs::read(&path)?)
                .with_context(|| format!("parse {}", path.display()))?;
            out.push((entry.seq, entry.writer));
        }
    }
    out.sort();
    Ok(out)
}

/// One row of `<lake>/quarantine`.
struct QuarantineRow {
    reason: String,
    error: String,
    raw: Vec<u8>,
    topic: String,
    partition: i32,
    offset: i64,
}

impl std::fmt::Debug for QuarantineRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuarantineRow")
            .field("reason", &self.reason)
            .field("error", &self.error)
            .field("raw_len", &self.raw.len())
            .field("topic", &self.topic)
            .field("partition", &self.partition)
            .field("offset", &self.offset)
            .finish()
    }
}

fn read_quarantine(lake: &Path) -> Result<Vec<QuarantineRow>> {
    fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> Result<&'a T> {
        batch
            .column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<T>())
            .with_context(|| format!("the quarantine has no column {name} of the expected type"))
    }
    let mut rows = Vec::new();
    for file in parquet_files(&lake.join("quarantine"))? {
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&file)?)?.build()?;
        for batch in reader {
            let batch = batch?;
            let reason = column::<StringArray>(&batch, "reason")?;
            let error = column::<StringArray>(&batch, "error")?;
            let raw = column::<BinaryArray>(&batch, "raw")?;
            let topic = column::<StringArray>(&batch, "source_name")?;
            let partition = column::<Int32Array>(&batch, "source_partition")?;
            let offset = column::<Int64Array>(&batch, "source_offset")?;
            for i in 0..batch.num_rows() {
                ensure!(
                    !partition.is_null(i) && !offset.is_null(i) && !topic.is_null(i),
                    "{}: row {i} has no Kafka position",
                    file.display()
                );
                rows.push(QuarantineRow {
                    reason: reason.value(i).to_owned(),
                    error: error.value(i).to_owned(),
                    raw: raw.value(i).to_vec(),
                    topic: topic.value(i).to_owned(),
                    partition: partition.value(i),
                    offset: offset.value(i),
                });
            }
        }
    }
    Ok(rows)
}

/// A small seeded generator (SplitMix64), so that a failing kill schedule can be replayed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `low..high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }
}

fn rebalances(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains("partitions") || l.contains("another ingest"))
        .collect::<Vec<_>>()
        .join("\n")
}
