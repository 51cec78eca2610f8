//! What vectord is to the rest of the system: the [`Vectors`] trait and the
//! types that cross it (and the wire, as JSON). Implemented in process by
//! [`crate::VectorService`] and over HTTP by [`crate::VectorClient`]; the
//! conformance suite (`tests/it/conformance.rs`) runs against both.

use async_trait::async_trait;
use lakehouse_hnsw::Metric;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::batch::Batch;
use crate::error::Result;

#[async_trait]
pub trait Vectors: Send + Sync {
    /// `Ok((info, created))`; the same parameters again is not an error.
    async fn create(&self, spec: IndexSpec) -> Result<(IndexInfo, bool)>;
    async fn list(&self) -> Result<Vec<IndexInfo>>;
    async fn get(&self, name: &str) -> Result<IndexInfo>;
    async fn drop_index(&self, name: &str) -> Result<()>;
    async fn add(&self, name: &str, items: Vec<Item>) -> Result<AddResult>;
    /// A batch add in columnar form (over HTTP: an Arrow IPC body, the fast
    /// path).
    async fn add_batch(&self, name: &str, batch: Batch) -> Result<AddResult>;
    async fn search(&self, name: &str, req: SearchRequest) -> Result<Vec<Hit>>;
    /// Many queries at once; one list of hits per query, in order (over
    /// HTTP: the queries as an Arrow IPC body).
    async fn search_batch(&self, name: &str, req: SearchBatch) -> Result<Vec<Vec<Hit>>>;
    /// One item: its vector (as stored: unit length in a cosine index) and
    /// metadata.
    async fn get_item(&self, name: &str, id: &str) -> Result<Item>;
    async fn delete_item(&self, name: &str, id: &str) -> Result<()>;
    /// An index that follows a dataset catches up with the dataset's current
    /// version now (waiting for a catch-up already running), and answers
    /// what it then reflects; `source.error` says why it could not. A no-op
    /// for an index that follows no dataset.
    async fn sync(&self, name: &str) -> Result<IndexInfo>;
}

/// An index's identity and parameters (the "params" of the LHV1 envelope).
/// The create body is this object: `{"name", "dim", "metric", "m"?,
/// "ef_construction"?}`, plus the [`SourceSpec`] fields at the top level
/// for an index that follows a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexSpec {
    pub name: String,
    /// Required for a plain index; with `dataset` it may be left out (0):
    /// it is then the vector column's fixed size, the length of its first
    /// non-null vector, or the embedding model's dimension.
    #[serde(default)]
    pub dim: usize,
    pub metric: Metric,
    #[serde(default = "default_m")]
    pub m: usize,
    #[serde(default = "default_efc")]
    pub ef_construction: usize,
    /// The dataset the index follows, if any (all fields empty: a plain
    /// index, written with `add`).
    #[serde(flatten)]
    pub source: SourceSpec,
}

impl IndexSpec {
    /// A plain index (no dataset) with the default `m` and
    /// `ef_construction`.
    pub fn new(name: impl Into<String>, dim: usize, metric: Metric) -> Self {
        Self {
            name: name.into(),
            dim,
            metric,
            m: default_m(),
            ef_construction: default_efc(),
            source: SourceSpec::default(),
        }
    }

    /// Whether the index follows a dataset.
    pub fn follows_dataset(&self) -> bool {
        self.source.dataset.is_some()
    }
}

/// Which dataset an index follows and how its rows become items. The
/// dataset is the source of truth: the index is built from its objects and
/// kept equal to its current version (no write-ahead log, no `add`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSpec {
    /// The dataset's name in the catalog.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// The vector column: `fixed_size_list` or `list` of `float32` or
    /// `float64` (narrowed to `float32`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// A `utf8` column: embedded with the configured model when `column` is
    /// absent, and kept in a full-text (BM25) index for hybrid searches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_column: Option<String>,
    /// Required with `dataset`: any scalar column; its value, as text, is
    /// each hit's `id` (values need not be unique).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_column: Option<String>,
    /// Columns whose values become each hit's metadata (and can be
    /// filtered on with `filter`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata_columns: Vec<String>,
}

fn default_m() -> usize {
    16
}
fn default_efc() -> usize {
    200
}

/// One item of a batch add.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    pub id: String,
    pub vector: Vec<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
}

/// One search: a `vector`, or a `text` the configured model embeds (then
/// `vector` is left empty), or with `hybrid` both a nearest-vector and a
/// full-text (BM25) search fused by reciprocal rank.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The query vector; empty (absent on the wire) when `text` is given
    /// without `hybrid`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vector: Vec<f32>,
    #[serde(default = "default_k")]
    pub k: usize,
    #[serde(default)]
    pub ef: Option<usize>,
    /// Equality on metadata fields: every pair must match.
    #[serde(default)]
    pub filter: Option<Map<String, Value>>,
    /// A query text: embedded with the configured model (the vector of the
    /// search), and with `hybrid` also searched in the text index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// Fuse the vector search and a BM25 search of `text` (reciprocal rank
    /// fusion); needs `text` and an index with a `text_column`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub hybrid: bool,
}

impl SearchRequest {
    /// A nearest-vector search with the default `ef` and no filter.
    pub fn vector(vector: Vec<f32>, k: usize) -> Self {
        Self {
            vector,
            k,
            ef: None,
            filter: None,
            text: None,
            hybrid: false,
        }
    }
}

fn default_k() -> usize {
    10
}

/// Many queries with the same `k`, `ef` and `filter` (JSON:
/// `{"vectors": [[…], …], "k", "ef"?, "filter"?}`); answered with one list of
/// hits per query, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchBatch {
    pub vectors: Vec<Vec<f32>>,
    #[serde(default = "default_k")]
    pub k: usize,
    #[serde(default)]
    pub ef: Option<usize>,
    #[serde(default)]
    pub filter: Option<Map<String, Value>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub id: String,
    /// The vector distance (in a hybrid search too, for every fused hit).
    pub distance: f32,
    pub metadata: Option<Map<String, Value>>,
    /// The reciprocal-rank-fusion score of a hybrid search (higher is
    /// better; hits come best first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    /// For an index that follows a dataset: the dataset version the answer
    /// reflects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexInfo {
    pub name: String,
    pub dim: usize,
    pub metric: Metric,
    pub m: usize,
    pub ef_construction: usize,
    pub count: usize,
    pub memory_bytes: usize,
    /// The dataset the index follows and how far it has caught up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceInfo>,
}

/// What an index that follows a dataset reflects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceInfo {
    pub dataset: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_column: Option<String>,
    pub id_column: String,
    #[serde(default)]
    pub metadata_columns: Vec<String>,
    /// The embedding model the vectors come from (an index built from
    /// `text_column` without `column`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The dataset version the index reflects: its table version, or the
    /// catalog's manifest version for a dataset without a table; `None`
    /// before the first catch-up (and once the dataset is dropped).
    pub version: Option<u64>,
    /// The dataset objects the index reflects.
    pub objects: usize,
    /// Rows of those objects that are not items (their vector, text or id
    /// is null).
    pub skipped_rows: u64,
    /// Why the index is behind the dataset, if it is: the last catch-up
    /// failed (and is retried), or the dataset is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddResult {
    pub added: usize,
    pub count: usize,
}
