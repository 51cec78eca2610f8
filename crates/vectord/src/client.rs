//! [`VectorClient`]: the [`Vectors`] trait over HTTP; errors come back as the
//! same typed variants as in process, rebuilt from the JSON `error.code`
//! (the status only for a foreign answer), never from the text.

use async_trait::async_trait;
use lakehouse_common::client::{CallError, RemoteError, ServiceClient};
use lakehouse_common::{ClientOptions, EmbedError, UpstreamError, http_client};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use crate::api::{AddResult, Hit, IndexInfo, IndexSpec, Item, SearchBatch, SearchRequest, Vectors};
use crate::batch::Batch;
use crate::error::{Result, VectorError};
use crate::ipc;

/// vectord over HTTP.
#[derive(Debug, Clone)]
pub struct VectorClient {
    remote: ServiceClient,
}

impl VectorClient {
    pub fn new(base_url: &str) -> Self {
        Self::with_options(base_url, &ClientOptions::default())
    }

    /// With a bearer token (auth on).
    pub fn with_options(base_url: &str, opts: &ClientOptions) -> Self {
        Self {
            remote: ServiceClient::new("vectord", base_url, http_client(opts)),
        }
    }

    fn url(&self, rest: &str) -> String {
        self.remote.url(&format!("/vectors/indexes{rest}"))
    }

    fn http(&self) -> &reqwest::Client {
        self.remote.http()
    }

    async fn send<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<Option<T>> {
        Ok(self.send_status(req, what).await?.1)
    }

    /// Sends a request; a success's status and body, or the typed error.
    async fn send_status<T: DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<(StatusCode, Option<T>)> {
        let call = async {
            let resp = self.remote.send(req).await?;
            let status = resp.status();
            let body = self.remote.bytes(resp).await?;
            if status == StatusCode::NO_CONTENT || body.is_empty() {
                return Ok((status, None));
            }
            serde_json::from_slice(&body)
                .map(|v| (status, Some(v)))
                .map_err(|e| CallError::Upstream(self.remote.broken(e)))
        };
        call.await.map_err(|e| match e {
            CallError::Upstream(up) => VectorError::Upstream(up),
            CallError::Remote(r) => from_remote(r, what),
        })
    }
}

/// The inverse of the edge's `From<VectorError> for ApiError`: the code
/// decides; the status only when the code is unknown (a proxy's answer).
/// `what` is the index the call was about.
pub fn from_remote(e: RemoteError, what: &str) -> VectorError {
    if let Some(up) = UpstreamError::from_remote(&e) {
        return VectorError::Upstream(up);
    }
    let index = what.to_string();
    let id = e.detail_str("id").to_string();
    let msg = e.message.clone();
    match e.code.as_str() {
        "invalid_name" => VectorError::InvalidName {
            name: index,
            reason: msg,
        },
        "invalid_params" => VectorError::InvalidParams(msg),
        "invalid_item" => VectorError::InvalidItem {
            position: e.detail_u64("position") as usize,
            id,
            reason: Some(e.detail_str("reason"))
                .filter(|r| !r.is_empty())
                .map_or(msg, str::to_string),
        },
        "invalid_search" => VectorError::InvalidSearch(msg),
        // The body extractors' own codes (lakehouse_common::ApiJson).
        "invalid_body" | "invalid_json" | "invalid_request" | "unsupported_media_type" => {
            VectorError::InvalidBody(msg)
        }
        "forbidden" | "unauthorized" => VectorError::Denied {
            forbidden: e.code == "forbidden",
            message: msg,
        },
        "too_large" => VectorError::BatchTooLarge {
            got: e.detail_u64("got") as usize,
            limit: e.detail_u64("limit") as usize,
        },
        "params_conflict" => VectorError::ParamsConflict {
            name: index,
            existing: msg,
        },
        "not_found" => VectorError::IndexNotFound(format!("{what}: {msg}")),
        "item_not_found" => VectorError::ItemNotFound { index, id },
        "index_follows_dataset" => VectorError::FollowsDataset(index),
        "dataset_not_found" => VectorError::DatasetNotFound(msg),
        "invalid_source" => VectorError::InvalidSource(msg),
        "no_catalog" => VectorError::NoCatalog,
        "no_embedding_model" => VectorError::Embed(EmbedError::NotConfigured(msg)),
        "invalid_text" => VectorError::Embed(EmbedError::Invalid(msg)),
        "internal" => VectorError::Internal(msg),
        _ => by_status(e, what),
    }
}

