//! Snapshots: taken in the background every `snapshot_every` written items,
//! on demand, and for every written index at shutdown ([`VectorService::flush`]).
//! A snapshot records the last log sequence number it contains; the log
//! entries it covers are deleted once it is stored.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};

use super::{PREFIX, VectorService, blocking, path, snapshot_key};
use crate::error::Result;
use crate::state::{IndexState, Writer};
use crate::wal;

impl VectorService {
    /// Starts a background snapshot when enough has been written.
    pub(super) fn maybe_snapshot(&self, state: &Arc<IndexState>, writer: &mut Writer) {
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

    /// At shutdown, after the last request: snapshots every index written
    /// since its last snapshot, so the next start loads one file instead of
    /// replaying the log. Waits for a background snapshot in progress (two
    /// at once could leave the older one last). Returns how many it took.
    pub async fn flush(&self) -> Result<usize> {
        let Some(store) = self.store.clone() else {
            return Ok(0);
        };
        let states: Vec<Arc<IndexState>> = self.indexes.read().values().cloned().collect();
        let mut taken = 0;
        for state in states {
            loop {
                let mut writer = state.writer.lock().await;
                if writer.snapshot_running {
                    drop(writer);
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    continue;
                }
                if writer.since_snapshot == 0 {
                    break;
                }
                writer.snapshot_running = true;
                writer.since_snapshot = 0;
                drop(writer);
                let r = snapshot(store.clone(), &state).await;
                state.writer.lock().await.snapshot_running = false;
                r?;
                taken += 1;
                break;
            }
        }
        Ok(taken)
    }

    /// Takes a snapshot now (also used by tests).
    pub async fn snapshot_now(&self, name: &str) -> Result<()> {
        let state = self.get_state(name)?;
        match &self.store {
            Some(store) => snapshot(store.clone(), &state).await,
            None => Ok(()),
        }
    }
}

/// A dataset index's snapshot, taken and stored with the writer lock held
/// by the caller (it has no log to trim, and a drop cannot slip between).
pub(super) async fn store_locked(
    store: Arc<dyn ObjectStore>,
    state: &Arc<IndexState>,
    writer: &mut Writer,
) -> Result<()> {
    if state.dropped.load(Ordering::Acquire) {
        return Ok(());
    }
    let version = writer.next_seq - 1;
    let st = state.clone();
    let blob = blocking(move || Ok(st.snapshot_blob(version))).await?;
    store
        .put_opts(
            &path(&snapshot_key(&state.spec.name))?,
            PutPayload::from(blob),
            PutMode::Overwrite.into(),
        )
        .await?;
    writer.since_snapshot = 0;
    writer.last_snapshot = Instant::now();
    Ok(())
}

/// Snapshot: capture under the writer lock, store it, then drop the log
/// entries it covers.
pub(super) async fn snapshot(store: Arc<dyn ObjectStore>, state: &Arc<IndexState>) -> Result<()> {
    let (blob, version) = {
        let mut writer = state.writer.lock().await;
        if state.dropped.load(Ordering::Acquire) {
            return Ok(());
        }
        let version = writer.next_seq - 1;
        let st = state.clone();
        let blob = blocking(move || Ok(st.snapshot_blob(version))).await?;
        writer.last_snapshot = Instant::now();
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
    let mut s = store.list(Some(&path(&wal::dir(PREFIX, name))?));
    while let Some(m) = s.next().await {
        let loc = m?.location;
        let seq = loc.filename().and_then(wal::parse_name).map(|(s, _)| s);
        if seq.is_some_and(|s| s <= version) {
            covered.push(loc);
        }
    }
    for loc in covered {
        let _ = store.delete(&loc).await;
    }
    Ok(())
}
