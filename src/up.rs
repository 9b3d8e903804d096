//! `tooltrail up`: everything in one process. Without Kafka, gateways POST to
//! `/v1/events` and the lake lives under the data directory; with `--kafka`,
//! the process consumes the topic instead. Either way the detector, warmed
//! from the lake first, sees each transaction once it is durable.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tooltrail_detect::clock::SystemClock;
use tooltrail_detect::deliver::DeliveryHandle;
use tooltrail_detect::publish::Publisher;
use tooltrail_detect::service::Detector;
use tooltrail_detect::{Alert, Engine};
use tooltrail_ingest::config::KafkaConfig;
use tooltrail_ingest::metrics::Metrics;
use tooltrail_ingest::source::http::EventTap;
use tooltrail_ingest::source::{http, kafka};
use tooltrail_query::auth::backoff::{LoginLimiter, LoginMetrics};

use crate::config::Config;
use crate::supervisor::{Phase, Supervisor};

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Where local state lives (the signing key, the alert outbox, exports,
    /// spill files), and the lake too, in DIR/lake, unless `--lake` or
    /// `ingest.lake` names one.
    #[arg(long, value_name = "DIR", default_value = "tooltrail-data")]
    pub data_dir: PathBuf,
    /// The lake (a directory or s3://bucket/prefix), overriding `ingest.lake`.
    #[arg(long, value_name = "LAKE")]
    pub lake: Option<String>,
    /// Address for the HTTP API, overriding `http.listen`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Consume from these Kafka brokers instead of accepting events over HTTP.
    #[arg(long, value_name = "BROKERS", requires = "topic")]
    pub kafka: Option<String>,
    /// The Kafka topic (with --kafka).
    #[arg(long, value_name = "TOPIC", requires = "kafka")]
    pub topic: Option<String>,
    /// Rebuild the detector's baselines from this much of the lake's history
    /// before accepting events ("0s" to start cold). This is also how
    /// detection state survives a restart.
    #[arg(long, value_name = "DURATION", default_value = "28d", value_parser = humantime::parse_duration)]
    pub warm_from_lake: std::time::Duration,
}

pub async fn run(args: UpArgs, config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    run_with(args, config, shutdown, broadcast::channel(1024).0).await
}

