//! One open index: the engine, the id ↔ key map with metadata, and the
//! writer state. Applying writes, answering searches and turning the index
//! into (and back from) an LHV1 snapshot live here; durability (the log, when
//! to snapshot) is the service's job.
//!
//! An index that follows a dataset ([`Reflected`]) keys its items by
//! position instead of by id: item key = `file << 32 | row`, where `file` is
//! the small number the index gave the dataset object the row is in. Its ids
//! need not be unique, and a sync replaces whole objects.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use lakehouse_hnsw::{Index, Metric, Params};
use parking_lot::RwLock;
use serde_json::{Map, Value};

use crate::batch::Batch;
use crate::bm25::TextIndex;
use crate::error::{Result, VectorError};
use crate::lhv1::{self, Envelope, EnvelopeMetadata, ItemRecord, SourceRecord};
use crate::service::{Hit, IndexInfo, IndexSpec, Item, SourceInfo};

/// Largest item key and log sequence number: no index gets near 2^62
/// writes, so counters below it never overflow, and a stored value above it
/// is damage.
pub(crate) const MAX_COUNTER: u64 = 1 << 62;

/// Bits of a dataset item's key that hold its row within its object.
pub(crate) const ROW_BITS: u32 = 32;
/// Object numbers stay below this, so every key stays below
/// [`MAX_COUNTER`].
pub(crate) const MAX_FILES: u64 = MAX_COUNTER >> ROW_BITS;

/// The key of row `row` of the object numbered `file`.
pub(crate) fn item_key(file: u64, row: u64) -> u64 {
    (file << ROW_BITS) | row
}

#[derive(Default)]
pub(crate) struct Meta {
    /// Plain indexes only: id → key (a dataset index's ids need not be
    /// unique).
    pub by_id: HashMap<String, u64>,
    pub items: HashMap<u64, (String, Option<Map<String, Value>>)>,
    pub next_key: u64,
    /// What a dataset index reflects (`None` for a plain index).
    pub source: Option<Reflected>,
}

/// The dataset state an index reflects.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reflected {
    /// The dataset version (table version, else manifest version).
    pub version: Option<u64>,
    /// Object key → what the index holds of it.
    pub objects: BTreeMap<String, ObjectEntry>,
    /// The next object number.
    pub next_file: u64,
    /// The embedding model the vectors come from, when they are embedded.
    pub model: Option<String>,
    /// Why the last catch-up failed (cleared by the next that succeeds).
    pub error: Option<String>,
}

/// One dataset object as the index holds it: its number (its rows' keys are
/// `item_key(file, 0..rows)`), its row count and how many rows are no item.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ObjectEntry {
    pub file: u64,
    pub rows: u64,
    pub skipped: u64,
}

pub(crate) struct Writer {
    /// The next WAL sequence number.
    pub next_seq: u64,
    /// Items written since the last snapshot.
    pub since_snapshot: usize,
    pub snapshot_running: bool,
    /// When the last snapshot was stored (or the index loaded).
    pub last_snapshot: std::time::Instant,
}

pub(crate) struct IndexState {
    pub spec: IndexSpec,
    /// The engine; replaced whole when a dataset index drops its tombstones.
    index: RwLock<Arc<Index>>,
    pub meta: RwLock<Meta>,
    /// The full-text index of an index with a `text_column`.
    pub text: Option<RwLock<TextIndex>>,
    pub writer: tokio::sync::Mutex<Writer>,
    /// Items in the engine whose metadata is not in `meta` yet (a sync
    /// between its inserts and its commit): searches then keep only hits
    /// `meta` knows.
    pub staged: AtomicUsize,
    /// Set once the index is dropped: its follower stops, no snapshot is
    /// stored.
    pub dropped: AtomicBool,
}

