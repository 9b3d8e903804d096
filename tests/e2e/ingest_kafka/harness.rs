//! What the Kafka ingest tests share: running `tooltrail ingest` on a topic and a lake, the
//! simulated load, waiting on the lake and the metrics, and reading the results back.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, ensure};
use arrow::array::{Array, BinaryArray, Int32Array, Int64Array, RecordBatch, StringArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::support::lake::{lake_rows, parquet_files, read_event_ids};
use crate::support::process::{Tooltrail, path_str};
use crate::support::{
    Deadline, committed_offsets, group_session_properties, run_tooltrail, unique_name,
};

/// A debug build of the simulator producing a few hundred thousand events on a busy machine.
pub(super) const SIMULATE_TIMEOUT: Duration = Duration::from_secs(300);
/// Catching up with everything produced after the last crash or rebalance: the longest the lake
/// may go without a new row meanwhile (a rebalance after a killed member's session, a slow commit
/// on a busy machine), not a bound on the whole catch-up.
pub(super) const CATCH_UP: Duration = Duration::from_secs(180);
/// Joining the group (after a killed member's session expires) and committing a first batch.
pub(super) const FIRST_COMMIT: Duration = Duration::from_secs(90);
/// How often the tests look at the lake or the metrics while waiting.
pub(super) const POLL: Duration = Duration::from_millis(250);

/// Small transactions, so that a crash or a rebalance lands among many commits.
pub(super) const SMALL_BATCHES: &[(&str, &str)] = &[
    ("TOOLTRAIL__INGEST__MAX_BATCH_RECORDS", "5000"),
    ("TOOLTRAIL__INGEST__MAX_BATCH_DELAY", "200ms"),
];
/// Smaller still where a crash or a rebalance should land among many commits and the load should
/// last: more commits, and a slower pace.
pub(super) const TINY_BATCHES: &[(&str, &str)] = &[
    ("TOOLTRAIL__INGEST__MAX_BATCH_RECORDS", "1000"),
    ("TOOLTRAIL__INGEST__MAX_BATCH_DELAY", "100ms"),
];

/// One SIGKILL of the crash test: how long after the instance's first commit, the rows the lake
/// held just before, and the files it wrote and never committed.
pub(super) struct Kill {
    /// The drawn delay; the kill came earlier if the instance reached its share first.
    pub(super) delay: Duration,
    pub(super) rows: usize,
    /// Files the instance wrote and never committed.
    pub(super) orphans: usize,
}

/// Data files of `events` and `quarantine` that no commit names: a commit's
/// files written by an instance killed before its commit (vacuum removes
/// them after its grace period; no reader ever sees them).
pub(super) fn orphan_files(lake: &Path) -> Result<usize> {
    let mut count = 0;
    for table in ["events", "quarantine"] {
        let dir = lake.join(table);
        let live: std::collections::BTreeSet<PathBuf> = crate::support::lake::parquet_files(&dir)?
            .into_iter()
            .collect();
        let mut stack = vec![dir];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry?.path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "parquet") && !live.contains(&path)
                {
                    count += 1;
                }
            }
        }
    }
    Ok(count)
}

/// A topic, a consumer group and a lake, and how to run `tooltrail ingest` on them.
pub(super) struct IngestSetup {
    brokers: String,
    topic: String,
    group: String,
    dir: tempfile::TempDir,
    config: PathBuf,
    batches: &'static [(&'static str, &'static str)],
}

impl IngestSetup {
    pub(super) fn new(brokers: &str, topic: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("tooltrail.toml");
        // A member killed with SIGKILL never leaves the group: the coordinator hands its
        // partitions to the restarted instance only once its session has expired (librdkafka's
        // default is 45 s).
        write_config(&config, brokers, topic, &group_session_properties())?;
        Ok(Self {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            group: unique_name("ingest"),
            dir,
            config,
            batches: SMALL_BATCHES,
        })
    }

