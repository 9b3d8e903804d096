//! One Delta table of the lake: its definition ([`TableSpec`]), the writer
//! that puts data files and commits them ([`Table`]), and the read-only view
//! everything else reads through ([`Snapshot`]).
//!
//! Data files are ours (see [`crate::parquet`]: sorted, zstd, bloom filters,
//! page index) and are committed as `add` actions with statistics and their
//! SHA-256 in `tags`. A file is invisible until its commit exists, so a
//! writer that dies between writing and committing leaves only an orphan,
//! which vacuum removes after its grace period.
//!
//! Commits are create-if-absent writes of the next log version, on a local
//! disk and on S3 alike, so several writers need no lock. A writer that finds
//! the table moved on counts a conflict, backs off with jitter, reads the new
//! versions and checks its commit against them itself (Kafka positions,
//! files it removes) before trying again. Between commits a writer holds
//! only the table's head (see [`head`]), so a commit costs the same on a
//! table of ten files or ten thousand.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::parquet::arrow::ProjectionMask;
use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use ::parquet::file::metadata::KeyValue;
use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::{DateTime, NaiveDate, Timelike, Utc};
use datafusion::catalog::{Session, TableProvider};
use deltalake::delta_datafusion::{DeltaScanConfig, DeltaScanNext};
use deltalake::kernel::engine::arrow_conversion::{TryIntoArrow, TryIntoKernel};
use deltalake::kernel::transaction::{CommitData, CommitProperties, TransactionError};
use deltalake::kernel::{Action, Add, Remove, StructType, Transaction, Version};
use deltalake::logstore::{CommitOrBytes, LogStoreRef};
use deltalake::protocol::{DeltaOperation, SaveMode};
use deltalake::{DeltaTable, DeltaTableBuilder, DeltaTableError, TableProperty};
use object_store::path::Path as StorePath;
use object_store::{ObjectStoreExt, PutPayload};
use rand::Rng;
use serde_json::json;

use crate::error::{Error, Result};
use crate::keys::{KEYS_FIELD, RecentKeys};
use crate::location::Location;
use crate::metrics::Metrics;
use crate::parquet;
use crate::positions::Positions;
use crate::stats;

mod head;
mod relist;
mod scan;

pub use scan::empty_scan;

pub(crate) use head::Head;

/// The tag of an `add` action that holds the file's SHA-256 (hex).
pub const SHA256_TAG: &str = "tooltrail.sha256";

/// Conflicts a commit survives before it gives up.
const MAX_CONFLICTS: u32 = 60;

/// Back-off after the first conflict; doubles with each, up to [`BACKOFF_CAP`].
const BACKOFF_BASE: Duration = Duration::from_millis(20);
const BACKOFF_CAP: Duration = Duration::from_secs(1);

/// The `commitInfo` field naming the process that wrote a commit,
/// `<host>:<pid>`, for operators reading the log.
pub const WRITER_FIELD: &str = "tooltrail.writer";

fn writer_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// What the lake knows of one table.
#[derive(Debug)]
pub struct TableSpec {
    /// Directory under the lake root, and the name SQL uses.
    pub name: &'static str,
    /// The data columns, without the partition columns.
    pub schema: fn() -> SchemaRef,
    /// Partition columns, strings, in path order.
    pub partitions: &'static [&'static str],
    /// Columns with min/max statistics: those predicates filter on.
    pub stats_columns: &'static [&'static str],
}

impl TableSpec {
    /// The table's full schema: data columns, then partition columns.
    pub fn table_schema(&self) -> SchemaRef {
        let data = (self.schema)();
        let mut fields: Vec<Field> = data.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.extend(
            self.partitions
                .iter()
                .map(|p| Field::new(*p, DataType::Utf8, false)),
        );
        Arc::new(Schema::new(fields))
    }

    /// The schema readers of the Delta table see ([`Snapshot::provider`]):
    /// [`TableSpec::table_schema`] as Delta's types map back to arrow's.
    pub fn read_schema(&self) -> Result<SchemaRef> {
        let delta: StructType = self
            .table_schema()
            .try_into_kernel()
            .map_err(|e| Error::delta(self.name, "mapping the schema", DeltaTableError::from(e)))?;
        let arrow: Schema = (&delta)
            .try_into_arrow()
            .map_err(|e| Error::delta(self.name, "mapping the schema", DeltaTableError::from(e)))?;
        Ok(Arc::new(arrow))
    }
}

/// Partition values of one file, in the order of [`TableSpec::partitions`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Partition(Vec<String>);