impl IndexState {
    pub fn new(spec: IndexSpec, model: Option<String>) -> Result<Self> {
        let params = Params::new(spec.dim, spec.metric)
            .with_m(spec.m)
            .with_ef_construction(spec.ef_construction);
        let index = Index::new(params).map_err(|e| VectorError::InvalidParams(e.to_string()))?;
        let source = spec.follows_dataset().then(|| Reflected {
            model,
            ..Reflected::default()
        });
        let text = spec.source.text_column.as_ref().map(|_| TextIndex::new());
        let meta = Meta {
            next_key: if source.is_some() { 0 } else { 1 },
            source,
            ..Default::default()
        };
        Ok(Self::with_index(spec, index, meta, text, 1))
    }

    fn with_index(
        spec: IndexSpec,
        index: Index,
        meta: Meta,
        text: Option<TextIndex>,
        next_seq: u64,
    ) -> Self {
        Self {
            spec,
            index: RwLock::new(Arc::new(index)),
            meta: RwLock::new(meta),
            text: text.map(RwLock::new),
            writer: tokio::sync::Mutex::new(Writer {
                next_seq,
                since_snapshot: 0,
                snapshot_running: false,
                last_snapshot: std::time::Instant::now(),
            }),
            staged: AtomicUsize::new(0),
            dropped: AtomicBool::new(false),
        }
    }

    /// The engine as it is now.
    pub fn engine(&self) -> Arc<Index> {
        self.index.read().clone()
    }

    /// Replaces the engine (call with `meta` write-locked, so no search
    /// sees one engine with the other's metadata).
    pub fn replace_engine(&self, index: Index) {
        *self.index.write() = Arc::new(index);
    }

    pub fn follows_dataset(&self) -> bool {
        self.spec.follows_dataset()
    }

    /// Applies a validated batch: upsert by id (the last of duplicate ids
    /// wins). CPU-heavy: call on a blocking thread.
    pub fn apply_add(&self, batch: Batch) -> Result<()> {
        let dim = self.spec.dim;
        let (ids, values, metadata) = batch.into_parts();
        // The last occurrence of each id wins.
        let keep: Vec<bool> = {
            let mut last: HashMap<&str, usize> = HashMap::with_capacity(ids.len());
            for (i, id) in ids.iter().enumerate() {
                last.insert(id.as_str(), i);
            }
            (0..ids.len()).map(|i| last[ids[i].as_str()] == i).collect()
        };
        let engine = self.engine();
        let mut batch: Vec<(u64, &[f32])> = Vec::with_capacity(ids.len());
        {
            let mut meta = self.meta.write();
            if meta.next_key.saturating_add(ids.len() as u64) > MAX_COUNTER {
                return Err(VectorError::Internal("the index ran out of keys".into()));
            }
            for (i, (id, md)) in ids.into_iter().zip(metadata).enumerate() {
                if !keep[i] {
                    continue;
                }
                if let Some(old) = meta.by_id.get(&id).copied() {
                    engine.delete(old);
                    meta.items.remove(&old);
                }
                let key = meta.next_key;
                meta.next_key += 1;
                meta.by_id.insert(id.clone(), key);
                meta.items.insert(key, (id, md));
                batch.push((key, &values[i * dim..(i + 1) * dim]));
            }
        }
        engine
            .insert_batch(&batch)
            .map_err(|e| VectorError::Internal(format!("index insert: {e}")))
    }

    pub fn apply_delete(&self, id: &str) -> bool {
        let mut meta = self.meta.write();
        match meta.by_id.remove(id) {
            Some(key) => {
                meta.items.remove(&key);
                self.engine().delete(key);
                true
            }
            None => false,
        }
    }

    /// One item as stored: its vector (unit length in a cosine index) and
    /// metadata. In a dataset index the first row with that id (a scan).
    pub fn item(&self, id: &str) -> Option<Item> {
        let meta = self.meta.read();
        let key = match meta.by_id.get(id) {
            Some(k) => *k,
            None if meta.source.is_some() => meta
                .items
                .iter()
                .filter(|(_, (i, _))| i == id)
                .map(|(k, _)| *k)
                .min()?,
            None => return None,
        };
        let vector = self.engine().get(key)?;
        let metadata = meta.items.get(&key).and_then(|(_, md)| md.clone());
        Some(Item {
            id: id.to_string(),
            vector,
            metadata,
        })
    }

