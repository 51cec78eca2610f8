//! The HTTP edge: `POST /query/sql`.
//!
//! Body `{"sql": "...", "format": "csv"}` (`format` optional). The format is
//! chosen by, in order: the body's `format`, the `?format=` query parameter,
//! the `Accept` header, else JSON. Results stream with the format's
//! `Content-Type`. Errors before the first byte are JSON
//! `{"error": {"code", "message"}}` with a 4xx/5xx status; an error after
//! streaming began can only abort the response (the connection is closed
//! before the body's end, so a client sees a truncated transfer, never a
//! result that looks complete).

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Query as UrlQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use http::{HeaderMap, StatusCode, header};
use lakehouse_common::{ApiError, ApiJson};
use serde::Deserialize;

use crate::encode::Format;
use crate::engine::Query;
use crate::error::QueryError;

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
    headers: HeaderMap,
    ApiJson(req): ApiJson<SqlRequest>,
) -> Result<Response, ApiError> {
    let format = choose_format(req.format.as_deref(), params.format.as_deref(), &headers)?;
    let stream = engine.sql(&req.sql, format).await.inspect_err(|e| {
        if e.is_client_error() {
            tracing::debug!(error = %e, "query rejected");
        }
    })?;
    let body = Body::from_stream(stream.map(|item| {
        item.inspect_err(
            |e| tracing::warn!(error = %e, "query failed while streaming; response aborted"),
        )
    }));
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response())
}
