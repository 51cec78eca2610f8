//! Indexes that follow a dataset: datasets ingested with the in-process
//! `Ingestor` into an in-memory store and `Registry`, rewritten by SQL
//! (queryd) and compaction; after every change and a catch-up the index
//! must equal a brute-force scan of the rows the test knows the dataset has
//! (every `(id, distance)`, not just the top few), including across a
//! restart that loads an older snapshot.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, FixedSizeListArray, Float32Array, Float64Array, Int64Array, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use bytes::Bytes;
use futures::StreamExt;
use lakehouse_catalogd::{Catalog, CompactOptions, Registry};
use lakehouse_hnsw::Metric;
use lakehouse_ingestd::{Format, IngestConfig, IngestOptions, Ingestor, Mode};
use lakehouse_queryd::{Access, EngineConfig, Query, QueryEngine};
use lakehouse_vectord::{
    Hit, IndexInfo, IndexSpec, Item, SearchRequest, SourceSpec, VectorConfig, VectorError,
    VectorService, Vectors,
};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use serde_json::{Value, json};

use super::distance;

/// A catalog, a store, an ingestor and SQL over them.
pub(crate) struct Env {
    pub store: Arc<dyn ObjectStore>,
    pub catalog: Arc<dyn Catalog>,
    ingestor: Ingestor,
    _spool: tempfile::TempDir,
}

impl Env {
    pub async fn new() -> Env {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let catalog: Arc<dyn Catalog> = Arc::new(Registry::open(store.clone()).await.unwrap());
        let spool = tempfile::tempdir().unwrap();
        let ingestor = Ingestor::new(
            store.clone(),
            catalog.clone(),
            IngestConfig {
                spool_dir: spool.path().to_path_buf(),
                writer: Default::default(),
            },
        );
        Env {
            store,
            catalog,
            ingestor,
            _spool: spool,
        }
    }

    pub async fn ingest(&self, name: &str, format: Format, mode: Mode, data: Vec<u8>) {
        let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(data))]);
        let mut opts = IngestOptions::new(format);
        opts.mode = mode;
        self.ingestor
            .ingest(name, opts, body, None)
            .await
            .unwrap_or_else(|e| panic!("ingest {name}: {e}"));
    }

    /// A vector service over the same store (no background catch-up: the
    /// tests sync when they mean to).
    pub async fn service(&self) -> VectorService {
        let cfg = VectorConfig {
            snapshot_every: 1_000_000,
            sync_interval: Duration::ZERO,
        };
        VectorService::open(self.store.clone(), cfg)
            .await
            .unwrap()
            .with_datasets(self.catalog.clone(), self.store.clone())
    }

    /// Runs a SQL write statement to the end.
    pub async fn sql(&self, sql: &str) {
        let engine = QueryEngine::new(
            self.catalog.clone(),
            self.store.clone(),
            EngineConfig::default(),
        )
        .unwrap();
        let r = engine
            .execute(sql, lakehouse_queryd::Format::Arrow, Access::ReadWrite)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let mut bytes = r.bytes;
        while let Some(chunk) = bytes.next().await {
            chunk.unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }
}

pub(crate) const DIM: usize = 8;

/// A deterministic vector per row, never all zero.
pub(crate) fn vector(i: i64) -> Vec<f32> {
    (0..DIM)
        .map(|d| ((i as f32 + 1.0) * (d as f32 + 1.37) * 0.731).sin() + 0.05)
        .collect()
}

/// One dataset row as the test knows it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Row {
    pub id: i64,
    pub lang: String,
    pub vector: Option<Vec<f32>>,
}

impl Row {
    pub fn new(id: i64) -> Row {
        Row {
            id,
            lang: if id % 3 == 0 { "fr" } else { "en" }.to_string(),
            // Every seventh row has no vector: it is no item.
            vector: (id % 7 != 5).then(|| vector(id)),
        }
    }
}

/// Rows as NDJSON (the vector as a JSON array: `list<float64>`).
pub(crate) fn ndjson(rows: &[Row]) -> Vec<u8> {
    let mut s = String::new();
    for r in rows {
        let v = match &r.vector {
            Some(v) => json!(v.iter().map(|x| f64::from(*x)).collect::<Vec<_>>()),
            None => Value::Null,
        };
        let line = json!({"doc_id": r.id, "lang": r.lang, "embedding": v});
        s.push_str(&line.to_string());
        s.push('\n');
    }
    s.into_bytes()
}

