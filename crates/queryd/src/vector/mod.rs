//! Vectors in SQL: brute-force distance functions over any table
//! ([`distance`]), `embed(text)` with the configured sentence model
//! ([`embed`]), and `vector_search` / `hybrid_search`, an index's nearest
//! items as a table to join with its dataset ([`search`]).

pub(crate) mod distance;
pub(crate) mod embed;
pub(crate) mod search;

use std::sync::Arc;

use datafusion::execution::SessionState;
use datafusion::execution::registry::FunctionRegistry;
use lakehouse_common::TextEmbedder;
use lakehouse_vectord::Vectors;

pub(crate) use search::Prepared;

/// Registers the distance functions and `embed` (over `model`, or refusing
/// with the setting's name).
pub(crate) fn register_functions(
    state: &mut SessionState,
    model: Option<Arc<dyn TextEmbedder>>,
) -> datafusion::common::Result<()> {
    for f in distance::functions() {
        state.register_udf(f)?;
    }
    state.register_udf(embed::function(model))?;
    Ok(())
}

/// Registers the two table functions of one query, which find the indexes
/// described in `prepared`.
pub(crate) fn register_search(
    state: &mut SessionState,
    vectors: Option<Arc<dyn Vectors>>,
    prepared: &Arc<Prepared>,
) {
    for hybrid in [false, true] {
        let f = search::SearchFunction {
            hybrid,
            vectors: vectors.clone(),
            prepared: prepared.clone(),
        };
        let name = if hybrid {
            search::HYBRID_SEARCH
        } else {
            search::VECTOR_SEARCH
        };
        state.register_udtf(name, Arc::new(f));
    }
}
