//! Text: a text column embedded at index time, `{"text": …}` searches and
//! hybrid (vector + BM25, fused by reciprocal rank) searches, with a small
//! deterministic **test double** for the embedding model (hashed bag of
//! words); the real model is `lakehouse-embed`.

use std::collections::HashMap;
use std::sync::Arc;

use lakehouse_common::{EmbedError, TextEmbedder};
use lakehouse_hnsw::Metric;
use lakehouse_ingestd::{Format, Mode};
use lakehouse_vectord::bm25::{TextIndex, rrf};
use lakehouse_vectord::{IndexSpec, SearchRequest, SourceSpec, VectorError, VectorService};
use serde_json::json;

use super::datasets::{DIM, Env, vector};
use super::distance;

/// Test double: each word adds ±1 to one of 16 hashed dimensions; the sum
/// is normalised (an empty text is the first axis).
struct HashedWords {
    name: &'static str,
}

const TEXT_DIM: usize = 16;

impl TextEmbedder for HashedWords {
    fn model(&self) -> &str {
        self.name
    }
    fn dim(&self) -> usize {
        TEXT_DIM
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<f32>, EmbedError> {
        Ok(texts.iter().flat_map(|t| words(t)).collect())
    }
}

fn words(text: &str) -> Vec<f32> {
    let mut v = vec![0.0f32; TEXT_DIM];
    for w in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        let h = w
            .to_lowercase()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
        v[(h % TEXT_DIM as u64) as usize] += if h & (1 << 40) == 0 { 1.0 } else { -1.0 };
    }
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n == 0.0 {
        v[0] = 1.0;
        return v;
    }
    v.iter().map(|x| x / n).collect()
}

const WORDS: [&str; 12] = [
    "lake", "house", "vector", "index", "parquet", "delta", "query", "rust", "arrow", "search",
    "token", "model",
];

/// Row `i`'s text: a few words picked by `i` (every ninth has none).
fn body(i: i64) -> Option<String> {
    (i % 9 != 4).then(|| {
        (0..3 + (i % 4) as usize)
            .map(|j| WORDS[((i as usize) * 7 + j * (1 + i as usize % 5)) % WORDS.len()])
            .collect::<Vec<_>>()
            .join(" ")
    })
}

fn notes(ids: std::ops::Range<i64>) -> Vec<u8> {
    let mut s = String::new();
    for i in ids {
        let v: Vec<f64> = vector(i).iter().map(|x| f64::from(*x)).collect();
        s.push_str(&json!({"note_id": i, "body": body(i), "embedding": v}).to_string());
        s.push('\n');
    }
    s.into_bytes()
}

fn spec(name: &str, column: Option<&str>) -> IndexSpec {
    IndexSpec {
        source: SourceSpec {
            dataset: Some("notes".into()),
            column: column.map(str::to_string),
            text_column: Some("body".into()),
            id_column: Some("note_id".into()),
            metadata_columns: Vec::new(),
        },
        ..IndexSpec::new(name, 0, Metric::Cosine)
    }
}

async fn service(env: &Env, model: &'static str) -> VectorService {
    env.service()
        .await
        .with_embedder(Some(Arc::new(HashedWords { name: model })))
}

