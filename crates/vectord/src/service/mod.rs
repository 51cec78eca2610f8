//! The vector service core: named HNSW indexes with string ids and metadata.
//!
//! Durability: every write (a batch add, an item delete) is first stored as
//! one write-ahead-log object, `_vectors/<name>.wal/<seq>.bin` (see
//! [`crate::wal`]), and applied to the in-memory index only after that put
//! succeeded — so an acknowledged write survives `kill -9`. Snapshots
//! (`_vectors/<name>.lhv1`) are taken in the background every
//! `snapshot_every` items; they record the last WAL sequence number they
//! contain, and the WAL objects they cover are then deleted. Opening replays
//! the snapshot, then the newer WAL entries, in order ([`crate::recovery`]).
//! Without a store (ephemeral mode) nothing is persisted.
//!
//! Validation comes before anything is written (seed O-I3): a batch with one
//! bad item changes nothing. The bounds on every parameter are in
//! [`crate::limits`].
//!
//! An index created with a `dataset` follows that dataset instead of taking
//! writes ([`follow`]): built from its objects and kept equal to its current
//! version in the background; `add` and item deletes are refused with
//! [`VectorError::FollowsDataset`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use lakehouse_catalogd::Catalog;
use lakehouse_common::TextEmbedder;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};
use parking_lot::RwLock;

use crate::batch::Batch;
use crate::error::{Result, VectorError};
pub use crate::limits::{MAX_BATCH, MAX_K};
use crate::state::{IndexState, Writer};
use crate::wal;

mod create;
pub(crate) mod follow;
mod search;
mod snapshot;

pub use crate::api::{
    AddResult, Hit, IndexInfo, IndexSpec, Item, SearchBatch, SearchRequest, SourceInfo, SourceSpec,
    Vectors,
};
pub use follow::SNAPSHOT_AFTER;

pub const PREFIX: &str = "_vectors/";

/// Service settings.
#[derive(Debug, Clone)]
pub struct VectorConfig {
    /// Take a snapshot after this many written items.
    pub snapshot_every: usize,
    /// How often an index that follows a dataset checks it for a new
    /// version; zero: only when asked (`POST …/sync`).
    pub sync_interval: Duration,
}

impl Default for VectorConfig {
    fn default() -> Self {
        Self {
            snapshot_every: 50_000,
            sync_interval: Duration::from_secs(1),
        }
    }
}

pub struct VectorService {
    store: Option<Arc<dyn ObjectStore>>,
    cfg: VectorConfig,
    indexes: RwLock<BTreeMap<String, Arc<IndexState>>>,
    /// Serialises create/delete of indexes (not searches or adds).
    admin: tokio::sync::Mutex<()>,
    /// The catalog, dataset store and embedding model.
    sources: Arc<follow::Sources>,
}

pub(crate) fn snapshot_key(name: &str) -> String {
    format!("{PREFIX}{name}.lhv1")
}

pub(crate) fn path(key: &str) -> Result<Path> {
    Path::parse(key).map_err(|e| VectorError::Internal(format!("key {key:?}: {e}")))
}

/// Runs CPU-heavy work on a blocking thread.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| VectorError::Internal(e.to_string()))?
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

impl VectorService {
    /// An ephemeral service: nothing is persisted.
    pub fn ephemeral(cfg: VectorConfig) -> Self {
        Self {
            store: None,
            sources: Arc::new(follow::Sources::new(None, cfg.clone())),
            cfg,
            indexes: RwLock::new(BTreeMap::new()),
            admin: tokio::sync::Mutex::new(()),
        }
    }

    /// Opens a persistent service: loads every index's snapshot and replays
    /// its write-ahead log. A corrupt snapshot or log entry stops the load
    /// with an error naming its key (see [`crate::recovery`]). Indexes that
    /// follow a dataset start catching up in the background (once
    /// [`VectorService::with_datasets`] gave the catalog).
    pub async fn open(store: Arc<dyn ObjectStore>, cfg: VectorConfig) -> Result<Self> {
        let indexes = crate::recovery::load_all(&store).await?;
        let sources = Arc::new(follow::Sources::new(Some(store.clone()), cfg.clone()));
        for state in indexes.values().filter(|s| s.follows_dataset()) {
            follow::spawn(&sources, state, cfg.sync_interval);
        }
        Ok(Self {
            store: Some(store),
            cfg,
            indexes: RwLock::new(indexes),
            admin: tokio::sync::Mutex::new(()),
            sources,
        })
    }

    /// Lets indexes follow datasets: `catalog` names them and `store` holds
    /// their objects. Without it creating a dataset index is
    /// [`VectorError::NoCatalog`].
    pub fn with_datasets(self, catalog: Arc<dyn Catalog>, store: Arc<dyn ObjectStore>) -> Self {
        *self.sources.catalog.write() = Some(catalog);
        *self.sources.data.write() = Some(store);
        self
    }

    /// The sentence-embedding model for text columns and `{"text": …}`
    /// searches (`None`: such requests answer 501 `no_embedding_model`).
    pub fn with_embedder(self, embedder: Option<Arc<dyn TextEmbedder>>) -> Self {
        *self.sources.embedder.write() = embedder;
        self
    }

