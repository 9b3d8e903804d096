//! The detector as its own service (`tooltrail detect --kafka`), in its own
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
//!   without is warmed from the lake (`warm_since`): the events ingest read
//!   from that partition replay through a fresh engine in offset order, and
//!   consumption starts at the lake's next offset for it. With nothing in the
//!   lake for it, the engine starts cold at the group's committed offset (or
//!   the earliest).
//! - Alerts go through the [`Publisher`] as soon as the engine raises them,
//!   before the checkpoint that covers their events. After a kill -9 the
//!   events since the last checkpoint are seen again and raise the same
//!   alerts with the same ids, which the publisher drops: the lake holds every
//!   alert version once, the outbox sends each once, and the alerts topic is
//!   at least once.
//! - A quiet partition's watermark moves on with the injected clock (its
//!   newest event time plus the time since that event was read).
//! - At shutdown every partition is checkpointed with its windows still
//!   open: they are judged after the restart, with the records that follow.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tooltrail_ingest::source::kafka::consumer::{self as scaffold, lock};
use tooltrail_schemas::SecretMap;

use super::{Error, Result, TICK};
use crate::checkpoint::Checkpoints;
use crate::clock::{Clock, QuietWatermark};
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::{Engine, Settings};

/// Where the service reads from and keeps its state.
pub struct ServiceConfig {
    pub brokers: String,
    pub topic: String,
    /// The detector's consumer group (not ingest's).
    pub group: String,
    /// Extra librdkafka properties (credentials), as ingest's.
    pub properties: SecretMap,
    /// `kafka.tenants`: ingest quarantines other tenants' records, so the
    /// detector must not learn from them either. `None`: every tenant.
    pub tenants: Option<HashSet<String>>,
    /// `[otlp.mapping]` when `kafka.encoding = "otlp_proto"`: each record is
    /// an OTLP export request whose log records are mapped as ingest maps
    /// them (the same events, the same `event_id`s).
    pub otlp: Option<tooltrail_ingest::otlp::Mapper>,
    pub checkpoint_interval: Duration,
    /// On a partition with no checkpoint, replay the lake's history of that
    /// partition first; `None` starts cold.
    pub warm: Option<Warm>,
}

/// Where a partition without a checkpoint warms from.
pub struct Warm {
    pub lake: tooltrail_lake::Location,
    /// Ingest's consumer group: the lake records the offsets ingest read
    /// under it (`<group>/<topic>/<partition>`).
    pub ingest_group: String,
    /// Replay the history since this time.
    pub since: DateTime<Utc>,
    /// The runtime the lake's IO runs on; the polling thread blocks on it.
    pub runtime: tokio::runtime::Handle,
}

/// One assigned partition.
struct Partition {
    engine: Engine,
    /// Offset of the next record the engine has not seen.
    next_offset: i64,
    watermark: QuietWatermark,
    /// Records seen since the last checkpoint.
    unsaved: u64,
}

impl Partition {
    /// A partition whose engine resumes at `next_offset`; its clock starts
    /// from the newest event time the engine has seen, read `now`.
    fn new(engine: Engine, next_offset: i64, unsaved: u64, now: Instant) -> Self {
        Partition {
            watermark: QuietWatermark::new(engine.newest_secs(), now),
            engine,
            next_offset,
            unsaved,
        }
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
    warm: Option<Warm>,
    clock: Arc<dyn Clock>,
    /// A failure inside a callback, surfaced by the poll loop.
    failure: Option<Error>,
}

impl Shared {
    /// Checkpoints the partitions that saw records since their last one (all
    /// of `only`, when given) and returns their next offsets.
    fn checkpoint(&mut self, only: Option<&[i32]>) -> Result<Vec<scaffold::Position>> {
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
            let bytes = self.checkpoints.save(
                &self.topic,
                number,
                partition.next_offset,
                &partition.engine,
            )?;
            tracing::debug!(
                partition = number,
                next_offset = partition.next_offset,
                bytes,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "checkpointed"
            );
            partition.unsaved = 0;
            saved.push(scaffold::Position {
                topic: self.topic.clone(),
                partition: number,
                next_offset: partition.next_offset,
            });
        }
        Ok(saved)
    }

    /// Moves quiet partitions' watermarks on with the clock.
    fn tick(&mut self) -> Result<()> {
        let mut out = Vec::new();
        let now = self.clock.now();
        for partition in self.partitions.values_mut() {
            if let Some(mark) = partition.watermark.at(now) {
                partition.engine.advance(mark, &mut out);
            }
        }
        self.publisher.publish(&mut out).map(drop)
    }

