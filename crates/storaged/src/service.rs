//! The storage core: validated keys, bounded object size, atomic and
//! conditional writes, ranged reads and paginated listing over any
//! `ObjectStore`.
//!
//! Conditional writes: the body is streamed to the backend *first* (as a
//! multipart upload, which no reader can see), and only the final commit —
//! re-check the condition, then complete — runs under a per-key lock. So the
//! check and the commit are atomic with respect to every other write through
//! this `Storage`, while the slow part (moving bytes) holds no lock. This
//! relies on storaged being the only writer to its backend, which the data-dir
//! lock enforces for the local filesystem.

use std::collections::BinaryHeap;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::FuturesOrdered;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, GetResult, MultipartUpload, ObjectMeta, ObjectStore, ObjectStoreExt,
    PutMode, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::backend::Backend;
use crate::error::{Result, StorageError};
use crate::key::ObjectKey;
use crate::rules::{Locks, RulesStore, new_locks, stripe};

/// Bodies up to this size are buffered and written with one `put`; larger
/// ones stream as a multipart upload in parts of this size.
pub const PART_SIZE: usize = 8 << 20;
/// Parts in flight per upload (bounds memory at about `PART_SIZE * (n + 1)`).
const PARTS_IN_FLIGHT: usize = 4;
/// Lock stripes for the per-key commit lock.
const LOCK_STRIPES: usize = 1024;
/// Largest page a listing returns.
pub const MAX_LIST_LIMIT: usize = 10_000;
pub const DEFAULT_LIST_LIMIT: usize = 1_000;

/// A write's precondition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PutCondition {
    #[default]
    None,
    /// `If-None-Match: *` — create only.
    IfNoneMatchAny,
    /// `If-Match: <etag>` — replace only this version; `*` = any existing.
    IfMatch(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutOutcome {
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectInfo {
    pub key: String,
    pub size: u64,
    pub etag: Option<String>,
    pub last_modified: DateTime<Utc>,
}

impl ObjectInfo {
    fn from_meta(m: ObjectMeta) -> Self {
        Self {
            key: m.location.as_ref().to_string(),
            size: m.size,
            etag: m.e_tag.map(|e| unquote(&e).to_string()),
            last_modified: m.last_modified,
        }
    }
}

/// A page of a listing; `next` (when present) is passed back as `after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListPage {
    pub objects: Vec<ObjectInfo>,
    pub next: Option<String>,
}

/// A read: an optional byte range and HTTP-style preconditions.
#[derive(Debug, Clone, Default)]
pub struct GetRequest {
    pub range: Option<GetRange>,
    pub if_match: Option<String>,
    pub if_none_match: Option<String>,
    pub if_modified_since: Option<DateTime<Utc>>,
    pub if_unmodified_since: Option<DateTime<Utc>>,
}

/// What a read returns: the object's metadata, the byte range served, and
/// the backend result to stream from (`None` for metadata-only reads).
#[derive(Debug)]
pub struct ReadResult {
    pub meta: ObjectMeta,
    pub range: Range<u64>,
    /// Whether a `Range` was honoured (206) rather than the whole object (200).
    pub partial: bool,
    pub body: Option<GetResult>,
}

/// The storage service core.
#[derive(Debug)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    sorted_listing: bool,
    max_object_size: u64,
    /// Commit locks, shared with the stores [`Storage::store`] hands out.
    locks: Locks,
}

impl Storage {
    pub fn new(backend: &Backend, max_object_size: u64) -> Self {
        Self {
            store: backend.store.clone(),
            sorted_listing: backend.sorted_listing,
            max_object_size,
            locks: new_locks(LOCK_STRIPES),
        }
    }

