//! gateway: the front door of a split deployment.
//!
//! Each service owns a route prefix (DESIGN.md §1); the gateway forwards
//! `/storage`, `/catalog`, `/ingest`, `/query` and `/vectors` to the upstream
//! configured for it, streaming request and response bodies chunk by chunk
//! (a 1 GiB ingest is never held in memory), and answers with a JSON error when
//! the upstream cannot: 503 when it is not configured or not reachable, 504
//! when it does not answer in time, 502 when it answers with garbage. Auth,
//! request ids, metrics and `/ready` come from the shared server stack; the
//! request id is forwarded so one id follows a request through every process.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use futures::TryStreamExt;
use http::{HeaderMap, HeaderName, StatusCode, header};
use lakehouse_common::{ApiError, ClientOptions, ReadyCheck, http_client};

/// The services behind the gateway, each with its route prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Upstream {
    Storaged,
    Catalogd,
    Ingestd,
    Queryd,
    Vectord,
}

impl Upstream {
    pub const ALL: [Upstream; 5] = [
        Upstream::Storaged,
        Upstream::Catalogd,
        Upstream::Ingestd,
        Upstream::Queryd,
        Upstream::Vectord,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Upstream::Storaged => "storaged",
            Upstream::Catalogd => "catalogd",
            Upstream::Ingestd => "ingestd",
            Upstream::Queryd => "queryd",
            Upstream::Vectord => "vectord",
        }
    }

    /// The route prefix this service owns.
    pub fn prefix(self) -> &'static str {
        match self {
            Upstream::Storaged => "/storage",
            Upstream::Catalogd => "/catalog",
            Upstream::Ingestd => "/ingest",
            Upstream::Queryd => "/query",
            Upstream::Vectord => "/vectors",
        }
    }
}

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
    #[error("{service} at {url} is not reachable: {source}")]
    Unreachable {
        service: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{service} at {url} did not answer within {secs} s")]
    Timeout {
        service: &'static str,
        url: String,
        secs: u64,
    },
    #[error("{service} at {url} failed: {source}")]
    BadUpstream {
        service: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        let msg = e.to_string();
        let service = match &e {
            GatewayError::NotConfigured { service }
            | GatewayError::Unreachable { service, .. }
            | GatewayError::Timeout { service, .. }
            | GatewayError::BadUpstream { service, .. } => *service,
        };
        let err = match e {
            GatewayError::NotConfigured { .. } => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "upstream_not_configured",
                msg,
            ),
            GatewayError::Unreachable { .. } => {
                tracing::warn!(error = %msg, "upstream unreachable");
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable", msg)
            }
            GatewayError::Timeout { .. } => {
                tracing::warn!(error = %msg, "upstream timed out");
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", msg)
            }
            GatewayError::BadUpstream { source, .. } => {
                tracing::error!(error = %msg, detail = ?source, "upstream failed");
                ApiError::new(StatusCode::BAD_GATEWAY, "bad_gateway", msg)
            }
        };
        err.with_detail("upstream", service)
    }
}

/// The forwarding state: one pooled client for every upstream.
pub struct Gateway {
    cfg: GatewayConfig,
    /// Forwards user requests: no default auth header, no overall timeout
    /// (bodies stream for as long as they need).
    forward: reqwest::Client,
    /// The gateway's own calls (`/ready`, `/metrics`), with its token.
    own: reqwest::Client,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway").field("cfg", &self.cfg).finish()
    }
}

/// Headers that describe one connection, not the message: never forwarded.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

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

impl Gateway {
    pub fn new(cfg: GatewayConfig) -> Self {
        let connect = |b: reqwest::ClientBuilder| {
            b.connect_timeout(cfg.connect_timeout)
                .pool_idle_timeout(Duration::from_secs(30))
                .tcp_nodelay(true)
                // The upstream's own encoding passes through untouched.
                .no_gzip()
                .redirect(reqwest::redirect::Policy::none())
        };
        let forward = connect(reqwest::Client::builder())
            .build()
            .expect("the forwarding client builds");
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

    /// Forwards one request to `up`, streaming both bodies.
    pub async fn forward(&self, up: Upstream, req: Request) -> Result<Response, GatewayError> {
        let service = up.name();
        let base = self
            .url(up)
            .ok_or(GatewayError::NotConfigured { service })?;
        let (parts, body) = req.into_parts();
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let url = format!("{base}{pq}");
        let mut headers = HeaderMap::new();
        copy_headers(&parts.headers, &mut headers);
        let mut rb = self
            .forward
            .request(parts.method.clone(), &url)
            .headers(headers);
        if body.size_hint().exact() != Some(0) {
            rb = rb.body(reqwest::Body::wrap_stream(body.into_data_stream()));
        }
        let secs = self.cfg.response_timeout.as_secs();
        let resp = match tokio::time::timeout(self.cfg.response_timeout, rb.send()).await {
            Err(_) => {
                return Err(GatewayError::Timeout {
                    service,
                    url: base.to_string(),
                    secs,
                });
            }
            Ok(Err(e)) if e.is_connect() => {
                return Err(GatewayError::Unreachable {
                    service,
                    url: base.to_string(),
                    source: e,
                });
            }
            Ok(Err(e)) if e.is_timeout() => {
                return Err(GatewayError::Timeout {
                    service,
                    url: base.to_string(),
                    secs,
                });
            }
            Ok(Err(e)) => {
                return Err(GatewayError::BadUpstream {
                    service,
                    url: base.to_string(),
                    source: e,
                });
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        let mut out_headers = HeaderMap::new();
        copy_headers(resp.headers(), &mut out_headers);
        let stream = resp.bytes_stream().map_err(|e| {
            // Mid-body failures can only cut the response short; say why.
            tracing::warn!(error = %e, "upstream response stream broke");
            e
        });
        let mut out = Response::new(Body::from_stream(stream));
        *out.status_mut() = status;
        *out.headers_mut() = out_headers;
        Ok(out)
    }

    /// One `/ready` probe per configured upstream: ready when its own
    /// `/ready` answers 200.
    pub fn ready_checks(self: &Arc<Self>) -> Vec<ReadyCheck> {
        Upstream::ALL
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
        let fetches = Upstream::ALL.iter().filter_map(|&up| {
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
    for up in Upstream::ALL {
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