pub(crate) fn dataset_spec(name: &str, dataset: &str, metric: Metric) -> IndexSpec {
    IndexSpec {
        dim: 0,
        source: SourceSpec {
            dataset: Some(dataset.to_string()),
            column: Some("embedding".to_string()),
            id_column: Some("doc_id".to_string()),
            metadata_columns: vec!["lang".to_string()],
            ..SourceSpec::default()
        },
        ..IndexSpec::new(name, 0, metric)
    }
}

/// Every item of the index, nearest first, as `(id, distance)`.
async fn everything(v: &dyn Vectors, name: &str, q: &[f32], n: usize) -> Vec<Hit> {
    let mut req = SearchRequest::vector(q.to_vec(), n.max(1));
    req.ef = Some(10_000);
    v.search(name, req).await.unwrap()
}

/// Brute force over the rows with a vector (those `keep` accepts).
fn brute(
    metric: Metric,
    rows: &[Row],
    q: &[f32],
    keep: impl Fn(&Row) -> bool,
) -> Vec<(String, f32)> {
    let mut d: Vec<(String, f32)> = rows
        .iter()
        .filter(|r| keep(r))
        .filter_map(|r| {
            r.vector
                .as_ref()
                .map(|v| (r.id.to_string(), distance(metric, q, v)))
        })
        .collect();
    d.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    d
}

/// The index answers exactly the brute force over `rows` (all of them, for
/// three queries), at `version`, with each hit's metadata.
pub(crate) async fn assert_equal(
    v: &dyn Vectors,
    name: &str,
    metric: Metric,
    rows: &[Row],
    version: Option<u64>,
) {
    let n = rows.iter().filter(|r| r.vector.is_some()).count();
    let info = v.get(name).await.unwrap();
    assert_eq!(info.count, n, "{name}: count; {info:?}");
    let langs: BTreeMap<String, &str> = rows
        .iter()
        .map(|r| (r.id.to_string(), r.lang.as_str()))
        .collect();
    for q in [vector(1000), vector(2001), vector(3)] {
        let hits = everything(v, name, &q, n).await;
        let want = brute(metric, rows, &q, |_| true);
        assert_eq!(hits.len(), want.len(), "{name}: hits");
        for (h, (id, d)) in hits.iter().zip(&want) {
            assert_eq!(&h.id, id, "{name}: {hits:?}");
            assert!(
                (h.distance - d).abs() < 1e-4,
                "{name}: {} vs {d}",
                h.distance
            );
            assert_eq!(h.version, version, "{name}: version of {h:?}");
            let md = h.metadata.clone().unwrap_or_default();
            assert_eq!(md.get("lang"), Some(&json!(langs[id])), "{name}: {h:?}");
        }
    }
    // A filter on a metadata column: the exact top 5 among those rows.
    let mut req = SearchRequest::vector(vector(77), 5);
    req.filter = json!({"lang": "fr"}).as_object().cloned();
    let hits = v.search(name, req).await.unwrap();
    let want = brute(metric, rows, &vector(77), |r| r.lang == "fr");
    let got: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    let want: Vec<&str> = want.iter().take(5).map(|(id, _)| id.as_str()).collect();
    assert_eq!(got, want, "{name}: filtered");
}

fn version_of(info: &IndexInfo) -> Option<u64> {
    info.source.as_ref().and_then(|s| s.version)
}

