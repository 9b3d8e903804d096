//! Checkpoints of the detector, one per Kafka partition: the engine's state
//! and the offset of the next record it has not seen, in one object, so
//! state and position can never disagree.
//!
//! They live with the lake, `<lake>/_tooltrail/detect/<group>/<topic>-<partition>.ckpt`,
//! on a local disk or in object storage alike: a partition that moves to a
//! detector on another machine resumes from its checkpoint there rather than
//! warming up cold.
//!
//! A checkpoint is zstd-compressed MessagePack, a map with named fields:
//! `{version: 1, topic, partition, next_offset, engine}` (self-describing like
//! JSON, so fields can be added; several times faster to write and read than
//! JSON for the engine's nested numbers). It is written in one put, which
//! replaces the old one whole (a rename on a local disk, one PUT on S3): a
//! reader finds the old checkpoint or the new, never a mix. The engine's
//! settings are not stored; they come from configuration when the state is
//! restored, so a changed threshold applies from the next start.

use std::io::{self, Write};

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use tooltrail_lake::Location;

use crate::config::Settings;
use crate::engine::{Engine, State, StateRef};

/// The checkpoint format's version; bumped on any incompatible change.
pub const VERSION: u32 = 1;

/// Where the checkpoints of all consumer groups live, under the lake.
pub const CHECKPOINT_DIR: &str = "_tooltrail/detect";

/// zstd level: state is rewritten every checkpoint interval, so fast.
const ZSTD_LEVEL: i32 = 1;

/// Why a checkpoint could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint store {path}")]
    Store {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("checkpoint io error on {path}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: not a detector checkpoint")]
    Corrupt {
        path: String,
        #[source]
        source: rmp_serde::decode::Error,
    },
    #[error(
        "{path}: checkpoint version {found}, this build reads {VERSION}; move it away to start this partition cold"
    )]
    Version { path: String, found: u32 },
    #[error("{path}: holds {found}, expected {expected}")]
    Mismatch {
        path: String,
        found: String,
        expected: String,
    },
    #[error(
        "consumer group `{group}` cannot name a checkpoint directory: use letters, digits, `.`, `_` and `-` (not `.` or `..` alone)"
    )]
    Group { group: String },
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

/// The checkpoints of one consumer group.
///
/// `load` and `save` block on `runtime`: call them from a blocking thread
/// (the detect service's consumer thread), not from an async task.
#[derive(Debug, Clone)]
pub struct Checkpoints {
    store: std::sync::Arc<dyn ObjectStore>,
    /// `<lake>/_tooltrail/detect/<group>`, for messages.
    location: String,
    runtime: Handle,
}

impl Checkpoints {
    /// The checkpoints of consumer group `group` in the lake at `lake`.
    pub fn open(lake: &Location, group: &str, runtime: Handle) -> Result<Self, CheckpointError> {
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if group.is_empty() || group == "." || group == ".." || !group.chars().all(plain) {
            return Err(CheckpointError::Group {
                group: group.escape_debug().to_string(),
            });
        }
        let prefix = format!("{CHECKPOINT_DIR}/{group}");
        let location = format!("{}/{prefix}", lake.to_string().trim_end_matches('/'));
        let store = lake.store(&prefix).map_err(|e| CheckpointError::Store {
            path: location.clone(),
            source: Box::new(e),
        })?;
        Ok(Checkpoints {
            store,
            location,
            runtime,
        })
    }

    /// `<lake>/_tooltrail/detect/<group>`.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The checkpoint's name within [`Self::location`].
    pub fn name(topic: &str, partition: i32) -> String {
        format!("{topic}-{partition}.ckpt")
    }

    fn path(&self, topic: &str, partition: i32) -> String {
        format!("{}/{}", self.location, Self::name(topic, partition))
    }