    pub fn count(&self) -> usize {
        self.meta.read().items.len()
    }

    pub fn info(&self) -> IndexInfo {
        let meta = self.meta.read();
        let mut memory_bytes = self.engine().memory_bytes();
        if let Some(t) = &self.text {
            memory_bytes += t.read().memory_bytes();
        }
        IndexInfo {
            name: self.spec.name.clone(),
            dim: self.spec.dim,
            metric: self.spec.metric,
            m: self.spec.m,
            ef_construction: self.spec.ef_construction,
            count: meta.items.len(),
            memory_bytes,
            source: meta.source.as_ref().map(|r| self.source_info(r)),
        }
    }

    fn source_info(&self, r: &Reflected) -> SourceInfo {
        let s = &self.spec.source;
        SourceInfo {
            dataset: s.dataset.clone().unwrap_or_default(),
            column: s.column.clone(),
            text_column: s.text_column.clone(),
            id_column: s.id_column.clone().unwrap_or_default(),
            metadata_columns: s.metadata_columns.clone(),
            model: r.model.clone(),
            version: r.version,
            objects: r.objects.len(),
            skipped_rows: r.objects.values().map(|o| o.skipped).sum(),
            error: r.error.clone(),
        }
    }

    /// The dataset version a search answers from (dataset indexes only).
    pub fn version(meta: &Meta) -> Option<u64> {
        meta.source.as_ref().and_then(|r| r.version)
    }

    /// One query's hits (checked by the caller). CPU-heavy.
    pub fn search_one(
        &self,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: Option<&Map<String, Value>>,
    ) -> Result<Vec<Hit>> {
        let meta = self.meta.read();
        let hits = self.nearest(&meta, query, k, ef, filter)?;
        let version = Self::version(&meta);
        Ok(hits
            .into_iter()
            .filter_map(|(key, distance)| {
                meta.items.get(&key).map(|(id, md)| Hit {
                    id: id.clone(),
                    distance,
                    metadata: md.clone(),
                    score: None,
                    version,
                })
            })
            .collect())
    }

    /// A hybrid search: the nearest-vector and BM25 lists (each the top
    /// `max(k, ef, HYBRID_DEPTH)` that match `filter`) fused by reciprocal
    /// rank; each hit has its vector distance and its fusion score.
    pub fn search_hybrid(
        &self,
        query: &[f32],
        text: &str,
        k: usize,
        ef: usize,
        filter: Option<&Map<String, Value>>,
    ) -> Result<Vec<Hit>> {
        let depth = k.max(ef).max(crate::limits::HYBRID_DEPTH);
        let meta = self.meta.read();
        let near = self.nearest(&meta, query, depth, ef.max(depth), filter)?;
        let filter = filter.filter(|f| !f.is_empty());
        let allow = |key: u64| match filter {
            Some(f) => meta_matches(&meta, key, f),
            None => meta.items.contains_key(&key),
        };
        let texts: Vec<u64> = match &self.text {
            Some(t) => t
                .read()
                .search(text, depth, Some(&allow))
                .into_iter()
                .map(|(key, _)| key)
                .collect(),
            None => Vec::new(),
        };
        let near_keys: Vec<u64> = near.iter().map(|(key, _)| *key).collect();
        let near: HashMap<u64, f32> = near.into_iter().collect();
        let fused = crate::bm25::rrf(&[&near_keys, &texts], crate::limits::RRF_K, k);
        let version = Self::version(&meta);
        Ok(fused
            .into_iter()
            .filter_map(|(key, score)| {
                let (id, md) = meta.items.get(&key)?;
                let distance = match near.get(&key) {
                    Some(d) => *d,
                    None => self.distance_to(query, key)?,
                };
                Some(Hit {
                    id: id.clone(),
                    distance,
                    metadata: md.clone(),
                    score: Some(score),
                    version,
                })
            })
            .collect())
    }

