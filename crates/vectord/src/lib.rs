//! vectord: named HNSW vector indexes (our own engine, `lakehouse-hnsw`) with
//! string ids and metadata, batch upserts validated before commit, filtered
//! search, and durable persistence: a write-ahead log written before every
//! acknowledgement plus LHV1 snapshots taken in the background.

pub mod client;
pub mod error;
pub mod http;
pub mod lhv1;
pub mod service;

pub use client::{VectorClient, Vectors};
pub use error::VectorError;
pub use service::{
    AddResult, Hit, IndexInfo, IndexSpec, Item, SearchRequest, VectorConfig, VectorService,
};
