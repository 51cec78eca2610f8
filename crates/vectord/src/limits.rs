//! The documented bounds on every client-controlled input of vectord (README,
//! "Vector API", lists them). Each one keeps a single request's CPU and memory
//! proportional to what it sends, and each violation is a 400 (413 for the
//! batch size) naming the parameter.
//!
//! Why these numbers:
//! - `m ≤ 128`: the engine's own bound (level 0 keeps `2m` links per node); the
//!   usual range is 8–64 and recall stops improving well before 128.
//! - `ef_construction ≤ 4096`: published HNSW settings stay at or below ~1000
//!   (pgvector caps it at 1000); 4096 leaves room for experiments while keeping
//!   a build at most ~20× slower than the default 200. Before this cap any value
//!   up to `u32::MAX` was accepted and made every add ~9× slower.
//! - `k ≤ 10 000`, `ef ≤ 10 000` (`ef` is raised to `k` when smaller): one
//!   search visits O(ef) nodes; beyond that an exact scan is the better tool.
//! - `dim ≤ 65 536`: the engine's bound (256 KiB per vector).
//! - ids ≤ 1024 bytes; metadata ≤ 64 KiB of JSON and ≤ 32 levels deep per item
//!   (metadata stays in memory with every item; 64 KiB is above hosted
//!   services' per-vector limits, e.g. 40 KB).
//! - filters ≤ 64 fields and ≤ 64 KiB of JSON: every candidate is checked
//!   against every field.
//! - ≤ 100 000 items per add and ≤ 10 000 queries per batch search, with at
//!   most 1 000 000 hits (queries × k) in one answer.
//! - a dataset index: ≤ 64 metadata columns (each hit carries them all),
//!   names ≤ 1024 bytes; query texts ≤ 64 KiB (the model reads only the
//!   first few hundred tokens anyway).
//!
//! Existing indexes keep the parameters they were created with: a snapshot
//! made before a cap existed still loads.

use serde_json::{Map, Value};

use crate::api::SourceSpec;
use crate::error::{Result, VectorError};

pub const MAX_DIM: usize = lakehouse_hnsw::Params::MAX_DIM;
pub const MIN_M: usize = 2;
pub const MAX_M: usize = lakehouse_hnsw::Params::MAX_M;
pub const MAX_EF_CONSTRUCTION: usize = 4096;
pub const MAX_K: usize = 10_000;
pub const MAX_EF: usize = 10_000;
/// The `ef` of a search that names none (raised to `k` when smaller).
pub const DEFAULT_EF: usize = 64;
pub const MAX_BATCH: usize = 100_000;
pub const MAX_QUERIES: usize = 10_000;
pub const MAX_HITS: usize = 1_000_000;
pub const MAX_ID_LEN: usize = 1024;
pub const MAX_METADATA_BYTES: usize = 64 << 10;
pub const MAX_METADATA_DEPTH: usize = 32;
pub const MAX_FILTER_FIELDS: usize = 64;
pub const MAX_FILTER_BYTES: usize = 64 << 10;
pub const MAX_METADATA_COLUMNS: usize = 64;
pub const MAX_COLUMN_NAME: usize = 1024;
pub const MAX_QUERY_TEXT: usize = 64 << 10;
/// How deep each side of a hybrid search looks before fusing: the `k`
/// best of the two lists' top `max(k, ef, HYBRID_DEPTH)`.
pub const HYBRID_DEPTH: usize = 100;
/// Reciprocal rank fusion's `k` (the usual 60).
pub const RRF_K: f32 = 60.0;

/// Checks the parameters of a new index; the error names the first one out
/// of range.
pub fn check_index_params(dim: usize, m: usize, ef_construction: usize) -> Result<()> {
    let bad = |what: &str, range: String, got: usize| {
        Err(VectorError::InvalidParams(format!(
            "{what} must be in {range}, got {got}"
        )))
    };
    if dim == 0 || dim > MAX_DIM {
        return bad("dim", format!("1..={MAX_DIM}"), dim);
    }
    if !(MIN_M..=MAX_M).contains(&m) {
        return bad("m", format!("{MIN_M}..={MAX_M}"), m);
    }
    if ef_construction == 0 || ef_construction > MAX_EF_CONSTRUCTION {
        return bad(
            "ef_construction",
            format!("1..={MAX_EF_CONSTRUCTION}"),
            ef_construction,
        );
    }
    Ok(())
}

