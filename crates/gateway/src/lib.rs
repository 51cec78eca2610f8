//! gateway: the front door of a split deployment.
//!
//! Each service owns a route prefix (DESIGN.md §1); the gateway forwards
//! `/storage`, `/catalog`, `/ingest`, `/query` and `/vectors` to the upstream
//! configured for it, streaming request and response bodies chunk by chunk
//! (a 1 GiB ingest is never held in memory), and answers with a JSON error when
//! the upstream cannot: 503 when it is not configured or not reachable, 504
//! when it does not answer in time, 502 when it answers with garbage (the
//! shared [`UpstreamError`] mapping every daemon uses for its own calls).
//! Auth, request ids, metrics and `/ready` come from the shared server stack;
//! the request id is forwarded so one id follows a request through every
//! process.
//!
//! The path and query go upstream byte for byte: the request is sent with
//! hyper's client and the `http::Uri` it arrived with, never through a URL
//! parser, which would resolve `..`, `%2e%2e` or `\` — so `PUT
//! /storage/objects/a/%2e%2e/b` meets the same key validation behind the
//! gateway as in one process.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use http::{HeaderMap, HeaderName, Uri, Version, header};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use lakehouse_common::{
    ApiError, ClientOptions, ReadyCheck, UpstreamError, UpstreamKind, http_client,
};

/// The services behind the gateway, each with its route prefix: rows of
/// the one service table ([`Service::UPSTREAMS`]).
pub use lakehouse_common::Service as Upstream;

/// Where each upstream lives, and how long to wait for it.
#[derive(Clone, Default)]
pub struct GatewayConfig {
    /// Base URL per upstream (`http://host:port`); `None` = not served here.
    pub urls: Vec<(Upstream, String)>,
    /// The token the gateway itself presents for `/ready` and `/metrics` of
    /// its upstreams (user requests are forwarded with their own header).
    pub service_token: Option<String>,
    /// Longest wait to connect to an upstream.
    pub connect_timeout: Duration,
    /// Longest wait for an upstream's response headers (an ingest answers
    /// only after its whole body is in, so this bounds uploads too).
    pub response_timeout: Duration,
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("urls", &self.urls)
            .field(
                "service_token",
                &self.service_token.as_ref().map(|_| "<redacted>"),
            )
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("{service} is not configured on this gateway (set [gateway].{service}_url)")]
    NotConfigured { service: &'static str },
    /// The client's own request body broke off (bad framing, cut short):
    /// 400, as the daemon itself answers.
    #[error("reading the request body failed: {0}")]
    RequestBody(#[source] axum::Error),
    /// Unreachable, too slow or broken: the mapping every daemon shares.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        match e {
            GatewayError::NotConfigured { service } => ApiError::new(
                http::StatusCode::SERVICE_UNAVAILABLE,
                "upstream_not_configured",
                e.to_string(),
            )
            .with_detail("upstream", service),
            GatewayError::RequestBody(_) => ApiError::bad_request("invalid_body", e.to_string()),
            GatewayError::Upstream(up) => up.into(),
        }
    }
}

type Forwarder = Client<HttpsConnector<HttpConnector>, Body>;

/// The forwarding state: one pooled client for every upstream.
pub struct Gateway {
    cfg: GatewayConfig,
    /// Forwards user requests: no default headers, no overall timeout
    /// (bodies stream for as long as they need), URIs sent as they came.
    forward: Forwarder,
    /// The gateway's own calls (`/ready`, `/metrics`), with its token.
    own: reqwest::Client,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("cfg", &self.cfg).finish()
    }
}

/// Headers that describe one connection, not the message: never forwarded.
/// (`Trailer`, which names a response's trailer fields, is end to end; `TE`
/// is re-sent by [`wants_trailers`].)
const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Whether the client accepts trailers (`TE: trailers`): then the gateway
/// asks the upstream for them too and passes them on (queryd's Arrow results
/// say in a trailer whether they were cut at `max_rows`).
fn wants_trailers(h: &HeaderMap) -> bool {
    h.get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .eq_ignore_ascii_case("trailers")
        })
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    // Headers named in `Connection` are hop-by-hop too (RFC 9110 §7.6.1).
    let named: Vec<String> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .collect();
    for (k, v) in from {
        if HOP_BY_HOP.contains(k) || k == header::HOST || named.iter().any(|n| n == k.as_str()) {
            continue;
        }
        to.append(k.clone(), v.clone());
    }
}

/// The forwarding client: plain HTTP or TLS (the system's roots) to the
/// upstreams, pooled, no Nagle.
fn forwarder(connect_timeout: Duration) -> Forwarder {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider.clone())
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "no system CA certificates: https upstreams will not verify");
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("ring supports the default protocol versions")
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth();
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(config)
        });
    let connector = tls.https_or_http().enable_http1().wrap_connector(http);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .pool_timer(TokioTimer::new())
        .build(connector)
}

impl Gateway {
    pub fn new(cfg: GatewayConfig) -> Self {
        let forward = forwarder(cfg.connect_timeout);
        let own = http_client(
            &ClientOptions::with_token(cfg.service_token.clone()).timeout(Duration::from_secs(10)),
        );
        Self { cfg, forward, own }
    }

