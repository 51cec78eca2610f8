//! The HTTP client every service client (and the gateway) is built on, so
//! timeouts, pooling and the bearer token are set in one place.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};

/// How a service client talks to its upstream.
#[derive(Clone, Default)]
pub struct ClientOptions {
    /// Sent as `Authorization: Bearer …` on every request (marked sensitive,
    /// so it never shows in debug output).
    pub token: Option<String>,
    /// Whole-request timeout; `None` for streams of unbounded length.
    pub timeout: Option<Duration>,
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl ClientOptions {
    pub fn with_token(token: Option<String>) -> Self {
        Self {
            token,
            ..Default::default()
        }
    }

    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }
}

/// A pooled client: 10 s connect timeout, 30 s idle connections, no Nagle.
pub fn http_client(opts: &ClientOptions) -> reqwest::Client {
    let mut headers = HeaderMap::new();
    if let Some(t) = &opts.token
        && let Ok(mut v) = HeaderValue::from_str(&format!("Bearer {t}"))
    {
        v.set_sensitive(true);
        headers.insert(header::AUTHORIZATION, v);
    }
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(30))
        .tcp_nodelay(true)
        .default_headers(headers);
    if let Some(t) = opts.timeout {
        b = b.timeout(t);
    }
    b.build()
        .expect("a reqwest client with these settings builds")
}

/// Every character but RFC 3986's unreserved ones is escaped in a path
/// segment.
pub const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `name` as URL path segments: each `/`-separated part percent-encoded,
/// the separators kept (routes read them back with `{*name}`).
pub fn path_segments(name: &str) -> String {
    name.split('/')
        .map(|s| percent_encoding::utf8_percent_encode(s, SEGMENT).to_string())
        .collect::<Vec<_>>()
        .join("/")
}

/// An answer that was not a success, read back from our JSON error
/// envelope (`{"error": {"code", "message", …}}`). Each service client
/// turns it into its own typed error by `code` (the status only when the
/// code is unknown), with one table used both ways and a round-trip test.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{service} answered {status}: {message}")]
pub struct RemoteError {
    pub service: &'static str,
    pub status: http::StatusCode,
    /// Empty when the body was not our envelope (a proxy's page, say).
    pub code: String,
    pub message: String,
    /// The envelope's other fields (e.g. `position`, `id`, `limit`).
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl RemoteError {
    /// From a status and a body: our envelope, or a bounded excerpt of
    /// whatever else came back.
    pub fn from_body(service: &'static str, status: http::StatusCode, body: &[u8]) -> Self {
        match serde_json::from_slice::<crate::error::ErrorBody>(body) {
            Ok(b) => Self {
                service,
                status,
                code: b.error.code,
                message: b.error.message,
                details: b.error.details,
            },
            Err(_) => Self {
                service,
                status,
                code: String::new(),
                message: String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
                details: serde_json::Map::new(),
            },
        }
    }

    /// A text field of the envelope (`""` when absent).
    pub fn detail_str(&self, key: &str) -> &str {
        self.details.get(key).and_then(|v| v.as_str()).unwrap_or("")
    }

    /// A number field of the envelope (0 when absent).
    pub fn detail_u64(&self, key: &str) -> u64 {
        self.details
            .get(key)
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0)
    }
}