/// Runs `up`; every alert is also sent to `alerts` (for `tooltrail demo`).
pub async fn run_with(
    args: UpArgs,
    mut config: Config,
    shutdown: CancellationToken,
    alerts: broadcast::Sender<Alert>,
) -> anyhow::Result<()> {
    if let Some(listen) = args.listen {
        config.http.listen = listen;
    }
    if let (Some(brokers), Some(topic)) = (args.kafka, args.topic) {
        config.kafka = Some(KafkaConfig {
            brokers,
            topic,
            ..config.kafka.unwrap_or_else(default_kafka)
        });
    }
    let location = match (&args.lake, &config.ingest.lake) {
        (None, None) => tooltrail_lake::Location::local(&args.data_dir.join("lake"))
            .context("creating the lake under --data-dir")?,
        _ => config.lake(args.lake.clone())?,
    };
    let mut registry = Registry::default();
    let lake_metrics = crate::lake::lake_metrics(&mut registry);
    let writer = crate::lake::open_writer(&location, &config, lake_metrics.clone()).await?;
    // Signs export manifests and the lake's digests.
    let signer = crate::signing::load_or_create(&config.signing, &args.data_dir)
        .context("loading the signing key")?;
    tracing::info!(key_id = %signer.key_id(), "signing key loaded");
    let metrics = Metrics::register(&mut registry);
    let supervisor = Supervisor::new(shutdown.clone());
    crate::lake::spawn_digester(
        &supervisor,
        &mut registry,
        &location,
        signer.clone(),
        config.digest.interval,
    );

    crate::retention::spawn(
        &supervisor,
        &mut registry,
        &location,
        &config,
        lake_metrics.clone(),
    );
    crate::compact::spawn(
        &supervisor,
        &mut registry,
        &location,
        &config,
        lake_metrics.clone(),
    );

    let since = chrono::Utc::now()
        - chrono::Duration::from_std(args.warm_from_lake).context("--warm-from-lake")?;
    let settings = crate::config::detect_settings(&config.detect)?;
    let rules = settings.rules.clone();
    if let Some(rules) = &rules {
        let token = supervisor.token(Phase::Serve);
        supervisor.spawn(
            Phase::Serve,
            "sigma rule reloader",
            crate::rules::watch(rules.clone(), token),
        );
    }
    let mut engine = Engine::new(settings);
    let started = std::time::Instant::now();
    let warmed = tooltrail_detect::service::warm::warm(
        &writer.events().snapshot().await?,
        since,
        &mut engine,
    )
    .await
    .context("warming the detector from the lake")?;
    tracing::info!(
        events = warmed.events,
        files = warmed.files,
        alerts = warmed.alerts.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "detector warmed from the lake"
    );
    let (tap, delivery) = start_detection(
        &config,
        &args.data_dir,
        (&location, lake_metrics.clone()),
        &mut registry,
        &supervisor,
        (engine, warmed.alerts),
        alerts,
    )
    .await?;
    let routes = match &config.kafka {
        Some(kafka_config) => {
            let runtime = tokio::runtime::Handle::current();
            let ingest = kafka::build(
                kafka_config,
                &config.ingest,
                &config.otlp,
                writer,
                runtime,
                metrics,
                Some(tap),
            )?;
            let token = supervisor.token(Phase::Intake);
            supervisor.spawn_blocking(
                Phase::Intake,
                "kafka ingest",
                move || Ok(ingest.run(token)?),
            );
            tracing::info!(brokers = %kafka_config.brokers, topic = %kafka_config.topic, "consuming from kafka");
            axum::Router::new()
        }
        None => {
            let (handle, committer) = http::build(
                writer,
                &config.http,
                &config.ingest,
                &config.otlp,
                metrics,
                Some(tap),
            );
            let token = supervisor.token(Phase::Intake);
            supervisor.spawn(Phase::Intake, "http ingest committer", async move {
                Ok(committer.run(token).await?)
            });
            handle.router()
        }
    };
    let query = tooltrail_query::Engine::open(
        &location,
        &config.query,
        &args.data_dir.join("spill"),
        tooltrail_query::QueryMetrics::register(&mut registry),
    )
    .context("starting the SQL engine")?;
    if config.query.tokens.is_empty() {
        tracing::warn!(
            "no [[query.tokens]] configured: POST /v1/sql answers 401 to everyone; `tooltrail sql --lake DIR` works locally"
        );
    }
    // One back-off on failed logins for the Postgres wire and the HTTP API.
    let logins = Arc::new(LoginLimiter::new(
        &config.query.login_backoff,
        LoginMetrics::register(&mut registry),
    ));
    if let Some(pg_listen) = &config.query.pgwire.listen {
        let server = tooltrail_query::pgwire::Server::build(
            &config.query.pgwire,
            query.clone(),
            Arc::clone(&logins),
            tooltrail_query::pgwire::WireMetrics::register(&mut registry),
        )?;
        let listener = tokio::net::TcpListener::bind(pg_listen)
            .await
            .with_context(|| format!("cannot listen on {pg_listen} (query.pgwire.listen)"))?;
        let pg_addr = listener.local_addr()?;
        let tls = server.tls();
        let token = supervisor.token(Phase::Serve);
        supervisor.spawn(Phase::Serve, "postgres wire", async move {
            server.serve(listener, token.cancelled_owned()).await;
            Ok(())
        });
        tracing::info!(addr = %pg_addr, tls, "postgres wire protocol listening");
        eprintln!("postgres wire on {pg_addr}");
    }
    let exports = crate::export::service(
        &config,
        &args.data_dir,
        &location,
        &query,
        signer.clone(),
        &mut registry,
    )?;
    let (sweeper, token) = (exports.clone(), supervisor.token(Phase::Serve));
    supervisor.spawn(Phase::Serve, "export sweeper", async move {
        sweeper.run(token.cancelled_owned()).await;
        Ok(())
    });
    let holds = tooltrail_lake::retention::HoldStore::open(&location, &config.retention)?;
    let audited = query.clone();
    // Triage rows are committed before each request is answered, so the
    // appender has nothing left once the server has drained; it ends when
    // the routes holding it are dropped.
    let (alerts_api, triage) =
        tooltrail_query::AlertsService::new(query.clone(), &location, lake_metrics);
    let alerts_api =
        alerts_api.with_notifier(Arc::new(crate::detect::TriageToDestinations(delivery)));
    tokio::spawn(triage.run(CancellationToken::new()));
    let sessions = tooltrail_query::auth::session::SessionStore::new(&config.query.console);
    // Every route that authenticates with a query token answers to the
    // back-off, and takes the console's session cookie with its CSRF check.
    let authenticated = tooltrail_query::holds::router(holds, query.clone())
        .merge(tooltrail_query::http::router(query.clone()))
        .merge(tooltrail_query::export::http::router(exports))
        .merge(tooltrail_query::alerts::http::router(alerts_api))
        .merge(tooltrail_query::console::router(
            query.clone(),
            sessions.clone(),
        ));
    // Hunts run the detector's rules; with none configured, an empty set.
    let rules = rules.unwrap_or_else(|| {
        Arc::new(tooltrail_detect::sigma::RuleSource::fixed(
            Default::default(),
        ))
    });
    let suppression = config.detect.suppression.as_secs() as i64;
    let authenticated = authenticated.merge(crate::rules::hunt::router(query, rules, suppression));
    let authenticated = tooltrail_query::auth::session::protect(authenticated, sessions);
    let routes = routes
        .merge(tooltrail_query::auth::peer::guard(authenticated, logins))
        .merge(tooltrail_query::console::files());
    let (addr, serve) = crate::serve::bind(
        config.http.listen,
        routes,
        registry,
        supervisor.token(Phase::Serve),
    )
    .await?;
    supervisor.spawn(Phase::Serve, "http server", serve);
    tracing::info!(%addr, lake = %location, "tooltrail is up");
    // Scripts and tests read this line to find the port.
    eprintln!("listening on http://{addr}");
    eprintln!("console at http://{addr}/");
    let stopped = supervisor.wait().await;
    audited.settle_audit().await;
    stopped
}

