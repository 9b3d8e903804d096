//! `tooltrail detect --kafka`: the detector as its own service, in its own
//! consumer group, beside ingest's.
//!
//! - Events are keyed by tenant and user, so a user's records all land in one
//!   partition: the service keeps one [`Engine`] per assigned partition, and a
//!   rebalance moves whole engines. (Tenant aggregates, the priors for users
//!   with little history, are therefore per partition: each partition sees
//!   its share of a tenant's users.)
//! - Every `checkpoint_interval`, and when partitions are revoked or the
//!   service stops, each partition's engine is written with the offset of the
//!   next record it has not seen ([`Checkpoints`]), atomically. Offsets are
//!   committed to Kafka after that, for lag monitoring; the checkpoint is the
//!   record of where to resume.
//! - On assignment, a partition with a checkpoint resumes from it. One
//!   without is warmed from the lake (`--warm-from-lake`, default 28 days):
//!   the events ingest read from that partition replay through a fresh
//!   engine in offset order, and consumption starts at the lake's next offset
//!   for it. With nothing in the lake for it, the engine starts cold at the
//!   group's committed offset (or the earliest).
//! - Alerts are published as soon as the engine raises them, before the
//!   checkpoint that covers their events: to the outbox (durable, deduplicated
//!   by `alert_id`), then the optional Kafka alerts topic (keyed by
//!   `alert_id`), then the lake's `alerts/`, which is the record of what was
//!   published. After a kill -9 the events since the last checkpoint are seen
//!   again and raise the same alerts with the same ids; those the lake already
//!   holds (same id, no higher repeat count) are dropped. So the lake holds
//!   every alert exactly once; the outbox sends each once; the alerts topic is
//!   at least once (a crash between its produce and the lake write repeats a
//!   record with the same key).
//! - A quiet partition's watermark moves on with the wall clock (its newest
//!   event time plus the time since that event was read), so a burst's last
//!   window is judged without waiting for more traffic.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use prometheus_client::registry::Registry;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use tokio_util::sync::CancellationToken;
use tooltrail_detect::checkpoint::Checkpoints;
use tooltrail_detect::deliver::DeliveryHandle;
use tooltrail_detect::metrics::Metrics;
use tooltrail_detect::sink::AlertLake;
use tooltrail_detect::{Alert, Engine, Settings};
use tooltrail_ingest::lake::Lake;

use crate::config::Config;
use crate::supervisor::Supervisor;

/// How often quiet partitions' watermarks move on.
const TICK: Duration = Duration::from_secs(2);

