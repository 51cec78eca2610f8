//! Indexes that follow a dataset: catching up with the dataset's current
//! version, in the background and on demand.
//!
//! The dataset is the source of truth, so such an index has no write-ahead
//! log. A catch-up ([`catch_up`]) compares the set of object keys the index
//! reflects with the manifest's `objects`: the items of removed objects are
//! deleted, the rows of added objects are read (only the index's columns,
//! one record batch at a time) and inserted. Appends, replaces, SQL
//! DELETE/UPDATE/MERGE (which rewrite files) and compaction are all that
//! same diff. One catch-up runs at a time per index (the writer lock).
//!
//! **What searchers see.** New rows go into the engine first while their
//! metadata waits (the state's `staged` count); meanwhile searches keep only
//! hits whose metadata is known, i.e. they answer from the version the index
//! reported before. The commit then, under the metadata write lock (which
//! every search holds for reading), adds the new rows' metadata, deletes
//! the removed objects' items and sets the new version: a search sees the
//! old version or the new one, never a mix, and `version` on its hits says
//! which. A catch-up that fails (a bad vector, a column of another type, the
//! store failing) takes its inserted rows out again, changes nothing
//! searchers can see, keeps its reason in `source.error` and is retried at
//! the next tick.
//!
//! **Persistence.** After a catch-up that changed the index, it is
//! snapshotted (LHV1, with the objects and version it reflects) once
//! `snapshot_every` items changed or [`SNAPSHOT_AFTER`] passed since the
//! last snapshot, and at shutdown ([`VectorService::flush`]). A restart
//! loads the last snapshot and catches up from there, so whatever a
//! `kill -9` interrupts, the index ends equal to the dataset again.
//!
//! **Tombstones.** Deleted items stay in the engine as tombstones; when
//! they outnumber the live items (a replace, a compaction), the engine is
//! rebuilt from the live ones and swapped in under the metadata write lock.
//!
//! [`VectorService::flush`]: super::VectorService::flush

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use lakehouse_catalogd::{Catalog, ErrorKind, ObjectRef};
use lakehouse_common::TextEmbedder;
use object_store::ObjectStore;
use parking_lot::RwLock;

use super::{VectorConfig, blocking, snapshot};
use crate::batch::check_vector;
use crate::error::{Result, VectorError};
use crate::source::{ObjectRows, Rows};
use crate::state::{IndexState, MAX_FILES, ObjectEntry, Writer, item_key};

/// A dataset index changed less than `snapshot_every` items is snapshotted
/// once its last snapshot is this old.
pub const SNAPSHOT_AFTER: Duration = Duration::from_secs(30);

/// Rebuild the engine once tombstones are more than this many and more than
/// the live items.
const COMPACT_MIN_TOMBSTONES: usize = 1024;

/// What following datasets needs: the catalog naming them, the store
/// holding their objects, the embedding model for text columns; set when
/// the service is assembled, read at every catch-up.
pub(crate) struct Sources {
    /// Where snapshots go (`None`: ephemeral).
    pub store: Option<Arc<dyn ObjectStore>>,
    pub cfg: VectorConfig,
    pub catalog: RwLock<Option<Arc<dyn Catalog>>>,
    pub data: RwLock<Option<Arc<dyn ObjectStore>>>,
    pub embedder: RwLock<Option<Arc<dyn TextEmbedder>>>,
}

impl Sources {
    pub fn new(store: Option<Arc<dyn ObjectStore>>, cfg: VectorConfig) -> Self {
        Self {
            store,
            cfg,
            catalog: RwLock::new(None),
            data: RwLock::new(None),
            embedder: RwLock::new(None),
        }
    }

    pub fn catalog(&self) -> Result<Arc<dyn Catalog>> {
        self.catalog.read().clone().ok_or(VectorError::NoCatalog)
    }

    pub fn data(&self) -> Result<Arc<dyn ObjectStore>> {
        self.data.read().clone().ok_or(VectorError::NoCatalog)
    }

    /// The embedding model, or the 501 naming the setting.
    pub fn embedder(&self) -> Result<Arc<dyn TextEmbedder>> {
        self.embedder
            .read()
            .clone()
            .ok_or_else(|| VectorError::Embed(lakehouse_common::embed::not_configured()))
    }
}

