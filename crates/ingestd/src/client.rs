//! The [`Ingest`] trait, implemented in process by [`Ingestor`] and over HTTP
//! by [`IngestClient`] (what `lakehouse ingest` uses). Errors come back as
//! the same [`ErrorKind`]s, rebuilt from the answer's `error.code`; a
//! relayed "my upstream failed" stays an [`UpstreamError`] naming it.
//!
//! [`ErrorKind`]: crate::ErrorKind

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use lakehouse_common::client::{CallError, ServiceClient, path_segments};
use lakehouse_common::{ClientOptions, UpstreamError, http_client};

use crate::error::IngestError;
use crate::options::IngestOptions;
use crate::service::{IngestResult, Ingestor};

/// An ingest's body: the bytes of one file, as they come.
pub type Body = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// Ingest as other code sees it: in process or remote.
#[async_trait]
pub trait Ingest: Send + Sync {
    /// Reads `body` as `opts` say and adds it to (or replaces) `dataset`
    /// atomically; with an `idempotency_key`, a retry is applied once.
    async fn ingest(
        &self,
        dataset: &str,
        opts: IngestOptions,
        body: Body,
        idempotency_key: Option<&str>,
    ) -> Result<IngestResult, IngestError>;
}

#[async_trait]
impl Ingest for Ingestor {
    async fn ingest(
        &self,
        dataset: &str,
        opts: IngestOptions,
        body: Body,
        idempotency_key: Option<&str>,
    ) -> Result<IngestResult, IngestError> {
        Ingestor::ingest(self, dataset, opts, body, idempotency_key).await
    }
}

/// ingestd over HTTP: `POST /ingest/{dataset}` with the options as query
/// parameters and the body streamed as it is read.
#[derive(Debug, Clone)]
pub struct IngestClient {
    remote: ServiceClient,
}

impl IngestClient {
    /// A client with no overall timeout (an upload takes as long as it
    /// takes); connecting still times out.
    pub fn new(base_url: &str) -> Self {
        Self::with_http(base_url, http_client(&ClientOptions::default()))
    }

    pub fn with_options(base_url: &str, opts: &ClientOptions) -> Self {
        Self::with_http(base_url, http_client(opts))
    }

    pub fn with_http(base_url: &str, http: reqwest::Client) -> Self {
        Self {
            remote: ServiceClient::new("ingestd", base_url, http),
        }
    }

    fn error(e: CallError) -> IngestError {
        match e {
            CallError::Upstream(up) => IngestError::Upstream(Box::new(up)),
            CallError::Remote(r) => match UpstreamError::from_remote(&r) {
                Some(up) => IngestError::Upstream(Box::new(up)),
                None => IngestError::Remote {
                    kind: crate::http::kind_from(r.status, &r.code),
                    status: r.status.as_u16(),
                    code: r.code,
                    message: r.message,
                },
            },
        }
    }

    /// [`Ingest::ingest`] with the body's length when it is known (sent as
    /// `Content-Length`, so proxies need not buffer a chunked body).
    pub async fn ingest_sized(
        &self,
        dataset: &str,
        opts: &IngestOptions,
        body: Body,
        len: Option<u64>,
        idempotency_key: Option<&str>,
    ) -> Result<IngestResult, IngestError> {
        let url = self
            .remote
            .url(&format!("/ingest/{}", path_segments(dataset)));
        let mut req = self
            .remote
            .http()
            .post(url)
            .query(&opts.to_query()?)
            .body(reqwest::Body::wrap_stream(body));
        if let Some(len) = len {
            req = req.header(reqwest::header::CONTENT_LENGTH, len);
        }
        if let Some(k) = idempotency_key {
            req = req.header("idempotency-key", k);
        }
        let resp = self.remote.send(req).await.map_err(Self::error)?;
        self.remote.json(resp).await.map_err(Self::error)
    }
}

#[async_trait]
impl Ingest for IngestClient {
    async fn ingest(
        &self,
        dataset: &str,
        opts: IngestOptions,
        body: Body,
        idempotency_key: Option<&str>,
    ) -> Result<IngestResult, IngestError> {
        self.ingest_sized(dataset, &opts, body, None, idempotency_key)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use lakehouse_common::ApiError;
    use lakehouse_common::client::RemoteError;

    /// Every kind the edge can answer comes back as itself through the
    /// client's reading of the envelope.
    #[test]
    fn kinds_round_trip_through_the_wire() {
        for kind in ErrorKind::ALL {
            let (status, code) = crate::http::status_code(kind);
            let api = ApiError::new(status, code, "m");
            let remote = RemoteError {
                service: "ingestd",
                status: api.status,
                code: api.code.to_string(),
                message: api.message,
                details: Default::default(),
            };
            let back = IngestClient::error(CallError::Remote(remote));
            assert_eq!(back.kind(), kind, "{back}");
        }
    }
}
