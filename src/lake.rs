//! `tooltrail lake`: the lake's signed digest chain. `digest` appends one
//! (for cron in Kafka deployments; `up` writes them itself every
//! `digest.interval`), `verify` walks the chain and the lake and names every
//! modified, deleted or unlisted file and every broken, unsigned or missing
//! link (see `tooltrail_lake::digest`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use prometheus_client::registry::Registry;
use tooltrail_lake::digest::{self, Digester};
use tooltrail_lake::metrics::DigestMetrics;
use tooltrail_lake::{Location, tables};
use tooltrail_schemas::signing::Signer;

use crate::config::Config;
use crate::supervisor::Supervisor;

#[derive(clap::Subcommand, Debug)]
pub enum LakeCommand {
    /// Write and sign the next digest now: the commits, compactions and
    /// deletions since the previous one, and new alerts and query-audit files.
    Digest {
        /// The lake (a directory or s3://bucket/prefix), overriding `ingest.lake`.
        #[arg(long, value_name = "LAKE")]
        lake: Option<String>,
        /// The Ed25519 private key (PKCS#8 PEM); default `signing.key_file`.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
    },
    /// Walk the digest chain and the lake; print every finding. Exits 0 when
    /// clean, 1 when anything is wrong.
    Verify {
        /// The lake (a directory or s3://bucket/prefix), overriding `ingest.lake`.
        #[arg(long, value_name = "LAKE")]
        lake: Option<String>,
        /// Check only files whose partition overlaps from this time on (RFC 3339
        /// or YYYY-MM-DD, UTC). Signatures, links and the log are always checked whole.
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        from: Option<DateTime<Utc>>,
        /// Check only files whose partition starts before this time.
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        to: Option<DateTime<Utc>>,
        /// A trusted public key (SPKI PEM, from `tooltrail keys public`); repeat
        /// for rotated keys. Default: `signing.key_file`'s and `signing.trusted_public_keys`.
        #[arg(long = "public-key", value_name = "FILE")]
        public_keys: Vec<PathBuf>,
        /// `text`: one line per finding and a summary; `json`: the whole report.
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
        /// The head an earlier audit recorded, as `SEQ:SHA256` (the summary line
        /// prints it): that digest must still be there, unchanged. This catches a
        /// chain cut back since, which the chain alone cannot show.
        #[arg(long, value_name = "SEQ:SHA256", value_parser = parse_anchor)]
        expect_head: Option<(u64, String)>,
    },
}

/// `SEQ:SHA256`, as `lake verify` prints the head.
fn parse_anchor(text: &str) -> Result<(u64, String), String> {
    let (seq, sha256) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not SEQ:SHA256"))?;
    let seq = seq
        .parse()
        .map_err(|_| format!("`{seq}` is not a digest seq"))?;
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("`{sha256}` is not a hex SHA-256"));
    }
    Ok((seq, sha256.to_ascii_lowercase()))
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportFormat {
    Text,
    Json,
}

/// The lake of `flag` (else `ingest.lake`), which must already hold an
/// events table: for commands that read a lake rather than start one.
pub async fn existing(config: &Config, flag: Option<String>) -> anyhow::Result<Location> {
    let lake = config.lake(flag)?;
    let events = tooltrail_lake::Snapshot::load(&lake, &tables::EVENTS)
        .await
        .with_context(|| format!("reading the lake at {lake}"))?;
    anyhow::ensure!(
        events.is_some(),
        "{lake} is not a tooltrail lake: it has no events table"
    );
    Ok(lake)
}

