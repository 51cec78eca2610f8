//! Serving: the standard middleware stack, `/health`, `/ready`, `/metrics`,
//! every error in the JSON envelope, and connections served with timeouts and
//! a cap ([`crate::conn`]) until SIGINT/SIGTERM.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use serde_json::json;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::Authenticator;
pub use crate::conn::ConnLimits;
use crate::error::ApiError;
use crate::metrics::{self, Metrics};

/// A named readiness probe: `Ok` when the dependency answers.
#[derive(Clone)]
pub struct ReadyCheck {
    pub name: String,
    pub check: Arc<dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync>,
}

impl ReadyCheck {
    pub fn new<F, Fut>(name: impl Into<String>, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self {
            name: name.into(),
            check: Arc::new(move || Box::pin(f())),
        }
    }
}

impl std::fmt::Debug for ReadyCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadyCheck")
            .field("name", &self.name)
            .finish()
    }
}

/// Limits applied to every route.
#[derive(Clone)]
pub struct ServerOptions {
    /// Time allowed to produce response headers (includes reading a streamed
    /// request body, so it bounds uploads too).
    pub request_timeout: Duration,
    /// Bearer-token auth in front of every route but `/health`; `None` = off.
    pub auth: Option<Arc<Authenticator>>,
    /// Other processes' metrics to merge into `/metrics` (the gateway's view
    /// of a split deployment), each sample labelled with its service.
    pub metrics_sources: Option<MetricsSources>,
}

/// Fetches `(service, exposition text)` pairs from other processes.
pub type MetricsSources = Arc<dyn Fn() -> BoxFuture<'static, Vec<(String, String)>> + Send + Sync>;

impl std::fmt::Debug for ServerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerOptions")
            .field("request_timeout", &self.request_timeout)
            .field("auth", &self.auth)
            .field("metrics_sources", &self.metrics_sources.is_some())
            .finish()
    }
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(3600),
            auth: None,
            metrics_sources: None,
        }
    }
}

#[derive(Clone)]
struct OpsState {
    metrics: Metrics,
    checks: Arc<Vec<ReadyCheck>>,
    sources: Option<MetricsSources>,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Wraps the merged service routes with the operational endpoints and the
/// standard middleware stack.
pub fn finish_router(
    services: Router,
    metrics: Metrics,
    checks: Vec<ReadyCheck>,
    opts: &ServerOptions,
) -> Router {
    let ops = OpsState {
        metrics: metrics.clone(),
        checks: Arc::new(checks),
        sources: opts.metrics_sources.clone(),
    };
    let ops_routes = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .with_state(ops);

    let routed = services
        .merge(ops_routes)
        .route_layer(axum::middleware::from_fn_with_state(
            metrics,
            metrics::track,
        ))
        .fallback(fallback);
    // The id in scope for the handler, so clients pass it on.
    let routed = routed.layer(axum::middleware::from_fn(crate::request_id::scope));
    // Outside routing, so an unknown route needs a token too (no probing).
    let routed = match &opts.auth {
        Some(a) => routed.layer(axum::middleware::from_fn_with_state(
            a.clone(),
            crate::auth::require,
        )),
        None => routed,
    };
    let routed = routed.layer(TimeoutLayer::with_status_code(
        StatusCode::REQUEST_TIMEOUT,
        opts.request_timeout,
    ));
    // Outside everything that can answer on its own (405s, the timeout's
    // 408, extractor rejections), so every error is JSON.
    crate::envelope::around(routed)
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
                let id = req
                    .headers()
                    .get(REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("-");
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

async fn fallback() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "no_route", "no such route")
}

fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = if let Some(s) = err.downcast_ref::<String>() {
        s.clone()
    } else if let Some(s) = err.downcast_ref::<&str>() {
        s.to_string()
    } else {
        "unknown panic".to_string()
    };
    let id = uuid::Uuid::new_v4().simple().to_string();
    tracing::error!(error_id = %id, panic = %detail, "handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        format!("internal error (id {id}); details are in the server log"),
    )
    .into_response()
}

async fn health() -> impl IntoResponse {
    axum::Json(json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}))
}

async fn ready(State(ops): State<OpsState>) -> Response {
    let results = futures::future::join_all(ops.checks.iter().map(|c| {
        let fut = (c.check)();
        let name = c.name.clone();
        async move {
            let res = tokio::time::timeout(Duration::from_secs(5), fut)
                .await
                .unwrap_or_else(|_| Err("timed out after 5s".to_string()));
            (name, res)
        }
    }))
    .await;
    let all_ok = results.iter().all(|(_, r)| r.is_ok());
    let checks: serde_json::Map<String, serde_json::Value> = results
        .into_iter()
        .map(|(name, r)| {
            let v = match r {
                Ok(()) => json!({"ok": true}),
                Err(e) => json!({"ok": false, "error": e}),
            };
            (name, v)
        })
        .collect();
    let status = if all_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({"ready": all_ok, "checks": checks})),
    )
        .into_response()
}

async fn render_metrics(State(ops): State<OpsState>) -> impl IntoResponse {
    (
        [(
            http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        match &ops.sources {
            None => ops.metrics.render(),
            Some(fetch) => {
                let mut parts = vec![("gateway".to_string(), ops.metrics.render())];
                parts.extend(fetch().await);
                metrics::merge_expositions(&parts)
            }
        },
    )
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => futures::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = futures::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        _ = term => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Serves `router` on `listener` with `limits` until `shutdown` resolves,
/// then drains in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::conn::serve(listener, router, limits, shutdown).await
}
