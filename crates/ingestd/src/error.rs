//! ingestd's error type; the HTTP edge maps each variant to a status.

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
    Spool(String),
    #[error("writing Parquet failed: {0}")]
    Encode(String),
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
}