    /// The partition's checkpoint, if it has one.
    pub fn load(
        &self,
        topic: &str,
        partition: i32,
        settings: &Settings,
    ) -> Result<Option<Restored>, CheckpointError> {
        let path = self.path(topic, partition);
        let name = StorePath::from(Self::name(topic, partition));
        let store_error = |source: object_store::Error| CheckpointError::Store {
            path: path.clone(),
            source: Box::new(source),
        };
        let fetched = self.runtime.block_on(async {
            match self.store.get(&name).await {
                Ok(got) => got.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        let Some(bytes) = fetched.map_err(store_error)? else {
            return Ok(None);
        };
        let body = zstd::decode_all(bytes.as_ref()).map_err(|source| CheckpointError::Io {
            path: path.clone(),
            source,
        })?;
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

    /// Replaces the partition's checkpoint whole; returns its size.
    pub fn save(
        &self,
        topic: &str,
        partition: i32,
        next_offset: i64,
        engine: &Engine,
    ) -> Result<u64, CheckpointError> {
        let path = self.path(topic, partition);
        let io = |source| CheckpointError::Io {
            path: path.clone(),
            source,
        };
        let mut encoder = zstd::Encoder::new(Vec::new(), ZSTD_LEVEL).map_err(io)?;
        let record = FileRef {
            version: VERSION,
            topic,
            partition,
            next_offset,
            engine: engine.state(),
        };
        rmp_serde::encode::write_named(&mut encoder, &record)
            .map_err(|e| io(io::Error::other(e)))?;
        let mut bytes = encoder.finish().map_err(io)?;
        bytes.flush().map_err(io)?;
        let size = bytes.len() as u64;
        let name = StorePath::from(Self::name(topic, partition));
        self.runtime
            .block_on(self.store.put(&name, PutPayload::from(bytes)))
            .map_err(|source| CheckpointError::Store {
                path: path.clone(),
                source: Box::new(source),
            })?;
        Ok(size)
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

    /// Checkpoints of group `g` in a lake at `dir`, and where their files are.
    fn open(
        dir: &std::path::Path,
        runtime: &tokio::runtime::Runtime,
    ) -> (Checkpoints, std::path::PathBuf) {
        let lake = Location::local(dir).expect("lake");
        let checkpoints = Checkpoints::open(&lake, "g", runtime.handle().clone()).expect("open");
        let files = lake
            .local_dir()
            .expect("local")
            .join(CHECKPOINT_DIR)
            .join("g");
        (checkpoints, files)
    }

    #[test]
    fn a_group_that_would_leave_the_checkpoint_directory_is_refused_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let lake = Location::local(dir.path()).expect("lake");
        for group in ["..", ".", "", "a/b", "../x", "a\\b", "grp\n"] {
            let err = Checkpoints::open(&lake, group, runtime.handle().clone())
                .err()
                .unwrap_or_else(|| panic!("{group:?} was accepted"));
            assert!(matches!(err, CheckpointError::Group { .. }), "{err}");
            assert!(err.to_string().contains("consumer group"), "{err}");
        }
        for group in ["tooltrail-detect", "team_a.prod-2"] {
            Checkpoints::open(&lake, group, runtime.handle().clone()).expect(group);
        }
    }

    #[test]
    fn a_restored_engine_goes_on_exactly_like_the_one_that_was_saved() {
        let settings = DetectConfig::default().validate().expect("defaults");
        let dir = tempfile::tempdir().expect("tempdir");
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let (checkpoints, files) = open(dir.path(), &runtime);
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
        assert!(files.join("events-0.ckpt").is_file(), "kept with the lake");
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
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let (checkpoints, files) = open(dir.path(), &runtime);
        let engine = Engine::new(settings.clone());
        checkpoints.save("events", 1, 7, &engine).expect("save");
        // Another partition's file under this partition's name.
        let file = |partition| files.join(Checkpoints::name("events", partition));
        std::fs::rename(file(1), file(2)).expect("mv");
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
            std::fs::write(file(3), bytes).expect("write");
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
        std::fs::write(file(3), b"plain text").expect("write");
        let err = checkpoints
            .load("events", 3, &settings)
            .err()
            .expect("junk");
        assert!(err.to_string().contains("events-3.ckpt"), "{err}");
    }
}