/// Checks what a dataset index names (the dataset and columns are checked
/// against the catalog afterwards): the columns it needs are there, no name
/// is empty or longer than [`MAX_COLUMN_NAME`], at most
/// [`MAX_METADATA_COLUMNS`] distinct metadata columns.
pub fn check_source(s: &SourceSpec) -> Result<()> {
    let bad = |msg: String| Err(VectorError::InvalidSource(msg));
    let dataset = s.dataset.as_deref().unwrap_or_default();
    if dataset.is_empty() || dataset.len() > MAX_COLUMN_NAME {
        return bad(format!("dataset must be 1 to {MAX_COLUMN_NAME} bytes"));
    }
    if s.id_column.is_none() {
        return bad("an index that follows a dataset needs id_column".into());
    }
    if s.column.is_none() && s.text_column.is_none() {
        return bad("an index that follows a dataset needs column (vectors) or text_column".into());
    }
    if s.metadata_columns.len() > MAX_METADATA_COLUMNS {
        return bad(format!(
            "metadata_columns lists {} columns; the limit is {MAX_METADATA_COLUMNS}",
            s.metadata_columns.len()
        ));
    }
    let named = [&s.column, &s.text_column, &s.id_column]
        .into_iter()
        .flatten()
        .chain(&s.metadata_columns);
    for c in named {
        if c.is_empty() || c.len() > MAX_COLUMN_NAME {
            return bad(format!(
                "column names must be 1 to {MAX_COLUMN_NAME} bytes, got {} bytes",
                c.len()
            ));
        }
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(c) = s.metadata_columns.iter().find(|c| !seen.insert(*c)) {
        return bad(format!("metadata_columns lists {c:?} twice"));
    }
    Ok(())
}

/// A plain index names no columns.
pub fn check_plain(s: &SourceSpec) -> Result<()> {
    if *s == SourceSpec::default() {
        return Ok(());
    }
    Err(VectorError::InvalidSource(
        "column, text_column, id_column and metadata_columns need dataset".into(),
    ))
}

/// A search's query text.
pub fn check_text(text: &str) -> Result<()> {
    if text.len() > MAX_QUERY_TEXT {
        return Err(VectorError::InvalidSearch(format!(
            "text is {} bytes; the limit is {MAX_QUERY_TEXT}",
            text.len()
        )));
    }
    Ok(())
}

/// `k` and `ef` of a search (one query or a batch of `queries`); returns the
/// `ef` to use.
pub fn check_search(k: usize, ef: Option<usize>, queries: usize) -> Result<usize> {
    if k == 0 || k > MAX_K {
        return Err(VectorError::InvalidSearch(format!(
            "k must be between 1 and {MAX_K}, got {k}"
        )));
    }
    if let Some(ef) = ef
        && (ef == 0 || ef > MAX_EF)
    {
        return Err(VectorError::InvalidSearch(format!(
            "ef must be between 1 and {MAX_EF}, got {ef}"
        )));
    }
    if queries > MAX_QUERIES {
        return Err(VectorError::InvalidSearch(format!(
            "a batch search takes at most {MAX_QUERIES} queries, got {queries}"
        )));
    }
    if queries.saturating_mul(k) > MAX_HITS {
        return Err(VectorError::InvalidSearch(format!(
            "queries × k must be at most {MAX_HITS}, got {queries} × {k}"
        )));
    }
    Ok(ef.unwrap_or(DEFAULT_EF).max(k))
}

pub fn check_filter(filter: &Map<String, Value>) -> Result<()> {
    if filter.len() > MAX_FILTER_FIELDS {
        return Err(VectorError::InvalidSearch(format!(
            "filter has {} fields; the limit is {MAX_FILTER_FIELDS}",
            filter.len()
        )));
    }
    let size = json_size(filter);
    if size > MAX_FILTER_BYTES {
        return Err(VectorError::InvalidSearch(format!(
            "filter is {size} bytes of JSON; the limit is {MAX_FILTER_BYTES}"
        )));
    }
    Ok(())
}

/// Why one item's metadata is refused, if it is.
pub fn check_metadata(md: &Map<String, Value>) -> std::result::Result<(), String> {
    let depth = 1 + md.values().map(depth).max().unwrap_or(0);
    if depth > MAX_METADATA_DEPTH {
        return Err(format!(
            "metadata is nested {depth} levels deep; the limit is {MAX_METADATA_DEPTH}"
        ));
    }
    let size = json_size(md);
    if size > MAX_METADATA_BYTES {
        return Err(format!(
            "metadata is {size} bytes of JSON; the limit is {MAX_METADATA_BYTES}"
        ));
    }
    Ok(())
}

/// Nesting depth of a JSON value: scalars 0, `[]`/`{}` 1, and so on.
fn depth(v: &Value) -> usize {
    // Iterative, so a deep value cannot overflow the stack here.
    let mut max = 0;
    let mut stack = vec![(v, 0usize)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Array(a) => {
                max = max.max(d + 1);
                stack.extend(a.iter().map(|x| (x, d + 1)));
            }
            Value::Object(o) => {
                max = max.max(d + 1);
                stack.extend(o.values().map(|x| (x, d + 1)));
            }
            _ => max = max.max(d),
        }
    }
    max
}

