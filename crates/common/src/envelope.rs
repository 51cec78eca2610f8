//! Every error response in the JSON envelope, whoever produced it.
//!
//! Handlers answer with [`ApiError`]s, but some error responses are made
//! by the framework before a handler runs: axum's 405 for a method a route
//! does not have (empty body, `Allow` header), the request timeout's 408
//! (empty), and extractor rejections (`text/plain`: a bad query string, a
//! body over a limit). [`around`] puts [`ensure_json`] around a whole router
//! in the shared stack of every server, and it rewrites any 4xx/5xx response
//! whose body is not JSON into `{"error":{"code","message"}}`, keeping its
//! status and headers (`Allow` included), so no route needs its own code.
//! Outside it, [`crate::drain::tap`] reads what a refused request was still
//! sending, so the client (or the gateway) gets the answer.

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, Uri, header};

use crate::error::ApiError;

/// `router` as one service with [`ensure_json`] outside it. (A
/// `Router::layer` runs inside each route, where axum has not yet added the
/// `Allow` header to its 405s.)
pub fn around(router: Router) -> Router {
    Router::new()
        .fallback_service(router)
        .layer(axum::middleware::from_fn(ensure_json))
        .layer(axum::middleware::from_fn(crate::drain::tap))
}

/// Plain-text bodies larger than this are passed through untouched (no
/// framework rejection is anywhere near it).
const MAX_TEXT: usize = 16 << 10;

/// Middleware: 4xx/5xx responses that are not JSON get the envelope.
pub async fn ensure_json(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let uri = req.uri().clone();
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(resp.headers()) {
        return resp;
    }
    let hint = resp.body().size_hint();
    let text = if hint.exact() == Some(0) {
        String::new()
    } else if is_plain_text(resp.headers()) && hint.upper().is_some_and(|u| u as usize <= MAX_TEXT)
    {
        let (parts, body) = resp.into_parts();
        match axum::body::to_bytes(body, MAX_TEXT).await {
            Ok(b) => return rebuild(parts, &method, &uri, String::from_utf8_lossy(&b).trim()),
            // The body broke while being read: nothing better to say.
            Err(_) => return rebuild(parts, &method, &uri, ""),
        }
    } else {
        return resp;
    };
    let (parts, _) = resp.into_parts();
    rebuild(parts, &method, &uri, &text)
}

fn is_json(h: &HeaderMap) -> bool {
    content_type(h).is_some_and(|ct| ct == "application/json" || ct.ends_with("+json"))
}

fn is_plain_text(h: &HeaderMap) -> bool {
    content_type(h).is_some_and(|ct| ct == "text/plain")
}

/// The media type without parameters, lowercased.
fn content_type(h: &HeaderMap) -> Option<String> {
    let v = h.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(v.split(';').next()?.trim().to_ascii_lowercase())
}

/// The envelope for `parts.status`, with the old headers (but not the old
/// body's type and length).
fn rebuild(parts: http::response::Parts, method: &Method, uri: &Uri, text: &str) -> Response {
    let status = parts.status;
    let message = if text.is_empty() {
        default_message(status, method, uri, &parts.headers)
    } else {
        text.to_string()
    };
    let mut resp = ApiError::new(status, code(status), message).into_response();
    for (k, v) in &parts.headers {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            resp.headers_mut().insert(k.clone(), v.clone());
        }
    }
    if *method == Method::HEAD {
        // A HEAD answer has headers only; the length stays the GET's.
        let (p, _) = resp.into_parts();
        return Response::from_parts(p, Body::empty());
    }
    resp
}

/// The machine code of a framework-made error, by status.
fn code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "invalid_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::LENGTH_REQUIRED => "length_required",
        StatusCode::PAYLOAD_TOO_LARGE => "too_large",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::GATEWAY_TIMEOUT => "upstream_timeout",
        StatusCode::BAD_GATEWAY => "bad_gateway",
        s if s.is_client_error() => "invalid_request",
        _ => "internal",
    }
}

fn default_message(status: StatusCode, method: &Method, uri: &Uri, h: &HeaderMap) -> String {
    let path = uri.path();
    match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            let allow = h
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            if allow.is_empty() {
                format!("{method} is not allowed on {path}")
            } else {
                format!("{method} is not allowed on {path}; allowed: {allow}")
            }
        }
        StatusCode::NOT_FOUND => format!("no such route: {method} {path}"),
        StatusCode::REQUEST_TIMEOUT => format!(
            "{method} {path} did not complete within the server's request timeout \
             ([server].request_timeout_secs)"
        ),
        StatusCode::PAYLOAD_TOO_LARGE => "the request body is too large".to_string(),
        s => s.canonical_reason().unwrap_or("error").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tower::ServiceExt;

    async fn call(app: &Router, method: &str, uri: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        let (p, b) = resp.into_parts();
        let bytes = axum::body::to_bytes(b, usize::MAX).await.unwrap();
        (p.status, p.headers, bytes.to_vec())
    }

    fn app() -> Router {
        around(
            Router::new()
                .route("/a", get(|| async { "ok" }).put(|| async { "put" }))
                .route(
                    "/text",
                    get(|| async {
                        (
                            StatusCode::BAD_REQUEST,
                            "Failed to deserialize query string",
                        )
                    }),
                )
                .route(
                    "/json",
                    get(|| async { ApiError::bad_request("mine", "kept as it is") }),
                )
                .route("/teapot", get(|| async { StatusCode::IM_A_TEAPOT })),
        )
    }

    #[tokio::test]
    async fn a_405_gets_the_envelope_and_keeps_allow() {
        let (s, h, b) = call(&app(), "PATCH", "/a").await;
        assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
        let allow = h.get(header::ALLOW).unwrap().to_str().unwrap();
        assert!(allow.contains("GET") && allow.contains("PUT"), "{allow}");
        assert_eq!(h.get(header::CONTENT_TYPE).unwrap(), "application/json");
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["error"]["code"], "method_not_allowed");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(
            msg.starts_with("PATCH is not allowed on /a; allowed: "),
            "{msg}"
        );
        // HEAD: the same status and headers, no body.
        let (s, h, b) = call(&app(), "HEAD", "/text").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(h.get(header::CONTENT_TYPE).unwrap(), "application/json");
        assert!(b.is_empty());
    }

    #[tokio::test]
    async fn text_rejections_become_json_and_json_is_untouched() {
        let (s, _, b) = call(&app(), "GET", "/text").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["error"]["code"], "invalid_request");
        assert_eq!(v["error"]["message"], "Failed to deserialize query string");
        let (s, _, b) = call(&app(), "GET", "/json").await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["error"]["code"], "mine");
        let (s, _, b) = call(&app(), "GET", "/teapot").await;
        assert_eq!(s, StatusCode::IM_A_TEAPOT);
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["error"]["code"], "invalid_request");
        assert_eq!(v["error"]["message"], "I'm a teapot");
        let (s, _, b) = call(&app(), "GET", "/a").await;
        assert_eq!((s, b.as_slice()), (StatusCode::OK, b"ok".as_slice()));
    }
}
