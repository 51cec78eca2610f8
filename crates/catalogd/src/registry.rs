//! The registry: the in-memory catalog index over persisted manifests, and
//! the ADR-020 register contract.
//!
//! Two locks, with different jobs:
//! - `write` (a tokio mutex) serializes every mutation across
//!   lookup → check → persist → swap, so two registers of one name can never
//!   both see "absent" (the old Rust version wrote 308 duplicate manifests).
//!   It is the only lock ever held across I/O.
//! - `map` (a `parking_lot::RwLock`) holds the index and is only taken for a
//!   lookup or a pointer swap, so `get`/`list` never wait on storage.
//!
//! Memory changes only after the persist succeeded (candidate-then-swap): a
//! failed write leaves the previous manifest in force, on disk and in memory.
//! Mutations run on a spawned task so a caller that goes away mid-write (a
//! dropped HTTP request) cannot leave the object written but memory stale.
//!
//! A register references only objects the dataset owns
//! ([`crate::owner`]) that exist with the stated size and end like Parquet
//! ([`crate::verify`]). Objects the dataset's current manifest already lists
//! with the same size were checked when they were registered and are not
//! fetched again, so an append costs checks for its new objects only. The
//! checks run before the write lock is taken; only objects that a register
//! committed in between made necessary are checked under it.
//!
//! Stored manifests are untrusted at start-up: one that decodes but lists a
//! key its dataset does not own (another dataset's file, an internal key,
//! `../../etc/passwd`) is loaded *quarantined*: it is listed, but `get`
//! refuses it ([`CatalogError::Quarantined`]), so no service reads or
//! deletes through it, until an admin deletes it or it is registered again.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parking_lot::RwLock;

use crate::error::{CatalogError, Result, truncate_for_message};
use crate::manifest::{
    CodecError, MANIFEST_PREFIX, Manifest, ObjectRef, dataset_id_for, now_micros,
};
use crate::name::{manifest_key, name_from_key, validate_name};
use crate::owner::{OwnershipError, check_owned};
use crate::verify::{Footers, ObjectError, verify_objects};
use crate::{
    At, Catalog, Change, CompactOptions, CompactResponse, CompactionPolicy, RegisterRequest,
    RegisterResponse, VacuumPolicy, VacuumReport,
};
use lakehouse_table::Tables;

/// Manifests fetched and decoded at once during rehydrate.
const REHYDRATE_CONCURRENCY: usize = 32;

/// Largest stored manifest read at start-up. A register body is capped at
/// 4 MiB of JSON, whose manifest is smaller; anything far larger is not one
/// of ours and is not read into memory.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;

/// The in-process catalog. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) store: Arc<dyn ObjectStore>,
    /// Every dataset's Delta table, in the same store.
    pub(crate) tables: Tables,
    pub(crate) write: tokio::sync::Mutex<()>,
    pub(crate) vacuum: RwLock<VacuumPolicy>,
    compaction: RwLock<CompactionPolicy>,
    /// Datasets with an automatic compaction running.
    compacting: parking_lot::Mutex<HashSet<String>>,
    pub(crate) map: RwLock<BTreeMap<String, Arc<Entry>>>,
}

/// One dataset in the index.
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) manifest: Manifest,
    /// Set when a stored manifest lists an object its dataset does not own.
    pub(crate) quarantine: Option<Quarantine>,
}

/// Why a stored manifest is not served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quarantine {
    /// The first listed key the dataset does not own.
    pub object: String,
    pub reason: OwnershipError,
}

impl Entry {
    pub(crate) fn trusted(manifest: Manifest) -> Arc<Self> {
        Arc::new(Self {
            manifest,
            quarantine: None,
        })
    }

    /// The objects whose checks a register may skip: those of a manifest
    /// that is not quarantined, by key and size.
    fn verified(&self) -> HashSet<(&str, u64)> {
        match self.quarantine {
            Some(_) => HashSet::new(),
            None => self
                .manifest
                .objects
                .iter()
                .map(|o| (o.key.as_str(), o.size))
                .collect(),
        }
    }
}