/// Size of the compact JSON form, without building it.
fn json_size(md: &Map<String, Value>) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0 += b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    // Writing to a counter cannot fail, and a Map always serialises.
    let _ = serde_json::to_writer(&mut c, md);
    c.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn index_params_name_the_parameter() {
        assert!(check_index_params(384, 16, 200).is_ok());
        assert!(check_index_params(MAX_DIM, MAX_M, MAX_EF_CONSTRUCTION).is_ok());
        for (dim, m, efc, name) in [
            (0, 16, 200, "dim"),
            (MAX_DIM + 1, 16, 200, "dim"),
            (8, 1, 200, "m"),
            (8, 129, 200, "m"),
            (8, 16, 0, "ef_construction"),
            (8, 16, 4097, "ef_construction"),
            (8, 16, u32::MAX as usize, "ef_construction"),
        ] {
            let e = check_index_params(dim, m, efc).unwrap_err().to_string();
            assert!(e.contains(&format!("{name} must be")), "{e}");
        }
    }

    #[test]
    fn search_bounds() {
        assert_eq!(check_search(10, None, 1).unwrap(), 64);
        assert_eq!(check_search(100, Some(16), 1).unwrap(), 100);
        assert_eq!(check_search(10, Some(MAX_EF), 1).unwrap(), MAX_EF);
        for (k, ef, q, want) in [
            (0, None, 1, "k must"),
            (MAX_K + 1, None, 1, "k must"),
            (10, Some(0), 1, "ef must"),
            (10, Some(MAX_EF + 1), 1, "ef must"),
            (10, Some(u32::MAX as usize), 1, "ef must"),
            (1, None, MAX_QUERIES + 1, "queries"),
            (1000, None, 1001, "queries × k"),
        ] {
            let e = check_search(k, ef, q).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn metadata_and_filter_bounds() {
        let ok = json!({"lang": "en", "tags": ["a", {"b": 1}]});
        assert!(check_metadata(ok.as_object().unwrap()).is_ok());
        let mut deep = json!(1);
        for _ in 0..MAX_METADATA_DEPTH {
            deep = json!([deep]);
        }
        let md = Map::from_iter([("x".to_string(), deep)]);
        let e = check_metadata(&md).unwrap_err();
        assert!(e.contains("nested 33 levels"), "{e}");
        let big = Map::from_iter([("x".to_string(), json!("a".repeat(MAX_METADATA_BYTES)))]);
        assert!(check_metadata(&big).unwrap_err().contains("bytes of JSON"));
        let wide: Map<String, Value> = (0..=MAX_FILTER_FIELDS)
            .map(|i| (i.to_string(), json!(i)))
            .collect();
        assert!(
            check_filter(&wide)
                .unwrap_err()
                .to_string()
                .contains("65 fields")
        );
        assert!(check_filter(&big).is_err());
    }
}
