//! Kafka to the lake, exactly once.
//!
//! One thread polls an rdkafka consumer group (`enable.auto.commit=false`,
//! `enable.auto.offset.store=false`) and fills the next commit. The `events`
//! table, not Kafka, is the record of what is held: each commit carries the
//! offsets it covers as the table's version for the application id
//! `<group>/<topic>/<partition>` (a Delta `txn` action).
//!
//! - on assignment, every partition the table has seen is positioned at the
//!   table's next offset, whatever Kafka's committed offset says;
//! - offsets are committed to Kafka only after the commit holding them is
//!   durable (so Kafka's committed offset never runs ahead of the lake), at
//!   most once per `auto.commit.interval.ms` (Kafka's offsets only feed lag
//!   monitoring);
//! - on revocation, the open batch is committed before the partitions go;
//! - a batch whose offsets another writer already committed (a zombie after a
//!   rebalance) is fenced by the table and dropped, and the consumer is
//!   repositioned at the table's offsets;
//! - re-read records whose rejects the quarantine already holds (a crash fell
//!   between the quarantine and the events commit) are not quarantined again.
//!
//! With `kafka.encoding = "otlp_proto"` a record is an OTLP
//! `ExportLogsServiceRequest` (the OpenTelemetry Collector's Kafka exporter):
//! its log records are mapped ([`crate::otlp`]) and filed at the record's
//! offset, all before the batch is considered for a flush. So the events and
//! rejects of one record are in one transaction with its offset (all or
//! nothing), its rejects are left out as a whole when the quarantine holds
//! them already, and a record that is not OTLP is quarantined as itself
//! (`not_otlp`). The events share the record's `source_offset`; their
//! `event_id`s tell them apart.
//!
//! With a detector in the process, each accepted record is decoded once,
//! into an owned event that is filed in the lake and then handed on; the
//! events of a transaction go to the detector once it is durable, outside
//! the state lock (see [`KafkaIngest::run`]).

pub mod consumer;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use rdkafka::Timestamp;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tooltrail_lake::{Resume, Writer};
use tooltrail_schemas::lake::Source;
use tooltrail_schemas::{DecodeError, ToolCallEvent};

use crate::batch::Pending;
use crate::config::{IngestConfig, KafkaConfig, KafkaEncoding, OtlpConfig};
use crate::error::{Error, Result};
use crate::metrics::{Metrics, PartitionLabels};
use crate::otlp::Mapper;
use crate::source::http::EventTap;
use consumer::{GroupContext, OffsetCommits, Position, Rebalance, lock};

/// State shared between the poll loop and the rebalance callback (both run
/// on the polling thread; the lock is never contended).
struct Shared {
    writer: Writer,
    /// The runtime the lake's IO runs on; this thread blocks on it.
    runtime: Handle,
    group: String,
    /// Each assigned partition's application id and where it resumed.
    partitions: HashMap<i32, (String, Resume)>,
    pending: Pending,
    /// Offsets the lake holds and Kafka has not been told yet.
    owed: OffsetCommits,
    metrics: Metrics,
    /// Whether events go on to a detector once durable: then the events of
    /// the open transaction, and the durable batches waiting to be sent.
    tapping: bool,
    tapped: Vec<ToolCallEvent>,
    durable: Vec<Vec<ToolCallEvent>>,
    /// A failure inside a callback, surfaced by the poll loop.
    failure: Option<Error>,
}

type IngestContext = GroupContext<Shared>;

impl Rebalance for Shared {
    type Error = Error;

