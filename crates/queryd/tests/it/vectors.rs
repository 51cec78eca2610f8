//! Vectors in SQL: the distance functions against values computed here,
//! `embed()` with a test model and without one.

use std::sync::Arc;

use lakehouse_common::{EmbedError, TextEmbedder};
use lakehouse_queryd::{EngineConfig, QueryError};

use super::{Env, query_rows};

/// Three-dimensional vectors with a NULL, a NULL element and an empty text.
const DOCS: &str = "{\"id\":1,\"v\":[1.0,0.0,0.0],\"t\":\"red apple\"}\n\
{\"id\":2,\"v\":[0.0,3.0,4.0],\"t\":\"green pear\"}\n\
{\"id\":3,\"v\":[1.0,1.0,0.0],\"t\":null}\n\
{\"id\":4,\"v\":null,\"t\":\"\"}\n\
{\"id\":5,\"v\":[2.0,-1.0,0.5],\"t\":\"Red\"}\n";

fn vectors() -> Vec<(i64, Option<[f64; 3]>)> {
    vec![
        (1, Some([1.0, 0.0, 0.0])),
        (2, Some([0.0, 3.0, 4.0])),
        (3, Some([1.0, 1.0, 0.0])),
        (4, None),
        (5, Some([2.0, -1.0, 0.5])),
    ]
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

async fn docs() -> Env {
    let env = Env::new().await;
    env.ingest("docs", lakehouse_ingestd::Format::Ndjson, DOCS)
        .await;
    env
}

#[tokio::test]
async fn distance_functions_match_their_definitions() {
    let env = docs().await;
    let engine = env.engine(EngineConfig::default());
    let q = [0.5f64, 2.0, -1.0];
    let rows = query_rows(
        &engine,
        "SELECT id, cosine_distance(v, [0.5, 2.0, -1.0]), l2_distance(v, [0.5, 2.0, -1.0]), \
         inner_product([0.5, 2.0, -1.0], v) FROM docs ORDER BY id",
    )
    .await;
    assert_eq!(rows.len(), 5);
    for (row, (id, v)) in rows.iter().zip(vectors()) {
        assert_eq!(row[0], id.to_string());
        let Some(v) = v else {
            assert_eq!(
                &row[1..],
                ["NULL", "NULL", "NULL"],
                "NULL vector gives NULL"
            );
            continue;
        };
        let cos = 1.0 - dot(&v, &q) / (dot(&v, &v) * dot(&q, &q)).sqrt();
        let l2 = v
            .iter()
            .zip(&q)
            .map(|(a, b)| (a - b) * (a - b))
            .sum::<f64>()
            .sqrt();
        for (got, want) in row[1..].iter().zip([cos, l2, dot(&v, &q)]) {
            let got: f64 = got.parse().unwrap();
            assert!((got - want).abs() < 1e-5, "id {id}: {got} vs {want}");
        }
    }
}

#[tokio::test]
async fn nearest_rows_by_brute_force() {
    let env = docs().await;
    let engine = env.engine(EngineConfig::default());
    let rows = query_rows(
        &engine,
        "SELECT id FROM docs WHERE v IS NOT NULL ORDER BY l2_distance(v, [1.0, 0.9, 0.0]) LIMIT 2",
    )
    .await;
    assert_eq!(rows, vec![vec!["3".to_string()], vec!["1".to_string()]]);
}

#[tokio::test]
async fn distance_errors_name_the_problem() {
    let env = docs().await;
    let engine = env.engine(EngineConfig::default());
    let err = engine
        .collect("SELECT cosine_distance(v, [1.0, 2.0]) FROM docs")
        .await
        .unwrap_err();
    assert!(matches!(err, QueryError::Execution(_)), "{err:?}");
    assert!(
        err.to_string().contains("different lengths (3 and 2)"),
        "{err}"
    );
    let err = engine
        .collect("SELECT l2_distance(t, v) FROM docs")
        .await
        .unwrap_err();
    assert!(matches!(err, QueryError::Plan(_)), "{err:?}");
    assert!(err.to_string().contains("not a vector"), "{err}");
}

/// A test double: a letter histogram, unit length (not a sentence model).
struct Letters;

impl TextEmbedder for Letters {
    fn model(&self) -> &str {
        "letters"
    }
    fn dim(&self) -> usize {
        4
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<f32>, EmbedError> {
        let mut out = Vec::new();
        for t in texts {
            let mut v = [1.0f32, 0.0, 0.0, 0.0];
            for c in t.to_lowercase().chars() {
                match c {
                    'a'..='f' => v[1] += 1.0,
                    'g'..='p' => v[2] += 1.0,
                    'q'..='z' => v[3] += 1.0,
                    _ => {}
                }
            }
            let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            out.extend(v.iter().map(|x| x / n));
        }
        Ok(out)
    }
}

#[tokio::test]
async fn embed_uses_the_configured_model() {
    let env = docs().await;
    let engine = Arc::try_unwrap(env.engine(EngineConfig::default()))
        .unwrap()
        .with_embedder(Arc::new(Letters))
        .unwrap();
    let want = Letters.embed(&["red apple"]).unwrap();
    let rows = query_rows(&engine, "SELECT embed('red apple')").await;
    let text = format!("{want:?}").replace(' ', "");
    assert_eq!(rows[0][0].replace(' ', ""), text);
    // A column, with NULL and the empty text; distances to a constant.
    let rows = query_rows(
        &engine,
        "SELECT id, embed(t) IS NULL, cosine_distance(embed(t), embed('RED APPLE')) FROM docs ORDER BY id",
    )
    .await;
    assert_eq!(rows[0][1], "false");
    assert!(rows[0][2].parse::<f64>().unwrap().abs() < 1e-6, "{rows:?}");
    assert_eq!(rows[2][1..], ["true".to_string(), "NULL".to_string()]);
    assert_eq!(rows[3][1], "false");
}

#[tokio::test]
async fn embed_without_a_model_names_the_setting() {
    let env = docs().await;
    let engine = env.engine(EngineConfig::default());
    for sql in [
        "SELECT embed('x')",
        "SELECT cosine_distance(v, embed('x')) FROM docs",
    ] {
        let err = engine.collect(sql).await.unwrap_err();
        assert!(
            matches!(err, QueryError::NoEmbeddingModel(_)),
            "{sql}: {err:?}"
        );
        assert!(err.to_string().contains("[embed].model_dir"), "{err}");
        assert_eq!(err.status(), http::StatusCode::NOT_IMPLEMENTED);
        // At the edge: a 501 that names the setting, not a hidden 500.
        let api = lakehouse_common::ApiError::from(err);
        assert_eq!(
            (api.status, api.code),
            (http::StatusCode::NOT_IMPLEMENTED, "no_embedding_model")
        );
        assert!(api.message.contains("[embed].model_dir"), "{}", api.message);
    }
}

// ---- vector_search / hybrid_search over an index that follows a dataset ----

use lakehouse_vectord::{IndexSpec, VectorConfig, VectorService, Vectors};

const N: usize = 240;
const DIM: usize = 8;

/// Deterministic pseudo-random vectors (a linear congruential generator).
fn vector_of(i: usize) -> Vec<f64> {
    let mut x = (i as u64 + 1).wrapping_mul(6364136223846793005);
    (0..DIM)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((x >> 33) as f64 / (1u64 << 31) as f64) * 2.0 - 1.0
        })
        .collect()
}

