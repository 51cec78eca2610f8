//! vectord: named HNSW vector indexes (our own engine, `lakehouse-hnsw`) with
//! string ids and metadata, batch upserts validated before commit, filtered
//! search, and durable persistence: a write-ahead log written before every
//! acknowledgement plus LHV1 snapshots taken in the background.
//!
//! Modules: [`api`] (the [`Vectors`] trait and its wire types), [`service`]
//! (the core; its snapshots and searches in submodules), [`batch`] (a batch add in
//! columnar form and its JSON decoder), [`ipc`] (Arrow IPC bodies), [`wal`]
//! (log entries), [`lhv1`] (snapshots), `recovery` (start-up), [`limits`]
//! (every bound on client input), [`http`] and [`client`] (the edge).
//!
//! An index can also follow a dataset (`service::follow`): built from the
//! dataset's Parquet objects (`source` reads them) and kept equal to its
//! current version, with an optional full-text index ([`bm25`]) for hybrid
//! searches and text queries embedded by a configured model.

pub mod api;
pub mod batch;
pub mod bm25;
pub mod client;
pub mod error;
pub mod http;
pub mod ipc;
pub mod lhv1;
pub mod limits;
mod recovery;
pub mod service;
mod source;
mod state;
mod status;
pub mod wal;

pub use api::Vectors;
pub use batch::Batch;
pub use client::VectorClient;
pub use error::VectorError;
pub use service::{
    AddResult, Hit, IndexInfo, IndexSpec, Item, SearchBatch, SearchRequest, SourceInfo, SourceSpec,
    VectorConfig, VectorService,
};
