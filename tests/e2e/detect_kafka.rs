//! `tooltrail detect --kafka` as its own consumer-group service, against the real broker: killed
//! with SIGKILL again and again while it consumes, it ends with the same alerts in the lake as a
//! run that was never interrupted, each exactly once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, ensure};
use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::support::lake::alert_records;
use crate::support::process::{Tooltrail, path_str};
use crate::support::{
    Deadline, committed_offsets, create_topic, group_consumer, group_session_properties,
    high_watermarks, kafka_brokers, run_tooltrail, unique_name, wait_out_killed_member_session,
};

const PARTITIONS: i32 = 2;
const SIMULATE_TIMEOUT: Duration = Duration::from_secs(300);
/// Joining the group (after a killed member's session expires) and reading everything.
const CATCH_UP: Duration = Duration::from_secs(300);
const POLL: Duration = Duration::from_millis(100);

/// One detect service's consumer group, data directory and lake.
struct Service {
    brokers: String,
    topic: String,
    group: String,
    dir: PathBuf,
    config: PathBuf,
    alerts_topic: Option<String>,
    /// Another lake than `<dir>/lake`, and `--warm-from-lake` for it, with the group that
    /// ingested it.
    lake: Option<PathBuf>,
    warm_from_lake: &'static str,
    ingest_group: Option<String>,
}

impl Service {
    fn new(brokers: &str, topic: &str, root: &Path, name: &str) -> Result<Self> {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir)?;
        let config = dir.join("tooltrail.toml");
        // A member killed with SIGKILL holds its partitions until its session expires.
        std::fs::write(
            &config,
            format!(
                "[kafka]\nbrokers = \"\"\ntopic = \"\"\n\n[kafka.properties]\n{}",
                group_session_properties()
            ),
        )?;
        Ok(Self {
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            group: unique_name(&format!("detect-{name}")),
            dir,
            config,
            alerts_topic: None,
            lake: None,
            warm_from_lake: "0s",
            ingest_group: None,
        })
    }

    fn lake(&self) -> PathBuf {
        self.lake.clone().unwrap_or_else(|| self.dir.join("lake"))
    }

    async fn start(&self) -> Result<Tooltrail> {
        let (lake, data) = (self.lake(), self.dir.join("data"));
        let mut args = vec![
            "--config",
            path_str(&self.config)?,
            "detect",
            "--kafka",
            &self.brokers,
            "--topic",
            &self.topic,
            "--group",
            &self.group,
            "--lake",
            path_str(&lake)?,
            "--data-dir",
            path_str(&data)?,
            "--checkpoint-interval",
            "500ms",
            "--warm-from-lake",
            self.warm_from_lake,
            "--listen",
            "127.0.0.1:0",
        ];
        if let Some(topic) = &self.alerts_topic {
            args.extend(["--alerts-topic", topic.as_str()]);
        }
        if let Some(group) = &self.ingest_group {
            args.extend(["--ingest-group", group.as_str()]);
        }
        Tooltrail::start(&args, &self.dir, &[]).await
    }

    /// Records the group has checkpointed and committed, in all.
    async fn committed(&self) -> Result<i64> {
        let offsets =
            committed_offsets(&self.brokers, &self.group, &self.topic, PARTITIONS).await?;
        Ok(offsets.values().map(|o| o.unwrap_or(0)).sum())
    }

    /// Waits until the group's committed offsets reach the partition ends.
    async fn wait_caught_up(&self, ends: &BTreeMap<i32, i64>, process: &Tooltrail) -> Result<()> {
        let total: i64 = ends.values().sum();
        let deadline = Deadline::after(CATCH_UP);
        while self.committed().await? < total {
            deadline
                .remaining("the detect service to checkpoint every record")
                .with_context(|| process.stderr())?;
            tokio::time::sleep(POLL).await;
        }
        Ok(())
    }
}

/// Every record of a one-partition topic, as JSON text, after checking its key is the alert id.
async fn read_topic(brokers: &str, topic: &str) -> Result<Vec<String>> {
    use rdkafka::Message as _;
    let end = high_watermarks(brokers, topic, 1).await?[&0];
    let consumer = group_consumer(brokers, &unique_name("alerts-reader"), topic)?;
    let mut out = Vec::new();
    let deadline = Deadline::after(CATCH_UP);
    while (out.len() as i64) < end {
        let left = deadline.remaining("reading the alerts topic")?;
        let message = tokio::time::timeout(left, consumer.recv()).await??;
        let value: Value = serde_json::from_slice(message.payload().unwrap_or_default())?;
        ensure!(
            message.key() == value["alert_id"].as_str().map(str::as_bytes),
            "record key is not the alert id: {value}"
        );
        out.push(value.to_string());
    }
    Ok(out)
}

