//! `tooltrail simulate`: generates gateway traffic with labelled attacks
//! ([`tooltrail_sim`]) and writes it to an NDJSON file, a Kafka topic, or an
//! HTTP ingest endpoint; the labels go to an NDJSON file.
//!
//! Generation runs on a blocking thread; for Kafka and HTTP it hands batches
//! to the sender through a bounded channel, so memory stays bounded whatever
//! the period.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, NaiveDate, Utc};
use clap::ArgGroup;
use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use serde::Serialize;
use tokio::sync::mpsc;
use tooltrail_sim::{SimConfig, Simulation};
use tracing::{info, warn};

/// Deliveries awaited at most at once when producing to Kafka.
const KAFKA_IN_FLIGHT: usize = 20_000;
/// How long to wait for the brokers' metadata before giving up.
const KAFKA_METADATA_TIMEOUT: Duration = Duration::from_secs(15);
/// Events per batch handed from the generator to the Kafka producer.
const KAFKA_BATCH: usize = 1000;
/// Batches buffered between the generator and a sender.
const CHANNEL_BATCHES: usize = 8;

#[derive(clap::Args, Debug)]
#[command(group(ArgGroup::new("sink").required(true).args(["out", "kafka", "http"])))]
pub struct SimulateArgs {
    /// Users (people and service accounts) across all tenants.
    #[arg(long, default_value_t = 100)]
    pub users: usize,
    /// Days to simulate.
    #[arg(long, default_value_t = 14)]
    pub days: u32,
    /// Seed: the same seed and start give byte-identical output.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Start of the period, RFC 3339 or YYYY-MM-DD (midnight UTC) [default: 2026-10-05].
    #[arg(long, value_parser = parse_start)]
    pub start: Option<DateTime<Utc>>,
    /// Attacks only in the last N days [default: the last half of the period].
    #[arg(long, value_name = "N")]
    pub attack_days: Option<u32>,
    /// Incidents per 100 users per week of attack window.
    #[arg(long, default_value_t = 3.0)]
    pub incident_rate: f64,
    /// Write events as NDJSON to FILE ('-' for stdout).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Write the labelled incidents as NDJSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub labels: Option<PathBuf>,
    /// Write the benign drift (not incidents) as NDJSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub drifts: Option<PathBuf>,
    /// Produce events to Kafka at these bootstrap servers (key `<tenant_id>/<user_id>`).
    #[arg(long, value_name = "BROKERS", requires = "topic")]
    pub kafka: Option<String>,
    /// The Kafka topic to produce to.
    #[arg(long, value_name = "TOPIC", requires = "kafka")]
    pub topic: Option<String>,
    /// POST NDJSON batches to this URL, e.g. http://127.0.0.1:8080/v1/events.
    #[arg(long, value_name = "URL")]
    pub http: Option<reqwest::Url>,
    /// Bearer token for --http.
    #[arg(long, value_name = "TOKEN", requires = "http")]
    pub token: Option<Token>,
    /// Events per HTTP request.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batch: u64,
    #[command(flatten)]
    pub shape: ShapeArgs,
}

/// The traffic family's knobs ([`tooltrail_sim::Shape`]): each multiplies
/// one of the simulator's own draws; 1 everywhere is the default traffic.
#[derive(clap::Args, Debug, Clone, Copy)]
#[command(next_help_heading = "Traffic shape (multipliers; 1 keeps the default traffic)")]
pub struct ShapeArgs {
    /// Size of normal-intensity attacks: calls per incident, and
    /// exfiltration's rise over the user's own rate (0.33: reduced intensity).
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub attack_scale: f64,
    /// Spans of normal-intensity attacks (0.02 packs a probe into seconds,
    /// 3 spreads a sweep over most of an hour); kept within 2s-8h.
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub attack_pace: f64,
    /// Log-normal sigma of per-user daily volume, at the same mean (2: users
    /// span about two orders of magnitude).
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub rate_spread: f64,
    /// Calls per session times X, sessions per day divided by X.
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub burstiness: f64,
    /// Share of users living outside their tenant's home region.
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub zones: f64,
    /// Share of users who travel (benign drift, not labelled).
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub travel: f64,
    /// Engineers on call at once in each tenant (benign drift, not labelled).
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub on_call: f64,
    /// Teams adopting a new server and users moving to a new client or
    /// network (benign drift, not labelled).
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub adoption: f64,
}