/// Whether a catalog error means the dataset is not there.
pub(crate) fn is_gone(e: &lakehouse_catalogd::CatalogError) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::InvalidName)
}

/// Starts the background catch-up of a dataset index: after `first` (a
/// new index at once; a loaded one after an interval, once the service is
/// assembled), then every `sync_interval` until the index is dropped (none
/// when the interval is 0).
pub(crate) fn spawn(sources: &Arc<Sources>, state: &Arc<IndexState>, first: Duration) {
    let interval = sources.cfg.sync_interval;
    if interval.is_zero() {
        return;
    }
    let (sources, weak) = (sources.clone(), Arc::downgrade(state));
    tokio::spawn(async move {
        tokio::time::sleep(first).await;
        loop {
            let Some(state) = weak.upgrade() else {
                return;
            };
            if state.dropped.load(Ordering::Acquire) {
                return;
            }
            catch_up(&sources, &state).await;
            drop(state);
            tokio::time::sleep(interval).await;
        }
    });
}

/// Brings a dataset index up to its dataset's current version (waiting for
/// a catch-up in progress), records the outcome in its `source.error`, and
/// snapshots it when due.
pub(crate) async fn catch_up(sources: &Arc<Sources>, state: &Arc<IndexState>) {
    let mut writer = state.writer.lock().await;
    if state.dropped.load(Ordering::Acquire) {
        return;
    }
    let outcome = sync_locked(sources, state).await;
    let (changed, error) = match outcome {
        Ok(s) if s.gone => (
            s.changed,
            Some(
                VectorError::DatasetNotFound(state.spec.source.dataset.clone().unwrap_or_default())
                    .to_string()
                    + ": the index is empty until a dataset of that name exists again",
            ),
        ),
        Ok(s) => (s.changed, None),
        Err(e) => {
            tracing::warn!(index = %state.spec.name, error = %e, "catching up with the dataset failed; retrying at the next tick");
            (0, Some(e.to_string()))
        }
    };
    if let Some(r) = state.meta.write().source.as_mut() {
        r.error = error;
    }
    writer.since_snapshot += changed;
    snapshot_if_due(sources, state, &mut writer).await;
}

/// Snapshots under the writer lock (so a drop cannot race it) when enough
/// changed or the last snapshot is old.
async fn snapshot_if_due(sources: &Sources, state: &Arc<IndexState>, writer: &mut Writer) {
    let Some(store) = sources.store.clone() else {
        return;
    };
    let due = writer.since_snapshot >= sources.cfg.snapshot_every
        || (writer.since_snapshot > 0 && writer.last_snapshot.elapsed() >= SNAPSHOT_AFTER);
    if !due || writer.snapshot_running {
        return;
    }
    match snapshot::store_locked(store, state, writer).await {
        Ok(()) => {}
        Err(e) => {
            tracing::warn!(index = %state.spec.name, error = %e, "snapshot of a dataset index failed; the next catch-up tries again")
        }
    }
}

/// The outcome of one catch-up.
struct Synced {
    /// Items added plus items removed.
    changed: usize,
    /// The dataset does not exist (the index was emptied).
    gone: bool,
}

async fn sync_locked(sources: &Arc<Sources>, state: &Arc<IndexState>) -> Result<Synced> {
    let catalog = sources.catalog()?;
    let data = sources.data()?;
    let dataset = state.spec.source.dataset.clone().unwrap_or_default();
    let manifest = match catalog.get(&dataset).await {
        Ok(m) => Some(m),
        Err(e) if is_gone(&e) => None,
        Err(e) => return Err(VectorError::Catalog(e)),
    };
    let (version, objects) = match manifest {
        Some(m) => (Some(m.table_version.unwrap_or(m.version)), m.objects),
        None => (None, Vec::new()),
    };
    let gone = version.is_none();
    let changed = apply(sources, state, &data, version, objects).await?;
    if changed > 0 {
        compact_if_due(state).await?;
    }
    Ok(Synced { changed, gone })
}

