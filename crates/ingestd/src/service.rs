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
//! uploads that it did not register; a replace deletes the old objects only
//! after the new manifest is registered, and only those the dataset owns
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

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use lakehouse_catalogd::{
    Catalog, CatalogError, ErrorKind, Manifest, ObjectRef, RegisterRequest, dataset_prefix, owns,
};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::decode::{self, normalize_batch};
use crate::error::IngestError;
use crate::fingerprint::{differences, fingerprint};
use crate::options::{IngestOptions, Mode};
use crate::sniff::CsvReport;
use crate::writer::{DatasetWriter, WriterConfig, WrittenObject};

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

#[derive(Debug, Serialize, Deserialize)]
struct Inflight {
    dataset: String,
    ingest_id: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
enum IdempotencyRecord {
    Pending { dataset: String, ingest_id: String },
    Done { result: Box<IngestResult> },
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

impl Ingestor {
    pub fn new(store: Arc<dyn ObjectStore>, catalog: Arc<dyn Catalog>, cfg: IngestConfig) -> Self {
        Self {
            store,
            catalog,
            cfg,
            idem_locks: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }

    /// Deletes the objects of ingests that were interrupted (crash, kill -9)
    /// before they registered. Run once at start-up, before serving.
    pub async fn recover(&self) -> Result<usize, IngestError> {
        let mut journals = self
            .store
            .list(Some(&path(INFLIGHT_PREFIX.trim_end_matches('/'))?));
        let mut found = Vec::new();
        while let Some(m) = journals.next().await {
            found.push(m?.location);
        }
        let mut cleaned = 0;
        for loc in found {
            let bytes = self.store.get(&loc).await?.bytes().await?;
            let Ok(j) = serde_json::from_slice::<Inflight>(&bytes) else {
                tracing::warn!(key = %loc, "ignoring an unreadable ingest journal");
                continue;
            };
            let registered = match self.catalog.get(&j.dataset).await {
                Ok(m) => m
                    .objects
                    .iter()
                    .any(|o| is_ingest_object(&j.dataset, &j.ingest_id, &o.key)),
                Err(e) if e.kind() == ErrorKind::NotFound => false,
                Err(e) if e.kind() == ErrorKind::Quarantined => {
                    // Cannot tell; keep the objects and the journal for an
                    // admin (or a later start) to settle.
                    tracing::warn!(key = %loc, error = %e, "keeping the journal of an ingest into a quarantined dataset");
                    continue;
                }
                Err(e) => return Err(catalog_err(e)),
            };
            if !registered {
                let keys = self.ingest_objects(&j.dataset, &j.ingest_id).await?;
                tracing::info!(dataset = %j.dataset, ingest = %j.ingest_id, objects = keys.len(), "removing the objects of an interrupted ingest");
                if !self.delete_unreferenced(&j.dataset, keys).await {
                    // Not known to be safe yet: keep the journal to retry.
                    continue;
                }
                cleaned += 1;
            }
            self.store.delete(&loc).await?;
        }
        Ok(cleaned)
    }

    /// The stored objects of ingest `ingest_id` into `dataset` (by name:
    /// they may or may not be registered).
    async fn ingest_objects(
        &self,
        dataset: &str,
        ingest_id: &str,
    ) -> Result<Vec<String>, IngestError> {
        let dir = dataset_prefix(dataset);
        let mut s = self.store.list(Some(&path(dir.trim_end_matches('/'))?));
        let mut keys = Vec::new();
        while let Some(m) = s.next().await {
            let k = m?.location.as_ref().to_string();
            if is_ingest_object(dataset, ingest_id, &k) {
                keys.push(k);
            }
        }
        Ok(keys)
    }

    /// Deletes this request's own uploads into `dataset` (never registered).
    /// Keys the dataset does not own are never deleted, whoever asks.
    async fn delete_own_uploads(&self, dataset: &str, keys: &[String]) {
        for k in keys {
            if !owns(dataset, k) {
                tracing::error!(%dataset, key = %k, "refusing to delete an object the dataset does not own");
                continue;
            }
            if let Ok(p) = path(k)
                && let Err(e) = self.store.delete(&p).await
                && !matches!(e, object_store::Error::NotFound { .. })
            {
                tracing::warn!(key = %k, error = %e, "could not delete an object; it is unreferenced");
            }
        }
    }

    /// Deletes those of `keys` that `dataset` owns and that no manifest
    /// lists (every manifest is read: defence in depth against manifests
    /// that list other datasets' objects). Returns false, deleting nothing,
    /// when the catalog cannot say what is referenced.
    async fn delete_unreferenced(&self, dataset: &str, keys: Vec<String>) -> bool {
        let manifests = match self.catalog.list().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(%dataset, error = %e, objects = keys.len(), "not deleting: the catalog cannot say which objects are referenced");
                return false;
            }
        };
        let referenced: HashSet<&str> = manifests
            .iter()
            .flat_map(|m| m.objects.iter().map(|o| o.key.as_str()))
            .collect();
        let (kept, doomed): (Vec<String>, Vec<String>) = keys
            .into_iter()
            .partition(|k| referenced.contains(k.as_str()) || !owns(dataset, k));
        if !kept.is_empty() {
            tracing::warn!(%dataset, kept = ?kept, "not deleting objects that a manifest lists or that the dataset does not own");
        }
        self.delete_own_uploads(dataset, &doomed).await;
        true
    }

