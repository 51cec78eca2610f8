//! catalogd's HTTP edge:
//!
//! | route | answer |
//! |---|---|
//! | `POST /catalog/register` | 200 `{manifest, existing}` |
//! | `GET /catalog/manifest/{*name}` | 200 manifest, 404 |
//! | `GET /catalog/manifest/{*name}?version=N` or `?timestamp=RFC3339` | 200 the manifest of that table version, 404 `no_such_version`, 409 `no_table` |
//! | `POST /catalog/compact/{*name}` `{target_size?, zorder?}` (write) | 200 `{manifest, compacted}` (`compacted` null: nothing to rewrite) |
//! | `POST /catalog/restore/{*name}` `{version}` or `{timestamp}` (admin) | 200 the new manifest |
//! | `POST /catalog/sync/{*name}` (write) | 200 the manifest, rolled forward to the table's latest version |
//! | `POST /catalog/vacuum/{*name}` `{dry_run?}` (admin) | 200 `{name, dry_run, oldest_kept_version, latest_version, files, bytes}` |
//! | `GET /catalog/history/{*name}?limit=N` | 200 `{name, history}` newest first (default 100, at most 10 000) |
//! | `DELETE /catalog/manifest/{*name}` (admin) | 200 `{name, vacuum}`: dropped, and what a vacuum of the name will remove; 404 if there was none |
//! | `GET /catalog/list` | 200 `{manifests (sorted by name), count}` |
//!
//! Bodies are capped at 4 MiB (413). Errors are `{"error":{"code","message"}}`;
//! [`status_and_code`] is the one table from [`ErrorKind`] to status and code,
//! used here and, inverted, by the client.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use lakehouse_common::{ApiError, ApiJson, UpstreamError};
use serde::{Deserialize, Serialize};

use crate::error::{CatalogError, ErrorKind};
use crate::{
    At, Catalog, Change, CompactOptions, CompactResponse, DropResponse, Manifest, RegisterRequest,
    RegisterResponse, RestoreRequest, VacuumReport, VacuumRequest,
};

/// Largest request body accepted (a register with tens of thousands of
/// objects still fits).
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// `GET /catalog/list`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListResponse {
    pub manifests: Vec<Manifest>,
    pub count: usize,
}

/// `GET /catalog/history/{name}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryResponse {
    pub name: String,
    pub history: Vec<Change>,
}

/// Default and largest `limit` of a history request.
pub const DEFAULT_HISTORY: usize = 100;
pub const MAX_HISTORY: usize = 10_000;

/// The query of `GET /catalog/manifest/{name}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AtQuery {
    pub version: Option<i64>,
    pub timestamp: Option<String>,
}

impl AtQuery {
    /// Which state is asked for; both at once, or a bad timestamp, is a 400.
    pub fn at(&self) -> Result<At, CatalogError> {
        match (self.version, &self.timestamp) {
            (None, None) => Ok(At::Latest),
            (Some(v), None) if v >= 0 => Ok(At::Version(v)),
            (Some(v), None) => Err(CatalogError::InvalidRequest(format!(
                "version {v} is negative; table versions start at 0"
            ))),
            (None, Some(t)) => parse_timestamp(t).map(At::Time),
            (Some(_), Some(_)) => Err(CatalogError::InvalidRequest(
                "give either version or timestamp, not both".to_string(),
            )),
        }
    }
}

/// An RFC 3339 time (`2026-12-01T10:00:00Z`), or a date (`2026-12-01`, its
/// start in UTC).
pub fn parse_timestamp(t: &str) -> Result<chrono::DateTime<chrono::Utc>, CatalogError> {
    if let Ok(ts) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(ts.with_timezone(&chrono::Utc));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d")
        && let Some(start) = d.and_hms_opt(0, 0, 0)
    {
        return Ok(start.and_utc());
    }
    Err(CatalogError::InvalidRequest(format!(
        "timestamp {:?} is not an RFC 3339 time (like 2026-12-01T10:00:00Z) or a date",
        crate::error::truncate_for_message(t)
    )))
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
        .route("/catalog/history/{*name}", get(history))
        .route("/catalog/compact/{*name}", post(compact))
        .route("/catalog/restore/{*name}", post(restore))
        .route("/catalog/sync/{*name}", post(sync))
        .route("/catalog/vacuum/{*name}", post(vacuum))
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
        ErrorKind::NoTable => (StatusCode::CONFLICT, "no_table"),
        ErrorKind::NoSuchVersion => (StatusCode::NOT_FOUND, "no_such_version"),
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
            | CatalogError::SchemaIncompatible { .. }
            | CatalogError::VersionMismatch { .. }
            | CatalogError::NotFound { .. }
            | CatalogError::NoTable { .. }
            | CatalogError::NoSuchVersion(_) => ApiError::new(status, code, e.to_string()),
            // A remote catalog (or storaged) not answering: 503/504/502 naming it.
            CatalogError::Unavailable { .. } => match UpstreamError::find(&e) {
                Some(up) => up.into(),
                None => ApiError::new(status, code, e.to_string()),
            },
            CatalogError::Storage { .. } => ApiError::internal_or_upstream(&e),
            // Server faults: logged with an id, never leaked.
            CatalogError::CorruptManifest { .. }
            | CatalogError::Encode { .. }
            | CatalogError::Table { .. } => ApiError::internal(&e),
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
    query: Result<Query<AtQuery>, QueryRejection>,
) -> Result<ApiJson<Manifest>, ApiError> {
    let name = parse_name(name)?;
    let Query(q) = query.map_err(|r| ApiError::bad_request("invalid_request", r.body_text()))?;
    Ok(ApiJson(catalog.get_at(&name, q.at()?).await?))
}

