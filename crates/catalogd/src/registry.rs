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

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parking_lot::RwLock;

use crate::error::{CatalogError, Result};
use crate::manifest::{CodecError, MANIFEST_PREFIX, Manifest, dataset_id_for, now_micros};
use crate::name::{manifest_key, name_from_key, validate_name};
use crate::{Catalog, RegisterRequest, RegisterResponse};

/// Manifests fetched and decoded at once during rehydrate.
const REHYDRATE_CONCURRENCY: usize = 32;

/// Longest object key a manifest may reference (storaged's key limit).
const MAX_OBJECT_KEY_LEN: usize = 1024;

/// The in-process catalog. Cheap to clone (shared state).
#[derive(Debug, Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn ObjectStore>,
    write: tokio::sync::Mutex<()>,
    map: RwLock<BTreeMap<String, Arc<Manifest>>>,
}

impl Registry {
    /// Loads every manifest under `_catalog/manifests/` and returns the
    /// registry over them. Fails on the first manifest that cannot be read
    /// or decoded, naming its key: a half-loaded catalog would silently
    /// lose datasets.
    ///
    /// The load happens before anyone else can reach the registry, so no
    /// lock is held (or needed) during the I/O; the finished map is moved in.
    pub async fn open(store: Arc<dyn ObjectStore>) -> Result<Self> {
        let map = load_all(&store).await?;
        tracing::info!(manifests = map.len(), "catalog rehydrated");
        Ok(Self::with_map(store, map))
    }

    /// An empty registry that does not read the store (for tests and
    /// stores known to be empty). Use [`Registry::open`] otherwise.
    pub fn empty(store: Arc<dyn ObjectStore>) -> Self {
        Self::with_map(store, BTreeMap::new())
    }