    /// Keeps librdkafka's default group session (45 s), for instances that are only ever
    /// stopped (they leave the group): the short session of the kill tests gains them nothing,
    /// and on a loaded broker a heartbeat queued behind slow requests can outlast it, which
    /// Tansu 0.6.0 does not always recover from (see `wait_out_killed_member_session`).
    pub(super) fn with_default_session(self) -> Result<Self> {
        write_config(&self.config, &self.brokers, &self.topic, "")?;
        Ok(self)
    }

    /// Runs the instances with these `TOOLTRAIL__INGEST__*` batch settings.
    pub(super) fn with_batches(mut self, batches: &'static [(&'static str, &'static str)]) -> Self {
        self.batches = batches;
        self
    }

    pub(super) fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub(super) fn lake(&self) -> PathBuf {
        self.dir.path().join("lake")
    }

    pub(super) fn group(&self) -> &str {
        &self.group
    }

    /// Starts `tooltrail ingest --kafka` with small batches; returns once it listens.
    pub(super) async fn start(&self) -> Result<Tooltrail> {
        self.start_in_group(&self.group).await
    }

    /// Starts an instance in another consumer group, on the same lake.
    pub(super) async fn start_in_group(&self, group: &str) -> Result<Tooltrail> {
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
            self.batches,
        )
        .await
    }
}

/// Writes the instances' config file: the broker and topic, and these `[kafka.properties]` lines.
fn write_config(path: &Path, brokers: &str, topic: &str, properties: &str) -> Result<()> {
    std::fs::write(
        path,
        format!(
            "[kafka]\nbrokers = {brokers:?}\ntopic = {topic:?}\n\n[kafka.properties]\n{properties}"
        ),
    )?;
    Ok(())
}

/// `tooltrail simulate` settings; the same settings give the same events.
#[derive(Clone, Copy)]
pub(super) struct Simulation {
    pub(super) users: usize,
    pub(super) days: u32,
    pub(super) seed: u64,
}

