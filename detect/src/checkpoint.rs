//! Checkpoints of the detector, one per Kafka partition: the engine's state
//! and the offset of the next record it has not seen, in one file, so state
//! and position can never disagree.
//!
//! `<dir>/<topic>-<partition>.ckpt` is zstd-compressed MessagePack, a map
//! with named fields: `{version: 1, topic, partition, next_offset, engine}`
//! (self-describing like JSON, so fields can be added; several times faster
//! to write and read than JSON for the engine's nested numbers).
//! It is written to a hidden temporary file, fsynced, renamed over the old
//! one and the directory fsynced: after a crash the file is the old
//! checkpoint or the new one, never a mix. The engine's settings are not
//! stored; they come from configuration when the state is restored, so a
//! changed threshold applies from the next start.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::engine::{Engine, State, StateRef};

/// The checkpoint format's version; bumped on any incompatible change.
pub const VERSION: u32 = 1;

/// zstd level: state is rewritten every checkpoint interval, so fast.
const ZSTD_LEVEL: i32 = 1;

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint io error on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not a detector checkpoint")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: rmp_serde::decode::Error,
    },
    #[error(
        "{path}: checkpoint version {found}, this build reads {VERSION}; move it away to start this partition cold"
    )]
    Version { path: PathBuf, found: u32 },
    #[error("{path}: holds {found}, expected {expected}")]
    Mismatch {
        path: PathBuf,
        found: String,
        expected: String,
    },
}

/// A partition's engine and where to resume reading it.
pub struct Restored {
    pub next_offset: i64,
    pub engine: Engine,
}

#[derive(Serialize)]
struct FileRef<'a> {
    version: u32,
    topic: &'a str,
    partition: i32,
    next_offset: i64,
    engine: StateRef<'a>,
}

#[derive(Deserialize)]
struct FileOwned {
    version: u32,
    topic: String,
    partition: i32,
    next_offset: i64,
    engine: State,
}

/// Just the version, read first so a newer format gets a clear error.
#[derive(Deserialize)]
struct Header {
    version: u32,
}

/// The checkpoints of one consumer group, in one directory.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    dir: PathBuf,
}

