//! vectord's error type; the HTTP edge maps each variant to a status.

#[derive(Debug, thiserror::Error)]
pub enum VectorError {
    #[error("invalid index name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("invalid index parameters: {0}")]
    InvalidParams(String),
    #[error("index {name:?} already exists with other parameters ({existing})")]
    ParamsConflict { name: String, existing: String },
    #[error("no index named {0:?}")]
    IndexNotFound(String),
    #[error("no item {id:?} in index {index:?}")]
    ItemNotFound { index: String, id: String },
    /// A batch item failed validation; nothing in the batch was applied.
    #[error("item {position} (id {id:?}): {reason}")]
    InvalidItem {
        position: usize,
        id: String,
        reason: String,
    },
    #[error("invalid search: {0}")]
    InvalidSearch(String),
    /// A request body that cannot be read (a malformed Arrow stream, a
    /// missing or mistyped column).
    #[error("invalid body: {0}")]
    InvalidBody(String),
    #[error("the batch has {got} items; the limit is {limit}")]
    BatchTooLarge { got: usize, limit: usize },
    #[error("storage error: {0}")]
    Storage(#[from] object_store::Error),
    #[error("corrupt vector data at {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// A remote vectord refused the caller's token (401) or role (403).
    #[error("{message}")]
    Denied { forbidden: bool, message: String },
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = VectorError> = std::result::Result<T, E>;