fn text_query(text: &str, k: usize) -> SearchRequest {
    SearchRequest {
        text: Some(text.into()),
        ..SearchRequest::vector(Vec::new(), k)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_column_is_embedded_and_searched_by_text() {
    let env = Env::new().await;
    env.ingest("notes", Format::Ndjson, Mode::Append, notes(0..50))
        .await;
    let svc = service(&env, "hashed-words").await;
    // Without a model a text-only index cannot be made.
    let bare = env.service().await;
    let e = bare.create(spec("t", None)).await.unwrap_err();
    assert!(
        matches!(e, VectorError::Embed(EmbedError::NotConfigured(_))),
        "{e:?}"
    );

    let (info, _) = svc.create(spec("t", None)).await.unwrap();
    assert_eq!(info.dim, TEXT_DIM);
    let info = svc.sync("t").await.unwrap();
    let src = info.source.clone().unwrap();
    assert_eq!(
        (src.model.as_deref(), src.error),
        (Some("hashed-words"), None)
    );
    let with_text: Vec<(i64, String)> = (0..50).filter_map(|i| body(i).map(|b| (i, b))).collect();
    assert_eq!(info.count, with_text.len());
    assert_eq!(src.skipped_rows, 50 - with_text.len() as u64);
    // Every item against the brute force over the model's vectors.
    for q in ["lake house", "rust arrow search", "model"] {
        let mut req = text_query(q, with_text.len());
        req.ef = Some(10_000);
        let hits = svc.search("t", req).await.unwrap();
        let mut want: Vec<(String, f32)> = with_text
            .iter()
            .map(|(i, b)| {
                (
                    i.to_string(),
                    distance(Metric::Cosine, &words(q), &words(b)),
                )
            })
            .collect();
        want.sort_by(|a, b| a.1.total_cmp(&b.1));
        assert_eq!(hits.len(), want.len());
        for (h, (_, d)) in hits.iter().zip(&want) {
            assert!((h.distance - d).abs() < 1e-4, "{q}: {hits:?} vs {want:?}");
            assert_eq!(h.version, Some(0));
        }
    }
    // A text and a vector at once needs `hybrid`.
    let mut both = text_query("lake", 3);
    both.vector = words("lake");
    let e = svc.search("t", both).await.unwrap_err();
    assert!(matches!(e, VectorError::InvalidSearch(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hybrid_fuses_the_vector_and_text_rankings() {
    let env = Env::new().await;
    env.ingest("notes", Format::Ndjson, Mode::Append, notes(0..80))
        .await;
    let svc = service(&env, "hashed-words").await;
    svc.create(spec("h", Some("embedding"))).await.unwrap();
    let info = svc.sync("h").await.unwrap();
    assert_eq!(info.dim, DIM);
    assert_eq!(
        info.count, 80,
        "vectors come from the column: every row is an item"
    );
    let q = vector(11);
    let text = "parquet delta token";
    let mut req = text_query(text, 10);
    req.vector = q.clone();
    req.hybrid = true;
    let hits = svc.search("h", req.clone()).await.unwrap();
    assert_eq!(hits.len(), 10);
    // The reference: brute-force vector ranking, a BM25 index of the same
    // texts, fused the same way (top max(k, ef = 64, 100) of each).
    let mut near: Vec<(i64, f32)> = (0..80)
        .map(|i| (i, distance(Metric::Cosine, &q, &vector(i))))
        .collect();
    near.sort_by(|a, b| a.1.total_cmp(&b.1));
    let near_ids: Vec<u64> = near.iter().take(100).map(|(i, _)| *i as u64).collect();
    let mut bm = TextIndex::new();
    for i in 0..80 {
        if let Some(b) = body(i) {
            bm.insert(i as u64, &b);
        }
    }
    let texts: Vec<u64> = bm
        .search(text, 100, None)
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    let fused: HashMap<String, f32> = rrf(&[&near_ids, &texts], 60.0, 80)
        .into_iter()
        .map(|(k, s)| (k.to_string(), s))
        .collect();
    let dist: HashMap<String, f32> = near.iter().map(|(i, d)| (i.to_string(), *d)).collect();
    let mut last = f32::INFINITY;
    for h in &hits {
        let score = h.score.expect("a fused score");
        assert!(score <= last, "{hits:?}");
        last = score;
        assert!(
            (fused[&h.id] - score).abs() < 1e-6,
            "{}: {score} vs {}",
            h.id,
            fused[&h.id]
        );
        assert!((dist[&h.id] - h.distance).abs() < 1e-4, "{h:?}");
        assert_eq!(h.version, Some(0));
    }
    // The k best fused scores are exactly the hits' (ties aside).
    let mut best: Vec<f32> = fused.values().copied().collect();
    best.sort_by(|a, b| b.total_cmp(a));
    let got: Vec<f32> = hits.iter().map(|h| h.score.unwrap()).collect();
    for (g, b) in got.iter().zip(&best) {
        assert!((g - b).abs() < 1e-6, "{got:?} vs {best:?}");
    }

    // The text index is in the snapshot: the same answers after a restart.
    svc.snapshot_now("h").await.unwrap();
    drop(svc);
    let svc = service(&env, "hashed-words").await;
    assert_eq!(svc.search("h", req.clone()).await.unwrap(), hits);

    // Refusals: hybrid without text, on an index without a text column.
    let mut no_text = req.clone();
    no_text.text = None;
    let e = svc.search("h", no_text).await.unwrap_err();
    assert!(matches!(e, VectorError::InvalidSearch(_)), "{e:?}");
    svc.create(IndexSpec::new("plain", DIM, Metric::Cosine))
        .await
        .unwrap();
    let e = svc.search("plain", req).await.unwrap_err();
    assert!(e.to_string().contains("text_column"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_model_stops_the_catch_up() {
    let env = Env::new().await;
    env.ingest("notes", Format::Ndjson, Mode::Append, notes(0..10))
        .await;
    let svc = service(&env, "hashed-words").await;
    svc.create(spec("t", None)).await.unwrap();
    svc.sync("t").await.unwrap();
    svc.snapshot_now("t").await.unwrap();
    drop(svc);
    env.ingest("notes", Format::Ndjson, Mode::Append, notes(10..20))
        .await;
    let svc = service(&env, "other-words").await;
    let info = svc.sync("t").await.unwrap();
    let err = info.source.as_ref().and_then(|s| s.error.clone()).unwrap();
    assert!(
        err.contains("\"hashed-words\"") && err.contains("\"other-words\""),
        "{err}"
    );
    assert_eq!(info.source.unwrap().version, Some(0));
    // A query text is embedded with whatever model is configured.
    let hits = svc.search("t", text_query("lake", 3)).await.unwrap();
    assert_eq!(hits.len(), 3);
}