/// A body that may be left out: empty (or only whitespace) is the default.
fn optional_json<T: Default + serde::de::DeserializeOwned>(
    body: &[u8],
    what: &str,
) -> Result<T, ApiError> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        None => return Ok(T::default()),
        // serde would take a struct from an array too.
        Some(b'{') => {}
        Some(_) => {
            return Err(ApiError::bad_request(
                "invalid_json",
                format!("the body is not {what}: expected a JSON object"),
            ));
        }
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("invalid_json", format!("the body is not {what}: {e}")))
}

async fn compact(
    State(catalog): State<Arc<dyn Catalog>>,
    name: Result<UrlPath<String>, PathRejection>,
    body: axum::body::Bytes,
) -> Result<ApiJson<CompactResponse>, ApiError> {
    let name = parse_name(name)?;
    let opts: CompactOptions = optional_json(&body, "compaction options")?;
    if opts.target_size.is_some_and(|s| s < 1 << 20) {
        return Err(ApiError::bad_request(
            "invalid_request",
            "target_size must be at least 1 MiB (1048576)",
        ));
    }
    Ok(ApiJson(catalog.compact(&name, opts).await?))
}

async fn sync(
    State(catalog): State<Arc<dyn Catalog>>,
    name: Result<UrlPath<String>, PathRejection>,
) -> Result<ApiJson<Manifest>, ApiError> {
    let name = parse_name(name)?;
    Ok(ApiJson(catalog.sync(&name).await?))
}

async fn vacuum(
    State(catalog): State<Arc<dyn Catalog>>,
    name: Result<UrlPath<String>, PathRejection>,
    body: axum::body::Bytes,
) -> Result<ApiJson<VacuumReport>, ApiError> {
    let name = parse_name(name)?;
    let req: VacuumRequest = optional_json(&body, "a vacuum request")?;
    Ok(ApiJson(catalog.vacuum(&name, req.dry_run).await?))
}

async fn restore(
    State(catalog): State<Arc<dyn Catalog>>,
    name: Result<UrlPath<String>, PathRejection>,
    ApiJson(req): ApiJson<RestoreRequest>,
) -> Result<ApiJson<Manifest>, ApiError> {
    let name = parse_name(name)?;
    let at = AtQuery {
        version: req.version,
        timestamp: req.timestamp,
    }
    .at()?;
    if at == At::Latest {
        return Err(ApiError::bad_request(
            "invalid_request",
            "give the version or timestamp to restore",
        ));
    }
    Ok(ApiJson(catalog.restore(&name, at).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryQuery {
    limit: Option<usize>,
}

async fn history(
    State(catalog): State<Arc<dyn Catalog>>,
    name: Result<UrlPath<String>, PathRejection>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<ApiJson<HistoryResponse>, ApiError> {
    let name = parse_name(name)?;
    let Query(q) = query.map_err(|r| ApiError::bad_request("invalid_request", r.body_text()))?;
    let limit = q.limit.unwrap_or(DEFAULT_HISTORY);
    if limit == 0 || limit > MAX_HISTORY {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("limit must be 1..={MAX_HISTORY}"),
        ));
    }
    let history = catalog.history(&name, limit).await?;
    Ok(ApiJson(HistoryResponse { name, history }))
}

async fn delete_manifest(
    State(catalog): State<Arc<dyn Catalog>>,
    name: Result<UrlPath<String>, PathRejection>,
) -> Result<ApiJson<DropResponse>, ApiError> {
    let name = parse_name(name)?;
    match catalog.drop_dataset(&name).await? {
        Some(vacuum) => Ok(ApiJson(DropResponse { name, vacuum })),
        None => Err(CatalogError::NotFound { name }.into()),
    }
}

async fn list(State(catalog): State<Arc<dyn Catalog>>) -> Result<ApiJson<ListResponse>, ApiError> {
    let manifests = catalog.list().await?;
    Ok(ApiJson(ListResponse {
        count: manifests.len(),
        manifests,
    }))
}