    /// Restores each newly assigned partition from its checkpoint, or warms
    /// it from the lake, and positions it there; a partition with neither
    /// starts fresh where the group left it.
    fn assign(&mut self, tpl: &mut TopicPartitionList) -> Result<()> {
        let topic = self.topic.clone();
        let mut positions = Vec::new();
        for element in tpl.elements() {
            let number = element.partition();
            let now = self.clock.now();
            let partition = match self.checkpoints.load(&topic, number, &self.settings)? {
                Some(restored) => {
                    positions.push((number, restored.next_offset));
                    Partition::new(restored.engine, restored.next_offset, 0, now)
                }
                None => {
                    let mut engine = Engine::new(self.settings.clone());
                    let next_offset = self.warm(number, &mut engine)?;
                    if let Some(next) = next_offset {
                        positions.push((number, next));
                    }
                    // Checkpoint what warming built at the next interval.
                    let unsaved = u64::from(next_offset.is_some());
                    Partition::new(engine, next_offset.unwrap_or(0), unsaved, now)
                }
            };
            self.partitions.insert(number, partition);
        }
        for (number, next) in &positions {
            tpl.set_partition_offset(&topic, *number, Offset::Offset(*next))
                .map_err(|source| Error::Kafka {
                    context: format!("positioning {topic}[{number}]"),
                    source: Box::new(source),
                })?;
        }
        tracing::info!(
            partitions = ?tpl.elements().iter().map(|e| (e.partition(), e.offset())).collect::<Vec<_>>(),
            "partitions assigned; resuming from their checkpoints"
        );
        Ok(())
    }

    /// Warms a partition's fresh engine from the lake; returns the lake's
    /// next offset for the partition, where consumption resumes, if it holds
    /// any.
    fn warm(&mut self, number: i32, engine: &mut Engine) -> Result<Option<i64>> {
        let Some(warm) = &self.warm else {
            return Ok(None);
        };
        let started = Instant::now();
        let app_id = tooltrail_lake::Position::app_id(&warm.ingest_group, &self.topic, number);
        let warmed = warm.runtime.block_on(async {
            let events =
                tooltrail_lake::Snapshot::load(&warm.lake, &tooltrail_lake::tables::EVENTS)
                    .await
                    .map_err(|source| Error::Warm { source })?;
            let Some(events) = events else {
                return Ok(None);
            };
            let held = events
                .position(&app_id)
                .await
                .map_err(|source| Error::Warm { source })?;
            let Some(last) = held else {
                return Ok(None);
            };
            let warmed =
                super::warm::warm_partition(&events, warm.since, (&self.topic, number), engine)
                    .await?;
            Ok::<_, Error>(Some((last + 1, warmed)))
        })?;
        let Some((next, mut warmed)) = warmed else {
            return Ok(None);
        };
        tracing::info!(
            partition = number,
            events = warmed.events,
            files = warmed.files,
            next_offset = next,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "no checkpoint; warmed from the lake"
        );
        self.publisher.publish(&mut warmed.alerts)?;
        Ok(Some(next))
    }
}

type DetectContext = scaffold::GroupContext<Shared>;

impl scaffold::Rebalance for Shared {
    type Error = Error;

    fn assigned(&mut self, tpl: &mut TopicPartitionList) -> Result<Vec<scaffold::Position>> {
        self.assign(tpl)?;
        // The checkpoints are the record; Kafka hears of them at the next one.
        Ok(Vec::new())
    }

    fn revoked(&mut self, tpl: &TopicPartitionList) -> Result<Vec<scaffold::Position>> {
        let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
        tracing::info!(?revoked, "partitions revoked; checkpointing them");
        let saved = self.checkpoint(Some(&revoked));
        for number in revoked {
            self.partitions.remove(&number);
        }
        saved
    }

    fn lost(&mut self) {
        self.partitions.clear();
    }

    fn failed(&mut self, error: Error) {
        self.failure = Some(error);
    }

    fn kafka_error(context: &str, source: rdkafka::error::KafkaError) -> Error {
        Error::Kafka {
            context: context.to_owned(),
            source: Box::new(source),
        }
    }
}

/// The Kafka detect service, connected and subscribed.
pub struct KafkaDetect {
    consumer: BaseConsumer<DetectContext>,
    shared: Arc<Mutex<Shared>>,
    metrics: Metrics,
    interval: Duration,
    tenants: Option<HashSet<String>>,
    otlp: Option<tooltrail_ingest::otlp::Mapper>,
}