fn error_of(info: &IndexInfo) -> Option<String> {
    info.source.as_ref().and_then(|s| s.error.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_equals_the_dataset_across_every_kind_of_change() {
    let env = Env::new().await;
    let mut rows: Vec<Row> = (0..60).map(Row::new).collect();
    env.ingest("docs", Format::Ndjson, Mode::Append, ndjson(&rows))
        .await;
    let svc = env.service().await;
    let (info, created) = svc
        .create(dataset_spec("di", "docs", Metric::L2))
        .await
        .unwrap();
    assert!(created);
    assert_eq!(info.dim, DIM, "inferred from the first vector");
    assert_eq!(version_of(&info), None, "not caught up yet");
    // The same body again is fine (dim still left out).
    assert!(
        !svc.create(dataset_spec("di", "docs", Metric::L2))
            .await
            .unwrap()
            .1
    );

    let info = svc.sync("di").await.unwrap();
    let src = info.source.clone().unwrap();
    assert_eq!(
        (src.version, src.error.as_deref()),
        (Some(0), None),
        "{info:?}"
    );
    assert_eq!(
        src.skipped_rows,
        rows.iter().filter(|r| r.vector.is_none()).count() as u64
    );
    assert_equal(&svc, "di", Metric::L2, &rows, Some(0)).await;

    // Append (duplicate ids included: items are rows, not ids).
    let more: Vec<Row> = (55..90).map(Row::new).collect();
    env.ingest("docs", Format::Ndjson, Mode::Append, ndjson(&more))
        .await;
    rows.extend(more);
    let v = caught_up(&env, &svc, Some(0)).await;
    assert_equal(&svc, "di", Metric::L2, &rows, v).await;

    // DELETE and UPDATE rewrite files.
    env.sql("DELETE FROM docs WHERE doc_id % 4 = 1").await;
    rows.retain(|r| r.id % 4 != 1);
    let v = caught_up(&env, &svc, v).await;
    assert_equal(&svc, "di", Metric::L2, &rows, v).await;
    env.sql("UPDATE docs SET lang = 'fr' WHERE doc_id < 20")
        .await;
    for r in rows.iter_mut().filter(|r| r.id < 20) {
        r.lang = "fr".into();
    }
    let v = caught_up(&env, &svc, v).await;
    assert_equal(&svc, "di", Metric::L2, &rows, v).await;

    // Compaction of a few small files: other objects, the same rows.
    for ids in [90..95, 95..100] {
        let more: Vec<Row> = ids.map(Row::new).collect();
        env.ingest("docs", Format::Ndjson, Mode::Append, ndjson(&more))
            .await;
        rows.extend(more);
    }
    let v = caught_up(&env, &svc, v).await;
    assert_equal(&svc, "di", Metric::L2, &rows, v).await;
    let c = env
        .catalog
        .compact("docs", CompactOptions::default())
        .await
        .unwrap();
    assert!(c.compacted.is_some(), "{c:?}");
    let v = caught_up(&env, &svc, v).await;
    assert_eq!(svc.get("di").unwrap().source.unwrap().objects, 1);
    assert_equal(&svc, "di", Metric::L2, &rows, v).await;

    // Replace.
    rows = (200..240).map(Row::new).collect();
    env.ingest("docs", Format::Ndjson, Mode::Replace, ndjson(&rows))
        .await;
    let v = caught_up(&env, &svc, v).await;
    assert_equal(&svc, "di", Metric::L2, &rows, v).await;

    // A snapshot, then an append the index has not caught up with, then a
    // "crash" (the service is dropped without a flush): the restart loads
    // the snapshot and catches up to the append.
    svc.snapshot_now("di").await.unwrap();
    let snapshotted = svc.get("di").unwrap().count;
    let more: Vec<Row> = (240..260).map(Row::new).collect();
    env.ingest("docs", Format::Ndjson, Mode::Append, ndjson(&more))
        .await;
    rows.extend(more);
    drop(svc);
    let svc = env.service().await;
    let info = svc.get("di").unwrap();
    assert_eq!(
        (version_of(&info), info.count),
        (v, snapshotted),
        "{info:?}"
    );
    let v = caught_up(&env, &svc, v).await;
    assert_equal(&svc, "di", Metric::L2, &rows, v).await;
}

/// Syncs `di` and checks it reflects the dataset's current table version,
/// newer than `before`; returns it.
async fn caught_up(env: &Env, svc: &VectorService, before: Option<u64>) -> Option<u64> {
    let info = svc.sync("di").await.unwrap();
    assert_eq!(error_of(&info), None, "{info:?}");
    let m = env.catalog.get("docs").await.unwrap();
    assert_eq!(version_of(&info), m.table_version, "{info:?}");
    assert!(version_of(&info) > before, "{info:?} after {before:?}");
    version_of(&info)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_before_the_first_catch_up_builds_from_scratch() {
    let env = Env::new().await;
    let rows: Vec<Row> = (0..30).map(Row::new).collect();
    env.ingest("docs", Format::Ndjson, Mode::Append, ndjson(&rows))
        .await;
    let svc = env.service().await;
    svc.create(dataset_spec("di", "docs", Metric::Cosine))
        .await
        .unwrap();
    drop(svc);
    let svc = env.service().await;
    assert_eq!(svc.get("di").unwrap().count, 0);
    svc.sync("di").await.unwrap();
    assert_equal(&svc, "di", Metric::Cosine, &rows, Some(0)).await;
    // The background follower catches up by itself.
    let cfg = VectorConfig {
        snapshot_every: 1,
        sync_interval: Duration::from_millis(50),
    };
    let bg = VectorService::open(env.store.clone(), cfg)
        .await
        .unwrap()
        .with_datasets(env.catalog.clone(), env.store.clone());
    let mut rows = rows;
    let more: Vec<Row> = (30..45).map(Row::new).collect();
    env.ingest("docs", Format::Ndjson, Mode::Append, ndjson(&more))
        .await;
    rows.extend(more);
    let want = rows.iter().filter(|r| r.vector.is_some()).count();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while bg.get("di").unwrap().count != want {
        assert!(
            std::time::Instant::now() < deadline,
            "no background catch-up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_equal(&bg, "di", Metric::Cosine, &rows, Some(1)).await;
}

/// An Arrow IPC body with `id`, `lang` and a vector column of `values`
/// type, `fixed` (or `list`).
fn arrow_body(ids: &[i64], vectors: &[Option<Vec<f32>>], f64s: bool, fixed: bool) -> Vec<u8> {
    let item = if f64s {
        DataType::Float64
    } else {
        DataType::Float32
    };
    let flat: Vec<f32> = vectors
        .iter()
        .flat_map(|v| v.clone().unwrap_or_else(|| vec![0.0; DIM]))
        .collect();
    let values: ArrayRef = if f64s {
        Arc::new(Float64Array::from_iter_values(
            flat.iter().map(|x| f64::from(*x)),
        ))
    } else {
        Arc::new(Float32Array::from(flat))
    };
    let nulls =
        arrow::buffer::NullBuffer::from(vectors.iter().map(Option::is_some).collect::<Vec<_>>());
    let field = Arc::new(Field::new("item", item, true));
    let column: ArrayRef = if fixed {
        Arc::new(FixedSizeListArray::new(
            field,
            DIM as i32,
            values,
            Some(nulls),
        ))
    } else {
        let offsets = arrow::buffer::OffsetBuffer::from_lengths(vec![DIM; vectors.len()]);
        Arc::new(arrow::array::ListArray::new(
            field,
            offsets,
            values,
            Some(nulls),
        ))
    };
    let langs: Vec<&str> = ids
        .iter()
        .map(|i| if i % 3 == 0 { "fr" } else { "en" })
        .collect();
    let schema = Schema::new(vec![
        Field::new("doc_id", DataType::Int64, false),
        Field::new("lang", DataType::Utf8, false),
        Field::new("embedding", column.data_type().clone(), true),
    ]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(langs)),
            column,
        ],
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut buf, &batch.schema()).unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    drop(w);
    buf
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_size_lists_lists_float32_and_float64() {
    let env = Env::new().await;
    let rows: Vec<Row> = (0..40).map(Row::new).collect();
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let vectors: Vec<Option<Vec<f32>>> = rows.iter().map(|r| r.vector.clone()).collect();
    let svc = env.service().await;
    for (name, f64s, fixed) in [
        ("fx32", false, true),
        ("fx64", true, true),
        ("ls32", false, false),
    ] {
        let body = arrow_body(&ids, &vectors, f64s, fixed);
        env.ingest(name, Format::Arrow, Mode::Append, body).await;
        let (info, _) = svc
            .create(dataset_spec(name, name, Metric::Dot))
            .await
            .unwrap();
        assert_eq!(info.dim, DIM, "{name}");
        let info = svc.sync(name).await.unwrap();
        assert_eq!(error_of(&info), None, "{name}");
        let version = version_of(&info);
        assert!(version.is_some(), "{name}: {info:?}");
        assert_equal(&svc, name, Metric::Dot, &rows, version).await;
    }
    // A fixed size that disagrees with dim is refused, naming the column.
    let mut spec = dataset_spec("fxbad", "fx32", Metric::L2);
    spec.dim = DIM + 1;
    let e = svc.create(spec).await.unwrap_err();
    assert!(matches!(e, VectorError::InvalidSource(_)), "{e}");
    assert!(e.to_string().contains("\"embedding\""), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_specs_are_refused_naming_why() {
    let env = Env::new().await;
    env.ingest(
        "docs",
        Format::Ndjson,
        Mode::Append,
        ndjson(&(0..5).map(Row::new).collect::<Vec<_>>()),
    )
    .await;
    let svc = env.service().await;
    let with = |f: &dyn Fn(&mut IndexSpec)| {
        let mut s = dataset_spec("bad", "docs", Metric::L2);
        f(&mut s);
        s
    };
    let cases: Vec<(IndexSpec, &str)> = vec![
        (
            with(&|s| s.source.column = Some("nope".into())),
            "no column \"nope\"",
        ),
        (
            with(&|s| s.source.column = Some("lang".into())),
            "column \"lang\" is Utf8",
        ),
        (
            with(&|s| s.source.id_column = Some("embedding".into())),
            "column \"embedding\" is List",
        ),
        (with(&|s| s.source.id_column = None), "needs id_column"),
        (
            with(&|s| s.source.metadata_columns = vec!["x".into()]),
            "no column \"x\"",
        ),
        (
            with(&|s| s.source.metadata_columns = vec!["lang".into(), "lang".into()]),
            "twice",
        ),
        (
            with(&|s| s.source.text_column = Some("doc_id".into())),
            "column \"doc_id\" is Int64",
        ),
        (
            with(&|s| s.source.dataset = Some(String::new())),
            "dataset must be",
        ),
        (with(&|s| s.source.column = None), "needs column"),
    ];
    for (spec, want) in cases {
        let e = svc.create(spec).await.unwrap_err();
        assert!(matches!(e, VectorError::InvalidSource(_)), "{want}: {e:?}");
        assert!(e.to_string().contains(want), "{want}: {e}");
    }
    let e = svc
        .create(dataset_spec("bad", "nope", Metric::L2))
        .await
        .unwrap_err();
    assert!(matches!(e, VectorError::DatasetNotFound(_)), "{e:?}");
    // A plain index naming columns, and a service with no catalog.
    let mut plain = IndexSpec::new("plain", 4, Metric::L2);
    plain.source.column = Some("embedding".into());
    let e = svc.create(plain).await.unwrap_err();
    assert!(matches!(e, VectorError::InvalidSource(_)), "{e:?}");
    let lone = VectorService::ephemeral(VectorConfig::default());
    let e = lone
        .create(dataset_spec("x", "docs", Metric::L2))
        .await
        .unwrap_err();
    assert!(matches!(e, VectorError::NoCatalog), "{e:?}");
    // Another spec under an existing name is a conflict.
    svc.create(dataset_spec("ok", "docs", Metric::L2))
        .await
        .unwrap();
    let e = svc
        .create(dataset_spec("ok", "docs", Metric::Cosine))
        .await
        .unwrap_err();
    assert!(matches!(e, VectorError::ParamsConflict { .. }), "{e:?}");
    assert!(svc.list().iter().all(|i| i.name == "ok"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_writes_are_refused_and_bad_rows_fail_the_catch_up_whole() {
    let env = Env::new().await;
    let rows: Vec<Row> = (0..20).map(Row::new).collect();
    env.ingest("docs", Format::Ndjson, Mode::Append, ndjson(&rows))
        .await;
    let svc = env.service().await;
    svc.create(dataset_spec("di", "docs", Metric::L2))
        .await
        .unwrap();
    svc.sync("di").await.unwrap();
    let item = Item {
        id: "x".into(),
        vector: vec![1.0; DIM],
        metadata: None,
    };
    let e = svc.add("di", vec![item]).await.unwrap_err();
    assert!(matches!(e, VectorError::FollowsDataset(_)), "{e:?}");
    let e = svc.delete_item("di", "3").await.unwrap_err();
    assert!(matches!(e, VectorError::FollowsDataset(_)), "{e:?}");
    // Items can be read by id.
    let it = svc.get_item("di", "3").unwrap();
    assert_eq!(it.metadata, json!({"lang": "fr"}).as_object().cloned());

    // An append with one vector too short: the catch-up fails whole,
    // says why, and the index still answers version 0.
    let mut bad: Vec<Row> = (20..30).map(Row::new).collect();
    bad[4].vector = Some(vec![0.5; DIM - 1]);
    env.ingest("docs", Format::Ndjson, Mode::Append, ndjson(&bad))
        .await;
    let info = svc.sync("di").await.unwrap();
    let err = error_of(&info).expect("an error");
    assert!(
        err.contains("row 4") && err.contains("dimension 7"),
        "{err}"
    );
    assert_eq!(version_of(&info), Some(0));
    assert_equal(&svc, "di", Metric::L2, &rows, Some(0)).await;
    // Fixed by deleting the row: the next catch-up succeeds.
    env.sql("DELETE FROM docs WHERE doc_id = 24").await;
    let info = svc.sync("di").await.unwrap();
    assert_eq!(error_of(&info), None, "{info:?}");
    let mut all = rows.clone();
    all.extend(bad.into_iter().filter(|r| r.id != 24));
    assert_equal(&svc, "di", Metric::L2, &all, Some(2)).await;

    // The dataset dropped: the index empties and says why.
    env.catalog.drop_dataset("docs").await.unwrap();
    let info = svc.sync("di").await.unwrap();
    assert_eq!((info.count, version_of(&info)), (0, None));
    assert!(error_of(&info).unwrap().contains("\"docs\""), "{info:?}");
    // A plain index ignores sync.
    svc.create(IndexSpec::new("plain", 2, Metric::L2))
        .await
        .unwrap();
    assert!(svc.sync("plain").await.unwrap().source.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_edge_and_the_client() {
    let env = Env::new().await;
    let rows: Vec<Row> = (0..25).map(Row::new).collect();
    env.ingest("docs", Format::Ndjson, Mode::Append, ndjson(&rows))
        .await;
    let svc = Arc::new(env.service().await);
    let app = lakehouse_vectord::http::router(svc.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    let body = json!({"name": "di", "metric": "l2", "dataset": "docs", "column": "embedding",
                      "id_column": "doc_id", "metadata_columns": ["lang"]});
    let r = http
        .post(format!("{url}/vectors/indexes"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let info: Value = r.json().await.unwrap();
    assert_eq!(info["source"]["dataset"], "docs", "{info}");
    let r = http
        .post(format!("{url}/vectors/indexes/di/sync"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let info: Value = r.json().await.unwrap();
    assert_eq!(info["source"]["version"], 0, "{info}");
    let r = http
        .post(format!("{url}/vectors/indexes/di/search"))
        .json(&json!({"vector": vector(3), "k": 1}))
        .send()
        .await
        .unwrap();
    let hits: Value = r.json().await.unwrap();
    assert_eq!(hits[0]["id"], "3", "{hits}");
    assert_eq!(hits[0]["version"], 0, "{hits}");
    let r = http
        .post(format!("{url}/vectors/indexes/di/add"))
        .json(&json!({"items": [{"id": "x", "vector": vector(1)}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "index_follows_dataset", "{e}");
    for (body, status, code) in [
        (
            json!({"name": "b", "metric": "l2", "dataset": "nope", "column": "embedding", "id_column": "doc_id"}),
            404,
            "dataset_not_found",
        ),
        (
            json!({"name": "b", "metric": "l2", "dataset": "docs", "column": "nope", "id_column": "doc_id"}),
            400,
            "invalid_source",
        ),
        (
            json!({"name": "b", "metric": "l2", "dataset": "docs", "text_column": "lang", "id_column": "doc_id"}),
            501,
            "no_embedding_model",
        ),
    ] {
        let r = http
            .post(format!("{url}/vectors/indexes"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{body}");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], code, "{e}");
    }
    let r = http
        .post(format!("{url}/vectors/indexes/di/search"))
        .json(&json!({"text": "hello", "k": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 501);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"]["code"], "no_embedding_model", "{e}");
    assert_eq!(
        e["error"]["message"],
        lakehouse_common::embed::not_configured().to_string()
    );
    // The client: the same answers and typed errors.
    let client = lakehouse_vectord::VectorClient::new(&url);
    assert_equal(&client, "di", Metric::L2, &rows, Some(0)).await;
    let info = client.sync("di").await.unwrap();
    assert_eq!(version_of(&info), Some(0));
    let e = client.add("di", vec![]).await.unwrap_err();
    assert!(matches!(e, VectorError::FollowsDataset(_)), "{e:?}");
    let e = client
        .search(
            "di",
            SearchRequest {
                text: Some("x".into()),
                ..SearchRequest::vector(Vec::new(), 1)
            },
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            VectorError::Embed(lakehouse_common::EmbedError::NotConfigured(_))
        ),
        "{e:?}"
    );
}