fn lang(i: usize) -> &'static str {
    ["en", "de", "fr"][i % 3]
}

fn corpus(from: usize, to: usize) -> String {
    (from..to)
        .map(|i| {
            let v: Vec<String> = vector_of(i).iter().map(|x| format!("{x:.6}")).collect();
            let words = ["red apple", "green pear", "blue plum", "ripe apple pie"][i % 4];
            format!(
                "{{\"doc_id\":{i},\"v\":[{}],\"lang\":\"{}\",\"title\":\"doc {i}\",\"body\":\"{words} {i}\"}}\n",
                v.join(","),
                lang(i)
            )
        })
        .collect()
}

fn literal(v: &[f64]) -> String {
    let parts: Vec<String> = v.iter().map(|x| format!("{x:.6}")).collect();
    format!("[{}]", parts.join(", "))
}

struct Indexed {
    env: Env,
    vectors: Arc<VectorService>,
    engine: lakehouse_queryd::QueryEngine,
}

async fn indexed() -> Indexed {
    let env = Env::new().await;
    env.ingest("docs", lakehouse_ingestd::Format::Ndjson, &corpus(0, N))
        .await;
    let cfg = VectorConfig {
        sync_interval: std::time::Duration::ZERO,
        ..VectorConfig::default()
    };
    let vectors = Arc::new(
        VectorService::ephemeral(cfg)
            .with_datasets(env.catalog.clone(), env.store.clone())
            .with_embedder(Some(Arc::new(Letters))),
    );
    let mut spec = IndexSpec::new("docs_idx", 0, lakehouse_hnsw::Metric::L2);
    spec.source.dataset = Some("docs".into());
    spec.source.column = Some("v".into());
    spec.source.text_column = Some("body".into());
    spec.source.id_column = Some("doc_id".into());
    spec.source.metadata_columns = vec!["lang".into()];
    vectors.create(spec).await.unwrap();
    let mut spec = IndexSpec::new("text_idx", 0, lakehouse_hnsw::Metric::Cosine);
    spec.source.dataset = Some("docs".into());
    spec.source.text_column = Some("body".into());
    spec.source.id_column = Some("doc_id".into());
    vectors.create(spec).await.unwrap();
    for name in ["docs_idx", "text_idx"] {
        vectors.sync(name).await.unwrap();
    }
    let engine = lakehouse_queryd::QueryEngine::new(
        env.catalog.clone(),
        env.store.clone(),
        EngineConfig::default(),
    )
    .unwrap()
    .with_vectors(vectors.clone())
    .with_embedder(Arc::new(Letters))
    .unwrap();
    Indexed {
        env,
        vectors,
        engine,
    }
}

