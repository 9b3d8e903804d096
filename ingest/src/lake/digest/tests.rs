//! A lake with ingest commits, a compaction, alerts, query-audit files and a
//! retention removal verifies clean; each kind of tampering is caught and named.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use tooltrail_schemas::lake::Source;
use tooltrail_schemas::signing::{Keyring, Signer};

use super::format::digest_name;
use super::*;
use crate::batch::{Pending, TimeWindow};
use crate::lake::compact::{CompactOptions, compact};
use crate::lake::log::Operation;
use crate::lake::{Lake, Transaction};
use crate::metrics::Metrics;

const HOUR_09: &str = "events/dt=2026-11-22/hour=09";
const ALERTS_1: &str = "alerts/dt=2026-11-22/part-1795000000000000-1.ndjson";
const ALERTS_2: &str = "alerts/dt=2026-11-22/part-1795000000000001-2.ndjson";
const AUDIT: &str = "query_audit/dt=2026-11-22/part-1795000000000000-42.ndjson";

fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, day, hour, minute, 0)
        .unwrap()
}

fn signer() -> Signer {
    Signer::from_seed([9; 32])
}

fn keyring() -> Keyring {
    Keyring::new(vec![signer().public_key().clone()])
}

/// Commits `n` events at `hh:mm` of 2026-11-22 (plus one quarantined line
/// when `bad`): one log entry.
fn commit(lake: &mut Lake, hour: u32, first: usize, n: usize, bad: bool) {
    let window = TimeWindow {
        max_age: Duration::from_secs(10 * 365 * 86400),
        max_future: Duration::from_secs(3600),
    };
    let mut pending = Pending::new(window);
    for i in first..first + n {
        let line = format!(
            r#"{{"schema_version":1,"event_id":"e{i}","time":"2026-11-22T{hour:02}:{:02}:00Z","tenant_id":"acme","user_id":"u{}","server":"s","method":"tools/call","tool":"t","decision":"allow","status":200}}"#,
            i % 60,
            i % 5
        );
        let source = Source::File {
            path: "f",
            line: i as i64,
        };
        pending
            .push(line.as_bytes(), at(22, 12, 0), source)
            .unwrap();
    }
    if bad {
        let source = Source::File { path: "f", line: 0 };
        let _ = pending.push(b"not json", at(22, 12, 0), source);
    }
    pending
        .commit_to(lake, &Metrics::register(&mut Default::default()), "file")
        .unwrap();
}

fn write_ndjson(root: &Path, rel: &str, lines: usize) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let body: String = (0..lines).map(|i| format!("{{\"n\":{i}}}\n")).collect();
    fs::write(path, body).unwrap();
}

fn digest(root: &Path, now: DateTime<Utc>) -> DigestSummary {
    write_digest(root, &signer(), now).unwrap()
}

/// Four digests over: three ingest commits (one with a quarantined line) and
/// an alerts file; two more commits; a compaction of both hours and a second
/// alerts file, with the query-audit day over; a retention removal of the
/// first alerts file.
fn digested_lake() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut lake = Lake::open(root, 1).unwrap();
    commit(&mut lake, 9, 0, 10, true);
    commit(&mut lake, 9, 10, 10, false);
    commit(&mut lake, 9, 20, 10, false);
    write_ndjson(root, ALERTS_1, 2);
    write_ndjson(root, AUDIT, 4);
    let first = digest(root, at(22, 10, 0));
    assert_eq!(
        (
            first.seq,
            first.log_from,
            first.log_to,
            first.added,
            first.observed
        ),
        (1, 1, 3, 4, 1),
        "the audit day is not over yet"
    );
    commit(&mut lake, 10, 30, 10, false);
    commit(&mut lake, 10, 40, 10, false);
    assert_eq!(digest(root, at(22, 11, 30)).seq, 2);
    let options = CompactOptions {
        min_age: Duration::ZERO,
        ..CompactOptions::default()
    };
    let compacted = compact(&mut lake, &options, at(22, 12, 0)).unwrap();
    assert_eq!((compacted.hours, compacted.files_in), (2, 5));
    write_ndjson(root, ALERTS_2, 3);
    let third = digest(root, at(23, 0, 10));
    assert_eq!((third.added, third.removed, third.observed), (2, 5, 2));
    lake.commit(Transaction {
        operation: Operation::Retention,
        files: vec![],
        positions: vec![],
        removed: vec![ALERTS_1.to_owned()],
        keys: vec![],
    })
    .unwrap();
    assert!(!root.join(ALERTS_1).exists());
    assert_eq!(digest(root, at(23, 1, 0)).removed, 1);
    dir
}