    fn assigned(&mut self, tpl: &mut TopicPartitionList) -> Result<Vec<Position>> {
        let mut positions = Vec::new();
        match self.runtime.block_on(self.writer.refresh()) {
            Err(e) => self.failure = Some(e.into()),
            Ok(()) => {
                for elem in tpl.elements() {
                    match self.resume(elem.topic(), elem.partition()) {
                        Ok(Some(next_offset)) => positions.push(Position {
                            topic: elem.topic().to_owned(),
                            partition: elem.partition(),
                            next_offset,
                        }),
                        Ok(None) => {}
                        Err(e) => self.failure = Some(e),
                    }
                }
            }
        }
        for p in &positions {
            if let Err(e) =
                tpl.set_partition_offset(&p.topic, p.partition, Offset::Offset(p.next_offset))
            {
                tracing::error!(topic = %p.topic, partition = p.partition, error = %e, "cannot position partition");
            }
        }
        self.metrics
            .partitions_assigned
            .set(self.partitions.len() as i64);
        tracing::info!(
            partitions = ?tpl.elements().iter().map(|e| (e.partition(), e.offset())).collect::<Vec<_>>(),
            "partitions assigned; positioned at the lake's offsets"
        );
        // A crash between a lake commit and its Kafka commit leaves Kafka behind
        // the lake; a partition with no new records would never catch up, and its
        // lag would be reported forever. The lake is the record: tell Kafka.
        Ok(positions)
    }

    fn revoked(&mut self, tpl: &TopicPartitionList) -> Result<Vec<Position>> {
        tracing::info!(
            partitions = tpl.count(),
            "partitions revoked; committing open work"
        );
        let flushed = flush(self)?;
        for elem in tpl.elements() {
            self.release(elem.topic(), elem.partition());
        }
        self.owed.owe(flushed.positions);
        Ok(self.owed.take())
    }

    fn lost(&mut self) {
        if let Err(error) = flush(self) {
            tracing::warn!(error = %tooltrail_schemas::Report(&error), "committing open work after a failed rebalance");
        }
        // librdkafka drops the whole assignment: the group no longer takes
        // this member's commits, and the next owner tells Kafka the lake's.
        self.owed.take();
        self.partitions.clear();
        self.metrics.consumer_lag.clear();
        self.metrics.partitions_assigned.set(0);
    }

    fn failed(&mut self, error: Error) {
        self.failure = Some(error);
    }

    fn kafka_error(context: &str, source: KafkaError) -> Error {
        Error::Kafka {
            context: context.to_owned(),
            source,
        }
    }

    fn statistics(&self, statistics: &Statistics) {
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                // librdkafka keeps reporting a revoked partition for a while:
                // its lag is its new owner's to report.
                let held = self.partitions.contains_key(partition);
                if held && p.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .get_or_create(&PartitionLabels {
                            topic: topic.clone(),
                            partition: *partition,
                        })
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

/// What a flush made durable.
#[derive(Default)]
struct Flushed {
    /// The offsets to commit to Kafka.
    positions: Vec<Position>,
    /// Another writer held these offsets: the batch was dropped, and the
    /// partitions must move to the lake's positions to go on.
    conflict: bool,
}

impl Shared {
    /// Forgets a partition this instance no longer holds, and its lag: the
    /// member that now holds it reports that.
    fn release(&mut self, topic: &str, partition: i32) {
        self.partitions.remove(&partition);
        self.metrics.consumer_lag.remove(&PartitionLabels {
            topic: topic.to_owned(),
            partition,
        });
        self.metrics
            .partitions_assigned
            .set(self.partitions.len() as i64);
    }

    /// Reads where `partition` of `topic` resumes from the lake, and keeps
    /// it; returns the next offset to read, if the lake holds any.
    fn resume(&mut self, topic: &str, partition: i32) -> Result<Option<i64>> {
        let app_id = tooltrail_lake::Position::app_id(&self.group, topic, partition);
        let resume = self.runtime.block_on(self.writer.resume(&app_id))?;
        self.partitions.insert(partition, (app_id, resume));
        Ok(resume.next)
    }
}

/// The application id of `partition`, as the lake records its offsets
/// (made once per partition, not per record).
fn app_id<'a>(
    partitions: &'a mut HashMap<i32, (String, Resume)>,
    group: &str,
    topic: &str,
    partition: i32,
) -> &'a str {
    &partitions
        .entry(partition)
        .or_insert_with(|| {
            (
                tooltrail_lake::Position::app_id(group, topic, partition),
                Resume::default(),
            )
        })
        .0
}

