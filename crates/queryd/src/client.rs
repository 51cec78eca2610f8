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

#[cfg(test)]
mod tests {
    use super::*;
    use lakehouse_common::ApiError;
    use lakehouse_common::client::RemoteError;

    /// The status, code, message and details of every error a query can
    /// meet survive the wire: edge → envelope → client → `QueryError` →
    /// the next edge answers exactly what the first one did.
    #[test]
    fn errors_round_trip_through_the_wire() {
        let errors = [
            QueryError::InvalidRequest("empty".into()),
            QueryError::Syntax {
                detail: "expected a SQL statement".into(),
                line: Some(1),
                column: Some(3),
            },
            QueryError::TooComplex {
                what: "nesting".into(),
                limit: 1000,
                setting: "[queryd].max_expr_depth",
            },
            QueryError::Forbidden {
                what: "DROP TABLE".into(),
            },
            QueryError::UnknownTable {
                tables: vec!["nope".into()],
                available: vec!["sales".into()],
            },
            QueryError::AmbiguousColumn {
                name: "id".into(),
                candidates: vec!["ID".into(), "Id".into()],
            },
            QueryError::Plan("no such column".into()),
            QueryError::Execution("cast failed".into()),
            QueryError::InvalidRegex("(".into()),
            QueryError::NotSupported("LATERAL".into()),
            QueryError::Timeout { secs: 300 },
            QueryError::MemoryLimit {
                limit: "4 GiB".into(),
                detail: "hash join".into(),
            },
            QueryError::TooManyRows { max_rows: 10 },
            QueryError::MemoryPressure {
                used: "9 GiB".into(),
                limit: "8 GiB".into(),
            },
        ];
        for e in errors {
            let first = ApiError::from(e);
            let remote = RemoteError {
                service: "queryd",
                status: first.status,
                code: first.code.to_string(),
                message: first.message.clone(),
                details: first.details.clone(),
            };
            let again = ApiError::from(from_call(CallError::Remote(remote)));
            assert_eq!(
                (again.status, again.code, &again.message, &again.details),
                (first.status, first.code, &first.message, &first.details)
            );
        }
    }
}