/// The brute-force answer: ids of the `k` nearest rows (squared L2, the
/// index's metric) matching `filter`, nearest first.
async fn brute_force(
    engine: &lakehouse_queryd::QueryEngine,
    q: &str,
    k: usize,
    filter: &str,
) -> Vec<Vec<String>> {
    query_rows(
        engine,
        &format!(
            "SELECT doc_id, round(power(l2_distance(v, {q}), 2), 4) FROM docs WHERE {filter} \
             ORDER BY l2_distance(v, {q}), doc_id LIMIT {k}"
        ),
    )
    .await
}

#[tokio::test]
async fn vector_search_joins_and_equals_brute_force() {
    let ix = indexed().await;
    let q = literal(&vector_of(10_000));
    let want = brute_force(&ix.engine, &q, 5, "true").await;
    let got = query_rows(
        &ix.engine,
        &format!(
            "SELECT doc_id, round(distance, 4) FROM vector_search('docs_idx', {q}, 5) ORDER BY distance, doc_id"
        ),
    )
    .await;
    assert_eq!(got, want);
    // A wider candidate list (ef) finds the same exact answer here.
    let wide = query_rows(
        &ix.engine,
        &format!(
            "SELECT doc_id, round(distance, 4) FROM vector_search('docs_idx', {q}, 5, 400) ORDER BY distance, doc_id"
        ),
    )
    .await;
    assert_eq!(wide, want);
    // Joined with the dataset by its id column (same name and type).
    let joined = query_rows(
        &ix.engine,
        &format!(
            "SELECT d.doc_id, d.title, v.lang, v.dataset_version FROM vector_search('docs_idx', {q}, 5) v \
             JOIN docs d USING (doc_id) ORDER BY v.distance, d.doc_id"
        ),
    )
    .await;
    let version = Vectors::get(ix.vectors.as_ref(), "docs_idx")
        .await
        .unwrap()
        .source
        .unwrap()
        .version
        .unwrap();
    for (row, w) in joined.iter().zip(&want) {
        let id: usize = w[0].parse().unwrap();
        assert_eq!(
            row,
            &vec![
                w[0].clone(),
                format!("doc {id}"),
                lang(id).to_string(),
                version.to_string()
            ]
        );
    }
    assert_eq!(joined.len(), 5);
}

