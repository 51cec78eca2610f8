//! The HTTP edge (every status, via `oneshot`) and the client over a real
//! socket.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::Body;
use http::{Method, Request, StatusCode, header};
use lakehouse_catalogd::http::{ListResponse, MAX_BODY_BYTES, router};
use lakehouse_catalogd::{
    Catalog, CatalogClient, ErrorKind, Manifest, RegisterResponse, Registry, dataset_id_for,
};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::support::{TestStore, put_parquet};

fn app() -> (Router, Arc<TestStore>, Registry) {
    let store = TestStore::new();
    let registry = Registry::empty(store.clone());
    (router(Arc::new(registry.clone())), store, registry)
}

async fn call(app: &Router, method: Method, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut b = Request::builder().method(method).uri(uri);
    let body = match body {
        Some(v) => {
            b = b.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    send(app, b.body(body).unwrap()).await
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap_or_else(|_| panic!("non-JSON body {bytes:?}"))
    };
    (status, v)
}

fn error_code(v: &Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error envelope in {v}"))
}

async fn register(app: &Router, body: Value) -> (StatusCode, Value) {
    call(app, Method::POST, "/catalog/register", Some(body)).await
}

#[tokio::test]
async fn register_get_list_delete_happy_path() {
    let (app, store, _) = app();
    let objects = vec![
        put_parquet(&store, "datasets/tpch/lineitem/0.parquet", 7).await,
        put_parquet(&store, "datasets/tpch/lineitem/1.parquet", 8).await,
    ];
    let (s, v) = register(
        &app,
        json!({"name": "tpch/lineitem", "schema_fingerprint": "fp", "objects": objects}),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let resp: RegisterResponse = serde_json::from_value(v).unwrap();
    assert!(!resp.existing);
    assert_eq!(resp.manifest.row_count, 15, "row_count defaults to the sum");
    assert_eq!(resp.manifest.dataset_id, dataset_id_for("tpch/lineitem"));

    let (s, v) = register(
        &app,
        json!({"name": "tpch/lineitem", "schema_fingerprint": "fp", "objects": [], "row_count": 3}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["existing"], true);
    assert_eq!(v["manifest"]["version"], 2);
    assert_eq!(v["manifest"]["row_count"], 3);
    register(&app, json!({"name": "a", "schema_fingerprint": "fp2"})).await;

    let (s, v) = call(&app, Method::GET, "/catalog/manifest/tpch/lineitem", None).await;
    assert_eq!(s, StatusCode::OK);
    let m: Manifest = serde_json::from_value(v).unwrap();
    assert_eq!((m.name.as_str(), m.version), ("tpch/lineitem", 2));

    let (s, v) = call(&app, Method::GET, "/catalog/list", None).await;
    assert_eq!(s, StatusCode::OK);
    let list: ListResponse = serde_json::from_value(v).unwrap();
    assert_eq!(list.count, 2);
    let names: Vec<&str> = list.manifests.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["a", "tpch/lineitem"], "sorted by name");

    let (s, v) = call(&app, Method::DELETE, "/catalog/manifest/a", None).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        (&v["name"], &v["vacuum"]["dropped"]),
        (&json!("a"), &json!(true)),
        "{v}"
    );
    assert!(v["vacuum"]["files"].is_array(), "{v}");
    let (s, v) = call(&app, Method::DELETE, "/catalog/manifest/a", None).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&v), "not_found");
    let (_, v) = call(&app, Method::GET, "/catalog/list", None).await;
    assert_eq!(v["count"], 1);
}

