//! storaged's HTTP edge: `/storage/objects/{*key}` (PUT, GET, HEAD, DELETE)
//! and `/storage/list`. Translates headers to core calls and core errors to
//! statuses; no storage logic lives here.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{DefaultBodyLimit, Path as UrlPath, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};

use chrono::{DateTime, Utc};

use lakehouse_common::ApiError;
use object_store::{GetRange, GetResultPayload};
use serde::Deserialize;

use crate::error::StorageError;
use crate::key::ObjectKey;
use crate::service::{DEFAULT_LIST_LIMIT, GetRequest, PutCondition, ReadResult, Storage};

/// Routes for storaged. Request bodies are streamed, so axum's default body
/// limit is off here; the core enforces `max_object_size`.
pub fn router(storage: Arc<Storage>) -> Router {
    Router::new()
        .route(
            "/storage/objects/{*key}",
            put(put_object)
                .get(get_object)
                .head(head_object)
                .delete(delete_object),
        )
        .route("/storage/list", get(list_objects))
        .layer(DefaultBodyLimit::disable())
        .with_state(storage)
}

/// Every storaged error, mapped to its status. Exhaustive on purpose.
impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        let msg = e.to_string();
        match e {
            StorageError::InvalidKey { .. } => ApiError::bad_request("invalid_key", msg),
            StorageError::InvalidArgument(_) => ApiError::bad_request("invalid_argument", msg),
            StorageError::Body(_) => ApiError::bad_request("invalid_body", msg),
            StorageError::NotFound { .. } => ApiError::not_found(msg),
            StorageError::AlreadyExists { .. } | StorageError::PreconditionFailed { .. } => {
                ApiError::precondition_failed(msg)
            }
            StorageError::NotModified { .. } => {
                ApiError::new(StatusCode::NOT_MODIFIED, "not_modified", msg)
            }
            StorageError::TooLarge { .. } => ApiError::too_large(msg),
            StorageError::RangeNotSatisfiable { size } => ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                msg,
            )
            .with_header(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{size}")).expect("ascii"),
            ),
            StorageError::Conflict { .. } => ApiError::conflict("key_conflict", msg),
            StorageError::Backend(ref inner) => ApiError::internal(inner),
        }
    }
}

fn parse_key(raw: Result<UrlPath<String>, PathRejection>) -> Result<ObjectKey, ApiError> {
    let UrlPath(raw) = raw.map_err(|r| {
        ApiError::bad_request(
            "invalid_key",
            format!("invalid key in URL: {}", r.body_text()),
        )
    })?;
    ObjectKey::parse(&raw).map_err(|e| StorageError::invalid_key(&raw, e).into())
}

fn header_str(h: &HeaderMap, name: header::HeaderName) -> Result<Option<&str>, ApiError> {
    match h.get(&name) {
        None => Ok(None),
        Some(v) => v.to_str().map(Some).map_err(|_| {
            ApiError::bad_request(
                "invalid_header",
                format!("header {name} is not valid ASCII"),
            )
        }),
    }
}

fn http_date(h: &HeaderMap, name: header::HeaderName) -> Result<Option<DateTime<Utc>>, ApiError> {
    match header_str(h, name.clone())? {
        None => Ok(None),
        Some(s) => httpdate::parse_http_date(s)
            .map(|t| Some(DateTime::<Utc>::from(t)))
            .map_err(|_| {
                ApiError::bad_request(
                    "invalid_header",
                    format!("header {name} is not an HTTP date: {s:?}"),
                )
            }),
    }
}

async fn put_object(
    State(storage): State<Arc<Storage>>,
    key: Result<UrlPath<String>, PathRejection>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = parse_key(key)?;
    let if_none_match = header_str(&headers, header::IF_NONE_MATCH)?;
    let if_match = header_str(&headers, header::IF_MATCH)?;
    let cond = match (if_none_match, if_match) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "invalid_header",
                "send If-None-Match or If-Match, not both",
            ));
        }
        (Some(v), None) if v.trim() == "*" => PutCondition::IfNoneMatchAny,
        (Some(v), None) => {
            return Err(ApiError::bad_request(
                "invalid_header",
                format!("If-None-Match on PUT must be \"*\", got {v:?}"),
            ));
        }
        (None, Some(v)) => PutCondition::IfMatch(v.to_string()),
        (None, None) => PutCondition::None,
    };
    let content_length = match header_str(&headers, header::CONTENT_LENGTH)? {
        None => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| {
            ApiError::bad_request(
                "invalid_header",
                format!("Content-Length {s:?} is not a number"),
            )
        })?),
    };
    let outcome = storage
        .put(&key, body.into_data_stream(), cond, content_length)
        .await?;
    let mut resp = axum::Json(&outcome).into_response();
    if let Some(e) = &outcome.etag {
        set_etag(resp.headers_mut(), e);
    }
    Ok(resp)
}

fn read_request(headers: &HeaderMap) -> Result<GetRequest, ApiError> {
    Ok(GetRequest {
        range: parse_range(header_str(headers, header::RANGE)?),
        if_match: header_str(headers, header::IF_MATCH)?.map(str::to_string),
        if_none_match: header_str(headers, header::IF_NONE_MATCH)?.map(str::to_string),
        if_modified_since: http_date(headers, header::IF_MODIFIED_SINCE)?,
        if_unmodified_since: http_date(headers, header::IF_UNMODIFIED_SINCE)?,
    })
}