    fn with_map(store: Arc<dyn ObjectStore>, map: BTreeMap<String, Arc<Manifest>>) -> Self {
        Self {
            inner: Arc::new(Inner {
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

    /// The store manifests persist to.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.inner.store.clone()
    }

    /// See [`Catalog::register`]. Input is validated before any lock is
    /// taken; bad input changes nothing.
    pub async fn register(&self, req: RegisterRequest) -> Result<RegisterResponse> {
        let req = validate_request(req)?;
        let inner = self.inner.clone();
        detached(async move { inner.register(req).await }).await
    }

    /// A copy of `name`'s manifest (callers can never alias registry state).
    pub fn get(&self, name: &str) -> Result<Manifest> {
        validate_name(name).map_err(|e| CatalogError::invalid_name(name, e))?;
        let found = self.inner.map.read().get(name).cloned();
        found
            .map(|m| (*m).clone())
            .ok_or_else(|| CatalogError::NotFound {
                name: name.to_string(),
            })
    }

    /// Copies of every manifest, sorted by name.
    pub fn list(&self) -> Vec<Manifest> {
        // Copy the pointers under the lock, the manifests outside it.
        let arcs: Vec<Arc<Manifest>> = self.inner.map.read().values().cloned().collect();
        arcs.iter().map(|m| (**m).clone()).collect()
    }

    /// Deletes `name`'s manifest object, then forgets it; `Ok(false)` if it
    /// was not registered.
    pub async fn delete(&self, name: &str) -> Result<bool> {
        validate_name(name).map_err(|e| CatalogError::invalid_name(name, e))?;
        let inner = self.inner.clone();
        let name = name.to_string();
        detached(async move { inner.delete(&name).await }).await
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

impl Inner {
    async fn register(&self, req: RegisterRequest) -> Result<RegisterResponse> {
        let _serial = self.write.lock().await;
        let prior = self.map.read().get(&req.name).cloned();

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
        let (candidate, existing) = match prior {
            Some(p) if p.schema_fingerprint != req.schema_fingerprint => {
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
                },
                false,
            ),
        };

        let key = manifest_key(&candidate.name);
        let bytes = candidate.encode().map_err(|source| CatalogError::Encode {
            name: candidate.name.clone(),
            source,
        })?;
        // One put: every backend makes a single put atomic, so a reader (or
        // a restart) sees the old manifest or the new one, never a mix.
        self.store
            .put(&Path::from(key.as_str()), PutPayload::from(bytes))
            .await
            .map_err(|source| CatalogError::Storage { key, source })?;

        let shared = Arc::new(candidate);
        self.map.write().insert(shared.name.clone(), shared.clone());
        Ok(RegisterResponse {
            manifest: (*shared).clone(),
            existing,
        })
    }

    async fn delete(&self, name: &str) -> Result<bool> {
        let _serial = self.write.lock().await;
        if !self.map.read().contains_key(name) {
            return Ok(false);
        }
        let key = manifest_key(name);
        match self.store.delete(&Path::from(key.as_str())).await {
            // Already gone from the store is what we wanted anyway.
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(source) => return Err(CatalogError::Storage { key, source }),
        }
        self.map.write().remove(name);
        Ok(true)
    }
}

/// Checks a register request before any lock is taken.
fn validate_request(req: RegisterRequest) -> Result<RegisterRequest> {
    validate_name(&req.name).map_err(|e| CatalogError::invalid_name(&req.name, e))?;
    if req.schema_fingerprint.trim().is_empty() {
        return Err(CatalogError::EmptyFingerprint);
    }
    let mut seen = HashSet::with_capacity(req.objects.len());
    for (i, o) in req.objects.iter().enumerate() {
        if o.key.is_empty() {
            return Err(CatalogError::InvalidRequest(format!(
                "objects[{i}].key is empty"
            )));
        }
        if o.key.len() > MAX_OBJECT_KEY_LEN {
            return Err(CatalogError::InvalidRequest(format!(
                "objects[{i}].key is {} bytes long; the limit is {MAX_OBJECT_KEY_LEN}",
                o.key.len()
            )));
        }
        if o.key.chars().any(char::is_control) {
            return Err(CatalogError::InvalidRequest(format!(
                "objects[{i}].key contains a control character"
            )));
        }
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
async fn load_all(store: &Arc<dyn ObjectStore>) -> Result<BTreeMap<String, Arc<Manifest>>> {
    let storage_err = |source| CatalogError::Storage {
        key: MANIFEST_PREFIX.to_string(),
        source,
    };
    let prefix = Path::from(MANIFEST_PREFIX.trim_end_matches('/'));
    let keys: Vec<String> = store
        .list(Some(&prefix))
        .map_ok(|meta| meta.location.to_string())
        .try_collect()
        .await
        .map_err(storage_err)?;

    // Fetches overlap (I/O); decodes run on the blocking pool (CPU).
    let mut loads = futures::stream::iter(keys)
        .map(|key| load_one(store.clone(), key))
        .buffer_unordered(REHYDRATE_CONCURRENCY);

    let mut map = BTreeMap::new();
    while let Some(loaded) = loads.next().await {
        if let Some(m) = loaded? {
            map.insert(m.name.clone(), Arc::new(m));
        }
    }
    Ok(map)
}

/// Loads one listed key; `None` for keys that are not manifests (or that
/// vanished between list and get).
async fn load_one(store: Arc<dyn ObjectStore>, key: String) -> Result<Option<Manifest>> {
    let Some(expected_name) = name_from_key(&key) else {
        tracing::debug!(%key, "ignoring a non-manifest object under the manifest prefix");
        return Ok(None);
    };
    let expected_name = expected_name.to_string();
    let path = Path::from(key.as_str());
    let bytes = match store.get(&path).await {
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
    let decoded = tokio::task::spawn_blocking(move || Manifest::decode(bytes)).await;
    let m = match decoded {
        Ok(r) => r.map_err(|source| CatalogError::CorruptManifest {
            key: key.clone(),
            source,
        })?,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => {
            return Err(CatalogError::Unavailable {
                url: "in-process".to_string(),
                source: Box::new(e),
            });
        }
    };
    if m.name != expected_name {
        return Err(CatalogError::CorruptManifest {
            key,
            source: CodecError::Invalid(format!(
                "the manifest is for dataset {:?}, but its key is for {expected_name:?}",
                m.name
            )),
        });
    }
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

    async fn list(&self) -> Result<Vec<Manifest>> {
        Ok(Registry::list(self))
    }

    async fn delete(&self, name: &str) -> Result<bool> {
        Registry::delete(self, name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ObjectRef;
    use object_store::memory::InMemory;

    fn obj(key: &str, rows: u64) -> ObjectRef {
        ObjectRef {
            key: key.to_string(),
            size: 100,
            row_count: rows,
        }
    }

    #[tokio::test]
    async fn row_count_defaults_to_the_sum() {
        let r = Registry::empty(Arc::new(InMemory::new()));
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
            bad(RegisterRequest::new("a", "fp", vec![obj("", 1)])),
            InvalidRequest
        );
        assert_eq!(
            bad(RegisterRequest::new(
                "a",
                "fp",
                vec![obj("k", 1), obj("k", 1)]
            )),
            InvalidRequest
        );
        assert_eq!(
            bad(RegisterRequest::new(
                "a",
                "fp",
                vec![obj("k", u64::MAX), obj("j", 1)]
            )),
            InvalidRequest
        );
        let mut explicit = RegisterRequest::new("a", "fp", vec![obj("k", u64::MAX), obj("j", 1)]);
        explicit.row_count = Some(1);
        assert!(validate_request(explicit).is_ok());
    }
}
