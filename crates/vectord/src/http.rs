//! vectord's HTTP edge under `/vectors/indexes`.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lakehouse_common::{ApiError, ApiJson, EmbedError};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::batch::{Batch, JsonAddBody};
use crate::error::VectorError;
use crate::service::{IndexSpec, SearchBatch, SearchRequest, VectorService, blocking};
use crate::{ipc, limits};

/// Largest request body (a batch add of many vectors as JSON).
pub const MAX_BODY: usize = 512 << 20;

pub fn router(svc: Arc<VectorService>) -> Router {
    Router::new()
        .route("/vectors/indexes", post(create).get(list))
        .route("/vectors/indexes/{name}", get(info).delete(drop_index))
        .route("/vectors/indexes/{name}/add", post(add))
        .route("/vectors/indexes/{name}/search", post(search))
        .route("/vectors/indexes/{name}/sync", post(sync))
        .route(
            "/vectors/indexes/{name}/items/{*id}",
            get(get_item).delete(delete_item),
        )
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
            VectorError::InvalidBody(_) => ApiError::bad_request("invalid_body", msg),
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
            VectorError::IndexNotFound(_) => ApiError::not_found(msg),
            VectorError::ItemNotFound { id, .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "item_not_found", msg).with_detail("id", id)
            }
            VectorError::FollowsDataset(_) => ApiError::conflict("index_follows_dataset", msg),
            VectorError::DatasetNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "dataset_not_found", msg)
            }
            VectorError::InvalidSource(_) => ApiError::bad_request("invalid_source", msg),
            VectorError::NoCatalog => ApiError::new(StatusCode::NOT_IMPLEMENTED, "no_catalog", msg),
            VectorError::Embed(EmbedError::NotConfigured(_)) => {
                ApiError::new(StatusCode::NOT_IMPLEMENTED, "no_embedding_model", msg)
            }
            VectorError::Embed(EmbedError::Invalid(_)) => {
                ApiError::bad_request("invalid_text", msg)
            }
            // storaged (or catalogd) not answering: 503/504/502 naming it.
            VectorError::Storage(_) | VectorError::Catalog(_) | VectorError::ReadObject { .. } => {
                ApiError::internal_or_upstream(&e)
            }
            VectorError::Upstream(up) => up.into(),
            VectorError::Embed(EmbedError::Model(_))
            | VectorError::Corrupt { .. }
            | VectorError::Internal(_) => ApiError::internal(&e),
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

/// `POST /vectors/indexes/{name}/sync`: catch up with the dataset now.
async fn sync(
    State(svc): State<Arc<VectorService>>,
    n: Result<UrlPath<String>, PathRejection>,
) -> Result<Response, ApiError> {
    Ok(axum::Json(svc.sync(&name(n)?).await?).into_response())
}

async fn drop_index(
    State(svc): State<Arc<VectorService>>,
    n: Result<UrlPath<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    svc.drop_index(&name(n)?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// How a request body is encoded, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Arrow,
}

fn body_kind(headers: &HeaderMap) -> Result<BodyKind, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        Ok(BodyKind::Json)
    } else if essence == ipc::CONTENT_TYPE {
        Ok(BodyKind::Arrow)
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "expected Content-Type: application/json or {}",
                ipc::CONTENT_TYPE
            ),
        ))
    }
}

fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(format!("request body too large: {}", e.body_text()))
        } else {
            ApiError::bad_request("invalid_body", e.body_text())
        }
    })
}

/// A JSON decoding error, as the JSON extractor words it.
fn json_error(e: serde_json::Error) -> ApiError {
    match e.classify() {
        serde_json::error::Category::Data => {
            ApiError::bad_request("invalid_body", format!("invalid JSON body: {e}"))
        }
        _ => ApiError::bad_request("invalid_json", format!("malformed JSON: {e}")),
    }
}

/// JSON bodies are decoded on a blocking thread: a 100 MB batch takes a
/// while, and the async workers must keep serving meanwhile.
async fn decode_json<T: Send + 'static>(
    body: Bytes,
    f: impl FnOnce(&[u8]) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(move || f(&body))
        .await
        .map_err(|e| ApiError::internal(&VectorError::Internal(e.to_string())))?
}