fn time(value: &Value, field: &str) -> Result<DateTime<Utc>> {
    let text = value[field]
        .as_str()
        .with_context(|| format!("{field} in {value}"))?;
    Ok(DateTime::parse_from_rfc3339(text)?.with_timezone(&Utc))
}

/// Alert id to its highest repeat count, for alerts whose window ended by `cutoff` (later ones
/// depend on how long the stream sat idle at the end, which differs between runs).
fn settled(lines: &[Value], cutoff: DateTime<Utc>) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    for line in lines {
        if time(line, "window_end")? > cutoff {
            continue;
        }
        let id = line["alert_id"].as_str().context("alert_id")?.to_owned();
        let repeats = line["repeats"].as_u64().unwrap_or(0);
        let entry = out.entry(id).or_insert(repeats);
        *entry = (*entry).max(repeats);
    }
    Ok(out)
}

/// Simulates `users` users for `days` days, with `incident_rate` incidents per 100 users per
/// week of the attack window, into a new topic; returns it, its partition ends and the newest
/// event time.
async fn simulated_topic(
    brokers: &str,
    dir: &Path,
    (users, days, incident_rate): (&str, &str, &str),
) -> Result<(String, BTreeMap<i32, i64>, DateTime<Utc>)> {
    let topic = create_topic(brokers, "detect", PARTITIONS).await?;
    let events = dir.join("events.ndjson");
    let simulate = [
        "simulate",
        "--users",
        users,
        "--days",
        days,
        "--seed",
        "23",
        "--incident-rate",
        incident_rate,
    ];
    let out = path_str(&events)?;
    run_tooltrail(&[&simulate[..], &["--out", out]].concat(), SIMULATE_TIMEOUT).await?;
    run_tooltrail(
        &[&simulate[..], &["--kafka", brokers, "--topic", &topic]].concat(),
        SIMULATE_TIMEOUT,
    )
    .await?;
    let ends = high_watermarks(brokers, &topic, PARTITIONS).await?;
    let newest = std::fs::read_to_string(&events)?
        .lines()
        .map(|l| -> Result<DateTime<Utc>> { time(&serde_json::from_str(l)?, "time") })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .max()
        .context("no events simulated")?;
    Ok((topic, ends, newest))
}

#[tokio::test]
async fn kafka_detect_warms_a_partition_without_a_checkpoint_from_the_lake() -> Result<()> {
    let brokers = kafka_brokers();
    let root = tempfile::tempdir()?;
    // Incidents at four times the default rate: enough settled alerts to compare.
    let (topic, ends, newest) = simulated_topic(&brokers, root.path(), ("60", "8", "12")).await?;
    let total: i64 = ends.values().sum();

    // Ingest puts the whole topic in a lake, with each event's partition and offset.
    let lake = root.path().join("ingested");
    let group = unique_name("ingest");
    let args = [
        "ingest",
        "--kafka",
        &brokers,
        "--topic",
        &topic,
        "--group",
        &group,
        "--lake",
        path_str(&lake)?,
        "--listen",
        "127.0.0.1:0",
    ];
    let ingest = Tooltrail::start(&args, root.path(), &[]).await?;
    let deadline = Deadline::after(CATCH_UP);
    while committed_offsets(&brokers, &group, &topic, PARTITIONS)
        .await?
        .values()
        .map(|o| o.unwrap_or(0))
        .sum::<i64>()
        < total
    {
        deadline
            .remaining("ingest to commit the topic")
            .with_context(|| ingest.stderr())?;
        tokio::time::sleep(POLL).await;
    }
    ingest.stop().await?;

    // The reference reads the topic; the other, on the ingested lake, finds no checkpoint,
    // rebuilds each partition from the lake and has nothing left to read.
    let reference = Service::new(&brokers, &topic, root.path(), "reference")?;
    let process = reference.start().await?;
    reference.wait_caught_up(&ends, &process).await?;
    process.stop().await?;
    let mut warmed = Service::new(&brokers, &topic, root.path(), "warmed")?;
    warmed.lake = Some(lake.clone());
    warmed.warm_from_lake = "3650d";
    warmed.ingest_group = Some(group.clone());
    let process = warmed.start().await?;
    warmed.wait_caught_up(&ends, &process).await?;
    let metrics = process.get_text("/metrics").await?;
    let log = process.stderr();
    process.stop().await?;
    // Each partition was rebuilt from its own events only: together, every event once.
    let warmed_events: i64 = log
        .lines()
        .filter(|l| l.contains("warmed from the lake"))
        .map(|l| -> Result<i64> {
            let (_, rest) = l
                .split_once(" events=")
                .context("events= in the log line")?;
            Ok(rest.split(' ').next().unwrap_or_default().parse()?)
        })
        .sum::<Result<i64>>()?;
    ensure!(
        warmed_events == total,
        "warming replayed {warmed_events} events for {total} in the topic:\n{log}"
    );
    ensure!(
        metrics.contains("tooltrail_detect_events_total 0\n"),
        "the warmed detector read records from kafka that the lake held:\n{metrics}"
    );

    let cutoff = newest - chrono::Duration::hours(2);
    let want = settled(&alert_records(&reference.lake())?, cutoff)?;
    let got = settled(&alert_records(&lake)?, cutoff)?;
    ensure!(
        want.len() >= 3,
        "the reference raised {} settled alerts",
        want.len()
    );
    assert_eq!(
        got, want,
        "warming from the lake and reading the topic disagree"
    );
    Ok(())
}

