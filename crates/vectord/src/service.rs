//! The vector service core: named HNSW indexes with string ids and metadata.
//!
//! Durability: every write (a batch add, an item delete) is first stored as
//! one write-ahead-log object, `_vectors/<name>.wal/<seq>.json`, and applied
//! to the in-memory index only after that put succeeded — so an acknowledged
//! write survives `kill -9`. Snapshots (`_vectors/<name>.lhv1`) are taken in
//! the background every `snapshot_every` items; they record the last WAL
//! sequence number they contain, and the WAL objects they cover are then
//! deleted. Opening replays the snapshot, then the newer WAL entries, in
//! order. Without a store (ephemeral mode) nothing is persisted.
//!
//! Validation comes before anything is written (seed O-I3): a batch with one
//! bad item changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use lakehouse_hnsw::{Index, Metric, Params};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Result, VectorError};
use crate::lhv1::{self, Envelope, EnvelopeMetadata, ItemRecord};

pub const PREFIX: &str = "_vectors/";
/// Largest batch one add may carry.
pub const MAX_BATCH: usize = 100_000;
pub const MAX_K: usize = 10_000;
const MAX_ID_LEN: usize = 1024;

/// An index's identity and parameters (the "params" of the LHV1 envelope).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexSpec {
    pub name: String,
    pub dim: usize,
    pub metric: Metric,
    #[serde(default = "default_m")]
    pub m: usize,
    #[serde(default = "default_efc")]
    pub ef_construction: usize,
}

fn default_m() -> usize {
    16
}
fn default_efc() -> usize {
    200
}

/// One item of a batch add.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub id: String,
    pub vector: Vec<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    pub vector: Vec<f32>,
    #[serde(default = "default_k")]
    pub k: usize,
    #[serde(default)]
    pub ef: Option<usize>,
    /// Equality on metadata fields: every pair must match.
    #[serde(default)]
    pub filter: Option<Map<String, Value>>,
}

