//! `tooltrail ingest`: Kafka ingest as its own service, or a one-off import
//! of an NDJSON file.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;
use tooltrail_ingest::config::KafkaConfig;
use tooltrail_ingest::metrics::Metrics;
use tooltrail_ingest::source::{file, kafka};

use crate::config::Config;
use crate::supervisor::{Phase, Supervisor};

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["kafka", "file"])))]
pub struct IngestArgs {
    /// The lake (a directory or s3://bucket/prefix), overriding `ingest.lake`.
    #[arg(long, value_name = "LAKE")]
    pub lake: Option<String>,
    /// Consume from these Kafka brokers (runs until SIGTERM).
    #[arg(long, value_name = "BROKERS", requires = "topic")]
    pub kafka: Option<String>,
    /// The Kafka topic (with --kafka).
    #[arg(long, value_name = "TOPIC")]
    pub topic: Option<String>,
    /// Consumer group (with --kafka), overriding `kafka.group_id`.
    #[arg(long, value_name = "GROUP")]
    pub group: Option<String>,
    /// Import this NDJSON file and exit.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["kafka", "topic", "group"])]
    pub file: Option<PathBuf>,
    /// With --file: accept events up to this old (e.g. "5y"), overriding
    /// `ingest.max_event_age` for this import; for importing history.
    #[arg(long, value_name = "AGE", requires = "file", value_parser = humantime::parse_duration)]
    pub max_event_age: Option<std::time::Duration>,
    /// With --file: accept events of any age (`up` and Kafka keep the guard).
    #[arg(long, requires = "file", conflicts_with = "max_event_age")]
    pub any_age: bool,
    /// Address for /healthz and /metrics (with --kafka), overriding `http.listen`.
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

pub async fn run(
    args: IngestArgs,
    mut config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let lake = config.lake(args.lake)?;
    let mut registry = Registry::default();
    let lake_metrics = crate::lake::lake_metrics(&mut registry);
    let writer = crate::lake::open_writer(&lake, &config, lake_metrics).await?;
    let metrics = Metrics::register(&mut registry);

    if let Some(path) = args.file {
        let mut ingest = config.ingest.clone();
        if args.any_age {
            ingest.max_event_age = std::time::Duration::MAX;
        } else if let Some(age) = args.max_event_age {
            ingest.max_event_age = age;
        }
        let runtime = tokio::runtime::Handle::current();
        return tokio::task::spawn_blocking(move || {
            import(&path, writer, &runtime, &ingest, &metrics)
        })
        .await?;
    }

    let brokers = args.kafka.context("--kafka is required without --file")?;
    let topic = args.topic.context("--topic is required with --kafka")?;
    let mut kafka_config = KafkaConfig {
        brokers,
        topic,
        ..config.kafka.take().unwrap_or_else(crate::up::default_kafka)
    };
    if let Some(group) = args.group {
        kafka_config.group_id = group;
    }
    if let Some(listen) = args.listen {
        config.http.listen = listen;
    }
    let supervisor = Supervisor::new(shutdown);
    let runtime = tokio::runtime::Handle::current();
    let ingest = kafka::build(
        &kafka_config,
        &config.ingest,
        &config.otlp,
        writer,
        runtime,
        metrics,
        None,
    )?;
    let token = supervisor.token(Phase::Intake);
    supervisor.spawn_blocking(
        Phase::Intake,
        "kafka ingest",
        move || Ok(ingest.run(token)?),
    );
    let (addr, serve) = crate::serve::bind(
        config.http.listen,
        axum::Router::new(),
        registry,
        supervisor.token(Phase::Serve),
    )
    .await?;
    supervisor.spawn(Phase::Serve, "http server", serve);
    tracing::info!(%addr, topic = %kafka_config.topic, group = %kafka_config.group_id, "kafka ingest running");
    eprintln!("listening on http://{addr}");
    supervisor.wait().await
}

fn import(
    path: &std::path::Path,
    mut writer: tooltrail_lake::Writer,
    runtime: &tokio::runtime::Handle,
    config: &tooltrail_ingest::config::IngestConfig,
    metrics: &Metrics,
) -> anyhow::Result<()> {
    let total = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    let bar = if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("the progress template is valid"),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let started = std::time::Instant::now();
    let summary = file::import_file(path, &mut writer, runtime, config, metrics, &mut |read| {
        bar.set_position(read)
    })?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "imported {}: {} events, {} quarantined, {} lines already in the lake, {} commits, {:.1}s ({:.0} lines/s)",
        path.display(),
        summary.events,
        summary.quarantined,
        summary.skipped,
        summary.transactions,
        secs,
        summary.lines as f64 / secs.max(1e-9),
    );
    if summary.requeued > 0 {
        println!(
            "imported {} line(s) an earlier import had quarantined as outside the accepted window",
            summary.requeued
        );
    }
    print_rejects(&summary, config);
    Ok(())
}

/// What the import quarantined, by reason, with the first line numbers and,
/// for old events, the flag that lets them in.
fn print_rejects(summary: &file::ImportSummary, config: &tooltrail_ingest::config::IngestConfig) {
    for (kind, group) in &summary.rejects {
        let field = kind
            .field
            .as_deref()
            .map(|f| format!(" ({f})"))
            .unwrap_or_default();
        let first: Vec<String> = group.first_lines.iter().map(i64::to_string).collect();
        let more = if group.lines > group.first_lines.len() as u64 {
            ", ..."
        } else {
            ""
        };
        println!(
            "quarantined {} line(s), {}{field}: lines {}{more}",
            group.lines,
            kind.reason,
            first.join(", "),
        );
        println!("  first: {}", truncate(&group.example, 300));
        if kind.too_old {
            println!(
                "  these events are older than ingest.max_event_age ({}): run the import again \
                 with --max-event-age <AGE> (e.g. 5y) or --any-age to bring in just these lines",
                humantime::format_duration(config.max_event_age),
            );
        }
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}
