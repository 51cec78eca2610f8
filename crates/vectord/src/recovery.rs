//! Start-up: every index is loaded from its snapshot, then the log entries
//! newer than the snapshot are replayed in sequence order.
//!
//! Damage refuses the start, with an error naming the object: a snapshot or
//! log entry that does not decode (bad magic, checksum, truncation, a
//! sequence number that disagrees with its key, an item that no longer
//! validates), a log entry whose index has no snapshot, or an unreadable
//! name inside a log directory. Skipping any of them would silently drop
//! acknowledged writes; the operator decides (restore the object, or delete
//! it knowingly) and starts again. Log entries already covered by the
//! snapshot are not read at all. Objects under `_vectors/` that are neither
//! a snapshot nor in a log directory are ignored with a warning.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{Result, VectorError};
use crate::service::{PREFIX, blocking, path, snapshot_key};
use crate::state::{IndexState, MAX_COUNTER};
use crate::wal::{self, WalFormat, WalOp};

/// One log entry's key, sequence number and format.
struct Entry {
    key: String,
    seq: u64,
    format: WalFormat,
}

/// What is stored under `_vectors/`, sorted out by index.
#[derive(Default)]
struct Listing {
    snapshots: Vec<String>,
    /// Log entries by index name, in sequence order.
    logs: HashMap<String, Vec<Entry>>,
}

fn corrupt(key: &str, reason: impl Into<String>) -> VectorError {
    VectorError::Corrupt {
        key: key.to_string(),
        reason: reason.into(),
    }
}

async fn list(store: &Arc<dyn ObjectStore>) -> Result<Listing> {
    let mut out = Listing::default();
    let mut s = store.list(Some(&path(PREFIX.trim_end_matches('/'))?));
    while let Some(m) = s.next().await {
        let key = m?.location.as_ref().to_string();
        let rest = key.strip_prefix(PREFIX).unwrap_or(&key);
        if let Some((dir, file)) = rest.split_once('/') {
            let Some(name) = dir.strip_suffix(".wal") else {
                tracing::warn!(%key, "ignoring an unknown object under _vectors/");
                continue;
            };
            let (seq, format) = wal::parse_name(file)
                .filter(|(seq, _)| *seq <= MAX_COUNTER)
                .ok_or_else(|| corrupt(&key, "not a write-ahead-log entry name"))?;
            out.logs.entry(name.to_string()).or_default().push(Entry {
                key: key.clone(),
                seq,
                format,
            });
        } else if rest.ends_with(".lhv1") {
            out.snapshots.push(key);
        } else {
            tracing::warn!(%key, "ignoring an unknown object under _vectors/");
        }
    }
    out.snapshots.sort();
    for entries in out.logs.values_mut() {
        entries.sort_by_key(|e| e.seq);
        if let Some(w) = entries.windows(2).find(|w| w[0].seq == w[1].seq) {
            return Err(corrupt(
                &w[1].key,
                format!("sequence number {} is also used by {}", w[1].seq, w[0].key),
            ));
        }
    }
    Ok(out)
}

/// Loads every index: snapshot, then replay.
pub(crate) async fn load_all(
    store: &Arc<dyn ObjectStore>,
) -> Result<BTreeMap<String, Arc<IndexState>>> {
    let mut listing = list(store).await?;
    let mut indexes = BTreeMap::new();
    for key in &listing.snapshots {
        let blob = store.get(&path(key)?).await?.bytes().await?;
        let k = key.clone();
        let (state, version) = blocking(move || IndexState::from_snapshot(&k, &blob)).await?;
        let name = state.spec.name.clone();
        if snapshot_key(&name) != *key {
            return Err(corrupt(key, format!("holds index {name:?}")));
        }
        let state = Arc::new(state);
        let log = listing.logs.remove(&name).unwrap_or_default();
        if let Some(entry) = log.first().filter(|_| state.follows_dataset()) {
            return Err(corrupt(
                &entry.key,
                "a write-ahead-log entry of an index that follows a dataset (it has no log)",
            ));
        }
        let replayed = replay(store, &state, version, log).await?;
        tracing::info!(index = %name, items = state.count(), replayed, "vector index loaded");
        indexes.insert(name, state);
    }
    if let Some(entry) = listing.logs.values().flatten().next() {
        return Err(corrupt(
            &entry.key,
            "a write-ahead-log entry of an index that has no snapshot",
        ));
    }
    Ok(indexes)
}

/// Applies the entries newer than `version`, in order; returns how many.
async fn replay(
    store: &Arc<dyn ObjectStore>,
    state: &Arc<IndexState>,
    version: u64,
    log: Vec<Entry>,
) -> Result<usize> {
    let mut last = version;
    let mut replayed = 0;
    for e in log.into_iter().filter(|e| e.seq > version) {
        let body = store.get(&path(&e.key)?).await?.bytes().await?;
        let st = state.clone();
        let key = e.key.clone();
        blocking(move || {
            let op = wal::decode(&body, e.format, e.seq)
                .map_err(|err| corrupt(&key, err.to_string()))?;
            apply(&st, op).map_err(|err| corrupt(&key, err.to_string()))
        })
        .await?;
        last = e.seq;
        replayed += 1;
    }
    let mut writer = state.writer.lock().await;
    writer.next_seq = last + 1;
    // Replayed entries are not in the snapshot yet: the next snapshot
    // (background, or at shutdown) takes them in.
    writer.since_snapshot = replayed;
    drop(writer);
    Ok(replayed)
}

/// Applies one replayed entry, checking an add's ids and vectors again (an
/// entry that fails is damage, not a write to drop). Bounds added since the
/// entry was written (metadata size) are not applied to it.
fn apply(state: &IndexState, op: WalOp) -> Result<()> {
    match op {
        WalOp::Add(batch) => {
            batch.validate_vectors(&state.spec)?;
            state.apply_add(batch)
        }
        WalOp::Delete { id } => {
            state.apply_delete(&id);
            Ok(())
        }
    }
}