#[derive(clap::Args, Debug)]
pub struct ServiceArgs {
    /// Consume events from these Kafka brokers, as a service.
    #[arg(long, value_name = "BROKERS", requires_all = ["topic", "lake"])]
    pub kafka: Option<String>,
    /// The events topic (with --kafka).
    #[arg(long, value_name = "TOPIC", requires = "kafka")]
    pub topic: Option<String>,
    /// The lake whose `alerts/` receives the alerts (with --kafka).
    #[arg(long, value_name = "DIR", requires = "kafka")]
    pub lake: Option<PathBuf>,
    /// Where checkpoints and the delivery outbox live.
    #[arg(long, value_name = "DIR", default_value = "tooltrail-data")]
    pub data_dir: PathBuf,
    /// The detector's consumer group (not ingest's).
    #[arg(long, value_name = "GROUP", default_value = "tooltrail-detect")]
    pub group: String,
    /// Also produce every alert to this Kafka topic, keyed by alert_id.
    #[arg(long, value_name = "TOPIC", requires = "kafka")]
    pub alerts_topic: Option<String>,
    /// How often each partition's state is checkpointed. A checkpoint stops
    /// consumption while it is written (about 45 µs per user with state, see
    /// `detect_bench`); a crash re-reads at most this much of the stream.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub checkpoint_interval: Duration,
    /// On a partition with no checkpoint, rebuild the engine from this much
    /// of the lake's history of that partition first ("0s" to start cold).
    #[arg(long, value_name = "DURATION", default_value = "28d", value_parser = humantime::parse_duration)]
    pub warm_from_lake: Duration,
    /// Serve /metrics and /healthz on this address.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

/// One assigned partition.
struct Partition {
    engine: Engine,
    /// Offset of the next record the engine has not seen.
    next_offset: i64,
    /// Newest event time (Unix seconds) and when it was read.
    newest: Option<(i64, Instant)>,
    /// Records seen since the last checkpoint.
    unsaved: u64,
}

impl Partition {
    /// A partition whose engine resumes at `next_offset`. Its clock starts
    /// from the newest event time the engine has seen, read now.
    fn new(engine: Engine, next_offset: i64, unsaved: u64) -> Self {
        Partition {
            newest: engine.newest_secs().map(|t| (t, Instant::now())),
            engine,
            next_offset,
            unsaved,
        }
    }
}

/// Where alerts go, in order; see the module docs.
struct Publisher {
    delivery: DeliveryHandle,
    producer: Option<(FutureProducer, String)>,
    lake: AlertLake,
    /// Alert ids the lake holds, with their highest repeat count.
    written: HashMap<String, u32>,
    metrics: Metrics,
    runtime: tokio::runtime::Handle,
}

impl Publisher {
    fn publish(&mut self, alerts: &mut Vec<Alert>) -> anyhow::Result<()> {
        let fresh: Vec<Alert> = std::mem::take(alerts)
            .into_iter()
            .filter(|a| self.written.get(&a.alert_id).is_none_or(|&r| a.repeats > r))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        for alert in &fresh {
            self.delivery
                .enqueue(alert)
                .context("enqueue an alert for delivery")?;
        }
        if let Some((producer, topic)) = &self.producer {
            for alert in &fresh {
                let body = alert.to_json();
                let record = FutureRecord::to(topic).key(&alert.alert_id).payload(&body);
                self.runtime
                    .block_on(producer.send(record, Duration::from_secs(30)))
                    .map_err(|(e, _)| anyhow::anyhow!("producing alert to {topic}: {e}"))?;
            }
        }
        self.lake
            .write(&fresh)
            .context("write alerts to the lake")?;
        for alert in fresh {
            let known = self.written.entry(alert.alert_id.clone()).or_default();
            *known = (*known).max(alert.repeats);
            crate::detector::announce(&alert, &self.metrics);
        }
        Ok(())
    }
}

/// State shared by the poll loop and the rebalance callback (both on the
/// polling thread: never contended).
struct Shared {
    topic: String,
    settings: Settings,
    checkpoints: Checkpoints,
    partitions: BTreeMap<i32, Partition>,
    publisher: Publisher,
    /// The lake to warm partitions without a checkpoint from, and how far back.
    warm: Option<(Lake, DateTime<Utc>)>,
    /// A failure inside a callback, surfaced by the poll loop.
    failure: Option<anyhow::Error>,
}

impl Shared {
    /// Checkpoints the partitions that saw records since their last one (all
    /// of `only`, when given) and returns their next offsets.
    fn checkpoint(&mut self, only: Option<&[i32]>) -> anyhow::Result<Vec<(i32, i64)>> {
        let mut saved = Vec::new();
        for (&number, partition) in &mut self.partitions {
            let wanted = match only {
                Some(list) => list.contains(&number),
                None => partition.unsaved > 0,
            };
            if !wanted {
                continue;
            }
            let started = Instant::now();
            let bytes = self
                .checkpoints
                .save(
                    &self.topic,
                    number,
                    partition.next_offset,
                    &partition.engine,
                )
                .with_context(|| format!("checkpointing {}[{number}]", self.topic))?;
            tracing::debug!(
                partition = number,
                next_offset = partition.next_offset,
                bytes,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "checkpointed"
            );
            partition.unsaved = 0;
            saved.push((number, partition.next_offset));
        }
        Ok(saved)
    }

