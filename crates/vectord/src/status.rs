//! Each error's HTTP status and stable code, by variant: one table, read by
//! the HTTP edge ([`crate::http`]) and by queryd, which reports a failed
//! `vector_search` with vectord's own status and code.

use axum::http::StatusCode;
use lakehouse_common::{EmbedError, UpstreamError};

use crate::error::VectorError;

impl VectorError {
    /// The stable machine code on the wire.
    pub fn code(&self) -> &'static str {
        match self {
            VectorError::InvalidName { .. } => "invalid_name",
            VectorError::InvalidParams(_) => "invalid_params",
            VectorError::InvalidItem { .. } => "invalid_item",
            VectorError::InvalidSearch(_) => "invalid_search",
            VectorError::InvalidBody(_) => "invalid_body",
            VectorError::Denied {
                forbidden: true, ..
            } => "forbidden",
            VectorError::Denied {
                forbidden: false, ..
            } => "unauthorized",
            VectorError::BatchTooLarge { .. } => "too_large",
            VectorError::ParamsConflict { .. } => "params_conflict",
            VectorError::IndexNotFound(_) => "not_found",
            VectorError::ItemNotFound { .. } => "item_not_found",
            VectorError::Upstream(up) => up.code(),
            VectorError::FollowsDataset(_) => "index_follows_dataset",
            VectorError::DatasetNotFound(_) => "dataset_not_found",
            VectorError::InvalidSource(_) => "invalid_source",
            VectorError::NoCatalog => "no_catalog",
            VectorError::Catalog(e) => UpstreamError::find(e).map_or("internal", |up| up.code()),
            VectorError::ReadObject { source, .. } => {
                UpstreamError::find(source).map_or("internal", |up| up.code())
            }
            VectorError::Embed(EmbedError::NotConfigured(_)) => "no_embedding_model",
            VectorError::Embed(EmbedError::Invalid(_)) => "invalid_text",
            VectorError::Embed(EmbedError::Model(_))
            | VectorError::Storage(_)
            | VectorError::Corrupt { .. }
            | VectorError::Internal(_) => "internal",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            VectorError::InvalidName { .. }
            | VectorError::InvalidParams(_)
            | VectorError::InvalidItem { .. }
            | VectorError::InvalidSearch(_)
            | VectorError::InvalidBody(_) => StatusCode::BAD_REQUEST,
            VectorError::Denied {
                forbidden: true, ..
            } => StatusCode::FORBIDDEN,
            VectorError::Denied {
                forbidden: false, ..
            } => StatusCode::UNAUTHORIZED,
            VectorError::BatchTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            VectorError::ParamsConflict { .. } => StatusCode::CONFLICT,
            VectorError::IndexNotFound(_) | VectorError::ItemNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            VectorError::Upstream(up) => up.status(),
            VectorError::FollowsDataset(_) => StatusCode::CONFLICT,
            VectorError::DatasetNotFound(_) => StatusCode::NOT_FOUND,
            VectorError::InvalidSource(_) | VectorError::Embed(EmbedError::Invalid(_)) => {
                StatusCode::BAD_REQUEST
            }
            VectorError::NoCatalog | VectorError::Embed(EmbedError::NotConfigured(_)) => {
                StatusCode::NOT_IMPLEMENTED
            }
            VectorError::Catalog(e) => {
                UpstreamError::find(e).map_or(StatusCode::INTERNAL_SERVER_ERROR, |up| up.status())
            }
            VectorError::ReadObject { source, .. } => UpstreamError::find(source)
                .map_or(StatusCode::INTERNAL_SERVER_ERROR, |up| up.status()),
            VectorError::Embed(EmbedError::Model(_))
            | VectorError::Storage(_)
            | VectorError::Corrupt { .. }
            | VectorError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}