impl Registry {
    /// Loads every manifest under `_catalog/manifests/` and returns the
    /// registry over them. Fails on the first manifest that cannot be read
    /// or decoded, naming its key: a half-loaded catalog would silently
    /// lose datasets.
    ///
    /// The load happens before anyone else can reach the registry, so no
    /// lock is held (or needed) during the I/O; the finished map is moved in.
    ///
    /// Then each dataset's manifest is settled with its table's log
    /// ([`crate::tables`]): a version committed but not yet recorded (a crash
    /// between the two writes) is rolled forward, and a dataset from before
    /// tables existed is converted into one.
    pub async fn open(store: Arc<dyn ObjectStore>) -> Result<Self> {
        let map = load_all(&store).await?;
        tracing::info!(manifests = map.len(), "catalog rehydrated");
        let registry = Self::with_map(store, map);
        registry.inner.settle_all().await?;
        Ok(registry)
    }

    /// An empty registry that does not read the store (for tests and
    /// stores known to be empty). Use [`Registry::open`] otherwise.
    pub fn empty(store: Arc<dyn ObjectStore>) -> Self {
        Self::with_map(store, BTreeMap::new())
    }

    fn with_map(store: Arc<dyn ObjectStore>, map: BTreeMap<String, Arc<Entry>>) -> Self {
        Self {
            inner: Arc::new(Inner {
                tables: Tables::new(store.clone()),
                vacuum: RwLock::new(VacuumPolicy::default()),
                compaction: RwLock::new(CompactionPolicy::default()),
                compacting: parking_lot::Mutex::new(HashSet::new()),
                store,
                write: tokio::sync::Mutex::new(()),
                map: RwLock::new(map),
            }),
        }
    }

    /// Number of datasets.
    pub fn len(&self) -> usize {
        self.inner.map.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The retention vacuum applies (the default until set).
    pub fn set_vacuum_policy(&self, policy: VacuumPolicy) {
        *self.inner.vacuum.write() = policy;
    }

    /// See [`Catalog::vacuum`]. Runs under the register lock, so no restore
    /// can bring back a file while it is being deleted.
    pub async fn vacuum(&self, name: &str, dry_run: bool) -> Result<VacuumReport> {
        validate_name(name).map_err(|e| CatalogError::invalid_name(name, e))?;
        if !self.inner.map.read().contains_key(name) {
            // A dropped dataset: its files and log, if any are left.
            let inner = self.inner.clone();
            let name = name.to_string();
            return detached(async move {
                let _serial = inner.write.lock().await;
                if inner.map.read().contains_key(&name) {
                    // Created again meanwhile: an ordinary vacuum.
                    return inner.vacuum(&name, dry_run).await;
                }
                let mode = match dry_run {
                    true => crate::vacuum::Purge::DryRun,
                    false => crate::vacuum::Purge::Run,
                };
                let report = inner.purge(&name, mode).await?;
                // Nothing left at all: the name is unknown.
                if report.files.is_empty() && report.held_files == 0 {
                    return Err(CatalogError::NotFound { name });
                }
                Ok(report)
            })
            .await;
        }
        self.on_table(name, move |inner, name| async move {
            let _serial = inner.write.lock().await;
            inner.vacuum(&name, dry_run).await
        })
        .await
    }

    /// Runs `op` on a dataset that has a table, to completion even if the
    /// caller stops waiting; `NoTable` for one without.
    async fn on_table<T, F, Fut>(&self, name: &str, op: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Arc<Inner>, String) -> Fut,
        Fut: std::future::Future<Output = Result<T>> + Send + 'static,
    {
        let current = self.get(name)?;
        if current.table_version.is_none() {
            return Err(crate::tables::no_table(&current));
        }
        detached(op(self.inner.clone(), name.to_string())).await
    }

    /// The store manifests persist to.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.inner.store.clone()
    }

    /// See [`Catalog::register`]. Input is validated, and the objects not
    /// already in the dataset's manifest are checked in the store, before
    /// any lock is taken; bad input changes nothing.
    pub async fn register(&self, req: RegisterRequest) -> Result<RegisterResponse> {
        let req = validate_request(req)?;
        let prior = self.inner.map.read().get(&req.name).cloned();
        let checked = unverified(&req.objects, prior.as_deref());
        let keys: HashSet<(String, u64)> = checked
            .iter()
            .map(|(_, o)| (o.key.clone(), o.size))
            .collect();
        let footers = verify_objects(&self.inner.store, checked).await?;
        let inner = self.inner.clone();
        let resp = detached(async move { inner.register(req, keys, footers).await }).await?;
        self.maybe_compact(&resp.manifest);
        Ok(resp)
    }