/// Starts the detector and alert delivery; returns the tap HTTP ingest
/// feeds durable events into.
async fn start_detection(
    config: &Config,
    data_dir: &Path,
    (lake, lake_metrics): (&tooltrail_lake::Location, tooltrail_lake::Metrics),
    registry: &mut Registry,
    supervisor: &Supervisor,
    (engine, pending): (Engine, Vec<Alert>),
    alerts: broadcast::Sender<Alert>,
) -> anyhow::Result<(EventTap, DeliveryHandle)> {
    let handle =
        crate::detect::start_delivery(&config.detect.delivery, data_dir, registry, supervisor)?;
    let metrics = tooltrail_detect::metrics::Metrics::register(registry);
    let publisher = Publisher::open(lake, Some(handle.clone()), metrics.clone(), lake_metrics)
        .await?
        .with_listeners(alerts);
    let detector = Detector::new(engine, pending, publisher, metrics, Arc::new(SystemClock));
    let (tap, events) = mpsc::channel(256);
    let token = supervisor.token(Phase::Detect);
    supervisor.spawn(Phase::Detect, "detector", async move {
        Ok(detector.run(events, token).await?)
    });
    Ok((tap, handle))
}

pub fn default_kafka() -> KafkaConfig {
    KafkaConfig {
        brokers: String::new(),
        topic: String::new(),
        encoding: Default::default(),
        group_id: "tooltrail-ingest".into(),
        dead_letter_topic: None,
        tenants: None,
        properties: Default::default(),
    }
}
