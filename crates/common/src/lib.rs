//! Edge plumbing shared by every lakehouse service.
//!
//! Nothing here knows about a particular service: the JSON error envelope every
//! route returns, request metrics in Prometheus text format, `/health` and
//! `/ready`, the standard middleware stack, and graceful serving.

pub mod auth;
pub mod client;
pub mod conn;
pub mod drain;
pub mod embed;
pub mod envelope;
pub mod error;
pub mod metrics;
pub mod request_id;
pub mod server;
pub mod services;
pub mod size;
pub mod upstream;

pub use auth::{AuthConfig, Authenticator, Role};
pub use client::{ClientOptions, http_client};
pub use embed::{EmbedError, TextEmbedder};
pub use error::{ApiError, ApiJson};
pub use metrics::Metrics;
pub use server::{ReadyCheck, ServerOptions};
pub use services::Service;
pub use upstream::{UpstreamError, UpstreamKind};