    /// The store for services in this process: the backend under storaged's
    /// rules (key grammar, size cap, this core's commit locks), so they get
    /// what a service calling over HTTP gets.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        Arc::new(RulesStore::new(
            self.store.clone(),
            self.max_object_size,
            self.locks.clone(),
        ))
    }

    pub fn max_object_size(&self) -> u64 {
        self.max_object_size
    }

    fn lock_for(&self, key: &ObjectKey) -> &Mutex<()> {
        stripe(&self.locks, key.as_str())
    }

    async fn head_opt(&self, path: &Path) -> Result<Option<ObjectMeta>> {
        match self.store.head(path).await {
            Ok(m) => Ok(Some(m)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    async fn check_put_condition(&self, key: &ObjectKey, cond: &PutCondition) -> Result<()> {
        if *cond == PutCondition::None {
            return Ok(());
        }
        let current = self.head_opt(&key.to_path()).await?;
        match (cond, current) {
            (PutCondition::None, _) => Ok(()),
            (PutCondition::IfNoneMatchAny, None) => Ok(()),
            (PutCondition::IfNoneMatchAny, Some(_)) => Err(StorageError::AlreadyExists {
                key: key.to_string(),
            }),
            (PutCondition::IfMatch(_), None) => Err(StorageError::PreconditionFailed {
                key: key.to_string(),
                detail: "If-Match given but no object exists".to_string(),
            }),
            (PutCondition::IfMatch(want), Some(m)) => {
                if etag_matches(want, m.e_tag.as_deref()) {
                    Ok(())
                } else {
                    Err(StorageError::PreconditionFailed {
                        key: key.to_string(),
                        detail: format!(
                            "If-Match {want:?} does not match the current ETag {:?}",
                            m.e_tag.as_deref().map(unquote).unwrap_or("")
                        ),
                    })
                }
            }
        }
    }

    /// Streams `body` into `key`. Nothing is visible until the whole body has
    /// arrived and the condition still holds; then the object appears at once.
    pub async fn put<S, E>(
        &self,
        key: &ObjectKey,
        body: S,
        cond: PutCondition,
        content_length: Option<u64>,
    ) -> Result<PutOutcome>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        if let Some(len) = content_length
            && len > self.max_object_size
        {
            return Err(StorageError::TooLarge {
                limit: self.max_object_size,
            });
        }
        // Fail fast, before any bytes move; re-checked at commit.
        self.check_put_condition(key, &cond).await?;
        let mut received = Received::default();
        if let Err(e) = self.receive(key, body, &mut received).await {
            if let Some(u) = received.upload {
                u.abort().await;
            }
            return Err(e);
        }
        let total = received.total;
        let res = match received.upload {
            None => self.commit_small(key, &cond, received.pending).await?,
            Some(u) => self.commit_upload(key, &cond, u, received.pending).await?,
        };
        Ok(PutOutcome {
            key: key.to_string(),
            size: total,
            etag: res.e_tag.map(|e| unquote(&e).to_string()),
        })
    }

    /// Reads `body` into `r`: bytes past the last whole part stay pending;
    /// whole parts go to a multipart upload started at the first one.
    async fn receive<S, E>(&self, key: &ObjectKey, body: S, r: &mut Received) -> Result<()>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Send,
        E: std::fmt::Display,
    {
        let mut body = std::pin::pin!(body);
        let mut pending_len = 0usize;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| StorageError::Body(e.to_string()))?;
            r.total += chunk.len() as u64;
            if r.total > self.max_object_size {
                return Err(StorageError::TooLarge {
                    limit: self.max_object_size,
                });
            }
            pending_len += chunk.len();
            r.pending.push(chunk);
            while pending_len >= PART_SIZE {
                let part = take_prefix(&mut r.pending, PART_SIZE);
                pending_len -= PART_SIZE;
                if r.upload.is_none() {
                    r.upload = Some(self.start_upload(key).await?);
                }
                if let Some(u) = r.upload.as_mut() {
                    u.put_part(part).await?;
                }
            }
        }
        Ok(())
    }

    /// A small object: one atomic put, under the key lock.
    async fn commit_small(
        &self,
        key: &ObjectKey,
        cond: &PutCondition,
        pending: Vec<Bytes>,
    ) -> Result<PutResult> {
        let payload = PutPayload::from_iter(pending);
        let guard = self.lock_for(key).lock().await;
        self.check_put_condition(key, cond).await?;
        let res = self
            .store
            .put_opts(
                &key.to_path(),
                payload,
                PutOptions::from(PutMode::Overwrite),
            )
            .await;
        drop(guard);
        match res {
            Ok(r) => Ok(r),
            Err(e) => Err(self.diagnose_write_error(key, e).await),
        }
    }

    /// A large object: the last part, then the condition re-checked and the
    /// upload completed under the key lock (aborted on any failure).
    async fn commit_upload(
        &self,
        key: &ObjectKey,
        cond: &PutCondition,
        mut u: StreamingUpload,
        pending: Vec<Bytes>,
    ) -> Result<PutResult> {
        let flushed = async {
            if pending.iter().any(|b| !b.is_empty()) {
                u.put_part(PutPayload::from_iter(pending)).await?;
            }
            u.flush().await
        }
        .await;
        if let Err(e) = flushed {
            u.abort().await;
            return Err(e);
        }
        let guard = self.lock_for(key).lock().await;
        if let Err(e) = self.check_put_condition(key, cond).await {
            drop(guard);
            u.abort().await;
            return Err(e);
        }
        let res = u.inner.complete().await;
        drop(guard);
        match res {
            Ok(r) => Ok(r),
            Err(e) => {
                u.abort().await;
                Err(self.diagnose_write_error(key, e).await)
            }
        }
    }

    async fn start_upload(&self, key: &ObjectKey) -> Result<StreamingUpload> {
        match self
            .store
            .put_multipart_opts(&key.to_path(), PutMultipartOptions::default())
            .await
        {
            Ok(inner) => Ok(StreamingUpload {
                inner,
                in_flight: FuturesOrdered::new(),
            }),
            Err(e) => Err(self.diagnose_write_error(key, e).await),
        }
    }

    /// A backend write failed. On a filesystem a key cannot be both an object
    /// and a "directory" (`a` and `a/b`); report that as a conflict naming
    /// the clashing key instead of an opaque 500.
    async fn diagnose_write_error(
        &self,
        key: &ObjectKey,
        err: object_store::Error,
    ) -> StorageError {
        let k = key.as_str();
        let mut idx = 0;
        while let Some(pos) = k[idx..].find('/') {
            let ancestor = &k[..idx + pos];
            if let Ok(p) = Path::parse(ancestor)
                && let Ok(Some(_)) = self.head_opt(&p).await
            {
                return StorageError::Conflict {
                    key: k.to_string(),
                    detail: format!(
                        "an object exists at {ancestor:?}, so it cannot also be a prefix"
                    ),
                };
            }
            idx += pos + 1;
        }
        let mut under = self.store.list(Some(&key.to_path()));
        if let Some(Ok(_)) = under.next().await {
            return StorageError::Conflict {
                key: k.to_string(),
                detail: format!("objects exist under \"{k}/\", so it cannot also be an object"),
            };
        }
        StorageError::Backend(err)
    }

    /// Metadata and (unless `head`) a body stream for `key`.
    pub async fn get(&self, key: &ObjectKey, req: GetRequest, head: bool) -> Result<ReadResult> {
        let path = key.to_path();
        let not_found = |e: object_store::Error| match e {
            object_store::Error::NotFound { .. } => StorageError::NotFound {
                key: key.to_string(),
            },
            e => StorageError::Backend(e),
        };
        if head {
            let meta = self.store.head(&path).await.map_err(not_found)?;
            check_read_preconditions(key, &req, &meta)?;
            let size = meta.size;
            return Ok(ReadResult {
                meta,
                range: 0..size,
                partial: false,
                body: None,
            });
        }
        match &req.range {
            None => {
                let res = self.store.get(&path).await.map_err(not_found)?;
                check_read_preconditions(key, &req, &res.meta)?;
                Ok(ReadResult {
                    meta: res.meta.clone(),
                    range: res.range.clone(),
                    partial: false,
                    body: Some(res),
                })
            }
            Some(range) => {
                // Resolve the range against the current size ourselves so an
                // unsatisfiable one is a clean 416, then read exactly that
                // version (If-Match on its ETag) so size and bytes agree.
                let meta = self.store.head(&path).await.map_err(not_found)?;
                check_read_preconditions(key, &req, &meta)?;
                let resolved = resolve_range(range, meta.size)
                    .ok_or(StorageError::RangeNotSatisfiable { size: meta.size })?;
                let opts = GetOptions {
                    range: Some(GetRange::Bounded(resolved.clone())),
                    if_match: meta.e_tag.clone(),
                    ..Default::default()
                };
                let res = match self.store.get_opts(&path, opts).await {
                    Ok(r) => r,
                    Err(object_store::Error::Precondition { .. }) => {
                        return Err(StorageError::PreconditionFailed {
                            key: key.to_string(),
                            detail: "the object changed while it was being read; retry".to_string(),
                        });
                    }
                    Err(e) => return Err(not_found(e)),
                };
                Ok(ReadResult {
                    meta,
                    range: resolved,
                    partial: true,
                    body: Some(res),
                })
            }
        }
    }

    /// Idempotent delete: a missing key is not an error.
    pub async fn delete(&self, key: &ObjectKey) -> Result<()> {
        let path = key.to_path();
        let _guard = self.lock_for(key).lock().await;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => {
                // A filesystem "directory" at this key is not an object.
                match self.head_opt(&path).await {
                    Ok(None) => Ok(()),
                    _ => Err(e.into()),
                }
            }
        }
    }

    /// A page of keys starting with `prefix` (a plain string prefix, not
    /// necessarily ending in `/`), strictly after `after`, in byte order.
    pub async fn list(&self, prefix: &str, after: Option<&str>, limit: usize) -> Result<ListPage> {
        if limit == 0 || limit > MAX_LIST_LIMIT {
            return Err(StorageError::InvalidArgument(format!(
                "limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}"
            )));
        }
        if prefix.chars().any(char::is_control) {
            return Err(StorageError::InvalidArgument(
                "prefix contains a control character".to_string(),
            ));
        }
        // The backend lists by whole path segments; list the directory part
        // of the prefix and filter by the full string.
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let dir_path = if dir.is_empty() {
            None
        } else {
            match Path::parse(dir) {
                Ok(p) => Some(p),
                // No valid key can start with an invalid directory.
                Err(_) => {
                    return Ok(ListPage {
                        objects: vec![],
                        next: None,
                    });
                }
            }
        };
        let mut stream = match after.map(Path::parse) {
            Some(Ok(offset)) => self.store.list_with_offset(dir_path.as_ref(), &offset),
            _ => self.store.list(dir_path.as_ref()),
        };
        let keep = |m: &ObjectMeta| {
            let k = m.location.as_ref();
            k.starts_with(prefix) && after.is_none_or(|a| k > a)
        };
        let mut objects: Vec<ObjectMeta>;
        if self.sorted_listing {
            objects = Vec::with_capacity(limit.min(1024) + 1);
            while let Some(m) = stream.try_next().await? {
                if keep(&m) {
                    objects.push(m);
                    if objects.len() > limit {
                        break;
                    }
                }
            }
        } else {
            // Unsorted backend: keep the `limit + 1` smallest keys in a
            // max-heap, so memory stays O(limit) however many keys there are.
            let mut heap: BinaryHeap<ByKey> = BinaryHeap::with_capacity(limit + 2);
            while let Some(m) = stream.try_next().await? {
                if !keep(&m) {
                    continue;
                }
                if heap.len() <= limit {
                    heap.push(ByKey(m));
                } else if heap.peek().is_some_and(|top| m.location < top.0.location) {
                    heap.pop();
                    heap.push(ByKey(m));
                }
            }
            objects = heap.into_sorted_vec().into_iter().map(|b| b.0).collect();
        }
        let next = if objects.len() > limit {
            objects.truncate(limit);
            objects.last().map(|m| m.location.as_ref().to_string())
        } else {
            None
        };
        Ok(ListPage {
            objects: objects.into_iter().map(ObjectInfo::from_meta).collect(),
            next,
        })
    }

    /// Readiness: the backend answers a listing.
    pub async fn ping(&self) -> Result<()> {
        let mut s = self.store.list(None);
        match s.next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(e.into()),
        }
    }
}

