//! The durable outbox: one file per (destination, alert) that waits for
//! delivery, a marker per delivered alert, and the dead letters.
//!
//! ```text
//! <outbox>/pending/<destination>/<key>.json    waiting (an [`Entry`])
//! <outbox>/delivered/<destination>/<key>       delivered (empty; mtime = when)
//! <outbox>/dead/<destination>/<key>.json       given up (an [`Entry`] + reason)
//!
//! The key ([`Entry::key`]) is the alert id, or `<alert_id>_<triage_id>` for
//! a triage change of the alert (`triage` in the entry).
//! ```
//!
//! Every file appears atomically (temporary file, fsync, rename, fsync of the
//! folder), so a crash leaves either the whole file or none. An alert is
//! enqueued for a destination at most once: not while it is pending, delivered
//! (within the retention) or dead. A dead letter moved back into `pending/` is
//! retried at the next start. One process owns an outbox folder at a time.
//!
//! Blocking IO throughout: async callers use `spawn_blocking`.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::{Error, Result};
use super::triage::TriageNote;
use crate::alert::Alert;

/// Version of the outbox entry format; bumped only for additive changes.
pub const OUTBOX_VERSION: u8 = 1;

/// A pending alert as stored in the outbox. Dead letters add `failed_at`,
/// `attempts` and `reason`; readers ignore fields they do not know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub outbox_version: u8,
    pub destination: String,
    /// When the alert entered the outbox (wall clock).
    pub enqueued_at: DateTime<Utc>,
    pub alert: Alert,
    /// A triage change of `alert` to send, rather than the alert itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triage: Option<TriageNote>,
}

impl Entry {
    /// What names the entry's files: the alert id, or for a triage change
    /// `<alert_id>_<triage_id>`. Also the `Idempotency-Key` of its requests.
    pub fn key(&self) -> String {
        match &self.triage {
            None => self.alert.alert_id.clone(),
            Some(note) => format!("{}_{}", self.alert.alert_id, note.triage_id),
        }
    }
}

#[derive(Serialize)]
struct DeadLetter<'a> {
    #[serde(flatten)]
    entry: &'a Entry,
    failed_at: DateTime<Utc>,
    attempts: u32,
    reason: &'a str,
}

/// What a scan of a destination's pending folder found.
#[derive(Debug, Default)]
pub struct Scan {
    /// Readable entries, oldest first.
    pub entries: Vec<Entry>,
    /// Unreadable files, moved to the dead letters: (new path, why).
    pub quarantined: Vec<(PathBuf, String)>,
}

/// The outbox folder. Methods that change a destination's files hold that
/// destination's lock, so an enqueue never races a delivery of the same alert.
#[derive(Debug)]
pub struct Outbox {
    root: PathBuf,
    locks: HashMap<String, Mutex<()>>,
}

