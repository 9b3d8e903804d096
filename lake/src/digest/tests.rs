//! A lake of real Delta commits (ingest batches with rejects, a compaction,
//! a vacuum) verifies clean; each kind of tampering is caught and named.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, TimeZone, Utc};
use tooltrail_schemas::lake::{EventBatchBuilder, QuarantineBatchBuilder, Source};
use tooltrail_schemas::signing::{Keyring, Signer};

use super::format::{Digest, digest_name};
use super::*;
use crate::compact::{CompactOptions, compact};
use crate::table::{Partition, Snapshot, Table};
use crate::tables::{EVENTS, QUARANTINE};
use crate::vacuum::vacuum;
use crate::writer::{Batch, Writer};
use crate::{Metrics, Position};

const TABLES: [&TableSpec; 2] = [&EVENTS, &QUARANTINE];
use crate::table::TableSpec;

fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, hour, minute, 0).unwrap()
}

fn signer() -> Signer {
    Signer::from_seed([9; 32])
}

fn keyring() -> Keyring {
    Keyring::new(vec![signer().public_key().clone()])
}

struct TestLake {
    dir: tempfile::TempDir,
    location: Location,
    writer: Writer,
}

impl TestLake {
    async fn new() -> TestLake {
        let dir = tempfile::tempdir().unwrap();
        let location = Location::local(dir.path()).unwrap();
        let writer = Writer::open(&location, 1, Metrics::default())
            .await
            .unwrap();
        TestLake {
            dir,
            location,
            writer,
        }
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Commits `n` events in `hour` (lines `first..`), plus one reject when
    /// `bad`: a commit to `quarantine`, then one to `events`.
    async fn ingest(&mut self, hour: u32, first: i64, n: i64, bad: bool) {
        let time = at(hour, 5);
        let mut events = EventBatchBuilder::new();
        for line in first..first + n {
            let event = crate::testing::event(&format!("e{line}"), time, "u");
            events.append(&event, time, Source::File { path: "f", line });
        }
        let mut batch = Batch {
            events: vec![(Partition::hour(time), events.finish().unwrap())],
            positions: vec![Position {
                app_id: "file:test".into(),
                first,
                last: first + n - 1,
            }],
            ..Batch::default()
        };
        if bad {
            let mut rejects = QuarantineBatchBuilder::new();
            let raw = b"{not json";
            let error = tooltrail_schemas::decode(raw).unwrap_err();
            rejects.append(
                raw,
                &error,
                time,
                Source::File {
                    path: "f",
                    line: first,
                },
            );
            batch.quarantine = vec![(Partition::day(time.date_naive()), rejects.finish().unwrap())];
        }
        self.writer.commit(batch).await.unwrap();
    }

    async fn digest(&self) -> DigestSummary {
        write_digest(&self.location, &TABLES, &signer(), Utc::now())
            .await
            .unwrap()
    }

    async fn check(&self) -> VerifyReport {
        verify(&self.location, &TABLES, &keyring(), None, Utc::now())
            .await
            .unwrap()
    }

    async fn events(&self) -> Table {
        Table::open(&self.location, &EVENTS, 1, Metrics::default())
            .await
            .unwrap()
    }

    /// A live file of `table` under `under`, relative to the lake root.
    async fn live(&self, spec: &'static TableSpec, under: &str) -> String {
        let snapshot = Snapshot::load(&self.location, spec).await.unwrap().unwrap();
        let file = snapshot
            .files()
            .unwrap()
            .into_iter()
            .find(|f| f.path.starts_with(under))
            .expect("a live file");
        format!("{}/{}", spec.name, file.path)
    }

    fn digest_file(&self, seq: u64) -> PathBuf {
        self.root().join(DIGEST_DIR).join(digest_name(seq))
    }

    fn signature_file(&self, seq: u64) -> PathBuf {
        let mut path = self.digest_file(seq).into_os_string();
        path.push(".sig");
        path.into()
    }
}

/// Three digests over: two ingest batches (one with a reject), two more,
/// and a compaction of hour 09.
async fn digested_lake() -> TestLake {
    let mut lake = TestLake::new().await;
    lake.ingest(9, 0, 10, true).await;
    lake.ingest(9, 10, 10, false).await;
    let first = lake.digest().await;
    assert_eq!(first.seq, 1);
    assert_eq!(first.added(), 3, "{first}");
    lake.ingest(9, 20, 10, false).await;
    lake.ingest(10, 30, 10, false).await;
    assert_eq!(lake.digest().await.seq, 2);
    let options = CompactOptions {
        min_age: Duration::ZERO,
        ..CompactOptions::default()
    };
    let compacted = compact(&mut lake.events().await, &options, at(12, 0))
        .await
        .unwrap();
    assert_eq!((compacted.partitions, compacted.files_in), (1, 3));
    let third = lake.digest().await;
    assert_eq!((third.added(), third.removed()), (1, 3), "{third}");
    lake
}

/// Sets a file's modification time `ago` into the past.
fn age(path: &Path, ago: Duration) {
    let file = fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - ago).unwrap();
}