pub async fn run(command: LakeCommand, config: &Config) -> anyhow::Result<()> {
    match command {
        LakeCommand::Digest { lake, key } => {
            let lake = existing(config, lake).await?;
            let signer = match key {
                Some(path) => crate::signing::read_private(&path)?,
                None => crate::signing::load(&config.signing)?
                    .context("no signing key: pass --key FILE or set signing.key_file")?,
            };
            let summary = digest::write_digest(&lake, tables::ALL, &signer, Utc::now())
                .await
                .with_context(|| format!("writing a digest of the lake at {lake}"))?;
            println!("wrote {summary}; key {}", signer.key_id());
            Ok(())
        }
        LakeCommand::Verify {
            lake,
            from,
            to,
            public_keys,
            format,
            expect_head,
        } => {
            let lake = existing(config, lake).await?;
            let keyring = crate::signing::keyring(&config.signing, &public_keys)?;
            let range = (from.is_some() || to.is_some()).then(|| {
                (
                    from.unwrap_or(DateTime::<Utc>::MIN_UTC),
                    to.unwrap_or(DateTime::<Utc>::MAX_UTC),
                )
            });
            let mut report = digest::verify(&lake, tables::ALL, &keyring, range, Utc::now())
                .await
                .with_context(|| format!("verifying the lake at {lake}"))?;
            if let Some((seq, sha256)) = expect_head {
                report
                    .findings
                    .extend(digest::check_anchor(&lake, seq, &sha256).await?);
            }
            match format {
                ReportFormat::Text => print!("{report}"),
                ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
            }
            if report.is_clean() {
                Ok(())
            } else {
                anyhow::bail!(
                    "the lake at {lake} failed verification: {}",
                    digest::count(report.findings.len(), "finding")
                )
            }
        }
    }
}

/// `2026-11-22T09:00:00Z` (any offset) or `2026-11-22` (midnight UTC).
pub(crate) fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| format!("`{text}` is neither RFC 3339 nor YYYY-MM-DD"))
}

/// Runs `up`'s digester ([`Digester`]) in the serve phase.
pub fn spawn_digester(
    supervisor: &Supervisor,
    registry: &mut Registry,
    lake: &Location,
    signer: Signer,
    interval: Duration,
) {
    let metrics = DigestMetrics::default();
    metrics.register(registry);
    let digester = Digester::new(lake.clone(), tables::ALL, signer, interval, metrics);
    let token = supervisor.token(crate::supervisor::Phase::Serve);
    supervisor.spawn(
        crate::supervisor::Phase::Serve,
        "lake digester",
        async move {
            digester.run(token).await;
            Ok(())
        },
    );
}

/// The lake's metrics (`tooltrail_lake_*`), registered in `registry`: one
/// handle for every writer of the process (ingest, alerts, retention).
pub fn lake_metrics(registry: &mut Registry) -> tooltrail_lake::Metrics {
    let metrics = tooltrail_lake::Metrics::default();
    metrics.register(registry);
    metrics
}

/// Opens ingest's writer of `lake` (creating its tables on first use).
pub async fn open_writer(
    lake: &Location,
    config: &Config,
    metrics: tooltrail_lake::Metrics,
) -> anyhow::Result<tooltrail_lake::Writer> {
    tooltrail_lake::Writer::open(lake, config.ingest.zstd_level, metrics)
        .await
        .with_context(|| format!("opening the lake at {lake}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc_3339_or_a_utc_date() {
        assert_eq!(
            parse_time("2026-11-22").unwrap(),
            parse_time("2026-11-22T00:00:00Z").unwrap()
        );
        assert_eq!(
            parse_time("2026-11-22T10:00:00+01:00").unwrap(),
            parse_time("2026-11-22T09:00:00Z").unwrap()
        );
        assert!(parse_time("yesterday").unwrap_err().contains("yesterday"));
    }

    #[test]
    fn an_anchor_is_a_seq_and_a_sha256() {
        let sha = "AB".repeat(32);
        assert_eq!(parse_anchor(&format!("7:{sha}")), Ok((7, "ab".repeat(32))));
        assert!(parse_anchor("7").unwrap_err().contains("SEQ:SHA256"));
        assert!(parse_anchor("x:00").unwrap_err().contains("seq"));
        assert!(parse_anchor("7:00").unwrap_err().contains("SHA-256"));
    }
}
