//! ingestd: streams CSV, NDJSON, Parquet and Arrow into Parquet objects under
//! `datasets/<name>/` and registers them in the catalog.
//!
//! The pipeline: the HTTP body (async) → a decode thread (bytes → Arrow
//! batches) → an encode thread (batches → Parquet) → async multipart
//! uploads → one catalog registration. Memory stays bounded whatever the input
//! size; nothing becomes visible until the registration succeeds.

pub mod client;
pub mod decode;
pub mod error;
pub mod evolve;
mod exact_json;
pub use lakehouse_catalogd::fingerprint;
pub mod footer;
pub mod guard;
pub mod http;
pub mod options;
pub mod sniff;
pub mod writer;

pub use client::{Ingest, IngestClient};
pub use error::{ErrorKind, IngestError};
pub use options::{CsvOptions, Format, IngestOptions, Mode};
pub mod service;

pub use service::{IngestConfig, IngestResult, Ingestor};
