//! The ingest core: body stream → Parquet objects → one catalog registration.
//!
//! Failure leaves nothing behind: objects are written under a fresh
//! `datasets/<name>/<ingest-id>-NNNNN.parquet` prefix and are referenced by
//! nothing until the catalog registration succeeds; any failure before that
//! deletes them. A journal at `_ingest/inflight/<ingest-id>.json` names the
//! prefix while the ingest runs, so objects of an ingest killed mid-way are
//! deleted at the next start ([`Ingestor::recover`]).
//!
//! What may be deleted, and by whom: an append deletes nothing but its own
//! uploads that it did not register; a replace keeps the old objects when
//! the dataset has a table (its earlier versions list them) and otherwise
//! deletes them only after the new manifest is registered, and only those the dataset owns
//! ([`lakehouse_catalogd::owns`]) that no manifest — its own new one or any
//! other, quarantined ones included — lists; recovery deletes the objects of
//! an unregistered ingest under the same two rules. So no request can delete
//! another dataset's data, a manifest, a vector log or snapshot, whatever
//! the manifests it starts from say.
//!
//! Appends read-modify-write the manifest with `expected_version`
//! (compare-and-swap), retrying when another writer got there first, so
//! concurrent appends all land. `Idempotency-Key`s are recorded in the store
//! (`_ingest/idempotency/…`) before the data is written and marked done after
//! the registration, so a retry returns the first result and never adds the
//! data twice, across restarts too.
//!
//! Modules: [`journal`] (in-flight journal, recovery, the deletion rules),
//! [`idempotency`], [`pipeline`] (decode → encode → upload), [`commit`]
//! (registration with compare-and-swap, confirmation of a lost answer).

mod commit;
mod idempotency;
mod journal;
mod pipeline;

use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use futures::Stream;
use lakehouse_catalogd::{
    Catalog, CatalogError, ErrorKind, Manifest, ObjectRef, dataset_prefix, owns,
};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use serde::{Deserialize, Serialize};

use crate::error::IngestError;
use crate::options::{IngestOptions, Mode};
use crate::sniff::CsvReport;
use crate::writer::WriterConfig;
use journal::Inflight;

const INFLIGHT_PREFIX: &str = "_ingest/inflight/";
const IDEMPOTENCY_PREFIX: &str = "_ingest/idempotency/";
/// Compare-and-swap attempts before giving up on a busy dataset.
const MAX_CAS_ATTEMPTS: usize = 64;

/// `[ingestd]` settings the core needs.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Where Parquet / Arrow-file uploads are spooled before reading.
    pub spool_dir: PathBuf,
    pub writer: WriterConfig,
}

/// What an ingest did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestResult {
    pub dataset: String,
    pub mode: Mode,
    /// Rows this request added.
    pub rows: u64,
    /// Objects this request wrote.
    pub objects: Vec<ObjectRef>,
    /// The dataset after the ingest.
    pub manifest: Manifest,
    /// True when this is the stored result of an earlier request with the
    /// same `Idempotency-Key`.
    #[serde(default)]
    pub replayed: bool,
    /// How a CSV body was read: detected or given dialect, header, renames.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csv: Option<CsvReport>,
}

pub struct Ingestor {
    store: Arc<dyn ObjectStore>,
    catalog: Arc<dyn Catalog>,
    cfg: IngestConfig,
    /// Serialises requests that share an idempotency key (striped).
    idem_locks: Box<[tokio::sync::Mutex<()>]>,
}

/// What the writer names an ingest's objects after: `<prefix>-NNNNN.parquet`.
fn object_prefix(dataset: &str, ingest_id: &str) -> String {
    format!("{}{ingest_id}", dataset_prefix(dataset))
}

/// Whether `key` is one of the objects of ingest `ingest_id` into `dataset`.
fn is_ingest_object(dataset: &str, ingest_id: &str, key: &str) -> bool {
    owns(dataset, key)
        && key
            .strip_prefix(&object_prefix(dataset, ingest_id))
            .is_some_and(|rest| rest.starts_with('-'))
}

fn path(key: &str) -> Result<Path, IngestError> {
    Path::parse(key).map_err(|e| IngestError::Internal(format!("object key {key:?}: {e}")))
}

fn catalog_err(e: CatalogError) -> IngestError {
    match e.kind() {
        ErrorKind::InvalidName => IngestError::InvalidName(e.to_string()),
        ErrorKind::Quarantined => IngestError::Quarantined(e.to_string()),
        _ => IngestError::Catalog(Box::new(e)),
    }
}

/// How many of a dataset's newest objects are read for its schema.
const SCHEMA_PROBES: usize = 16;