fn check(root: &Path) -> VerifyReport {
    verify(root, &keyring(), None, at(23, 2, 0)).unwrap()
}

fn live_parquet(root: &Path, under: &str) -> String {
    let mut files = list_data_files(root, &["events", "quarantine"]).unwrap();
    files.retain(|p| p.starts_with(under));
    files.into_iter().next().expect("a live file")
}

fn digest_path(root: &Path, seq: u64) -> PathBuf {
    root.join(DIGEST_DIR).join(digest_name(seq))
}

#[test]
fn an_untouched_lake_with_compactions_and_retention_verifies_with_zero_findings() {
    let dir = digested_lake();
    let report = check(dir.path());
    assert_eq!(report.findings, vec![], "{report:#?}");
    assert_eq!(report.pending, vec![]);
    assert_eq!(report.digests, 4);
    assert_eq!(report.head.as_ref().map(|h| h.seq), Some(4));
    assert_eq!(report.log_entries_checked, 8);
    // Two compacted hours, the quarantine file, one alerts file, the audit file.
    assert_eq!(report.files_checked, 5);
}

#[test]
fn a_flipped_byte_in_a_parquet_file_is_a_modified_file() {
    let dir = digested_lake();
    let path = live_parquet(dir.path(), HOUR_09);
    let mut bytes = fs::read(dir.path().join(&path)).unwrap();
    bytes[100] ^= 1;
    fs::write(dir.path().join(&path), bytes).unwrap();
    let findings = check(dir.path()).findings;
    assert!(
        matches!(&findings[..], [Finding::ModifiedFile { path: p, expected_bytes, actual_bytes, .. }]
            if *p == path && expected_bytes == actual_bytes),
        "{findings:#?}"
    );
}

#[test]
fn a_deleted_committed_file_is_named_with_the_digest_that_listed_it() {
    let dir = digested_lake();
    let path = live_parquet(dir.path(), "quarantine");
    fs::remove_file(dir.path().join(&path)).unwrap();
    assert_eq!(
        check(dir.path()).findings,
        vec![Finding::DeletedFile {
            path,
            recorded_in_digest: Some(1)
        }]
    );
}

#[test]
fn a_parquet_file_dropped_into_a_partition_is_unlisted() {
    let dir = digested_lake();
    let live = live_parquet(dir.path(), HOUR_09);
    let planted = format!("{HOUR_09}/part-planted-0000.parquet");
    fs::copy(dir.path().join(live), dir.path().join(&planted)).unwrap();
    // Hidden staging names are no reader's business, and not findings.
    fs::write(dir.path().join(HOUR_09).join(".part-x.parquet.tmp"), b"x").unwrap();
    assert_eq!(
        check(dir.path()).findings,
        vec![Finding::UnlistedFile { path: planted }]
    );
}

#[test]
fn an_old_alerts_file_no_digest_recorded_is_unlisted() {
    let dir = digested_lake();
    let planted = "alerts/dt=2026-11-20/part-1-1.ndjson";
    write_ndjson(dir.path(), planted, 1);
    let file = fs::File::options()
        .write(true)
        .open(dir.path().join(planted))
        .unwrap();
    file.set_modified(at(20, 0, 0).into()).unwrap();
    assert_eq!(
        check(dir.path()).findings,
        vec![Finding::UnlistedFile {
            path: planted.into()
        }]
    );
}