#[tokio::test]
async fn every_error_status_with_its_code_and_no_side_effects() {
    let (app, store, registry) = app();
    register(&app, json!({"name": "d", "schema_fingerprint": "fp"})).await;
    let before = registry.list();

    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            json!({"name": "", "schema_fingerprint": "fp"}),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            json!({"name": "Bad Name", "schema_fingerprint": "fp"}),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            json!({"name": "a//b", "schema_fingerprint": "fp"}),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            json!({"name": "/abs", "schema_fingerprint": "fp"}),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            json!({"name": "x/../y", "schema_fingerprint": "fp"}),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            json!({"name": "x", "schema_fingerprint": ""}),
            StatusCode::BAD_REQUEST,
            "empty_fingerprint",
        ),
        (
            json!({"name": "x", "schema_fingerprint": "fp", "objects": [{"key": "", "size": 1, "row_count": 1}]}),
            StatusCode::BAD_REQUEST,
            "invalid_object",
        ),
        (
            json!({"name": "x", "schema_fingerprint": "fp", "objects": [{"key": "datasets/d/a", "size": 1, "row_count": 1}]}),
            StatusCode::BAD_REQUEST,
            "invalid_object",
        ),
        (
            json!({"name": "x", "schema_fingerprint": "fp", "objects": [{"key": "datasets/x/missing", "size": 1, "row_count": 1}]}),
            StatusCode::BAD_REQUEST,
            "invalid_object",
        ),
        (
            json!({"name": "x"}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            json!({"name": "x", "schema_fingerprint": "fp", "expected_verison": 1}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            json!({"name": "x", "schema_fingerprint": "fp", "objects": [{"key": "k", "size": -1, "row_count": 1}]}),
            StatusCode::BAD_REQUEST,
            "invalid_body",
        ),
        (
            json!({"name": "d", "schema_fingerprint": "other"}),
            StatusCode::CONFLICT,
            "fingerprint_conflict",
        ),
        (
            json!({"name": "d", "schema_fingerprint": "fp", "expected_version": 5}),
            StatusCode::PRECONDITION_FAILED,
            "version_mismatch",
        ),
        (
            json!({"name": "new", "schema_fingerprint": "fp", "expected_version": 1}),
            StatusCode::PRECONDITION_FAILED,
            "version_mismatch",
        ),
    ];
    for (body, status, code) in cases {
        let (s, v) = register(&app, body.clone()).await;
        assert_eq!(s, status, "{body} → {v}");
        assert_eq!(error_code(&v), code, "{body}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    // The message says what was wrong.
    let (_, v) = register(
        &app,
        json!({"name": "Bad Name", "schema_fingerprint": "fp"}),
    )
    .await;
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("Bad Name") && msg.contains("'B'"), "{msg}");
    let (_, v) = register(&app, json!({"name": "d", "schema_fingerprint": "other"})).await;
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("\"fp\"") && msg.contains("\"other\""), "{msg}");

    // Malformed JSON → 400.
    let (s, v) = send(
        &app,
        Request::post("/catalog/register")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{\"name\": "))
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );

    // No JSON content type → 415.
    let (s, v) = send(
        &app,
        Request::post("/catalog/register")
            .body(Body::from(
                json!({"name": "x", "schema_fingerprint": "fp"}).to_string(),
            ))
            .unwrap(),
    )
    .await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
    );

    // Over 4 MiB → 413 (a valid register, just too big).
    let n = MAX_BODY_BYTES / 60 + 1;
    let objects: Vec<Value> = (0..n)
        .map(|i| json!({"key": format!("datasets/big/part-{i:08}.parquet"), "size": 1, "row_count": 1}))
        .collect();
    let big = json!({"name": "big", "schema_fingerprint": "fp", "objects": objects});
    assert!(big.to_string().len() > MAX_BODY_BYTES);
    let (s, v) = register(&app, big).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
    );

    // Reads: 404 and 400.
    let (s, v) = call(&app, Method::GET, "/catalog/manifest/missing", None).await;
    assert_eq!((s, error_code(&v)), (StatusCode::NOT_FOUND, "not_found"));
    let (s, v) = call(&app, Method::GET, "/catalog/manifest/Upper/Case", None).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::BAD_REQUEST, "invalid_name")
    );
    let (s, v) = call(&app, Method::DELETE, "/catalog/manifest/a%20b", None).await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::BAD_REQUEST, "invalid_name")
    );

    // None of that changed anything.
    assert_eq!(registry.list(), before);
    assert_eq!(store.puts.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn persist_failure_is_a_500_and_the_previous_manifest_stays() {
    let (app, store, _) = app();
    let a = put_parquet(&store, "datasets/d/a", 1).await;
    let b = put_parquet(&store, "datasets/d/b", 2).await;
    let (_, v) = register(
        &app,
        json!({"name": "d", "schema_fingerprint": "fp", "objects": [a]}),
    )
    .await;
    let before = v["manifest"].clone();

    store.fail_puts.store(true, Ordering::SeqCst);
    let (s, v) = register(
        &app,
        json!({"name": "d", "schema_fingerprint": "fp", "objects": [b]}),
    )
    .await;
    assert_eq!(
        (s, error_code(&v)),
        (StatusCode::INTERNAL_SERVER_ERROR, "internal")
    );
    // Internals are logged, not leaked.
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(!msg.contains("injected"), "{msg}");

    let (s, v) = call(&app, Method::GET, "/catalog/manifest/d", None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v, before);
}

#[tokio::test]
async fn concurrent_registers_over_http_make_one_dataset() {
    let (app, store, _) = app();
    let mut objects = Vec::new();
    for i in 0..64 {
        objects.push(put_parquet(&store, &format!("datasets/hot/k{i}"), 1).await);
    }
    let calls = objects.into_iter().map(|o| {
        let app = app.clone();
        async move {
            register(
                &app,
                json!({"name": "hot", "schema_fingerprint": "fp", "objects": [o]}),
            )
            .await
        }
    });
    let results = futures::future::join_all(calls).await;
    let mut created = 0;
    for (s, v) in &results {
        assert_eq!(*s, StatusCode::OK, "{v}");
        assert_eq!(
            v["manifest"]["dataset_id"],
            dataset_id_for("hot").to_string()
        );
        created += usize::from(v["existing"] == false);
    }
    assert_eq!(created, 1);
    assert_eq!(crate::support::manifest_keys(store.as_ref()).await.len(), 1);
}

/// Serves the router on an ephemeral port; returns its base URL.
pub(crate) async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn client_reports_an_unreachable_catalog_as_unavailable() {
    // Bind then drop: nothing listens on this port any more.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client = CatalogClient::new(&format!("http://{addr}"));
    let err = client.list().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[tokio::test]
async fn versions_and_history_over_http_with_every_refusal() {
    let (app, store, _) = app();
    let k = put_parquet(&store, "datasets/d/a.parquet", 3).await;
    let body = json!({"name": "d", "schema_fingerprint": "fp", "objects": [k]});
    assert_eq!(register(&app, body).await.0, StatusCode::OK);
    let (s, v) = call(&app, Method::GET, "/catalog/manifest/d?version=0", None).await;
    assert_eq!(
        (s, v["table_version"].as_u64()),
        (StatusCode::OK, Some(0)),
        "{v}"
    );
    let (s, v) = call(
        &app,
        Method::GET,
        "/catalog/manifest/d?timestamp=2999-01-01",
        None,
    )
    .await;
    assert_eq!(
        (s, v["row_count"].as_u64()),
        (StatusCode::OK, Some(3)),
        "{v}"
    );
    let (s, v) = call(&app, Method::GET, "/catalog/history/d", None).await;
    assert_eq!((s, v["name"].as_str()), (StatusCode::OK, Some("d")), "{v}");
    assert_eq!(v["history"][0]["operation"], "CREATE TABLE");
    for (uri, status, code) in [
        (
            "/catalog/manifest/d?version=1",
            StatusCode::NOT_FOUND,
            "no_such_version",
        ),
        (
            "/catalog/manifest/d?timestamp=1970-01-02",
            StatusCode::NOT_FOUND,
            "no_such_version",
        ),
        (
            "/catalog/manifest/d?version=-1",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/catalog/manifest/d?version=x",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/catalog/manifest/d?timestamp=soon",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/catalog/manifest/d?version=0&timestamp=2026-01-01",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/catalog/manifest/d?vers=0",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/catalog/manifest/nope?version=0",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "/catalog/history/d?limit=0",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/catalog/history/d?limit=10001",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        ("/catalog/history/nope", StatusCode::NOT_FOUND, "not_found"),
        (
            "/catalog/history/Bad..Name",
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
    ] {
        let (s, v) = call(&app, Method::GET, uri, None).await;
        assert_eq!((s, error_code(&v)), (status, code), "{uri}: {v}");
    }
    let raw = |uri: &str, body: &'static str| {
        Request::builder()
            .method(Method::POST)
            .uri(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    for (uri, body, status, code) in [
        (
            "/catalog/compact/d",
            "{",
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "/catalog/compact/d",
            r#"{"target_size": 10}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/catalog/compact/d",
            r#"{"zorder": ["nope"]}"#,
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/catalog/compact/nope",
            "",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "/catalog/restore/d",
            "{}",
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            "/catalog/restore/d",
            r#"{"version": 5}"#,
            StatusCode::NOT_FOUND,
            "no_such_version",
        ),
        (
            "/catalog/vacuum/d",
            r#"{"dry_run": "yes"}"#,
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
        (
            "/catalog/vacuum/nope",
            "",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ] {
        let (s, v) = send(&app, raw(uri, body)).await;
        assert_eq!((s, error_code(&v)), (status, code), "{uri} {body}: {v}");
    }
    // Nothing to compact (one file), a dry vacuum that finds nothing.
    let (s, v) = send(&app, raw("/catalog/compact/d", "")).await;
    assert_eq!((s, &v["compacted"]), (StatusCode::OK, &Value::Null), "{v}");
    let (s, v) = send(&app, raw("/catalog/vacuum/d", r#"{"dry_run": true}"#)).await;
    assert_eq!(
        (s, v["files"].as_array().map(Vec::len)),
        (StatusCode::OK, Some(0)),
        "{v}"
    );
}