/// The items one catch-up read, inserted into the engine but not yet
/// visible.
#[derive(Default)]
struct Staged {
    keys: Vec<u64>,
    ids: Vec<String>,
    metadata: Vec<Option<serde_json::Map<String, serde_json::Value>>>,
    /// Keys given to the text index.
    texts: Vec<u64>,
    objects: Vec<(String, ObjectEntry)>,
}

/// Applies the diff between what the index reflects and `objects`;
/// returns how many items changed.
async fn apply(
    sources: &Arc<Sources>,
    state: &Arc<IndexState>,
    data: &Arc<dyn ObjectStore>,
    version: Option<u64>,
    objects: Vec<ObjectRef>,
) -> Result<usize> {
    let (removed, added, next_file) = {
        let meta = state.meta.read();
        let r = meta
            .source
            .as_ref()
            .ok_or_else(|| VectorError::Internal("not a dataset index".into()))?;
        let current: HashSet<&str> = objects.iter().map(|o| o.key.as_str()).collect();
        let removed: Vec<(String, ObjectEntry)> = r
            .objects
            .iter()
            .filter(|(k, _)| !current.contains(k.as_str()))
            .map(|(k, o)| (k.clone(), *o))
            .collect();
        let mut seen = HashSet::new();
        let added: Vec<ObjectRef> = objects
            .iter()
            .filter(|o| !r.objects.contains_key(&o.key) && seen.insert(o.key.as_str()))
            .cloned()
            .collect();
        (removed, added, r.next_file)
    };
    if removed.is_empty() && added.is_empty() {
        if let Some(r) = state.meta.write().source.as_mut() {
            r.version = version;
        }
        return Ok(0);
    }
    if next_file + added.len() as u64 > MAX_FILES {
        return Err(VectorError::Internal(
            "the index ran out of object numbers; drop and create it again".into(),
        ));
    }
    let embedder = match state.spec.source.column {
        None => Some(model_of(sources, state)?),
        Some(_) => None,
    };
    let (st, store) = (state.clone(), data.clone());
    let handle = tokio::runtime::Handle::current();
    let staged = blocking(move || {
        let mut staged = Staged::default();
        let r = handle.block_on(stage(&st, &store, &added, next_file, embedder, &mut staged));
        if r.is_err() {
            unstage(&st, &staged);
        }
        r.map(|()| staged)
    })
    .await?;
    Ok(commit(state, removed, staged, version))
}

/// The configured model, if it is the one the index was built with.
fn model_of(sources: &Sources, state: &IndexState) -> Result<Arc<dyn TextEmbedder>> {
    let e = sources.embedder()?;
    let built = state
        .meta
        .read()
        .source
        .as_ref()
        .and_then(|r| r.model.clone());
    if e.dim() != state.spec.dim || built.as_deref().is_some_and(|m| m != e.model()) {
        return Err(VectorError::InvalidSource(format!(
            "the index was built with model {:?} ({} dimensions); the configured model is {:?} \
             ({} dimensions): drop the index and create it again",
            built.unwrap_or_default(),
            state.spec.dim,
            e.model(),
            e.dim()
        )));
    }
    Ok(e)
}

/// Reads the added objects and inserts their rows into the engine (and
/// their texts into the text index), keeping their metadata in `staged`.
async fn stage(
    state: &Arc<IndexState>,
    data: &Arc<dyn ObjectStore>,
    added: &[ObjectRef],
    next_file: u64,
    embedder: Option<Arc<dyn TextEmbedder>>,
    staged: &mut Staged,
) -> Result<()> {
    let engine = state.engine();
    for (i, obj) in added.iter().enumerate() {
        let file = next_file + i as u64;
        let mut reader = ObjectRows::open(data, obj, file, &state.spec).await?;
        let mut skipped = 0;
        while let Some(mut rows) = reader.next().await? {
            skipped += rows.skipped;
            if let Some(e) = &embedder {
                rows.values = embed_rows(state, e.as_ref(), &rows, &obj.key)?;
            }
            state.staged.fetch_add(rows.keys.len(), Ordering::AcqRel);
            staged.keys.extend_from_slice(&rows.keys);
            let dim = state.spec.dim;
            let items: Vec<(u64, &[f32])> = rows
                .keys
                .iter()
                .enumerate()
                .map(|(i, k)| (*k, &rows.values[i * dim..(i + 1) * dim]))
                .collect();
            engine
                .insert_batch(&items)
                .map_err(|e| VectorError::Internal(format!("index insert: {e}")))?;
            if let Some(text) = &state.text {
                let mut t = text.write();
                for (k, s) in rows.keys.iter().zip(&rows.texts) {
                    if let Some(s) = s {
                        t.insert(*k, s);
                        staged.texts.push(*k);
                    }
                }
            }
            staged.ids.append(&mut rows.ids);
            staged.metadata.append(&mut rows.metadata);
        }
        let entry = ObjectEntry {
            file,
            rows: reader.rows_read(),
            skipped,
        };
        staged.objects.push((obj.key.clone(), entry));
    }
    Ok(())
}