    /// Moves quiet partitions' watermarks on with the wall clock.
    fn tick(&mut self) -> anyhow::Result<()> {
        let mut out = Vec::new();
        for partition in self.partitions.values_mut() {
            if let Some((newest, at)) = partition.newest {
                partition
                    .engine
                    .advance(newest + at.elapsed().as_secs() as i64, &mut out);
            }
        }
        self.publisher.publish(&mut out)
    }
}

struct DetectContext {
    shared: Arc<Mutex<Shared>>,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared
        .lock()
        .expect("detect state lock is never poisoned: holders do not panic")
}

impl ClientContext for DetectContext {}

impl ConsumerContext for DetectContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let mut shared = lock(&self.shared);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                if let Err(e) = assign(&mut shared, tpl) {
                    shared.failure = Some(e);
                    return;
                }
                if let Err(e) = consumer.assign(tpl) {
                    shared.failure = Some(anyhow::anyhow!("assigning partitions: {e}"));
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?revoked, "partitions revoked; checkpointing them");
                match shared.checkpoint(Some(&revoked)) {
                    Ok(saved) => commit(consumer, &shared.topic, &saved, CommitMode::Sync),
                    Err(e) => shared.failure = Some(e),
                }
                for number in revoked {
                    shared.partitions.remove(&number);
                }
                if let Err(e) = consumer.unassign() {
                    shared.failure = Some(anyhow::anyhow!("unassigning partitions: {e}"));
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance failed; dropping the assignment");
                shared.partitions.clear();
                let _ = consumer.unassign();
            }
        }
    }
}

/// Restores each newly assigned partition from its checkpoint and positions
/// it there; a partition without one starts fresh where the group left it.
fn assign(shared: &mut Shared, tpl: &mut TopicPartitionList) -> anyhow::Result<()> {
    let topic = shared.topic.clone();
    let mut positions = Vec::new();
    for element in tpl.elements() {
        let number = element.partition();
        let restored = shared.checkpoints.load(&topic, number, &shared.settings)?;
        let partition = match restored {
            Some(restored) => {
                positions.push((number, restored.next_offset));
                Partition::new(restored.engine, restored.next_offset, 0)
            }
            None => {
                let mut engine = Engine::new(shared.settings.clone());
                let next_offset = warm(shared, &topic, number, &mut engine)?;
                if let Some(next) = next_offset {
                    positions.push((number, next));
                }
                // Checkpoint what warming built at the next interval.
                let unsaved = u64::from(next_offset.is_some());
                Partition::new(engine, next_offset.unwrap_or(0), unsaved)
            }
        };
        shared.partitions.insert(number, partition);
    }
    for (number, next) in &positions {
        tpl.set_partition_offset(&topic, *number, Offset::Offset(*next))
            .with_context(|| format!("positioning {topic}[{number}]"))?;
    }
    tracing::info!(
        partitions = ?tpl.elements().iter().map(|e| (e.partition(), e.offset())).collect::<Vec<_>>(),
        "partitions assigned; resuming from their checkpoints"
    );
    Ok(())
}

/// Warms a partition's fresh engine from the lake; returns the lake's next
/// offset for the partition, where consumption resumes, if it holds any.
fn warm(
    shared: &mut Shared,
    topic: &str,
    number: i32,
    engine: &mut Engine,
) -> anyhow::Result<Option<i64>> {
    let Some((lake, since)) = &mut shared.warm else {
        return Ok(None);
    };
    let next = lake.refresh()?.next_offset(topic, number);
    if next.is_none() {
        return Ok(None);
    }
    let started = Instant::now();
    let warmed = crate::warm::warm_partition(lake, *since, (topic, number), engine)
        .with_context(|| format!("warming {topic}[{number}] from the lake"))?;
    tracing::info!(
        partition = number,
        events = warmed.events,
        files = warmed.files,
        next_offset = next,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "no checkpoint; warmed from the lake"
    );
    let mut alerts = warmed.new_alerts;
    shared.publisher.publish(&mut alerts)?;
    Ok(next)
}

