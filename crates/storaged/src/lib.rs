//! storaged: the lakehouse's object store.
//!
//! Keys map to bytes on a pluggable `object_store::ObjectStore` backend (local
//! filesystem by default, any S3-compatible store, or memory). The core
//! ([`Storage`]) validates keys, enforces the object-size limit and makes
//! conditional writes (`If-None-Match: *`, `If-Match`) linearizable; it knows
//! nothing of HTTP. [`http::router`] is the HTTP edge and [`StoragedClient`]
//! implements `ObjectStore` over that HTTP API, so a remote storaged is used
//! exactly like a local store, by DataFusion as well. Services in the same
//! process use [`Storage::store`], a [`RulesStore`]: the backend under the
//! same rules (key grammar, size cap, commit locks).

pub mod backend;
pub mod client;
pub mod error;
pub mod fs;
pub mod http;
pub mod key;
pub mod rules;
pub mod service;

pub use backend::{Backend, StoragedConfig};
pub use client::StoragedClient;
pub use error::StorageError;
pub use key::{KeyError, ObjectKey};
pub use rules::RulesStore;
pub use service::{GetRequest, ListPage, ObjectInfo, PutCondition, PutOutcome, Storage};