    /// Starts a background compaction of `m`'s dataset if the policy asks
    /// for one and none is running.
    fn maybe_compact(&self, m: &Manifest) {
        let policy = *self.inner.compaction.read();
        if policy.auto_after_files == 0 || m.table_version.is_none() {
            return;
        }
        let small = m
            .objects
            .iter()
            .filter(|o| o.size < policy.small_file_bytes)
            .count() as u64;
        if small < policy.auto_after_files || !self.inner.compacting.lock().insert(m.name.clone()) {
            return;
        }
        let this = self.clone();
        let name = m.name.clone();
        tokio::spawn(async move {
            match this.compact(&name, CompactOptions::default()).await {
                Ok(r) => {
                    tracing::info!(dataset = %name, compacted = ?r.compacted, "automatic compaction")
                }
                Err(e) => {
                    tracing::warn!(dataset = %name, error = %e, "automatic compaction failed")
                }
            }
            this.inner.compacting.lock().remove(&name);
        });
    }

    /// When the catalog compacts datasets by itself (never, until set).
    pub fn set_compaction_policy(&self, policy: CompactionPolicy) {
        *self.inner.compaction.write() = policy;
    }

    /// A copy of `name`'s manifest (callers can never alias registry state);
    /// `Quarantined` for a stored manifest that lists objects it does not own.
    pub fn get(&self, name: &str) -> Result<Manifest> {
        validate_name(name).map_err(|e| CatalogError::invalid_name(name, e))?;
        let found = self.inner.map.read().get(name).cloned();
        let entry = found.ok_or_else(|| CatalogError::NotFound {
            name: name.to_string(),
        })?;
        match &entry.quarantine {
            None => Ok(entry.manifest.clone()),
            Some(q) => Err(CatalogError::Quarantined {
                name: name.to_string(),
                object: truncate_for_message(&q.object),
                source: q.reason.clone(),
            }),
        }
    }

    /// Copies of every manifest, sorted by name, quarantined ones included
    /// (so every stored dataset is accounted for, and so the keys they list
    /// count as referenced).
    pub fn list(&self) -> Vec<Manifest> {
        // Copy the pointers under the lock, the manifests outside it.
        let arcs: Vec<Arc<Entry>> = self.inner.map.read().values().cloned().collect();
        arcs.iter().map(|e| e.manifest.clone()).collect()
    }

    /// `name` at a table version or time; see [`Catalog::get_at`].
    pub async fn get_at(&self, name: &str, at: At) -> Result<Manifest> {
        let current = self.get(name)?;
        if at == At::Latest {
            return Ok(current);
        }
        self.inner.manifest_at(current, at).await
    }

    /// See [`Catalog::history`].
    pub async fn history(&self, name: &str, limit: usize) -> Result<Vec<Change>> {
        let current = self.get(name)?;
        self.inner.history(&current, limit).await
    }

    /// See [`Catalog::compact`]. The rewrite runs without the register
    /// lock (registers of every dataset go on); the manifest is rolled
    /// forward under it afterwards.
    pub async fn compact(&self, name: &str, opts: CompactOptions) -> Result<CompactResponse> {
        self.on_table(name, move |inner, name| async move {
            let compacted = inner
                .tables
                .compact(&name, &opts)
                .await
                .map_err(|e| CatalogError::table(&name, e))?;
            let manifest = inner.catch_up(&name, compacted.map(|c| c.version)).await?;
            Ok(CompactResponse {
                manifest,
                compacted,
            })
        })
        .await
    }

