//! catalogd's error type.
//!
//! Callers branch on [`CatalogError::kind`], which is the same whether the
//! catalog is in-process (the detailed variants) or remote (the HTTP client
//! rebuilds the kind from the status and the JSON `error.code`, never from
//! message text). The HTTP edge maps every variant to a status in one
//! exhaustive `match` (see `http.rs`).

use crate::manifest::CodecError;
use crate::name::NameError;
use crate::owner::OwnershipError;
use crate::verify::ObjectError;

/// What went wrong, independent of where the catalog runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the dataset name breaks the grammar.
    InvalidName,
    /// 400: `schema_fingerprint` is empty.
    EmptyFingerprint,
    /// 400: any other bad input (malformed JSON, an object listed twice, …).
    InvalidRequest,
    /// 400: an object the dataset may not reference: not its own, internal,
    /// missing, of another size, or not Parquet.
    InvalidObject,
    /// 413: the request body is over the limit.
    TooLarge,
    /// 409: the dataset exists with another schema fingerprint.
    FingerprintConflict,
    /// 412: `expected_version` does not match.
    VersionMismatch,
    /// 404: no such dataset.
    NotFound,
    /// 409: the dataset has no table (its schema has a type Delta cannot
    /// store), so it has no history.
    NoTable,
    /// 404: the dataset's table has no such version (or none at that time).
    NoSuchVersion,
    /// 409: the dataset's stored manifest references objects it does not
    /// own; it is refused until an admin deletes it or it is registered again.
    Quarantined,
    /// 500: a stored manifest cannot be decoded.
    CorruptManifest,
    /// 500: the object store failed.
    Storage,
    /// 500 from a remote catalog (details are in its log).
    Internal,
    /// The remote catalog could not be reached, or answered nonsense.
    Unavailable,
}

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("invalid dataset name {name:?}: {source}")]
    InvalidName {
        name: String,
        #[source]
        source: NameError,
    },
    #[error("schema_fingerprint must not be empty")]
    EmptyFingerprint,
    #[error("{0}")]
    InvalidRequest(String),
    #[error(
        "dataset {name:?} is registered with schema fingerprint {have:?}, not {got:?}; \
         register it under a new name or delete it first"
    )]
    FingerprintConflict {
        name: String,
        have: String,
        got: String,
    },
    /// A register with `evolve_schema` whose schema drops or retypes a
    /// column of the table's (409, like any other fingerprint conflict).
    #[error("dataset {name:?} cannot take the new schema: {}", differences.join("; "))]
    SchemaIncompatible {
        name: String,
        differences: Vec<String>,
    },
    /// `actual` is 0 when the dataset does not exist.
    #[error("dataset {name:?}: expected version {expected}, but the current version is {actual}")]
    VersionMismatch {
        name: String,
        expected: u64,
        actual: u64,
    },
    #[error("objects[{index}] {key:?} cannot be registered: {source}")]
    InvalidObject {
        index: usize,
        key: String,
        #[source]
        source: ObjectError,
    },
    #[error("no dataset named {name:?}")]
    NotFound { name: String },
    #[error(
        "dataset {name:?} is quarantined: its stored manifest lists {object:?}, which it may not \
         reference ({source}); an admin can delete it (DELETE /catalog/manifest/{name}), or it \
         can be registered again with objects it owns"
    )]
    Quarantined {
        name: String,
        object: String,
        #[source]
        source: OwnershipError,
    },
    #[error("dataset {name:?} has no table history: {why}")]
    NoTable { name: String, why: String },
    #[error("{0}")]
    NoSuchVersion(#[source] lakehouse_table::TableError),
    /// Reading or writing a dataset's table failed (storage, or a damaged log).
    #[error("the table of dataset {name:?}: {source}")]
    Table {
        name: String,
        #[source]
        source: lakehouse_table::TableError,
    },
    #[error("corrupt manifest at {key}: {source}")]
    CorruptManifest {
        key: String,
        #[source]
        source: CodecError,
    },
    /// Encoding a manifest failed (a bug, not bad input).
    #[error("encoding the manifest of {name:?}: {source}")]
    Encode {
        name: String,
        #[source]
        source: CodecError,
    },
    /// `key` is the manifest key (or the prefix, for a listing).
    #[error("object store error at {key}: {source}")]
    Storage {
        key: String,
        #[source]
        source: object_store::Error,
    },
    #[error("catalog service at {url} is unavailable: {source}")]
    Unavailable {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An error answer from a remote catalog, typed by its status and code.
    #[error("catalog service answered {status} {code}: {message}")]
    Remote {
        kind: ErrorKind,
        status: u16,
        code: String,
        message: String,
    },
}

impl CatalogError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CatalogError::InvalidName { .. } => ErrorKind::InvalidName,
            CatalogError::EmptyFingerprint => ErrorKind::EmptyFingerprint,
            CatalogError::InvalidRequest(_) => ErrorKind::InvalidRequest,
            CatalogError::InvalidObject { .. } => ErrorKind::InvalidObject,
            CatalogError::Quarantined { .. } => ErrorKind::Quarantined,
            CatalogError::FingerprintConflict { .. } | CatalogError::SchemaIncompatible { .. } => {
                ErrorKind::FingerprintConflict
            }
            CatalogError::VersionMismatch { .. } => ErrorKind::VersionMismatch,
            CatalogError::NotFound { .. } => ErrorKind::NotFound,
            CatalogError::CorruptManifest { .. } => ErrorKind::CorruptManifest,
            CatalogError::NoTable { .. } => ErrorKind::NoTable,
            CatalogError::NoSuchVersion(_) => ErrorKind::NoSuchVersion,
            CatalogError::Table { .. } => ErrorKind::Internal,
            CatalogError::Storage { .. } => ErrorKind::Storage,
            CatalogError::Encode { .. } => ErrorKind::Internal,
            CatalogError::Unavailable { .. } => ErrorKind::Unavailable,
            CatalogError::Remote { kind, .. } => *kind,
        }
    }

    pub(crate) fn invalid_name(name: &str, source: NameError) -> Self {
        CatalogError::InvalidName {
            name: truncate_for_message(name),
            source,
        }
    }
}

/// Names and keys can be kilobytes of junk; messages quote at most 128
/// characters.
pub(crate) fn truncate_for_message(s: &str) -> String {
    if s.chars().count() <= 128 {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(128).collect();
        t.push('…');
        t
    }
}

impl CatalogError {
    /// A table error, typed: a missing table or version is the caller's
    /// (404/409), anything else a server fault.
    pub(crate) fn table(name: &str, e: lakehouse_table::TableError) -> Self {
        use lakehouse_table::TableError as T;
        match e {
            T::NoTable { .. } => CatalogError::NoTable {
                name: name.to_string(),
                why: "it was never written as one".to_string(),
            },
            e @ T::NoSuchColumn { .. } => CatalogError::InvalidRequest(e.to_string()),
            T::IncompatibleSchema { differences, .. } => CatalogError::SchemaIncompatible {
                name: name.to_string(),
                differences,
            },
            e @ (T::NoSuchVersion { .. } | T::BeforeFirstVersion { .. } | T::Vacuumed { .. }) => {
                CatalogError::NoSuchVersion(e)
            }
            // The store failing is a storage error, whoever wrapped it.
            source if source.is_storage() => CatalogError::Storage {
                key: format!("datasets/{name}/_delta_log"),
                source: object_store::Error::Generic {
                    store: "table log",
                    source: Box::new(source),
                },
            },
            source => CatalogError::Table {
                name: name.to_string(),
                source,
            },
        }
    }
}

pub type Result<T, E = CatalogError> = std::result::Result<T, E>;
