//! lakehouse-table: every dataset is a Delta Lake table.
//!
//! A dataset's data files live under `datasets/<name>/` and its Delta log
//! under `datasets/<name>/_delta_log/`, in the one object store every
//! service shares, so other engines (the Python `deltalake` package, polars,
//! Spark, DuckDB's `delta` extension) read a dataset's directory as a table.
//! This crate is the only code that writes or reads that log; it is a thin
//! layer over delta-rs (`deltalake-core`): commits go through its
//! `CommitBuilder` / `CreateBuilder` (each version is one put-if-absent of
//! `_delta_log/<version>.json`, with checkpoints every 100 versions), reads
//! through its snapshots.
//!
//! The catalog (catalogd) is the one writer: it commits a version for every
//! register that changes a dataset's files, then writes the dataset's
//! manifest, which records the version. The log is the source of truth: a
//! version the log has and the manifest does not yet record (a crash
//! between the two writes) is rolled forward at start-up with
//! [`Tables::snapshot`].
//!
//! Versions here are Delta versions (0 for the first), the numbers other
//! Delta readers use.

mod dml;
pub mod error;
pub mod journal;
mod sorted;
mod vacuum;

use std::collections::HashMap;
use std::sync::Arc;

use arrow::datatypes::Schema;
use chrono::{DateTime, TimeZone, Utc};
use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel as _;
use deltalake_core::kernel::transaction::{CommitBuilder, CommitProperties};
use deltalake_core::kernel::{Action, Add, MetadataExt as _, Remove, StructType};
use deltalake_core::operations::create::CreateBuilder;
use deltalake_core::protocol::{DeltaOperation, SaveMode};
use deltalake_core::{DeltaTable, DeltaTableBuilder, DeltaTableError};
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::parquet_to_arrow_schema;
use parquet::file::metadata::ParquetMetaData;
use serde_json::Value;
use url::Url;

/// delta-rs's error type (what [`TableError::Delta`] carries).
pub mod delta {
    pub use deltalake_core::DeltaTableError;
    pub use deltalake_core::delta_datafusion::planner::DeltaPlanner;
}
pub use dml::{Changed, Expression, MergeClause, MergeSpec, When};
pub use error::{Result, TableError};
pub use vacuum::{Kept, Retention};

/// Where dataset tables live in the store.
pub const DATASETS_PREFIX: &str = "datasets/";
/// The Delta log directory of a table.
pub const LOG_DIR: &str = "_delta_log";
/// Table property holding the dataset's schema fingerprint (ADR-020).
pub const FINGERPRINT_PROPERTY: &str = "lakehouse.schemaFingerprint";
/// How many columns' min/max statistics each file's `add` action carries
/// (Delta's default).
const STATS_COLUMNS: u64 = 32;

/// commitInfo fields this crate writes beside delta-rs's own.
const INFO_ROWS_ADDED: &str = "lakehouse.rowsAdded";
const INFO_ROWS_REMOVED: &str = "lakehouse.rowsRemoved";

/// The key of a table's log entry for `version`.
pub fn commit_key(name: &str, version: i64) -> String {
    format!("{DATASETS_PREFIX}{name}/{LOG_DIR}/{version:020}.json")
}

/// A data file a commit adds: already stored and verified, with its footer.
#[derive(Debug, Clone)]
pub struct NewFile {
    /// The object key (`datasets/<name>/<file>`).
    pub key: String,
    pub size: u64,
    pub metadata: Arc<ParquetMetaData>,
}

/// A data file a commit removes from the table (it stays stored for the
/// versions that list it until vacuum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OldFile {
    pub key: String,
    pub size: u64,
    pub rows: u64,
}

/// One new version of a dataset's table.
#[derive(Debug, Clone)]
pub struct Commit {
    pub name: String,
    pub fingerprint: String,
    pub adds: Vec<NewFile>,
    pub removes: Vec<OldFile>,
    /// The version the caller's state reflects: `None` when it knows of no
    /// table (a new dataset, or one created again after a drop). The
    /// commit is refused with [`TableError::Conflict`] if the table moved.
    pub base: Option<i64>,
}

/// A file of a table version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFile {
    pub key: String,
    pub size: u64,
    /// From the file's statistics; `None` when the writer recorded none.
    pub rows: Option<u64>,
}

/// A table at one version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub version: i64,
    pub files: Vec<TableFile>,
    /// The dataset's schema fingerprint at this version, when recorded.
    pub fingerprint: Option<String>,
}