    /// See [`Catalog::restore`].
    pub async fn restore(&self, name: &str, to: At) -> Result<Manifest> {
        self.on_table(name, move |inner, name| async move {
            let _serial = inner.write.lock().await;
            if let At::Version(v) = to {
                inner.check_not_vacuumed(&name, v).await?;
            }
            inner
                .tables
                .restore(&name, to)
                .await
                .map_err(|e| CatalogError::table(&name, e))?;
            let current = inner.current(&name)?;
            inner.roll_forward(&current).await
        })
        .await
    }

    /// See [`Catalog::sync`].
    pub async fn sync(&self, name: &str) -> Result<Manifest> {
        self.on_table(name, move |inner, name| async move {
            let current = inner.current(&name)?;
            let Some(v) = current.table_version else {
                return Ok(current);
            };
            let ahead = inner
                .tables
                .has_version(&name, v as i64 + 1)
                .await
                .map_err(|e| CatalogError::table(&name, e))?;
            if !ahead {
                return Ok(current);
            }
            inner.catch_up(&name, Some(v as i64 + 1)).await
        })
        .await
    }

    /// The quarantined datasets and why, sorted by name.
    pub fn quarantined(&self) -> Vec<(String, Quarantine)> {
        let map = self.inner.map.read();
        map.iter()
            .filter_map(|(n, e)| e.quarantine.clone().map(|q| (n.clone(), q)))
            .collect()
    }

    /// Deletes `name`'s manifest object, then forgets it; `Ok(false)` if it
    /// was not registered.
    pub async fn delete(&self, name: &str) -> Result<bool> {
        Ok(self.drop_dataset(name).await?.is_some())
    }

    /// See [`Catalog::drop_dataset`].
    pub async fn drop_dataset(&self, name: &str) -> Result<Option<VacuumReport>> {
        validate_name(name).map_err(|e| CatalogError::invalid_name(name, e))?;
        let inner = self.inner.clone();
        let name = name.to_string();
        detached(async move { inner.drop_dataset(&name).await }).await
    }
}

/// Runs a mutation to completion even if the caller stops waiting.
async fn detached<T: Send + 'static>(
    fut: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    match tokio::spawn(lakehouse_common::request_id::carry(fut)).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        // Only happens when the runtime itself is shutting down.
        Err(e) => Err(CatalogError::Unavailable {
            url: "in-process".to_string(),
            source: Box::new(e),
        }),
    }
}

/// The objects of a request that must be checked in the store: all but
/// those `prior` lists with the same size (and all of them if `prior` is
/// quarantined).
fn unverified(objects: &[ObjectRef], prior: Option<&Entry>) -> Vec<(usize, ObjectRef)> {
    let known = prior.map(Entry::verified).unwrap_or_default();
    objects
        .iter()
        .enumerate()
        .filter(|(_, o)| !known.contains(&(o.key.as_str(), o.size)))
        .map(|(i, o)| (i, o.clone()))
        .collect()
}

