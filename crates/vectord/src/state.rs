//! One open index: the engine, the id ↔ key map with metadata, and the
//! writer state. Applying writes, answering searches and turning the index
//! into (and back from) an LHV1 snapshot live here; durability (the log, when
//! to snapshot) is the service's job.

use std::collections::HashMap;

use lakehouse_hnsw::{Index, Params};
use parking_lot::RwLock;
use serde_json::{Map, Value};

use crate::batch::Batch;
use crate::error::{Result, VectorError};
use crate::lhv1::{self, Envelope, EnvelopeMetadata, ItemRecord};
use crate::service::{Hit, IndexInfo, IndexSpec};

/// Largest item key and log sequence number: no index gets near 2^62
/// writes, so counters below it never overflow, and a stored value above it
/// is damage.
pub(crate) const MAX_COUNTER: u64 = 1 << 62;

#[derive(Default)]
pub(crate) struct Meta {
    pub by_id: HashMap<String, u64>,
    pub items: HashMap<u64, (String, Option<Map<String, Value>>)>,
    pub next_key: u64,
}

pub(crate) struct Writer {
    /// The next WAL sequence number.
    pub next_seq: u64,
    /// Items written since the last snapshot.
    pub since_snapshot: usize,
    pub snapshot_running: bool,
}

pub(crate) struct IndexState {
    pub spec: IndexSpec,
    pub index: Index,
    pub meta: RwLock<Meta>,
    pub writer: tokio::sync::Mutex<Writer>,
}

impl IndexState {
    pub fn new(spec: IndexSpec) -> Result<Self> {
        let params = Params::new(spec.dim, spec.metric)
            .with_m(spec.m)
            .with_ef_construction(spec.ef_construction);
        let index = Index::new(params).map_err(|e| VectorError::InvalidParams(e.to_string()))?;
        Ok(Self::with_index(
            spec,
            index,
            Meta {
                next_key: 1,
                ..Default::default()
            },
            1,
        ))
    }

    fn with_index(spec: IndexSpec, index: Index, meta: Meta, next_seq: u64) -> Self {
        Self {
            spec,
            index,
            meta: RwLock::new(meta),
            writer: tokio::sync::Mutex::new(Writer {
                next_seq,
                since_snapshot: 0,
                snapshot_running: false,
            }),
        }
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
                    self.index.delete(old);
                    meta.items.remove(&old);
                }
                let key = meta.next_key;
                meta.next_key += 1;
                meta.by_id.insert(id.clone(), key);
                meta.items.insert(key, (id, md));
                batch.push((key, &values[i * dim..(i + 1) * dim]));
            }
        }
        self.index
            .insert_batch(&batch)
            .map_err(|e| VectorError::Internal(format!("index insert: {e}")))
    }

    pub fn apply_delete(&self, id: &str) -> bool {
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

    pub fn count(&self) -> usize {
        self.meta.read().by_id.len()
    }

    pub fn info(&self) -> IndexInfo {
        IndexInfo {
            name: self.spec.name.clone(),
            dim: self.spec.dim,
            metric: self.spec.metric,
            m: self.spec.m,
            ef_construction: self.spec.ef_construction,
            count: self.count(),
            memory_bytes: self.index.memory_bytes(),
        }
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
        let hits = match filter {
            Some(f) if !f.is_empty() => {
                let matches = |key: u64| {
                    meta.items.get(&key).is_some_and(|(_, md)| {
                        md.as_ref()
                            .is_some_and(|md| f.iter().all(|(k, v)| md.get(k) == Some(v)))
                    })
                };
                self.index.search_filtered(query, k, ef, &matches)
            }
            _ => self.index.search(query, k, ef),
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
            if r.key >= meta.next_key {
                return Err(corrupt(format!(
                    "item {:?} has key {}, not below next_key {}",
                    r.id, r.key, meta.next_key
                )));
            }
            if meta.items.contains_key(&r.key) {
                return Err(corrupt(format!("key {} is listed twice", r.key)));
            }
            if meta.by_id.insert(r.id.clone(), r.key).is_some() {
                return Err(corrupt(format!("id {:?} is listed twice", r.id)));
            }
            meta.items.insert(r.key, (r.id, r.metadata));
        }
        if meta.by_id.len() != index.len() {
            return Err(corrupt(format!(
                "{} items in the envelope, {} in the graph",
                meta.by_id.len(),
                index.len()
            )));
        }
        let version = env.version;
        Ok((
            Self::with_index(env.params, index, meta, version + 1),
            version,
        ))
    }
}