#[tokio::test]
async fn an_untouched_lake_with_a_compaction_verifies_with_zero_findings() {
    let lake = digested_lake().await;
    let report = lake.check().await;
    assert_eq!(report.findings, vec![], "{report}");
    assert_eq!(report.pending, vec![]);
    assert_eq!(report.digests, 3);
    assert_eq!(report.head.as_ref().map(|h| h.seq), Some(3));
    // events: create + 4 appends + compaction; quarantine: create + 1 append.
    assert_eq!(report.log_entries_checked, 8);
    // Hour 09 compacted (and its three inputs, still there), hour 10, the reject.
    assert_eq!(report.files_checked, 6);
    assert!(report.to_string().ends_with("0 findings\n"), "{report}");
}

#[tokio::test]
async fn a_flipped_byte_in_a_data_file_is_a_modified_file() {
    let lake = digested_lake().await;
    let path = lake.live(&EVENTS, "dt=2026-11-22/hour=09").await;
    let mut bytes = fs::read(lake.root().join(&path)).unwrap();
    bytes[100] ^= 1;
    fs::write(lake.root().join(&path), bytes).unwrap();
    let findings = lake.check().await.findings;
    assert!(
        matches!(&findings[..], [Finding::ModifiedFile { path: p, expected_bytes, actual_bytes, .. }]
            if *p == path && expected_bytes == actual_bytes),
        "{findings:#?}"
    );
}

#[tokio::test]
async fn a_deleted_live_file_is_named_with_the_digest_that_listed_it() {
    let lake = digested_lake().await;
    let path = lake.live(&QUARANTINE, "dt=").await;
    fs::remove_file(lake.root().join(&path)).unwrap();
    assert_eq!(
        lake.check().await.findings,
        vec![Finding::DeletedFile {
            path,
            recorded_in_digest: Some(1)
        }]
    );
}

#[tokio::test]
async fn a_parquet_file_dropped_into_a_partition_is_unlisted_once_it_cannot_be_a_write_in_flight() {
    let lake = digested_lake().await;
    let live = lake.live(&EVENTS, "dt=2026-11-22/hour=10").await;
    let planted = "events/dt=2026-11-22/hour=10/part-planted.zstd.parquet";
    fs::copy(lake.root().join(&live), lake.root().join(planted)).unwrap();
    // Hidden names are no reader's business, and not findings.
    fs::write(
        lake.root()
            .join("events/dt=2026-11-22/hour=10/.part-x.parquet.tmp"),
        b"x",
    )
    .unwrap();
    let report = lake.check().await;
    assert_eq!(report.findings, vec![], "as new as the last digest");
    assert_eq!(
        report.pending,
        vec![Pending {
            path: planted.into(),
            reason: PendingReason::NotYetCommitted
        }]
    );
    age(&lake.root().join(planted), Duration::from_secs(3600));
    assert_eq!(
        lake.check().await.findings,
        vec![Finding::UnlistedFile {
            path: planted.into()
        }]
    );
}

#[tokio::test]
async fn an_edited_commit_file_is_named_by_its_table_and_version() {
    let lake = digested_lake().await;
    let path = lake
        .root()
        .join("events/_delta_log/00000000000000000001.json");
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replacen("\"size\":", "\"size\": ", 1)).unwrap();
    let findings = lake.check().await.findings;
    assert_eq!(
        findings,
        vec![Finding::LogEntryModified {
            table: "events".into(),
            version: 1,
            recorded_in_digest: 1
        }]
    );
    assert_eq!(
        findings[0].to_string(),
        "log entry events/_delta_log/00000000000000000001.json modified: its sha256 differs from digest 1"
    );
}

#[tokio::test]
async fn a_deleted_commit_file_is_missing() {
    let lake = digested_lake().await;
    fs::remove_file(
        lake.root()
            .join("quarantine/_delta_log/00000000000000000001.json"),
    )
    .unwrap();
    assert_eq!(
        lake.check().await.findings,
        vec![Finding::LogEntryMissing {
            table: "quarantine".into(),
            version: 1
        }]
    );
}