/// Which version of a table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    Latest,
    Version(i64),
    /// The version current at this time (the last committed at or before it).
    Time(DateTime<Utc>),
}

/// One entry of a table's history.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub version: i64,
    /// When the version was committed.
    pub timestamp: Option<DateTime<Utc>>,
    /// Delta's operation name: `CREATE TABLE`, `WRITE`, `OPTIMIZE`, …
    pub operation: String,
    /// `Append` or `Overwrite` for writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    pub files_added: u64,
    pub files_removed: u64,
    pub rows_added: u64,
    /// `None` when the writer did not record it.
    pub rows_removed: Option<u64>,
    pub schema_fingerprint: Option<String>,
}

/// How [`Tables::compact`] rewrites files.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompactOptions {
    /// Target file size in bytes (delta-rs's default, 100 MiB, when absent).
    #[serde(default)]
    pub target_size: Option<u64>,
    /// Columns to cluster rows by (Z-order); plain bin-packing when empty.
    #[serde(default)]
    pub zorder: Vec<String>,
    /// Files rewritten at once.
    #[serde(skip)]
    pub concurrency: usize,
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Compacted {
    pub version: i64,
    pub files_added: u64,
    pub files_removed: u64,
}

/// The tables of every dataset in one store.
#[derive(Debug, Clone)]
pub struct Tables {
    root: Arc<dyn ObjectStore>,
}

impl Tables {
    /// `root` is the store's root (keys like `datasets/<name>/…`).
    pub fn new(root: Arc<dyn ObjectStore>) -> Self {
        Self { root }
    }

    /// What delta-rs is given: the same store, listings sorted.
    fn for_delta(&self) -> Arc<dyn ObjectStore> {
        Arc::new(sorted::Sorted(self.root.clone()))
    }

    fn builder(&self, name: &str) -> Result<DeltaTableBuilder> {
        // Dataset names are URL-path safe (lowercase letters, digits, `_-./`).
        // The scheme only picks delta-rs's default log store; the store is ours.
        let url = Url::parse(&format!("memory:///{DATASETS_PREFIX}{name}/")).map_err(|e| {
            TableError::Delta(Box::new(DeltaTableError::InvalidTableLocation(
                e.to_string(),
            )))
        })?;
        Ok(DeltaTableBuilder::from_url(url.clone())?.with_storage_backend(self.for_delta(), url))
    }