/// Commits checkpointed positions to Kafka. The checkpoints already hold
/// them: a failure only delays what lag monitoring sees.
fn commit(
    consumer: &BaseConsumer<DetectContext>,
    topic: &str,
    saved: &[(i32, i64)],
    mode: CommitMode,
) {
    if saved.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for (partition, next) in saved {
        if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
            tracing::warn!(error = %e, "cannot build offset list");
        }
    }
    if let Err(e) = consumer.commit(&tpl, mode) {
        tracing::warn!(error = %e, "committing offsets to kafka failed; the checkpoints hold them");
    }
}

pub async fn run(
    args: ServiceArgs,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (Some(brokers), Some(topic), Some(lake_dir)) = (args.kafka, args.topic, args.lake) else {
        anyhow::bail!("detect as a service needs --kafka, --topic and --lake");
    };
    let settings = crate::config::detect_settings(&config.detect)?;
    let mut registry = Registry::default();
    let supervisor = Supervisor::new(shutdown.clone());
    let handle = crate::detector::start_delivery(
        &config.detect.delivery,
        &args.data_dir,
        &mut registry,
        &supervisor,
    )?;
    let properties = config
        .kafka
        .as_ref()
        .map(|k| k.properties.clone())
        .unwrap_or_default();
    // `kafka.tenants`: ingest quarantines other tenants' records, so the
    // detector must not learn from them either.
    let tenants: Option<std::collections::HashSet<String>> = config
        .kafka
        .as_ref()
        .and_then(|k| k.tenants.as_ref())
        .map(|t| t.iter().cloned().collect());
    let producer = match &args.alerts_topic {
        None => None,
        Some(alerts_topic) => {
            let mut client = ClientConfig::new();
            client
                .set("bootstrap.servers", &brokers)
                .set("enable.idempotence", "true")
                .set("acks", "all");
            for (k, v) in properties.expose() {
                client.set(k, v);
            }
            let producer: FutureProducer = client
                .create()
                .context("creating the alerts topic producer")?;
            Some((producer, alerts_topic.clone()))
        }
    };
    let alert_lake = crate::detector::open_alert_lake(&lake_dir)?;
    let written = alert_lake
        .written()
        .context("reading the alerts the lake holds")?;
    let checkpoints = Checkpoints::open(&args.data_dir.join("detect").join(&args.group))?;
    let warm = if args.warm_from_lake.is_zero() {
        None
    } else {
        let lake = Lake::open(&lake_dir, config.ingest.zstd_level)
            .with_context(|| format!("opening the lake at {}", lake_dir.display()))?;
        let since = Utc::now()
            - chrono::Duration::from_std(args.warm_from_lake).context("--warm-from-lake")?;
        Some((lake, since))
    };
    tracing::info!(
        checkpoints = %checkpoints.dir().display(),
        alerts_known = written.len(),
        "detect service starting"
    );
    let metrics = Metrics::register(&mut registry);
    let shared = Arc::new(Mutex::new(Shared {
        topic: topic.clone(),
        settings,
        checkpoints,
        partitions: BTreeMap::new(),
        publisher: Publisher {
            delivery: handle,
            producer,
            lake: alert_lake,
            written,
            metrics: metrics.clone(),
            runtime: tokio::runtime::Handle::current(),
        },
        warm,
        failure: None,
    }));

    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &brokers)
        .set("group.id", &args.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range");
    for (k, v) in properties.expose() {
        client.set(k, v);
    }
    let consumer: BaseConsumer<DetectContext> = client
        .create_with_context(DetectContext {
            shared: Arc::clone(&shared),
        })
        .context("creating the consumer")?;
    consumer
        .subscribe(&[&topic])
        .with_context(|| format!("subscribing to {topic}"))?;
    tracing::info!(%brokers, %topic, group = %args.group, "consuming from kafka");

    if let Some(listen) = args.listen {
        let (addr, serve) =
            crate::serve::bind(listen, axum::Router::new(), registry, supervisor.token()).await?;
        supervisor.spawn("http server", serve);
        eprintln!("listening on http://{addr}");
    }
    let token = supervisor.token();
    let interval = args.checkpoint_interval;
    supervisor.spawn_blocking("kafka detect", move || {
        poll(
            &consumer,
            &shared,
            &metrics,
            interval,
            tenants.as_ref(),
            &token,
        )
    });
    supervisor.wait().await
}