#[tokio::test]
async fn kafka_detect_alerts_exactly_once_across_repeated_kill_9() -> Result<()> {
    let brokers = kafka_brokers();
    let root = tempfile::tempdir()?;
    let (topic, ends, newest) = simulated_topic(&brokers, root.path(), ("120", "14", "3")).await?;
    let total: i64 = ends.values().sum();

    // The reference: one run, never interrupted, also producing its alerts to a topic.
    let alerts_topic = create_topic(&brokers, "alerts", 1).await?;
    let mut reference = Service::new(&brokers, &topic, root.path(), "reference")?;
    reference.alerts_topic = Some(alerts_topic.clone());
    let process = reference.start().await?;
    reference.wait_caught_up(&ends, &process).await?;
    process.stop().await?;
    // Every alert record the lake got went to the topic too, keyed by its id.
    let mut in_lake: Vec<String> = alert_records(&reference.lake())?
        .iter()
        .map(|a| a.to_string())
        .collect();
    let mut on_topic = read_topic(&brokers, &alerts_topic).await?;
    in_lake.sort();
    on_topic.sort();
    assert_eq!(
        on_topic, in_lake,
        "the alerts topic and the lake's alerts differ"
    );

    // The same stream, with SIGKILLs while it consumes: each lands after the group has
    // checkpointed some records and before it has all of them.
    let crashed = Service::new(&brokers, &topic, root.path(), "crashed")?;
    let mut kills = Vec::new();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    while kills.len() < 4 {
        let process = crashed.start().await?;
        let before = crashed.committed().await?;
        let deadline = Deadline::after(CATCH_UP);
        let mut now = before;
        while now <= before && now < total {
            deadline
                .remaining("a checkpoint after the restart")
                .with_context(|| process.stderr())?;
            tokio::time::sleep(POLL).await;
            now = crashed.committed().await?;
        }
        if now >= total {
            process.stop().await?;
            break;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(seed % 700)).await;
        process.kill_9().await?;
        wait_out_killed_member_session().await;
        kills.push(now);
    }
    ensure!(
        kills.len() >= 3,
        "the stream ({total} records) was consumed after {} kills: simulate more events",
        kills.len()
    );
    let process = crashed.start().await?;
    crashed.wait_caught_up(&ends, &process).await?;
    process.stop().await?;

    let cutoff = newest - chrono::Duration::hours(2);
    let want = settled(&alert_records(&reference.lake())?, cutoff)?;
    let crashed_lines = alert_records(&crashed.lake())?;
    let got = settled(&crashed_lines, cutoff)?;
    // One page per incident: the simulated attacks raise a few pages.
    ensure!(
        want.len() >= 3,
        "the reference raised {} settled alerts: the simulated attacks should raise more",
        want.len()
    );
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "after kills at {kills:?} of {total} records: {} alerts missing (e.g. {:?}), {} extra \
         (e.g. {:?})",
        missing.len(),
        missing.iter().take(3).collect::<Vec<_>>(),
        extra.len(),
        extra.iter().take(3).collect::<Vec<_>>()
    );
    assert_eq!(got, want, "repeat counts differ");
    eprintln!(
        "{total} records, kills at {kills:?}, {} settled alerts, {} alert records in all",
        want.len(),
        crashed_lines.len()
    );
    // Exactly once: no (alert_id, repeats) record written twice, in all of the crashed lake.
    let mut seen = BTreeMap::new();
    for line in &crashed_lines {
        let key = (line["alert_id"].to_string(), line["repeats"].as_u64());
        *seen.entry(key).or_insert(0) += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "records written twice: {twice:?}");
    Ok(())
}
