//! [`QueryClient`]: the [`Query`] trait over a remote queryd's HTTP API.

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt};
use lakehouse_common::error::ErrorBody;
use lakehouse_common::{ClientOptions, http_client};

use crate::encode::Format;
use crate::engine::{ByteStream, Query};
use crate::error::QueryError;

/// Talks to `POST {base_url}/query/sql`.
#[derive(Debug, Clone)]
pub struct QueryClient {
    base_url: String,
    http: reqwest::Client,
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
            base_url: base_url.trim_end_matches('/').to_string(),
            http,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> QueryError {
        QueryError::Unavailable {
            url: self.base_url.clone(),
            detail: e.to_string(),
        }
    }
}

#[async_trait]
impl Query for QueryClient {
    async fn sql(&self, sql: &str, format: Format) -> Result<ByteStream, QueryError> {
        let resp = self
            .http
            .post(format!("{}/query/sql", self.base_url))
            .header(reqwest::header::ACCEPT, format.content_type())
            .json(&serde_json::json!({ "sql": sql, "format": format.name() }))
            .send()
            .await
            .map_err(|e| self.unavailable(e))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.bytes().await.map_err(|e| self.unavailable(e))?;
            // Typed by status and code, never by the message.
            return Err(match serde_json::from_slice::<ErrorBody>(&body) {
                Ok(b) => QueryError::Remote {
                    status: status.as_u16(),
                    code: b.error.code,
                    message: b.error.message,
                    details: b.error.details,
                },
                Err(_) => QueryError::Remote {
                    status: status.as_u16(),
                    code: "remote_error".to_string(),
                    message: format!(
                        "queryd answered {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(512)])
                    ),
                    details: Default::default(),
                },
            });
        }
        let url = self.base_url.clone();
        Ok(resp
            .bytes_stream()
            .map_err(move |e| QueryError::Unavailable {
                url: url.clone(),
                detail: format!("the result stream broke off: {e}"),
            })
            .boxed())
    }
}