impl Default for ShapeArgs {
    fn default() -> Self {
        tooltrail_sim::Shape::default().into()
    }
}

impl From<tooltrail_sim::Shape> for ShapeArgs {
    fn from(s: tooltrail_sim::Shape) -> Self {
        ShapeArgs {
            attack_scale: s.attack_scale,
            attack_pace: s.attack_pace,
            rate_spread: s.rate_spread,
            burstiness: s.burstiness,
            zones: s.zones,
            travel: s.travel,
            on_call: s.on_call,
            adoption: s.adoption,
        }
    }
}

impl From<ShapeArgs> for tooltrail_sim::Shape {
    fn from(a: ShapeArgs) -> Self {
        tooltrail_sim::Shape {
            attack_scale: a.attack_scale,
            attack_pace: a.attack_pace,
            rate_spread: a.rate_spread,
            burstiness: a.burstiness,
            zones: a.zones,
            travel: a.travel,
            on_call: a.on_call,
            adoption: a.adoption,
        }
    }
}

/// A bearer token; never printed.
#[derive(Clone)]
pub struct Token(String);

impl std::str::FromStr for Token {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Token(s.to_owned()))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

fn parse_start(s: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map(|d| d.and_time(chrono::NaiveTime::MIN).and_utc())
        .map_err(|_| {
            format!("expected RFC 3339 (2026-10-05T00:00:00Z) or a date (2026-10-05), got {s:?}")
        })
}

pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let config = SimConfig {
        users: args.users,
        days: args.days,
        seed: args.seed,
        start: args.start.unwrap_or_else(tooltrail_sim::default_start),
        attack_days: args.attack_days,
        incident_rate: args.incident_rate,
        shape: args.shape.into(),
    };
    let sim = Simulation::new(config).context("invalid simulation settings")?;
    let (tenants, users) = sim.population();
    let window = sim.attack_window();
    info!(tenants, users, days = args.days, seed = args.seed, attack_window_start = %window.start, "simulating");

    // Fail before generating anything if a label file cannot be created.
    let create = |path: &Option<PathBuf>, what: &str| -> anyhow::Result<Option<(PathBuf, File)>> {
        path.as_ref()
            .map(|p| {
                let file = File::create(p)
                    .with_context(|| format!("create {what} file {}", p.display()))?;
                Ok((p.clone(), file))
            })
            .transpose()
    };
    let labels = create(&args.labels, "labels")?;
    let drifts = create(&args.drifts, "drifts")?;

    let started = Instant::now();
    let (sim, events, destination) = if let Some(out) = args.out.clone() {
        let (sim, events) = tokio::task::spawn_blocking(move || write_file(sim, &out))
            .await
            .context("the generator thread panicked")??;
        (
            sim,
            events,
            args.out
                .as_deref()
                .map_or("-".into(), |p| p.display().to_string()),
        )
    } else if let (Some(brokers), Some(topic)) = (&args.kafka, &args.topic) {
        let (sim, events) = produce_kafka(sim, brokers, topic).await?;
        (sim, events, format!("kafka topic {topic}"))
    } else if let Some(url) = &args.http {
        let (sim, events) = post_http(sim, url, args.token.as_ref(), args.batch as usize).await?;
        (sim, events, url.to_string())
    } else {
        bail!("one of --out, --kafka or --http is required");
    };
    let elapsed = started.elapsed();

    if let Some((path, file)) = labels {
        write_ndjson(file, sim.incidents())
            .with_context(|| format!("write labels to {}", path.display()))?;
    }
    if let Some((path, file)) = drifts {
        write_ndjson(file, sim.drifts())
            .with_context(|| format!("write drifts to {}", path.display()))?;
    }
    let rate = events as f64 / elapsed.as_secs_f64().max(1e-9);
    let incidents = sim.incidents().len();
    info!(
        events,
        incidents,
        elapsed_ms = elapsed.as_millis() as u64,
        events_per_s = rate as u64,
        "simulation written"
    );
    eprintln!(
        "simulated {events} events ({tenants} tenants, {users} users, {} days) with {incidents} incidents \
         to {destination} in {:.1}s ({rate:.0} events/s)",
        args.days,
        elapsed.as_secs_f64(),
    );
    Ok(())
}

