//! What a writer knows of its table between commits: the newest version,
//! the protocol and the metadata. Never the list of files.
//!
//! delta-rs's `DeltaTable` keeps every live file in memory and, after each
//! commit, rebuilds that list by replaying it through delta-kernel, which
//! parses every file's statistics again. A commit then cost O(files): 32 ms
//! on a young table, 109 ms at 274 files, and seconds at the thousands of
//! files an hourly compaction leaves. So a writer here commits the log entry
//! itself (a create-if-absent write of the next version, as delta-rs does)
//! and keeps only this. Reads that need the files load a [`Snapshot`] on
//! purpose (compaction, retention), at the version this names.
//!
//! After a commit of its own the writer knows the new version without
//! listing the log: a commit by anyone else in between would have taken the
//! version first, and the write would have failed as a conflict.
//!
//! [`Snapshot`]: super::Snapshot

use std::sync::Arc;

use deltalake::kernel::{Snapshot as LogSnapshot, Version};
use deltalake::logstore::LogStoreRef;
use deltalake::table::config::TablePropertiesExt;
use deltalake::{DeltaTable, DeltaTableError};
use tokio::task::JoinHandle;

/// The writer features whose tables a writer of plain `add` and `remove`
/// actions keeps valid: append-only (checked against removes) and column
/// invariants (tooltrail's tables declare none).
const WRITER_FEATURES: [&str; 2] = ["appendOnly", "invariants"];

/// A table's newest version as one writer knows it.
pub(crate) struct Head {
    log_store: LogStoreRef,
    /// Protocol, metadata and log segment as last read (no files).
    read: Arc<LogSnapshot>,
    /// The newest version: `read`'s, or a later one this writer committed.
    version: Version,
}

impl Head {
    /// The table's newest version, or `None` if nobody created the table.
    pub(crate) async fn load(log_store: LogStoreRef) -> Result<Option<Head>, DeltaTableError> {
        match LogSnapshot::try_new(log_store.as_ref(), None).await {
            Ok(read) => Ok(Some(Head {
                version: read.version(),
                read: Arc::new(read),
                log_store,
            })),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn version(&self) -> Version {
        self.version
    }

    pub(crate) fn log_store(&self) -> &LogStoreRef {
        &self.log_store
    }

    /// Reads the versions other writers committed since (`table` names it
    /// in the log).
    pub(crate) async fn refresh(&mut self, table: &str) -> Result<(), DeltaTableError> {
        let (read, log_store) = (&self.read, &self.log_store);
        self.read =
            super::relist::relisting(table, || read.clone().update(log_store.engine(None), None))
                .await?;
        self.version = self.read.version();
        Ok(())
    }

    /// This writer committed `version`.
    pub(crate) fn committed(&mut self, version: Version) {
        self.version = version;
    }

    /// Why this writer may not commit to the table, if it may not: a writer
    /// feature it does not implement, or removes on an append-only table.
    pub(crate) fn refusal(&self, removes: bool) -> Option<String> {
        let protocol = self.read.protocol();
        let unknown: Vec<String> = match protocol.min_writer_version() {
            ..=2 => Vec::new(),
            7 => protocol
                .writer_features()
                .unwrap_or_default()
                .iter()
                .map(|f| f.to_string())
                .filter(|f| !WRITER_FEATURES.contains(&f.as_str()))
                .collect(),
            v => vec![format!("writer version {v}")],
        };
        if !unknown.is_empty() {
            return Some(format!(
                "the table requires {} of its writers, which tooltrail does not implement",
                unknown.join(", ")
            ));
        }
        (removes && self.read.table_properties().append_only()).then(|| {
            "the table is append-only (delta.appendOnly) and the commit removes files".into()
        })
    }

    /// The last version committed for `app_id` (a Kafka partition's offset),
    /// read from the log as of [`Head::version`].
    pub(crate) async fn app_id_version(
        &mut self,
        app_id: &str,
    ) -> Result<Option<i64>, DeltaTableError> {
        if self.read.version() < self.version {
            self.read = self
                .read
                .clone()
                .update(self.log_store.engine(None), Some(self.version))
                .await?;
        }
        // delta-rs's log-only snapshot hands out its delta-kernel snapshot
        // through a scan, and only the kernel snapshot answers this without
        // the files.
        let kernel = self.read.scan_builder().build()?.snapshot().clone();
        let engine = self.log_store.engine(None);
        let app_id = app_id.to_owned();
        tokio::task::spawn_blocking(move || kernel.get_app_id_version(&app_id, engine.as_ref()))
            .await
            .map_err(|e| DeltaTableError::Generic(e.to_string()))?
            .map_err(DeltaTableError::from)
    }

    /// Whether `version` is one after which the table's checkpoint interval
    /// (`delta.checkpointInterval`, 100 by default) asks for a checkpoint.
    pub(crate) fn checkpoint_due(&self, version: Version) -> bool {
        (version + 1).is_multiple_of(self.read.table_properties().checkpoint_interval().get())
    }

    /// Writes the checkpoint of `version` in the background: readers then
    /// start from it instead of replaying every commit. Commits do not wait
    /// for it; a failure is logged, and the next interval writes another.
    pub(crate) fn spawn_checkpoint(&self, table: &'static str, version: Version) -> JoinHandle<()> {
        let log_store = self.log_store.clone();
        tokio::spawn(async move {
            if let Err(e) = checkpoint(log_store, version).await {
                tracing::warn!(table, version, error = %e, "writing a checkpoint failed; readers replay the commits since the previous one");
            }
        })
    }

    /// A table with every file of [`Head::version`] loaded, for reads that
    /// need them.
    pub(crate) async fn load_files(&self) -> Result<DeltaTable, DeltaTableError> {
        let mut table = DeltaTable::new(self.log_store.clone());
        table.load_version(self.version).await?;
        Ok(table)
    }
}

async fn checkpoint(log_store: LogStoreRef, version: Version) -> Result<(), DeltaTableError> {
    let read = LogSnapshot::try_new(log_store.as_ref(), Some(version)).await?;
    let kernel = read.scan_builder().build()?.snapshot().clone();
    let engine = log_store.engine(None);
    tokio::task::spawn_blocking(move || kernel.checkpoint(engine.as_ref(), None))
        .await
        .map_err(|e| DeltaTableError::Generic(e.to_string()))?
        .map_err(DeltaTableError::from)?;
    Ok(())
}
