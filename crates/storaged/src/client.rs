//! [`StoragedClient`]: `object_store::ObjectStore` over storaged's HTTP API.
//!
//! Other services (and DataFusion) use a remote storaged through this exactly
//! as they would a local store: ranged GETs, conditional puts
//! (`PutMode::Create` → `If-None-Match: *`, `PutMode::Update` → `If-Match`),
//! paginated listing and streaming multipart uploads. A multipart upload is
//! one streaming PUT whose body is fed by `put_part`; the server commits only
//! when the body ends cleanly, which only `complete()` causes — an abort or a
//! drop breaks the request and the server discards what it received.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use lakehouse_common::client::{RemoteError, path_segments};
use lakehouse_common::request_id::propagate;
use lakehouse_common::{ClientOptions, UpstreamError, http_client};
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult,
    MultipartUpload, ObjectMeta, ObjectStore, PutMode, PutMultipartOptions, PutOptions, PutPayload,
    PutResult, UploadPart,
};
use reqwest::{Method, StatusCode, header};
use tokio::sync::{mpsc, watch};

use crate::service::{ListPage, MAX_LIST_LIMIT, unquote};

const STORE: &str = "storaged";

/// Bytes a multipart upload may have queued but not yet sent before
/// `put_part` futures start to wait.
const UPLOAD_WINDOW: u64 = 32 << 20;

/// The client got a nonsensical answer, or was used wrongly. (Failing to
/// get an answer at all is an [`UpstreamError`], the source of an
/// `object_store::Error::Generic`, so every edge can tell "storaged is down"
/// from a fault by downcasting.)
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid response from storaged: {0}")]
    Protocol(String),
    #[error("the upload was aborted before it completed")]
    UploadAborted,
    #[error("{0}")]
    Unsupported(String),
}

fn generic(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> object_store::Error {
    object_store::Error::Generic {
        store: STORE,
        source: e.into(),
    }
}

/// A request that got no answer: an [`UpstreamError`] classified by the
/// error's type — unless what failed was our own upload body being aborted.
fn transport(base: &str, e: reqwest::Error) -> object_store::Error {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
    while let Some(err) = cur {
        if let Some(ClientError::UploadAborted) = err.downcast_ref::<ClientError>() {
            return generic(ClientError::UploadAborted);
        }
        cur = err.source();
    }
    generic(UpstreamError::from_reqwest(STORE, base, e))
}

/// An `ObjectStore` backed by a storaged at `base_url`.
#[derive(Debug, Clone)]
pub struct StoragedClient {
    base: Arc<str>,
    http: reqwest::Client,
}

impl std::fmt::Display for StoragedClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoragedClient({})", self.base)
    }
}

impl StoragedClient {
    /// `base_url` like `http://127.0.0.1:8081` (no path).
    pub fn new(base_url: &str) -> Self {
        Self::with_options(base_url, &ClientOptions::default())
    }

    /// With a bearer token (split deployments with auth on). No overall
    /// timeout by default: objects stream for as long as they are.
    pub fn with_options(base_url: &str, opts: &ClientOptions) -> Self {
        Self::with_http(base_url, http_client(opts))
    }

