//! Alerts in the lake: `<lake>/alerts/dt=YYYY-MM-DD/part-<micros>-<n>.ndjson`,
//! one alert record per line, partitioned by the alert's event time.
//!
//! Each batch is written to a hidden temporary file (`.part-*.tmp`), fsynced,
//! renamed into place and the directory fsynced: readers never see a partial
//! file. A later record with the same `alert_id` and a higher `repeats` is an
//! update of the first (see the alert record's docs); readers that want one
//! row per alert take the highest `repeats` per `alert_id`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

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
}