/// Commits the open batch to the lake; returns the offsets to commit to
/// Kafka. The events it made durable wait in `durable` for the poll loop.
fn flush(shared: &mut Shared) -> Result<Flushed> {
    let Shared {
        writer,
        runtime,
        pending,
        metrics,
        tapped,
        durable,
        ..
    } = shared;
    let covered = pending.positions();
    let outcome = runtime.block_on(pending.commit_to(writer, metrics, "kafka"));
    let events = std::mem::take(tapped);
    match outcome {
        Ok(None) => Ok(Flushed::default()),
        Ok(Some((outcome, stats))) => {
            tracing::debug!(
                version = outcome.events.map(|c| c.version),
                events = stats.events,
                "committed to the lake"
            );
            // Only what is durable reaches the detector, as on the HTTP path;
            // the poll loop sends it once the lock is released.
            if !events.is_empty() {
                durable.push(events);
            }
            Ok(Flushed {
                positions: covered.iter().filter_map(position_after).collect(),
                conflict: false,
            })
        }
        Err(Error::Lake(tooltrail_lake::Error::Fenced {
            app_id,
            committed,
            start,
            ..
        })) => {
            tracing::warn!(
                app_id,
                committed,
                start,
                "another ingest instance committed these offsets first; dropping this batch"
            );
            Ok(Flushed {
                positions: Vec::new(),
                conflict: true,
            })
        }
        Err(e) => Err(e),
    }
}

/// The Kafka position after what a lake position covers
/// (`<group>/<topic>/<partition>`, offsets `first..=last`).
fn position_after(covered: &tooltrail_lake::Position) -> Option<Position> {
    let (rest, partition) = covered.app_id.rsplit_once('/')?;
    let (_, topic) = rest.split_once('/')?;
    Some(Position {
        topic: topic.to_owned(),
        partition: partition.parse().ok()?,
        next_offset: covered.last + 1,
    })
}

/// Moves every assigned partition to the lake's position.
fn reposition(shared: &mut Shared, consumer: &BaseConsumer<IngestContext>) -> Result<()> {
    shared.runtime.block_on(shared.writer.refresh())?;
    let assignment = consumer.assignment().map_err(|e| Error::Kafka {
        context: "reading the assignment".into(),
        source: e,
    })?;
    for elem in assignment.elements() {
        if let Some(next) = shared.resume(elem.topic(), elem.partition())?
            && let Err(e) = consumer.seek(
                elem.topic(),
                elem.partition(),
                Offset::Offset(next),
                Duration::from_secs(10),
            )
        {
            return Err(Error::Kafka {
                context: format!("seeking {}[{}]", elem.topic(), elem.partition()),
                source: e,
            });
        }
    }
    Ok(())
}

/// Kafka ingest, connected and ready to run.
pub struct KafkaIngest {
    consumer: BaseConsumer<IngestContext>,
    /// The detector's channel, fed outside the state lock.
    tap: Option<EventTap>,
    shared: Arc<Mutex<Shared>>,
    dead_letter: Option<(FutureProducer, String)>,
    config: IngestConfig,
    /// `kafka.tenants`: `None` lets every tenant through.
    tenants: Option<HashSet<String>>,
    /// The one tenant `kafka.tenants` names, if it names one: the tenant of
    /// OTLP records that name none.
    only_tenant: Option<String>,
    /// `[otlp.mapping]`, when `kafka.encoding = "otlp_proto"`.
    otlp: Option<Mapper>,
}

/// Checks an event's tenant against `kafka.tenants` (`None`: every tenant).
fn check_tenant(
    allowed: Option<&HashSet<String>>,
    tenant: &str,
    topic: &str,
) -> Result<(), DecodeError> {
    match allowed {
        Some(tenants) if !tenants.contains(tenant) => Err(DecodeError::TenantNotAllowed {
            tenant: tenant.to_owned(),
            credential: format!("topic `{topic}` (kafka.tenants)"),
        }),
        _ => Ok(()),
    }
}