impl Partition {
    /// `dt=YYYY-MM-DD/hour=HH` of `time`.
    pub fn hour(time: DateTime<Utc>) -> Partition {
        Partition(vec![
            time.date_naive().format("%Y-%m-%d").to_string(),
            format!("{:02}", time.hour()),
        ])
    }

    /// `dt=YYYY-MM-DD`.
    pub fn day(date: NaiveDate) -> Partition {
        Partition(vec![date.format("%Y-%m-%d").to_string()])
    }

    /// The partition `file` belongs to.
    pub fn of(spec: &TableSpec, file: &FileEntry) -> Partition {
        Partition(
            spec.partitions
                .iter()
                .map(|name| {
                    file.partition
                        .iter()
                        .find(|(k, _)| k == name)
                        .and_then(|(_, v)| v.clone())
                        .unwrap_or_default()
                })
                .collect(),
        )
    }

    pub fn values(&self) -> &[String] {
        &self.0
    }

    fn dir(&self, spec: &TableSpec) -> String {
        spec.partitions
            .iter()
            .zip(&self.0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("/")
    }

    fn map(&self, spec: &TableSpec) -> HashMap<String, Option<String>> {
        spec.partitions
            .iter()
            .zip(&self.0)
            .map(|(k, v)| ((*k).to_owned(), Some(v.clone())))
            .collect()
    }
}

/// A data file written and not yet committed.
#[derive(Debug, Clone)]
pub struct DataFile {
    pub add: Add,
    pub rows: u64,
    pub sha256: String,
}

/// Kafka offsets a commit covers: the table's `txn` for `app_id` becomes
/// `last`. A commit whose `first` the table already holds is fenced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub app_id: String,
    pub first: i64,
    pub last: i64,
}

impl Position {
    /// The application id of a Kafka partition: `<group>/<topic>/<partition>`.
    pub fn app_id(group: &str, topic: &str, partition: i32) -> String {
        format!("{group}/{topic}/{partition}")
    }
}

/// What a commit does to the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// New data (ingest, alerts, the query audit).
    Append,
    /// Files rewritten into fewer, same rows.
    Compact,
    /// Rows deleted by the retention policy.
    Retention,
}

/// One commit: files in, files out, the Kafka positions it covers and the
/// idempotency keys it consumes.
#[derive(Debug, Clone)]
pub struct Commit {
    pub operation: Operation,
    pub adds: Vec<DataFile>,
    pub removes: Vec<Remove>,
    pub positions: Vec<Position>,
    /// Keys honoured for [`crate::keys::KEY_TTL`] (HTTP `Idempotency-Key`s).
    pub keys: Vec<String>,
}

impl Commit {
    pub fn append(adds: Vec<DataFile>) -> Commit {
        Commit {
            operation: Operation::Append,
            adds,
            removes: Vec::new(),
            positions: Vec::new(),
            keys: Vec::new(),
        }
    }

    /// Takes `removes` out of the table (compaction adds their replacements).
    pub fn removing(operation: Operation, removes: Vec<Remove>) -> Commit {
        Commit {
            operation,
            adds: Vec::new(),
            removes,
            positions: Vec::new(),
            keys: Vec::new(),
        }
    }

    pub fn with_keys(mut self, keys: Vec<String>) -> Commit {
        self.keys = keys;
        self
    }

    pub fn with_positions(mut self, positions: Vec<Position>) -> Commit {
        self.positions = positions;
        self
    }
}

/// A commit that took effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The table version it created.
    pub version: Version,
    /// Times it found the table moved on and tried again.
    pub conflicts: u32,
}

/// The writer of one table.
pub struct Table {
    spec: &'static TableSpec,
    head: Head,
    zstd_level: i32,
    metrics: Metrics,
    keys: RecentKeys,
    positions: Positions,
    /// The checkpoint being written, if one is.
    checkpointing: Option<tokio::task::JoinHandle<()>>,
}

impl Table {
    /// Opens the table at `location`, creating it if no writer has yet.
    pub async fn open(
        location: &Location,
        spec: &'static TableSpec,
        zstd_level: i32,
        metrics: Metrics,
    ) -> Result<Table> {
        let head = match load_head(location, spec).await? {
            Some(head) => head,
            None => {
                create(location, spec).await?;
                load_head(location, spec)
                    .await?
                    .ok_or_else(|| Error::Location {
                        location: location.table_url(spec.name).to_string(),
                        problem: "the table was created but reads as absent".into(),
                    })?
            }
        };
        Ok(Table {
            spec,
            head,
            zstd_level,
            metrics,
            keys: RecentKeys::default(),
            positions: Positions::default(),
            checkpointing: None,
        })
    }

