//! Where ingest's time goes, stage by stage, on one NDJSON file: decode
//! (`decode_view`), decode and append to the hour's builder (`Pending::push`),
//! finishing the builders, sorting, Parquet encoding with fsync, and the lake
//! commit as a whole. Figures are CPU time per event (the machine is shared,
//! so wall time is noisy); bytes are those of the events files.
//!
//! ```text
//! cargo build --release -p tooltrail-ingest --example ingest_stages
//! taskset -c 0 $CARGO_TARGET_DIR/release/examples/ingest_stages FILE [MAX_EVENTS] [BATCH]
//! ```
//!
//! `ZSTD_LEVEL` overrides the level (default 1, as `ingest.zstd_level`).
//! `ENCODINGS=col=ENCODING,...` overrides column encodings for the timed
//! writes (e.g. `latency_ms=BYTE_STREAM_SPLIT`), to try one out; the bytes
//! per column are printed for the events files.

mod support;

use std::time::Duration;

use std::collections::BTreeMap;

use ::parquet::basic::Encoding;
use ::parquet::file::reader::{FileReader, SerializedFileReader};
use ::parquet::schema::types::ColumnPath;
use anyhow::Context;
use chrono::Utc;
use tooltrail_ingest::batch::{Pending, TimeWindow};
use tooltrail_lake::parquet;
use tooltrail_schemas::lake::Source;

use support::cpu;

fn arg<T: std::str::FromStr>(value: Option<String>, default: T) -> anyhow::Result<T>
where
    T::Err: std::error::Error + Send + Sync + 'static,
{
    Ok(value.map(|s| s.parse()).transpose()?.unwrap_or(default))
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .context("usage: ingest_stages FILE [MAX_EVENTS] [BATCH]")?;
    let max: usize = arg(args.next(), usize::MAX)?;
    let batch: usize = arg(args.next(), 200_000)?;
    let zstd: i32 = arg(std::env::var("ZSTD_LEVEL").ok(), 1)?;
    let mut encodings = Vec::new();
    for pair in std::env::var("ENCODINGS").unwrap_or_default().split(',') {
        if let Some((column, encoding)) = pair.split_once('=') {
            encodings.push((ColumnPath::from(column), encoding.parse::<Encoding>()?));
        }
    }
    let mut columns: BTreeMap<String, u64> = BTreeMap::new();

    let data = std::fs::read(&path)?;
    let lines: Vec<&[u8]> = data
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .take(max)
        .collect();
    let n = lines.len();
    let window = TimeWindow {
        max_age: Duration::from_secs(10 * 365 * 86400),
        max_future: Duration::from_secs(3600),
    };

    let t = cpu();
    let ok = lines
        .iter()
        .filter(|l| tooltrail_schemas::decode_view(l).is_ok())
        .count();
    let decode = cpu() - t;
    anyhow::ensure!(ok == n, "{} of {n} lines do not decode", n - ok);

    let dir = tempfile::tempdir()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let location = tooltrail_lake::Location::local(&dir.path().join("lake"))?;
    let mut lake = runtime.block_on(tooltrail_lake::Writer::open(
        &location,
        zstd,
        Default::default(),
    ))?;
    let [mut push, mut finish, mut sort, mut write, mut commit] = [Duration::ZERO; 5];
    let (mut files, mut bytes) = (0usize, 0u64);
    for chunk in lines.chunks(batch) {
        let mut pending = Pending::new(window);
        let t = cpu();
        let received = Utc::now();
        for (i, line) in chunk.iter().enumerate() {
            let source = Source::File {
                path: &path,
                line: i as i64,
            };
            let _ = pending.push(line, received, source);
        }
        push += cpu() - t;
        let t = cpu();
        let (txn, _) = pending.take()?;
        finish += cpu() - t;
        // Sort and encode each file as the lake does, timed apart, to a scratch file.
        let tables = [("events", &txn.events), ("quarantine", &txn.quarantine)];
        for (table, rows) in tables
            .into_iter()
            .flat_map(|(t, files)| files.iter().map(move |(_, b)| (t, b)))
        {
            let t = cpu();
            let sorted = parquet::sort_for_lake(rows)?;
            sort += cpu() - t;
            let t = cpu();
            let mut props = parquet::writer_properties(&sorted, zstd, Vec::new()).into_builder();
            for (column, encoding) in &encodings {
                props = props
                    .set_column_dictionary_enabled(column.clone(), false)
                    .set_column_encoding(column.clone(), *encoding);
            }
            let props = props.build();
            let out = dir.path().join(format!("scratch-{files}.parquet"));
            let written = parquet::write_file(&out, &sorted, props)?;
            write += cpu() - t;
            if table == "events" {
                bytes += written.bytes;
                let reader = SerializedFileReader::new(std::fs::File::open(&out)?)?;
                for group in reader.metadata().row_groups() {
                    for column in group.columns() {
                        *columns.entry(column.column_path().string()).or_default() +=
                            column.compressed_size() as u64;
                    }
                }
            }
            files += 1;
        }
        // And the real commit (sort, encode, put, Delta commit) for the total.
        let t = cpu();
        runtime.block_on(lake.commit(txn))?;
        commit += cpu() - t;
    }
    let per = |d: Duration| d.as_secs_f64() * 1e9 / n as f64;
    let total = push + finish + commit;
    println!("{n} events, {files} files, zstd {zstd} (ns of CPU per event)");
    println!("decode_view            {:6.0}", per(decode));
    println!("push (decode+append)   {:6.0}", per(push));
    println!("finish builders        {:6.0}", per(finish));
    println!("sort                   {:6.0}", per(sort));
    println!("encode+write+fsync     {:6.0}", per(write));
    println!("commit (all of it)     {:6.0}", per(commit));
    println!(
        "push+finish+commit     {:6.0} = {:.0} events/s, {:.1} bytes/event",
        per(total),
        n as f64 / total.as_secs_f64(),
        bytes as f64 / n as f64
    );
    let mut columns: Vec<_> = columns.into_iter().collect();
    columns.sort_by_key(|(_, b)| std::cmp::Reverse(*b));
    let footer = bytes - columns.iter().map(|(_, b)| b).sum::<u64>();
    println!(
        "bytes/event by column (footer, page index and bloom filters: {:.2})",
        footer as f64 / n as f64
    );
    for (column, b) in columns.iter().take(12) {
        println!("  {column:24} {:6.2}", *b as f64 / n as f64);
    }
    Ok(())
}