#[tokio::test]
async fn metadata_filters_go_into_the_search() {
    let ix = indexed().await;
    let q = literal(&vector_of(20_000));
    let want = brute_force(&ix.engine, &q, 4, "lang = 'fr'").await;
    for sql in [
        format!(
            "SELECT doc_id, round(distance, 4) FROM vector_search('docs_idx', {q}, 4) v WHERE v.lang = 'fr' ORDER BY distance, doc_id"
        ),
        format!(
            "SELECT doc_id, round(distance, 4) FROM vector_search('docs_idx', {q}, 4, '{{\"lang\": \"fr\"}}') ORDER BY distance, doc_id"
        ),
        format!(
            "SELECT v.doc_id, round(v.distance, 4) FROM vector_search('docs_idx', {q}, 4) v JOIN docs d USING (doc_id) WHERE v.lang = 'fr' AND d.lang = 'fr' ORDER BY v.distance, v.doc_id"
        ),
        // With an ef, before or after the filter.
        format!(
            "SELECT doc_id, round(distance, 4) FROM vector_search('docs_idx', {q}, 4, '{{\"lang\": \"fr\"}}', 300) ORDER BY distance, doc_id"
        ),
        format!(
            "SELECT doc_id, round(distance, 4) FROM vector_search('docs_idx', {q}, 4, 300) v WHERE v.lang = 'fr' ORDER BY distance, doc_id"
        ),
    ] {
        // Exactly k rows: the filter selected before the top-k, not after.
        assert_eq!(query_rows(&ix.engine, &sql).await, want, "{sql}");
    }
    // Two different values for one column: nothing can match.
    let none = query_rows(&ix.engine, &format!(
        "SELECT doc_id FROM vector_search('docs_idx', {q}, 4, '{{\"lang\": \"fr\"}}') v WHERE v.lang = 'en'"
    )).await;
    assert!(none.is_empty(), "{none:?}");
}

#[tokio::test]
async fn the_index_follows_appends_and_deletes() {
    let ix = indexed().await;
    ix.env
        .ingest(
            "docs",
            lakehouse_ingestd::Format::Ndjson,
            &corpus(N, N + 60),
        )
        .await;
    ix.vectors.sync("docs_idx").await.unwrap();
    let q = literal(&vector_of(N + 7));
    let want = brute_force(&ix.engine, &q, 3, "true").await;
    assert_eq!(want[0][0], (N + 7).to_string());
    let sql = format!(
        "SELECT doc_id, round(distance, 4) FROM vector_search('docs_idx', {q}, 3) ORDER BY distance, doc_id"
    );
    assert_eq!(query_rows(&ix.engine, &sql).await, want);
}

#[tokio::test]
async fn text_queries_and_hybrid_search() {
    let ix = indexed().await;
    // A text query: vectord embeds it with its model; embed() in SQL gives
    // the same vector, so both searches agree.
    let by_text = query_rows(
        &ix.engine,
        "SELECT doc_id, round(distance, 4) FROM vector_search('text_idx', 'ripe apple pie', 5) ORDER BY distance, doc_id",
    )
    .await;
    let by_embed = query_rows(
        &ix.engine,
        "SELECT doc_id, round(distance, 4) FROM vector_search('text_idx', embed('ripe apple pie'), 5) ORDER BY distance, doc_id",
    )
    .await;
    assert_eq!(by_text, by_embed);
    assert_eq!(by_text.len(), 5);
    // Hybrid: keyword "pie" only occurs in every fourth body; the fused
    // top hits carry a score, best first.
    let hybrid = query_rows(
        &ix.engine,
        "SELECT doc_id, score IS NOT NULL, body FROM hybrid_search('text_idx', 'pie', 5) h JOIN docs USING (doc_id) ORDER BY score DESC",
    )
    .await;
    assert_eq!(hybrid.len(), 5, "{hybrid:?}");
    assert!(hybrid.iter().all(|r| r[1] == "true"), "{hybrid:?}");
    assert!(hybrid[0][2].contains("pie"), "{hybrid:?}");
}