fn default_k() -> usize {
    10
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub id: String,
    pub distance: f32,
    pub metadata: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexInfo {
    pub name: String,
    pub dim: usize,
    pub metric: Metric,
    pub m: usize,
    pub ef_construction: usize,
    pub count: usize,
    pub memory_bytes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddResult {
    pub added: usize,
    pub count: usize,
}

/// One write-ahead-log entry.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
enum WalOp {
    Add { items: Vec<Item> },
    Delete { id: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct WalEntry {
    seq: u64,
    #[serde(flatten)]
    op: WalOp,
}

#[derive(Default)]
struct Meta {
    by_id: HashMap<String, u64>,
    items: HashMap<u64, (String, Option<Map<String, Value>>)>,
    next_key: u64,
}

struct Writer {
    /// The next WAL sequence number.
    next_seq: u64,
    /// Items written since the last snapshot.
    since_snapshot: usize,
    snapshot_running: bool,
}

struct IndexState {
    spec: IndexSpec,
    index: Index,
    meta: RwLock<Meta>,
    writer: tokio::sync::Mutex<Writer>,
}

/// Service settings.
#[derive(Debug, Clone)]
pub struct VectorConfig {
    /// Take a snapshot after this many written items.
    pub snapshot_every: usize,
}

impl Default for VectorConfig {
    fn default() -> Self {
        Self {
            snapshot_every: 50_000,
        }
    }
}

pub struct VectorService {
    store: Option<Arc<dyn ObjectStore>>,
    cfg: VectorConfig,
    indexes: RwLock<BTreeMap<String, Arc<IndexState>>>,
    /// Serialises create/delete of indexes (not searches or adds).
    admin: tokio::sync::Mutex<()>,
}

fn snapshot_key(name: &str) -> String {
    format!("{PREFIX}{name}.lhv1")
}

fn wal_dir(name: &str) -> String {
    format!("{PREFIX}{name}.wal")
}

fn wal_key(name: &str, seq: u64) -> String {
    format!("{}/{seq:020}.json", wal_dir(name))
}

fn path(key: &str) -> Result<Path> {
    Path::parse(key).map_err(|e| VectorError::Internal(format!("key {key:?}: {e}")))
}

/// Index names: lowercase letters, digits, `_ - .`, 1..=128 bytes.
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(VectorError::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        })
    };
    if name.is_empty() || name.len() > 128 {
        return bad("must be 1 to 128 bytes");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(&b))
    {
        return bad("use lowercase letters, digits, '_', '-' and '.'");
    }
    if name.starts_with('.') {
        return bad("must not start with '.'");
    }
    Ok(())
}

fn check_vector(spec: &IndexSpec, v: &[f32]) -> std::result::Result<(), String> {
    if v.len() != spec.dim {
        return Err(format!(
            "vector has dimension {}, the index expects {}",
            v.len(),
            spec.dim
        ));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(format!(
            "vector[{i}] is {} (NaN and infinities are not allowed)",
            v[i]
        ));
    }
    if spec.metric == Metric::Cosine && v.iter().all(|x| *x == 0.0) {
        return Err("vector has zero norm, which has no cosine direction".to_string());
    }
    Ok(())
}

impl IndexState {
    fn new(spec: IndexSpec) -> Result<Self> {
        let params = Params::new(spec.dim, spec.metric)
            .with_m(spec.m)
            .with_ef_construction(spec.ef_construction);
        let index = Index::new(params).map_err(|e| VectorError::InvalidParams(e.to_string()))?;
        Ok(Self {
            spec,
            index,
            meta: RwLock::new(Meta {
                next_key: 1,
                ..Default::default()
            }),
            writer: tokio::sync::Mutex::new(Writer {
                next_seq: 1,
                since_snapshot: 0,
                snapshot_running: false,
            }),
        })
    }

    /// Applies a validated batch: upsert by id (the last of duplicate ids
    /// wins). CPU-heavy: call on a blocking thread.
    fn apply_add(&self, items: Vec<Item>) -> Result<()> {
        // Last occurrence of each id wins, in first-seen order.
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (i, it) in items.iter().enumerate() {
            last.insert(it.id.as_str(), i);
        }
        let mut batch: Vec<(u64, &[f32])> = Vec::with_capacity(last.len());
        let mut records = Vec::with_capacity(last.len());
        {
            let mut meta = self.meta.write();
            for (i, it) in items.iter().enumerate() {
                if last[it.id.as_str()] != i {
                    continue;
                }
                if let Some(old) = meta.by_id.get(&it.id).copied() {
                    self.index.delete(old);
                    meta.items.remove(&old);
                }
                let key = meta.next_key;
                meta.next_key += 1;
                meta.by_id.insert(it.id.clone(), key);
                batch.push((key, &it.vector));
                records.push((key, it.id.clone(), it.metadata.clone()));
            }
            for (key, id, md) in records {
                meta.items.insert(key, (id, md));
            }
        }
        self.index
            .insert_batch(&batch)
            .map_err(|e| VectorError::Internal(format!("index insert: {e}")))
    }

    fn apply_delete(&self, id: &str) -> bool {
        let mut meta = self.meta.write();
        match meta.by_id.remove(id) {
            Some(key) => {
                meta.items.remove(&key);
                self.index.delete(key);
                true
            }
            None => false,
        }
    }

    fn info(&self) -> IndexInfo {
        IndexInfo {
            name: self.spec.name.clone(),
            dim: self.spec.dim,
            metric: self.spec.metric,
            m: self.spec.m,
            ef_construction: self.spec.ef_construction,
            count: self.meta.read().by_id.len(),
            memory_bytes: self.index.memory_bytes(),
        }
    }

    /// A consistent snapshot blob (call with the writer lock held, so no
    /// write lands between the graph and the metadata).
    fn snapshot_blob(&self, version: u64) -> Vec<u8> {
        let meta = self.meta.read();
        let mut items: Vec<ItemRecord> = meta
            .items
            .iter()
            .map(|(k, (id, md))| ItemRecord {
                key: *k,
                id: id.clone(),
                metadata: md.clone(),
            })
            .collect();
        items.sort_by_key(|r| r.key);
        let envelope = Envelope {
            params: self.spec.clone(),
            metadata: EnvelopeMetadata {
                next_key: meta.next_key,
                items,
            },
            version,
        };
        let graph = self.index.to_bytes();
        lhv1::encode(&envelope, &graph)
    }

    fn from_snapshot(key: &str, blob: &[u8]) -> Result<(Self, u64)> {
        let corrupt = |reason: String| VectorError::Corrupt {
            key: key.to_string(),
            reason,
        };
        let (env, graph) = lhv1::decode(blob).map_err(|e| corrupt(e.to_string()))?;
        let index = Index::from_bytes(graph).map_err(|e| corrupt(format!("graph: {e}")))?;
        let p = index.params();
        if p.dim != env.params.dim || p.metric != env.params.metric {
            return Err(corrupt(
                "envelope parameters do not match the graph".to_string(),
            ));
        }
        let mut meta = Meta {
            next_key: env.metadata.next_key,
            ..Default::default()
        };
        for r in env.metadata.items {
            if !index.contains(r.key) {
                return Err(corrupt(format!(
                    "item {:?} (key {}) is not in the graph",
                    r.id, r.key
                )));
            }
            meta.by_id.insert(r.id.clone(), r.key);
            meta.items.insert(r.key, (r.id, r.metadata));
        }
        if meta.by_id.len() != index.len() {
            return Err(corrupt(format!(
                "{} items in the envelope, {} in the graph",
                meta.by_id.len(),
                index.len()
            )));
        }
        let state = Self {
            spec: env.params,
            index,
            meta: RwLock::new(meta),
            writer: tokio::sync::Mutex::new(Writer {
                next_seq: env.version + 1,
                since_snapshot: 0,
                snapshot_running: false,
            }),
        };
        Ok((state, env.version))
    }
}

impl VectorService {
    /// An ephemeral service: nothing is persisted.
    pub fn ephemeral(cfg: VectorConfig) -> Self {
        Self {
            store: None,
            cfg,
            indexes: RwLock::new(BTreeMap::new()),
            admin: tokio::sync::Mutex::new(()),
        }
    }

    /// Opens a persistent service: loads every index's snapshot and replays
    /// its write-ahead log. Any corrupt snapshot or log entry stops the load
    /// with an error naming its key.
    pub async fn open(store: Arc<dyn ObjectStore>, cfg: VectorConfig) -> Result<Self> {
        let mut keys = Vec::new();
        let mut s = store.list(Some(&path(PREFIX.trim_end_matches('/'))?));
        while let Some(m) = s.next().await {
            keys.push(m?.location.as_ref().to_string());
        }
        keys.sort();
        let mut indexes = BTreeMap::new();
        for key in keys.iter().filter(|k| k.ends_with(".lhv1")) {
            let blob = store.get(&path(key)?).await?.bytes().await?;
            let k = key.clone();
            let (state, version) =
                tokio::task::spawn_blocking(move || IndexState::from_snapshot(&k, &blob))
                    .await
                    .map_err(|e| VectorError::Internal(e.to_string()))??;
            let name = state.spec.name.clone();
            if snapshot_key(&name) != *key {
                return Err(VectorError::Corrupt {
                    key: key.clone(),
                    reason: format!("holds index {name:?}"),
                });
            }
            let state = Arc::new(state);
            // Replay the log entries newer than the snapshot, in order.
            let wal_prefix = format!("{}/", wal_dir(&name));
            let mut last = version;
            for wkey in keys.iter().filter(|k| k.starts_with(&wal_prefix)) {
                let body = store.get(&path(wkey)?).await?.bytes().await?;
                let entry: WalEntry =
                    serde_json::from_slice(&body).map_err(|e| VectorError::Corrupt {
                        key: wkey.clone(),
                        reason: e.to_string(),
                    })?;
                if entry.seq <= version {
                    continue; // already in the snapshot
                }
                last = entry.seq;
                let st = state.clone();
                tokio::task::spawn_blocking(move || -> Result<()> {
                    match entry.op {
                        WalOp::Add { items } => st.apply_add(items),
                        WalOp::Delete { id } => {
                            st.apply_delete(&id);
                            Ok(())
                        }
                    }
                })
                .await
                .map_err(|e| VectorError::Internal(e.to_string()))??;
            }
            state.writer.lock().await.next_seq = last + 1;
            tracing::info!(index = %name, items = state.index.len(), replayed = last - version, "vector index loaded");
            indexes.insert(name, state);
        }
        Ok(Self {
            store: Some(store),
            cfg,
            indexes: RwLock::new(indexes),
            admin: tokio::sync::Mutex::new(()),
        })
    }

    fn get_state(&self, name: &str) -> Result<Arc<IndexState>> {
        self.indexes
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| VectorError::IndexNotFound(name.to_string()))
    }

    /// Creates an index; the same parameters again is a no-op (`Ok(false)`),
    /// other parameters are a conflict.
    pub async fn create(&self, spec: IndexSpec) -> Result<(IndexInfo, bool)> {
        validate_name(&spec.name)?;
        Params::new(spec.dim, spec.metric)
            .with_m(spec.m)
            .with_ef_construction(spec.ef_construction)
            .validate()
            .map_err(|e| VectorError::InvalidParams(e.to_string()))?;
        let _admin = self.admin.lock().await;
        if let Some(existing) = self.indexes.read().get(&spec.name) {
            if existing.spec == spec {
                return Ok((existing.info(), false));
            }
            return Err(VectorError::ParamsConflict {
                name: spec.name.clone(),
                existing: format!(
                    "dim {}, metric {:?}, m {}, ef_construction {}",
                    existing.spec.dim,
                    existing.spec.metric,
                    existing.spec.m,
                    existing.spec.ef_construction
                ),
            });
        }
        let state = Arc::new(IndexState::new(spec.clone())?);
        if let Some(store) = &self.store {
            // The empty snapshot makes the index itself durable.
            let blob = state.snapshot_blob(0);
            store
                .put_opts(
                    &path(&snapshot_key(&spec.name))?,
                    PutPayload::from(blob),
                    PutMode::Overwrite.into(),
                )
                .await?;
        }
        let info = state.info();
        self.indexes.write().insert(spec.name, state);
        Ok((info, true))
    }

    pub fn list(&self) -> Vec<IndexInfo> {
        let states: Vec<Arc<IndexState>> = self.indexes.read().values().cloned().collect();
        states.iter().map(|s| s.info()).collect()
    }

    pub fn get(&self, name: &str) -> Result<IndexInfo> {
        Ok(self.get_state(name)?.info())
    }

    /// Deletes an index, its snapshot and its log.
    pub async fn drop_index(&self, name: &str) -> Result<()> {
        let _admin = self.admin.lock().await;
        let state = self.get_state(name)?;
        let _writer = state.writer.lock().await;
        if let Some(store) = &self.store {
            let mut keys = vec![snapshot_key(name)];
            let mut s = store.list(Some(&path(&wal_dir(name))?));
            while let Some(m) = s.next().await {
                keys.push(m?.location.as_ref().to_string());
            }
            // The log first: a crash part-way leaves an older snapshot, never
            // a log without its base.
            keys.reverse();
            for k in keys {
                match store.delete(&path(&k)?).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        self.indexes.write().remove(name);
        Ok(())
    }

    /// Validates the whole batch, logs it, then applies it.
    pub async fn add(&self, name: &str, items: Vec<Item>) -> Result<AddResult> {
        let state = self.get_state(name)?;
        if items.len() > MAX_BATCH {
            return Err(VectorError::BatchTooLarge {
                got: items.len(),
                limit: MAX_BATCH,
            });
        }
        for (i, it) in items.iter().enumerate() {
            let bad = |reason: String| VectorError::InvalidItem {
                position: i,
                id: it.id.clone(),
                reason,
            };
            if it.id.is_empty() {
                return Err(bad("the id is empty".to_string()));
            }
            if it.id.len() > MAX_ID_LEN {
                return Err(bad(format!("the id is longer than {MAX_ID_LEN} bytes")));
            }
            check_vector(&state.spec, &it.vector).map_err(bad)?;
        }
        let added = items.len();
        let mut writer = state.writer.lock().await;
        let seq = writer.next_seq;
        let items = self.log(name, seq, WalOp::Add { items }).await?;
        let st = state.clone();
        tokio::task::spawn_blocking(move || st.apply_add(items))
            .await
            .map_err(|e| VectorError::Internal(e.to_string()))??;
        writer.next_seq += 1;
        writer.since_snapshot += added;
        self.maybe_snapshot(&state, &mut writer);
        drop(writer);
        Ok(AddResult {
            added,
            count: state.meta.read().by_id.len(),
        })
    }

    /// Stores one WAL entry (when persistent); returns the batch back.
    async fn log(&self, name: &str, seq: u64, op: WalOp) -> Result<Vec<Item>> {
        let Some(store) = &self.store else {
            return Ok(match op {
                WalOp::Add { items } => items,
                WalOp::Delete { .. } => vec![],
            });
        };
        let entry = WalEntry { seq, op };
        let body = serde_json::to_vec(&entry).map_err(|e| VectorError::Internal(e.to_string()))?;
        // Create-only: a sequence number is never written twice.
        store
            .put_opts(
                &path(&wal_key(name, seq))?,
                PutPayload::from(body),
                PutMode::Create.into(),
            )
            .await?;
        Ok(match entry.op {
            WalOp::Add { items } => items,
            WalOp::Delete { .. } => vec![],
        })
    }

    pub async fn delete_item(&self, name: &str, id: &str) -> Result<()> {
        let state = self.get_state(name)?;
        let mut writer = state.writer.lock().await;
        if !state.meta.read().by_id.contains_key(id) {
            return Err(VectorError::ItemNotFound {
                index: name.to_string(),
                id: id.to_string(),
            });
        }
        let seq = writer.next_seq;
        self.log(name, seq, WalOp::Delete { id: id.to_string() })
            .await?;
        state.apply_delete(id);
        writer.next_seq += 1;
        writer.since_snapshot += 1;
        self.maybe_snapshot(&state, &mut writer);
        Ok(())
    }

    /// Starts a background snapshot when enough has been written.
    fn maybe_snapshot(&self, state: &Arc<IndexState>, writer: &mut Writer) {
        let Some(store) = self.store.clone() else {
            return;
        };
        if writer.since_snapshot < self.cfg.snapshot_every || writer.snapshot_running {
            return;
        }
        writer.snapshot_running = true;
        writer.since_snapshot = 0;
        let state = state.clone();
        tokio::spawn(async move {
            if let Err(e) = snapshot(store, &state).await {
                tracing::warn!(index = %state.spec.name, error = %e, "background snapshot failed; the write-ahead log still has every write");
            }
            state.writer.lock().await.snapshot_running = false;
        });
    }

    /// Takes a snapshot now (also used at shutdown and by tests).
    pub async fn snapshot_now(&self, name: &str) -> Result<()> {
        let state = self.get_state(name)?;
        match &self.store {
            Some(store) => snapshot(store.clone(), &state).await,
            None => Ok(()),
        }
    }

    pub async fn search(&self, name: &str, req: SearchRequest) -> Result<Vec<Hit>> {
        let state = self.get_state(name)?;
        if req.k == 0 || req.k > MAX_K {
            return Err(VectorError::InvalidSearch(format!(
                "k must be between 1 and {MAX_K}, got {}",
                req.k
            )));
        }
        check_vector(&state.spec, &req.vector).map_err(VectorError::InvalidSearch)?;
        let ef = req.ef.unwrap_or(64).max(req.k);
        if ef > 100_000 {
            return Err(VectorError::InvalidSearch(format!(
                "ef must be at most 100000, got {ef}"
            )));
        }
        tokio::task::spawn_blocking(move || {
            let meta = state.meta.read();
            let hits = match &req.filter {
                Some(f) if !f.is_empty() => {
                    let matches = |key: u64| {
                        meta.items.get(&key).is_some_and(|(_, md)| {
                            md.as_ref()
                                .is_some_and(|md| f.iter().all(|(k, v)| md.get(k) == Some(v)))
                        })
                    };
                    state
                        .index
                        .search_filtered(&req.vector, req.k, ef, &matches)
                }
                _ => state.index.search(&req.vector, req.k, ef),
            }
            .map_err(|e| VectorError::InvalidSearch(e.to_string()))?;
            Ok(hits
                .into_iter()
                .filter_map(|h| {
                    meta.items.get(&h.key).map(|(id, md)| Hit {
                        id: id.clone(),
                        distance: h.distance,
                        metadata: md.clone(),
                    })
                })
                .collect())
        })
        .await
        .map_err(|e| VectorError::Internal(e.to_string()))?
    }
}

/// Snapshot: capture under the writer lock, store it, then drop the log
/// entries it covers.
async fn snapshot(store: Arc<dyn ObjectStore>, state: &Arc<IndexState>) -> Result<()> {
    let (blob, version) = {
        let writer = state.writer.lock().await;
        let version = writer.next_seq - 1;
        let st = state.clone();
        let blob = tokio::task::spawn_blocking(move || st.snapshot_blob(version))
            .await
            .map_err(|e| VectorError::Internal(e.to_string()))?;
        (blob, version)
    };
    let name = &state.spec.name;
    store
        .put_opts(
            &path(&snapshot_key(name))?,
            PutPayload::from(blob),
            PutMode::Overwrite.into(),
        )
        .await?;
    let mut covered = Vec::new();
    let mut s = store.list(Some(&path(&wal_dir(name))?));
    while let Some(m) = s.next().await {
        let loc = m?.location;
        let seq = loc
            .filename()
            .and_then(|f| f.strip_suffix(".json"))
            .and_then(|n| n.parse::<u64>().ok());
        if seq.is_some_and(|s| s <= version) {
            covered.push(loc);
        }
    }
    for loc in covered {
        let _ = store.delete(&loc).await;
    }
    Ok(())
}