/// Writes every event as one JSON line; '-' is stdout.
fn write_file(mut sim: Simulation, out: &Path) -> anyhow::Result<(Simulation, u64)> {
    let sink: Box<dyn Write> = if out == Path::new("-") {
        Box::new(io::stdout().lock())
    } else {
        Box::new(File::create(out).with_context(|| format!("create {}", out.display()))?)
    };
    let mut writer = BufWriter::with_capacity(1 << 20, sink);
    let mut events = 0u64;
    for event in sim.by_ref() {
        serde_json::to_writer(&mut writer, &event).context("serialize an event")?;
        writer
            .write_all(b"\n")
            .with_context(|| format!("write {}", out.display()))?;
        events += 1;
    }
    writer
        .flush()
        .with_context(|| format!("write {}", out.display()))?;
    Ok((sim, events))
}

fn write_ndjson<T: Serialize>(file: File, items: &[T]) -> anyhow::Result<()> {
    let mut writer = BufWriter::new(file);
    for item in items {
        serde_json::to_writer(&mut writer, item)?;
        writer.write_all(b"\n")?;
    }
    writer.flush()?;
    Ok(())
}

/// One event ready to send: its Kafka key and canonical JSON.
struct Record {
    key: String,
    value: String,
}

/// Runs the simulation on a blocking thread, sending batches of records until
/// done or until the receiver goes away; returns the simulation for its labels.
fn spawn_generator(
    mut sim: Simulation,
    batch: usize,
) -> (
    tokio::task::JoinHandle<Simulation>,
    mpsc::Receiver<Vec<Record>>,
) {
    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
    let handle = tokio::task::spawn_blocking(move || {
        let mut records = Vec::with_capacity(batch);
        for event in sim.by_ref() {
            records.push(Record {
                key: event.kafka_key(),
                value: event.to_json(),
            });
            if records.len() == batch {
                let full = std::mem::replace(&mut records, Vec::with_capacity(batch));
                if tx.blocking_send(full).is_err() {
                    return sim; // the sender failed and says why
                }
            }
        }
        if !records.is_empty() {
            let _ = tx.blocking_send(records);
        }
        sim
    });
    (handle, rx)
}

async fn produce_kafka(
    sim: Simulation,
    brokers: &str,
    topic: &str,
) -> anyhow::Result<(Simulation, u64)> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("message.timeout.ms", "120000")
        .create()
        .with_context(|| format!("create a kafka producer for {brokers}"))?;
    check_topic(&producer, brokers, topic).await?;
    let (generator, mut batches) = spawn_generator(sim, KAFKA_BATCH);
    let mut in_flight: VecDeque<DeliveryFuture> = VecDeque::with_capacity(KAFKA_IN_FLIGHT);
    let mut events = 0u64;
    let sent = async {
        while let Some(batch) = batches.recv().await {
            for record in batch {
                let mut future_record = FutureRecord::to(topic)
                    .key(&record.key)
                    .payload(&record.value);
                loop {
                    match producer.send_result(future_record) {
                        Ok(delivery) => {
                            in_flight.push_back(delivery);
                            break;
                        }
                        Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                            future_record = back;
                            match in_flight.pop_front() {
                                Some(oldest) => delivered(oldest, topic).await?,
                                None => tokio::time::sleep(Duration::from_millis(5)).await,
                            }
                        }
                        Err((e, _)) => bail!("produce to kafka topic {topic}: {e}"),
                    }
                }
                events += 1;
                if in_flight.len() >= KAFKA_IN_FLIGHT
                    && let Some(oldest) = in_flight.pop_front()
                {
                    delivered(oldest, topic).await?;
                }
            }
        }
        while let Some(oldest) = in_flight.pop_front() {
            delivered(oldest, topic).await?;
        }
        Ok(())
    }
    .await;
    drop(batches);
    let sim = generator.await.context("the generator thread panicked")?;
    sent?;
    let flush = producer.clone();
    tokio::task::spawn_blocking(move || flush.flush(Duration::from_secs(30)))
        .await
        .context("the flush thread panicked")?
        .with_context(|| format!("flush the kafka producer for {topic}"))?;
    Ok((sim, events))
}

