//! ingestd's error type; the HTTP edge maps each variant to a status.
//!
//! Callers branch on [`IngestError::kind`], which is the same whether the
//! ingest ran in process or behind HTTP ([`crate::IngestClient`] rebuilds
//! the kind from the answer's `error.code`, never from its text).

use lakehouse_common::UpstreamError;

/// What went wrong, independent of where the ingest ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A format option, the format itself or the mode is wrong.
    InvalidOption,
    InvalidName,
    EmptyInput,
    /// The data cannot be read exactly (the message names where and why).
    BadData,
    /// The request body broke off or could not be read.
    InvalidBody,
    SchemaMismatch,
    /// Concurrent writers kept changing the dataset; retry.
    Contended,
    NotFound,
    Quarantined,
    /// The registration may or may not have taken effect; retry with the
    /// same idempotency key.
    Unconfirmed,
    /// No token, or one the server does not know.
    Unauthorized,
    /// The token lacks the role.
    Forbidden,
    /// A service the ingest needs (storage, catalog) did not answer.
    Upstream,
    Internal,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::InvalidOption,
        ErrorKind::InvalidName,
        ErrorKind::EmptyInput,
        ErrorKind::BadData,
        ErrorKind::InvalidBody,
        ErrorKind::SchemaMismatch,
        ErrorKind::Contended,
        ErrorKind::NotFound,
        ErrorKind::Quarantined,
        ErrorKind::Unconfirmed,
        ErrorKind::Unauthorized,
        ErrorKind::Forbidden,
        ErrorKind::Upstream,
        ErrorKind::Internal,
    ];
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("{0}")]
    InvalidOption(String),
    #[error("invalid dataset name: {0}")]
    InvalidName(String),
    #[error("the body is empty: nothing to ingest")]
    EmptyInput,
    #[error("bad input: {0}")]
    BadData(String),
    #[error("reading the request body failed: {0}")]
    Body(String),
    #[error("the schema does not match dataset {dataset:?}: {}", differences.join("; "))]
    SchemaMismatch {
        dataset: String,
        differences: Vec<String>,
    },
    #[error("dataset {0:?} kept changing under concurrent writers; retry")]
    Contended(String),
    #[error("dataset {0:?} not found")]
    NotFound(String),
    #[error("spooling the upload to a temporary file failed: {0}")]
    Spool(#[source] std::io::Error),
    #[error("writing Parquet failed: {0}")]
    Encode(#[source] parquet::errors::ParquetError),
    #[error("storage error: {0}")]
    Storage(#[from] object_store::Error),
    /// Finishing an object's upload failed (the store's error is inside).
    #[error("completing the upload failed: {0}")]
    Upload(#[source] std::io::Error),
    #[error("catalog error: {0}")]
    Catalog(#[source] Box<lakehouse_catalogd::CatalogError>),
    /// The dataset's stored manifest lists objects it does not own; the
    /// catalog refuses it until an admin deletes it or it is registered again.
    #[error("{0}")]
    Quarantined(String),
    /// The registration may or may not have taken effect (the catalog went
    /// away mid-request and has not come back to say). The objects and the
    /// in-flight journal are kept; the next start settles it either way.
    #[error(
        "the catalog did not confirm the registration of {dataset:?} ({detail}); it will be settled when ingestd next starts — retry with the same Idempotency-Key"
    )]
    Unconfirmed { dataset: String, detail: String },
    #[error("internal error: {0}")]
    Internal(String),
    /// The ingest service itself could not be reached, or relayed that
    /// its own upstream failed (from the client).
    #[error(transparent)]
    Upstream(Box<UpstreamError>),
    /// An error answer from a remote ingestd, typed by its code.
    #[error("{message}")]
    Remote {
        kind: ErrorKind,
        status: u16,
        code: String,
        message: String,
    },
}

impl IngestError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            IngestError::InvalidOption(_) => ErrorKind::InvalidOption,
            IngestError::InvalidName(_) => ErrorKind::InvalidName,
            IngestError::EmptyInput => ErrorKind::EmptyInput,
            IngestError::BadData(_) => ErrorKind::BadData,
            IngestError::Body(_) => ErrorKind::InvalidBody,
            IngestError::SchemaMismatch { .. } => ErrorKind::SchemaMismatch,
            IngestError::Contended(_) => ErrorKind::Contended,
            IngestError::NotFound(_) => ErrorKind::NotFound,
            IngestError::Quarantined(_) => ErrorKind::Quarantined,
            IngestError::Unconfirmed { .. } => ErrorKind::Unconfirmed,
            IngestError::Upstream(_) => ErrorKind::Upstream,
            IngestError::Storage(_) | IngestError::Upload(_) | IngestError::Catalog(_) => {
                match UpstreamError::find(self) {
                    Some(_) => ErrorKind::Upstream,
                    None => ErrorKind::Internal,
                }
            }
            IngestError::Spool(_) | IngestError::Encode(_) | IngestError::Internal(_) => {
                ErrorKind::Internal
            }
            IngestError::Remote { kind, .. } => *kind,
        }
    }
}