/// Embeds one batch's texts (every item has one: rows without are
/// skipped when the vectors are embedded), checking what the model gives.
fn embed_rows(
    state: &IndexState,
    e: &dyn TextEmbedder,
    rows: &Rows,
    object: &str,
) -> Result<Vec<f32>> {
    let texts: Vec<&str> = rows
        .texts
        .iter()
        .map(|t| t.as_deref().unwrap_or(""))
        .collect();
    let values = e.embed(&texts)?;
    let dim = state.spec.dim;
    if values.len() != texts.len() * dim {
        return Err(VectorError::Internal(format!(
            "the embedding model gave {} values for {} texts of dimension {dim}",
            values.len(),
            texts.len()
        )));
    }
    for (i, v) in values.chunks_exact(dim).enumerate() {
        check_vector(&state.spec, v).map_err(|reason| {
            VectorError::InvalidSource(format!(
                "object {object}: the embedding of item key {}: {reason}",
                rows.keys[i]
            ))
        })?;
    }
    Ok(values)
}

/// Takes a failed catch-up's rows out of the engine and the text index.
fn unstage(state: &IndexState, staged: &Staged) {
    let engine = state.engine();
    for k in &staged.keys {
        engine.delete(*k);
    }
    if let Some(text) = &state.text {
        let mut t = text.write();
        for k in &staged.texts {
            t.remove(*k);
        }
    }
    state.staged.fetch_sub(staged.keys.len(), Ordering::AcqRel);
}

/// Makes a catch-up visible at once: the staged rows' metadata in, the
/// removed objects' items out, the new version. Returns the items changed.
fn commit(
    state: &IndexState,
    removed: Vec<(String, ObjectEntry)>,
    staged: Staged,
    version: Option<u64>,
) -> usize {
    let engine = state.engine();
    let mut meta = state.meta.write();
    let mut text = state.text.as_ref().map(|t| t.write());
    let mut changed = staged.keys.len();
    let meta = &mut *meta;
    for (_, o) in &removed {
        for row in 0..o.rows {
            let k = item_key(o.file, row);
            if meta.items.remove(&k).is_some() {
                engine.delete(k);
                changed += 1;
            }
            if let Some(t) = text.as_mut() {
                t.remove(k);
            }
        }
    }
    let n = staged.keys.len();
    for ((k, id), md) in staged.keys.into_iter().zip(staged.ids).zip(staged.metadata) {
        meta.items.insert(k, (id, md));
    }
    if let Some(r) = meta.source.as_mut() {
        for (key, _) in &removed {
            r.objects.remove(key);
        }
        for (key, o) in staged.objects {
            r.next_file = r.next_file.max(o.file + 1);
            r.objects.insert(key, o);
        }
        r.version = version;
        meta.next_key = item_key(r.next_file, 0);
    }
    state.staged.fetch_sub(n, Ordering::AcqRel);
    changed
}

/// Rebuilds the engine without its tombstones once they outnumber the live
/// items.
async fn compact_if_due(state: &Arc<IndexState>) -> Result<()> {
    let engine = state.engine();
    let e = engine.clone();
    let stats = blocking(move || Ok(e.stats())).await?;
    if stats.deleted < COMPACT_MIN_TOMBSTONES || stats.deleted <= stats.live {
        return Ok(());
    }
    let fresh = blocking(move || Ok(engine.compact())).await?;
    let _meta = state.meta.write();
    state.replace_engine(fresh);
    Ok(())
}