    /// The `k` nearest keys `meta` knows that match `filter`, with their
    /// distances.
    pub fn nearest(
        &self,
        meta: &Meta,
        query: &[f32],
        k: usize,
        ef: usize,
        filter: Option<&Map<String, Value>>,
    ) -> Result<Vec<(u64, f32)>> {
        let engine = self.engine();
        let filter = filter.filter(|f| !f.is_empty());
        let staged = self.staged.load(Ordering::Acquire) > 0;
        let hits = match filter {
            Some(f) => {
                let matches = |key: u64| meta_matches(meta, key, f);
                engine.search_filtered(query, k, ef, &matches)
            }
            // A sync is between its inserts and its commit: only what
            // `meta` knows is an answer (the version it reports).
            None if staged => {
                let known = |key: u64| meta.items.contains_key(&key);
                engine.search_filtered(query, k, ef, &known)
            }
            None => engine.search(query, k, ef),
        }
        .map_err(|e| VectorError::InvalidSearch(e.to_string()))?;
        Ok(hits.into_iter().map(|h| (h.key, h.distance)).collect())
    }

    /// The distance from `query` to a stored item, as the engine measures
    /// it (`None` if the key is gone).
    pub fn distance_to(&self, query: &[f32], key: u64) -> Option<f32> {
        let v = self.engine().get(key)?;
        Some(distance(self.spec.metric, query, &v))
    }

    /// A consistent snapshot blob (call with the writer lock held, so no
    /// write lands between the graph and the metadata).
    pub fn snapshot_blob(&self, version: u64) -> Vec<u8> {
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
        let source = meta.source.as_ref().map(|r| {
            let text = self.text.as_ref().map(|t| {
                let mut buf = Vec::new();
                t.read().encode(&mut buf);
                buf
            });
            SourceRecord::new(r, text.as_deref())
        });
        let envelope = Envelope {
            params: self.spec.clone(),
            metadata: EnvelopeMetadata {
                next_key: meta.next_key,
                items,
            },
            version,
            source,
        };
        let graph = self.engine().to_bytes();
        lhv1::encode(&envelope, &graph)
    }

    /// Rebuilds an index from its snapshot, checking that the envelope and
    /// the graph agree; returns it with the snapshot's version.
    pub fn from_snapshot(key: &str, blob: &[u8]) -> Result<(Self, u64)> {
        let corrupt = |reason: String| VectorError::Corrupt {
            key: key.to_string(),
            reason,
        };
        let (env, graph) = lhv1::decode(blob).map_err(|e| corrupt(e.to_string()))?;
        let index = Index::from_bytes(graph).map_err(|e| corrupt(format!("graph: {e}")))?;
        let p = index.params();
        if p.dim != env.params.dim
            || p.metric != env.params.metric
            || p.m != env.params.m
            || p.ef_construction != env.params.ef_construction
        {
            return Err(corrupt(
                "envelope parameters do not match the graph".to_string(),
            ));
        }
        if env.metadata.next_key > MAX_COUNTER || env.version > MAX_COUNTER {
            return Err(corrupt(format!(
                "next_key {} or version {} out of range",
                env.metadata.next_key, env.version
            )));
        }
        if env.params.follows_dataset() != env.source.is_some() {
            return Err(corrupt(
                "the envelope's source does not match its parameters".to_string(),
            ));
        }
        let (source, text) = match env.source {
            Some(s) => {
                let (r, text) = s.into_reflected().map_err(&corrupt)?;
                (Some(r), text)
            }
            None => (None, None),
        };
        let text = match (&env.params.source.text_column, source.is_some(), text) {
            (Some(_), true, Some(t)) => Some(t),
            (Some(_), true, None) => return Err(corrupt("no text index".to_string())),
            (None, _, Some(_)) => return Err(corrupt("an unexpected text index".to_string())),
            (Some(_), false, _) | (None, _, None) => None,
        };
        let mut meta = Meta {
            next_key: env.metadata.next_key,
            source,
            ..Default::default()
        };
        load_items(&mut meta, env.metadata.items, &index).map_err(&corrupt)?;
        if let Some(r) = &meta.source {
            check_reflected(r, &meta, text.as_ref()).map_err(&corrupt)?;
        }
        let version = env.version;
        Ok((
            Self::with_index(env.params, index, meta, text, version + 1),
            version,
        ))
    }
}

