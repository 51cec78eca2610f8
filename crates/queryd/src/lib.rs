//! queryd: SQL (Apache DataFusion) over every catalogued dataset.
//!
//! - [`catalog`]: a DataFusion catalog whose tables are the lakehouse
//!   datasets, resolved at query time from their manifests (no listing),
//!   read through whatever `ObjectStore` the deployment has.
//! - [`engine::QueryEngine`]: sandbox → plan → execute → encode, on its own
//!   runtime, with a timeout, a memory pool and a row cap.
//! - [`http::router`]: `POST /query/sql`; [`QueryClient`]: the same
//!   [`Query`] trait over HTTP.
//!
//! Limits and their errors: `timeout_secs` → 408 `query_timeout`;
//! `memory_limit` (DataFusion's memory pool, shared by running queries;
//! operators that can spill do) → 413 `memory_limit`; `max_rows` → 413
//! `too_many_rows` (the result is not truncated: add a `LIMIT`). Errors after
//! a result began streaming abort the response instead.

pub mod catalog;
pub mod client;
pub mod encode;
pub mod engine;
pub mod error;
pub mod http;
pub mod sandbox;

pub use client::QueryClient;
pub use encode::Format;
pub use engine::{ByteStream, EngineConfig, Query, QueryEngine};
pub use error::QueryError;