impl Inner {
    /// `checked`: the objects verified before the lock was taken.
    async fn register(
        &self,
        req: RegisterRequest,
        checked: HashSet<(String, u64)>,
        mut footers: Footers,
    ) -> Result<RegisterResponse> {
        let _serial = self.write.lock().await;
        let prior_entry = self.map.read().get(&req.name).cloned();
        // Another register may have changed the manifest since the checks:
        // whatever it made necessary is checked now (rarely anything).
        let late: Vec<(usize, ObjectRef)> = unverified(&req.objects, prior_entry.as_deref())
            .into_iter()
            .filter(|(_, o)| !checked.contains(&(o.key.clone(), o.size)))
            .collect();
        footers.extend(verify_objects(&self.store, late).await?);
        let prior = prior_entry.map(|e| e.manifest.clone());

        // Preconditions first (as HTTP evaluates them), then the ADR-020 check.
        if let Some(expected) = req.expected_version {
            let actual = prior.as_ref().map_or(0, |p| p.version);
            if expected != actual {
                return Err(CatalogError::VersionMismatch {
                    name: req.name,
                    expected,
                    actual,
                });
            }
        }
        let row_count = match req.row_count {
            Some(n) => n,
            // Checked by validate_request.
            None => req.objects.iter().map(|o| o.row_count).sum(),
        };
        let now = now_micros();
        let (candidate, existing) = match &prior {
            // Schema evolution needs a table (to check the new schema
            // against, and to keep the old one's versions readable).
            Some(p)
                if p.schema_fingerprint != req.schema_fingerprint
                    && !(req.evolve_schema
                        && (p.table_version.is_some() || p.objects.is_empty())) =>
            {
                return Err(CatalogError::FingerprintConflict {
                    name: req.name,
                    have: p.schema_fingerprint.clone(),
                    got: req.schema_fingerprint,
                });
            }
            Some(p) => (
                Manifest {
                    dataset_id: p.dataset_id,
                    name: req.name,
                    schema_fingerprint: req.schema_fingerprint,
                    objects: req.objects,
                    row_count,
                    created_at: p.created_at,
                    // Never backwards, even if the wall clock is.
                    updated_at: now.max(p.updated_at),
                    version: p.version + 1,
                    table_version: p.table_version,
                },
                true,
            ),
            None => (
                Manifest {
                    dataset_id: dataset_id_for(&req.name),
                    name: req.name,
                    schema_fingerprint: req.schema_fingerprint,
                    objects: req.objects,
                    row_count,
                    created_at: now,
                    updated_at: now,
                    version: 1,
                    table_version: None,
                },
                false,
            ),
        };
        let mut candidate = candidate;
        // The table's version first: once it is committed the change is
        // durable, and the manifest below only records it.
        let committed = self
            .commit_table(&candidate, prior.as_ref(), &footers)
            .await?;
        candidate.table_version = committed.or(candidate.table_version);
        match self.persist(&candidate).await {
            Ok(()) => {}
            // The log has the version: the register took effect, and the
            // manifest is rolled forward at the next start (or rewritten by
            // the next register). Refusing now would make the caller delete
            // objects a committed version lists.
            Err(e)
                if committed
                    .is_some_and(|v| Some(v) != prior.as_ref().and_then(|p| p.table_version)) =>
            {
                tracing::warn!(dataset = %candidate.name, error = %e, "table version committed but its manifest was not written; it is rolled forward at the next start");
            }
            Err(e) => return Err(e),
        }

        let response = RegisterResponse {
            manifest: candidate.clone(),
            existing,
        };
        self.map
            .write()
            .insert(candidate.name.clone(), Entry::trusted(candidate));
        Ok(response)
    }

    /// Writes `m` as its dataset's manifest: one put, which every backend
    /// makes atomic, so a reader (or a restart) sees the old manifest or
    /// the new one, never a mix.
    pub(crate) async fn persist(&self, m: &Manifest) -> Result<()> {
        let key = manifest_key(&m.name);
        let bytes = m.encode().map_err(|source| CatalogError::Encode {
            name: m.name.clone(),
            source,
        })?;
        self.store
            .put(&Path::from(key.as_str()), PutPayload::from(bytes))
            .await
            .map_err(|source| CatalogError::Storage { key, source })?;
        Ok(())
    }

    async fn drop_dataset(&self, name: &str) -> Result<Option<VacuumReport>> {
        let _serial = self.write.lock().await;
        if !self.map.read().contains_key(name) {
            return Ok(None);
        }
        // What a vacuum will remove once the manifest is gone (listed first:
        // a failure here changes nothing).
        let report = self.purge(name, crate::vacuum::Purge::Plan).await?;
        let key = manifest_key(name);
        match self.store.delete(&Path::from(key.as_str())).await {
            // Already gone from the store is what we wanted anyway.
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => return Err(CatalogError::Storage { key, source }),
        }
        self.map.write().remove(name);
        Ok(Some(report))
    }
}

/// Checks a register request before any lock is taken: the name, the
/// fingerprint, and that the dataset owns every key, once.
fn validate_request(req: RegisterRequest) -> Result<RegisterRequest> {
    validate_name(&req.name).map_err(|e| CatalogError::invalid_name(&req.name, e))?;
    if req.schema_fingerprint.trim().is_empty() {
        return Err(CatalogError::EmptyFingerprint);
    }
    let mut seen = HashSet::with_capacity(req.objects.len());
    for (i, o) in req.objects.iter().enumerate() {
        check_owned(&req.name, &o.key).map_err(|e| ObjectError::from(e).at(i, &o.key))?;
        if !seen.insert(o.key.as_str()) {
            return Err(CatalogError::InvalidRequest(format!(
                "objects[{i}].key {:?} is listed twice",
                o.key
            )));
        }
    }
    if req.row_count.is_none() {
        req.objects
            .iter()
            .try_fold(0u64, |acc, o| acc.checked_add(o.row_count))
            .ok_or_else(|| {
                CatalogError::InvalidRequest("the objects' row counts overflow a u64".to_string())
            })?;
    }
    Ok(req)
}

