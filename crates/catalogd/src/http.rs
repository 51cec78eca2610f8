//! catalogd's HTTP edge:
//!
//! | route | answer |
//! |---|---|
//! | `POST /catalog/register` | 200 `{manifest, existing}` |
//! | `GET /catalog/manifest/{*name}` | 200 manifest, 404 |
//! | `DELETE /catalog/manifest/{*name}` | 204 deleted, 404 if there was none |
//! | `GET /catalog/list` | 200 `{manifests (sorted by name), count}` |
//!
//! Bodies are capped at 4 MiB (413). Errors are `{"error":{"code","message"}}`;
//! [`status_and_code`] is the one table from [`ErrorKind`] to status and code,
//! used here and, inverted, by the client.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use lakehouse_common::{ApiError, ApiJson, UpstreamError};
use serde::{Deserialize, Serialize};

use crate::error::{CatalogError, ErrorKind};
use crate::{Catalog, Manifest, RegisterRequest, RegisterResponse};

/// Largest request body accepted (a register with tens of thousands of
/// objects still fits).
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// `GET /catalog/list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListResponse {
    pub manifests: Vec<Manifest>,
    pub count: usize,
}

/// Routes for catalogd over any [`Catalog`] (the in-process registry, or a
/// remote one behind a gateway).
pub fn router(catalog: Arc<dyn Catalog>) -> Router {
    Router::new()
        .route("/catalog/register", post(register))
        .route(
            "/catalog/manifest/{*name}",
            get(get_manifest).delete(delete_manifest),
        )
        .route("/catalog/list", get(list))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(catalog)
}

/// Status and wire code of each kind of error. Exhaustive on purpose: a new
/// kind cannot silently become a 500.
pub fn status_and_code(kind: ErrorKind) -> (StatusCode, &'static str) {
    match kind {
        ErrorKind::InvalidName => (StatusCode::BAD_REQUEST, "invalid_name"),
        ErrorKind::EmptyFingerprint => (StatusCode::BAD_REQUEST, "empty_fingerprint"),
        ErrorKind::InvalidRequest => (StatusCode::BAD_REQUEST, "invalid_request"),
        ErrorKind::InvalidObject => (StatusCode::BAD_REQUEST, "invalid_object"),
        ErrorKind::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        ErrorKind::FingerprintConflict => (StatusCode::CONFLICT, "fingerprint_conflict"),
        ErrorKind::VersionMismatch => (StatusCode::PRECONDITION_FAILED, "version_mismatch"),
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        ErrorKind::Quarantined => (StatusCode::CONFLICT, "quarantined"),
        ErrorKind::CorruptManifest | ErrorKind::Storage | ErrorKind::Internal => {
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        }
        ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
    }
}

/// Every catalog error, mapped to its response. Exhaustive on purpose.
impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        let (status, code) = status_and_code(e.kind());
        match e {
            CatalogError::InvalidName { .. }
            | CatalogError::EmptyFingerprint
            | CatalogError::InvalidRequest(_)
            | CatalogError::InvalidObject { .. }
            | CatalogError::Quarantined { .. }
            | CatalogError::FingerprintConflict { .. }
            | CatalogError::VersionMismatch { .. }
            | CatalogError::NotFound { .. } => ApiError::new(status, code, e.to_string()),
            // A remote catalog (or storaged) not answering: 503/504/502 naming it.
            CatalogError::Unavailable { .. } => match UpstreamError::find(&e) {
                Some(up) => up.into(),
                None => ApiError::new(status, code, e.to_string()),
            },
            CatalogError::Storage { .. } => ApiError::internal_or_upstream(&e),
            // Server faults: logged with an id, never leaked.
            CatalogError::CorruptManifest { .. } | CatalogError::Encode { .. } => {
                ApiError::internal(&e)
            }
            // Relayed from a remote catalog: keep its status, message and kind.
            CatalogError::Remote {
                status: s,
                ref message,
                ..
            } => ApiError::new(
                StatusCode::from_u16(s).unwrap_or(status),
                code,
                message.clone(),
            ),
        }
    }
}

fn parse_name(raw: Result<UrlPath<String>, PathRejection>) -> Result<String, ApiError> {
    raw.map(|UrlPath(n)| n).map_err(|r| {
        ApiError::bad_request(
            "invalid_name",
            format!("invalid dataset name in URL: {}", r.body_text()),
        )
    })
}

async fn register(
    State(catalog): State<Arc<dyn Catalog>>,
    ApiJson(req): ApiJson<RegisterRequest>,
) -> Result<ApiJson<RegisterResponse>, ApiError> {
    Ok(ApiJson(catalog.register(req).await?))
}

async fn get_manifest(
    State(catalog): State<Arc<dyn Catalog>>,
    name: Result<UrlPath<String>, PathRejection>,
) -> Result<ApiJson<Manifest>, ApiError> {
    let name = parse_name(name)?;
    Ok(ApiJson(catalog.get(&name).await?))
}

async fn delete_manifest(
    State(catalog): State<Arc<dyn Catalog>>,
    name: Result<UrlPath<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let name = parse_name(name)?;
    if catalog.delete(&name).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(CatalogError::NotFound { name }.into())
    }
}

async fn list(State(catalog): State<Arc<dyn Catalog>>) -> Result<ApiJson<ListResponse>, ApiError> {
    let manifests = catalog.list().await?;
    Ok(ApiJson(ListResponse {
        count: manifests.len(),
        manifests,
    }))
}
