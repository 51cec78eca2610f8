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
    /// A remote vectord could not be reached, or did not answer in time.
    #[error(transparent)]
    Upstream(#[from] lakehouse_common::UpstreamError),
    /// A remote vectord refused the caller's token (401) or role (403).
    #[error("{message}")]
    Denied { forbidden: bool, message: String },
    /// `add` or an item delete on an index that follows a dataset: its
    /// items change only with the dataset.
    #[error(
        "index {0:?} follows a dataset: change the dataset (ingest, SQL) and the index follows"
    )]
    FollowsDataset(String),
    #[error("no dataset named {0:?}")]
    DatasetNotFound(String),
    /// A dataset index whose columns do not fit: unknown, or of a type the
    /// index cannot use (names the column).
    #[error("invalid source: {0}")]
    InvalidSource(String),
    /// A dataset index on a vectord that has no catalog to read it from.
    #[error(
        "this vectord has no catalog, so it cannot follow datasets (set [vectord].catalogd_url \
         when it runs alone)"
    )]
    NoCatalog,
    /// A dataset object could not be read (the store failed, or it is not
    /// the Parquet the catalog says it is).
    #[error("reading dataset object {key}: {source}")]
    ReadObject {
        key: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// The catalog failed (other than "no such dataset").
    #[error("catalog: {0}")]
    Catalog(#[source] lakehouse_catalogd::CatalogError),
    /// Texts could not be embedded: no model (501), a bad input (400), or
    /// the model failed (500).
    #[error(transparent)]
    Embed(#[from] lakehouse_common::EmbedError),
    #[error("internal error: {0}")]
    Internal(String),
}

pub type Result<T, E = VectorError> = std::result::Result<T, E>;
