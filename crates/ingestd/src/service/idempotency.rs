//! `Idempotency-Key`: a retry returns the first result and never adds the
//! data twice, across restarts too. The record is written (pending) before
//! the data and marked done after the registration.

use bytes::Bytes;
use futures::Stream;
use lakehouse_catalogd::ObjectRef;
use object_store::ObjectStoreExt;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{IDEMPOTENCY_PREFIX, IngestResult, Ingestor, is_ingest_object, new_ingest_id, path};
use crate::error::IngestError;
use crate::options::{IngestOptions, Mode};

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
enum IdempotencyRecord {
    Pending { dataset: String, ingest_id: String },
    Done { result: Box<IngestResult> },
}

impl Ingestor {
    /// [`Ingestor::ingest`] with a key: the stored result of an earlier
    /// request with it, or this one's, recorded.
    pub(super) async fn ingest_idempotent<S, E>(
        &self,
        dataset: &str,
        opts: IngestOptions,
        body: S,
        key: &str,
    ) -> Result<IngestResult, IngestError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: std::fmt::Display + Send + 'static,
    {
        if key.is_empty() || key.len() > 256 {
            return Err(IngestError::InvalidOption(
                "Idempotency-Key must be 1 to 256 characters".to_string(),
            ));
        }
        let mut h = Sha256::new();
        h.update(dataset.as_bytes());
        h.update([0]);
        h.update(key.as_bytes());
        let digest: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        let record_path = path(&format!("{IDEMPOTENCY_PREFIX}{digest}.json"))?;
        let stripe =
            u64::from_str_radix(&digest[..8], 16).unwrap_or(0) as usize % self.idem_locks.len();
        let _guard = self.idem_locks[stripe].lock().await;

        match self.read_record(&record_path).await? {
            Some(IdempotencyRecord::Done { mut result }) => {
                result.replayed = true;
                return Ok(*result);
            }
            Some(IdempotencyRecord::Pending {
                dataset: d,
                ingest_id,
            }) => {
                if let Some(done) = self
                    .settle_pending(&record_path, d, &ingest_id, opts.mode)
                    .await?
                {
                    return Ok(done);
                }
            }
            None => {}
        }
        let ingest_id = new_ingest_id();
        self.put_json(
            &record_path,
            &IdempotencyRecord::Pending {
                dataset: dataset.to_string(),
                ingest_id: ingest_id.clone(),
            },
        )
        .await?;
        match self.ingest_once(dataset, opts, body, Some(ingest_id)).await {
            Ok(result) => {
                self.put_json(
                    &record_path,
                    &IdempotencyRecord::Done {
                        result: Box::new(result.clone()),
                    },
                )
                .await?;
                Ok(result)
            }
            // Maybe registered: keep the pending record, so a retry with
            // this key looks at the manifest instead of ingesting again.
            Err(e @ IngestError::Unconfirmed { .. }) => Err(e),
            Err(e) => {
                // Nothing was registered: forget the key so a retry runs afresh.
                let _ = self.store.delete(&record_path).await;
                Err(e)
            }
        }
    }

    /// The stored record of a key, if any.
    async fn read_record(
        &self,
        record_path: &Path,
    ) -> Result<Option<IdempotencyRecord>, IngestError> {
        match self.store.get(record_path).await {
            Ok(r) => Ok(Some(
                serde_json::from_slice::<IdempotencyRecord>(&r.bytes().await?).map_err(|e| {
                    IngestError::Internal(format!("corrupt idempotency record {record_path}: {e}"))
                })?,
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// A first attempt that stopped part-way: its result if it registered
    /// (recorded as done), else `None` once its orphaned objects are gone.
    async fn settle_pending(
        &self,
        record_path: &Path,
        dataset: String,
        ingest_id: &str,
        mode: Mode,
    ) -> Result<Option<IngestResult>, IngestError> {
        if let Some(m) = self.current(&dataset).await? {
            let objects: Vec<ObjectRef> = m
                .objects
                .iter()
                .filter(|o| is_ingest_object(&dataset, ingest_id, &o.key))
                .cloned()
                .collect();
            if !objects.is_empty() {
                let result = IngestResult {
                    dataset,
                    mode,
                    rows: objects.iter().map(|o| o.row_count).sum(),
                    objects,
                    manifest: m,
                    replayed: true,
                    csv: None,
                };
                let done = IdempotencyRecord::Done {
                    result: Box::new(result.clone()),
                };
                self.put_json(record_path, &done).await?;
                return Ok(Some(result));
            }
        }
        // It did not register: its objects (if any) are orphans.
        let keys = self.ingest_objects(&dataset, ingest_id).await?;
        self.delete_unreferenced(&dataset, keys).await;
        Ok(None)
    }
}
