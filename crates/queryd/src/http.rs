//! The HTTP edge: `POST /query/sql`.
//!
//! Body `{"sql": "...", "format": "csv"}` (`format` optional). The format is
//! chosen by, in order: the body's `format`, the `?format=` query parameter,
//! the `Accept` header, else JSON. Results stream with the format's
//! `Content-Type`. Errors before the first byte are JSON
//! `{"error": {"code", "message"}}` with a 4xx/5xx status (syntax errors
//! add `line` and `column`). How a result that already streamed ends when
//! it is cut at `max_rows` or fails is the format's in-band marker (see
//! [`crate::encode`]); an Arrow stream that fails is cut off (the client sees
//! a truncated transfer, never a result that looks complete). Every
//! streamed response also declares the trailers `lakehouse-result`
//! (`complete`, `truncated` or `error`) and `lakehouse-rows` /
//! `lakehouse-max-rows` / `lakehouse-error-code`, sent to clients that ask
//! with `TE: trailers`.
//!
//! Write statements (`INSERT`, `CREATE TABLE AS`, `DELETE`, `UPDATE`,
//! `MERGE`; see [`crate::write`]) need a token with the `write` role (or
//! no auth configured); a `read` token gets 403 `write_not_allowed`.
//!
//! `GET /query/stats`: the running-query count and the cancellation
//! counters (disconnected clients, the memory guard).

use std::sync::Arc;

use axum::Extension;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Query as UrlQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::StreamExt;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body::Frame;
use lakehouse_common::auth::Principal;
use lakehouse_common::{ApiError, ApiJson};
use serde::Deserialize;

use crate::encode::Format;
use crate::engine::{Query, StreamEnd};
use crate::error::QueryError;
use crate::write::Access;

/// `POST /query/sql`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    pub sql: String,
    #[serde(default)]
    pub format: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SqlParams {
    format: Option<String>,
}

/// SQL text is small; 1 MiB is generous.
const BODY_LIMIT: usize = 1 << 20;

pub fn router(engine: Arc<dyn Query>) -> Router {
    Router::new()
        .route("/query/sql", post(sql))
        .route("/query/stats", get(stats))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(engine)
}

fn choose_format(
    body: Option<&str>,
    param: Option<&str>,
    headers: &HeaderMap,
) -> Result<Format, QueryError> {
    if let Some(f) = body.or(param) {
        return Format::parse(f);
    }
    Ok(headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .and_then(Format::from_accept)
        .unwrap_or_default())
}

async fn sql(
    State(engine): State<Arc<dyn Query>>,
    UrlQuery(params): UrlQuery<SqlParams>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<SqlRequest>,
) -> Result<Response, ApiError> {
    let format = choose_format(req.format.as_deref(), params.format.as_deref(), &headers)?;
    let access = Access::of(principal.as_ref().map(|p| &p.0));
    let result = engine
        .execute(&req.sql, format, access)
        .await
        .inspect_err(|e| {
            if e.is_client_error() {
                tracing::debug!(error = %e, "query rejected");
            }
        })?;
    let data = result.bytes.map(|item| {
        item.map(Frame::data).inspect_err(
            |e| tracing::warn!(error = %e, "query failed while streaming; response aborted"),
        )
    });
    let end = result.end;
    let trailers = futures::stream::once(async move {
        let end = match end {
            Some(rx) => rx.await.ok(),
            None => None,
        };
        end.map(|e| Ok(Frame::trailers(trailer_fields(&e))))
    })
    .filter_map(|f| async move { f });
    let body = Body::new(http_body_util::StreamBody::new(data.chain(trailers)));
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, format.content_type()),
            (header::TRAILER, TRAILERS),
        ],
        body,
    )
        .into_response())
}

const TRAILERS: &str = "lakehouse-result, lakehouse-rows, lakehouse-max-rows, lakehouse-error-code";

fn trailer_fields(end: &StreamEnd) -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(HeaderName::from_static(name), v);
        }
    };
    match end {
        StreamEnd::Complete { rows } => {
            put("lakehouse-result", "complete".into());
            put("lakehouse-rows", rows.to_string());
        }
        StreamEnd::Truncated { max_rows } => {
            put("lakehouse-result", "truncated".into());
            put("lakehouse-max-rows", max_rows.to_string());
        }
        StreamEnd::Failed { code, .. } => {
            put("lakehouse-result", "error".into());
            put("lakehouse-error-code", code.clone());
        }
    }
    h
}

/// `GET /query/stats`.
async fn stats(State(engine): State<Arc<dyn Query>>) -> Result<Response, ApiError> {
    match engine.stats() {
        Some(s) => Ok(axum::Json(s).into_response()),
        None => Err(ApiError::not_found(
            "this query service keeps no statistics",
        )),
    }
}
