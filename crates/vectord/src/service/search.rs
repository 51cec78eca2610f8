//! Searches: one query on a blocking thread, a batch on every core (rayon),
//! each validated (k, ef, filter, the vector) before any work.
//!
//! A query can be a `text`, embedded with the configured model (on a
//! blocking thread) into the query vector. A `hybrid` search fuses the
//! nearest-vector list and the text index's BM25 list by reciprocal rank
//! (k = [`limits::RRF_K`]); each side contributes its top
//! `max(k, ef, HYBRID_DEPTH)`, and every fused hit carries its vector
//! distance and its fusion `score`.

use rayon::prelude::*;

use super::{VectorService, blocking};
use crate::api::{Hit, SearchBatch, SearchRequest};
use crate::batch::check_vector;
use crate::error::{Result, VectorError};
use crate::limits;

impl VectorService {
    pub async fn search(&self, name: &str, req: SearchRequest) -> Result<Vec<Hit>> {
        let state = self.get_state(name)?;
        let ef = limits::check_search(req.k, req.ef, 1)?;
        if let Some(f) = &req.filter {
            limits::check_filter(f)?;
        }
        let SearchRequest {
            vector,
            k,
            filter,
            text,
            hybrid,
            ..
        } = req;
        if let Some(t) = &text {
            limits::check_text(t)?;
        }
        let text = match (text, hybrid) {
            (None, true) => {
                return Err(VectorError::InvalidSearch(
                    "a hybrid search needs `text`".into(),
                ));
            }
            (Some(_), false) if !vector.is_empty() => {
                return Err(VectorError::InvalidSearch(
                    "give `vector` or `text`, not both (or both with `hybrid: true`)".into(),
                ));
            }
            (t, _) => t,
        };
        if hybrid && state.text.is_none() {
            return Err(VectorError::InvalidSearch(format!(
                "index {name:?} has no text_column, which a hybrid search needs"
            )));
        }
        let vector = match (&text, vector.is_empty()) {
            (Some(t), true) => self.embed_query(t, state.spec.dim).await?,
            _ => vector,
        };
        check_vector(&state.spec, &vector).map_err(VectorError::InvalidSearch)?;
        blocking(move || match text.filter(|_| hybrid) {
            Some(t) => state.search_hybrid(&vector, &t, k, ef, filter.as_ref()),
            None => state.search_one(&vector, k, ef, filter.as_ref()),
        })
        .await
    }

    /// A query text's vector from the configured model.
    async fn embed_query(&self, text: &str, dim: usize) -> Result<Vec<f32>> {
        let e = self.sources.embedder()?;
        if e.dim() != dim {
            return Err(VectorError::InvalidSearch(format!(
                "the embedding model {:?} gives {} dimensions; the index has {dim}",
                e.model(),
                e.dim()
            )));
        }
        let text = text.to_string();
        blocking(move || Ok(e.embed(&[text.as_str()])?)).await
    }

    /// Many queries at once, on every core; one list of hits per query.
    pub async fn search_batch(&self, name: &str, req: SearchBatch) -> Result<Vec<Vec<Hit>>> {
        let state = self.get_state(name)?;
        let ef = limits::check_search(req.k, req.ef, req.vectors.len())?;
        if let Some(f) = &req.filter {
            limits::check_filter(f)?;
        }
        for (i, q) in req.vectors.iter().enumerate() {
            check_vector(&state.spec, q)
                .map_err(|e| VectorError::InvalidSearch(format!("query {i}: {e}")))?;
        }
        blocking(move || {
            req.vectors
                .par_iter()
                .map(|q| state.search_one(q, req.k, ef, req.filter.as_ref()))
                .collect()
        })
        .await
    }
}