/// Lists, fetches and decodes every manifest concurrently, with no lock.
async fn load_all(store: &Arc<dyn ObjectStore>) -> Result<BTreeMap<String, Arc<Entry>>> {
    let storage_err = |source| CatalogError::Storage {
        key: MANIFEST_PREFIX.to_string(),
        source,
    };
    let prefix = Path::from(MANIFEST_PREFIX.trim_end_matches('/'));
    let keys: Vec<(String, u64)> = store
        .list(Some(&prefix))
        .map_ok(|meta| (meta.location.to_string(), meta.size))
        .try_collect()
        .await
        .map_err(storage_err)?;

    // Fetches overlap (I/O); decodes run on the blocking pool (CPU).
    let mut loads = futures::stream::iter(keys)
        .map(|(key, size)| load_one(store.clone(), key, size))
        .buffer_unordered(REHYDRATE_CONCURRENCY);

    let mut map = BTreeMap::new();
    while let Some(loaded) = loads.next().await {
        if let Some(m) = loaded? {
            let quarantine = quarantine_of(&m);
            if let Some(q) = &quarantine {
                tracing::warn!(
                    dataset = %m.name,
                    object = %q.object,
                    reason = %q.reason,
                    "quarantined a stored manifest that lists an object its dataset does not own"
                );
            }
            map.insert(
                m.name.clone(),
                Arc::new(Entry {
                    manifest: m,
                    quarantine,
                }),
            );
        }
    }
    Ok(map)
}

/// The first object a stored manifest lists that its dataset does not own.
fn quarantine_of(m: &Manifest) -> Option<Quarantine> {
    m.objects.iter().find_map(|o| {
        check_owned(&m.name, &o.key).err().map(|reason| Quarantine {
            object: o.key.clone(),
            reason,
        })
    })
}

/// Loads one listed key; `None` for keys that are not manifests (or that
/// vanished between list and get).
async fn load_one(store: Arc<dyn ObjectStore>, key: String, size: u64) -> Result<Option<Manifest>> {
    let Some(expected_name) = name_from_key(&key) else {
        tracing::debug!(%key, "ignoring a non-manifest object under the manifest prefix");
        return Ok(None);
    };
    let expected_name = expected_name.to_string();
    let too_large = |size: u64| CatalogError::CorruptManifest {
        key: key.clone(),
        source: CodecError::Invalid(format!(
            "the object is {size} bytes; a manifest is at most {MAX_MANIFEST_BYTES}"
        )),
    };
    if size > MAX_MANIFEST_BYTES {
        return Err(too_large(size));
    }
    let path = Path::from(key.as_str());
    let bytes = match store.get(&path).await {
        Ok(r) if r.meta.size > MAX_MANIFEST_BYTES => return Err(too_large(r.meta.size)),
        Ok(r) => r.bytes().await,
        Err(e) => Err(e),
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(object_store::Error::NotFound { .. }) => {
            tracing::warn!(%key, "manifest deleted while loading; skipping");
            return Ok(None);
        }
        Err(source) => return Err(CatalogError::Storage { key, source }),
    };
    let m = tokio::task::spawn_blocking(move || Manifest::decode_stored(&key, bytes))
        .await
        .map_err(|e| match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Only happens when the runtime itself is shutting down.
            Err(e) => CatalogError::Unavailable {
                url: "in-process".to_string(),
                source: Box::new(e),
            },
        })??;
    debug_assert_eq!(m.name, expected_name, "decode_stored checks the name");
    Ok(Some(m))
}

#[async_trait]
impl Catalog for Registry {
    async fn register(&self, req: RegisterRequest) -> Result<RegisterResponse> {
        Registry::register(self, req).await
    }