/// Files a record of an `otlp_proto` topic: each of its log records, as
/// mapped, at the record's offset. They all join the open transaction before
/// the caller considers a flush, so a record's events and rejects land in the
/// lake together with its offset, or not at all; a re-read record whose
/// rejects the quarantine holds (`file_rejects(false)`) leaves them all out.
/// Returns each rejection, with the mapped object it was made of (`None`:
/// the record itself, which is not OTLP).
#[allow(clippy::too_many_arguments)]
fn file_otlp(
    pending: &mut Pending,
    mut tapped: Option<&mut Vec<ToolCallEvent>>,
    mapper: &Mapper,
    allowed: Option<&HashSet<String>>,
    only_tenant: Option<&str>,
    metrics: &Metrics,
    payload: &[u8],
    source: Source<'_>,
) -> Vec<(Option<Vec<u8>>, DecodeError)> {
    let Source::Kafka { topic, .. } = source else {
        return Vec::new();
    };
    let received_at = Utc::now();
    let mapped = match mapper.kafka_record(payload, only_tenant) {
        Ok(mapped) => mapped,
        Err(error) => {
            // Not OTLP at all: the record itself is quarantined.
            let _ = pending.push_decoded(payload, Err(error.clone()), received_at, source);
            return vec![(None, error)];
        }
    };
    metrics.otlp("logs", "kafka", &mapped);
    let check = |tenant: &str| check_tenant(allowed, tenant, topic);
    let mut rejected = Vec::new();
    for record in &mapped.records {
        let raw = &mapped.body[record.range.clone()];
        let filed = match (&record.unmapped, tapped.as_deref_mut()) {
            (Some(problem), _) => {
                pending.push_decoded(raw, Err(problem.clone()), received_at, source)
            }
            (None, Some(tapped)) => pending
                .push_owned_checked(raw, received_at, source, |e| check(&e.tenant_id))
                .map(|event| tapped.push(event)),
            (None, None) => pending.push_checked(raw, received_at, source, |e| check(&e.tenant_id)),
        };
        if let Err(error) = filed {
            rejected.push((Some(raw.to_vec()), error));
        }
    }
    rejected
}

/// Connects to the brokers and subscribes; fails fast on bad configuration.
/// `writer`'s IO runs on `runtime`; [`KafkaIngest::run`] blocks on it.
pub fn build(
    kafka: &KafkaConfig,
    ingest: &IngestConfig,
    otlp: &OtlpConfig,
    writer: Writer,
    runtime: Handle,
    metrics: Metrics,
    tap: Option<EventTap>,
) -> Result<KafkaIngest> {
    let mut client = consumer::client_config(&kafka.brokers, &kafka.group_id, &kafka.properties);
    // Ingest's own defaults, under the operator's `properties`.
    for (key, value) in [
        ("statistics.interval.ms", "5000"),
        ("fetch.max.bytes", "52428800"),
        ("queued.max.messages.kbytes", "262144"),
    ] {
        if client.get(key).is_none() {
            client.set(key, value);
        }
    }
    let shared = Arc::new(Mutex::new(Shared {
        writer,
        runtime,
        group: kafka.group_id.clone(),
        partitions: HashMap::new(),
        pending: Pending::new(ingest.time_window()),
        owed: OffsetCommits::new(consumer::commit_interval(&kafka.properties), Instant::now()),
        metrics,
        tapping: tap.is_some(),
        tapped: Vec::new(),
        durable: Vec::new(),
        failure: None,
    }));
    let consumer: BaseConsumer<IngestContext> = client
        .create_with_context(GroupContext::new(Arc::clone(&shared)))
        .map_err(|e| Error::Kafka {
            context: "creating the consumer".into(),
            source: e,
        })?;
    consumer
        .subscribe(&[&kafka.topic])
        .map_err(|e| Error::Kafka {
            context: format!("subscribing to {}", kafka.topic),
            source: e,
        })?;
    let dead_letter = match &kafka.dead_letter_topic {
        None => None,
        Some(topic) => {
            // The same credentials as the consumer: a broker that requires
            // SASL or mTLS requires it of the dead-letter producer too.
            let producer: FutureProducer =
                consumer::producer_config(&kafka.brokers, &kafka.properties)
                    .create()
                    .map_err(|e| Error::Kafka {
                        context: "creating the dead-letter producer".into(),
                        source: e,
                    })?;
            Some((producer, topic.clone()))
        }
    };
    Ok(KafkaIngest {
        consumer,
        tap,
        shared,
        dead_letter,
        config: ingest.clone(),
        tenants: kafka.tenants.as_ref().map(|t| t.iter().cloned().collect()),
        only_tenant: match kafka.tenants.as_deref() {
            Some([one]) => Some(one.clone()),
            _ => None,
        },
        otlp: (kafka.encoding == KafkaEncoding::OtlpProto).then(|| Mapper::new(&otlp.mapping)),
    })
}

