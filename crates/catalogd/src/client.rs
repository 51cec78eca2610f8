//! [`CatalogClient`]: the [`Catalog`] trait over catalogd's HTTP API.
//!
//! Error answers are turned back into typed errors from the status and the
//! JSON `error.code` (the inverse of [`crate::http::status_and_code`]), never
//! from message text, so `err.kind()` is the same for a remote catalog as for
//! an in-process one.

use std::time::Duration;

use async_trait::async_trait;
use lakehouse_common::client::{CallError, ServiceClient, path_segments};
use lakehouse_common::{ClientOptions, UpstreamError, http_client};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::{CatalogError, ErrorKind, Result};
use crate::http::{HistoryResponse, ListResponse};
use crate::{
    At, Catalog, Change, CompactOptions, CompactResponse, DropResponse, Manifest, RegisterRequest,
    RegisterResponse, RestoreRequest, VacuumReport, VacuumRequest,
};

/// A remote catalogd at `base_url`.
#[derive(Debug, Clone)]
pub struct CatalogClient {
    remote: ServiceClient,
}

impl CatalogClient {
    /// `base_url` like `http://127.0.0.1:8082` (no path).
    pub fn new(base_url: &str) -> Self {
        Self::with_options(base_url, &ClientOptions::default())
    }

    /// With a bearer token (split deployments with auth on); requests time
    /// out after 300 s unless `opts` says otherwise.
    pub fn with_options(base_url: &str, opts: &ClientOptions) -> Self {
        let mut opts = opts.clone();
        opts.timeout = opts.timeout.or(Some(Duration::from_secs(300)));
        Self::with_http(base_url, http_client(&opts))
    }

    pub fn with_http(base_url: &str, http: reqwest::Client) -> Self {
        Self {
            remote: ServiceClient::new("catalogd", base_url, http),
        }
    }

    pub fn base_url(&self) -> &str {
        self.remote.base_url()
    }

    fn manifest_url(&self, name: &str) -> String {
        self.remote
            .url(&format!("/catalog/manifest/{}", path_segments(name)))
    }

    /// No usable answer: the source is an [`UpstreamError`] (classified by
    /// the error's type), so every edge can answer 503/504/502 naming catalogd.
    fn unavailable(&self, source: UpstreamError) -> CatalogError {
        CatalogError::Unavailable {
            url: self.base_url().to_string(),
            source: Box::new(source),
        }
    }