impl Ingestor {
    pub fn new(store: Arc<dyn ObjectStore>, catalog: Arc<dyn Catalog>, cfg: IngestConfig) -> Self {
        Self {
            store,
            catalog,
            cfg,
            idem_locks: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }

    /// The schema of the dataset's data, from one object's Parquet footer.
    /// The dataset's schema: that of its newest object with the manifest's
    /// fingerprint (after a schema evolution, older objects lack the new
    /// columns); the newest object's when none has it.
    async fn dataset_schema(&self, m: &Manifest) -> Result<Option<SchemaRef>, IngestError> {
        let (mut newest, mut failed) = (None, None);
        // A fingerprint no object has (one a client computed its own way)
        // must not cost a footer per object on every ingest. Only the
        // dataset's own objects tell its schema.
        let own = m
            .objects
            .iter()
            .rev()
            .filter(|o| lakehouse_catalogd::owns(&m.name, &o.key));
        for obj in own.take(SCHEMA_PROBES) {
            let schema = match read_parquet_schema(self.store.as_ref(), &obj.key, obj.size).await {
                Ok(s) => s,
                Err(e) => {
                    failed.get_or_insert(e);
                    continue;
                }
            };
            if crate::fingerprint::fingerprint(&schema) == m.schema_fingerprint {
                return Ok(Some(schema));
            }
            newest.get_or_insert(schema);
        }
        match (newest, failed) {
            (None, Some(e)) => Err(e),
            (newest, _) => Ok(newest),
        }
    }

    async fn current(&self, dataset: &str) -> Result<Option<Manifest>, IngestError> {
        match self.catalog.get(dataset).await {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(catalog_err(e)),
        }
    }

    /// Ingests `body` into `dataset`.
    pub async fn ingest<S, E>(
        &self,
        dataset: &str,
        opts: IngestOptions,
        body: S,
        idempotency_key: Option<&str>,
    ) -> Result<IngestResult, IngestError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        lakehouse_catalogd::validate_name(dataset)
            .map_err(|e| IngestError::InvalidName(format!("{dataset:?}: {e}")))?;
        match idempotency_key {
            None => self.ingest_once(dataset, opts, body, None).await,
            Some(key) => self.ingest_idempotent(dataset, opts, body, key).await,
        }
    }

    async fn put_json<T: Serialize>(&self, p: &Path, v: &T) -> Result<(), IngestError> {
        let body = serde_json::to_vec(v).map_err(|e| IngestError::Internal(e.to_string()))?;
        self.store
            .put_opts(p, PutPayload::from(body), PutMode::Overwrite.into())
            .await?;
        Ok(())
    }

    async fn ingest_once<S, E>(
        &self,
        dataset: &str,
        opts: IngestOptions,
        body: S,
        ingest_id: Option<String>,
    ) -> Result<IngestResult, IngestError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let prior = self.current(dataset).await?;
        let target = match &prior {
            Some(m) => self.dataset_schema(m).await?,
            None => None,
        };
        let ingest_id = ingest_id.unwrap_or_else(new_ingest_id);
        let journal = path(&format!("{INFLIGHT_PREFIX}{ingest_id}.json"))?;
        self.put_json(
            &journal,
            &Inflight {
                dataset: dataset.to_string(),
                ingest_id: ingest_id.clone(),
            },
        )
        .await?;

        let written = self
            .write_objects(dataset, &ingest_id, opts.clone(), target.clone(), body)
            .await;
        let result = match written {
            Ok((schema, objects, csv)) => {
                let registered = self
                    .register(dataset, &opts, &schema, &objects)
                    .await
                    .map(|r| IngestResult { csv, ..r });
                match &registered {
                    // Maybe referenced: keep the objects and the journal.
                    Err(IngestError::Unconfirmed { .. }) => return registered,
                    Err(_) => {
                        let keys: Vec<String> = objects.iter().map(|o| o.key.clone()).collect();
                        self.delete_own_uploads(dataset, &keys).await;
                    }
                    Ok(_) => {}
                }
                registered
            }
            Err((e, keys)) => {
                self.delete_own_uploads(dataset, &keys).await;
                Err(e)
            }
        };
        if let Err(e) = self.store.delete(&journal).await {
            tracing::warn!(error = %e, journal = %journal, "could not remove the ingest journal");
        }
        result
    }
}

fn new_ingest_id() -> String {
    // Time-ordered, so a dataset's objects list in ingest order.
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!(
        "{t:013x}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Reads a Parquet file's Arrow schema with one suffix GET (two if the
/// footer is larger than the first guess).
pub async fn read_parquet_schema(
    store: &dyn ObjectStore,
    key: &str,
    size: u64,
) -> Result<SchemaRef, IngestError> {
    use parquet::errors::ParquetError;
    use parquet::file::metadata::ParquetMetaDataReader;
    let p = path(key)?;
    let bad = |e: ParquetError| IngestError::Internal(format!("reading the footer of {key}: {e}"));
    let mut want = size.min(64 * 1024);
    loop {
        let bytes = store.get_range(&p, size - want..size).await?;
        let mut reader = ParquetMetaDataReader::new();
        match reader.try_parse_sized(&bytes, size) {
            Ok(()) => {
                let md = reader.finish().map_err(bad)?;
                let fm = md.file_metadata();
                let schema = parquet::arrow::parquet_to_arrow_schema(
                    fm.schema_descr(),
                    fm.key_value_metadata(),
                )
                .map_err(bad)?;
                return Ok(Arc::new(schema));
            }
            Err(ParquetError::NeedMoreData(n)) if (n as u64) > want && (n as u64) <= size => {
                want = n as u64
            }
            Err(e) => return Err(bad(e)),
        }
    }
}