/// Parses a single `bytes=` range. Anything else (other units, several
/// ranges, garbage) is ignored, as RFC 9110 §14.2 allows: the whole object is
/// served with 200.
pub fn parse_range(v: Option<&str>) -> Option<GetRange> {
    let spec = v?.trim().strip_prefix("bytes=")?.trim();
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (a, b) = (a.trim(), b.trim());
    match (a.is_empty(), b.is_empty()) {
        (true, false) => Some(GetRange::Suffix(b.parse().ok()?)),
        (false, true) => Some(GetRange::Offset(a.parse().ok()?)),
        (false, false) => {
            let start: u64 = a.parse().ok()?;
            let end: u64 = b.parse().ok()?;
            if end < start {
                return None;
            }
            Some(GetRange::Bounded(start..end.saturating_add(1)))
        }
        (true, true) => None,
    }
}

fn set_etag(h: &mut HeaderMap, etag: &str) {
    if let Ok(v) = HeaderValue::from_str(&format!("\"{etag}\"")) {
        h.insert(header::ETAG, v);
    }
}

fn meta_headers(h: &mut HeaderMap, r: &ReadResult) {
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    if let Some(e) = &r.meta.e_tag {
        set_etag(h, crate::service::unquote(e));
    }
    let lm = httpdate::fmt_http_date(r.meta.last_modified.into());
    if let Ok(v) = HeaderValue::from_str(&lm) {
        h.insert(header::LAST_MODIFIED, v);
    }
    h.insert(
        header::CONTENT_LENGTH,
        HeaderValue::from(r.range.end - r.range.start),
    );
    if r.partial {
        let cr = format!(
            "bytes {}-{}/{}",
            r.range.start,
            r.range.end.saturating_sub(1),
            r.meta.size
        );
        h.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_str(&cr).expect("ascii"),
        );
    }
}

/// 304 carries the ETag and no body.
fn not_modified(etag: Option<String>) -> Response {
    let mut resp = StatusCode::NOT_MODIFIED.into_response();
    if let Some(e) = etag {
        set_etag(resp.headers_mut(), &e);
    }
    resp
}

async fn get_object(
    State(storage): State<Arc<Storage>>,
    key: Result<UrlPath<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    read_object(storage, key, headers, false).await
}

async fn head_object(
    State(storage): State<Arc<Storage>>,
    key: Result<UrlPath<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    read_object(storage, key, headers, true).await
}

async fn read_object(
    storage: Arc<Storage>,
    key: Result<UrlPath<String>, PathRejection>,
    headers: HeaderMap,
    head: bool,
) -> Result<Response, ApiError> {
    let key = parse_key(key)?;
    let req = read_request(&headers)?;
    let mut r = match storage.get(&key, req, head).await {
        Ok(r) => r,
        Err(StorageError::NotModified { etag, .. }) => return Ok(not_modified(etag)),
        Err(e) => return Err(e.into()),
    };
    let status = if r.partial {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let body = match r.body.take() {
        None => Body::empty(),
        Some(res) => match res.payload {
            GetResultPayload::File(file, _) => {
                Body::from_stream(crate::fs::file_stream(file, r.range.clone()))
            }
            GetResultPayload::Stream(s) => Body::from_stream(s),
        },
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    meta_headers(resp.headers_mut(), &r);
    Ok(resp)
}

async fn delete_object(
    State(storage): State<Arc<Storage>>,
    key: Result<UrlPath<String>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let key = parse_key(key)?;
    storage.delete(&key).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
struct ListParams {
    prefix: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

async fn list_objects(
    State(storage): State<Arc<Storage>>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(p) = params.map_err(|r| {
        ApiError::bad_request(
            "invalid_argument",
            format!("invalid query: {}", r.body_text()),
        )
    })?;
    let limit = match p.limit.as_deref() {
        None | Some("") => DEFAULT_LIST_LIMIT,
        Some(s) => s.parse::<usize>().map_err(|_| {
            ApiError::bad_request(
                "invalid_argument",
                format!("limit must be a number, got {s:?}"),
            )
        })?,
    };
    let page = storage
        .list(
            p.prefix.as_deref().unwrap_or(""),
            p.after.as_deref().filter(|a| !a.is_empty()),
            limit,
        )
        .await?;
    Ok(axum::Json(page).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_header_parsing() {
        assert_eq!(
            parse_range(Some("bytes=0-4")),
            Some(GetRange::Bounded(0..5))
        );
        assert_eq!(parse_range(Some("bytes=10-")), Some(GetRange::Offset(10)));
        assert_eq!(parse_range(Some("bytes=-3")), Some(GetRange::Suffix(3)));
        assert_eq!(parse_range(Some("bytes=5-1")), None);
        assert_eq!(parse_range(Some("bytes=0-1,4-5")), None);
        assert_eq!(parse_range(Some("items=0-1")), None);
        assert_eq!(parse_range(Some("bytes=x-y")), None);
        assert_eq!(parse_range(None), None);
    }
}
