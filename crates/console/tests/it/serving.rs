use std::io::Read;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use lakehouse_console::{ASSETS, CSP, HIDDEN, Info, VERSION, find, router};
use serde_json::json;
use tower::ServiceExt;

fn app() -> axum::Router {
    router(Info::new(
        "all-in-one",
        &["storaged", "queryd"],
        json!({"auth": {"tokens": [{"name": "r", "token": "reader-token-0123456789", "role": "read"}]},
               "storaged": {"secret_access_key": "s3cr3t-value"}}),
    ))
}

async fn get(path: &str, headers: &[(&str, &str)]) -> axum::response::Response {
    let mut req = Request::get(path);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    app()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap()
}

async fn body(resp: axum::response::Response) -> Vec<u8> {
    axum::body::to_bytes(resp.into_body(), 16 << 20)
        .await
        .unwrap()
        .to_vec()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut out)
        .unwrap();
    out
}

#[tokio::test]
async fn ui_redirects_to_the_page() {
    let r = get("/ui", &[]).await;
    assert_eq!(r.status(), StatusCode::PERMANENT_REDIRECT);
    assert_eq!(r.headers()[header::LOCATION], "/ui/");
}

#[tokio::test]
async fn page_has_strict_headers_and_revalidates() {
    let r = get("/ui/", &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    let h = r.headers().clone();
    assert_eq!(h[header::CONTENT_TYPE], "text/html; charset=utf-8");
    assert_eq!(h[header::CONTENT_SECURITY_POLICY], CSP);
    assert!(CSP.contains("script-src 'self';") && !CSP.contains("unsafe"));
    assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    assert_eq!(h[header::X_FRAME_OPTIONS], "DENY");
    assert_eq!(h[header::CACHE_CONTROL], "no-cache");
    let etag = h[header::ETAG].to_str().unwrap().to_string();
    let page = String::from_utf8(body(r).await).unwrap();
    assert!(page.contains(&format!("assets/{VERSION}/js/app.js")));

    let again = get("/ui/", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert!(body(again).await.is_empty());
}

#[tokio::test]
async fn assets_are_gzipped_when_accepted_and_cached_for_good() {
    let path = format!("/ui/assets/{VERSION}/js/app.js");
    let plain = get(&path, &[]).await;
    assert_eq!(plain.status(), StatusCode::OK);
    assert_eq!(
        plain.headers()[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert!(plain.headers().get(header::CONTENT_ENCODING).is_none());
    assert_eq!(
        plain.headers()[header::CACHE_CONTROL],
        "public, max-age=31536000, immutable"
    );
    assert_eq!(plain.headers()[header::VARY], "accept-encoding");
    let raw = body(plain).await;
    assert_eq!(raw, find("js/app.js").unwrap().raw);

    let gz = get(&path, &[("accept-encoding", "gzip, deflate")]).await;
    assert_eq!(gz.headers()[header::CONTENT_ENCODING], "gzip");
    assert_eq!(gz.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    let packed = body(gz).await;
    assert!(packed.len() < raw.len());
    assert_eq!(gunzip(&packed), raw);
}

#[tokio::test]
async fn whole_console_is_small() {
    // First load: every file, gzipped where that is smaller.
    let total: usize = ASSETS
        .iter()
        .map(|a| a.gzip.map_or(a.raw.len(), <[u8]>::len))
        .sum();
    assert!(total < 300 * 1024, "first load is {total} bytes compressed");
}

#[tokio::test]
async fn unknown_and_stale_assets_are_404_json() {
    for path in [
        format!("/ui/assets/{VERSION}/js/nope.js"),
        format!("/ui/assets/{VERSION}/index.html"),
        "/ui/assets/000000000000/js/app.js".to_string(),
        format!("/ui/assets/{VERSION}/../js/app.js"),
    ] {
        let r = get(&path, &[]).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(r.headers()[header::CONTENT_SECURITY_POLICY], CSP);
        let v: serde_json::Value = serde_json::from_slice(&body(r).await).unwrap();
        assert_eq!(v["error"]["code"], "not_found", "{path}");
    }
}

#[tokio::test]
async fn info_hides_secrets() {
    let r = get("/ui/api/info", &[]).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    let text = String::from_utf8(body(r).await).unwrap();
    assert!(!text.contains("reader-token-0123456789") && !text.contains("s3cr3t-value"));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["config"]["storaged"]["secret_access_key"], HIDDEN);
    assert_eq!(v["services"], json!(["storaged", "queryd"]));
    assert_eq!(v["auth"], true);
    assert_eq!(v["caller"], serde_json::Value::Null);
}

#[tokio::test]
async fn head_works_without_a_body() {
    let r = app()
        .oneshot(
            Request::head(format!("/ui/assets/{VERSION}/app.css"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(body(r).await.is_empty());
}