/// Fails fast, with a clear message, when the brokers are unreachable or the
/// topic does not exist (rather than after the delivery timeout).
async fn check_topic(producer: &FutureProducer, brokers: &str, topic: &str) -> anyhow::Result<()> {
    let client = producer.clone();
    let name = topic.to_owned();
    let metadata = tokio::task::spawn_blocking(move || {
        client
            .client()
            .fetch_metadata(Some(&name), KAFKA_METADATA_TIMEOUT)
    })
    .await
    .context("the metadata thread panicked")?
    .with_context(|| format!("reach kafka at {brokers}"))?;
    match metadata.topics().iter().find(|t| t.name() == topic) {
        Some(t) => match t.error() {
            None => Ok(()),
            Some(e) => bail!("kafka topic {topic}: {}", RDKafkaErrorCode::from(e)),
        },
        None => bail!("kafka at {brokers} does not know topic {topic}"),
    }
}

async fn delivered(delivery: DeliveryFuture, topic: &str) -> anyhow::Result<()> {
    match delivery.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => bail!("kafka did not take an event for topic {topic}: {e}"),
        Err(_) => bail!("the kafka producer dropped an event for topic {topic}"),
    }
}

async fn post_http(
    sim: Simulation,
    url: &reqwest::Url,
    token: Option<&Token>,
    batch: usize,
) -> anyhow::Result<(Simulation, u64)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .context("build the http client")?;
    let (generator, mut batches) = spawn_generator(sim, batch);
    let mut events = 0u64;
    let sent = async {
        while let Some(records) = batches.recv().await {
            let mut body = String::with_capacity(records.iter().map(|r| r.value.len() + 1).sum());
            for record in &records {
                body.push_str(&record.value);
                body.push('\n');
            }
            let mut request = client
                .post(url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/x-ndjson")
                .body(body);
            if let Some(Token(token)) = token {
                request = request.bearer_auth(token);
            }
            let response = request
                .send()
                .await
                .with_context(|| format!("POST {url}"))?;
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            if !status.is_success() {
                let body = if text.is_empty() {
                    "(empty body)"
                } else {
                    truncate(&text, 500)
                };
                bail!("POST {url} answered {status}: {body}");
            }
            check_rejects(url, &text, records.len())?;
            events += records.len() as u64;
        }
        Ok(())
    }
    .await;
    drop(batches);
    let sim = generator.await.context("the generator thread panicked")?;
    sent?;
    Ok((sim, events))
}

