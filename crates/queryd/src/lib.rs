//! queryd: SQL (Apache DataFusion) over every catalogued dataset.
//!
//! - [`catalog`]: a DataFusion catalog whose tables are the lakehouse
//!   datasets, resolved at query time from their manifests (no listing),
//!   read through whatever `ObjectStore` the deployment has.
//! - [`engine::QueryEngine`]: sandbox → plan → execute → encode, on its own
//!   runtime, with a timeout, a memory pool and a row cap.
//! - [`http::router`]: `POST /query/sql`; [`QueryClient`]: the same
//!   [`Query`] trait over HTTP; `status`: each error's status, code and
//!   envelope (the edge's table; the core's `error` knows no HTTP).
//! - [`write`]: `INSERT`, `CREATE TABLE AS`, `DELETE`, `UPDATE` and `MERGE`
//!   for callers who may write, each one new table version (delta-rs).
//! - [`batches`]: the same engine for the wire protocols (Flight SQL,
//!   PostgreSQL): results as Arrow batches, statements described before
//!   they run, table metadata; [`dialect`]: a protocol's parser and
//!   metadata schemas.
//! - `vector`: `cosine_distance`, `l2_distance`, `inner_product`,
//!   `embed(text)`, and the `vector_search` / `hybrid_search` table
//!   functions over vectord's indexes.
//!
//! Limits and their errors: `timeout_secs` → 408 `query_timeout`;
//! `memory_limit` (DataFusion's memory pool, shared by running queries;
//! operators that can spill do) → 413 `memory_limit`;
//! `function_output_limit` (one call of `repeat`, `lpad`, `array_repeat`,
//! `range`, … — see [`udf`]) → 413 `value_too_large`; `max_expr_depth`
//! ([`limits`]) → 400 `query_too_complex`; `process_memory_limit` (the
//! [`guard`]) → 503 `memory_pressure` for the largest query; `max_rows` →
//! 413 `too_many_rows` before the first byte, else a result that says in
//! band it was truncated ([`encode`]). A client that disconnects cancels its
//! query.

pub mod batches;
pub mod catalog;
pub mod client;
pub mod dialect;
pub mod encode;
pub mod engine;
pub mod error;
pub mod guard;
pub mod http;
mod idents;
pub mod limits;
pub mod sandbox;
mod status;
mod udf;
mod vector;
pub mod write;

pub use batches::{Batches, Described, TableInfo};
pub use client::QueryClient;
pub use dialect::Dialect;
pub use encode::Format;
pub use engine::{ByteStream, EngineConfig, Query, QueryEngine, ResultStream, StreamEnd};
pub use error::QueryError;
pub use guard::QueryStats;
pub use write::{Access, Kind as WriteKind, WriteCounts, answer_schema as write_answer_schema};
