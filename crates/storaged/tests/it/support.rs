//! Backends under test and an in-process storaged server on an ephemeral port.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use http::{Request, Response};
use lakehouse_storaged::backend::{Backend, BackendKind, StoragedConfig};
use lakehouse_storaged::{Storage, StoragedClient};
use tempfile::TempDir;
use tower::ServiceExt;

/// A backend plus whatever keeps it alive (a temp dir).
pub struct TestBackend {
    pub name: &'static str,
    pub backend: Backend,
    pub dir: Option<TempDir>,
}

impl TestBackend {
    pub fn storage(&self, max_object_size: u64) -> Arc<Storage> {
        Arc::new(Storage::new(&self.backend, max_object_size))
    }

    /// Files under the fs root (for checking that nothing was left behind).
    pub fn fs_files(&self) -> Vec<String> {
        let Some(dir) = &self.dir else {
            return vec![];
        };
        let mut out = vec![];
        let mut stack = vec![dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap() {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    out.push(
                        e.path()
                            .strip_prefix(dir.path())
                            .unwrap()
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            }
        }
        out.sort();
        out
    }
}

pub const BIG: u64 = 1 << 40;

pub async fn memory() -> TestBackend {
    TestBackend {
        name: "memory",
        backend: Backend::memory(),
        dir: None,
    }
}

pub async fn fs() -> TestBackend {
    let dir = tempfile::tempdir().unwrap();
    let backend = Backend::fs(dir.path()).await.unwrap();
    TestBackend {
        name: "fs",
        backend,
        dir: Some(dir),
    }
}

static BUCKETS: AtomicUsize = AtomicUsize::new(0);

/// An S3 backend on a fresh bucket of the S3-compatible server at
/// `LAKEHOUSE_TEST_S3_ENDPOINT` (moto in CI). Without that variable the S3
/// cases are skipped, unless `LAKEHOUSE_TEST_REQUIRE_S3=1` (as in CI), which
/// turns a missing server into a failure.
pub async fn s3() -> Option<TestBackend> {
    let endpoint = match std::env::var("LAKEHOUSE_TEST_S3_ENDPOINT") {
        Ok(e) if !e.is_empty() => e,
        _ => {
            if std::env::var("LAKEHOUSE_TEST_REQUIRE_S3").as_deref() == Ok("1") {
                panic!("LAKEHOUSE_TEST_REQUIRE_S3=1 but LAKEHOUSE_TEST_S3_ENDPOINT is not set");
            }
            eprintln!("skipping the S3 backend: LAKEHOUSE_TEST_S3_ENDPOINT is not set");
            return None;
        }
    };
    let bucket = format!(
        "lh-test-{}-{}",
        std::process::id(),
        BUCKETS.fetch_add(1, Ordering::SeqCst)
    );
    // moto accepts unsigned bucket creation.
    let resp = reqwest::Client::new()
        .put(format!("{}/{}", endpoint.trim_end_matches('/'), bucket))
        .send()
        .await
        .expect("S3 test server reachable");
    assert!(
        resp.status().is_success(),
        "creating bucket {bucket}: {}",
        resp.status()
    );
    let cfg = StoragedConfig {
        backend: BackendKind::S3,
        bucket: Some(bucket),
        endpoint: Some(endpoint),
        region: Some("us-east-1".to_string()),
        access_key_id: Some("test".to_string()),
        secret_access_key: Some("test".to_string()),
        ..Default::default()
    };
    let backend = cfg
        .open(std::path::Path::new("/nonexistent"))
        .await
        .unwrap();
    Some(TestBackend {
        name: "s3",
        backend,
        dir: None,
    })
}

/// Every backend available here: memory, fs, and S3 when configured.
pub async fn all() -> Vec<TestBackend> {
    let mut v = vec![memory().await, fs().await];
    if let Some(s) = s3().await {
        v.push(s);
    }
    v
}

pub fn router(storage: Arc<Storage>) -> Router {
    lakehouse_storaged::http::router(storage)
}

/// Sends one request through the router (no network, no URL normalisation).
pub async fn call(router: &Router, req: Request<Body>) -> (Response<Body>, bytes::Bytes) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let (parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    (Response::from_parts(parts, Body::empty()), bytes)
}

/// `call` for the common case: a method, a URI and a body, no headers.
pub async fn send(
    router: &Router,
    method: &str,
    uri: &str,
    body: impl Into<Body>,
) -> (Response<Body>, bytes::Bytes) {
    call(router, req(method, uri).body(body.into()).unwrap()).await
}

pub fn req(method: &str, uri: &str) -> http::request::Builder {
    Request::builder().method(method).uri(uri)
}

/// The error code of a JSON error body.
pub fn error_code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not a JSON error: {}", String::from_utf8_lossy(body)));
    v["error"]["code"].as_str().unwrap().to_string()
}

/// Serves `storage` over HTTP on 127.0.0.1:0; returns its base URL.
pub async fn serve(storage: Arc<Storage>) -> String {
    let app = lakehouse_common::server::finish_router(
        router(storage),
        lakehouse_common::Metrics::new(),
        vec![],
        &Default::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}")
}

pub async fn client_for(tb: &TestBackend) -> StoragedClient {
    StoragedClient::new(&serve(tb.storage(BIG)).await)
}