/// Connects and subscribes; fails fast on bad configuration.
pub fn build(
    config: ServiceConfig,
    settings: Settings,
    checkpoints: Checkpoints,
    publisher: Publisher,
    metrics: Metrics,
    clock: Arc<dyn Clock>,
) -> Result<KafkaDetect> {
    tracing::info!(
        checkpoints = checkpoints.location(),
        alerts_known = publisher.known(),
        "detect service starting"
    );
    let shared = Arc::new(Mutex::new(Shared {
        topic: config.topic.clone(),
        settings,
        checkpoints,
        partitions: BTreeMap::new(),
        publisher,
        warm: config.warm,
        clock,
        failure: None,
    }));
    let client = scaffold::client_config(&config.brokers, &config.group, &config.properties);
    let consumer: BaseConsumer<DetectContext> = client
        .create_with_context(scaffold::GroupContext::new(Arc::clone(&shared)))
        .map_err(|source| Error::Kafka {
            context: "creating the consumer".into(),
            source: Box::new(source),
        })?;
    consumer
        .subscribe(&[&config.topic])
        .map_err(|source| Error::Kafka {
            context: format!("subscribing to {}", config.topic),
            source: Box::new(source),
        })?;
    tracing::info!(brokers = %config.brokers, topic = %config.topic, group = %config.group, "consuming from kafka");
    Ok(KafkaDetect {
        consumer,
        shared,
        metrics,
        interval: config.checkpoint_interval,
        tenants: config.tenants,
        otlp: config.otlp,
    })
}

impl KafkaDetect {
    /// The poll loop: observe, publish, tick, checkpoint; at `shutdown`, a
    /// last checkpoint of every partition.
    /// Blocking: run it on its own thread.
    pub fn run(self, shutdown: CancellationToken) -> Result<()> {
        let KafkaDetect {
            consumer,
            shared,
            metrics,
            interval,
            tenants,
            otlp,
        } = self;
        // As ingest: the one tenant `kafka.tenants` names is the tenant of
        // OTLP records that name none.
        let only_tenant = tenants
            .as_ref()
            .filter(|t| t.len() == 1)
            .and_then(|t| t.iter().next().cloned());
        let mut out = Vec::new();
        let (mut ticked, mut saved) = (Instant::now(), Instant::now());
        while !shutdown.is_cancelled() {
            let message = consumer.poll(Duration::from_millis(200));
            let mut guard = lock(&shared);
            let state = &mut *guard;
            if let Some(e) = state.failure.take() {
                return Err(e);
            }
            match message {
                None => {}
                Some(Err(e)) => tracing::warn!(error = %e, "kafka poll error"),
                Some(Ok(message)) => {
                    let now = state.clock.now();
                    let Some(partition) = state.partitions.get_mut(&message.partition()) else {
                        continue;
                    };
                    if message.offset() < partition.next_offset {
                        // Before the checkpoint: its effect is in the state already.
                        continue;
                    }
                    partition.next_offset = message.offset() + 1;
                    partition.unsaved += 1;
                    let payload = message.payload().unwrap_or_default();
                    let records = match &otlp {
                        None => vec![tooltrail_schemas::decode(payload)],
                        Some(mapper) => {
                            match mapper.kafka_record(payload, only_tenant.as_deref()) {
                                Ok(mapped) => mapped
                                    .records
                                    .iter()
                                    .map(|r| match &r.unmapped {
                                        Some(problem) => Err(problem.clone()),
                                        None => {
                                            tooltrail_schemas::decode(&mapped.body[r.range.clone()])
                                        }
                                    })
                                    .collect(),
                                Err(e) => vec![Err(e)],
                            }
                        }
                    };
                    for decoded in records {
                        match decoded {
                            // Outside `kafka.tenants`: ingest quarantines it.
                            Ok(event)
                                if tenants
                                    .as_ref()
                                    .is_some_and(|t| !t.contains(&event.tenant_id)) =>
                            {
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
                                partition.watermark.saw(event.time.timestamp(), now);
                            }
                            // Ingest quarantines it with its reason; detection has nothing to learn.
                            Err(e) => tracing::debug!(
                                partition = message.partition(),
                                offset = message.offset(),
                                error = %e,
                                "skipping an invalid record"
                            ),
                        }
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
                scaffold::commit(&consumer, &done, CommitMode::Async);
                saved = Instant::now();
            }
        }
        let mut state = lock(&shared);
        let all: Vec<i32> = state.partitions.keys().copied().collect();
        let done = state.checkpoint(Some(&all))?;
        scaffold::commit(&consumer, &done, CommitMode::Sync);
        tracing::info!(
            partitions = done.len(),
            "stopped; every partition checkpointed"
        );
        Ok(())
    }
}
