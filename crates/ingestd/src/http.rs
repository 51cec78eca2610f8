//! ingestd's HTTP edge: `POST /ingest/{*dataset}?format=…&mode=…`.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use lakehouse_common::ApiError;

use crate::error::{ErrorKind, IngestError};
use crate::options::IngestOptions;
use crate::service::Ingestor;

/// The body is streamed, so axum's body limit is off for this route.
pub fn router(ingestor: Arc<Ingestor>) -> Router {
    Router::new()
        .route("/ingest/{*dataset}", post(ingest))
        .layer(DefaultBodyLimit::disable())
        .with_state(ingestor)
}

/// Every ingestd error, mapped to its status. Exhaustive on purpose.
impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        let msg = e.to_string();
        match e {
            IngestError::Unconfirmed { .. } => {
                tracing::warn!(error = %msg, "ingest registration unconfirmed");
                ApiError::unavailable(msg)
            }
            // storaged or catalogd not answering: 503/504/502 naming it.
            IngestError::Storage(_) | IngestError::Upload(_) | IngestError::Catalog(_) => {
                ApiError::internal_or_upstream(&e)
            }
            IngestError::Upstream(up) => (*up).into(),
            IngestError::Spool(_) | IngestError::Encode(_) | IngestError::Internal(_) => {
                ApiError::internal(&e)
            }
            IngestError::Remote { status, .. } => {
                let (_, code) = status_code(e.kind());
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
                ApiError::new(status, code, msg)
            }
            IngestError::InvalidOption(_)
            | IngestError::InvalidName(_)
            | IngestError::EmptyInput
            | IngestError::BadData(_)
            | IngestError::Body(_)
            | IngestError::SchemaMismatch { .. }
            | IngestError::Contended(_)
            | IngestError::NotFound(_)
            | IngestError::Quarantined(_) => {
                let (status, code) = status_code(e.kind());
                ApiError::new(status, code, msg)
            }
        }
    }
}

/// The one table between error kinds and (status, code), read both ways:
/// by the edge above and by [`crate::IngestClient`] ([`kind_from`]).
pub fn status_code(kind: ErrorKind) -> (StatusCode, &'static str) {
    match kind {
        ErrorKind::InvalidOption => (StatusCode::BAD_REQUEST, "invalid_option"),
        ErrorKind::InvalidName => (StatusCode::BAD_REQUEST, "invalid_name"),
        ErrorKind::EmptyInput => (StatusCode::BAD_REQUEST, "empty_input"),
        ErrorKind::BadData => (StatusCode::BAD_REQUEST, "bad_data"),
        ErrorKind::InvalidBody => (StatusCode::BAD_REQUEST, "invalid_body"),
        ErrorKind::SchemaMismatch => (StatusCode::CONFLICT, "schema_mismatch"),
        ErrorKind::Contended => (StatusCode::CONFLICT, "contended"),
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        ErrorKind::Quarantined => (StatusCode::CONFLICT, "quarantined"),
        ErrorKind::Unconfirmed => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        ErrorKind::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
        ErrorKind::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
        ErrorKind::Upstream => (StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable"),
        ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

/// The kind of an error answer: by its code, by its status when the code
/// is not one of ours (a proxy's page, say).
pub fn kind_from(status: StatusCode, code: &str) -> ErrorKind {
    if let Some(k) = ErrorKind::ALL
        .into_iter()
        .find(|k| status_code(*k).1 == code)
    {
        return k;
    }
    match (code, status) {
        (_, StatusCode::UNAUTHORIZED) => ErrorKind::Unauthorized,
        (_, StatusCode::FORBIDDEN) => ErrorKind::Forbidden,
        ("upstream_timeout" | "bad_gateway", _) => ErrorKind::Upstream,
        (_, StatusCode::NOT_FOUND) => ErrorKind::NotFound,
        (_, StatusCode::PAYLOAD_TOO_LARGE | StatusCode::LENGTH_REQUIRED) => ErrorKind::InvalidBody,
        (
            _,
            StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT,
        ) => ErrorKind::Upstream,
        (_, s) if s.is_client_error() => ErrorKind::InvalidOption,
        _ => ErrorKind::Internal,
    }
}

async fn ingest(
    State(ingestor): State<Arc<Ingestor>>,
    dataset: Result<UrlPath<String>, PathRejection>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let UrlPath(dataset) = dataset.map_err(|r| {
        ApiError::bad_request(
            "invalid_name",
            format!("invalid dataset in URL: {}", r.body_text()),
        )
    })?;
    let Query(params) = query.map_err(|r| {
        ApiError::bad_request(
            "invalid_option",
            format!("invalid query: {}", r.body_text()),
        )
    })?;
    let text = |name: header::HeaderName| -> Result<Option<String>, ApiError> {
        headers
            .get(&name)
            .map(|v| {
                v.to_str().map(str::to_string).map_err(|_| {
                    ApiError::bad_request(
                        "invalid_header",
                        format!("header {name} is not valid ASCII"),
                    )
                })
            })
            .transpose()
    };
    let content_type = text(header::CONTENT_TYPE)?;
    let idempotency_key = text(header::HeaderName::from_static("idempotency-key"))?;
    let opts = IngestOptions::from_query(&params, content_type.as_deref())?;
    let result = ingestor
        .ingest(
            &dataset,
            opts,
            body.into_data_stream(),
            idempotency_key.as_deref(),
        )
        .await?;
    let status = if result.manifest.version == 1 && !result.replayed {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(result)).into_response())
}