/// The poll loop: observe, publish, tick, checkpoint; at shutdown, a last
/// checkpoint of every partition.
fn poll(
    consumer: &BaseConsumer<DetectContext>,
    shared: &Mutex<Shared>,
    metrics: &Metrics,
    interval: Duration,
    tenants: Option<&std::collections::HashSet<String>>,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let mut out = Vec::new();
    let (mut ticked, mut saved) = (Instant::now(), Instant::now());
    while !shutdown.is_cancelled() {
        let message = consumer.poll(Duration::from_millis(200));
        let mut guard = lock(shared);
        let state = &mut *guard;
        if let Some(e) = state.failure.take() {
            return Err(e);
        }
        match message {
            None => {}
            Some(Err(e)) => tracing::warn!(error = %e, "kafka poll error"),
            Some(Ok(message)) => {
                let Some(partition) = state.partitions.get_mut(&message.partition()) else {
                    continue;
                };
                if message.offset() < partition.next_offset {
                    // Before the checkpoint: its effect is in the state already.
                    continue;
                }
                partition.next_offset = message.offset() + 1;
                partition.unsaved += 1;
                match tooltrail_schemas::decode(message.payload().unwrap_or_default()) {
                    // Outside `kafka.tenants`: ingest quarantines it.
                    Ok(event) if tenants.is_some_and(|t| !t.contains(&event.tenant_id)) => {
                        tracing::debug!(
                            partition = message.partition(),
                            offset = message.offset(),
                            "skipping a record of a tenant outside kafka.tenants"
                        );
                    }
                    Ok(event) => {
                        let before = partition.engine.stats();
                        partition.engine.observe(&event, &mut out);
                        let after = partition.engine.stats();
                        metrics.events.inc_by(after.events - before.events);
                        metrics.late.inc_by(after.late - before.late);
                        metrics
                            .suppressed
                            .inc_by(after.suppressed - before.suppressed);
                        let secs = event.time.timestamp();
                        if partition.newest.is_none_or(|(t, _)| secs >= t) {
                            partition.newest = Some((secs, Instant::now()));
                        }
                    }
                    // Ingest quarantines it with its reason; detection has nothing to learn.
                    Err(e) => tracing::debug!(
                        partition = message.partition(),
                        offset = message.offset(),
                        error = %e,
                        "skipping an invalid record"
                    ),
                }
                state.publisher.publish(&mut out)?;
            }
        }
        if ticked.elapsed() >= TICK {
            state.tick()?;
            let users: usize = state.partitions.values().map(|p| p.engine.users()).sum();
            metrics.users.set(users as i64);
            ticked = Instant::now();
        }
        if saved.elapsed() >= interval {
            let done = state.checkpoint(None)?;
            commit(consumer, &state.topic, &done, CommitMode::Async);
            saved = Instant::now();
        }
    }
    let mut state = lock(shared);
    let all: Vec<i32> = state.partitions.keys().copied().collect();
    let done = state.checkpoint(Some(&all))?;
    commit(consumer, &state.topic, &done, CommitMode::Sync);
    tracing::info!(
        partitions = done.len(),
        "stopped; every partition checkpointed"
    );
    Ok(())
}