    async fn get(&self, name: &str) -> Result<Manifest> {
        Registry::get(self, name)
    }

    async fn get_at(&self, name: &str, at: At) -> Result<Manifest> {
        Registry::get_at(self, name, at).await
    }

    async fn history(&self, name: &str, limit: usize) -> Result<Vec<Change>> {
        Registry::history(self, name, limit).await
    }

    async fn compact(&self, name: &str, opts: CompactOptions) -> Result<CompactResponse> {
        Registry::compact(self, name, opts).await
    }

    async fn restore(&self, name: &str, to: At) -> Result<Manifest> {
        Registry::restore(self, name, to).await
    }

    async fn sync(&self, name: &str) -> Result<Manifest> {
        Registry::sync(self, name).await
    }

    async fn vacuum(&self, name: &str, dry_run: bool) -> Result<VacuumReport> {
        Registry::vacuum(self, name, dry_run).await
    }

    async fn list(&self) -> Result<Vec<Manifest>> {
        Ok(Registry::list(self))
    }

    async fn drop_dataset(&self, name: &str) -> Result<Option<VacuumReport>> {
        Registry::drop_dataset(self, name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectRef;
    use object_store::memory::InMemory;

    /// A real Parquet file of one Int64 column and `rows` rows.
    fn parquet(rows: u64) -> bytes::Bytes {
        use arrow::array::{Int64Array, RecordBatch};
        use arrow::datatypes::{DataType, Field, Schema};
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
        let values = Int64Array::from_iter_values(0..rows as i64);
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(values)]).unwrap();
        let mut buf = Vec::new();
        let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        buf.into()
    }

    fn obj(key: &str, rows: u64) -> ObjectRef {
        ObjectRef {
            key: format!("datasets/d/{key}"),
            size: parquet(rows).len() as u64,
            row_count: rows,
        }
    }

    #[tokio::test]
    async fn row_count_defaults_to_the_sum() {
        let store = Arc::new(InMemory::new());
        for (k, rows) in [("a", 2), ("b", 3)] {
            store
                .put(
                    &Path::from(format!("datasets/d/{k}")),
                    PutPayload::from(parquet(rows)),
                )
                .await
                .unwrap();
        }
        let r = Registry::empty(store);
        let resp = r
            .register(RegisterRequest::new(
                "d",
                "fp",
                vec![obj("a", 2), obj("b", 3)],
            ))
            .await
            .unwrap();
        assert_eq!(resp.manifest.row_count, 5);
        let mut req = RegisterRequest::new("d", "fp", vec![obj("a", 2)]);
        req.row_count = Some(7);
        assert_eq!(r.register(req).await.unwrap().manifest.row_count, 7);
    }

    #[test]
    fn request_validation() {
        let bad = |req: RegisterRequest| validate_request(req).unwrap_err().kind();
        use crate::ErrorKind::*;
        assert_eq!(bad(RegisterRequest::new("", "fp", vec![])), InvalidName);
        assert_eq!(bad(RegisterRequest::new("A", "fp", vec![])), InvalidName);
        assert_eq!(bad(RegisterRequest::new("a", "", vec![])), EmptyFingerprint);
        assert_eq!(
            bad(RegisterRequest::new("a", "  ", vec![])),
            EmptyFingerprint
        );
        assert_eq!(
            bad(RegisterRequest::new("d", "fp", vec![obj("", 1)])),
            InvalidObject
        );
        // Owned by dataset d, not a.
        assert_eq!(
            bad(RegisterRequest::new("a", "fp", vec![obj("k", 1)])),
            InvalidObject
        );
        assert_eq!(
            bad(RegisterRequest::new(
                "d",
                "fp",
                vec![obj("k", 1), obj("k", 1)]
            )),
            InvalidRequest
        );
        assert_eq!(
            bad(RegisterRequest::new(
                "d",
                "fp",
                vec![obj("k", u64::MAX), obj("j", 1)]
            )),
            InvalidRequest
        );
        let mut explicit = RegisterRequest::new("d", "fp", vec![obj("k", u64::MAX), obj("j", 1)]);
        explicit.row_count = Some(1);
        assert!(validate_request(explicit).is_ok());
    }
}
