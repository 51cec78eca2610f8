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

use crate::error::IngestError;
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
            IngestError::InvalidOption(_) => ApiError::bad_request("invalid_option", msg),
            IngestError::InvalidName(_) => ApiError::bad_request("invalid_name", msg),
            IngestError::EmptyInput => ApiError::bad_request("empty_input", msg),
            IngestError::BadData(_) => ApiError::bad_request("bad_data", msg),
            IngestError::Body(_) => ApiError::bad_request("invalid_body", msg),
            IngestError::SchemaMismatch { .. } => ApiError::conflict("schema_mismatch", msg),
            IngestError::Contended(_) => ApiError::conflict("contended", msg),
            IngestError::NotFound(_) => ApiError::not_found(msg),
            IngestError::Quarantined(_) => ApiError::conflict("quarantined", msg),
            IngestError::Unconfirmed { .. } => {
                tracing::warn!(error = %msg, "ingest registration unconfirmed");
                ApiError::unavailable(msg)
            }
            // storaged or catalogd not answering: 503/504/502 naming it.
            IngestError::Storage(_) | IngestError::Upload(_) | IngestError::Catalog(_) => {
                ApiError::internal_or_upstream(&e)
            }
            IngestError::Spool(_) | IngestError::Encode(_) | IngestError::Internal(_) => {
                ApiError::internal(&e)
            }
        }
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