impl Checkpoints {
    pub fn open(dir: &Path) -> Result<Self, CheckpointError> {
        fs::create_dir_all(dir).map_err(|source| CheckpointError::Io {
            path: dir.to_owned(),
            source,
        })?;
        Ok(Checkpoints {
            dir: dir.to_owned(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, topic: &str, partition: i32) -> PathBuf {
        self.dir.join(format!("{topic}-{partition}.ckpt"))
    }

    /// The partition's checkpoint, if it has one.
    pub fn load(
        &self,
        topic: &str,
        partition: i32,
        settings: &Settings,
    ) -> Result<Option<Restored>, CheckpointError> {
        let path = self.path(topic, partition);
        let io = |source| CheckpointError::Io {
            path: path.clone(),
            source,
        };
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let body = zstd::decode_all(bytes.as_slice()).map_err(io)?;
        let corrupt = |source| CheckpointError::Corrupt {
            path: path.clone(),
            source,
        };
        let header: Header = rmp_serde::from_slice(&body).map_err(corrupt)?;
        if header.version != VERSION {
            return Err(CheckpointError::Version {
                path,
                found: header.version,
            });
        }
        let file: FileOwned = rmp_serde::from_slice(&body).map_err(corrupt)?;
        if file.topic != topic || file.partition != partition {
            return Err(CheckpointError::Mismatch {
                path,
                found: format!("{}[{}]", file.topic, file.partition),
                expected: format!("{topic}[{partition}]"),
            });
        }
        debug_assert_eq!(file.version, VERSION);
        Ok(Some(Restored {
            next_offset: file.next_offset,
            engine: Engine::restore(settings.clone(), file.engine),
        }))
    }

    /// Replaces the partition's checkpoint, durably; returns its size.
    pub fn save(
        &self,
        topic: &str,
        partition: i32,
        next_offset: i64,
        engine: &Engine,
    ) -> Result<u64, CheckpointError> {
        let path = self.path(topic, partition);
        let tmp = self.dir.join(format!(".{topic}-{partition}.ckpt.tmp"));
        let io = |source| CheckpointError::Io {
            path: path.clone(),
            source,
        };
        let file = File::create(&tmp).map_err(io)?;
        let mut encoder = zstd::Encoder::new(BufWriter::new(file), ZSTD_LEVEL).map_err(io)?;
        let record = FileRef {
            version: VERSION,
            topic,
            partition,
            next_offset,
            engine: engine.state(),
        };
        rmp_serde::encode::write_named(&mut encoder, &record)
            .map_err(|e| io(io::Error::other(e)))?;
        let mut writer = encoder.finish().map_err(io)?;
        writer.flush().map_err(io)?;
        let file = writer.into_inner().map_err(|e| io(e.into_error()))?;
        file.sync_all().map_err(io)?;
        let bytes = file.metadata().map_err(io)?.len();
        fs::rename(&tmp, &path).map_err(io)?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DetectConfig;

    fn event(n: u32, status: u16) -> tooltrail_schemas::ToolCallEvent {
        let line = format!(
            r#"{{"schema_version":1,"event_id":"e{n}","time":"2026-11-22T09:{:02}:{:02}Z","tenant_id":"acme","user_id":"u{}","server":"gdrive","method":"tools/call","tool":"t{}","decision":"{}","status":{status}}}"#,
            (n / 60) % 60,
            n % 60,
            n % 3,
            n % 5,
            if status == 403 { "deny" } else { "allow" },
        );
        tooltrail_schemas::decode(line.as_bytes()).expect("valid event")
    }

    #[test]
    fn a_restored_engine_goes_on_exactly_like_the_one_that_was_saved() {
        let settings = DetectConfig::default().validate().expect("defaults");
        let dir = tempfile::tempdir().expect("tempdir");
        let checkpoints = Checkpoints::open(&dir.path().join("ckpt")).expect("open");
        assert!(
            checkpoints
                .load("events", 0, &settings)
                .expect("load")
                .is_none()
        );
        let events: Vec<_> = (0..3000)
            .map(|n| event(n, if n > 2500 && n % 2 == 0 { 403 } else { 200 }))
            .collect();
        let (before, after) = events.split_at(1800);

        let mut straight = Engine::new(settings.clone());
        let mut expected = Vec::new();
        for e in &events {
            straight.observe(e, &mut expected);
        }
        straight.finish(&mut expected);

        let mut first = Engine::new(settings.clone());
        let mut alerts = Vec::new();
        for e in before {
            first.observe(e, &mut alerts);
        }
        checkpoints.save("events", 0, 1800, &first).expect("save");
        drop(first);
        let restored = checkpoints
            .load("events", 0, &settings)
            .expect("load")
            .expect("a checkpoint");
        assert_eq!(restored.next_offset, 1800);
        let mut second = restored.engine;
        for e in after {
            second.observe(e, &mut alerts);
        }
        second.finish(&mut alerts);
        assert!(!expected.is_empty(), "the burst of denials must alert");
        assert_eq!(alerts, expected);
        assert_eq!(second.stats(), straight.stats());
    }

    #[test]
    fn a_bad_checkpoint_is_refused_with_its_path_and_reason() {
        let settings = DetectConfig::default().validate().expect("defaults");
        let dir = tempfile::tempdir().expect("tempdir");
        let checkpoints = Checkpoints::open(dir.path()).expect("open");
        let engine = Engine::new(settings.clone());
        checkpoints.save("events", 1, 7, &engine).expect("save");
        // Another partition's file under this partition's name.
        fs::rename(checkpoints.path("events", 1), checkpoints.path("events", 2)).expect("mv");
        let err = checkpoints
            .load("events", 2, &settings)
            .err()
            .expect("a mismatch");
        assert!(
            err.to_string().contains("events-2.ckpt") && err.to_string().contains("events[1]"),
            "{err}"
        );

        let write = |value: serde_json::Value| {
            let body = rmp_serde::to_vec_named(&value).expect("encode");
            let bytes = zstd::encode_all(body.as_slice(), 1).expect("compress");
            fs::write(checkpoints.path("events", 3), bytes).expect("write");
        };
        write(serde_json::json!({"version": 2}));
        let err = checkpoints.load("events", 3, &settings).err().expect("v2");
        assert!(
            matches!(err, CheckpointError::Version { found: 2, .. }),
            "{err}"
        );
        write(serde_json::json!({"version": 1, "topic": "events"}));
        let err = checkpoints
            .load("events", 3, &settings)
            .err()
            .expect("short");
        assert!(
            err.to_string().contains("not a detector checkpoint"),
            "{err}"
        );
        fs::write(checkpoints.path("events", 3), b"plain text").expect("write");
        let err = checkpoints
            .load("events", 3, &settings)
            .err()
            .expect("junk");
        assert!(err.to_string().contains("events-3.ckpt"), "{err}");
    }
}