    pub fn spec(&self) -> &'static TableSpec {
        self.spec
    }

    /// The version this writer last read or committed.
    pub fn version(&self) -> Version {
        self.head.version()
    }

    /// The files of [`Table::version`], read from the log: for work on the
    /// files (compaction, retention), not for each commit.
    pub async fn snapshot(&self) -> Result<Snapshot> {
        let table = self
            .head
            .load_files()
            .await
            .map_err(|e| Error::delta(self.spec.name, "loading the files", e))?;
        Ok(Snapshot {
            spec: self.spec,
            table,
        })
    }

    /// The last Kafka offset (or file line) committed for `app_id`, as of
    /// [`Table::version`].
    pub async fn position(&mut self, app_id: &str) -> Result<Option<i64>> {
        self.positions
            .get(&mut self.head, self.spec.name, app_id)
            .await
    }

    /// Reads the versions other writers committed since.
    pub async fn refresh(&mut self) -> Result<()> {
        self.head
            .refresh(self.spec.name)
            .await
            .map_err(|e| Error::delta(self.spec.name, "reading new versions", e))
    }

    fn log_store(&self) -> &LogStoreRef {
        self.head.log_store()
    }

    /// Sorts, encodes and stores `batch` as one file of `partition`. Nothing
    /// reads it until a commit adds it.
    pub async fn write(
        &self,
        partition: Partition,
        batch: RecordBatch,
        metadata: Vec<KeyValue>,
    ) -> Result<DataFile> {
        let path = format!(
            "{}/part-{}.zstd.parquet",
            partition.dir(self.spec),
            uuid::Uuid::now_v7()
        );
        let zstd_level = self.zstd_level;
        let stats_columns = self.spec.stats_columns;
        let encode_path = path.clone();
        let (bytes, written, stats, rows) = tokio::task::spawn_blocking(move || {
            let batch = parquet::sort_for_lake(&batch)?;
            let props = parquet::writer_properties(&batch, zstd_level, metadata);
            let (bytes, written) = parquet::encode(&batch, props, &encode_path)?;
            let stats = stats::of(&batch, stats_columns);
            Ok::<_, Error>((bytes, written, stats, batch.num_rows() as u64))
        })
        .await
        .expect("encoding a batch does not panic")?;
        let size = bytes.len() as i64;
        self.log_store()
            .object_store(None)
            .put(&StorePath::from(path.as_str()), PutPayload::from(bytes))
            .await
            .map_err(|e| Error::store(format!("writing {}/{path}", self.spec.name), e))?;
        let add = Add {
            path,
            partition_values: partition.map(self.spec),
            size,
            modification_time: Utc::now().timestamp_millis(),
            data_change: true,
            stats: Some(stats),
            tags: Some(HashMap::from([(
                SHA256_TAG.to_owned(),
                Some(written.sha256.clone()),
            )])),
            ..Default::default()
        };
        Ok(DataFile {
            add,
            rows,
            sha256: written.sha256,
        })
    }

    /// Commits `commit` as the table's next version. On a conflict it backs
    /// off, reads what the other writers committed, checks `commit` against
    /// it and tries again; an HTTP request or a Kafka batch is acknowledged
    /// only after this returns.
    pub async fn commit(&mut self, commit: &Commit) -> Result<Committed> {
        let labels = Metrics::table(self.spec.name);
        let started = Instant::now();
        let mut conflicts = 0;
        loop {
            self.check(commit).await?;
            match self.try_commit(commit).await {
                Ok(version) => {
                    let now = Utc::now().timestamp_millis();
                    self.keys.record(version, now, &commit.keys);
                    let positions: Vec<(String, i64)> = commit
                        .positions
                        .iter()
                        .map(|p| (p.app_id.clone(), p.last))
                        .collect();
                    self.positions.committed(version, &positions);
                    self.checkpoint_if_due(version);
                    self.metrics
                        .commit_seconds
                        .get_or_create(&labels)
                        .observe(started.elapsed().as_secs_f64());
                    self.metrics
                        .files
                        .get_or_create(&labels)
                        .inc_by(commit.adds.len() as u64);
                    return Ok(Committed { version, conflicts });
                }
                Err(e) if is_conflict(&e) => {
                    conflicts += 1;
                    self.metrics.commit_conflicts.get_or_create(&labels).inc();
                    if conflicts > MAX_CONFLICTS {
                        return Err(Error::TooManyConflicts {
                            table: self.spec.name.to_owned(),
                            attempts: conflicts,
                        });
                    }
                    tokio::time::sleep(backoff(conflicts)).await;
                    self.refresh().await?;
                }
                Err(e) => return Err(Error::delta(self.spec.name, "committing", e)),
            }
        }
    }

    /// Starts the checkpoint of `version` if the table's interval asks for
    /// one, unless the previous one is still being written.
    fn checkpoint_if_due(&mut self, version: Version) {
        let busy = self
            .checkpointing
            .as_ref()
            .is_some_and(|task| !task.is_finished());
        if self.head.checkpoint_due(version) && !busy {
            self.checkpointing = Some(self.head.spawn_checkpoint(self.spec.name, version));
        }
    }

    /// Writes `commit` as the version after the head, create-if-absent: it
    /// fails as a conflict if another writer took that version first.
    async fn try_commit(&mut self, commit: &Commit) -> Result<Version, DeltaTableError> {
        let txns = commit
            .positions
            .iter()
            .map(|p| Transaction::new(&p.app_id, p.last))
            .collect();
        let mut metadata = HashMap::from([(WRITER_FIELD.to_owned(), json!(writer_id()))]);
        if !commit.keys.is_empty() {
            metadata.insert(KEYS_FIELD.to_owned(), json!(commit.keys));
        }
        let actions = commit
            .adds
            .iter()
            .map(|f| Action::Add(f.add.clone()))
            .chain(commit.removes.iter().cloned().map(Action::Remove))
            .collect();
        let operation = match commit.operation {
            Operation::Append => DeltaOperation::Write {
                mode: SaveMode::Append,
                partition_by: Some(self.spec.partitions.iter().map(|p| (*p).into()).collect()),
                predicate: None,
            },
            Operation::Compact => DeltaOperation::Optimize {
                predicate: None,
                target_size: 0,
            },
            Operation::Retention => DeltaOperation::Delete { predicate: None },
        };
        let bytes = CommitData::new(actions, operation, metadata, txns).get_bytes()?;
        let version = self.head.version() + 1;
        self.log_store()
            .write_commit_entry(
                version,
                CommitOrBytes::LogBytes(bytes),
                uuid::Uuid::new_v4(),
            )
            .await?;
        self.head.committed(version);
        Ok(version)
    }

    /// Whether a commit within [`crate::keys::KEY_TTL`] consumed `key`, as
    /// of the version last read.
    pub async fn holds_key(&mut self, key: &str) -> Result<bool> {
        let latest = self.head.version();
        let now = Utc::now().timestamp_millis();
        let log = self.log_store().clone();
        self.keys
            .catch_up(self.spec.name, log.as_ref(), latest, now)
            .await?;
        Ok(self.keys.contains(key))
    }

    /// Whether `commit` still holds against the table as last read.
    async fn check(&mut self, commit: &Commit) -> Result<()> {
        if let Some(problem) = self.head.refusal(!commit.removes.is_empty()) {
            return Err(Error::Unwritable {
                table: self.spec.name.to_owned(),
                problem,
            });
        }
        for key in &commit.keys {
            if self.holds_key(key).await? {
                return Err(Error::KeyConflict {
                    table: self.spec.name.to_owned(),
                    key: key.clone(),
                });
            }
        }
        for p in &commit.positions {
            if let Some(committed) = self.position(&p.app_id).await?
                && committed >= p.first
            {
                return Err(Error::Fenced {
                    table: self.spec.name.to_owned(),
                    app_id: p.app_id.clone(),
                    committed,
                    start: p.first,
                });
            }
        }
        if !commit.removes.is_empty() {
            let live: HashSet<String> = self
                .snapshot()
                .await?
                .files()?
                .into_iter()
                .map(|f| f.path)
                .collect();
            if let Some(gone) = commit.removes.iter().find(|r| !live.contains(&r.path)) {
                return Err(Error::FileGone {
                    table: self.spec.name.to_owned(),
                    path: gone.path.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Whether a failed commit lost a race for its version (and may try again).
fn is_conflict(e: &DeltaTableError) -> bool {
    matches!(
        e,
        DeltaTableError::VersionAlreadyExists(_)
            | DeltaTableError::Transaction {
                source: TransactionError::MaxCommitAttempts(_)
                    | TransactionError::VersionAlreadyExists(_)
            }
    )
}

/// Full jitter: a random wait up to an exponentially growing cap, so that
/// writers that collided do not collide again in step.
fn backoff(conflicts: u32) -> Duration {
    let cap = BACKOFF_BASE
        .saturating_mul(1 << conflicts.saturating_sub(1).min(16))
        .min(BACKOFF_CAP);
    rand::rng().random_range(Duration::ZERO..=cap)
}

/// The head of the table at `location`, or `None` if no writer created it.
async fn load_head(location: &Location, spec: &TableSpec) -> Result<Option<Head>> {
    // On a local disk a missing directory is an error to delta-rs, not an
    // absent table.
    if let Some(dir) = location.local_dir()
        && !dir.join(spec.name).join("_delta_log").is_dir()
    {
        return Ok(None);
    }
    let log_store = DeltaTableBuilder::from_url(location.table_url(spec.name))
        .and_then(|builder| builder.build_storage())
        .map_err(|e| Error::delta(spec.name, "resolving the table's location", e))?;
    relist::relisting(spec.name, || Head::load(log_store.clone()))
        .await
        .map_err(|e| Error::delta(spec.name, "loading", e))
}

async fn load(location: &Location, spec: &TableSpec) -> Result<Option<DeltaTable>> {
    // On a local disk a missing directory is an error to delta-rs, not an
    // absent table.
    if let Some(dir) = location.local_dir()
        && !dir.join(spec.name).join("_delta_log").is_dir()
    {
        return Ok(None);
    }
    let url = location.table_url(spec.name);
    // Checked once; each attempt builds its own (a builder loads once).
    DeltaTableBuilder::from_url(url.clone())
        .map_err(|e| Error::delta(spec.name, "resolving the table's location", e))?;
    let loading = relist::relisting(spec.name, || {
        let url = url.clone();
        async move { DeltaTableBuilder::from_url(url)?.load().await }
    });
    match loading.await {
        Ok(table) => Ok(Some(table)),
        Err(DeltaTableError::NotATable(_)) => Ok(None),
        Err(e) => Err(Error::delta(spec.name, "loading", e)),
    }
}

async fn create(location: &Location, spec: &TableSpec) -> Result<()> {
    if let Some(dir) = location.local_dir() {
        let dir = dir.join(spec.name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    let schema: StructType = spec
        .table_schema()
        .try_into_kernel()
        .map_err(|e| Error::delta(spec.name, "mapping the schema", DeltaTableError::from(e)))?;
    let created = deltalake::operations::create::CreateBuilder::new()
        .with_location(location.table_url(spec.name).to_string())
        .with_table_name(spec.name)
        .with_columns(schema.fields().cloned())
        .with_partition_columns(spec.partitions.iter().copied())
        .with_save_mode(SaveMode::Ignore)
        // Racing creators: one wins version 0, the others load it.
        .with_commit_properties(CommitProperties::default().with_max_retries(0))
        .with_configuration_property(
            TableProperty::DataSkippingStatsColumns,
            Some(spec.stats_columns.join(",")),
        )
        // The log is the audit trail the digest chain covers: kept.
        .with_configuration_property(TableProperty::EnableExpiredLogCleanup, Some("false"))
        .await;
    match created {
        Ok(_) => Ok(()),
        // Another writer created it first.
        Err(e) => match load_head(location, spec).await? {
            Some(_) => Ok(()),
            None => Err(Error::delta(spec.name, "creating", e)),
        },
    }
}

/// A file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative to the table's root.
    pub path: String,
    pub partition: Vec<(String, Option<String>)>,
    pub size: i64,
    pub rows: Option<usize>,
}

/// One version of a table, read-only. Query, exports, warm-up and
/// verification read through it; none of them holds a writer.
#[derive(Clone)]
pub struct Snapshot {
    spec: &'static TableSpec,
    table: DeltaTable,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("table", &self.spec.name)
            .field("version", &self.version())
            .finish()
    }
}

impl Snapshot {
    /// The newest version, or `None` if no writer has created the table.
    pub async fn load(location: &Location, spec: &'static TableSpec) -> Result<Option<Snapshot>> {
        Ok(load(location, spec)
            .await?
            .map(|table| Snapshot { spec, table }))
    }

    pub fn spec(&self) -> &'static TableSpec {
        self.spec
    }

    /// The table version read; `None` only before the table's creation.
    pub fn version(&self) -> Option<Version> {
        self.table.version()
    }

    /// The delta-rs table, for operations delta-rs implements whole (vacuum).
    pub(crate) fn delta(&self) -> &DeltaTable {
        &self.table
    }

    /// The last Kafka offset the table holds for `app_id`.
    pub async fn position(&self, app_id: &str) -> Result<Option<i64>> {
        let state = self
            .table
            .snapshot()
            .map_err(|e| Error::delta(self.spec.name, "reading the snapshot", e))?;
        state
            .transaction_version(self.table.log_store().as_ref(), app_id)
            .await
            .map_err(|e| Error::delta(self.spec.name, "reading application versions", e))
    }

    /// The files of this version.
    pub fn files(&self) -> Result<Vec<FileEntry>> {
        let state = self
            .table
            .snapshot()
            .map_err(|e| Error::delta(self.spec.name, "reading the snapshot", e))?;
        let mut files: Vec<FileEntry> = state
            .log_data()
            .iter()
            .map(|f| {
                let mut partition: Vec<_> = f.partition_values_map().into_iter().collect();
                partition.sort();
                FileEntry {
                    path: f.path().into_owned(),
                    partition,
                    size: f.size(),
                    rows: f.num_records(),
                }
            })
            .collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(files)
    }

    /// The rows of the data file `path`, only `columns` if given.
    pub async fn read_file(
        &self,
        path: &str,
        columns: Option<&[&str]>,
    ) -> Result<Vec<RecordBatch>> {
        let columns: Option<Vec<String>> =
            columns.map(|c| c.iter().map(|s| (*s).to_owned()).collect());
        let location = format!("{}/{path}", self.spec.name);
        let bytes = self
            .table
            .object_store()
            .get(&StorePath::from(path))
            .await
            .map_err(|e| Error::store(format!("reading {location}"), e))?
            .bytes()
            .await
            .map_err(|e| Error::store(format!("reading {location}"), e))?;
        tokio::task::spawn_blocking(move || {
            let wrap = |source| Error::ReadParquet {
                path: location.clone(),
                source,
            };
            let mut builder = ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(wrap)?;
            if let Some(columns) = columns {
                let mask = ProjectionMask::columns(
                    builder.parquet_schema(),
                    columns.iter().map(String::as_str),
                );
                builder = builder.with_projection(mask);
            }
            let reader = builder.build().map_err(wrap)?;
            reader.map(|b| b.map_err(Error::from)).collect()
        })
        .await
        .expect("decoding a file does not panic")
    }

    /// The `remove` action that takes `path` out of the table.
    pub fn remove(&self, path: &str) -> Result<Option<Remove>> {
        let state = self
            .table
            .snapshot()
            .map_err(|e| Error::delta(self.spec.name, "reading the snapshot", e))?;
        Ok(state
            .log_data()
            .iter()
            .find(|f| f.path() == path)
            .map(|f| f.remove_action(true)))
    }

    /// Reads the versions other writers committed since.
    pub async fn update(&mut self) -> Result<()> {
        let table = &self.table;
        self.table = relist::relisting(self.spec.name, || {
            let mut table = table.clone();
            async move { table.update_incremental(None).await.map(|()| table) }
        })
        .await
        .map_err(|e| Error::delta(self.spec.name, "reading new versions", e))?;
        Ok(())
    }

    /// A DataFusion provider over this version, for `session` (see
    /// [`scan`]; delta-rs's scan for a table with deletion vectors or column
    /// mapping). Its schema is [`TableSpec::read_schema`]: strings as `Utf8`
    /// and partition values plain (not DataFusion's view or dictionary
    /// types), so it reads like any other table of the session.
    pub fn provider(&self, session: &dyn Session) -> Result<Arc<dyn TableProvider>> {
        self.table
            .update_datafusion_session(session)
            .map_err(|e| Error::delta(self.spec.name, "registering its store", e))?;
        if !scan::needs_delta_scan(&self.table) {
            let schema = self.spec.read_schema()?;
            return Ok(Arc::new(scan::SnapshotScan::new(
                self.spec,
                schema,
                self.table.clone(),
            )?));
        }
        let state = self
            .table
            .snapshot()
            .map_err(|e| Error::delta(self.spec.name, "reading the snapshot", e))?;
        let mut config = DeltaScanConfig::new_from_session(session);
        config.wrap_partition_values = false;
        config.schema_force_view_types = false;
        let scan = DeltaScanNext::new(state.snapshot().clone(), config).map_err(|source| {
            Error::Provider {
                table: self.spec.name.to_owned(),
                source: Box::new(source),
            }
        })?;
        Ok(Arc::new(scan))
    }
}

#[cfg(test)]
mod tests;
