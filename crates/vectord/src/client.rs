//! The [`Vectors`] trait, implemented in-process by [`VectorService`] and over
//! HTTP by [`VectorClient`]; errors come back as the same typed variants,
//! rebuilt from the status and the JSON `error.code`, never from the text.

use async_trait::async_trait;
use lakehouse_common::{ClientOptions, http_client};
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

use crate::batch::Batch;
use crate::error::{Result, VectorError};
use crate::ipc;
use crate::service::{
    AddResult, Hit, IndexInfo, IndexSpec, Item, SearchBatch, SearchRequest, VectorService,
};

#[async_trait]
pub trait Vectors: Send + Sync {
    /// `Ok((info, created))`; the same parameters again is not an error.
    async fn create(&self, spec: IndexSpec) -> Result<(IndexInfo, bool)>;
    async fn list(&self) -> Result<Vec<IndexInfo>>;
    async fn get(&self, name: &str) -> Result<IndexInfo>;
    async fn drop_index(&self, name: &str) -> Result<()>;
    async fn add(&self, name: &str, items: Vec<Item>) -> Result<AddResult>;
    /// A batch add in columnar form (over HTTP: an Arrow IPC body, the fast
    /// path).
    async fn add_batch(&self, name: &str, batch: Batch) -> Result<AddResult>;
    async fn search(&self, name: &str, req: SearchRequest) -> Result<Vec<Hit>>;
    /// Many queries at once; one list of hits per query, in order (over
    /// HTTP: the queries as an Arrow IPC body).
    async fn search_batch(&self, name: &str, req: SearchBatch) -> Result<Vec<Vec<Hit>>>;
    async fn delete_item(&self, name: &str, id: &str) -> Result<()>;
}

#[async_trait]
impl Vectors for VectorService {
    async fn create(&self, spec: IndexSpec) -> Result<(IndexInfo, bool)> {
        VectorService::create(self, spec).await
    }
    async fn list(&self) -> Result<Vec<IndexInfo>> {
        Ok(VectorService::list(self))
    }
    async fn get(&self, name: &str) -> Result<IndexInfo> {
        VectorService::get(self, name)
    }
    async fn drop_index(&self, name: &str) -> Result<()> {
        VectorService::drop_index(self, name).await
    }
    async fn add(&self, name: &str, items: Vec<Item>) -> Result<AddResult> {
        VectorService::add(self, name, items).await
    }
    async fn add_batch(&self, name: &str, batch: Batch) -> Result<AddResult> {
        VectorService::add_batch(self, name, batch).await
    }
    async fn search(&self, name: &str, req: SearchRequest) -> Result<Vec<Hit>> {
        VectorService::search(self, name, req).await
    }
    async fn search_batch(&self, name: &str, req: SearchBatch) -> Result<Vec<Vec<Hit>>> {
        VectorService::search_batch(self, name, req).await
    }
    async fn delete_item(&self, name: &str, id: &str) -> Result<()> {
        VectorService::delete_item(self, name, id).await
    }
}

/// vectord over HTTP.
#[derive(Debug, Clone)]
pub struct VectorClient {
    base: String,
    http: reqwest::Client,
}

impl VectorClient {
    pub fn new(base_url: &str) -> Self {
        Self::with_options(base_url, &ClientOptions::default())
    }

    /// With a bearer token (auth on).
    pub fn with_options(base_url: &str, opts: &ClientOptions) -> Self {
        Self {
            base: base_url.trim_end_matches('/').to_string(),
            http: http_client(opts),
        }
    }

    fn url(&self, rest: &str) -> String {
        format!("{}/vectors/indexes{rest}", self.base)
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
        let resp = lakehouse_common::request_id::propagate(req)
            .send()
            .await
            .map_err(|e| {
                VectorError::Internal(format!("cannot reach vectord at {}: {e}", self.base))
            })?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| VectorError::Internal(format!("reading the answer: {e}")))?;
        if status.is_success() {
            if status == StatusCode::NO_CONTENT || body.is_empty() {
                return Ok((status, None));
            }
            return serde_json::from_slice(&body)
                .map(|v| (status, Some(v)))
                .map_err(|e| VectorError::Internal(format!("bad answer from vectord: {e}")));
        }
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        let code = v["error"]["code"].as_str().unwrap_or("");
        let msg = v["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        Err(match (status, code) {
            (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _) => VectorError::Denied {
                forbidden: status == StatusCode::FORBIDDEN,
                message: msg,
            },
            (StatusCode::NOT_FOUND, _) => VectorError::IndexNotFound(format!("{what}: {msg}")),
            (StatusCode::CONFLICT, _) => VectorError::ParamsConflict {
                name: what.to_string(),
                existing: msg,
            },
            (StatusCode::PAYLOAD_TOO_LARGE, _) => VectorError::BatchTooLarge {
                got: detail_usize(&v, "got"),
                limit: detail_usize(&v, "limit"),
            },
            (_, "invalid_name") => VectorError::InvalidName {
                name: what.to_string(),
                reason: msg,
            },
            (_, "invalid_params") => VectorError::InvalidParams(msg),
            (_, "invalid_body") => VectorError::InvalidBody(msg),
            (_, "invalid_item") => VectorError::InvalidItem {
                position: detail_usize(&v, "position"),
                id: v["error"]["id"].as_str().unwrap_or_default().to_string(),
                reason: v["error"]["reason"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or(msg),
            },
            (s, _) if s.is_client_error() => VectorError::InvalidSearch(msg),
            _ => VectorError::Internal(msg),
        })
    }
}

#[async_trait]
impl Vectors for VectorClient {
    async fn create(&self, spec: IndexSpec) -> Result<(IndexInfo, bool)> {
        let (status, info) = self
            .send_status(self.http.post(self.url("")).json(&spec), &spec.name)
            .await?;
        let info = info.ok_or_else(|| VectorError::Internal("empty answer".to_string()))?;
        Ok((info, status == StatusCode::CREATED))
    }

    async fn list(&self) -> Result<Vec<IndexInfo>> {
        #[derive(serde::Deserialize)]
        struct L {
            indexes: Vec<IndexInfo>,
        }
        let l: Option<L> = self.send(self.http.get(self.url("")), "list").await?;
        Ok(l.map(|l| l.indexes).unwrap_or_default())
    }

    async fn get(&self, name: &str) -> Result<IndexInfo> {
        self.send(self.http.get(self.url(&format!("/{name}"))), name)
            .await?
            .ok_or_else(|| VectorError::Internal("empty answer".to_string()))
    }

    async fn drop_index(&self, name: &str) -> Result<()> {
        let _: Option<serde_json::Value> = self
            .send(self.http.delete(self.url(&format!("/{name}"))), name)
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
            self.http
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
            self.http
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
                self.http
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
                self.http
                    .post(self.url(&format!("/{name}/search")))
                    .json(&req),
                name,
            )
            .await?
            .unwrap_or_default())
    }

    async fn delete_item(&self, name: &str, id: &str) -> Result<()> {
        let id: String = id
            .split('/')
            .map(|s| {
                percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
            })
            .collect::<Vec<_>>()
            .join("/");
        let _: Option<serde_json::Value> = self
            .send(
                self.http.delete(self.url(&format!("/{name}/items/{id}"))),
                name,
            )
            .await?;
        Ok(())
    }
}

fn detail_usize(v: &serde_json::Value, key: &str) -> usize {
    v["error"][key].as_u64().unwrap_or_default() as usize
}