/// `POST /vectors/indexes/{name}/add`: JSON `{"items": [...]}` or an Arrow
/// IPC stream (see [`crate::ipc`]).
async fn add(
    State(svc): State<Arc<VectorService>>,
    n: Result<UrlPath<String>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let kind = body_kind(&headers)?;
    let body = body_bytes(body)?;
    let name = name(n)?;
    let batch: Batch = match kind {
        BodyKind::Json => {
            decode_json(body, |b| {
                let body: JsonAddBody = serde_json::from_slice(b).map_err(json_error)?;
                if body.items > limits::MAX_BATCH {
                    return Err(VectorError::BatchTooLarge {
                        got: body.items,
                        limit: limits::MAX_BATCH,
                    }
                    .into());
                }
                Ok(body.batch)
            })
            .await?
        }
        BodyKind::Arrow => blocking(move || ipc::decode_add(body)).await?,
    };
    let r = svc.add_batch(&name, batch).await?;
    Ok(axum::Json(r).into_response())
}

/// A JSON search: one `vector` and/or `text` (with `hybrid`), or a batch of
/// `vectors`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchJson {
    #[serde(default)]
    vector: Option<Vec<f32>>,
    #[serde(default)]
    vectors: Option<Vec<Vec<f32>>>,
    #[serde(default)]
    k: Option<usize>,
    #[serde(default)]
    ef: Option<usize>,
    #[serde(default)]
    filter: Option<Map<String, Value>>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    hybrid: bool,
}

/// The parameters of an Arrow batch search, in the query string.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SearchParams {
    #[serde(default)]
    k: Option<usize>,
    #[serde(default)]
    ef: Option<usize>,
    /// A JSON object.
    #[serde(default)]
    filter: Option<String>,
}

const DEFAULT_K: usize = 10;

/// `POST /vectors/indexes/{name}/search`: JSON `{"vector" | "text", …}` answers a list
/// of hits; JSON `{"vectors": [...], …}` or an Arrow stream of query vectors
/// (`k`, `ef`, `filter` in the query string) answers one list per query.
async fn search(
    State(svc): State<Arc<VectorService>>,
    n: Result<UrlPath<String>, PathRejection>,
    headers: HeaderMap,
    uri: Uri,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let kind = body_kind(&headers)?;
    let body = body_bytes(body)?;
    let name = name(n)?;
    let req = match kind {
        BodyKind::Json => {
            decode_json(body, |b| {
                serde_json::from_slice::<SearchJson>(b).map_err(json_error)
            })
            .await?
        }
        BodyKind::Arrow => {
            let Query(p) = Query::<SearchParams>::try_from_uri(&uri)
                .map_err(|e| ApiError::bad_request("invalid_search", e.body_text()))?;
            let filter = p
                .filter
                .map(|f| serde_json::from_str::<Map<String, Value>>(&f))
                .transpose()
                .map_err(|e| {
                    VectorError::InvalidSearch(format!("filter must be a JSON object: {e}"))
                })?;
            let vectors = blocking(move || ipc::decode_queries(body)).await?;
            SearchJson {
                vector: None,
                vectors: Some(vectors),
                k: p.k,
                ef: p.ef,
                filter,
                text: None,
                hybrid: false,
            }
        }
    };
    let k = req.k.unwrap_or(DEFAULT_K);
    match (req.vector, req.vectors) {
        (vector, None) if vector.is_some() || req.text.is_some() => {
            let r = SearchRequest {
                vector: vector.unwrap_or_default(),
                k,
                ef: req.ef,
                filter: req.filter,
                text: req.text,
                hybrid: req.hybrid,
            };
            Ok(axum::Json(svc.search(&name, r).await?).into_response())
        }
        (None, Some(_)) if req.text.is_some() || req.hybrid => Err(VectorError::InvalidSearch(
            "a batch search (`vectors`) takes no `text` or `hybrid`".to_string(),
        )
        .into()),
        (None, Some(vectors)) => {
            let r = SearchBatch {
                vectors,
                k,
                ef: req.ef,
                filter: req.filter,
            };
            Ok(axum::Json(svc.search_batch(&name, r).await?).into_response())
        }
        _ => Err(VectorError::InvalidSearch(
            "give either `vector` or `text` (one query), or `vectors` (a batch)".to_string(),
        )
        .into()),
    }
}

async fn get_item(
    State(svc): State<Arc<VectorService>>,
    p: Result<UrlPath<(String, String)>, PathRejection>,
) -> Result<Response, ApiError> {
    let UrlPath((n, id)) = p.map_err(|r| ApiError::bad_request("invalid_name", r.body_text()))?;
    Ok(axum::Json(svc.get_item(&n, &id)?).into_response())
}

async fn delete_item(
    State(svc): State<Arc<VectorService>>,
    p: Result<UrlPath<(String, String)>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let UrlPath((n, id)) = p.map_err(|r| ApiError::bad_request("invalid_name", r.body_text()))?;
    svc.delete_item(&n, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