/// A call to another service that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No usable answer (unreachable, timed out, broken off, undecodable).
    #[error(transparent)]
    Upstream(#[from] crate::UpstreamError),
    /// An answer with an error status.
    #[error(transparent)]
    Remote(#[from] RemoteError),
}

/// What every service client shares: the service's name and base URL, the
/// pooled client (token, timeouts), the request id carried on, and error
/// answers decoded into [`RemoteError`], transport failures into
/// [`UpstreamError`](crate::UpstreamError).
#[derive(Debug, Clone)]
pub struct ServiceClient {
    service: &'static str,
    base: std::sync::Arc<str>,
    http: reqwest::Client,
}

impl ServiceClient {
    /// `base_url` like `http://127.0.0.1:8082` (a trailing `/` is dropped).
    pub fn new(service: &'static str, base_url: &str, http: reqwest::Client) -> Self {
        Self {
            service,
            base: base_url.trim_end_matches('/').into(),
            http,
        }
    }

    pub fn service(&self) -> &'static str {
        self.service
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `base + path` (`path` starts with `/`, already encoded).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A transport failure, classified by its type.
    pub fn transport(&self, e: reqwest::Error) -> crate::UpstreamError {
        crate::UpstreamError::from_reqwest(self.service, &*self.base, e)
    }

    /// An answer that cannot be read (not the JSON it should be).
    pub fn broken(
        &self,
        e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> crate::UpstreamError {
        crate::UpstreamError::new(
            self.service,
            &*self.base,
            crate::UpstreamKind::Broken,
            Some(e.into()),
        )
    }

    /// Sends `req` with the current request id; a success's response, or
    /// the error answer read back.
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, CallError> {
        let resp = crate::request_id::propagate(req)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let body = resp.bytes().await.map_err(|e| self.transport(e))?;
        Err(RemoteError::from_body(self.service, status, &body).into())
    }

    /// The whole body of a success.
    pub async fn bytes(&self, resp: reqwest::Response) -> Result<bytes::Bytes, CallError> {
        Ok(resp.bytes().await.map_err(|e| self.transport(e))?)
    }

    /// A success's JSON body.
    pub async fn json<T: serde::de::DeserializeOwned>(
        &self,
        resp: reqwest::Response,
    ) -> Result<T, CallError> {
        let body = self.bytes(resp).await?;
        serde_json::from_slice(&body).map_err(|e| self.broken(e).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_escaped_one_by_one() {
        assert_eq!(path_segments("a/b.c"), "a/b.c");
        assert_eq!(path_segments("a b?/é#"), "a%20b%3F/%C3%A9%23");
        assert_eq!(path_segments(""), "");
    }

    #[test]
    fn error_answers_are_read_back() {
        let body =
            br#"{"error":{"code":"item_not_found","message":"no item","id":"x","position":3}}"#;
        let e = RemoteError::from_body("vectord", http::StatusCode::NOT_FOUND, body);
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("item_not_found", "no item")
        );
        assert_eq!((e.detail_str("id"), e.detail_u64("position")), ("x", 3));
        assert_eq!(e.to_string(), "vectord answered 404 Not Found: no item");
        let e = RemoteError::from_body("vectord", http::StatusCode::BAD_GATEWAY, &[b'x'; 2000]);
        assert_eq!((e.code.as_str(), e.message.len()), ("", 512));
    }

    #[tokio::test]
    async fn send_carries_the_request_id_and_reads_errors() {
        use axum::routing::get;
        let app = axum::Router::new()
            .route(
                "/echo",
                get(|h: http::HeaderMap| async move {
                    h.get(crate::request_id::HEADER)
                        .map(|v| v.to_str().unwrap().to_string())
                        .unwrap_or_default()
                }),
            )
            .route(
                "/fail",
                get(|| async { crate::ApiError::conflict("params_conflict", "no") }),
            );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", l.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(l, app).await });
        let c = ServiceClient::new("vectord", &format!("{base}/"), reqwest::Client::new());
        let id = http::HeaderValue::from_static("req-42");
        let got = crate::request_id::with_id(id, async {
            let r = c.send(c.http().get(c.url("/echo"))).await.unwrap();
            c.bytes(r).await.unwrap()
        })
        .await;
        assert_eq!(&got[..], b"req-42");
        match c.send(c.http().get(c.url("/fail"))).await {
            Err(CallError::Remote(e)) => {
                assert_eq!(
                    (e.status.as_u16(), e.code.as_str()),
                    (409, "params_conflict")
                )
            }
            other => panic!("{other:?}"),
        }
        let dead = ServiceClient::new("vectord", "http://127.0.0.1:9", reqwest::Client::new());
        match dead.send(dead.http().get(dead.url("/echo"))).await {
            Err(CallError::Upstream(u)) => {
                assert_eq!(u.kind, crate::UpstreamKind::Unreachable)
            }
            other => panic!("{other:?}"),
        }
    }
}
