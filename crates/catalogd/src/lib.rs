//! catalogd: the lakehouse's dataset catalog, the metadata authority.
//!
//! The catalog names every dataset, its schema fingerprint, its Parquet
//! objects and its row count. The core ([`Registry`]) implements the ADR-020
//! register contract over any `object_store::ObjectStore` and knows nothing of
//! HTTP; [`http::router`] is the HTTP edge and [`CatalogClient`] implements the
//! same [`Catalog`] trait over that HTTP API, so other services use a remote
//! catalog exactly like an in-process one (`Arc<dyn Catalog>`).
//!
//! [`owns`] is the one rule for which objects a dataset may reference and
//! delete; [`validate_name`] the one gate for dataset names. Every service
//! calls these rather than re-deriving them.

pub mod client;
pub mod error;
pub mod fingerprint;
pub mod http;
pub mod manifest;
pub mod name;
pub mod owner;
pub mod registry;
mod tables;
mod vacuum;
pub mod verify;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use client::CatalogClient;
pub use error::{CatalogError, ErrorKind, Result};
pub use lakehouse_table::{At, Change, CompactOptions, Compacted};
pub use manifest::{DATASET_NAMESPACE, MANIFEST_PREFIX, Manifest, ObjectRef, dataset_id_for};
pub use name::{MAX_NAME_LEN, MAX_NAME_SEGMENT_LEN, NameError, manifest_key, validate_name};
pub use owner::{DATASETS_PREFIX, OwnershipError, check_owned, dataset_prefix, owner_of, owns};
pub use registry::{Quarantine, Registry};
pub use verify::ObjectError;

/// `POST /catalog/register`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    pub name: String,
    pub schema_fingerprint: String,
    /// The dataset's objects; they replace the previous list entirely. Each
    /// must be owned by the dataset ([`owns`]) and exist with its `size` as
    /// a Parquet file, else the register is refused (`InvalidObject`).
    #[serde(default)]
    pub objects: Vec<ObjectRef>,
    /// The dataset's row count. When omitted it is the sum of the objects'
    /// `row_count`s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_count: Option<u64>,
    /// Compare-and-swap for read-modify-write updates: the register only
    /// happens if the dataset's current `version` equals this (0 = the
    /// dataset must not exist yet); otherwise `VersionMismatch` (HTTP 412).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u64>,
    /// Schema evolution (`schema=merge`): the fingerprint may differ from
    /// the dataset's when the new schema keeps every column of the table's
    /// with its type and adds nullable ones; otherwise the register is
    /// refused (`SchemaIncompatible`, 409). Without it another fingerprint
    /// is a conflict (ADR-020).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub evolve_schema: bool,
}

impl RegisterRequest {
    pub fn new(
        name: impl Into<String>,
        schema_fingerprint: impl Into<String>,
        objects: Vec<ObjectRef>,
    ) -> Self {
        Self {
            name: name.into(),
            schema_fingerprint: schema_fingerprint.into(),
            objects,
            row_count: None,
            expected_version: None,
            evolve_schema: false,
        }
    }
}

/// The answer to a register: the manifest now in force, and whether the
/// dataset already existed (ADR-020: `false` exactly once per dataset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterResponse {
    pub manifest: Manifest,
    pub existing: bool,
}

/// The answer to a compaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactResponse {
    pub manifest: Manifest,
    /// `None` when there was nothing to rewrite.
    pub compacted: Option<Compacted>,
}

/// Which versions vacuum keeps: the latest `keep_versions` and every one
/// committed within `keep_for_hours` (either is enough). Files written
/// within `grace_secs` are never deleted (an ingest or a compaction may be
/// about to commit them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VacuumPolicy {
    pub keep_versions: u64,
    pub keep_for_hours: u64,
    pub grace_secs: u64,
}

impl Default for VacuumPolicy {
    /// Ten versions and a week (Delta's default retention), an hour's grace.
    fn default() -> Self {
        Self {
            keep_versions: 10,
            keep_for_hours: 7 * 24,
            grace_secs: 3600,
        }
    }
}

/// When the catalog compacts a dataset by itself: after a register that
/// leaves it with at least `auto_after_files` files smaller than
/// `small_file_bytes` (0: never), one compaction at a time per dataset, in
/// the background.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CompactionPolicy {
    pub auto_after_files: u64,
    pub small_file_bytes: u64,
}