/// Whether `id` can name an outbox file.
pub fn valid_alert_id(id: &str) -> bool {
    (1..=128).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Outbox {
    /// Opens (creating as needed) the outbox at `root` for `destinations`,
    /// and removes temporary files a crash left behind.
    pub fn open(root: &Path, destinations: &[&str]) -> Result<Self> {
        let mut locks = HashMap::new();
        for &name in destinations {
            for kind in ["pending", "delivered", "dead"] {
                let dir = root.join(kind).join(name);
                fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
                remove_temporaries(&dir)?;
            }
            locks.insert(name.to_owned(), Mutex::new(()));
        }
        Ok(Self {
            root: root.to_owned(),
            locks,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock(&self, destination: &str) -> MutexGuard<'_, ()> {
        self.locks
            .get(destination)
            .expect("destinations are fixed when the outbox opens")
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn pending_path(&self, destination: &str, alert_id: &str) -> PathBuf {
        self.root
            .join("pending")
            .join(destination)
            .join(format!("{alert_id}.json"))
    }

    pub fn delivered_path(&self, destination: &str, alert_id: &str) -> PathBuf {
        self.root.join("delivered").join(destination).join(alert_id)
    }

    pub fn dead_path(&self, destination: &str, alert_id: &str) -> PathBuf {
        self.root
            .join("dead")
            .join(destination)
            .join(format!("{alert_id}.json"))
    }

    /// Makes `alert` durable as pending for `destination`, unless it is
    /// already pending, delivered or dead there. Returns the new entry.
    pub fn enqueue(
        &self,
        destination: &str,
        alert: &Alert,
        now: DateTime<Utc>,
    ) -> Result<Option<Entry>> {
        self.put(Entry {
            outbox_version: OUTBOX_VERSION,
            destination: destination.to_owned(),
            enqueued_at: now,
            alert: alert.clone(),
            triage: None,
        })
    }

    /// Makes the triage change `note` of `alert` durable as pending for
    /// `destination`, unless it is already pending, delivered or dead there.
    pub fn enqueue_triage(
        &self,
        destination: &str,
        alert: &Alert,
        note: &TriageNote,
        now: DateTime<Utc>,
    ) -> Result<Option<Entry>> {
        self.put(Entry {
            outbox_version: OUTBOX_VERSION,
            destination: destination.to_owned(),
            enqueued_at: now,
            alert: alert.clone(),
            triage: Some(note.clone()),
        })
    }

    fn put(&self, entry: Entry) -> Result<Option<Entry>> {
        let key = entry.key();
        if !valid_alert_id(&key) {
            return Err(Error::InvalidAlertId(key));
        }
        let destination = entry.destination.as_str();
        let _guard = self.lock(destination);
        let pending = self.pending_path(destination, &key);
        // Pending first: a delivery writes its marker before removing the
        // pending file, so one of the two is always there.
        for path in [
            &pending,
            &self.delivered_path(destination, &key),
            &self.dead_path(destination, &key),
        ] {
            if exists(path)? {
                return Ok(None);
            }
        }
        let json = serde_json::to_vec(&entry).expect("an outbox entry always serializes");
        write_atomically(&pending, &json)?;
        Ok(Some(entry))
    }

    /// Whether the alert still waits for `destination`.
    pub fn is_pending(&self, destination: &str, alert_id: &str) -> Result<bool> {
        exists(&self.pending_path(destination, alert_id))
    }

    /// Every pending entry of `destination`, oldest first. Unreadable files
    /// are moved to the dead letters (as `<name>.corrupt`) so they never stall.
    pub fn scan(&self, destination: &str) -> Result<Scan> {
        let dir = self.root.join("pending").join(destination);
        let mut scan = Scan::default();
        for item in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let item = item.map_err(|e| Error::io(&dir, e))?;
            let name = item.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            let path = item.path();
            let bytes = match fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&path, e)),
            };
            match serde_json::from_slice::<Entry>(&bytes) {
                Ok(entry) if valid_alert_id(&entry.key()) => scan.entries.push(entry),
                Ok(entry) => scan.quarantined.push((
                    self.quarantine(destination, &path, name)?,
                    format!("alert id `{}` cannot name an outbox file", entry.key()),
                )),
                Err(e) => scan.quarantined.push((
                    self.quarantine(destination, &path, name)?,
                    format!("unreadable outbox entry: {e}"),
                )),
            }
        }
        scan.entries.sort_by_key(|e| (e.enqueued_at, e.key()));
        Ok(scan)
    }

    fn quarantine(&self, destination: &str, path: &Path, name: &str) -> Result<PathBuf> {
        let _guard = self.lock(destination);
        let dead_dir = self.root.join("dead").join(destination);
        let to = dead_dir.join(format!("{name}.corrupt"));
        fs::rename(path, &to).map_err(|e| Error::io(path, e))?;
        sync_dir(&dead_dir)?;
        sync_dir(path.parent().unwrap_or(&self.root))?;
        Ok(to)
    }

    /// Records the alert as delivered to `destination` and removes it from
    /// pending.
    pub fn mark_delivered(&self, destination: &str, alert_id: &str) -> Result<()> {
        let _guard = self.lock(destination);
        let marker = self.delivered_path(destination, alert_id);
        File::create(&marker).map_err(|e| Error::io(&marker, e))?;
        sync_dir(marker.parent().unwrap_or(&self.root))?;
        remove_durably(&self.pending_path(destination, alert_id))
    }

    /// Moves the entry to the dead letters with `reason`. Returns the path.
    pub fn dead_letter(
        &self,
        entry: &Entry,
        reason: &str,
        attempts: u32,
        now: DateTime<Utc>,
    ) -> Result<PathBuf> {
        let _guard = self.lock(&entry.destination);
        let dead = self.dead_path(&entry.destination, &entry.key());
        let letter = DeadLetter {
            entry,
            failed_at: now,
            attempts,
            reason,
        };
        let json = serde_json::to_vec_pretty(&letter).expect("a dead letter always serializes");
        write_atomically(&dead, &json)?;
        remove_durably(&self.pending_path(&entry.destination, &entry.key()))?;
        Ok(dead)
    }

    /// Forgets delivered alerts older than `retention` at `now`. Returns how
    /// many markers were removed.
    pub fn prune_delivered(
        &self,
        destination: &str,
        now: SystemTime,
        retention: Duration,
    ) -> Result<usize> {
        let dir = self.root.join("delivered").join(destination);
        let Some(cutoff) = now.checked_sub(retention) else {
            return Ok(0);
        };
        let mut removed = 0;
        for item in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let item = item.map_err(|e| Error::io(&dir, e))?;
            let modified = match item.metadata().and_then(|m| m.modified()) {
                Ok(t) => t,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(item.path(), e)),
            };
            if modified < cutoff {
                match fs::remove_file(item.path()) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => return Err(Error::io(item.path(), e)),
                }
            }
        }
        Ok(removed)
    }

    /// How many alerts wait for `destination` (a count of files, no parsing).
    pub fn count_pending(&self, destination: &str) -> Result<usize> {
        let dir = self.root.join("pending").join(destination);
        let mut n = 0;
        for item in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let item = item.map_err(|e| Error::io(&dir, e))?;
            let name = item.file_name();
            let name = name.to_string_lossy();
            if !name.starts_with('.') && name.ends_with(".json") {
                n += 1;
            }
        }
        Ok(n)
    }
}

