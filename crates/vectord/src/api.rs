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
}

/// An index's identity and parameters (the "params" of the LHV1 envelope).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexSpec {
    pub name: String,
    pub dim: usize,
    pub metric: Metric,
    #[serde(default = "default_m")]
    pub m: usize,
    #[serde(default = "default_efc")]
    pub ef_construction: usize,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    pub vector: Vec<f32>,
    #[serde(default = "default_k")]
    pub k: usize,
    #[serde(default)]
    pub ef: Option<usize>,
    /// Equality on metadata fields: every pair must match.
    #[serde(default)]
    pub filter: Option<Map<String, Value>>,
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
    pub distance: f32,
    pub metadata: Option<Map<String, Value>>,
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddResult {
    pub added: usize,
    pub count: usize,
}