impl KafkaIngest {
    /// Polls until `shutdown`, then commits what it holds and leaves the group.
    /// Blocking: run it on its own thread.
    pub fn run(self, shutdown: CancellationToken) -> Result<()> {
        let poll = Duration::from_millis(100);
        while !shutdown.is_cancelled() {
            let message = self.consumer.poll(poll);
            let mut shared = lock(&self.shared);
            if let Some(e) = shared.failure.take() {
                return Err(e);
            }
            match message {
                None => {}
                Some(Ok(msg)) => {
                    let payload = msg.payload().unwrap_or_default();
                    let (topic, partition, offset) = (msg.topic(), msg.partition(), msg.offset());
                    let shared = &mut *shared;
                    let app_id = app_id(&mut shared.partitions, &shared.group, topic, partition);
                    shared.pending.cover(app_id, offset);
                    let refiled = shared
                        .partitions
                        .get(&partition)
                        .is_some_and(|(_, resume)| resume.already_quarantined(offset));
                    shared.pending.file_rejects(!refiled);
                    let source = Source::Kafka {
                        topic,
                        partition,
                        offset,
                    };
                    match &self.otlp {
                        None => self.file_event(shared, payload, msg.key(), source),
                        Some(mapper) => self.file_otlp(shared, mapper, payload, msg.key(), source),
                    }
                }
                Some(Err(KafkaError::MessageConsumption(code))) => {
                    tracing::warn!(error = %code, "kafka consumption error");
                }
                Some(Err(e)) => tracing::warn!(error = %e, "kafka error"),
            }
            let due = shared.pending.len() as usize >= self.config.max_batch_records
                || (!shared.pending.is_empty()
                    && shared.pending.age() >= self.config.max_batch_delay);
            if due {
                let flushed = flush(&mut shared)?;
                // The lake already holds these offsets.
                shared.owed.owe(flushed.positions);
                if flushed.conflict {
                    reposition(&mut shared, &self.consumer)?;
                }
            }
            let owed = shared.owed.due(Instant::now());
            consumer::commit(&self.consumer, &owed, CommitMode::Async);
            let durable = std::mem::take(&mut shared.durable);
            drop(shared);
            self.hand_on(durable)?;
        }
        tracing::info!("kafka ingest stopping: committing open work");
        let durable = {
            let mut shared = lock(&self.shared);
            let flushed = flush(&mut shared)?;
            shared.owed.owe(flushed.positions);
            let owed = shared.owed.take();
            consumer::commit(&self.consumer, &owed, CommitMode::Sync);
            std::mem::take(&mut shared.durable)
        };
        self.hand_on(durable)?;
        self.consumer.unsubscribe();
        Ok(())
    }

