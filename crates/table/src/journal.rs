//! The journal of a running write statement, so that a statement that dies
//! (an error, a cancelled request, `kill -9`) leaves no orphan files.
//!
//! A statement that writes data files (SQL `INSERT`, `CREATE TABLE AS`,
//! `DELETE`, `UPDATE`, `MERGE`) gets a [`Journal`] at
//! `_sql/inflight/<statement>.json` and writes through [`Journal::store`]:
//! before a data file's first byte is stored, its key is added to the
//! journal and the journal is stored again. A statement that fails deletes
//! the files it listed ([`Journal::abort`]); one that commits only deletes
//! its journal. At start-up, [`recover`] settles what a crash left: every
//! listed file that no version after the statement's base version added is
//! deleted, then the journal. Vacuum keeps the files a journal lists.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use serde::{Deserialize, Serialize};

use crate::{DATASETS_PREFIX, LOG_DIR, Result, Tables};

/// Where the journals of running statements are.
pub const JOURNAL_PREFIX: &str = "_sql/inflight/";

/// A journal's content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub dataset: String,
    pub statement: String,
    /// The table version the statement read (`None`: it creates the table).
    pub base: Option<i64>,
    /// The data files written so far, in order.
    pub files: Vec<String>,
}

/// One running statement's journal.
#[derive(Debug)]
pub struct Journal {
    root: Arc<dyn ObjectStore>,
    key: Path,
    statement: String,
    record: tokio::sync::Mutex<Record>,
}

impl Journal {
    /// Stores the journal of `statement`, which writes `dataset`'s files.
    pub async fn begin(
        root: Arc<dyn ObjectStore>,
        dataset: &str,
        statement: &str,
        base: Option<i64>,
    ) -> Result<Arc<Self>> {
        let record = Record {
            dataset: dataset.to_string(),
            statement: statement.to_string(),
            base,
            files: vec![],
        };
        let key = Path::from(format!("{JOURNAL_PREFIX}{statement}.json"));
        root.put(&key, payload(&record)).await?;
        Ok(Arc::new(Self {
            root,
            key,
            statement: statement.to_string(),
            record: tokio::sync::Mutex::new(record),
        }))
    }

    /// The store the statement writes through: data files of the dataset
    /// are journaled before they are created.
    pub fn store(self: &Arc<Self>) -> Arc<dyn ObjectStore> {
        Arc::new(Journaled(self.clone()))
    }

    /// The statement's id (unique; names its files where the statement
    /// chooses them).
    pub fn statement(&self) -> &str {
        &self.statement
    }

    /// The files written so far.
    pub async fn files(&self) -> Vec<String> {
        self.record.lock().await.files.clone()
    }

    async fn note(&self, location: &Path) -> object_store::Result<()> {
        let mut record = self.record.lock().await;
        let prefix = format!("{DATASETS_PREFIX}{}/", record.dataset);
        let key = location.as_ref();
        let log = format!("{prefix}{LOG_DIR}/");
        if !key.starts_with(&prefix) || key.starts_with(&log) {
            return Ok(());
        }
        if record.files.iter().any(|f| f == key) {
            return Ok(());
        }
        record.files.push(key.to_string());
        self.root.put(&self.key, payload(&record)).await?;
        Ok(())
    }

    /// The statement committed: its files are the table's now.
    pub async fn finish(&self) {
        if let Err(e) = self.root.delete(&self.key).await {
            tracing::warn!(journal = %self.key, error = %e, "could not delete a finished statement's journal; the next start removes it");
        }
    }

    /// The statement failed: deletes its files that no version took (a
    /// statement cancelled just after its commit keeps them), then the
    /// journal. Best effort: what fails stays for the next start's
    /// [`recover`].
    pub async fn abort(&self) {
        let (dataset, base, files) = {
            let r = self.record.lock().await;
            (r.dataset.clone(), r.base, r.files.clone())
        };
        if files.is_empty() {
            return self.finish().await;
        }
        let taken = match Tables::new(self.root.clone())
            .added_since(&dataset, base)
            .await
        {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(journal = %self.key, error = %e, "could not read the table's log; the next start settles this statement");
                return;
            }
        };
        for f in files.iter().filter(|f| !taken.contains(f.as_str())) {
            match self.root.delete(&Path::from(f.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    tracing::warn!(file = %f, error = %e, "could not delete a failed statement's file; the next start retries");
                    return;
                }
            }
        }
        self.finish().await;
    }
}

fn payload(record: &Record) -> PutPayload {
    PutPayload::from(serde_json::to_vec(record).unwrap_or_default())
}

/// Settles the journals a crash left: deletes each listed file that no
/// version after the statement's base added, then the journal. Returns how
/// many journals it settled and the datasets whose statements did commit
/// (their catalog entry may lag the table's log).
pub async fn recover(root: Arc<dyn ObjectStore>) -> Result<(usize, Vec<String>)> {
    let prefix = Path::from(JOURNAL_PREFIX.trim_end_matches('/'));
    let mut listing = root.list(Some(&prefix));
    let mut keys = Vec::new();
    while let Some(m) = listing.next().await {
        keys.push(m?.location);
    }
    let tables = Tables::new(root.clone());
    let mut committed = Vec::new();
    let settled = keys.len();
    for key in keys {
        let bytes = root.get(&key).await?.bytes().await?;
        let Ok(record) = serde_json::from_slice::<Record>(&bytes) else {
            tracing::warn!(journal = %key, "removing an unreadable statement journal");
            root.delete(&key).await?;
            continue;
        };
        let added = tables.added_since(&record.dataset, record.base).await?;
        let mut kept = false;
        for f in &record.files {
            if added.contains(f) {
                kept = true;
                continue;
            }
            match root.delete(&Path::from(f.as_str())).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        tracing::info!(dataset = %record.dataset, statement = %record.statement, files = record.files.len(), committed = kept, "settled an interrupted statement");
        if kept {
            committed.push(record.dataset.clone());
        }
        root.delete(&key).await?;
    }
    Ok((settled, committed))
}

/// The keys every running statement's journal lists (vacuum keeps them).
pub async fn journaled_files(root: &dyn ObjectStore) -> Result<Vec<String>> {
    let prefix = Path::from(JOURNAL_PREFIX.trim_end_matches('/'));
    let mut listing = root.list(Some(&prefix));
    let mut out = Vec::new();
    while let Some(m) = listing.next().await {
        let key = m?.location;
        let bytes = match root.get(&key).await {
            Ok(r) => r.bytes().await?,
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        if let Ok(r) = serde_json::from_slice::<Record>(&bytes) {
            out.extend(r.files);
        }
    }
    Ok(out)
}

/// The store a statement writes through.
#[derive(Debug)]
struct Journaled(Arc<Journal>);

impl std::fmt::Display for Journaled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Journaled({})", self.0.root)
    }
}

#[async_trait]
impl ObjectStore for Journaled {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.0.note(location).await?;
        self.0.root.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.0.note(location).await?;
        self.0.root.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.0.root.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.0.root.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.0.root.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.0.root.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.0.root.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.0.root.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.0.note(to).await?;
        self.0.root.copy_opts(from, to, options).await
    }
}