impl Default for CompactionPolicy {
    /// Off; "small" is under 8 MiB.
    fn default() -> Self {
        Self {
            auto_after_files: 0,
            small_file_bytes: 8 << 20,
        }
    }
}

/// What a vacuum removed (or, dry, would remove).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VacuumReport {
    pub name: String,
    pub dry_run: bool,
    /// Versions from this one to the latest stay readable.
    pub oldest_kept_version: i64,
    pub latest_version: i64,
    /// The deleted (or deletable) object keys, sorted.
    pub files: Vec<String>,
    pub bytes: u64,
    /// The dataset was dropped: every file it owns goes (but those of
    /// ingests in flight and any within the grace period), then its table's
    /// log; `oldest_kept_version` is past `latest_version` (none is kept).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dropped: bool,
    /// Files a vacuum would remove but for the grace period (written too
    /// recently): a vacuum after `held_until` removes them.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub held_files: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_until: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// `DELETE /catalog/manifest/{name}`: the dataset is gone from the catalog;
/// its files stay until a vacuum removes them, which `vacuum` (a dry run)
/// lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DropResponse {
    pub name: String,
    pub vacuum: VacuumReport,
}

/// `POST /catalog/vacuum/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VacuumRequest {
    #[serde(default)]
    pub dry_run: bool,
}

/// `POST /catalog/restore/{name}`: exactly one of the two.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestoreRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
}

/// The catalog as other services see it: the in-process [`Registry`] or a
/// remote catalogd through [`CatalogClient`].
#[async_trait]
pub trait Catalog: Send + Sync {
    /// ADR-020 idempotent register: create; or, with the same fingerprint,
    /// keep `dataset_id` and `created_at`, replace the objects and bump
    /// `updated_at` and `version`; another fingerprint is a conflict.
    async fn register(&self, req: RegisterRequest) -> Result<RegisterResponse>;
    /// The manifest of `name`, or `NotFound`.
    async fn get(&self, name: &str) -> Result<Manifest>;
    /// `name` as it was at a table version or time: the manifest of that
    /// state (`table_version` says which; `version`, `created_at` and the id
    /// are the dataset's current ones). `At::Latest` is [`Catalog::get`].
    /// `NoSuchVersion` for a version the table never had (or whose log
    /// entry was cleaned up) or a time before it existed; `NoTable` for a
    /// dataset without a table.
    async fn get_at(&self, name: &str, at: At) -> Result<Manifest>;
    /// The latest `limit` versions of `name`'s table, newest first.
    async fn history(&self, name: &str, limit: usize) -> Result<Vec<Change>>;
    /// Rewrites `name`'s small files into large ones (one `OPTIMIZE` table
    /// version with the same rows; appends committed meanwhile are kept) and
    /// returns the manifest after it.
    async fn compact(&self, name: &str, opts: CompactOptions) -> Result<CompactResponse>;
    /// Makes the files of an earlier version current again, as a new
    /// version (`RESTORE`; history is kept); returns the new manifest.
    async fn restore(&self, name: &str, to: At) -> Result<Manifest>;
    /// Records in `name`'s manifest the latest version of its table's log,
    /// if the log is past it (a SQL statement commits its version through
    /// delta-rs, then calls this); returns the manifest.
    async fn sync(&self, name: &str) -> Result<Manifest>;
    /// Deletes the files of `name` that no kept version lists (the
    /// catalog's [`VacuumPolicy`]), except those of ingests in flight and
    /// any written within the grace period; with `dry_run`, only says which.
    async fn vacuum(&self, name: &str, dry_run: bool) -> Result<VacuumReport>;
    /// Every manifest, sorted by name.
    async fn list(&self) -> Result<Vec<Manifest>>;
    /// Drops `name`: removes its manifest and says what a vacuum of the
    /// name will then remove (its files stay until one runs: `POST
    /// /catalog/vacuum/<name>`); `Ok(None)` if there was no manifest.
    async fn drop_dataset(&self, name: &str) -> Result<Option<VacuumReport>>;
    /// [`Catalog::drop_dataset`], saying only whether there was a manifest.
    async fn delete(&self, name: &str) -> Result<bool> {
        Ok(self.drop_dataset(name).await?.is_some())
    }
}
