//! The baseline for `scripts/bench-kafka.py`: an rdkafka consumer that does nothing with what it
//! reads. It joins a fresh consumer group, reads `--records` records from the start of `--topic`
//! with the fetch settings `tooltrail ingest` uses, and prints one JSON line of figures.
//!
//! ```text
//! cargo run --release --example bare_consumer -- --brokers 127.0.0.1:9092 --topic T --records 500000
//! ```

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use clap::Parser;
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer as _};

#[derive(Parser, Debug)]
struct Args {
    /// Bootstrap servers.
    #[arg(long)]
    brokers: String,
    /// Topic to read from its start.
    #[arg(long)]
    topic: String,
    /// Stop after this many records.
    #[arg(long)]
    records: u64,
    /// Consumer group [default: a fresh one].
    #[arg(long)]
    group: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let started = Instant::now();
    let group = args.group.clone().unwrap_or_else(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        format!("bare-consumer-{nanos}")
    });
    // The same consumer settings as `tooltrail_ingest::source::kafka::build`.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range")
        .set("fetch.max.bytes", "52428800")
        .set("queued.max.messages.kbytes", "262144")
        .create()
        .context("create the consumer")?;
    consumer
        .subscribe(&[&args.topic])
        .with_context(|| format!("subscribe to {}", args.topic))?;

    let deadline = started + Duration::from_secs(args.timeout_secs);
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut first: Option<Instant> = None;
    while records < args.records {
        if Instant::now() > deadline {
            bail!(
                "read {records} of {} records in {}s",
                args.records,
                args.timeout_secs
            );
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                first.get_or_insert_with(Instant::now);
                records += 1;
                bytes += message.payload_len() as u64;
            }
            Some(Err(e)) => eprintln!("bare_consumer: kafka error: {e}"),
        }
    }
    let done = started.elapsed();
    let first = first.map_or(done, |f| f.duration_since(started));
    let reading = (done - first).as_secs_f64().max(1e-9);
    println!(
        "{{\"records\":{records},\"bytes\":{bytes},\"secs_total\":{:.3},\"secs_to_first_record\":{:.3},\
         \"records_per_s\":{:.0},\"mb_per_s\":{:.1},\"peak_rss_mib\":{:.0}}}",
        done.as_secs_f64(),
        first.as_secs_f64(),
        records as f64 / reading,
        bytes as f64 / reading / 1e6,
        peak_rss_kib() as f64 / 1024.0,
    );
    Ok(())
}

/// This process's peak resident set (VmHWM), in KiB; 0 where /proc is unavailable.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