/// A multipart upload with a bounded number of parts in flight.
/// What [`Storage::receive`] has read of a body so far.
#[derive(Default)]
struct Received {
    total: u64,
    pending: Vec<Bytes>,
    upload: Option<StreamingUpload>,
}

struct StreamingUpload {
    inner: Box<dyn MultipartUpload>,
    in_flight: FuturesOrdered<object_store::UploadPart>,
}

impl StreamingUpload {
    async fn put_part(&mut self, part: PutPayload) -> Result<()> {
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            if let Some(r) = self.in_flight.next().await {
                r?;
            }
        }
        self.in_flight.push_back(self.inner.put_part(part));
        Ok(())
    }

    async fn flush(&mut self) -> Result<()> {
        while let Some(r) = self.in_flight.next().await {
            r?;
        }
        Ok(())
    }

    async fn abort(mut self) {
        // Let in-flight parts settle first so the abort removes everything.
        while self.in_flight.next().await.is_some() {}
        if let Err(e) = self.inner.abort().await {
            tracing::warn!(error = %e, "aborting an upload failed; staging data may remain until restart");
        }
    }
}

/// Orders listed objects by key for the bounded max-heap.
struct ByKey(ObjectMeta);

impl PartialEq for ByKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.location == other.0.location
    }
}
impl Eq for ByKey {}
impl PartialOrd for ByKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ByKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.location.as_ref().cmp(other.0.location.as_ref())
    }
}