    fn get_state(&self, name: &str) -> Result<Arc<IndexState>> {
        self.indexes
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| VectorError::IndexNotFound(name.to_string()))
    }

    /// An index that takes writes (not one that follows a dataset).
    fn writable(&self, name: &str) -> Result<Arc<IndexState>> {
        let state = self.get_state(name)?;
        if state.follows_dataset() {
            return Err(VectorError::FollowsDataset(name.to_string()));
        }
        Ok(state)
    }

    /// Catches an index that follows a dataset up with it now (see
    /// [`Vectors::sync`]).
    pub async fn sync(&self, name: &str) -> Result<IndexInfo> {
        let state = self.get_state(name)?;
        if state.follows_dataset() {
            follow::catch_up(&self.sources, &state).await;
        }
        Ok(state.info())
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
        // No catch-up or snapshot of it after this.
        state.dropped.store(true, Ordering::Release);
        if let Some(store) = &self.store {
            let mut keys = vec![snapshot_key(name)];
            let mut s = store.list(Some(&path(&wal::dir(PREFIX, name))?));
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

    /// [`VectorService::add_batch`] of items.
    pub async fn add(&self, name: &str, items: Vec<Item>) -> Result<AddResult> {
        self.add_batch(name, Batch::from_items(items)).await
    }

    /// Validates the whole batch, logs it, then applies it.
    pub async fn add_batch(&self, name: &str, batch: Batch) -> Result<AddResult> {
        let state = self.writable(name)?;
        let added = batch.len();
        let st = state.clone();
        let batch = blocking(move || batch.validate(&st.spec).map(|()| batch)).await?;
        let mut writer = state.writer.lock().await;
        let seq = take_seq(&mut writer);
        let batch = match &self.store {
            Some(store) => {
                let dim = state.spec.dim;
                let (batch, body) = blocking(move || {
                    let body = wal::encode_add(seq, &batch, dim);
                    Ok((batch, body))
                })
                .await?;
                self.log(store, name, seq, body).await?;
                batch
            }
            None => batch,
        };
        let st = state.clone();
        blocking(move || st.apply_add(batch)).await?;
        writer.since_snapshot += added;
        self.maybe_snapshot(&state, &mut writer);
        drop(writer);
        Ok(AddResult {
            added,
            count: state.count(),
        })
    }

    /// Stores one WAL entry, create-only: a sequence number is never
    /// written twice.
    async fn log(
        &self,
        store: &Arc<dyn ObjectStore>,
        name: &str,
        seq: u64,
        body: Vec<u8>,
    ) -> Result<()> {
        store
            .put_opts(
                &path(&wal::key(PREFIX, name, seq))?,
                PutPayload::from(body),
                PutMode::Create.into(),
            )
            .await?;
        Ok(())
    }

    /// One item with its vector and metadata.
    pub fn get_item(&self, name: &str, id: &str) -> Result<Item> {
        let state = self.get_state(name)?;
        state.item(id).ok_or_else(|| VectorError::ItemNotFound {
            index: name.to_string(),
            id: id.to_string(),
        })
    }

    pub async fn delete_item(&self, name: &str, id: &str) -> Result<()> {
        let state = self.writable(name)?;
        let mut writer = state.writer.lock().await;
        if !state.meta.read().by_id.contains_key(id) {
            return Err(VectorError::ItemNotFound {
                index: name.to_string(),
                id: id.to_string(),
            });
        }
        let seq = take_seq(&mut writer);
        if let Some(store) = &self.store {
            self.log(store, name, seq, wal::encode_delete(seq, id))
                .await?;
        }
        state.apply_delete(id);
        writer.since_snapshot += 1;
        self.maybe_snapshot(&state, &mut writer);
        Ok(())
    }
}

/// The next sequence number. It is spent whatever happens next: a put that
/// failed may still have stored the entry, and reusing its number would make
/// every later create-only put fail.
fn take_seq(writer: &mut Writer) -> u64 {
    let seq = writer.next_seq;
    writer.next_seq += 1;
    seq
}

#[async_trait::async_trait]
impl Vectors for VectorService {
    async fn create(&self, spec: IndexSpec) -> Result<(IndexInfo, bool)> {
        VectorService::create(self, spec).await
    }
    async fn list(&self) -> Result<Vec<IndexInfo>> {
        Ok(VectorService::list(self))
    }
    async fn get(&self, name: &str) -> Result<IndexInfo> {
        VectorService::get(self, name)
    }
    async fn drop_index(&self, name: &str) -> Result<()> {
        VectorService::drop_index(self, name).await
    }
    async fn add(&self, name: &str, items: Vec<Item>) -> Result<AddResult> {
        VectorService::add(self, name, items).await
    }
    async fn add_batch(&self, name: &str, batch: Batch) -> Result<AddResult> {
        VectorService::add_batch(self, name, batch).await
    }
    async fn search(&self, name: &str, req: SearchRequest) -> Result<Vec<Hit>> {
        VectorService::search(self, name, req).await
    }
    async fn search_batch(&self, name: &str, req: SearchBatch) -> Result<Vec<Vec<Hit>>> {
        VectorService::search_batch(self, name, req).await
    }
    async fn get_item(&self, name: &str, id: &str) -> Result<Item> {
        VectorService::get_item(self, name, id)
    }
    async fn delete_item(&self, name: &str, id: &str) -> Result<()> {
        VectorService::delete_item(self, name, id).await
    }
    async fn sync(&self, name: &str) -> Result<IndexInfo> {
        VectorService::sync(self, name).await
    }
}