    /// Files a record of one v1 event.
    fn file_event(
        &self,
        shared: &mut Shared,
        payload: &[u8],
        key: Option<&[u8]>,
        source: Source<'_>,
    ) {
        let Source::Kafka { topic, .. } = source else {
            return;
        };
        let allowed = self.tenants.as_ref();
        let check = |tenant: &str| check_tenant(allowed, tenant, topic);
        let checked = if shared.tapping {
            // Decoded once, owned: filed, then kept for the detector.
            shared
                .pending
                .push_owned_checked(payload, Utc::now(), source, |e| check(&e.tenant_id))
                .map(|event| shared.tapped.push(event))
        } else {
            // Nobody keeps it: a view that borrows the payload.
            shared
                .pending
                .push_checked(payload, Utc::now(), source, |e| check(&e.tenant_id))
        };
        if let Err(error) = checked {
            self.rejected(payload, key, &error, source);
        }
    }

    /// Files a record of an `otlp_proto` topic (see [`file_otlp`]), then
    /// logs and forwards what it rejected.
    fn file_otlp(
        &self,
        shared: &mut Shared,
        mapper: &Mapper,
        payload: &[u8],
        key: Option<&[u8]>,
        source: Source<'_>,
    ) {
        let tapped = shared.tapping.then_some(&mut shared.tapped);
        let rejected = file_otlp(
            &mut shared.pending,
            tapped,
            mapper,
            self.tenants.as_ref(),
            self.only_tenant.as_deref(),
            &shared.metrics,
            payload,
            source,
        );
        for (raw, error) in rejected {
            self.rejected(raw.as_deref().unwrap_or(payload), key, &error, source);
        }
    }

    /// Logs a quarantined record and forwards it to the dead-letter topic.
    fn rejected(&self, raw: &[u8], key: Option<&[u8]>, error: &DecodeError, source: Source<'_>) {
        if let Source::Kafka {
            topic,
            partition,
            offset,
        } = source
        {
            tracing::warn!(topic, partition, offset, reason = error.reason(), %error, "quarantined invalid event");
        }
        self.forward_dead_letter(raw, key, error, source);
    }

    /// Sends durable events to the detector, waiting while its channel is
    /// full (back-pressure on the poll loop, never under the state lock). A
    /// closed channel means detection stopped: an error, not a silent loss.
    fn hand_on(&self, durable: Vec<Vec<ToolCallEvent>>) -> Result<()> {
        let Some(tap) = &self.tap else {
            return Ok(());
        };
        for events in durable {
            if tap.blocking_send(events).is_err() {
                lock(&self.shared).metrics.detector_gone.inc();
                return Err(Error::DetectorGone);
            }
        }
        Ok(())
    }