#[tokio::test]
async fn an_edited_digest_fails_its_signature_and_breaks_the_next_link() {
    let lake = digested_lake().await;
    let path = lake.digest_file(2);
    let text = fs::read_to_string(&path).unwrap();
    let edited = text.replacen("\"seq\": 2", "\"seq\":  2", 1);
    assert_ne!(text, edited);
    fs::write(&path, edited).unwrap();
    let findings = lake.check().await.findings;
    assert!(
        matches!(
            &findings[..],
            [
                Finding::BadSignature { seq: 2, .. },
                Finding::BrokenLink { seq: 3, .. },
            ]
        ),
        "{findings:#?}"
    );
}

#[tokio::test]
async fn a_deleted_middle_digest_is_a_gap_and_its_commits_are_no_longer_vouched_for() {
    let lake = digested_lake().await;
    fs::remove_file(lake.digest_file(2)).unwrap();
    fs::remove_file(lake.signature_file(2)).unwrap();
    let report = lake.check().await;
    assert_eq!(
        report.findings,
        vec![Finding::Gap {
            after_seq: 1,
            next_seq: 3
        }]
    );
    assert_eq!(report.log_entries_checked, 6);
}

#[tokio::test]
async fn a_deleted_signature_is_unsigned() {
    let lake = digested_lake().await;
    fs::remove_file(lake.signature_file(3)).unwrap();
    assert_eq!(
        lake.check().await.findings,
        vec![Finding::Unsigned { seq: 3 }]
    );
}

#[tokio::test]
async fn a_signature_by_another_key_is_bad_and_a_digest_naming_it_is_unknown() {
    let lake = digested_lake().await;
    let other = Signer::from_seed([10; 32]);
    let bytes = fs::read(lake.digest_file(3)).unwrap();
    fs::write(lake.signature_file(3), other.sign(&bytes)).unwrap();
    let findings = lake.check().await.findings;
    assert!(
        matches!(&findings[..], [Finding::BadSignature { seq: 3, .. }]),
        "{findings:#?}"
    );
    let text = String::from_utf8(bytes).unwrap();
    let resigned = text.replace(signer().key_id().as_str(), other.key_id().as_str());
    fs::write(lake.digest_file(3), &resigned).unwrap();
    fs::write(lake.signature_file(3), other.sign(resigned.as_bytes())).unwrap();
    assert_eq!(
        lake.check().await.findings,
        vec![Finding::UnknownKey {
            seq: 3,
            key_id: other.key_id().to_string()
        }]
    );
}

#[tokio::test]
async fn what_happened_after_the_last_digest_is_pending_until_the_next_digest() {
    let mut lake = digested_lake().await;
    lake.ingest(11, 100, 5, false).await;
    let removed = lake.live(&EVENTS, "dt=2026-11-22/hour=10").await;
    let mut events = lake.events().await;
    let remove = events
        .snapshot()
        .await
        .unwrap()
        .remove(removed.strip_prefix("events/").unwrap())
        .unwrap()
        .unwrap();
    let retire = crate::Commit::removing(crate::Operation::Retention, vec![remove]);
    events.commit(&retire).await.unwrap();
    let report = lake.check().await;
    assert_eq!(report.findings, vec![], "{report}");
    let mut reasons: Vec<PendingReason> = report.pending.iter().map(|p| p.reason).collect();
    reasons.sort_by_key(|r| format!("{r:?}"));
    assert_eq!(
        reasons,
        [
            PendingReason::CommittedAfterLastDigest,
            PendingReason::RemovedAfterLastDigest
        ]
    );
    let next = lake.digest().await;
    assert_eq!(
        (next.seq, next.added(), next.removed()),
        (4, 1, 1),
        "{next}"
    );
    let report = lake.check().await;
    assert_eq!((report.findings, report.pending), (vec![], vec![]));
}

#[tokio::test]
async fn digests_are_written_even_when_nothing_changed_and_the_chain_keeps_linking() {
    let lake = digested_lake().await;
    let quiet = lake.digest().await;
    assert_eq!(quiet.seq, 4);
    assert_eq!(quiet.commits(), 0);
    assert!(
        quiet.to_string().contains("events no new versions"),
        "{quiet}"
    );
    let digest: Digest = serde_json::from_slice(&fs::read(lake.digest_file(4)).unwrap()).unwrap();
    let third = fs::read(lake.digest_file(3)).unwrap();
    assert_eq!(digest.previous.unwrap().sha256, sha256_hex(&third));
    assert_eq!(lake.check().await.findings, vec![]);
}

