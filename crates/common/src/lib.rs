//! Edge plumbing shared by every lakehouse service.
//!
//! Nothing here knows about a particular service: the JSON error envelope every
//! route returns, request metrics in Prometheus text format, `/health` and
//! `/ready`, the standard middleware stack, and graceful serving.

pub mod error;
pub mod metrics;
pub mod server;
pub mod size;

pub use error::{ApiError, ApiJson};
pub use metrics::Metrics;
pub use server::{ReadyCheck, ServerOptions};