/// Fails when the endpoint's reply itemizes rejected events: simulated
/// events always satisfy the contract, so a reject is a real problem.
fn check_rejects(url: &reqwest::Url, reply: &str, sent: usize) -> anyhow::Result<()> {
    let Ok(reply) = serde_json::from_str::<serde_json::Value>(reply) else {
        warn!(%url, "ingest reply is not json; cannot check for rejected events");
        return Ok(());
    };
    match reply.get("rejected").and_then(|r| r.as_array()) {
        Some(rejected) if !rejected.is_empty() => bail!(
            "POST {url}: {} of {sent} events rejected, e.g. {}",
            rejected.len(),
            truncate(&rejected[0].to_string(), 500)
        ),
        _ => Ok(()),
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    fn parse(args: &[&str]) -> Result<SimulateArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("simulate").chain(args.iter().copied())).map(|c| c.args)
    }

    #[test]
    fn exactly_one_destination_is_required() {
        assert!(parse(&["--users", "5"]).is_err());
        assert!(parse(&["--out", "x", "--http", "http://127.0.0.1:1/v1/events"]).is_err());
        assert!(
            parse(&["--kafka", "127.0.0.1:9092"]).is_err(),
            "--kafka needs --topic"
        );
        let args = parse(&["--kafka", "b:9092", "--topic", "t"]).expect("valid");
        assert_eq!(args.topic.as_deref(), Some("t"));
    }

    #[test]
    fn start_takes_a_date_or_a_timestamp() {
        let date = parse_start("2026-10-05").expect("a date");
        assert_eq!(date, tooltrail_sim::default_start());
        let ts = parse_start("2026-10-05T02:00:00+02:00").expect("a timestamp");
        assert_eq!(ts, tooltrail_sim::default_start());
        assert!(parse_start("yesterday").is_err());
    }

    #[test]
    fn shape_flags_default_to_the_default_traffic_and_reach_the_config() {
        let args = parse(&["--out", "x"]).expect("valid");
        assert_eq!(
            tooltrail_sim::Shape::from(args.shape),
            tooltrail_sim::Shape::default()
        );
        let args = parse(&[
            "--out",
            "x",
            "--attack-scale",
            "0.33",
            "--attack-pace",
            "3",
            "--rate-spread",
            "2",
            "--burstiness",
            "1.5",
            "--zones",
            "2",
            "--travel",
            "3",
            "--on-call",
            "2",
            "--adoption",
            "0.5",
        ])
        .expect("valid");
        assert_eq!(
            tooltrail_sim::Shape::from(args.shape),
            tooltrail_sim::Shape {
                attack_scale: 0.33,
                attack_pace: 3.0,
                rate_spread: 2.0,
                burstiness: 1.5,
                zones: 2.0,
                travel: 3.0,
                on_call: 2.0,
                adoption: 0.5,
            }
        );
    }

    #[tokio::test]
    async fn an_invalid_shape_knob_is_refused_by_name_before_writing() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("e.ndjson").display().to_string();
        let args = parse(&["--out", &out, "--burstiness", "0"]).expect("parses");
        let err = run(args).await.expect_err("refused");
        assert!(
            format!("{err:#}").contains("shape.burstiness must be"),
            "{err:#}"
        );
        assert!(!dir.path().join("e.ndjson").exists());
    }

    #[test]
    fn tokens_are_not_printed() {
        let args = parse(&["--http", "http://127.0.0.1:1/", "--token", "s3cret"]).expect("valid");
        assert!(!format!("{args:?}").contains("s3cret"));
    }

    #[test]
    fn writes_one_valid_json_line_per_event() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("events.ndjson");
        let config = SimConfig {
            users: 20,
            days: 1,
            seed: 3,
            ..SimConfig::default()
        };
        let sim = Simulation::new(config).expect("valid");
        let (_, events) = write_file(sim, &out).expect("written");
        let text = std::fs::read_to_string(&out).expect("read back");
        assert_eq!(text.lines().count() as u64, events);
        for line in text.lines() {
            tooltrail_schemas::decode(line.as_bytes()).expect("valid event");
        }
    }

    #[tokio::test]
    async fn labels_name_events_in_the_output_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = |name: &str| dir.path().join(name).display().to_string();
        let (out, labels, drifts) = (path("e.ndjson"), path("l.ndjson"), path("d.ndjson"));
        let args = parse(&[
            "--users",
            "40",
            "--days",
            "2",
            "--attack-days",
            "1",
            "--incident-rate",
            "100",
            "--out",
            &out,
            "--labels",
            &labels,
            "--drifts",
            &drifts,
        ])
        .expect("valid");
        run(args).await.expect("simulated");
        let events = std::fs::read_to_string(&out).expect("events");
        let ids: std::collections::BTreeSet<String> = events
            .lines()
            .map(|l| {
                tooltrail_schemas::decode(l.as_bytes())
                    .expect("valid")
                    .event_id
            })
            .collect();
        let labels = std::fs::read_to_string(&labels).expect("labels");
        assert!(labels.lines().count() > 0);
        for line in labels.lines() {
            let incident: tooltrail_sim::Incident =
                serde_json::from_str(line).expect("an incident");
            assert!(incident.event_ids.iter().all(|id| ids.contains(id)));
        }
        assert!(std::fs::metadata(&drifts).is_ok());
    }
}