fn exists(path: &Path) -> Result<bool> {
    path.try_exists().map_err(|e| Error::io(path, e))
}

/// Writes `bytes` to `path` so that it appears whole or not at all, durably.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("outbox files live in a folder");
    let name = path
        .file_name()
        .expect("outbox files have names")
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    sync_dir(dir)
}

fn remove_durably(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, e)),
    }
    sync_dir(path.parent().expect("outbox files live in a folder"))
}

/// Fsyncs a folder, making creations, renames and removals in it durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}

fn remove_temporaries(dir: &Path) -> Result<()> {
    for item in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let item = item.map_err(|e| Error::io(dir, e))?;
        let name = item.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.ends_with(".tmp") {
            fs::remove_file(item.path()).map_err(|e| Error::io(item.path(), e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::deliver::test_alert;

    fn outbox() -> (tempfile::TempDir, Outbox) {
        let dir = tempfile::tempdir().expect("temp dir");
        let outbox = Outbox::open(dir.path(), &["siem"]).expect("opens");
        (dir, outbox)
    }

    #[test]
    fn enqueue_writes_one_readable_file_and_is_idempotent() {
        let (_dir, outbox) = outbox();
        let alert = test_alert();
        let now = alert.time;
        let entry = outbox
            .enqueue("siem", &alert, now)
            .expect("enqueues")
            .expect("new");
        assert_eq!(entry.alert, alert);
        assert!(
            outbox
                .enqueue("siem", &alert, now)
                .expect("enqueues")
                .is_none()
        );
        let scan = outbox.scan("siem").expect("scans");
        assert_eq!(scan.entries, [entry]);
        assert_eq!(outbox.count_pending("siem").expect("counts"), 1);
    }

    #[test]
    fn delivered_and_dead_alerts_are_not_enqueued_again() {
        let (_dir, outbox) = outbox();
        let delivered = test_alert();
        let mut dead = test_alert();
        dead.alert_id = "dead-one".into();
        let now = delivered.time;
        outbox.enqueue("siem", &delivered, now).expect("enqueues");
        let entry = outbox
            .enqueue("siem", &dead, now)
            .expect("enqueues")
            .expect("new");
        outbox
            .mark_delivered("siem", &delivered.alert_id)
            .expect("marks");
        let letter = outbox
            .dead_letter(&entry, "http 400", 1, now)
            .expect("moves");
        assert_eq!(outbox.count_pending("siem").expect("counts"), 0);
        assert!(
            outbox
                .enqueue("siem", &delivered, now)
                .expect("ok")
                .is_none()
        );
        assert!(outbox.enqueue("siem", &dead, now).expect("ok").is_none());
        let text = fs::read_to_string(letter).expect("dead letter");
        assert!(text.contains(r#""reason": "http 400""#), "{text}");
        // A dead letter moved back into pending/ reads as an ordinary entry.
        let back = outbox.pending_path("siem", "dead-one");
        fs::rename(outbox.dead_path("siem", "dead-one"), &back).expect("moves back");
        assert_eq!(outbox.scan("siem").expect("scans").entries, [entry]);
    }

    #[test]
    fn unreadable_entries_are_quarantined_not_fatal() {
        let (_dir, outbox) = outbox();
        fs::write(outbox.pending_path("siem", "garbage"), b"{not json").expect("writes");
        let scan = outbox.scan("siem").expect("scans");
        assert!(scan.entries.is_empty());
        assert_eq!(scan.quarantined.len(), 1);
        assert!(scan.quarantined[0].0.ends_with("garbage.json.corrupt"));
        assert_eq!(outbox.count_pending("siem").expect("counts"), 0);
    }

    #[test]
    fn leftover_temporary_files_are_removed_and_never_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pending = dir.path().join("pending/siem");
        fs::create_dir_all(&pending).expect("mkdir");
        fs::write(pending.join(".x.json.00.tmp"), b"half").expect("writes");
        let outbox = Outbox::open(dir.path(), &["siem"]).expect("opens");
        assert_eq!(fs::read_dir(&pending).expect("lists").count(), 0);
        assert!(outbox.scan("siem").expect("scans").entries.is_empty());
    }

    #[test]
    fn delivered_markers_are_pruned_after_the_retention() {
        let (_dir, outbox) = outbox();
        let alert = test_alert();
        outbox
            .enqueue("siem", &alert, alert.time)
            .expect("enqueues");
        outbox
            .mark_delivered("siem", &alert.alert_id)
            .expect("marks");
        let week = Duration::from_secs(7 * 24 * 3600);
        let now = SystemTime::now();
        assert_eq!(
            outbox.prune_delivered("siem", now, week).expect("prunes"),
            0
        );
        let later = now + week + Duration::from_secs(60);
        assert_eq!(
            outbox.prune_delivered("siem", later, week).expect("prunes"),
            1
        );
        // Forgotten: the same id may be sent again.
        assert!(
            outbox
                .enqueue("siem", &alert, alert.time)
                .expect("ok")
                .is_some()
        );
    }

    #[test]
    fn alert_ids_that_are_not_file_names_are_refused() {
        let (_dir, outbox) = outbox();
        let mut alert = test_alert();
        alert.alert_id = "../escape".into();
        assert!(matches!(
            outbox.enqueue("siem", &alert, alert.time),
            Err(Error::InvalidAlertId(_))
        ));
    }
}