#[tokio::test]
async fn search_errors_name_the_problem() {
    let ix = indexed().await;
    let q = literal(&vector_of(1));
    let cases: Vec<(String, http::StatusCode, &str)> = vec![
        (
            format!("SELECT * FROM vector_search('nope', {q}, 3)"),
            http::StatusCode::NOT_FOUND,
            "nope",
        ),
        (
            "SELECT * FROM vector_search('docs_idx', [1.0, 2.0], 3)".into(),
            http::StatusCode::BAD_REQUEST,
            "2 dimensions",
        ),
        (
            format!("SELECT * FROM vector_search('docs_idx', {q}, 0)"),
            http::StatusCode::BAD_REQUEST,
            "k must be at least 1",
        ),
        (
            format!("SELECT * FROM vector_search('docs_idx', {q}, 'x')"),
            http::StatusCode::BAD_REQUEST,
            "k must be an integer",
        ),
        (
            format!("SELECT * FROM vector_search('docs_idx', {q}, 3, 'lang')"),
            http::StatusCode::BAD_REQUEST,
            "JSON object",
        ),
        (
            format!("SELECT * FROM vector_search('docs_idx', {q})"),
            http::StatusCode::BAD_REQUEST,
            "3 to 5 arguments",
        ),
        (
            format!("SELECT * FROM vector_search('docs_idx', {q}, 3, 0)"),
            http::StatusCode::BAD_REQUEST,
            "ef must be at least 1",
        ),
        (
            format!("SELECT * FROM vector_search('docs_idx', {q}, 3, 20000)"),
            http::StatusCode::BAD_REQUEST,
            "ef must be between 1 and 10000",
        ),
        (
            format!("SELECT * FROM vector_search('docs_idx', {q}, 3, 50, 60)"),
            http::StatusCode::BAD_REQUEST,
            "ef is given twice",
        ),
        (
            format!("SELECT * FROM vector_search('docs_idx', {q}, 3, '{{}}', '{{}}')"),
            http::StatusCode::BAD_REQUEST,
            "filter is given twice",
        ),
        (
            format!("SELECT * FROM vector_search('docs_idx', {q}, 3, '{{}}', 10, 1)"),
            http::StatusCode::BAD_REQUEST,
            "3 to 5 arguments",
        ),
        (
            format!("SELECT * FROM vector_search('docs_idx', {q}, 20000)"),
            http::StatusCode::BAD_REQUEST,
            "k",
        ),
        (
            format!("SELECT * FROM hybrid_search('docs_idx', {q}, 3)"),
            http::StatusCode::BAD_REQUEST,
            "must be a text",
        ),
    ];
    for (sql, status, text) in cases {
        let err = ix.engine.collect(&sql).await.unwrap_err();
        assert_eq!(err.status(), status, "{sql}: {err:?}");
        assert!(err.to_string().contains(text), "{sql}: {err}");
    }
}

/// The rows of a statement run with positional parameter values.
async fn rows_with(
    engine: &lakehouse_queryd::QueryEngine,
    sql: &str,
    params: Vec<datafusion::common::ScalarValue>,
) -> Vec<Vec<String>> {
    use futures::TryStreamExt;
    let b = engine
        .run_batches(sql, Some(datafusion::common::ParamValues::from(params)))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let batches: Vec<_> = b.stream.try_collect().await.unwrap();
    super::rows(&batches)
}

