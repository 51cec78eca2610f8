//! storaged's rules as an `ObjectStore` wrapper, so a service running in the
//! same process as storaged gets what one calling it over HTTP gets (as
//! `object_store`'s `LimitStore` wraps a store with a limit):
//!
//! - the key grammar ([`ObjectKey::parse`]) on every key read or written;
//! - the object size cap (`[storaged].max_object_size`) on puts and uploads;
//! - the per-key commit lock, the same lock stripes as the HTTP core's
//!   ([`crate::Storage`]), so every commit through either is atomic with
//!   respect to the others, and `PutMode::Create` / `Update` and
//!   `CopyMode::Create` hold on every backend (checked under the lock; this
//!   relies on storaged being its backend's only writer, as the core does).

use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, ObjectStoreExt, PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
    RenameOptions, RenameTargetMode, UploadPart,
};
use tokio::sync::Mutex;

use crate::error::StorageError;
use crate::key::ObjectKey;

const STORE: &str = "storaged";

/// Lock stripes shared by the HTTP core and [`RulesStore`].
pub(crate) type Locks = Arc<[Mutex<()>]>;

pub(crate) fn new_locks(n: usize) -> Locks {
    (0..n).map(|_| Mutex::new(())).collect()
}

/// The stripe that serialises commits to `key`.
pub(crate) fn stripe<'a>(locks: &'a Locks, key: &str) -> &'a Mutex<()> {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    &locks[(h.finish() as usize) % locks.len()]
}

/// An `ObjectStore` that applies storaged's rules to `inner`.
#[derive(Debug, Clone)]
pub struct RulesStore {
    inner: Arc<dyn ObjectStore>,
    max_object_size: u64,
    locks: Locks,
}

impl fmt::Display for RulesStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RulesStore({})", self.inner)
    }
}

fn generic(e: StorageError) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: Box::new(e),
    }
}

/// `location` as a key of the grammar, or the error storaged answers.
fn check_key(location: &Path) -> object_store::Result<ObjectKey> {
    ObjectKey::parse(location.as_ref()).map_err(|source| {
        generic(StorageError::InvalidKey {
            key: location.to_string(),
            source,
        })
    })
}

impl RulesStore {
    pub(crate) fn new(inner: Arc<dyn ObjectStore>, max_object_size: u64, locks: Locks) -> Self {
        Self {
            inner,
            max_object_size,
            locks,
        }
    }

    fn too_large(&self) -> object_store::Error {
        generic(StorageError::TooLarge {
            limit: self.max_object_size,
        })
    }

    async fn current(&self, location: &Path) -> object_store::Result<Option<ObjectMeta>> {
        match self.inner.head(location).await {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `mode`'s precondition against the object now at `location` (called
    /// under its lock).
    async fn check(&self, location: &Path, mode: &PutMode) -> object_store::Result<()> {
        let refused = |what: String| object_store::Error::Precondition {
            path: location.to_string(),
            source: what.into(),
        };
        match mode {
            PutMode::Overwrite => Ok(()),
            PutMode::Create => match self.current(location).await? {
                None => Ok(()),
                Some(_) => Err(object_store::Error::AlreadyExists {
                    path: location.to_string(),
                    source: "the object exists".into(),
                }),
            },
            PutMode::Update(v) => match (self.current(location).await?, &v.e_tag) {
                (None, _) => Err(refused("no object to update".into())),
                (Some(m), Some(want)) if m.e_tag.as_deref() == Some(want.as_str()) => Ok(()),
                (Some(m), want) => Err(refused(format!(
                    "expected ETag {want:?}, the object's is {:?}",
                    m.e_tag
                ))),
            },
        }
    }
}

#[async_trait]
impl ObjectStore for RulesStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let key = check_key(location)?;
        if payload.content_length() as u64 > self.max_object_size {
            return Err(self.too_large());
        }
        let _guard = stripe(&self.locks, key.as_str()).lock().await;
        self.check(location, &opts.mode).await?;
        let opts = PutOptions {
            mode: PutMode::Overwrite,
            ..opts
        };
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let key = check_key(location)?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(CappedUpload {
            inner,
            key: key.as_str().to_string(),
            written: 0,
            store: self.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        check_key(location)?;
        self.inner.get_opts(location, options).await
    }

    /// The backend's own (the fs backend's reads ranges from one open file;
    /// the trait's default would issue a request per coalesced range).
    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        check_key(location)?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let store = self.clone();
        locations
            .then(move |location| {
                let store = store.clone();
                async move {
                    let location = location?;
                    let key = check_key(&location)?;
                    let _guard = stripe(&store.locks, key.as_str()).lock().await;
                    store.inner.delete(&location).await?;
                    Ok(location)
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        check_key(from)?;
        let key = check_key(to)?;
        let _guard = stripe(&self.locks, key.as_str()).lock().await;
        if options.mode == CopyMode::Create {
            // A missing source is `NotFound` whatever the destination holds.
            self.inner.head(from).await?;
            self.check(to, &PutMode::Create).await?;
        }
        let options = CopyOptions {
            mode: CopyMode::Overwrite,
            ..options
        };
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        self.rename_under_rules(from, to, options).await
    }
}

impl RulesStore {
    /// A rename is a copy then a delete of the source, each under the rules.
    async fn rename_under_rules(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        let mode = match options.target_mode {
            RenameTargetMode::Overwrite => CopyMode::Overwrite,
            RenameTargetMode::Create => CopyMode::Create,
        };
        let copy = CopyOptions {
            mode,
            extensions: options.extensions,
        };
        self.copy_opts(from, to, copy).await?;
        self.delete(from).await
    }
}

/// A multipart upload that stops at the size cap and completes under the
/// key's lock.
#[derive(Debug)]
struct CappedUpload {
    inner: Box<dyn MultipartUpload>,
    key: String,
    written: u64,
    store: RulesStore,
}

#[async_trait]
impl MultipartUpload for CappedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.written += data.content_length() as u64;
        if self.written > self.store.max_object_size {
            let e = self.store.too_large();
            return Box::pin(async move { Err(e) });
        }
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        if self.written > self.store.max_object_size {
            return Err(self.store.too_large());
        }
        let _guard = stripe(&self.store.locks, &self.key).lock().await;
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}
