//! Alerts in the lake: `<lake>/alerts/dt=YYYY-MM-DD/part-<micros>-<n>.ndjson`,
//! one alert record per line, partitioned by the alert's event time.
//!
//! Each batch is written to a hidden temporary file (`.part-*.tmp`), fsynced,
//! renamed into place and the directory fsynced: readers never see a partial
//! file. A later record with the same `alert_id` and a higher `repeats` is an
//! update of the first (see the alert record's docs); readers that want one
//! row per alert take the highest `repeats` per `alert_id`.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::alert::Alert;

/// Writes alert batches under `<lake>/alerts/`.
#[derive(Debug)]
pub struct AlertLake {
    root: PathBuf,
    written: u64,
}

impl AlertLake {
    pub fn open(lake: &Path) -> io::Result<Self> {
        let root = lake.join("alerts");
        fs::create_dir_all(&root)?;
        Ok(AlertLake { root, written: 0 })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Each alert id the lake holds, with the highest `repeats` written for
    /// it: what a restarted detector must not write again.
    pub fn written(&self) -> io::Result<HashMap<String, u32>> {
        let mut ids = HashMap::new();
        for day in fs::read_dir(&self.root)? {
            let day = day?.path();
            if !day.is_dir() {
                continue;
            }
            for file in fs::read_dir(&day)? {
                let path = file?.path();
                if path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                {
                    continue;
                }
                let text = fs::read_to_string(&path)?;
                for (n, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    let alert: Alert = serde_json::from_str(line).map_err(|e| {
                        io::Error::new(
                            io::ErrorKind::InvalidData,
                            format!("{}:{}: not an alert record: {e}", path.display(), n + 1),
                        )
                    })?;
                    let repeats = ids.entry(alert.alert_id).or_insert(alert.repeats);
                    *repeats = (*repeats).max(alert.repeats);
                }
            }
        }
        Ok(ids)
    }

    /// Removes the temporary files writers killed mid-write left behind
    /// (`.part-*.tmp` not renamed into place), once they are older than
    /// `age`: no reader sees them, but each would stay forever. The age keeps
    /// a live writer's file (another detector on the same lake) safe: a
    /// write takes milliseconds. Returns how many were removed.
    pub fn remove_stale_temporaries(&self, age: Duration) -> io::Result<usize> {
        let now = SystemTime::now();
        let mut removed = 0;
        for day in fs::read_dir(&self.root)? {
            let day = day?.path();
            if !day.is_dir() {
                continue;
            }
            for file in fs::read_dir(&day)? {
                let file = file?;
                let name = file.file_name();
                let name = name.to_string_lossy();
                if !(name.starts_with(".part-") && name.ends_with(".tmp")) {
                    continue;
                }
                let modified = file.metadata()?.modified()?;
                if now.duration_since(modified).is_ok_and(|d| d >= age) {
                    match fs::remove_file(file.path()) {
                        Ok(()) => removed += 1,
                        // Another detector swept it first.
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(removed)
    }

    /// Writes `alerts` durably, one file per day they fall on; returns the
    /// files written.
    pub fn write(&mut self, alerts: &[Alert]) -> io::Result<Vec<PathBuf>> {
        let mut by_day: std::collections::BTreeMap<String, Vec<&Alert>> = Default::default();
        for a in alerts {
            by_day
                .entry(a.time.format("%Y-%m-%d").to_string())
                .or_default()
                .push(a);
        }
        let stamp = chrono::Utc::now().timestamp_micros();
        let mut files = Vec::new();
        for (day, alerts) in by_day {
            let dir = self.root.join(format!("dt={day}"));
            fs::create_dir_all(&dir)?;
            self.written += 1;
            let name = format!("part-{stamp}-{}.ndjson", self.written);
            let tmp = dir.join(format!(".{name}.tmp"));
            let mut body = String::new();
            for a in alerts {
                body.push_str(&a.to_json());
                body.push('\n');
            }
            let mut f = File::create(&tmp)?;
            f.write_all(body.as_bytes())?;
            f.sync_all()?;
            let path = dir.join(name);
            fs::rename(&tmp, &path)?;
            File::open(&dir)?.sync_all()?;
            files.push(path);
        }
        Ok(files)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(time: &str) -> Alert {
        let t = chrono::DateTime::parse_from_rfc3339(time)
            .expect("time")
            .with_timezone(&chrono::Utc);
        Alert {
            time: t,
            ..crate::alert::test_alert()
        }
    }

    #[test]
    fn the_lake_knows_each_alert_it_holds_and_its_highest_repeat_count() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut lake = AlertLake::open(dir.path()).expect("open");
        assert!(lake.written().expect("empty").is_empty());
        let first = alert("2026-10-20T10:00:00Z");
        let update = Alert {
            repeats: 4,
            ..first.clone()
        };
        let other = Alert {
            alert_id: "other".into(),
            ..alert("2026-10-21T10:00:00Z")
        };
        lake.write(&[first.clone(), other]).expect("write");
        lake.write(&[update]).expect("write");
        let written = lake.written().expect("read");
        assert_eq!(written.len(), 2);
        assert_eq!(written[&first.alert_id], 4);
        assert_eq!(written["other"], 0);

        fs::write(lake.root().join("dt=2026-10-21/part-x.ndjson"), "{}\n").expect("write");
        let err = lake.written().expect_err("a bad line");
        assert!(err.to_string().contains("part-x.ndjson:1"), "{err}");
    }

    #[test]
    fn alerts_land_in_day_partitions_with_no_temporary_files_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut lake = AlertLake::open(dir.path()).expect("open");
        let files = lake
            .write(&[alert("2026-10-20T23:59:00Z"), alert("2026-10-21T00:01:00Z")])
            .expect("write");
        assert_eq!(files.len(), 2);
        assert!(
            files[0]
                .to_string_lossy()
                .contains("alerts/dt=2026-10-20/part-")
        );
        assert!(
            files[1]
                .to_string_lossy()
                .contains("alerts/dt=2026-10-21/part-")
        );
        let text = fs::read_to_string(&files[0]).expect("read");
        let back: Alert = serde_json::from_str(text.trim()).expect("one record");
        assert_eq!(back.time.to_rfc3339(), "2026-10-20T23:59:00+00:00");
        for day in fs::read_dir(lake.root()).expect("list") {
            for f in fs::read_dir(day.expect("entry").path()).expect("list") {
                let name = f.expect("entry").file_name();
                assert!(!name.to_string_lossy().starts_with('.'), "{name:?}");
            }
        }
    }

    #[test]
    fn a_temporary_file_a_killed_writer_left_is_removed_once_stale() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut lake = AlertLake::open(dir.path()).expect("open");
        let files = lake.write(&[alert("2026-10-20T10:00:00Z")]).expect("write");
        let day = files[0].parent().expect("day dir").to_owned();
        let stale = day.join(".part-1-1.ndjson.tmp");
        let fresh = day.join(".part-2-1.ndjson.tmp");
        for path in [&stale, &fresh] {
            fs::write(path, alert("2026-10-20T10:00:00Z").to_json()).expect("write");
        }
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        File::options()
            .write(true)
            .open(&stale)
            .and_then(|f| f.set_modified(two_hours_ago))
            .expect("age it");

        let removed = lake
            .remove_stale_temporaries(Duration::from_secs(3600))
            .expect("sweep");
        assert_eq!(removed, 1);
        assert!(!stale.exists(), "the stale temporary is gone");
        assert!(fresh.exists(), "a live writer's file is left alone");
        assert!(files[0].exists(), "alerts are untouched");
    }
}