    /// The table at its latest version; `None` if there is none.
    async fn open(&self, name: &str) -> Result<Option<DeltaTable>> {
        let mut table = self.builder(name)?.build()?;
        match table.load().await {
            Ok(()) => Ok(Some(table)),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The table's schema at `version` as Arrow, from its log (what a table
    /// without files — every row deleted — still has); `None` if there is no
    /// table.
    pub async fn arrow_schema(
        &self,
        name: &str,
        version: i64,
    ) -> Result<Option<arrow::datatypes::SchemaRef>> {
        match self.builder(name)?.with_version(version as _).load().await {
            Ok(t) => Ok(Some(t.snapshot()?.snapshot().arrow_schema())),
            Err(DeltaTableError::NotATable(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the log has an entry for `version` (one `HEAD`).
    pub async fn has_version(&self, name: &str, version: i64) -> Result<bool> {
        match self.root.head(&Path::from(commit_key(name, version))).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// The latest version, `None` if the dataset has no table: a listing
    /// of the log, without loading the table's state (history and the
    /// errors of time travel need only the number).
    pub async fn latest(&self, name: &str) -> Result<Option<i64>> {
        if !self.exists(name).await? {
            return Ok(None);
        }
        let store = self.builder(name)?.build_storage()?;
        match store.get_latest_version(0).await {
            Ok(v) => Ok(i64::try_from(v).ok()),
            Err(DeltaTableError::NotATable(_) | DeltaTableError::InvalidVersion(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the dataset has a log at all (one listing; delta-rs logs an
    /// error for every table it cannot find, so new datasets are not opened).
    async fn exists(&self, name: &str) -> Result<bool> {
        let prefix = Path::from(format!("{DATASETS_PREFIX}{name}/{LOG_DIR}"));
        match self.root.list(Some(&prefix)).next().await {
            None => Ok(false),
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(e.into()),
        }
    }

    /// Commits one version; returns its number.
    pub async fn commit(&self, c: Commit) -> Result<i64> {
        let table = if c.base.is_none() && !self.exists(&c.name).await? {
            None
        } else {
            self.open(&c.name).await?
        };
        match (table, c.base) {
            (None, _) => self.create(c, SaveMode::ErrorIfExists).await,
            // A table the caller does not know of: the dataset was dropped and
            // is created again. The new version replaces every file.
            (Some(_), None) => self.create(c, SaveMode::Overwrite).await,
            (Some(t), Some(base)) => {
                let latest = version_of(&t).unwrap_or(-1);
                if latest != base {
                    return Err(TableError::Conflict {
                        name: c.name,
                        version: base + 1,
                    });
                }
                self.write(t, c).await
            }
        }
    }

    async fn create(&self, c: Commit, mode: SaveMode) -> Result<i64> {
        let schema = match c.adds.first() {
            Some(f) => kernel_schema(&f.metadata)?,
            None => StructType::try_new(vec![]).map_err(DeltaTableError::from)?,
        };
        let rows_added = rows_of(&c.adds);
        // A new table removes nothing; one created again replaces rows this
        // commit does not count.
        let removed = matches!(mode, SaveMode::ErrorIfExists).then_some(0);
        let adds = add_actions(&c.name, &c.adds)?;
        let store = self.builder(&c.name)?.build_storage()?;
        let table = CreateBuilder::new()
            .with_log_store(store)
            .with_table_name(c.name.clone())
            .with_columns(schema.fields().cloned())
            .with_configuration([(FINGERPRINT_PROPERTY, Some(c.fingerprint.clone()))])
            .with_raise_if_key_not_exists(false)
            .with_save_mode(mode)
            .with_actions(adds)
            .with_commit_properties(commit_properties(&c.fingerprint, rows_added, removed))
            .await
            .map_err(|e| conflict_or(e, &c.name, 0))?;
        Ok(version_of(&table).unwrap_or(0))
    }

    async fn write(&self, table: DeltaTable, c: Commit) -> Result<i64> {
        let state = table.snapshot()?;
        let base = state.version() as i64;
        let mut actions = add_actions(&c.name, &c.adds)?;
        let rows_removed: u64 = c.removes.iter().map(|f| f.rows).sum();
        actions.extend(remove_actions(&c.name, &c.removes));
        let current_fp = state
            .metadata()
            .configuration()
            .get(FINGERPRINT_PROPERTY)
            .cloned();
        if current_fp.as_deref() != Some(c.fingerprint.as_str())
            && let Some(f) = c.adds.first()
        {
            let schema = kernel_schema(&f.metadata)?;
            let differences = evolution(state.schema().as_ref(), &schema);
            if !differences.is_empty() {
                return Err(TableError::IncompatibleSchema {
                    name: c.name,
                    differences,
                });
            }
            let metadata = state
                .metadata()
                .clone()
                .with_schema(&schema)
                .and_then(|m| {
                    m.add_config_key(FINGERPRINT_PROPERTY.to_string(), c.fingerprint.clone())
                })
                .map_err(DeltaTableError::from)?;
            actions.push(Action::Metadata(metadata));
        }
        let mode = if c.removes.is_empty() {
            SaveMode::Append
        } else {
            SaveMode::Overwrite
        };
        let operation = DeltaOperation::Write {
            mode,
            partition_by: None,
            predicate: None,
        };
        let props = commit_properties(&c.fingerprint, rows_of(&c.adds), Some(rows_removed));
        let done = CommitBuilder::from(props)
            .with_actions(actions)
            .with_max_retries(0)
            .build(Some(state), table.log_store(), operation)
            .await
            .map_err(|e| conflict_or(e, &c.name, base + 1))?;
        Ok(done.version() as i64)
    }

    /// Rewrites small files into files of about `target_size` bytes (and,
    /// with `zorder` columns, clusters rows by them), as one `OPTIMIZE`
    /// version that removes the old files and adds the new ones with the
    /// same rows. It reads the latest version and commits with delta-rs's
    /// conflict checks, so appends committed meanwhile are kept. `None`
    /// when there was nothing to rewrite.
    pub async fn compact(&self, name: &str, opts: &CompactOptions) -> Result<Option<Compacted>> {
        let Some(table) = self.open(name).await? else {
            return Err(TableError::NoTable {
                name: name.to_string(),
            });
        };
        let columns = table.snapshot()?.schema();
        if let Some(c) = opts
            .zorder
            .iter()
            .find(|c| columns.field(c.as_str()).is_none())
        {
            return Err(TableError::NoSuchColumn {
                name: name.to_string(),
                column: c.clone(),
            });
        }
        let mut builder = table
            .optimize()
            .with_max_concurrent_tasks(opts.concurrency.max(1));
        if let Some(size) = opts.target_size.and_then(std::num::NonZeroU64::new) {
            builder = builder.with_target_size(size);
        }
        if !opts.zorder.is_empty() {
            builder = builder.with_type(
                deltalake_core::operations::optimize::OptimizeType::ZOrder(opts.zorder.clone()),
            );
        }
        let (table, metrics) = builder.await?;
        // Nothing rewritten: nothing was committed.
        if metrics.num_files_added + metrics.num_files_removed == 0 {
            return Ok(None);
        }
        Ok(Some(Compacted {
            version: version_of(&table).unwrap_or(-1),
            files_added: metrics.num_files_added,
            files_removed: metrics.num_files_removed,
        }))
    }

    /// Commits a new version whose files are those of `to` (a `RESTORE`):
    /// history is kept, nothing is deleted. Refused if a file `to` lists is
    /// no longer stored (vacuumed).
    pub async fn restore(&self, name: &str, to: At) -> Result<i64> {
        let Some(table) = self.open(name).await? else {
            return Err(TableError::NoTable {
                name: name.to_string(),
            });
        };
        let latest = version_of(&table).unwrap_or(-1);
        let builder = table.restore();
        let builder = match to {
            At::Latest => return Ok(latest),
            At::Version(v) => {
                if v < 0 || v > latest || !self.has_version(name, v).await? {
                    return Err(TableError::NoSuchVersion {
                        name: name.to_string(),
                        version: v,
                        latest,
                    });
                }
                builder.with_version_to_restore(v as _)
            }
            At::Time(t) => builder.with_datetime_to_restore(t),
        };
        let (table, _metrics) = builder.await?;
        Ok(version_of(&table).unwrap_or(-1))
    }

    /// The table at `at`.
    pub async fn snapshot(&self, name: &str, at: At) -> Result<Snapshot> {
        if let At::Version(v) = at {
            // A past version loads only that version (the latest is needed
            // only to say why a version is missing).
            if v >= 0 && self.has_version(name, v).await? {
                let table = self.builder(name)?.with_version(v as _).load().await?;
                return files_of(name, &table).await;
            }
            return Err(match self.latest(name).await? {
                None => TableError::NoTable {
                    name: name.to_string(),
                },
                Some(latest) => TableError::NoSuchVersion {
                    name: name.to_string(),
                    version: v,
                    latest,
                },
            });
        }
        let table = match at {
            At::Time(t) if self.exists(name).await? => Some(self.at_time(name, t).await?),
            At::Time(_) => None,
            At::Latest | At::Version(_) => self.open(name).await?,
        };
        match table {
            Some(table) => files_of(name, &table).await,
            None => Err(TableError::NoTable {
                name: name.to_string(),
            }),
        }
    }

    async fn at_time(&self, name: &str, t: DateTime<Utc>) -> Result<DeltaTable> {
        match self.builder(name)?.with_timestamp(t).load().await {
            // delta-rs answers its first version for any earlier time: a
            // time before the table's first commit is no version at all.
            Ok(table) => {
                let v = version_of(&table).unwrap_or(0);
                match self.root.head(&Path::from(commit_key(name, v))).await {
                    Ok(meta) if meta.last_modified > t => Err(TableError::BeforeFirstVersion {
                        name: name.to_string(),
                        at: t.to_rfc3339(),
                    }),
                    Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(table),
                    Err(e) => Err(e.into()),
                }
            }
            Err(DeltaTableError::VersionMismatch(..))
            | Err(DeltaTableError::InvalidDateTimeString { .. }) => {
                Err(TableError::BeforeFirstVersion {
                    name: name.to_string(),
                    at: t.to_rfc3339(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The latest `limit` versions, newest first, read from their log
    /// entries (versions whose entry was cleaned up end the list).
    pub async fn history(&self, name: &str, limit: usize) -> Result<Vec<Change>> {
        let Some(latest) = self.latest(name).await? else {
            return Err(TableError::NoTable {
                name: name.to_string(),
            });
        };
        let mut out = Vec::new();
        let mut v = latest;
        while v >= 0 && out.len() < limit {
            let key = Path::from(commit_key(name, v));
            let bytes = match self.root.get(&key).await {
                Ok(r) => r.bytes().await?,
                Err(object_store::Error::NotFound { .. }) => break,
                Err(e) => return Err(e.into()),
            };
            out.push(parse_change(name, v, &bytes)?);
            v -= 1;
        }
        Ok(out)
    }
}

/// Why `new` is not an evolution of `old` (empty when it is): every
/// column of `old` must stay with its type; new ones must be nullable.
pub fn evolution(old: &StructType, new: &StructType) -> Vec<String> {
    let mut out = Vec::new();
    for f in old.fields() {
        match new.field(f.name()) {
            None => out.push(format!("column {:?} is missing", f.name())),
            Some(n) if n.data_type() != f.data_type() => out.push(format!(
                "column {:?} is {} in the table but {} in the new schema",
                f.name(),
                f.data_type(),
                n.data_type()
            )),
            Some(_) => {}
        }
    }
    for n in new.fields() {
        if old.field(n.name()).is_none() && !n.is_nullable() {
            out.push(format!("the new column {:?} is not nullable", n.name()));
        }
    }
    out
}

/// A table's loaded version as ours (`i64`, as Delta's protocol writes it).
fn version_of(t: &DeltaTable) -> Option<i64> {
    t.version().map(|v| v as i64)
}

/// A Delta schema from a Parquet footer.
pub fn kernel_schema(metadata: &ParquetMetaData) -> Result<StructType> {
    let file = metadata.file_metadata();
    let arrow = parquet_to_arrow_schema(file.schema_descr(), file.key_value_metadata())
        .map_err(|e| TableError::UnsupportedSchema(e.to_string()))?;
    arrow_to_kernel(&arrow)
}

/// A Delta schema from an Arrow one; a type Delta cannot store is
/// [`TableError::UnsupportedSchema`] naming the column.
pub fn arrow_to_kernel(schema: &Schema) -> Result<StructType> {
    let mut fields = Vec::with_capacity(schema.fields().len());
    let mut seen = std::collections::HashMap::new();
    for f in schema.fields() {
        // Delta (like Spark) resolves column names ignoring case.
        if let Some(other) = seen.insert(f.name().to_lowercase(), f.name()) {
            return Err(TableError::UnsupportedSchema(format!(
                "columns {other:?} and {:?} differ only in case",
                f.name()
            )));
        }
        let field: deltalake_core::kernel::StructField =
            f.as_ref().try_into_kernel().map_err(|e| {
                TableError::UnsupportedSchema(format!(
                    "column {:?} ({}): {e}",
                    f.name(),
                    f.data_type()
                ))
            })?;
        fields.push(field);
    }
    StructType::try_new(fields).map_err(|e| TableError::UnsupportedSchema(e.to_string()))
}

fn rows_of(files: &[NewFile]) -> u64 {
    files
        .iter()
        .map(|f| u64::try_from(f.metadata.file_metadata().num_rows()).unwrap_or(0))
        .sum()
}

fn commit_properties(
    fingerprint: &str,
    rows_added: u64,
    rows_removed: Option<u64>,
) -> CommitProperties {
    let mut info = vec![
        (FINGERPRINT_PROPERTY.to_string(), Value::from(fingerprint)),
        (INFO_ROWS_ADDED.to_string(), Value::from(rows_added)),
    ];
    if let Some(r) = rows_removed {
        info.push((INFO_ROWS_REMOVED.to_string(), Value::from(r)));
    }
    CommitProperties::default().with_metadata(info)
}

/// A key's path relative to its table's root, as the log stores it.
fn relative(name: &str, key: &str) -> String {
    let file = key
        .strip_prefix(DATASETS_PREFIX)
        .and_then(|k| k.strip_prefix(name))
        .and_then(|k| k.strip_prefix('/'))
        .unwrap_or(key);
    percent_encoding::utf8_percent_encode(file, PATH_ENCODE).to_string()
}

/// What a log path escapes: everything but unreserved characters and `/`.
const PATH_ENCODE: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

fn add_actions(name: &str, files: &[NewFile]) -> Result<Vec<Action>> {
    files
        .iter()
        .map(|f| {
            let add: Add = deltalake_core::writer::stats::create_add(
                &Default::default(),
                relative(name, &f.key),
                f.size as i64,
                &f.metadata,
                delta_kernel::table_properties::DataSkippingNumIndexedCols::NumColumns(
                    STATS_COLUMNS,
                ),
                &None::<Vec<String>>,
            )?;
            Ok(Action::Add(add))
        })
        .collect()
}

fn remove_actions(name: &str, files: &[OldFile]) -> Vec<Action> {
    let now = Utc::now().timestamp_millis();
    files
        .iter()
        .map(|f| {
            Action::Remove(Remove {
                path: relative(name, &f.key),
                data_change: true,
                deletion_timestamp: Some(now),
                extended_file_metadata: Some(true),
                partition_values: Some(HashMap::new()),
                size: Some(f.size as i64),
                tags: None,
                deletion_vector: None,
                base_row_id: None,
                default_row_commit_version: None,
            })
        })
        .collect()
}

/// A failed commit: `Conflict` when another writer took the version.
fn conflict_or(e: DeltaTableError, name: &str, version: i64) -> TableError {
    match e {
        DeltaTableError::VersionAlreadyExists(v) => TableError::Conflict {
            name: name.to_string(),
            version: v as i64,
        },
        DeltaTableError::Transaction { .. } => TableError::Conflict {
            name: name.to_string(),
            version,
        },
        other => other.into(),
    }
}

async fn files_of(name: &str, table: &DeltaTable) -> Result<Snapshot> {
    let state = table.snapshot()?;
    let log_store = table.log_store();
    let views: Vec<_> = state
        .snapshot()
        .file_views(log_store.as_ref(), None)
        .try_collect()
        .await?;
    let mut files: Vec<TableFile> = views
        .iter()
        .map(|f| TableFile {
            key: format!("{DATASETS_PREFIX}{name}/{}", f.path()),
            size: f.size().max(0) as u64,
            rows: f.num_records().map(|n| n as u64),
        })
        .collect();
    files.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(Snapshot {
        version: state.version() as i64,
        files,
        fingerprint: state
            .metadata()
            .configuration()
            .get(FINGERPRINT_PROPERTY)
            .cloned(),
    })
}

/// A history entry from one log entry's bytes (newline-delimited actions).
fn parse_change(name: &str, version: i64, bytes: &[u8]) -> Result<Change> {
    let damaged = |detail: String| TableError::DamagedLog {
        name: name.to_string(),
        version,
        detail,
    };
    let text = std::str::from_utf8(bytes).map_err(|e| damaged(e.to_string()))?;
    let mut change = Change {
        version,
        timestamp: None,
        operation: String::new(),
        mode: None,
        files_added: 0,
        files_removed: 0,
        rows_added: 0,
        rows_removed: None,
        schema_fingerprint: None,
    };
    let mut rows_from_stats = 0u64;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let action: Value = serde_json::from_str(line).map_err(|e| damaged(e.to_string()))?;
        if let Some(info) = action.get("commitInfo") {
            read_commit_info(info, &mut change);
        } else if let Some(add) = action.get("add") {
            change.files_added += 1;
            rows_from_stats += add
                .get("stats")
                .and_then(Value::as_str)
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
                .and_then(|s| s.get("numRecords").and_then(Value::as_u64))
                .unwrap_or(0);
        } else if action.get("remove").is_some() {
            change.files_removed += 1;
        } else if let Some(m) = action.get("metaData") {
            let fp = m.pointer("/configuration/lakehouse.schemaFingerprint");
            if change.schema_fingerprint.is_none() {
                change.schema_fingerprint = fp.and_then(Value::as_str).map(str::to_string);
            }
        }
    }
    if change.rows_added == 0 {
        change.rows_added = rows_from_stats;
    }
    Ok(change)
}

fn read_commit_info(info: &Value, change: &mut Change) {
    change.timestamp = info
        .get("timestamp")
        .and_then(Value::as_i64)
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single());
    change.operation = info
        .get("operation")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    change.mode = info
        .pointer("/operationParameters/mode")
        .and_then(Value::as_str)
        .map(str::to_string);
    change.rows_added = info
        .get(INFO_ROWS_ADDED)
        .and_then(Value::as_u64)
        .unwrap_or(0);
    change.rows_removed = info.get(INFO_ROWS_REMOVED).and_then(Value::as_u64);
    if let Some(fp) = info.get(FINGERPRINT_PROPERTY).and_then(Value::as_str) {
        change.schema_fingerprint = Some(fp.to_string());
    }
}