    fn url(&self, up: Upstream) -> Option<&str> {
        self.cfg
            .urls
            .iter()
            .find(|(u, _)| *u == up)
            .map(|(_, url)| url.trim_end_matches('/'))
    }

    /// Forwards one request to `up`, streaming both bodies. The path and
    /// query are appended to the upstream's base URL exactly as received.
    pub async fn forward(&self, up: Upstream, req: Request) -> Result<Response, GatewayError> {
        let service = up.name();
        let base = self
            .url(up)
            .ok_or(GatewayError::NotConfigured { service })?;
        let broken = |e: Box<dyn std::error::Error + Send + Sync>| {
            UpstreamError::new(service, base, UpstreamKind::Broken, Some(e))
        };
        let (parts, body) = req.into_parts();
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let uri: Uri = format!("{base}{pq}")
            .parse()
            .map_err(|e: http::uri::InvalidUri| broken(Box::new(e)))?;
        // A failure of the client's body is the client's (400), not the
        // upstream's: remember it to tell the two apart by type.
        let client_body: Arc<std::sync::Mutex<Option<axum::Error>>> = Arc::default();
        let body = if body.size_hint().exact() == Some(0) {
            Body::empty()
        } else {
            let slot = client_body.clone();
            Body::new(body.map_err(move |e| {
                let copy = axum::Error::new(std::io::Error::other(e.to_string()));
                *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                copy
            }))
        };
        let mut out = http::Request::new(body);
        *out.method_mut() = parts.method;
        *out.uri_mut() = uri;
        *out.version_mut() = Version::HTTP_11;
        copy_headers(&parts.headers, out.headers_mut());
        if wants_trailers(&parts.headers) {
            out.headers_mut()
                .insert(header::TE, http::HeaderValue::from_static("trailers"));
        }
        let resp = match tokio::time::timeout(self.cfg.response_timeout, self.forward.request(out))
            .await
        {
            Err(_) => {
                return Err(
                    UpstreamError::timed_out(service, base, self.cfg.response_timeout).into(),
                );
            }
            Ok(Err(e)) => {
                if let Some(b) = client_body.lock().unwrap_or_else(|p| p.into_inner()).take() {
                    return Err(GatewayError::RequestBody(b));
                }
                let kind = if e.is_connect() {
                    UpstreamKind::Unreachable
                } else {
                    UpstreamKind::Broken
                };
                return Err(UpstreamError::new(service, base, kind, Some(Box::new(e))).into());
            }
            Ok(Ok(r)) => r,
        };
        let (rparts, rbody) = resp.into_parts();
        let mut headers = HeaderMap::new();
        copy_headers(&rparts.headers, &mut headers);
        // Mid-body failures can only cut the response short; say why.
        let rbody = rbody.map_err(move |e| {
            tracing::warn!(upstream = service, error = %e, "upstream response stream broke");
            e
        });
        let mut out = Response::new(Body::new(rbody));
        *out.status_mut() = rparts.status;
        *out.headers_mut() = headers;
        Ok(out)
    }

    /// One `/ready` probe per configured upstream: ready when its own
    /// `/ready` answers 200.
    pub fn ready_checks(self: &Arc<Self>) -> Vec<ReadyCheck> {
        Upstream::UPSTREAMS
            .iter()
            .filter_map(|&up| {
                let url = format!("{}/ready", self.url(up)?);
                let gw = self.clone();
                Some(ReadyCheck::new(up.name(), move || {
                    let gw = gw.clone();
                    let url = url.clone();
                    async move {
                        let resp = gw
                            .own
                            .get(&url)
                            .send()
                            .await
                            .map_err(|e| format!("not reachable at {url}: {e}"))?;
                        if resp.status().is_success() {
                            return Ok(());
                        }
                        let status = resp.status();
                        let body = resp.text().await.unwrap_or_default();
                        Err(format!("{url} answered {status}: {}", body.trim()))
                    }
                }))
            })
            .collect()
    }

    /// Every reachable upstream's `/metrics`, for the merged exposition.
    pub async fn upstream_metrics(&self) -> Vec<(String, String)> {
        let fetches = Upstream::UPSTREAMS.iter().filter_map(|&up| {
            let url = format!("{}/metrics", self.url(up)?);
            Some(async move {
                let text = async {
                    self.own
                        .get(&url)
                        .send()
                        .await?
                        .error_for_status()?
                        .text()
                        .await
                };
                match text.await {
                    Ok(t) => Some((up.name().to_string(), t)),
                    Err(e) => {
                        tracing::debug!(upstream = up.name(), error = %e, "no metrics");
                        None
                    }
                }
            })
        });
        futures::future::join_all(fetches)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

/// The gateway's routes: each prefix (and everything under it) to its upstream.
pub fn router(gw: Arc<Gateway>) -> Router {
    let mut r = Router::new();
    for up in Upstream::UPSTREAMS {
        let handler = move |State(gw): State<Arc<Gateway>>, req: Request| async move {
            match gw.forward(up, req).await {
                Ok(resp) => resp,
                Err(e) => ApiError::from(e).into_response(),
            }
        };
        r = r
            .route(up.prefix(), any(handler))
            .route(&format!("{}/{{*rest}}", up.prefix()), any(handler));
    }
    r.with_state(gw)
}
