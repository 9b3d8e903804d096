//! `tooltrail demo`: `up` with simulated traffic and injected attacks, and
//! each alert printed as it fires with a query to investigate it.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{Datelike, TimeZone, Utc};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tooltrail_detect::{Alert, Severity};

use crate::config::Config;
use crate::simulate::{self, SimulateArgs};
use crate::up::{self, UpArgs};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Where the demo's lake and state go [default: a new directory under the system temp dir].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Simulated users.
    #[arg(long, default_value_t = 150)]
    pub users: usize,
    /// Days of history to simulate, ending at today's midnight (UTC); attacks
    /// fall in the last two.
    #[arg(long, default_value_t = 14)]
    pub days: u32,
    /// Seed for the simulation.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

pub async fn run(
    args: DemoArgs,
    mut config: Config,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // A token to sign in to the console with, unless the configuration has
    // its own: the demo's own admin, for this run only.
    let demo_token = config.query.tokens.is_empty().then(|| {
        let token = hex::encode(rand::random::<[u8; 16]>());
        config
            .query
            .tokens
            .push(tooltrail_query::config::TokenConfig {
                name: "demo".into(),
                sha256: tooltrail_query::auth::token_hash(&token),
                role: tooltrail_query::Role::Admin,
                tenants: vec!["*".into()],
            });
        token
    });
    let data_dir = match args.data_dir {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!(
            "tooltrail-demo-{}",
            Utc::now().format("%Y%m%dT%H%M%S")
        )),
    };
    std::fs::create_dir_all(&data_dir).with_context(|| format!("create {}", data_dir.display()))?;
    let addr = free_local_addr()?;
    let (alerts, mut listen) = broadcast::channel::<Alert>(4096);
    let up_args = UpArgs {
        data_dir: data_dir.clone(),
        lake: None,
        listen: Some(addr),
        kafka: None,
        topic: None,
        warm_from_lake: std::time::Duration::from_secs(28 * 86_400),
    };
    let up = tokio::spawn(up::run_with(up_args, config, shutdown.clone(), alerts));
    wait_healthy(addr).await?;

    let lake = data_dir.join("lake");
    println!(
        "tooltrail is up at http://{addr} (lake: {})",
        lake.display()
    );
    match &demo_token {
        Some(token) => println!("console: http://{addr}/  (sign in with the demo token {token})"),
        None => println!("console: http://{addr}/  (sign in with a token of [[query.tokens]])"),
    }
    println!(
        "simulating {} users over {} days with attacks in the last two...\n",
        args.users, args.days
    );
    let started = Instant::now();
    let printer = tokio::spawn(async move {
        let mut shown = 0usize;
        while let Ok(alert) = listen.recv().await {
            if alert.repeats > 0 {
                continue;
            }
            shown += 1;
            print_alert(&alert, &lake, started.elapsed());
        }
        shown
    });

    let today = Utc::now().date_naive();
    let start = Utc
        .with_ymd_and_hms(today.year(), today.month(), today.day(), 0, 0, 0)
        .single()
        .context("today's midnight")?
        - chrono::Duration::days(i64::from(args.days));
    simulate::run(SimulateArgs {
        users: args.users,
        days: args.days,
        seed: args.seed,
        start: Some(start),
        attack_days: Some(2),
        incident_rate: 40.0,
        out: None,
        labels: None,
        drifts: None,
        kafka: None,
        topic: None,
        http: Some(
            format!("http://{addr}/v1/events")
                .parse()
                .context("ingest url")?,
        ),
        token: None,
        batch: 2000,
        shape: Default::default(),
    })
    .await?;
    println!(
        "\nall simulated traffic sent; tooltrail keeps running at http://{addr} (Ctrl-C to stop)"
    );
    let result = up.await.context("tooltrail up task")?;
    let shown = printer.await.unwrap_or(0);
    println!("{shown} alerts shown");
    result
}

fn print_alert(alert: &Alert, lake: &std::path::Path, elapsed: Duration) {
    let mark = match alert.severity {
        Severity::Critical => "CRITICAL",
        Severity::High => "HIGH    ",
        Severity::Medium => "MEDIUM  ",
        Severity::Low => "LOW     ",
    };
    println!(
        "[{:>5.1}s] {mark} {:<19} {}",
        elapsed.as_secs_f64(),
        alert.detector.as_str(),
        alert.title
    );
    println!("          {}", alert.explanation);
    let script = format!(
        "CREATE VIEW events AS SELECT * FROM read_parquet('{}/events/**/*.parquet', hive_partitioning=true); {}",
        lake.display(),
        alert.investigation_sql()
    );
    println!(
        "          investigate: duckdb -c {}\n",
        shell_quote(&script)
    );
}

/// `s` as one shell word: single-quoted, its own single quotes closed,
/// escaped and reopened.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn free_local_addr() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("find a free port")?;
    Ok(listener.local_addr()?)
}

async fn wait_healthy(addr: SocketAddr) -> anyhow::Result<()> {
    let url = format!("http://{addr}/healthz");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = client.get(&url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("tooltrail did not become healthy at {url} within 30s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
