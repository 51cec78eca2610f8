//! storaged's error type. Variants are what callers branch on; the HTTP edge
//! maps each one to a status in one exhaustive `match` (see `http.rs`).

use crate::key::KeyError;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("invalid key {key:?}: {source}")]
    InvalidKey {
        key: String,
        #[source]
        source: KeyError,
    },
    #[error("no object at key {key:?}")]
    NotFound { key: String },
    #[error("an object already exists at key {key:?} (If-None-Match: *)")]
    AlreadyExists { key: String },
    #[error("precondition failed for key {key:?}: {detail}")]
    PreconditionFailed { key: String, detail: String },
    #[error("object at key {key:?} not modified")]
    NotModified { key: String, etag: Option<String> },
    #[error("the object is larger than the maximum object size of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("range not satisfiable: the object is {size} bytes long")]
    RangeNotSatisfiable { size: u64 },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("key {key:?} conflicts with existing data: {detail}")]
    Conflict { key: String, detail: String },
    #[error("reading the request body failed: {0}")]
    Body(String),
    #[error("storage backend error: {0}")]
    Backend(#[from] object_store::Error),
}

impl StorageError {
    pub fn invalid_key(key: &str, source: KeyError) -> Self {
        Self::InvalidKey {
            key: truncate_for_message(key),
            source,
        }
    }
}

/// Keys can be 2 KB of junk; error messages quote at most the first 128 chars.
fn truncate_for_message(s: &str) -> String {
    if s.chars().count() <= 128 {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(128).collect();
        t.push('…');
        t
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
