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
pub mod http;
pub mod manifest;
pub mod name;
pub mod owner;
pub mod registry;
pub mod verify;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use client::CatalogClient;
pub use error::{CatalogError, ErrorKind, Result};
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
    /// Every manifest, sorted by name.
    async fn list(&self) -> Result<Vec<Manifest>>;
    /// Removes `name`'s manifest; `Ok(false)` if there was none.
    async fn delete(&self, name: &str) -> Result<bool>;
}
