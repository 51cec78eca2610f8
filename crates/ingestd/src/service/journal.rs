//! The in-flight journal and the rules for deleting objects: an ingest's
//! journal (`_ingest/inflight/<ingest-id>.json`) names its objects while it
//! runs, so those of an ingest killed mid-way are deleted at the next start;
//! nothing a dataset does not own, or a manifest lists, is ever deleted.

use std::collections::HashSet;

use futures::StreamExt;
use lakehouse_catalogd::{ErrorKind, dataset_prefix, owns};
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use super::{INFLIGHT_PREFIX, Ingestor, catalog_err, is_ingest_object, path};
use crate::error::IngestError;

#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Inflight {
    pub(super) dataset: String,
    pub(super) ingest_id: String,
}

impl Ingestor {
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
    pub(super) async fn ingest_objects(
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
    pub(super) async fn delete_own_uploads(&self, dataset: &str, keys: &[String]) {
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
    pub(super) async fn delete_unreferenced(&self, dataset: &str, keys: Vec<String>) -> bool {
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
}