    pub fn with_http(base_url: &str, http: reqwest::Client) -> Self {
        Self {
            base: base_url.trim_end_matches('/').into(),
            http,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn object_url(&self, key: &str) -> String {
        format!("{}/storage/objects/{}", self.base, path_segments(key))
    }

    /// One page of `GET /storage/list`.
    pub async fn list_page(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ListPage, object_store::Error> {
        let mut q: Vec<(&str, String)> =
            vec![("prefix", prefix.to_string()), ("limit", limit.to_string())];
        if let Some(a) = after {
            q.push(("after", a.to_string()));
        }
        let resp = propagate(self.http.get(format!("{}/storage/list", self.base)))
            .query(&q)
            .send()
            .await
            .map_err(|e| transport(&self.base, e))?;
        if !resp.status().is_success() {
            return Err(error_from_response(resp, prefix, false).await);
        }
        resp.json::<ListPage>()
            .await
            .map_err(|e| transport(&self.base, e))
    }

    fn list_stream(
        &self,
        prefix: String,
        after: Option<String>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let client = self.clone();
        futures::stream::try_unfold(Some(after), move |state| {
            let client = client.clone();
            let prefix = prefix.clone();
            async move {
                let Some(after) = state else {
                    return Ok::<_, object_store::Error>(None);
                };
                let page = client
                    .list_page(&prefix, after.as_deref(), MAX_LIST_LIMIT)
                    .await?;
                let next_state = page.next.clone().map(Some);
                let metas: Vec<object_store::Result<ObjectMeta>> = page
                    .objects
                    .into_iter()
                    .map(|o| {
                        Ok(ObjectMeta {
                            location: Path::parse(&o.key).map_err(object_store::Error::from)?,
                            last_modified: o.last_modified,
                            size: o.size,
                            e_tag: o.etag,
                            version: None,
                        })
                    })
                    .collect();
                Ok(Some((futures::stream::iter(metas), next_state)))
            }
        })
        .try_flatten()
        .boxed()
    }

    async fn put_body(
        &self,
        key: &str,
        body: reqwest::Body,
        content_length: Option<u64>,
        mode: &PutMode,
    ) -> object_store::Result<PutResult> {
        let mut req = propagate(self.http.put(self.object_url(key))).body(body);
        if let Some(len) = content_length {
            req = req.header(header::CONTENT_LENGTH, len);
        }
        match mode {
            PutMode::Overwrite => {}
            PutMode::Create => req = req.header(header::IF_NONE_MATCH, "*"),
            PutMode::Update(v) => {
                let Some(etag) = &v.e_tag else {
                    return Err(generic(ClientError::Unsupported(
                        "PutMode::Update needs an e_tag".to_string(),
                    )));
                };
                req = req.header(header::IF_MATCH, format!("\"{}\"", unquote(etag)));
            }
        }
        let resp = req.send().await.map_err(|e| transport(&self.base, e))?;
        if !resp.status().is_success() {
            return Err(error_from_response(resp, key, matches!(mode, PutMode::Create)).await);
        }
        Ok(PutResult {
            e_tag: etag_of(resp.headers()),
            version: None,
        })
    }

    async fn delete_one(&self, key: &str) -> object_store::Result<()> {
        let resp = propagate(self.http.delete(self.object_url(key)))
            .send()
            .await
            .map_err(|e| transport(&self.base, e))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(error_from_response(resp, key, false).await)
        }
    }
}

fn etag_of(h: &header::HeaderMap) -> Option<String> {
    h.get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(|s| unquote(s).to_string())
}

/// Maps a storaged error response to the `object_store::Error` variant
/// callers branch on, by status code (never by message text).
async fn error_from_response(
    resp: reqwest::Response,
    key: &str,
    create: bool,
) -> object_store::Error {
    let status = resp.status();
    let body = resp.bytes().await.unwrap_or_default();
    let source = Box::new(RemoteError::from_body(STORE, status, &body));
    let path = key.to_string();
    match status {
        StatusCode::NOT_FOUND => object_store::Error::NotFound { path, source },
        StatusCode::PRECONDITION_FAILED if create => {
            object_store::Error::AlreadyExists { path, source }
        }
        StatusCode::PRECONDITION_FAILED => object_store::Error::Precondition { path, source },
        StatusCode::NOT_MODIFIED => object_store::Error::NotModified { path, source },
        StatusCode::UNAUTHORIZED => object_store::Error::Unauthenticated { path, source },
        StatusCode::FORBIDDEN => object_store::Error::PermissionDenied { path, source },
        _ => object_store::Error::Generic {
            store: STORE,
            source,
        },
    }
}

fn range_header(r: &GetRange) -> object_store::Result<String> {
    Ok(match r {
        GetRange::Bounded(r) => {
            if r.start >= r.end {
                return Err(generic(ClientError::Unsupported(format!(
                    "empty range {}..{}",
                    r.start, r.end
                ))));
            }
            format!("bytes={}-{}", r.start, r.end - 1)
        }
        GetRange::Offset(o) => format!("bytes={o}-"),
        GetRange::Suffix(n) => format!("bytes=-{n}"),
    })
}

fn http_date(t: DateTime<Utc>) -> String {
    httpdate::fmt_http_date(t.into())
}

/// Parses `bytes a-b/size`.
fn parse_content_range(v: &str) -> Option<(std::ops::Range<u64>, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, size) = rest.split_once('/')?;
    let (a, b) = range.split_once('-')?;
    let a: u64 = a.parse().ok()?;
    let b: u64 = b.parse().ok()?;
    Some((a..b + 1, size.parse().ok()?))
}

#[async_trait]
impl ObjectStore for StoragedClient {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let len = payload.content_length() as u64;
        let body = if payload.as_ref().len() == 1 {
            reqwest::Body::from(payload.as_ref()[0].clone())
        } else {
            let chunks: Vec<Result<Bytes, std::io::Error>> = payload.into_iter().map(Ok).collect();
            reqwest::Body::wrap_stream(futures::stream::iter(chunks))
        };
        self.put_body(location.as_ref(), body, Some(len), &opts.mode)
            .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let (tx, rx) = mpsc::unbounded_channel::<Msg>();
        let (consumed_tx, consumed_rx) = watch::channel(0u64);
        let body = UploadBody {
            rx,
            consumed: consumed_tx,
            finished: false,
        };
        let (ended_tx, ended_rx) = watch::channel(None);
        let client = self.clone();
        let key = location.as_ref().to_string();
        let request = tokio::spawn(async move {
            let res = client
                .put_body(
                    &key,
                    reqwest::Body::wrap_stream(body),
                    None,
                    &PutMode::Overwrite,
                )
                .await;
            // Parts still waiting learn whether storaged went away.
            let up = res
                .as_ref()
                .err()
                .and_then(|e| UpstreamError::find(e).cloned());
            ended_tx.send_replace(Some(up));
            res
        });
        Ok(Box::new(HttpUpload {
            tx: Some(tx),
            consumed: consumed_rx,
            ended: ended_rx,
            enqueued: 0,
            request: Some(request),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let key = location.as_ref();
        if options.version.is_some() {
            return Err(object_store::Error::NotSupported {
                source: Box::new(ClientError::Unsupported(
                    "storaged does not keep object versions".to_string(),
                )),
            });
        }
        let method = if options.head {
            Method::HEAD
        } else {
            Method::GET
        };
        let mut req = propagate(self.http.request(method, self.object_url(key)));
        if let (Some(r), false) = (&options.range, options.head) {
            req = req.header(header::RANGE, range_header(r)?);
        }
        if let Some(v) = &options.if_match {
            req = req.header(header::IF_MATCH, quote_list(v));
        }
        if let Some(v) = &options.if_none_match {
            req = req.header(header::IF_NONE_MATCH, quote_list(v));
        }
        if let Some(t) = options.if_modified_since {
            req = req.header(header::IF_MODIFIED_SINCE, http_date(t));
        }
        if let Some(t) = options.if_unmodified_since {
            req = req.header(header::IF_UNMODIFIED_SINCE, http_date(t));
        }
        let resp = req.send().await.map_err(|e| transport(&self.base, e))?;
        if !(resp.status() == StatusCode::OK || resp.status() == StatusCode::PARTIAL_CONTENT) {
            return Err(error_from_response(resp, key, false).await);
        }
        let h = resp.headers();
        let content_length = h
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let (range, size) = if resp.status() == StatusCode::PARTIAL_CONTENT {
            h.get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_content_range)
                .ok_or_else(|| {
                    generic(ClientError::Protocol(
                        "206 without a valid Content-Range".into(),
                    ))
                })?
        } else {
            let size = content_length.ok_or_else(|| {
                generic(ClientError::Protocol(
                    "response without Content-Length".into(),
                ))
            })?;
            (0..size, size)
        };
        let last_modified = h
            .get(header::LAST_MODIFIED)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .map(DateTime::<Utc>::from)
            .ok_or_else(|| {
                generic(ClientError::Protocol(
                    "response without Last-Modified".into(),
                ))
            })?;
        let meta = ObjectMeta {
            location: location.clone(),
            last_modified,
            size,
            e_tag: etag_of(h),
            version: None,
        };
        let base = self.base.clone();
        let stream = resp
            .bytes_stream()
            .map_err(move |e| transport(&base, e))
            .boxed();
        Ok(GetResult {
            payload: GetResultPayload::Stream(stream),
            meta,
            range,
            attributes: Default::default(),
        })
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let client = self.clone();
        locations
            .map(move |p| {
                let client = client.clone();
                async move {
                    let p = p?;
                    client.delete_one(p.as_ref()).await?;
                    Ok(p)
                }
            })
            .buffered(8)
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.list_stream(dir_prefix(prefix), None)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.list_stream(dir_prefix(prefix), Some(offset.as_ref().to_string()))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let p = dir_prefix(prefix);
        let mut common = BTreeSet::new();
        let mut objects = Vec::new();
        let mut s = self.list_stream(p.clone(), None);
        while let Some(meta) = s.try_next().await? {
            let rest = &meta.location.as_ref()[p.len()..];
            match rest.split_once('/') {
                Some((first, _)) => {
                    common.insert(format!("{p}{first}"));
                }
                None => objects.push(meta),
            }
        }
        let common_prefixes = common
            .into_iter()
            .map(|c| Path::parse(c).map_err(object_store::Error::from))
            .collect::<object_store::Result<Vec<_>>>()?;
        Ok(ListResult {
            common_prefixes,
            objects,
        })
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        let src = self.get_opts(from, GetOptions::default()).await?;
        let len = src.meta.size;
        let body = reqwest::Body::wrap_stream(src.into_stream());
        let mode = match options.mode {
            CopyMode::Overwrite => PutMode::Overwrite,
            CopyMode::Create => PutMode::Create,
        };
        self.put_body(to.as_ref(), body, Some(len), &mode)
            .await
            .map(|_| ())
    }
}

/// `object_store` prefixes are whole segments: `a` lists `a/…`, not `ab`.
fn dir_prefix(prefix: Option<&Path>) -> String {
    match prefix.map(|p| p.as_ref()) {
        None | Some("") => String::new(),
        Some(p) => format!("{p}/"),
    }
}

/// Quotes each ETag of a list for an `If-(None-)Match` header.
fn quote_list(v: &str) -> String {
    v.split(',')
        .map(|t| {
            let t = t.trim();
            if t == "*" {
                t.to_string()
            } else {
                format!("\"{}\"", unquote(t))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

enum Msg {
    Data(Bytes),
    Finish,
}

/// The streaming request body of a multipart upload. It ends cleanly only
/// after `Finish`; a closed channel without it is an error, so the server
/// sees a broken body and commits nothing.
struct UploadBody {
    rx: mpsc::UnboundedReceiver<Msg>,
    consumed: watch::Sender<u64>,
    finished: bool,
}

impl Stream for UploadBody {
    type Item = Result<Bytes, ClientError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Msg::Data(b))) => {
                let n = b.len() as u64;
                self.consumed.send_modify(|c| *c += n);
                Poll::Ready(Some(Ok(b)))
            }
            Poll::Ready(Some(Msg::Finish)) => {
                self.finished = true;
                Poll::Ready(None)
            }
            Poll::Ready(None) => {
                self.finished = true;
                Poll::Ready(Some(Err(ClientError::UploadAborted)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

#[derive(Debug)]
struct HttpUpload {
    tx: Option<mpsc::UnboundedSender<Msg>>,
    consumed: watch::Receiver<u64>,
    /// Set when the request has ended: `Some(error)` if storaged could not
    /// be used.
    ended: watch::Receiver<Option<Option<UpstreamError>>>,
    enqueued: u64,
    request: Option<tokio::task::JoinHandle<object_store::Result<PutResult>>>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Data(b) => write!(f, "Data({} bytes)", b.len()),
            Msg::Finish => f.write_str("Finish"),
        }
    }
}

impl HttpUpload {
    async fn finish_request(&mut self) -> object_store::Result<PutResult> {
        match self.request.take() {
            None => Err(generic(ClientError::UploadAborted)),
            Some(h) => h
                .await
                .map_err(|e| generic(format!("upload task failed: {e}")))?,
        }
    }
}

#[async_trait]
impl MultipartUpload for HttpUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let len = data.content_length() as u64;
        // Enqueue now, in call order: parts are assembled in the order
        // `put_part` was called, whatever order the futures are awaited in.
        let sent = match &self.tx {
            Some(tx) => data.into_iter().all(|b| tx.send(Msg::Data(b)).is_ok()),
            None => false,
        };
        self.enqueued += len;
        let wait_until = self.enqueued.saturating_sub(UPLOAD_WINDOW);
        let mut consumed = self.consumed.clone();
        let mut ended = self.ended.clone();
        Box::pin(async move {
            if !sent {
                return Err(generic(ClientError::UploadAborted));
            }
            // Backpressure: wait until the request has sent all but a window.
            if consumed.wait_for(|c| *c >= wait_until).await.is_ok() {
                return Ok(());
            }
            // The request ended early: say why if storaged went away.
            match ended.wait_for(Option::is_some).await.as_deref() {
                Ok(Some(Some(up))) => Err(generic(up.clone())),
                _ => Err(generic(
                    "the upload request ended early; complete() reports why",
                )),
            }
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Msg::Finish);
        }
        self.finish_request().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        // Dropping the sender without `Finish` breaks the request body.
        self.tx.take();
        let _ = self.finish_request().await;
        Ok(())
    }
}

impl Drop for HttpUpload {
    fn drop(&mut self) {
        // Never let a dropped upload commit: closing without `Finish` makes
        // the body fail.
        self.tx.take();
    }
}
