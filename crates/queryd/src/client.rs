//! [`QueryClient`]: the [`Query`] trait over a remote queryd's HTTP API.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use lakehouse_common::client::{CallError, ServiceClient};
use lakehouse_common::{ClientOptions, UpstreamError, http_client};

use crate::encode::Format;
use crate::engine::{ByteStream, Query};
use crate::error::QueryError;

/// Talks to `POST {base_url}/query/sql`.
#[derive(Debug, Clone)]
pub struct QueryClient {
    remote: ServiceClient,
}

impl QueryClient {
    pub fn new(base_url: &str) -> Self {
        Self::with_options(base_url, &ClientOptions::default())
    }

    /// With a bearer token (auth on). Results stream, so no overall timeout.
    pub fn with_options(base_url: &str, opts: &ClientOptions) -> Self {
        Self::with_http(base_url, http_client(opts))
    }

    pub fn with_http(base_url: &str, http: reqwest::Client) -> Self {
        Self {
            remote: ServiceClient::new("queryd", base_url, http),
        }
    }

    pub fn base_url(&self) -> &str {
        self.remote.base_url()
    }
}

/// An error answer from queryd, as the typed error an edge maps again:
/// a relayed upstream failure stays one; anything else keeps its status,
/// code and details.
fn from_call(e: CallError) -> QueryError {
    match e {
        CallError::Upstream(up) => QueryError::Upstream(up),
        CallError::Remote(r) => match UpstreamError::from_remote(&r) {
            Some(up) => QueryError::Upstream(up),
            None => QueryError::Remote {
                status: r.status.as_u16(),
                code: if r.code.is_empty() {
                    "remote_error".to_string()
                } else {
                    r.code
                },
                message: r.message,
                details: r.details,
            },
        },
    }
}

#[async_trait]
impl Query for QueryClient {
    async fn sql(&self, sql: &str, format: Format) -> Result<ByteStream, QueryError> {
        let req = self
            .remote
            .http()
            .post(self.remote.url("/query/sql"))
            .header(reqwest::header::ACCEPT, format.content_type())
            .json(&serde_json::json!({ "sql": sql, "format": format.name() }));
        let resp = self.remote.send(req).await.map_err(from_call)?;
        let remote = self.remote.clone();
        Ok(resp
            .bytes_stream()
            .map_err(move |e| QueryError::Upstream(remote.transport(e)))
            .boxed())
    }
}
