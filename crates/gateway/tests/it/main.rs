//! The gateway against real upstream servers on ephemeral ports.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::routing::{any, get};
use bytes::Bytes;
use futures::StreamExt;
use lakehouse_common::server::{ServerOptions, finish_router};
use lakehouse_common::{Metrics, ReadyCheck};
use lakehouse_gateway::{Gateway, GatewayConfig, Upstream, router};
use tokio::sync::{Notify, mpsc};

/// Serves `app` on an ephemeral loopback port; returns its base URL.
async fn spawn(app: Router) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}")
}

/// An address nothing listens on.
async fn dead_url() -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}")
}

fn upstream_app(service: &'static str, notify: Arc<Notify>) -> Router {
    let echo = move |req: Request| async move {
        let (parts, body) = req.into_parts();
        let seen: serde_json::Map<String, serde_json::Value> = parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
            .collect();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        (
            StatusCode::CREATED,
            [
                ("x-upstream", service),
                ("connection", "x-secret"),
                ("x-secret", "hop"),
            ],
            axum::Json(serde_json::json!({
                "method": parts.method.as_str(),
                "uri": parts.uri.to_string(),
                "headers": seen,
                "len": bytes.len(),
            })),
        )
    };
    let n1 = notify.clone();
    // Counts a streamed body, telling the test when the first chunk arrived.
    let count = move |req: Request| {
        let n = n1.clone();
        async move {
            let mut s = req.into_body().into_data_stream();
            let mut total = 0usize;
            let mut first = true;
            while let Some(c) = s.next().await {
                total += c.unwrap().len();
                if first {
                    n.notify_one();
                    first = false;
                }
            }
            total.to_string()
        }
    };
    let n2 = notify.clone();
    // Sends one chunk, then waits for the test to have read it.
    let drip = move || {
        let n = n2.clone();
        async move {
            let s = futures::stream::once(async {
                Ok::<_, std::io::Error>(Bytes::from_static(b"first;"))
            })
            .chain(futures::stream::once(async move {
                n.notified().await;
                Ok(Bytes::from_static(b"second"))
            }));
            Body::from_stream(s)
        }
    };
    Router::new()
        .route("/storage/count", any(count))
        .route("/storage/drip", get(drip))
        .route(
            "/query/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route("/ready", get(|| async { "ok" }))
        .route(
            "/metrics",
            get(|| async { "# HELP up Up.\n# TYPE up gauge\nup 1\n" }),
        )
        .fallback(any(echo))
}

struct Setup {
    gateway: String,
    notify: Arc<Notify>,
}

async fn setup(extra: Vec<(Upstream, String)>, response_timeout: Duration) -> Setup {
    let notify = Arc::new(Notify::new());
    let storaged = spawn(upstream_app("storaged", notify.clone())).await;
    let queryd = spawn(upstream_app("queryd", notify.clone())).await;
    let mut urls = vec![(Upstream::Storaged, storaged), (Upstream::Queryd, queryd)];
    urls.extend(extra);
    let gw = Arc::new(Gateway::new(GatewayConfig {
        urls,
        service_token: None,
        connect_timeout: Duration::from_secs(2),
        response_timeout,
    }));
    let checks: Vec<ReadyCheck> = gw.ready_checks();
    let g2 = gw.clone();
    let opts = ServerOptions {
        metrics_sources: Some(Arc::new(move || {
            let g = g2.clone();
            Box::pin(async move { g.upstream_metrics().await })
        })),
        ..Default::default()
    };
    let app = finish_router(router(gw), Metrics::new(), checks, &opts);
    Setup {
        gateway: spawn(app).await,
        notify,
    }
}

async fn error_of(resp: reqwest::Response) -> (StatusCode, serde_json::Value) {
    let s = resp.status();
    (s, resp.json().await.unwrap())
}

#[tokio::test]
async fn forwards_method_path_query_headers_and_body() {
    let s = setup(vec![], Duration::from_secs(30)).await;
    let resp = reqwest::Client::new()
        .put(format!("{}/storage/objects/a%20b/c?x=1&y=%2F", s.gateway))
        .header("x-request-id", "req-123")
        .header("authorization", "Bearer passes-through")
        .header("connection", "keep-alive, x-private")
        .header("x-private", "not forwarded")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["x-upstream"], "storaged");
    assert_eq!(resp.headers()["x-request-id"], "req-123");
    assert!(
        resp.headers().get("x-secret").is_none(),
        "hop-by-hop header leaked"
    );
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["method"], "PUT");
    assert_eq!(v["uri"], "/storage/objects/a%20b/c?x=1&y=%2F");
    assert_eq!(v["len"], 5);
    let h = &v["headers"];
    assert_eq!(h["x-request-id"], "req-123");
    assert_eq!(h["authorization"], "Bearer passes-through");
    assert!(h.get("x-private").is_none(), "{h}");

    // Each prefix goes to its own upstream; the bare prefix too.
    let r = reqwest::get(format!("{}/query", s.gateway)).await.unwrap();
    assert_eq!(r.headers()["x-upstream"], "queryd");
    // A request id is made up when the client sends none, and forwarded.
    let r = reqwest::get(format!("{}/query/x", s.gateway))
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["headers"]["x-request-id"], id.as_str());
}

/// Sends `GET target` as written and returns the upstream's echo of the
/// URI it received.
async fn raw_echo(gateway: &str, target: &str) -> serde_json::Value {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(gateway.trim_start_matches("http://"))
        .await
        .unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    assert!(head.starts_with("HTTP/1.1 201"), "{target}: {head}");
    serde_json::from_slice(&buf[end + 4..]).unwrap()
}