#[test]
fn an_edited_digest_fails_its_signature_and_breaks_the_next_link() {
    let dir = digested_lake();
    let path = digest_path(dir.path(), 2);
    let text = fs::read_to_string(&path).unwrap();
    let edited = text.replacen("2026-11-22T11:30:00Z", "2026-11-22T11:31:00Z", 1);
    assert_ne!(text, edited);
    fs::write(&path, edited).unwrap();
    let findings = check(dir.path()).findings;
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

#[test]
fn a_deleted_signature_is_unsigned() {
    let dir = digested_lake();
    let sig = digest_path(dir.path(), 3).with_extension("json.sig");
    fs::remove_file(sig).unwrap();
    assert_eq!(
        check(dir.path()).findings,
        vec![Finding::Unsigned { seq: 3 }]
    );
}

#[test]
fn a_digest_re_signed_with_another_key_is_signed_by_an_unknown_key() {
    let dir = digested_lake();
    let other = Signer::from_seed([10; 32]);
    let path = digest_path(dir.path(), 4);
    let text = fs::read_to_string(&path).unwrap();
    let resigned = text.replace(signer().key_id().as_str(), other.key_id().as_str());
    fs::write(&path, &resigned).unwrap();
    fs::write(
        path.with_extension("json.sig"),
        other.sign(resigned.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        check(dir.path()).findings,
        vec![Finding::UnknownKey {
            seq: 4,
            key_id: other.key_id().to_string()
        }]
    );
}

#[test]
fn a_signature_by_the_wrong_key_under_the_right_key_id_is_bad() {
    let dir = digested_lake();
    let path = digest_path(dir.path(), 4);
    let other = Signer::from_seed([10; 32]);
    fs::write(
        path.with_extension("json.sig"),
        other.sign(&fs::read(&path).unwrap()),
    )
    .unwrap();
    let findings = check(dir.path()).findings;
    assert!(
        matches!(&findings[..], [Finding::BadSignature { seq: 4, .. }]),
        "{findings:#?}"
    );
}

#[test]
fn a_deleted_middle_digest_is_a_gap() {
    let dir = digested_lake();
    let path = digest_path(dir.path(), 2);
    fs::remove_file(&path).unwrap();
    fs::remove_file(path.with_extension("json.sig")).unwrap();
    assert_eq!(
        check(dir.path()).findings,
        vec![Finding::Gap {
            after_seq: 1,
            next_seq: 3
        }]
    );
}

#[test]
fn an_edited_log_entry_is_named_by_its_seq() {
    let dir = digested_lake();
    let path = dir.path().join("_tooltrail/log/00000000000000000002.json");
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, text.replacen("\"writer\": \"", "\"writer\": \"x", 1)).unwrap();
    assert_eq!(
        check(dir.path()).findings,
        vec![Finding::LogEntryModified {
            seq: 2,
            recorded_in_digest: 1
        }]
    );
}

#[test]
fn a_truncated_alerts_file_is_modified() {
    let dir = digested_lake();
    let path = dir.path().join(ALERTS_2);
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    let findings = check(dir.path()).findings;
    assert!(
        matches!(&findings[..], [Finding::ModifiedFile { path, .. }] if path == ALERTS_2),
        "{findings:#?}"
    );
}

#[test]
fn a_file_compaction_removed_that_reappears_is_resurrected() {
    let dir = digested_lake();
    let root = dir.path();
    let third: format::Digest =
        serde_json::from_slice(&fs::read(digest_path(root, 3)).unwrap()).unwrap();
    let gone = &third.removed[0];
    // Compaction retired the old partition; put one of its files back.
    let name = gone.path.rsplit('/').next().unwrap();
    let retired = fs::read_dir(root.join("_tooltrail/retired"))
        .unwrap()
        .map(|d| d.unwrap().path().join(name))
        .find(|p| p.exists())
        .expect("the retired copy");
    fs::copy(retired, root.join(&gone.path)).unwrap();
    assert_eq!(
        check(root).findings,
        vec![Finding::ResurrectedFile {
            path: gone.path.clone(),
            removed_in_log_seq: gone.log_seq
        }]
    );
}

#[test]
fn what_happened_after_the_last_digest_is_pending_not_a_finding() {
    let dir = digested_lake();
    let root = dir.path();
    let mut lake = Lake::open(root, 1).unwrap();
    commit(&mut lake, 11, 100, 5, false);
    write_ndjson(root, "alerts/dt=2026-11-23/part-9-1.ndjson", 1);
    write_ndjson(root, "query_audit/dt=2026-11-23/part-9-1.ndjson", 1);
    let report = check(root);
    assert_eq!(report.findings, vec![]);
    let mut reasons: Vec<PendingReason> = report.pending.iter().map(|p| p.reason).collect();
    reasons.sort_by_key(|r| format!("{r:?}"));
    assert_eq!(
        reasons,
        [
            PendingReason::CommittedAfterLastDigest,
            PendingReason::DayNotOverAtLastDigest,
            PendingReason::NewerThanLastDigest
        ]
    );
    // The next digest takes the commit and the alert; the audit day waits.
    let next = digest(root, at(23, 2, 0));
    assert_eq!((next.added, next.observed), (1, 1));
    let report = check(root);
    assert_eq!(report.findings, vec![]);
    assert_eq!(report.pending.len(), 1);
    let after_midnight = digest(root, at(24, 0, 6));
    assert_eq!(after_midnight.observed, 1);
    assert_eq!(check(root).pending, vec![]);
}

#[test]
fn a_retention_removal_of_events_verifies_clean_once_digested() {
    let dir = digested_lake();
    let root = dir.path();
    let mut lake = Lake::open(root, 1).unwrap();
    let path = live_parquet(root, HOUR_09);
    lake.commit(Transaction {
        operation: Operation::Retention,
        files: vec![],
        positions: vec![],
        removed: vec![path.clone()],
        keys: vec![],
    })
    .unwrap();
    assert!(!root.join(&path).exists());
    assert_eq!(check(root).findings, vec![], "gone by a pending log entry");
    let summary = digest(root, at(23, 3, 0));
    assert_eq!(summary.removed, 1);
    assert_eq!(check(root).findings, vec![]);
}

#[test]
fn the_time_range_limits_file_checks_but_not_chain_checks() {
    let dir = digested_lake();
    let root = dir.path();
    let path = live_parquet(root, HOUR_09);
    fs::write(root.join(&path), b"tampered").unwrap();
    fs::remove_file(digest_path(root, 1).with_extension("json.sig")).unwrap();
    let later = Some((at(22, 10, 0), at(22, 11, 0)));
    let report = verify(root, &keyring(), later, at(23, 2, 0)).unwrap();
    assert_eq!(report.findings, vec![Finding::Unsigned { seq: 1 }]);
    let nine = Some((at(22, 9, 30), at(22, 9, 31)));
    let report = verify(root, &keyring(), nine, at(23, 2, 0)).unwrap();
    assert_eq!(report.findings.len(), 2, "{:#?}", report.findings);
}

#[test]
fn a_lake_never_digested_says_so_and_everything_is_pending() {
    let dir = tempfile::tempdir().unwrap();
    let mut lake = Lake::open(dir.path(), 1).unwrap();
    commit(&mut lake, 9, 0, 5, false);
    let report = check(dir.path());
    assert_eq!(report.findings, vec![Finding::NoDigests]);
    assert_eq!(report.pending.len(), 1);
}

#[test]
fn a_signature_left_by_a_crashed_writer_does_not_block_the_chain() {
    let dir = digested_lake();
    let orphan = digest_path(dir.path(), 5).with_extension("json.sig");
    fs::write(&orphan, [0u8; 64]).unwrap();
    assert_eq!(
        check(dir.path()).findings,
        vec![],
        "an orphan signature is no digest"
    );
    let summary = digest(dir.path(), at(23, 3, 0));
    assert_eq!(summary.seq, 5);
    assert_eq!(check(dir.path()).findings, vec![]);
}

#[test]
fn a_seq_another_writer_published_is_never_overwritten() {
    let dir = digested_lake();
    // A writer that skipped the lock and read a stale head.
    let digests = dir.path().join(DIGEST_DIR);
    let err = super::write::publish(&digests, 4, b"{}", &[0; 64]).unwrap_err();
    assert!(matches!(err, Error::DigestConflict { seq: 4 }), "{err}");
    assert_eq!(check(dir.path()).findings, vec![]);
}

#[test]
fn an_unreadable_head_digest_stops_the_writer_with_its_path() {
    let dir = digested_lake();
    fs::write(digest_path(dir.path(), 4), b"{").unwrap();
    let err = write_digest(dir.path(), &signer(), at(23, 3, 0)).unwrap_err();
    assert!(err.to_string().contains(&digest_name(4)), "{err}");
    assert!(matches!(err, Error::CorruptDigest { .. }));
}

#[test]
fn a_directory_without_a_log_is_not_a_lake() {
    let dir = tempfile::tempdir().unwrap();
    let err = verify(dir.path(), &keyring(), None, at(23, 0, 0)).unwrap_err();
    assert!(matches!(err, Error::NotALake { .. }), "{err}");
}

#[test]
fn a_chain_cut_back_is_caught_by_the_head_an_earlier_audit_recorded() {
    let dir = digested_lake();
    let root = dir.path();
    let head = check(root).head.expect("a head");
    assert_eq!(check_anchor(root, head.seq, &head.sha256).unwrap(), None);
    // Cutting the chain back leaves a chain that verifies on its own ...
    fs::remove_file(digest_path(root, head.seq)).unwrap();
    let mut sig = digest_path(root, head.seq).into_os_string();
    sig.push(".sig");
    fs::remove_file(sig).unwrap();
    assert!(check(root).head.is_some_and(|h| h.seq == head.seq - 1));
    // ... but not against the head recorded before.
    assert_eq!(
        check_anchor(root, head.seq, &head.sha256).unwrap(),
        Some(Finding::AnchorMismatch {
            seq: head.seq,
            expected_sha256: head.sha256.clone(),
            actual: None,
        })
    );
    assert!(matches!(
        check_anchor(root, 1, &head.sha256).unwrap(),
        Some(Finding::AnchorMismatch {
            seq: 1,
            actual: Some(_),
            ..
        })
    ));
}