/// Removes exactly `n` bytes from the front of `chunks` without copying.
fn take_prefix(chunks: &mut Vec<Bytes>, n: usize) -> PutPayload {
    let mut out = Vec::new();
    let mut need = n;
    let mut consumed = 0;
    for c in chunks.iter_mut() {
        if need == 0 {
            break;
        }
        if c.len() <= need {
            need -= c.len();
            out.push(std::mem::take(c));
            consumed += 1;
        } else {
            out.push(c.split_to(need));
            need = 0;
        }
    }
    chunks.drain(..consumed);
    PutPayload::from_iter(out)
}

/// Resolves an HTTP-style range against `size`; `None` if unsatisfiable.
pub fn resolve_range(range: &GetRange, size: u64) -> Option<Range<u64>> {
    match range {
        GetRange::Bounded(r) => {
            if r.start >= size || r.start >= r.end {
                None
            } else {
                Some(r.start..r.end.min(size))
            }
        }
        GetRange::Offset(o) => (*o < size).then_some(*o..size),
        GetRange::Suffix(n) => {
            if *n == 0 || size == 0 {
                None
            } else {
                Some(size.saturating_sub(*n)..size)
            }
        }
    }
}

/// Strips the quotes (and a weak `W/` marker) from an ETag.
pub fn unquote(etag: &str) -> &str {
    let e = etag.trim();
    let e = e.strip_prefix("W/").unwrap_or(e);
    e.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(e)
}

