//! vectord's HTTP edge under `/vectors/indexes`.

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{DefaultBodyLimit, Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use lakehouse_common::{ApiError, ApiJson};
use serde::Deserialize;

use crate::error::VectorError;
use crate::service::{IndexSpec, Item, SearchRequest, VectorService};

/// Largest request body (a batch add of many vectors as JSON).
pub const MAX_BODY: usize = 512 << 20;

pub fn router(svc: Arc<VectorService>) -> Router {
    Router::new()
        .route("/vectors/indexes", post(create).get(list))
        .route("/vectors/indexes/{name}", get(info).delete(drop_index))
        .route("/vectors/indexes/{name}/add", post(add))
        .route("/vectors/indexes/{name}/search", post(search))
        .route("/vectors/indexes/{name}/items/{*id}", delete(delete_item))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(svc)
}

/// Every vectord error, mapped to its status. Exhaustive on purpose.
impl From<VectorError> for ApiError {
    fn from(e: VectorError) -> Self {
        let msg = e.to_string();
        match e {
            VectorError::InvalidName { .. } => ApiError::bad_request("invalid_name", msg),
            VectorError::InvalidParams(_) => ApiError::bad_request("invalid_params", msg),
            VectorError::InvalidItem {
                position,
                id,
                reason,
            } => ApiError::bad_request("invalid_item", msg)
                .with_detail("position", position)
                .with_detail("id", id)
                .with_detail("reason", reason),
            VectorError::InvalidSearch(_) => ApiError::bad_request("invalid_search", msg),
            VectorError::Denied {
                forbidden: true, ..
            } => ApiError::new(StatusCode::FORBIDDEN, "forbidden", msg),
            VectorError::Denied {
                forbidden: false, ..
            } => ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", msg),
            VectorError::BatchTooLarge { got, limit } => ApiError::too_large(msg)
                .with_detail("got", got)
                .with_detail("limit", limit),
            VectorError::ParamsConflict { .. } => ApiError::conflict("params_conflict", msg),
            VectorError::IndexNotFound(_) | VectorError::ItemNotFound { .. } => {
                ApiError::not_found(msg)
            }
            // storaged not answering: 503/504/502 naming it.
            VectorError::Storage(_) => ApiError::internal_or_upstream(&e),
            VectorError::Upstream(up) => up.into(),
            VectorError::Corrupt { .. } | VectorError::Internal(_) => ApiError::internal(&e),
        }
    }
}

fn name(p: Result<UrlPath<String>, PathRejection>) -> Result<String, ApiError> {
    p.map(|UrlPath(n)| n)
        .map_err(|r| ApiError::bad_request("invalid_name", r.body_text()))
}

async fn create(
    State(svc): State<Arc<VectorService>>,
    ApiJson(spec): ApiJson<IndexSpec>,
) -> Result<Response, ApiError> {
    let (info, created) = svc.create(spec).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(info)).into_response())
}

async fn list(State(svc): State<Arc<VectorService>>) -> impl IntoResponse {
    let indexes = svc.list();
    axum::Json(serde_json::json!({"count": indexes.len(), "indexes": indexes}))
}

async fn info(
    State(svc): State<Arc<VectorService>>,
    n: Result<UrlPath<String>, PathRejection>,
) -> Result<Response, ApiError> {
    Ok(axum::Json(svc.get(&name(n)?)?).into_response())
}

async fn drop_index(
    State(svc): State<Arc<VectorService>>,
    n: Result<UrlPath<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    svc.drop_index(&name(n)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddBody {
    items: Vec<Item>,
}

async fn add(
    State(svc): State<Arc<VectorService>>,
    n: Result<UrlPath<String>, PathRejection>,
    ApiJson(body): ApiJson<AddBody>,
) -> Result<Response, ApiError> {
    let r = svc.add(&name(n)?, body.items).await?;
    Ok(axum::Json(r).into_response())
}

async fn search(
    State(svc): State<Arc<VectorService>>,
    n: Result<UrlPath<String>, PathRejection>,
    ApiJson(req): ApiJson<SearchRequest>,
) -> Result<Response, ApiError> {
    Ok(axum::Json(svc.search(&name(n)?, req).await?).into_response())
}

async fn delete_item(
    State(svc): State<Arc<VectorService>>,
    p: Result<UrlPath<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let UrlPath((n, id)) = p.map_err(|r| ApiError::bad_request("invalid_name", r.body_text()))?;
    svc.delete_item(&n, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