#[tokio::test]
async fn two_writers_racing_for_the_next_seq_make_one_chain() {
    let mut lake = TestLake::new().await;
    lake.ingest(9, 0, 5, true).await;
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let location = lake.location.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for _ in 0..3 {
                    let summary = write_digest(&location, &TABLES, &signer(), Utc::now())
                        .await
                        .unwrap();
                    seqs.push(summary.seq);
                }
                seqs
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for writer in writers {
        seqs.extend(writer.await.unwrap());
    }
    seqs.sort_unstable();
    assert_eq!(
        seqs,
        (1..=12).collect::<Vec<u64>>(),
        "each seq written once"
    );
    let report = lake.check().await;
    assert_eq!(report.findings, vec![], "{report}");
    assert_eq!(report.digests, 12);
    // Exactly one digest covers the commits.
    let covering = (1..=12)
        .filter(|seq| {
            let d: Digest =
                serde_json::from_slice(&fs::read(lake.digest_file(*seq)).unwrap()).unwrap();
            d.tables.iter().any(|t| !t.commits.is_empty())
        })
        .count();
    assert_eq!(covering, 1);
}

#[tokio::test]
async fn compaction_then_vacuum_after_the_grace_period_verifies_clean() {
    let lake = digested_lake().await;
    let mut events = lake.events().await;
    let grace = Duration::from_secs(3600);
    let later = Utc::now() + chrono::Duration::hours(2);
    let vacuumed = vacuum(&mut events, grace, later).await.unwrap();
    assert_eq!(vacuumed.deleted.len(), 3, "{vacuumed:?}");
    let report = lake.check().await;
    assert_eq!(report.findings, vec![], "{report}");
    assert_eq!(report.files_checked, 3, "the compacted inputs are gone");
    lake.digest().await;
    let report = lake.check().await;
    assert_eq!((report.findings, report.pending), (vec![], vec![]));
}

#[tokio::test]
async fn a_removed_file_kept_for_older_versions_must_keep_its_bytes() {
    let lake = digested_lake().await;
    let third: Digest = serde_json::from_slice(&fs::read(lake.digest_file(3)).unwrap()).unwrap();
    let events = third.tables.iter().find(|t| t.table == "events").unwrap();
    let removed = &events.commits[0].removed[0].path;
    fs::write(lake.root().join(removed), b"rewritten").unwrap();
    let findings = lake.check().await.findings;
    assert!(
        matches!(&findings[..], [Finding::ModifiedFile { path, .. }] if path == removed),
        "{findings:#?}"
    );
}

#[tokio::test]
async fn an_old_signature_without_its_digest_is_taken_over_and_a_fresh_one_waited_for() {
    let lake = digested_lake().await;
    let orphan = lake.signature_file(4);
    fs::write(&orphan, [0u8; 64]).unwrap();
    assert_eq!(
        lake.check().await.findings,
        vec![],
        "an orphan signature is no digest"
    );
    // Another writer may be between its two puts: the seq is its.
    let err = write_digest(&lake.location, &TABLES, &signer(), Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(err, DigestError::Conflict { seq: 4, .. }), "{err}");
    // Minutes later it is a writer that died there.
    let later = Utc::now() + write::ORPHAN_AGE + chrono::Duration::seconds(1);
    let summary = write_digest(&lake.location, &TABLES, &signer(), later)
        .await
        .unwrap();
    assert_eq!(summary.seq, 4);
    assert_eq!(lake.check().await.findings, vec![]);
}

#[tokio::test]
async fn an_unreadable_head_digest_stops_the_writer_with_its_path() {
    let lake = digested_lake().await;
    fs::write(lake.digest_file(3), b"{").unwrap();
    let err = write_digest(&lake.location, &TABLES, &signer(), Utc::now())
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&digest_name(3)), "{err}");
    assert!(matches!(err, DigestError::CorruptDigest { .. }));
}

#[tokio::test]
async fn a_lake_never_digested_says_so_and_everything_is_pending() {
    let mut lake = TestLake::new().await;
    lake.ingest(9, 0, 5, false).await;
    let report = lake.check().await;
    assert_eq!(report.findings, vec![Finding::NoDigests]);
    assert_eq!(report.pending.len(), 1);
}

#[tokio::test]
async fn an_empty_location_is_not_a_lake() {
    let dir = tempfile::tempdir().unwrap();
    let location = Location::local(dir.path()).unwrap();
    let err = verify(&location, &TABLES, &keyring(), None, Utc::now())
        .await
        .unwrap_err();
    assert!(matches!(err, DigestError::NotALake { .. }), "{err}");
}