/// Does an `If-Match`/`If-None-Match` list (`*`, or comma-separated ETags)
/// match the current ETag?
fn etag_matches(header: &str, current: Option<&str>) -> bool {
    // Nothing matches an absent object, not even `*`.
    let Some(current) = current.map(unquote) else {
        return false;
    };
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || unquote(t) == current)
}

/// RFC 9110 §13.2.2 evaluation order; dates compare at whole seconds, the
/// resolution of HTTP dates.
fn check_read_preconditions(key: &ObjectKey, req: &GetRequest, meta: &ObjectMeta) -> Result<()> {
    let lm = meta.last_modified.timestamp();
    let failed = |detail: String| StorageError::PreconditionFailed {
        key: key.to_string(),
        detail,
    };
    if let Some(im) = &req.if_match {
        if !etag_matches(im, meta.e_tag.as_deref()) {
            return Err(failed(format!("If-Match {im:?} does not match")));
        }
    } else if let Some(ius) = req.if_unmodified_since
        && lm > ius.timestamp()
    {
        return Err(failed(
            "modified since the If-Unmodified-Since date".to_string(),
        ));
    }
    let not_modified = || StorageError::NotModified {
        key: key.to_string(),
        etag: meta.e_tag.as_deref().map(|e| unquote(e).to_string()),
    };
    if let Some(inm) = &req.if_none_match {
        if etag_matches(inm, meta.e_tag.as_deref()) {
            return Err(not_modified());
        }
    } else if let Some(ims) = req.if_modified_since
        && lm <= ims.timestamp()
    {
        return Err(not_modified());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_prefix_splits_without_losing_bytes() {
        let mut chunks = vec![
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"defg"),
            Bytes::from_static(b"hi"),
        ];
        let p = take_prefix(&mut chunks, 5);
        let got: Vec<u8> = p.iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(got, b"abcde");
        let rest: Vec<u8> = chunks.iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(rest, b"fghi");
    }

    #[test]
    fn ranges_resolve_like_http() {
        assert_eq!(resolve_range(&GetRange::Bounded(0..5), 10), Some(0..5));
        assert_eq!(resolve_range(&GetRange::Bounded(8..50), 10), Some(8..10));
        assert_eq!(resolve_range(&GetRange::Bounded(10..11), 10), None);
        assert_eq!(resolve_range(&GetRange::Offset(3), 10), Some(3..10));
        assert_eq!(resolve_range(&GetRange::Offset(10), 10), None);
        assert_eq!(resolve_range(&GetRange::Suffix(3), 10), Some(7..10));
        assert_eq!(resolve_range(&GetRange::Suffix(30), 10), Some(0..10));
        assert_eq!(resolve_range(&GetRange::Suffix(0), 10), None);
        assert_eq!(resolve_range(&GetRange::Suffix(1), 0), None);
    }

    #[test]
    fn etags_compare_unquoted() {
        assert!(etag_matches("\"abc\"", Some("abc")));
        assert!(etag_matches("abc", Some("\"abc\"")));
        assert!(etag_matches("W/\"abc\"", Some("abc")));
        assert!(etag_matches("x, \"abc\"", Some("abc")));
        assert!(etag_matches("*", Some("abc")));
        assert!(!etag_matches("*", None));
        assert!(!etag_matches("abd", Some("abc")));
    }
}