/// Whether the item under `key` has every `field = value` of `filter`.
pub(crate) fn meta_matches(meta: &Meta, key: u64, filter: &Map<String, Value>) -> bool {
    meta.items.get(&key).is_some_and(|(_, md)| {
        md.as_ref()
            .is_some_and(|md| filter.iter().all(|(k, v)| md.get(k) == Some(v)))
    })
}

/// The engine's distance between a query and a stored vector (stored cosine
/// vectors are unit length; the query is normalised here).
fn distance(metric: Metric, query: &[f32], stored: &[f32]) -> f32 {
    use lakehouse_hnsw::distance::{dot_portable, l2_portable};
    match metric {
        Metric::L2 => l2_portable(query, stored),
        Metric::Dot => 1.0 - dot_portable(query, stored),
        Metric::Cosine => {
            let n = dot_portable(query, query).sqrt();
            if n == 0.0 {
                return 1.0;
            }
            1.0 - dot_portable(query, stored) / n
        }
    }
}

/// Fills `meta` from the envelope's items, checking each against the graph.
fn load_items(
    meta: &mut Meta,
    items: Vec<ItemRecord>,
    index: &Index,
) -> std::result::Result<(), String> {
    let unique_ids = meta.source.is_none();
    for r in items {
        if !index.contains(r.key) {
            return Err(format!(
                "item {:?} (key {}) is not in the graph",
                r.id, r.key
            ));
        }
        if r.key >= meta.next_key {
            return Err(format!(
                "item {:?} has key {}, not below next_key {}",
                r.id, r.key, meta.next_key
            ));
        }
        if meta.items.contains_key(&r.key) {
            return Err(format!("key {} is listed twice", r.key));
        }
        if unique_ids && meta.by_id.insert(r.id.clone(), r.key).is_some() {
            return Err(format!("id {:?} is listed twice", r.id));
        }
        meta.items.insert(r.key, (r.id, r.metadata));
    }
    if meta.items.len() != index.len() {
        return Err(format!(
            "{} items in the envelope, {} in the graph",
            meta.items.len(),
            index.len()
        ));
    }
    Ok(())
}

/// A dataset index's reflected objects against its items: every item in a
/// listed object's rows, object numbers distinct and below `next_file`.
fn check_reflected(
    r: &Reflected,
    meta: &Meta,
    text: Option<&TextIndex>,
) -> std::result::Result<(), String> {
    if r.next_file > MAX_FILES || item_key(r.next_file, 0) != meta.next_key {
        return Err(format!(
            "next_file {} does not match next_key {}",
            r.next_file, meta.next_key
        ));
    }
    let mut rows_of: HashMap<u64, u64> = HashMap::with_capacity(r.objects.len());
    for (key, o) in &r.objects {
        if o.file >= r.next_file || rows_of.insert(o.file, o.rows).is_some() {
            return Err(format!(
                "object {key:?} has a bad or repeated number {}",
                o.file
            ));
        }
        if o.rows >= 1 << ROW_BITS || o.skipped > o.rows {
            return Err(format!(
                "object {key:?} has {} rows, {} skipped",
                o.rows, o.skipped
            ));
        }
    }
    for &key in meta.items.keys() {
        let (file, row) = (key >> ROW_BITS, key & ((1 << ROW_BITS) - 1));
        if rows_of.get(&file).is_none_or(|&rows| row >= rows) {
            return Err(format!("item key {key} is in no listed object"));
        }
    }
    let listed: u64 = r.objects.values().map(|o| o.rows - o.skipped).sum();
    if listed != meta.items.len() as u64 {
        return Err(format!(
            "the objects list {listed} items, the envelope {}",
            meta.items.len()
        ));
    }
    if let Some(t) = text
        && t.len() > meta.items.len()
    {
        return Err("the text index has more documents than the index has items".to_string());
    }
    Ok(())
}