/// An answer without one of our codes: the status tells what it can.
fn by_status(e: RemoteError, what: &str) -> VectorError {
    let msg = e.to_string();
    match e.status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => VectorError::Denied {
            forbidden: e.status == StatusCode::FORBIDDEN,
            message: msg,
        },
        StatusCode::NOT_FOUND => VectorError::IndexNotFound(format!("{what}: {msg}")),
        StatusCode::CONFLICT => VectorError::ParamsConflict {
            name: what.to_string(),
            existing: msg,
        },
        s if s.is_client_error() => VectorError::InvalidSearch(msg),
        _ => VectorError::Internal(msg),
    }
}

#[async_trait]
impl Vectors for VectorClient {
    async fn create(&self, spec: IndexSpec) -> Result<(IndexInfo, bool)> {
        let (status, info) = self
            .send_status(self.http().post(self.url("")).json(&spec), &spec.name)
            .await?;
        let info = info.ok_or_else(|| VectorError::Internal("empty answer".to_string()))?;
        Ok((info, status == StatusCode::CREATED))
    }

    async fn list(&self) -> Result<Vec<IndexInfo>> {
        #[derive(serde::Deserialize)]
        struct L {
            indexes: Vec<IndexInfo>,
        }
        let l: Option<L> = self.send(self.http().get(self.url("")), "list").await?;
        Ok(l.map(|l| l.indexes).unwrap_or_default())
    }

    async fn get(&self, name: &str) -> Result<IndexInfo> {
        self.send(self.http().get(self.url(&format!("/{name}"))), name)
            .await?
            .ok_or_else(|| VectorError::Internal("empty answer".to_string()))
    }

    async fn drop_index(&self, name: &str) -> Result<()> {
        let _: Option<serde_json::Value> = self
            .send(self.http().delete(self.url(&format!("/{name}"))), name)
            .await?;
        Ok(())
    }

