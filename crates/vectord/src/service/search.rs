//! Searches: one query on a blocking thread, a batch on every core (rayon),
//! each validated (k, ef, filter, the vector) before any work.

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
        check_vector(&state.spec, &req.vector).map_err(VectorError::InvalidSearch)?;
        blocking(move || state.search_one(&req.vector, req.k, ef, req.filter.as_ref())).await
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
