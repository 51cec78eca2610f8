//! `lakehouse-hnsw`: an HNSW (hierarchical navigable small world) approximate
//! nearest-neighbour engine, built for speed. No HTTP, no storage: vectord wraps it.
//!
//! # Overview
//! - [`Index::new`] with [`Params`] (`dim`, [`Metric`], `m`, `ef_construction`).
//! - [`Index::insert`] / [`Index::insert_batch`] add items under a caller-chosen
//!   `u64` key (vectord maps its string ids to keys). Re-inserting a key replaces
//!   its vector (upsert); [`Index::delete`] removes it. Batches are validated whole
//!   before anything changes and are linked in parallel on every core (rayon).
//! - [`Index::search`] returns `(key, distance)` pairs sorted by distance;
//!   [`Index::search_filtered`] returns the true top-k among items a predicate
//!   accepts, switching to an exact scan when the predicate is selective;
//!   [`Index::search_exact`] is the brute-force reference.
//! - [`Index::to_bytes`] / [`Index::from_bytes`] round-trip the exact graph in a
//!   versioned, checksummed little-endian format (see [`serialize`]).
//!
//! All methods take `&self`: searches run concurrently with each other and with
//! inserts. See [`index`] for the storage layout and locking scheme.
//!
//! # Distances
//! Smaller is closer. `l2` is the **squared** Euclidean distance; `cosine` is
//! `1 − cos` (vectors are normalised on the way in); `dot` is `1 − a·b` on the raw
//! vectors (hnswlib's "ip"). Kernels use AVX-512F or AVX2+FMA when the CPU has
//! them (detected at runtime), a portable auto-vectorised loop otherwise.

pub mod distance;
pub mod index;
pub mod serialize;

pub use distance::{Isa, Metric};
pub use index::{Index, IndexStats, Neighbour};
pub use serialize::DecodeError;

/// Construction parameters of an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Params {
    /// Vector dimension, 1..=65536.
    pub dim: usize,
    pub metric: Metric,
    /// Links per node on the upper layers (level 0 keeps `2 * m`), 2..=128.
    pub m: usize,
    /// Candidate-list size while inserting, ≥ 1. Larger = better graph, slower build.
    pub ef_construction: usize,
}

impl Params {
    pub const MAX_DIM: usize = 65536;
    pub const MAX_M: usize = 128;

    /// `m = 16`, `ef_construction = 200` (hnswlib's common setting).
    pub fn new(dim: usize, metric: Metric) -> Params {
        Params {
            dim,
            metric,
            m: 16,
            ef_construction: 200,
        }
    }

    pub fn with_m(mut self, m: usize) -> Params {
        self.m = m;
        self
    }

    pub fn with_ef_construction(mut self, ef: usize) -> Params {
        self.ef_construction = ef;
        self
    }

    /// Checks every bound; the error says which one failed.
    pub fn validate(&self) -> Result<(), ParamsError> {
        if self.dim == 0 || self.dim > Self::MAX_DIM {
            return Err(ParamsError::Dim(self.dim));
        }
        if self.m < 2 || self.m > Self::MAX_M {
            return Err(ParamsError::M(self.m));
        }
        if self.ef_construction == 0 || self.ef_construction > u32::MAX as usize {
            return Err(ParamsError::EfConstruction(self.ef_construction));
        }
        Ok(())
    }
}

/// Which parameter is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    #[error("dim must be in 1..=65536, got {0}")]
    Dim(usize),
    #[error("m must be in 2..=128, got {0}")]
    M(usize),
    #[error("ef_construction must be in 1..=4294967295, got {0}")]
    EfConstruction(usize),
}

/// Why a vector was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VectorError {
    #[error("vector has dimension {got}, the index expects {expected}")]
    Dimension { expected: usize, got: usize },
    #[error("vector contains NaN or an infinite value")]
    NonFinite,
    #[error("vector has zero norm, which has no cosine direction")]
    ZeroNorm,
}

/// Errors of index operations.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Params(#[from] ParamsError),
    #[error(transparent)]
    Vector(#[from] VectorError),
    /// One item of a batch is invalid; nothing of the batch was inserted.
    #[error("batch item {position}: {error}")]
    BatchItem { position: usize, error: VectorError },
    /// The index holds `u32::MAX - 1` slots (live + tombstoned); compact it.
    #[error("index is full ({0} slots); compact it or split it")]
    Full(usize),
}