#[tokio::test]
async fn search_arguments_take_parameters() {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::common::ScalarValue;
    let ix = indexed().await;
    let v = vector_of(10_000);
    let q = literal(&v);
    let want = brute_force(&ix.engine, &q, 4, "lang = 'de'").await;
    // A client binds the embedding, k, the filter and ef ($n, as psql and
    // ADBC send them), described first without values.
    let sql = "SELECT doc_id, round(distance, 4) FROM vector_search('docs_idx', $1, $2, $3, $4) \
               ORDER BY distance, doc_id";
    let d = ix.engine.describe(sql, None).await.unwrap();
    assert_eq!(d.params, vec![None, Some(DataType::Int64), None, None]);
    assert_eq!(d.schema.field(0).name(), "doc_id");
    let list = ScalarValue::List(Arc::new(
        datafusion::common::utils::SingleRowListArrayBuilder::new(Arc::new(
            datafusion::arrow::array::Float64Array::from(v.clone()),
        ))
        .build_list_array(),
    ));
    let got = rows_with(
        &ix.engine,
        sql,
        vec![
            list.clone(),
            ScalarValue::Int64(Some(4)),
            ScalarValue::Utf8(Some("{\"lang\": \"de\"}".into())),
            ScalarValue::Int64(Some(200)),
        ],
    )
    .await;
    assert_eq!(got, want);
    // The same as a literal; a parameter inside an expression; a parameter
    // that is also used elsewhere in the statement.
    let literal_rows = rows_with(
        &ix.engine,
        &format!(
            "SELECT doc_id, round(distance, 4) FROM vector_search('docs_idx', {q}, 4, '{{\"lang\": \"de\"}}') \
             ORDER BY distance, doc_id"
        ),
        vec![],
    )
    .await;
    assert_eq!(literal_rows, want);
    let joined = rows_with(
        &ix.engine,
        "SELECT d.doc_id FROM vector_search('docs_idx', $1, $2 + 1) v JOIN docs d USING (doc_id) \
         WHERE d.lang = $3 ORDER BY v.distance, d.doc_id LIMIT 4",
        vec![
            list.clone(),
            ScalarValue::Int64(Some(239)),
            ScalarValue::Utf8(Some("de".into())),
        ],
    )
    .await;
    let de: Vec<Vec<String>> = want.iter().map(|r| vec![r[0].clone()]).collect();
    assert_eq!(joined, de);
    // hybrid_search's text is a text parameter.
    let d = ix
        .engine
        .describe("SELECT doc_id FROM hybrid_search('text_idx', $1, 5)", None)
        .await
        .unwrap();
    assert_eq!(d.params, vec![Some(DataType::Utf8)]);
    let hybrid = rows_with(
        &ix.engine,
        "SELECT doc_id FROM hybrid_search('text_idx', $1, 5)",
        vec![ScalarValue::Utf8(Some("apple pie".into()))],
    )
    .await;
    assert_eq!(hybrid.len(), 5, "{hybrid:?}");
    // Run without values: refused, naming them; a value of the wrong kind
    // is the literal's error; a missing value names the parameter.
    let err = ix.engine.run_batches(sql, None).await.unwrap_err();
    assert_eq!(err.status(), http::StatusCode::BAD_REQUEST, "{err}");
    assert!(err.to_string().contains("$1, $2, $3, $4"), "{err}");
    let err = ix
        .engine
        .run_batches(
            "SELECT * FROM vector_search('docs_idx', $1, $2)",
            Some(vec![list.clone(), ScalarValue::Int64(Some(0))].into()),
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("k must be at least 1"), "{err}");
    let err = ix
        .engine
        .run_batches(
            "SELECT * FROM vector_search('docs_idx', $1, $2)",
            Some(vec![ScalarValue::Int64(Some(1))].into()),
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), http::StatusCode::BAD_REQUEST, "{err}");
    assert!(err.to_string().contains("$2"), "{err}");
    // Hostile values are the literals' errors.
    for (params, text) in [
        (vec![ScalarValue::Null, ScalarValue::Int64(Some(3))], "NULL"),
        (
            vec![list.clone(), ScalarValue::Int64(Some(1_000_000_000_000))],
            "k",
        ),
        (
            vec![list.clone(), ScalarValue::Int64(None)],
            "k must be an integer",
        ),
        (
            vec![
                ScalarValue::Utf8(Some("x".repeat(1 << 20))),
                ScalarValue::Int64(Some(3)),
            ],
            "the limit is",
        ),
    ] {
        let err = ix
            .engine
            .run_batches(
                "SELECT * FROM vector_search('docs_idx', $1, $2)",
                Some(params.into()),
            )
            .await
            .unwrap_err();
        assert!(err.status().is_client_error(), "{err:?}");
        assert!(err.to_string().contains(text), "{text}: {err}");
    }
}