#[tokio::test]
async fn the_time_range_limits_file_checks_but_not_chain_checks() {
    let lake = digested_lake().await;
    let path = lake.live(&EVENTS, "dt=2026-11-22/hour=09").await;
    fs::write(lake.root().join(&path), b"tampered").unwrap();
    fs::remove_file(lake.signature_file(1)).unwrap();
    let ten = Some((at(10, 0), at(11, 0)));
    let report = verify(&lake.location, &TABLES, &keyring(), ten, Utc::now())
        .await
        .unwrap();
    assert_eq!(report.findings, vec![Finding::Unsigned { seq: 1 }]);
    let nine = Some((at(9, 30), at(9, 31)));
    let report = verify(&lake.location, &TABLES, &keyring(), nine, Utc::now())
        .await
        .unwrap();
    assert_eq!(report.findings.len(), 2, "{:#?}", report.findings);
}

#[tokio::test]
async fn a_chain_cut_back_is_caught_by_the_head_an_earlier_audit_recorded() {
    let lake = digested_lake().await;
    let head = lake.check().await.head.expect("a head");
    let anchor = |seq, sha: String| {
        let location = lake.location.clone();
        async move { check_anchor(&location, seq, &sha).await.unwrap() }
    };
    assert_eq!(anchor(head.seq, head.sha256.clone()).await, None);
    fs::remove_file(lake.digest_file(head.seq)).unwrap();
    fs::remove_file(lake.signature_file(head.seq)).unwrap();
    assert_eq!(
        lake.check().await.findings,
        vec![],
        "the chain alone cannot tell"
    );
    assert_eq!(
        anchor(head.seq, head.sha256.clone()).await,
        Some(Finding::AnchorMismatch {
            seq: head.seq,
            expected_sha256: head.sha256.clone(),
            actual: None,
        })
    );
    assert!(matches!(
        anchor(1, head.sha256.clone()).await,
        Some(Finding::AnchorMismatch {
            seq: 1,
            actual: Some(_),
            ..
        })
    ));
}

#[tokio::test]
async fn an_auditor_checks_a_digest_with_sha256_and_the_public_key_alone() {
    let lake = digested_lake().await;
    let bytes = fs::read(lake.digest_file(2)).unwrap();
    let signature = fs::read(lake.signature_file(2)).unwrap();
    assert_eq!(signature.len(), 64, "a raw Ed25519 signature");
    signer().public_key().verify(&bytes, &signature).unwrap();
    let digest: Digest = serde_json::from_slice(&bytes).unwrap();
    let events = digest.tables.iter().find(|t| t.table == "events").unwrap();
    for commit in &events.commits {
        let log = fs::read(lake.root().join(&commit.path)).unwrap();
        assert_eq!(sha256_hex(&log), commit.sha256);
        for file in &commit.added {
            let data = fs::read(lake.root().join(&file.path)).unwrap();
            assert_eq!(Some(sha256_hex(&data)), file.sha256);
            assert_eq!(data.len() as u64, file.bytes);
        }
    }
}

/// The clock a test sets.
#[derive(Debug)]
struct FixedClock(DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

#[tokio::test(start_paused = true)]
async fn the_digester_writes_at_start_and_every_interval_and_survives_failures() {
    let mut lake = TestLake::new().await;
    lake.ingest(9, 0, 5, false).await;
    let metrics = crate::metrics::DigestMetrics::default();
    let interval = Duration::from_secs(3600);
    let token = tokio_util::sync::CancellationToken::new();
    let digester = Digester::new(
        lake.location.clone(),
        &TABLES,
        signer(),
        interval,
        metrics.clone(),
    )
    .with_clock(std::sync::Arc::new(FixedClock(at(12, 0))));
    let running = tokio::spawn(digester.run(token.clone()));
    tokio::time::sleep(interval * 2 + Duration::from_secs(60)).await;
    assert_eq!(
        metrics.written.get(),
        3,
        "at start, after one and two intervals"
    );
    assert_eq!(metrics.last_success.get(), at(12, 0).timestamp());
    // A head that does not parse: each tick fails, and the digester goes on.
    fs::write(lake.digest_file(3), b"{").unwrap();
    tokio::time::sleep(interval * 2).await;
    assert_eq!(metrics.failures.get(), 2);
    token.cancel();
    running.await.unwrap();
    let first: Digest = serde_json::from_slice(&fs::read(lake.digest_file(1)).unwrap()).unwrap();
    assert_eq!(first.created_at, at(12, 0));
}
