//! `tooltrail detect --kafka`: the detector as its own service, in its own
//! consumer group, beside ingest's. The service is
//! [`tooltrail_detect::service::kafka`]; this wires it to the command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use prometheus_client::registry::Registry;
use rdkafka::producer::FutureProducer;
use tokio_util::sync::CancellationToken;
use tooltrail_detect::checkpoint::Checkpoints;
use tooltrail_detect::clock::SystemClock;
use tooltrail_detect::metrics::Metrics;
use tooltrail_detect::publish::{AlertTopic, Publisher};
use tooltrail_detect::service::kafka::{self, ServiceConfig};
use tooltrail_ingest::source::kafka::consumer;

use crate::config::Config;
use crate::supervisor::{Phase, Supervisor};

#[derive(clap::Args, Debug)]
pub struct ServiceArgs {
    /// Consume events from these Kafka brokers, as a service.
    #[arg(long, value_name = "BROKERS", requires_all = ["topic", "lake"])]
    pub kafka: Option<String>,
    /// The events topic (with --kafka).
    #[arg(long, value_name = "TOPIC", requires = "kafka")]
    pub topic: Option<String>,
    /// The lake whose `alerts` table receives the alerts (a directory or
    /// s3://bucket/prefix): with --kafka, and with --replay to backfill it.
    #[arg(long, value_name = "LAKE")]
    pub lake: Option<String>,
    /// Where the delivery outbox lives (checkpoints live with the lake, in
    /// `<lake>/_tooltrail/detect/<group>/`).
    #[arg(long, value_name = "DIR", default_value = "tooltrail-data")]
    pub data_dir: PathBuf,
    /// The detector's consumer group (not ingest's).
    #[arg(long, value_name = "GROUP", default_value = "tooltrail-detect")]
    pub group: String,
    /// The consumer group ingest writes the lake with, whose positions in
    /// the lake tell how far warm-up replays a partition; default
    /// `kafka.group_id`.
    #[arg(long, value_name = "GROUP")]
    pub ingest_group: Option<String>,
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

pub async fn run(
    args: ServiceArgs,
    config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (Some(brokers), Some(topic), Some(lake)) = (args.kafka, args.topic, args.lake) else {
        anyhow::bail!("detect as a service needs --kafka, --topic and --lake");
    };
    let settings = crate::config::detect_settings(&config.detect)?;
    let mut registry = Registry::default();
    let supervisor = Supervisor::new(shutdown.clone());
    if let Some(rules) = &settings.rules {
        let token = supervisor.token(Phase::Serve);
        supervisor.spawn(
            Phase::Serve,
            "sigma rule reloader",
            crate::rules::watch(rules.clone(), token),
        );
    }
    let delivery = crate::detect::start_delivery(
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
    let metrics = Metrics::register(&mut registry);
    let location = config.lake(Some(lake))?;
    let mut publisher = Publisher::open(
        &location,
        Some(delivery),
        metrics.clone(),
        crate::lake::lake_metrics(&mut registry),
    )
    .await?;
    if let Some(alerts_topic) = &args.alerts_topic {
        let producer: FutureProducer = consumer::producer_config(&brokers, &properties)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .create()
            .context("creating the alerts topic producer")?;
        publisher = publisher.with_topic(AlertTopic::new(
            producer,
            alerts_topic.clone(),
            tokio::runtime::Handle::current(),
        ));
    }
    let checkpoints = Checkpoints::open(&location, &args.group, tokio::runtime::Handle::current())?;
    let warm = if args.warm_from_lake.is_zero() {
        None
    } else {
        let since = Utc::now()
            - chrono::Duration::from_std(args.warm_from_lake).context("--warm-from-lake")?;
        // The lake records offsets under the group ingest consumes with.
        let ingest_group = args.ingest_group.clone().unwrap_or_else(|| {
            config.kafka.as_ref().map_or_else(
                || crate::up::default_kafka().group_id,
                |k| k.group_id.clone(),
            )
        });
        Some(kafka::Warm {
            lake: location.clone(),
            ingest_group,
            since,
            runtime: tokio::runtime::Handle::current(),
        })
    };
    let service = kafka::build(
        ServiceConfig {
            brokers,
            topic,
            group: args.group,
            properties,
            tenants: config
                .kafka
                .as_ref()
                .and_then(|k| k.tenants.as_ref())
                .map(|t| t.iter().cloned().collect()),
            otlp: config
                .kafka
                .as_ref()
                .filter(|k| k.encoding == tooltrail_ingest::config::KafkaEncoding::OtlpProto)
                .map(|_| tooltrail_ingest::otlp::Mapper::new(&config.otlp.mapping)),
            checkpoint_interval: args.checkpoint_interval,
            warm,
        },
        settings,
        checkpoints,
        publisher,
        metrics,
        Arc::new(SystemClock),
    )?;
    if let Some(listen) = args.listen {
        let (addr, serve) = crate::serve::bind(
            listen,
            axum::Router::new(),
            registry,
            supervisor.token(Phase::Serve),
        )
        .await?;
        supervisor.spawn(Phase::Serve, "http server", serve);
        eprintln!("listening on http://{addr}");
    }
    // It stops consuming and checkpoints, as intake does.
    let token = supervisor.token(Phase::Intake);
    supervisor.spawn_blocking(Phase::Intake, "kafka detect", move || {
        Ok(service.run(token)?)
    });
    supervisor.wait().await
}