    fn forward_dead_letter(
        &self,
        payload: &[u8],
        key: Option<&[u8]>,
        error: &tooltrail_schemas::DecodeError,
        source: Source<'_>,
    ) {
        let Some((producer, topic)) = &self.dead_letter else {
            return;
        };
        let Source::Kafka {
            topic: from,
            partition,
            offset,
        } = source
        else {
            return;
        };
        let position = format!("{from}/{partition}/{offset}");
        let message = error.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "tooltrail.reason",
                value: Some(error.reason()),
            })
            .insert(Header {
                key: "tooltrail.error",
                value: Some(&message),
            })
            .insert(Header {
                key: "tooltrail.source",
                value: Some(&position),
            });
        let mut record = FutureRecord::to(topic)
            .payload(payload)
            .headers(headers)
            .timestamp(Timestamp::now().to_millis().unwrap_or_default());
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Err((e, _)) = producer.send_result(record) {
            tracing::warn!(error = %e, "dead-letter forward failed; the record is in the quarantine");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::TimeWindow;

    fn record(tenant: &str) -> Vec<u8> {
        let time = tooltrail_schemas::format_time(&Utc::now());
        format!(
            r#"{{"schema_version":1,"event_id":"e-{tenant}","time":"{time}","tenant_id":"{tenant}","user_id":"u","server":"s","method":"tools/call","tool":"t","decision":"allow","status":200}}"#
        )
        .into_bytes()
    }

    fn file(pending: &mut Pending, allowed: Option<&HashSet<String>>, tenant: &str, offset: i64) {
        let source = Source::Kafka {
            topic: "events",
            partition: 0,
            offset,
        };
        let _ = pending.push_checked(&record(tenant), Utc::now(), source, |e| {
            check_tenant(allowed, &e.tenant_id, "events")
        });
    }

    fn pending() -> Pending {
        Pending::new(TimeWindow {
            max_age: Duration::from_secs(3600),
            max_future: Duration::from_secs(3600),
        })
    }

    #[test]
    fn records_of_tenants_outside_the_allow_list_are_quarantined_and_the_rest_land() {
        let allowed: HashSet<String> = ["acme".to_string()].into();
        let mut pending = pending();
        file(&mut pending, Some(&allowed), "acme", 0);
        file(&mut pending, Some(&allowed), "globex", 1);
        file(&mut pending, Some(&allowed), "acme", 2);
        let (_, stats) = pending.take().expect("a transaction");
        assert_eq!(stats.events, 2);
        assert_eq!(stats.quarantined.get("tenant_not_allowed"), Some(&1));

        let refused = check_tenant(Some(&allowed), "globex", "events").unwrap_err();
        assert_eq!(refused.reason(), "tenant_not_allowed");
        let message = refused.to_string();
        assert!(
            message.contains("globex")
                && message.contains("events")
                && message.contains("kafka.tenants"),
            "{message}"
        );
    }

    #[test]
    fn an_otlp_records_events_and_rejects_are_filed_at_its_offset_together() {
        let payload = include_bytes!("../../tests/fixtures/agentgateway_logs.binpb");
        let mapper = Mapper::new(&crate::config::OtlpMapping::default());
        let metrics = Metrics::register(&mut Default::default());
        let at = |offset| Source::Kafka {
            topic: "otlp",
            partition: 0,
            offset,
        };
        // The fixture's records are from 2026-11: a window that takes them.
        let window = || TimeWindow {
            max_age: Duration::from_secs(10 * 366 * 24 * 3600),
            max_future: Duration::from_secs(3600),
        };
        let mut pending = Pending::new(window());
        pending.cover("g/otlp/0", 7);
        let mut tapped = Vec::new();
        let rejected = file_otlp(
            &mut pending,
            Some(&mut tapped),
            &mapper,
            None,
            None,
            &metrics,
            payload,
            at(7),
        );
        pending.cover("g/otlp/0", 8);
        let not_otlp = file_otlp(
            &mut pending,
            None,
            &mapper,
            None,
            None,
            &metrics,
            b"{}x",
            at(8),
        );
        let (batch, stats) = pending.take().expect("a transaction");
        // One record's events and rejects, and the next record's reject, in one
        // transaction with both offsets.
        assert_eq!(stats.events, tapped.len() as u64);
        assert_eq!(
            stats.events + 1,
            4,
            "the fixture holds four log records, one anonymous"
        );
        assert_eq!(rejected.len(), 1);
        assert_eq!(rejected[0].1.field_name(), Some("user_id"));
        assert_eq!(not_otlp.len(), 1);
        assert_eq!(not_otlp[0].1.reason(), "not_otlp");
        assert_eq!(stats.quarantined.get("missing_field"), Some(&1));
        assert_eq!(stats.quarantined.get("not_otlp"), Some(&1));
        assert_eq!((batch.positions[0].first, batch.positions[0].last), (7, 8));

        // Re-read after a crash between the two commits: the rejects are in, the events are not.
        let mut again = Pending::new(window());
        again.file_rejects(false);
        let rejected = file_otlp(
            &mut again,
            None,
            &mapper,
            None,
            None,
            &metrics,
            payload,
            at(7),
        );
        let (_, stats) = again.take().expect("a transaction");
        assert_eq!(rejected.len(), 1, "still reported");
        assert_eq!(stats.events, 3);
        assert!(stats.quarantined.is_empty(), "not filed twice");
    }

    #[test]
    fn without_an_allow_list_every_tenant_lands() {
        let mut pending = pending();
        file(&mut pending, None, "acme", 0);
        file(&mut pending, None, "globex", 1);
        let (_, stats) = pending.take().expect("a transaction");
        assert_eq!(stats.events, 2);
        assert!(stats.quarantined.is_empty());
    }
}