    async fn add(&self, name: &str, items: Vec<Item>) -> Result<AddResult> {
        #[derive(serde::Serialize)]
        struct Body<'a> {
            items: &'a [Item],
        }
        let body = Body { items: &items };
        self.send(
            self.http()
                .post(self.url(&format!("/{name}/add")))
                .json(&body),
            name,
        )
        .await?
        .ok_or_else(|| VectorError::Internal("empty answer".to_string()))
    }

    async fn add_batch(&self, name: &str, batch: Batch) -> Result<AddResult> {
        let body = tokio::task::spawn_blocking(move || ipc::encode_add(&batch))
            .await
            .map_err(|e| VectorError::Internal(e.to_string()))??;
        self.send(
            self.http()
                .post(self.url(&format!("/{name}/add")))
                .header(reqwest::header::CONTENT_TYPE, ipc::CONTENT_TYPE)
                .body(body),
            name,
        )
        .await?
        .ok_or_else(|| VectorError::Internal("empty answer".to_string()))
    }

    async fn search_batch(&self, name: &str, req: SearchBatch) -> Result<Vec<Vec<Hit>>> {
        let body = ipc::encode_queries(&req.vectors)?;
        let mut query = vec![("k", req.k.to_string())];
        if let Some(ef) = req.ef {
            query.push(("ef", ef.to_string()));
        }
        if let Some(f) = &req.filter {
            query.push(("filter", serde_json::Value::Object(f.clone()).to_string()));
        }
        Ok(self
            .send(
                self.http()
                    .post(self.url(&format!("/{name}/search")))
                    .query(&query)
                    .header(reqwest::header::CONTENT_TYPE, ipc::CONTENT_TYPE)
                    .body(body),
                name,
            )
            .await?
            .unwrap_or_default())
    }

    async fn search(&self, name: &str, req: SearchRequest) -> Result<Vec<Hit>> {
        Ok(self
            .send(
                self.http()
                    .post(self.url(&format!("/{name}/search")))
                    .json(&req),
                name,
            )
            .await?
            .unwrap_or_default())
    }

    async fn get_item(&self, name: &str, id: &str) -> Result<Item> {
        let url = self.url(&format!(
            "/{name}/items/{}",
            lakehouse_common::client::path_segments(id)
        ));
        self.send(self.http().get(url), name)
            .await?
            .ok_or_else(|| VectorError::Internal("vectord answered an item with no body".into()))
    }

    async fn delete_item(&self, name: &str, id: &str) -> Result<()> {
        let url = self.url(&format!(
            "/{name}/items/{}",
            lakehouse_common::client::path_segments(id)
        ));
        let _: Option<serde_json::Value> = self.send(self.http().delete(url), name).await?;
        Ok(())
    }

    async fn sync(&self, name: &str) -> Result<IndexInfo> {
        self.send(self.http().post(self.url(&format!("/{name}/sync"))), name)
            .await?
            .ok_or_else(|| VectorError::Internal("empty answer".to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;
    use lakehouse_common::ApiError;
    use lakehouse_common::UpstreamKind;

    /// Through the edge's mapping and back through the client's: every
    /// variant a client can meet comes back as itself.
    #[tokio::test]
    async fn errors_round_trip_through_the_wire() {
        let n = cases().len();
        for i in 0..n {
            let (e, want) = (cases().remove(i), cases().remove(i));
            let api = ApiError::from(e);
            let status = api.status;
            let resp = api.into_response();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            let back = from_remote(RemoteError::from_body("vectord", status, &body), "i");
            assert_eq!(
                std::mem::discriminant(&back),
                std::mem::discriminant(&want),
                "{want:?} came back as {back:?}"
            );
            match (&want, &back) {
                (VectorError::Upstream(w), VectorError::Upstream(b)) => {
                    assert_eq!((w.service, w.kind), (b.service, b.kind))
                }
                (
                    VectorError::Denied { forbidden: w, .. },
                    VectorError::Denied { forbidden: b, .. },
                ) => {
                    assert_eq!(w, b)
                }
                (
                    VectorError::ItemNotFound { id: w, .. },
                    VectorError::ItemNotFound { id: b, .. },
                ) => {
                    assert_eq!(w, b)
                }
                (
                    VectorError::InvalidItem {
                        position,
                        id,
                        reason,
                    },
                    VectorError::InvalidItem {
                        position: p,
                        id: i,
                        reason: r,
                    },
                ) => assert_eq!((position, id, reason), (p, i, r)),
                (
                    VectorError::BatchTooLarge { got, limit },
                    VectorError::BatchTooLarge { got: g, limit: l },
                ) => assert_eq!((got, limit), (g, l)),
                (VectorError::Embed(w), VectorError::Embed(b)) => {
                    assert_eq!(std::mem::discriminant(w), std::mem::discriminant(b))
                }
                _ => {}
            }
        }
        // Not our envelope: the status decides.
        let e = RemoteError::from_body("vectord", StatusCode::NOT_FOUND, b"<html>");
        assert!(matches!(from_remote(e, "i"), VectorError::IndexNotFound(_)));
        let e = RemoteError::from_body("vectord", StatusCode::BAD_GATEWAY, b"<html>");
        assert!(matches!(from_remote(e, "i"), VectorError::Internal(_)));
    }

    fn cases() -> Vec<VectorError> {
        let up = |kind| UpstreamError::new("storaged", "http://s", kind, None);
        vec![
            VectorError::InvalidName {
                name: "i".into(),
                reason: "r".into(),
            },
            VectorError::InvalidParams("p".into()),
            VectorError::ParamsConflict {
                name: "i".into(),
                existing: "e".into(),
            },
            VectorError::IndexNotFound("i".into()),
            VectorError::ItemNotFound {
                index: "i".into(),
                id: "a/b".into(),
            },
            VectorError::InvalidItem {
                position: 3,
                id: "x".into(),
                reason: "bad".into(),
            },
            VectorError::InvalidSearch("s".into()),
            VectorError::InvalidBody("b".into()),
            VectorError::BatchTooLarge { got: 9, limit: 5 },
            VectorError::Upstream(up(UpstreamKind::Unreachable)),
            VectorError::Upstream(up(UpstreamKind::Timeout)),
            VectorError::Upstream(up(UpstreamKind::Broken)),
            VectorError::Denied {
                forbidden: true,
                message: "m".into(),
            },
            VectorError::Denied {
                forbidden: false,
                message: "m".into(),
            },
            VectorError::FollowsDataset("i".into()),
            VectorError::DatasetNotFound("d".into()),
            VectorError::InvalidSource("column \"x\"".into()),
            VectorError::NoCatalog,
            VectorError::Embed(EmbedError::NotConfigured("set it".into())),
            VectorError::Embed(EmbedError::Invalid("too long".into())),
            VectorError::Internal("x".into()),
        ]
    }
}