#[tokio::test]
async fn paths_and_queries_go_upstream_byte_for_byte() {
    let s = setup(vec![], Duration::from_secs(30)).await;
    for target in [
        "/storage/objects/auth/../g3",
        "/storage/objects/auth/%2e%2e/g3",
        "/storage/objects/auth/%2E%2e/g3",
        "/storage/objects/auth/.%2e/g3",
        "/storage/objects/auth/%2e./g3",
        "/storage/objects/auth/%2e%2e%2fg3",
        "/storage/objects/auth/%2e%2e%5cg3",
        "/storage/objects/auth\\..\\g3",
        "/storage/objects/auth//g3",
        "/storage/objects/auth/./g3",
        "/storage/objects/auth/g3/.",
        "/storage/objects/auth/g3/..",
        "/storage/objects/a%20b/%7e%7E?x=%2e%2e&y=a/../b&z=%ZZ",
        "/storage/../catalog/list",
        "/query/x?sql=SELECT%201;&&=",
    ] {
        let v = raw_echo(&s.gateway, target).await;
        assert_eq!(v["uri"], target, "{v}");
    }
}

#[tokio::test]
async fn request_bodies_stream_through() {
    let s = setup(vec![], Duration::from_secs(30)).await;
    // The second half is only sent once the upstream has the first: a
    // gateway that buffered the body would wait forever.
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let notify = s.notify.clone();
    tokio::spawn(async move {
        tx.send(Ok(Bytes::from(vec![1u8; 1 << 20]))).await.unwrap();
        notify.notified().await;
        for _ in 0..31 {
            tx.send(Ok(Bytes::from(vec![2u8; 1 << 20]))).await.unwrap();
        }
    });
    let body = reqwest::Body::wrap_stream(tokio_stream(rx));
    let resp = tokio::time::timeout(
        Duration::from_secs(20),
        reqwest::Client::new()
            .post(format!("{}/storage/count", s.gateway))
            .body(body)
            .send(),
    )
    .await
    .expect("the body must stream (a buffering gateway deadlocks here)")
    .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.text().await.unwrap(), (32usize << 20).to_string());
}

fn tokio_stream(
    mut rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn response_bodies_stream_through() {
    let s = setup(vec![], Duration::from_secs(30)).await;
    let resp = reqwest::get(format!("{}/storage/drip", s.gateway))
        .await
        .unwrap();
    let mut body = resp.bytes_stream();
    let first = tokio::time::timeout(Duration::from_secs(10), body.next())
        .await
        .expect("the first chunk arrives before the upstream finishes")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first;");
    s.notify.notify_one();
    let rest: Vec<u8> = body.map(|c| c.unwrap().to_vec()).concat().await;
    assert_eq!(&rest[..], b"second");
}

#[tokio::test]
async fn upstream_down_not_configured_and_slow() {
    let dead = dead_url().await;
    let s = setup(
        vec![(Upstream::Vectord, dead.clone())],
        Duration::from_millis(300),
    )
    .await;
    let (st, v) = error_of(
        reqwest::get(format!("{}/vectors/indexes", s.gateway))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["error"]["code"], "upstream_unavailable");
    assert_eq!(v["error"]["upstream"], "vectord");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(&dead),
        "{v}"
    );

    let (st, v) = error_of(
        reqwest::Client::new()
            .post(format!("{}/ingest/x", s.gateway))
            .body("a,b\n1,2\n")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(v["error"]["code"], "upstream_not_configured");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ingestd_url"),
        "{v}"
    );

    let (st, v) = error_of(
        reqwest::get(format!("{}/query/slow", s.gateway))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(st, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(v["error"]["code"], "upstream_timeout");

    // Routes no service owns are the gateway's own 404.
    let (st, v) = error_of(reqwest::get(format!("{}/nope", s.gateway)).await.unwrap()).await;
    assert_eq!(st, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], "no_route");
}

#[tokio::test]
async fn ready_reports_each_upstream_and_metrics_merge() {
    let s = setup(vec![], Duration::from_secs(30)).await;
    let r = reqwest::get(format!("{}/ready", s.gateway)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["checks"]["storaged"]["ok"], true);
    assert_eq!(v["checks"]["queryd"]["ok"], true);

    let dead = dead_url().await;
    let s2 = setup(vec![(Upstream::Catalogd, dead)], Duration::from_secs(30)).await;
    let r = reqwest::get(format!("{}/ready", s2.gateway)).await.unwrap();
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["ready"], false);
    assert_eq!(v["checks"]["catalogd"]["ok"], false);
    assert!(
        v["checks"]["catalogd"]["error"]
            .as_str()
            .unwrap()
            .contains("not reachable")
    );
    assert_eq!(v["checks"]["storaged"]["ok"], true);

    let _ = reqwest::get(format!("{}/storage/x", s.gateway))
        .await
        .unwrap();
    let text = reqwest::get(format!("{}/metrics", s.gateway))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("up{service=\"storaged\"} 1"), "{text}");
    assert!(text.contains("up{service=\"queryd\"} 1"), "{text}");
    assert!(
        text.contains(
            "lakehouse_http_requests_total{service=\"gateway\",route=\"/storage/{*rest}\""
        ),
        "{text}"
    );
}

#[test]
fn upstream_prefixes_are_the_design_routes() {
    let prefixes: Vec<&str> = Upstream::UPSTREAMS.iter().map(|u| u.prefix()).collect();
    assert_eq!(
        prefixes,
        ["/storage", "/catalog", "/ingest", "/query", "/vectors"]
    );
}