    fn error(&self, e: CallError) -> CatalogError {
        match e {
            CallError::Upstream(up) => self.unavailable(up),
            CallError::Remote(r) => CatalogError::Remote {
                kind: kind_from(r.status, &r.code),
                status: r.status.as_u16(),
                code: r.code,
                message: r.message,
            },
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response> {
        self.remote.send(req).await.map_err(|e| self.error(e))
    }

    async fn json<T: DeserializeOwned>(&self, resp: reqwest::Response) -> Result<T> {
        self.remote.json(resp).await.map_err(|e| self.error(e))
    }
}

/// The inverse of `http::status_and_code`: the code decides; the status
/// only when the code is unknown.
pub fn kind_from(status: StatusCode, code: &str) -> ErrorKind {
    match code {
        "invalid_name" => ErrorKind::InvalidName,
        "empty_fingerprint" => ErrorKind::EmptyFingerprint,
        // The JSON extractor's own codes (lakehouse_common::ApiJson).
        "invalid_request" | "invalid_json" | "invalid_body" | "unsupported_media_type" => {
            ErrorKind::InvalidRequest
        }
        "invalid_object" => ErrorKind::InvalidObject,
        "quarantined" => ErrorKind::Quarantined,
        "no_table" => ErrorKind::NoTable,
        "no_such_version" => ErrorKind::NoSuchVersion,
        "too_large" => ErrorKind::TooLarge,
        "fingerprint_conflict" => ErrorKind::FingerprintConflict,
        "version_mismatch" => ErrorKind::VersionMismatch,
        "not_found" => ErrorKind::NotFound,
        "unavailable" => ErrorKind::Unavailable,
        "internal" => ErrorKind::Internal,
        _ => match status {
            StatusCode::NOT_FOUND => ErrorKind::NotFound,
            StatusCode::CONFLICT => ErrorKind::FingerprintConflict,
            StatusCode::PRECONDITION_FAILED => ErrorKind::VersionMismatch,
            StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::TooLarge,
            StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => ErrorKind::Unavailable,
            s if s.is_client_error() => ErrorKind::InvalidRequest,
            _ => ErrorKind::Internal,
        },
    }
}

#[async_trait]
impl Catalog for CatalogClient {
    async fn register(&self, req: RegisterRequest) -> Result<RegisterResponse> {
        let resp = self
            .send(
                self.remote
                    .http()
                    .post(self.remote.url("/catalog/register"))
                    .json(&req),
            )
            .await?;
        self.json(resp).await
    }

    async fn get(&self, name: &str) -> Result<Manifest> {
        let resp = self
            .send(self.remote.http().get(self.manifest_url(name)))
            .await?;
        self.json(resp).await
    }

    async fn get_at(&self, name: &str, at: At) -> Result<Manifest> {
        let req = self.remote.http().get(self.manifest_url(name));
        let req = match at {
            At::Latest => req,
            At::Version(v) => req.query(&[("version", v.to_string())]),
            At::Time(t) => req.query(&[("timestamp", t.to_rfc3339())]),
        };
        let resp = self.send(req).await?;
        self.json(resp).await
    }

    async fn history(&self, name: &str, limit: usize) -> Result<Vec<Change>> {
        let url = self
            .remote
            .url(&format!("/catalog/history/{}", path_segments(name)));
        let req = self.remote.http().get(url).query(&[("limit", limit)]);
        let resp = self.send(req).await?;
        Ok(self.json::<HistoryResponse>(resp).await?.history)
    }

    async fn compact(&self, name: &str, opts: CompactOptions) -> Result<CompactResponse> {
        let url = self
            .remote
            .url(&format!("/catalog/compact/{}", path_segments(name)));
        let resp = self.send(self.remote.http().post(url).json(&opts)).await?;
        self.json(resp).await
    }

    async fn sync(&self, name: &str) -> Result<Manifest> {
        let url = self
            .remote
            .url(&format!("/catalog/sync/{}", path_segments(name)));
        let resp = self.send(self.remote.http().post(url)).await?;
        self.json(resp).await
    }

    async fn restore(&self, name: &str, to: At) -> Result<Manifest> {
        let url = self
            .remote
            .url(&format!("/catalog/restore/{}", path_segments(name)));
        let body = match to {
            At::Version(v) => RestoreRequest {
                version: Some(v),
                timestamp: None,
            },
            At::Time(t) => RestoreRequest {
                version: None,
                timestamp: Some(t.to_rfc3339()),
            },
            At::Latest => return self.get(name).await,
        };
        let resp = self.send(self.remote.http().post(url).json(&body)).await?;
        self.json(resp).await
    }

    async fn vacuum(&self, name: &str, dry_run: bool) -> Result<VacuumReport> {
        let url = self
            .remote
            .url(&format!("/catalog/vacuum/{}", path_segments(name)));
        let body = VacuumRequest { dry_run };
        let resp = self.send(self.remote.http().post(url).json(&body)).await?;
        self.json(resp).await
    }

    async fn list(&self) -> Result<Vec<Manifest>> {
        let resp = self
            .send(self.remote.http().get(self.remote.url("/catalog/list")))
            .await?;
        Ok(self.json::<ListResponse>(resp).await?.manifests)
    }

    async fn drop_dataset(&self, name: &str) -> Result<Option<VacuumReport>> {
        match self
            .send(self.remote.http().delete(self.manifest_url(name)))
            .await
        {
            Ok(resp) => Ok(Some(self.json::<DropResponse>(resp).await?.vacuum)),
            // Delete is idempotent for callers: "was not there" is not an error.
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_through_the_wire_codes() {
        use ErrorKind::*;
        for kind in [
            InvalidName,
            EmptyFingerprint,
            InvalidRequest,
            InvalidObject,
            TooLarge,
            FingerprintConflict,
            VersionMismatch,
            NotFound,
            Quarantined,
            NoTable,
            NoSuchVersion,
            Internal,
            Unavailable,
        ] {
            let (status, code) = crate::http::status_and_code(kind);
            let status = StatusCode::from_u16(status.as_u16()).unwrap();
            assert_eq!(kind_from(status, code), kind, "{code}");
        }
        // Server-side faults all look like Internal from outside.
        let (s, c) = crate::http::status_and_code(CorruptManifest);
        assert_eq!(
            kind_from(StatusCode::from_u16(s.as_u16()).unwrap(), c),
            Internal
        );
        // Unknown codes fall back to the status.
        assert_eq!(kind_from(StatusCode::CONFLICT, "?"), FingerprintConflict);
        assert_eq!(kind_from(StatusCode::BAD_GATEWAY, ""), Unavailable);
        assert_eq!(kind_from(StatusCode::IM_A_TEAPOT, ""), InvalidRequest);
    }

    #[test]
    fn names_are_escaped_per_segment() {
        let c = CatalogClient::new("http://h:1/");
        assert_eq!(c.manifest_url("a/b.c"), "http://h:1/catalog/manifest/a/b.c");
        assert_eq!(
            c.manifest_url("a b?"),
            "http://h:1/catalog/manifest/a%20b%3F"
        );
    }
}