    /// The schema of the dataset's data, from one object's Parquet footer.
    async fn dataset_schema(&self, m: &Manifest) -> Result<Option<SchemaRef>, IngestError> {
        let Some(obj) = m.objects.first() else {
            return Ok(None);
        };
        read_parquet_schema(self.store.as_ref(), &obj.key, obj.size)
            .await
            .map(Some)
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
        let Some(key) = idempotency_key else {
            return self.ingest_once(dataset, opts, body, None).await;
        };
        if key.is_empty() || key.len() > 256 {
            return Err(IngestError::InvalidOption(
                "Idempotency-Key must be 1 to 256 characters".to_string(),
            ));
        }
        let mut h = Sha256::new();
        h.update(dataset.as_bytes());
        h.update([0]);
        h.update(key.as_bytes());
        let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let record_path = path(&format!("{IDEMPOTENCY_PREFIX}{digest}.json"))?;
        let stripe =
            u64::from_str_radix(&digest[..8], 16).unwrap_or(0) as usize % self.idem_locks.len();
        let _guard = self.idem_locks[stripe].lock().await;

        let previous = match self.store.get(&record_path).await {
            Ok(r) => Some(
                serde_json::from_slice::<IdempotencyRecord>(&r.bytes().await?).map_err(|e| {
                    IngestError::Internal(format!("corrupt idempotency record {record_path}: {e}"))
                })?,
            ),
            Err(object_store::Error::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        match previous {
            Some(IdempotencyRecord::Done { mut result }) => {
                result.replayed = true;
                return Ok(*result);
            }
            Some(IdempotencyRecord::Pending {
                dataset: d,
                ingest_id,
            }) => {
                // The first attempt stopped part-way. Did it register?
                if let Some(m) = self.current(&d).await? {
                    let objects: Vec<ObjectRef> = m
                        .objects
                        .iter()
                        .filter(|o| is_ingest_object(&d, &ingest_id, &o.key))
                        .cloned()
                        .collect();
                    if !objects.is_empty() {
                        let result = IngestResult {
                            dataset: d,
                            mode: opts.mode,
                            rows: objects.iter().map(|o| o.row_count).sum(),
                            objects,
                            manifest: m,
                            replayed: true,
                            csv: None,
                        };
                        self.put_json(
                            &record_path,
                            &IdempotencyRecord::Done {
                                result: Box::new(result.clone()),
                            },
                        )
                        .await?;
                        return Ok(result);
                    }
                }
                // It did not: its objects (if any) are orphans; try again.
                let keys = self.ingest_objects(&d, &ingest_id).await?;
                self.delete_unreferenced(&d, keys).await;
            }
            None => {}
        }
        let ingest_id = new_ingest_id();
        self.put_json(
            &record_path,
            &IdempotencyRecord::Pending {
                dataset: dataset.to_string(),
                ingest_id: ingest_id.clone(),
            },
        )
        .await?;
        match self.ingest_once(dataset, opts, body, Some(ingest_id)).await {
            Ok(result) => {
                self.put_json(
                    &record_path,
                    &IdempotencyRecord::Done {
                        result: Box::new(result.clone()),
                    },
                )
                .await?;
                Ok(result)
            }
            // Maybe registered: keep the pending record, so a retry with
            // this key looks at the manifest instead of ingesting again.
            Err(e @ IngestError::Unconfirmed { .. }) => Err(e),
            Err(e) => {
                // Nothing was registered: forget the key so a retry runs afresh.
                let _ = self.store.delete(&record_path).await;
                Err(e)
            }
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

    /// Runs the decode → encode → upload pipeline. On failure, returns the
    /// keys of objects already written so the caller can delete them.
    async fn write_objects<S, E>(
        &self,
        dataset: &str,
        ingest_id: &str,
        opts: IngestOptions,
        target: Option<SchemaRef>,
        body: S,
    ) -> Result<Written, (IngestError, Vec<String>)>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        let (chunk_tx, mut chunk_rx) = mpsc::channel::<Result<Bytes, IngestError>>(16);
        // Pump the body into the decode thread.
        let pump = tokio::spawn(async move {
            let mut body = std::pin::pin!(body);
            while let Some(c) = body.next().await {
                let item = c.map_err(|e| IngestError::Body(e.to_string()));
                let failed = item.is_err();
                if chunk_tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });

        let store = self.store.clone();
        let rt = tokio::runtime::Handle::current();
        let prefix = object_prefix(dataset, ingest_id);
        let spool = self.cfg.spool_dir.clone();
        let wcfg = self.cfg.writer.clone();
        let dataset_name = dataset.to_string();
        let res = tokio::task::spawn_blocking(move || {
            pipeline(
                &mut chunk_rx,
                opts,
                target,
                &spool,
                store,
                rt,
                prefix,
                wcfg,
                &dataset_name,
            )
        })
        .await;
        pump.abort();
        match res {
            Ok(r) => r,
            Err(e) => Err((
                IngestError::Internal(format!("ingest task failed: {e}")),
                vec![],
            )),
        }
    }

    /// Registers the new objects: append = read-modify-write with CAS on
    /// `version`; replace = swap the object list, then delete the old objects.
    async fn register(
        &self,
        dataset: &str,
        opts: &IngestOptions,
        schema: &SchemaRef,
        objects: &[WrittenObject],
    ) -> Result<IngestResult, IngestError> {
        let fp = fingerprint(schema);
        let new: Vec<ObjectRef> = objects
            .iter()
            .map(|o| ObjectRef {
                key: o.key.clone(),
                size: o.size,
                row_count: o.row_count,
            })
            .collect();
        for attempt in 0..MAX_CAS_ATTEMPTS {
            let prior = self.current(dataset).await?;
            if let Some(p) = &prior
                && p.schema_fingerprint != fp
            {
                let have = self.dataset_schema(p).await?;
                let differences = match have {
                    Some(h) => differences(&h, schema),
                    None => vec!["the dataset has another schema".to_string()],
                };
                return Err(IngestError::SchemaMismatch {
                    dataset: dataset.to_string(),
                    differences,
                });
            }
            let (all, old): (Vec<ObjectRef>, Vec<ObjectRef>) = match (opts.mode, &prior) {
                // An append adds its objects and never drops (or deletes)
                // one the manifest lists, whatever its stated row count. A
                // new object without rows only records the schema, which the
                // dataset already has, so it is not added.
                (Mode::Append, Some(p)) if !p.objects.is_empty() => {
                    let mut all = p.objects.clone();
                    all.extend(new.iter().filter(|o| o.row_count > 0).cloned());
                    (all, vec![])
                }
                (Mode::Replace, Some(p)) => (new.clone(), p.objects.clone()),
                _ => (new.clone(), vec![]),
            };
            let req = RegisterRequest {
                name: dataset.to_string(),
                schema_fingerprint: fp.clone(),
                objects: all,
                row_count: None,
                expected_version: Some(prior.as_ref().map_or(0, |p| p.version)),
            };
            let sent: Vec<String> = req.objects.iter().map(|o| o.key.clone()).collect();
            let outcome = match self.catalog.register(req).await {
                Ok(resp) => Ok(resp.manifest),
                // The request may have been applied before the catalog (or
                // the connection) died: find out before anything is deleted.
                Err(e) if matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Internal) => {
                    match self.confirm(dataset, &sent, &new).await {
                        Confirmed::Yes(m) => Ok(m),
                        Confirmed::No => Err(e),
                        Confirmed::Unknown(detail) => {
                            return Err(IngestError::Unconfirmed {
                                dataset: dataset.to_string(),
                                detail,
                            });
                        }
                    }
                }
                Err(e) => Err(e),
            };
            match outcome {
                Ok(manifest) => {
                    let sent: HashSet<&str> = sent.iter().map(String::as_str).collect();
                    let (added, unused): (Vec<ObjectRef>, Vec<ObjectRef>) = new
                        .iter()
                        .cloned()
                        .partition(|o| sent.contains(o.key.as_str()));
                    // Only now are the old data (replace) and the unused new
                    // objects unreferenced — unless a manifest still lists
                    // them, which `delete_unreferenced` checks.
                    let doomed: Vec<String> = old
                        .into_iter()
                        .chain(unused)
                        .map(|o| o.key)
                        .filter(|k| !sent.contains(k.as_str()))
                        .collect();
                    if !doomed.is_empty() {
                        self.delete_unreferenced(dataset, doomed).await;
                    }
                    return Ok(IngestResult {
                        dataset: dataset.to_string(),
                        mode: opts.mode,
                        rows: added.iter().map(|o| o.row_count).sum(),
                        objects: added,
                        manifest,
                        replayed: false,
                        csv: None,
                    });
                }
                Err(e) if e.kind() == ErrorKind::VersionMismatch => {
                    // Another writer registered first: re-read and retry.
                    tokio::time::sleep(Duration::from_millis((attempt as u64 + 1).min(20))).await;
                    continue;
                }
                Err(e) if e.kind() == ErrorKind::FingerprintConflict => {
                    return Err(IngestError::SchemaMismatch {
                        dataset: dataset.to_string(),
                        differences: vec![e.to_string()],
                    });
                }
                Err(e) => return Err(catalog_err(e)),
            }
        }
        Err(IngestError::Contended(dataset.to_string()))
    }
}

/// Whether a registration whose answer was lost took effect.
enum Confirmed {
    Yes(Manifest),
    No,
    Unknown(String),
}

/// How long an ingest waits for an unreachable catalog to say whether its
/// registration took effect.
const CONFIRM_FOR: Duration = Duration::from_secs(10);

impl Ingestor {
    /// Reads the manifest back until the catalog answers: registered when it
    /// lists exactly the objects sent (or every new one of them).
    async fn confirm(&self, dataset: &str, sent: &[String], new: &[ObjectRef]) -> Confirmed {
        let deadline = tokio::time::Instant::now() + CONFIRM_FOR;
        let mut delay = Duration::from_millis(50);
        loop {
            match self.catalog.get(dataset).await {
                Ok(m) => {
                    let has = |k: &String| m.objects.iter().any(|o| &o.key == k);
                    let ours: Vec<&String> = sent
                        .iter()
                        .filter(|k| new.iter().any(|n| &n.key == *k))
                        .collect();
                    let applied = if ours.is_empty() {
                        m.objects.len() == sent.len() && sent.iter().all(has)
                    } else {
                        ours.into_iter().all(has)
                    };
                    return if applied {
                        Confirmed::Yes(m)
                    } else {
                        Confirmed::No
                    };
                }
                Err(e) if e.kind() == ErrorKind::NotFound => return Confirmed::No,
                Err(e) => {
                    if tokio::time::Instant::now() + delay > deadline {
                        return Confirmed::Unknown(e.to_string());
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
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

/// What the pipeline produced: the schema, the objects, how a CSV was read.
type Written = (SchemaRef, Vec<WrittenObject>, Option<CsvReport>);

/// Decode on a second thread, encode and upload on this one.
#[allow(clippy::too_many_arguments)]
fn pipeline(
    chunks: &mut mpsc::Receiver<Result<Bytes, IngestError>>,
    opts: IngestOptions,
    target: Option<SchemaRef>,
    spool: &std::path::Path,
    store: Arc<dyn ObjectStore>,
    rt: tokio::runtime::Handle,
    prefix: String,
    wcfg: WriterConfig,
    dataset: &str,
) -> Result<Written, (IngestError, Vec<String>)> {
    enum Item {
        Batch(RecordBatch),
        Done(SchemaRef, Option<CsvReport>),
    }
    let (batch_tx, batch_rx) = std::sync::mpsc::sync_channel::<Result<Item, IngestError>>(4);
    let target_for_decode = target.clone();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let stop = &stop;
        let decoder_thread = scope.spawn(move || {
            let send = |item| batch_tx.send(item).is_ok();
            let mut dec = decode::decoder(&opts, target_for_decode, spool);
            let mut out = Vec::new();
            while let Some(chunk) = chunks.blocking_recv() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let res = chunk.and_then(|c| dec.push(&c, &mut out));
                if let Err(e) = res {
                    send(Err(e));
                    return;
                }
                for b in out.drain(..) {
                    if !send(Ok(Item::Batch(b))) {
                        return;
                    }
                }
            }
            match dec.finish() {
                Err(e) => {
                    send(Err(e));
                }
                Ok(f) => {
                    for b in f.batches {
                        if !send(b.map(Item::Batch)) {
                            return;
                        }
                    }
                    send(Ok(Item::Done(f.schema, f.csv)));
                }
            }
        });

        let mut writer: Option<DatasetWriter> = None;
        let mut schema: Option<SchemaRef> = None;
        let fail = |e: IngestError, writer: Option<DatasetWriter>| {
            (e, writer.map(|w| w.abort()).unwrap_or_default())
        };
        let result = loop {
            let item = match batch_rx.recv() {
                Ok(i) => i,
                Err(_) => {
                    break Err(fail(
                        IngestError::Internal("the decoder stopped".into()),
                        writer.take(),
                    ));
                }
            };
            match item {
                Err(e) => break Err(fail(e, writer.take())),
                Ok(Item::Batch(b)) => {
                    if writer.is_none() {
                        let s = decode::normalize_schema(&b.schema());
                        if let Err(e) = same_schema(dataset, target.as_ref(), &s) {
                            break Err(fail(e, None));
                        }
                        match DatasetWriter::new(
                            store.clone(),
                            rt.clone(),
                            prefix.clone(),
                            s.clone(),
                            wcfg.clone(),
                        ) {
                            Ok(w) => writer = Some(w),
                            Err(e) => break Err(fail(e, None)),
                        }
                        schema = Some(s);
                    }
                    let s = schema.as_ref().expect("set with the writer");
                    let res = normalize_batch(b, s).and_then(|b| match writer.as_mut() {
                        Some(w) => w.write(&b),
                        None => Ok(()),
                    });
                    if let Err(e) = res {
                        break Err(fail(e, writer.take()));
                    }
                }
                Ok(Item::Done(s, csv)) => {
                    let s = schema
                        .clone()
                        .unwrap_or_else(|| decode::normalize_schema(&s));
                    if let Err(e) = same_schema(dataset, target.as_ref(), &s) {
                        break Err(fail(e, writer.take()));
                    }
                    let mut w = match writer.take() {
                        Some(w) => w,
                        None => match DatasetWriter::new(
                            store.clone(),
                            rt.clone(),
                            prefix.clone(),
                            s.clone(),
                            wcfg.clone(),
                        ) {
                            Ok(w) => w,
                            Err(e) => break Err(fail(e, None)),
                        },
                    };
                    match w.finish() {
                        Ok(objs) => break Ok((s, objs, csv)),
                        Err(e) => break Err(fail(e, Some(w))),
                    }
                }
            }
        };
        // Stop the decoder early (it may be waiting for more of the body).
        stop.store(true, Ordering::SeqCst);
        drop(batch_rx);
        let _ = decoder_thread.join();
        result
    })
}

/// Fails fast when the input's schema is not the dataset's.
fn same_schema(
    dataset: &str,
    target: Option<&SchemaRef>,
    got: &SchemaRef,
) -> Result<(), IngestError> {
    match target {
        Some(t) if fingerprint(t) != fingerprint(got) => Err(IngestError::SchemaMismatch {
            dataset: dataset.to_string(),
            differences: differences(t, got),
        }),
        _ => Ok(()),
    }
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