impl Simulation {
    /// Arguments shared by `--out` and `--kafka`. The period ends yesterday, so that every event
    /// lies inside ingest's accepted time window whenever the test runs.
    pub(super) fn args(&self) -> Vec<String> {
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
    pub(super) async fn event_ids(&self, dir: &Path) -> Result<Vec<String>> {
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
    pub(super) async fn produce(&self, brokers: &str, topic: &str) -> Result<()> {
        let mut args = self.args();
        args.extend(["--kafka", brokers, "--topic", topic].map(str::to_owned));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_tooltrail(&args, SIMULATE_TIMEOUT).await?;
        Ok(())
    }
}

/// A valid event, timed now.
pub(super) fn valid_event(id: &str, user: &str) -> Value {
    json!({
        "schema_version": 1, "event_id": id, "time": chrono::Utc::now().to_rfc3339(),
        "tenant_id": "acme", "user_id": user, "server": "github", "method": "tools/call",
        "tool": "create_issue", "decision": "allow", "status": 200
    })
}

/// Rows in `<lake>/events`, read off the blocking thread.
pub(super) async fn lake_rows_now(lake: &Path) -> Result<usize> {
    let events = lake.join("events");
    tokio::task::spawn_blocking(move || lake_rows(&events))
        .await
        .context("join the lake reader")?
}

/// Waits until `<lake>/events` holds at least `want` rows; fails once it has gained none for
/// `stall`. The tests check that ingest gets there, not how fast: a slow machine that keeps
/// committing passes, a stuck pipeline fails.
pub(super) async fn wait_for_rows(lake: &Path, want: usize, stall: Duration) -> Result<()> {
    let started = Instant::now();
    let (mut last, mut grew) = (lake_rows_now(lake).await?, Instant::now());
    loop {
        let rows = lake_rows_now(lake).await?;
        if rows >= want {
            return Ok(());
        }
        if rows > last {
            (last, grew) = (rows, Instant::now());
        }
        ensure!(
            grew.elapsed() < stall,
            "stalled short of {want} rows in the lake: it holds {rows} and gained none in {stall:?} \
             ({:.0}s waited in all)",
            started.elapsed().as_secs_f64()
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The sum of a metric's series in this process's `/metrics` (`name` with or without labels).
pub(super) async fn metric_sum(process: &Tooltrail, name: &str) -> Result<u64> {
    let metrics = process.get_text("/metrics").await?;
    metrics
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .with_context(|| format!("a {name} line: {l}"))
        })
        .sum()
}

/// Valid events this process has committed to the lake, from its `/metrics`.
pub(super) async fn events_committed(process: &Tooltrail) -> Result<u64> {
    metric_sum(process, "tooltrail_ingest_events_total").await
}

/// Waits until the process is assigned at least one partition of its group's topic.
pub(super) async fn wait_for_partitions(process: &Tooltrail, limit: Duration) -> Result<()> {
    let deadline = Deadline::after(limit);
    while metric_sum(process, "tooltrail_ingest_partitions_assigned").await? == 0 {
        deadline.remaining("the instance to be assigned partitions")?;
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// The lines of an instance's `/metrics` about its partitions (assignment and lag), for a
/// failure message.
pub(super) async fn partition_metrics(process: &Tooltrail) -> String {
    match process.get_text("/metrics").await {
        Ok(metrics) => metrics
            .lines()
            .filter(|l| {
                l.starts_with("tooltrail_ingest_partitions_assigned")
                    || l.starts_with("tooltrail_ingest_consumer_lag")
            })
            .collect::<Vec<_>>()
            .join("\n"),
        Err(e) => format!("(no metrics: {e:#})"),
    }
}

/// Waits until the process has committed at least `want` events; returns how many it has.
pub(super) async fn wait_for_metric(
    process: &Tooltrail,
    want: u64,
    limit: Duration,
) -> Result<u64> {
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
pub(super) async fn wait_for_first_commit(
    process: &Tooltrail,
    lake: &Path,
    total: usize,
) -> Result<()> {
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
pub(super) async fn assert_exactly_once(expected: &[String], lake: &Path) -> Result<()> {
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
pub(super) async fn assert_committed_at_ends(
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

/// `(version, writer)` of every commit to `<lake>/events` that added data,
/// from the Delta log's `commitInfo` (`tooltrail.writer`, `<host>:<pid>`).
pub(super) fn log_writers(lake: &Path) -> Result<Vec<(u64, String)>> {
    let dir = lake.join("events").join("_delta_log");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("read {}", dir.display()))? {
        let path = entry?.path();
        let Some(version) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        let text = std::fs::read_to_string(&path)?;
        let mut writer = None;
        let mut adds = false;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let action: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("parse {}", path.display()))?;
            adds |= action.get("add").is_some();
            if let Some(w) = action["commitInfo"]["tooltrail.writer"].as_str() {
                writer = Some(w.to_owned());
            }
        }
        if let (true, Some(writer)) = (adds, writer) {
            out.push((version, writer));
        }
    }
    out.sort();
    Ok(out)
}

/// One row of `<lake>/quarantine`.
pub(super) struct QuarantineRow {
    pub(super) reason: String,
    pub(super) error: String,
    pub(super) raw: Vec<u8>,
    pub(super) topic: String,
    pub(super) partition: i32,
    pub(super) offset: i64,
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

pub(super) fn read_quarantine(lake: &Path) -> Result<Vec<QuarantineRow>> {
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
pub(super) struct SplitMix64(pub(super) u64);

impl SplitMix64 {
    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `low..high`.
    pub(super) fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }
}

/// The lines of an instance's log about assignments and refused transactions.
pub(super) fn rebalances(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains("partitions") || l.contains("another ingest"))
        .collect::<Vec<_>>()
        .join("\n")
}
