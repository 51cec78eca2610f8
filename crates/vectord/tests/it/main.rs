//! vectord integration tests: the service over an in-memory store (recall,
//! filters, validation, WAL + snapshot recovery, LHV1 robustness) and the
//! HTTP router; the conformance suite run against the service and the client.

use std::sync::Arc;

use lakehouse_hnsw::Metric;
use lakehouse_vectord::{IndexSpec, Item, SearchRequest, VectorConfig, VectorError, VectorService};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

mod conformance;
mod datasets;
mod fast_path;
mod fuzz;
mod text;

fn spec(name: &str, dim: usize, metric: Metric) -> IndexSpec {
    IndexSpec {
        name: name.to_string(),
        dim,
        metric,
        m: 16,
        ef_construction: 100,
        source: Default::default(),
    }
}

fn random_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect())
        .collect()
}

fn items(vs: &[Vec<f32>], offset: usize) -> Vec<Item> {
    vs.iter()
        .enumerate()
        .map(|(i, v)| {
            let mut md = Map::new();
            md.insert("group".into(), json!((i + offset) % 100));
            Item {
                id: format!("item-{}", i + offset),
                vector: v.clone(),
                metadata: Some(md),
            }
        })
        .collect()
}

fn distance(metric: Metric, a: &[f32], b: &[f32]) -> f32 {
    match metric {
        Metric::L2 => a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum(),
        Metric::Dot => 1.0 - a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>(),
        Metric::Cosine => {
            let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
            let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
            let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
            1.0 - dot / (na * nb)
        }
    }
}

fn brute_force(
    metric: Metric,
    data: &[Vec<f32>],
    q: &[f32],
    k: usize,
    keep: impl Fn(usize) -> bool,
) -> Vec<String> {
    let mut d: Vec<(f32, usize)> = data
        .iter()
        .enumerate()
        .filter(|(i, _)| keep(*i))
        .map(|(i, v)| (distance(metric, q, v), i))
        .collect();
    d.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap());
    d.into_iter()
        .take(k)
        .map(|(_, i)| format!("item-{i}"))
        .collect()
}

async fn persistent() -> (Arc<dyn ObjectStore>, VectorService) {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let svc = VectorService::open(
        store.clone(),
        VectorConfig {
            snapshot_every: 1000,
            ..VectorConfig::default()
        },
    )
    .await
    .unwrap();
    (store, svc)
}

#[tokio::test]
async fn recall_against_brute_force_for_each_metric() {
    for metric in [Metric::L2, Metric::Cosine, Metric::Dot] {
        let svc = VectorService::ephemeral(VectorConfig::default());
        svc.create(spec("r", 24, metric)).await.unwrap();
        let data = random_vectors(3000, 24, 7);
        svc.add("r", items(&data, 0)).await.unwrap();
        let queries = random_vectors(50, 24, 99);
        let mut hits = 0;
        for q in &queries {
            let got = svc
                .search(
                    "r",
                    SearchRequest {
                        vector: q.clone(),
                        k: 10,
                        ef: Some(128),
                        filter: None,
                        text: None,
                        hybrid: false,
                    },
                )
                .await
                .unwrap();
            let want = brute_force(metric, &data, q, 10, |_| true);
            hits += got.iter().filter(|h| want.contains(&h.id)).count();
        }
        let recall = hits as f64 / (queries.len() * 10) as f64;
        assert!(recall >= 0.95, "{metric:?} recall {recall}");
    }
}

#[tokio::test]
async fn filtered_search_is_exact_top_k_at_one_percent() {
    let svc = VectorService::ephemeral(VectorConfig::default());
    svc.create(spec("f", 16, Metric::L2)).await.unwrap();
    let data = random_vectors(5000, 16, 3);
    svc.add("f", items(&data, 0)).await.unwrap();
    for (qi, q) in random_vectors(20, 16, 4).iter().enumerate() {
        let group = (qi * 7) % 100; // 1% of the items
        let mut filter = Map::new();
        filter.insert("group".into(), json!(group));
        let got = svc
            .search(
                "f",
                SearchRequest {
                    vector: q.clone(),
                    k: 10,
                    ef: None,
                    filter: Some(filter),
                    text: None,
                    hybrid: false,
                },
            )
            .await
            .unwrap();
        let want = brute_force(Metric::L2, &data, q, 10, |i| i % 100 == group);
        let got_ids: Vec<String> = got.iter().map(|h| h.id.clone()).collect();
        assert_eq!(got_ids, want);
        assert!(
            got.iter()
                .all(|h| h.metadata.as_ref().unwrap()["group"] == json!(group))
        );
    }
}

#[tokio::test]
async fn a_bad_item_rejects_the_whole_batch() {
    let (_store, svc) = persistent().await;
    svc.create(spec("v", 3, Metric::Cosine)).await.unwrap();
    svc.add(
        "v",
        vec![Item {
            id: "ok".into(),
            vector: vec![1.0, 0.0, 0.0],
            metadata: None,
        }],
    )
    .await
    .unwrap();
    let good = |id: &str| Item {
        id: id.into(),
        vector: vec![0.0, 1.0, 0.0],
        metadata: None,
    };
    let cases: Vec<(Item, &str)> = vec![
        (
            Item {
                id: "".into(),
                vector: vec![1.0, 2.0, 3.0],
                metadata: None,
            },
            "id is empty",
        ),
        (
            Item {
                id: "dim".into(),
                vector: vec![1.0, 2.0],
                metadata: None,
            },
            "dimension 2",
        ),
        (
            Item {
                id: "nan".into(),
                vector: vec![1.0, f32::NAN, 0.0],
                metadata: None,
            },
            "NaN",
        ),
        (
            Item {
                id: "inf".into(),
                vector: vec![f32::INFINITY, 0.0, 0.0],
                metadata: None,
            },
            "inf",
        ),
        (
            Item {
                id: "zero".into(),
                vector: vec![0.0, 0.0, 0.0],
                metadata: None,
            },
            "zero norm",
        ),
    ];
    for (bad, want) in cases {
        let id = bad.id.clone();
        let batch = vec![good("a"), good("b"), bad, good("c")];
        let e = svc.add("v", batch).await.unwrap_err();
        assert!(
            matches!(e, VectorError::InvalidItem { position: 2, .. }),
            "{e}"
        );
        assert!(
            e.to_string().contains(want) && e.to_string().contains(&format!("{id:?}")),
            "{e}"
        );
        assert_eq!(svc.get("v").unwrap().count, 1, "count unchanged");
    }
    // Zero vectors are fine for l2.
    svc.create(spec("l", 3, Metric::L2)).await.unwrap();
    svc.add(
        "l",
        vec![Item {
            id: "z".into(),
            vector: vec![0.0; 3],
            metadata: None,
        }],
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn create_is_idempotent_and_conflicts_on_other_params() {
    let svc = VectorService::ephemeral(VectorConfig::default());
    let (_, created) = svc.create(spec("c", 8, Metric::L2)).await.unwrap();
    assert!(created);
    let (_, created) = svc.create(spec("c", 8, Metric::L2)).await.unwrap();
    assert!(!created);
    let e = svc.create(spec("c", 9, Metric::L2)).await.unwrap_err();
    assert!(matches!(e, VectorError::ParamsConflict { .. }));
    for bad in ["", "Up", "a/b", ".x"] {
        assert!(matches!(
            svc.create(spec(bad, 8, Metric::L2)).await,
            Err(VectorError::InvalidName { .. })
        ));
    }
    assert!(matches!(
        svc.create(spec("d0", 0, Metric::L2)).await,
        Err(VectorError::InvalidParams(_))
    ));
    let mut s = spec("m1", 8, Metric::L2);
    s.m = 1;
    assert!(matches!(
        svc.create(s).await,
        Err(VectorError::InvalidParams(_))
    ));
}

#[tokio::test]
async fn upsert_and_delete_items() {
    let svc = VectorService::ephemeral(VectorConfig::default());
    svc.create(spec("u", 2, Metric::L2)).await.unwrap();
    let it = |id: &str, v: [f32; 2], tag: &str| Item {
        id: id.into(),
        vector: v.to_vec(),
        metadata: Some(Map::from_iter([("tag".to_string(), Value::from(tag))])),
    };
    svc.add(
        "u",
        vec![it("a", [0.0, 0.0], "v1"), it("b", [5.0, 5.0], "v1")],
    )
    .await
    .unwrap();
    // Upsert moves "a" far away; duplicates within a batch: the last wins.
    svc.add(
        "u",
        vec![it("a", [9.0, 9.0], "v2"), it("a", [10.0, 10.0], "v3")],
    )
    .await
    .unwrap();
    assert_eq!(svc.get("u").unwrap().count, 2);
    let hits = svc
        .search(
            "u",
            SearchRequest {
                vector: vec![10.0, 10.0],
                k: 1,
                ef: None,
                filter: None,
                text: None,
                hybrid: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(hits[0].id, "a");
    assert_eq!(hits[0].distance, 0.0);
    assert_eq!(hits[0].metadata.as_ref().unwrap()["tag"], "v3");
    svc.delete_item("u", "a").await.unwrap();
    assert!(matches!(
        svc.delete_item("u", "a").await,
        Err(VectorError::ItemNotFound { .. })
    ));
    let hits = svc
        .search(
            "u",
            SearchRequest {
                vector: vec![10.0, 10.0],
                k: 5,
                ef: None,
                filter: None,
                text: None,
                hybrid: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        hits.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(),
        vec!["b"]
    );
}

/// Every acknowledged write is recovered: from the log alone, from a
/// snapshot plus the log, and each stored vector finds itself at distance 0.
#[tokio::test]
async fn restart_recovers_every_acknowledged_write() {
    let (store, svc) = persistent().await;
    svc.create(spec("p", 12, Metric::Cosine)).await.unwrap();
    let data = random_vectors(2500, 12, 11);
    for chunk in 0..5 {
        svc.add(
            "p",
            items(&data[chunk * 500..(chunk + 1) * 500], chunk * 500),
        )
        .await
        .unwrap();
    }
    svc.delete_item("p", "item-3").await.unwrap();
    // snapshot_every = 1000: background snapshots ran; let them settle.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    drop(svc);
    let svc = VectorService::open(
        store.clone(),
        VectorConfig {
            snapshot_every: 1000,
            ..VectorConfig::default()
        },
    )
    .await
    .unwrap();
    let info = svc.get("p").unwrap();
    assert_eq!(info.count, 2499);
    for (i, v) in data.iter().enumerate().step_by(97) {
        if i == 3 {
            continue;
        }
        let hits = svc
            .search(
                "p",
                SearchRequest {
                    vector: v.clone(),
                    k: 1,
                    ef: Some(64),
                    filter: None,
                    text: None,
                    hybrid: false,
                },
            )
            .await
            .unwrap();
        assert_eq!(hits[0].id, format!("item-{i}"));
        assert!(hits[0].distance.abs() < 1e-5, "{}", hits[0].distance);
    }
    // A snapshot now covers everything and the log is emptied.
    svc.snapshot_now("p").await.unwrap();
    let wal: Vec<_> =
        futures::StreamExt::collect::<Vec<_>>(store.list(Some(&Path::from("_vectors/p.wal"))))
            .await;
    assert!(wal.is_empty(), "{wal:?}");
    let svc = VectorService::open(store.clone(), VectorConfig::default())
        .await
        .unwrap();
    assert_eq!(svc.get("p").unwrap().count, 2499);
    // Drop removes the snapshot and the log.
    svc.drop_index("p").await.unwrap();
    let left: Vec<_> =
        futures::StreamExt::collect::<Vec<_>>(store.list(Some(&Path::from("_vectors")))).await;
    assert!(left.is_empty(), "{left:?}");
    let svc = VectorService::open(store, VectorConfig::default())
        .await
        .unwrap();
    assert!(svc.list().is_empty());
}

#[tokio::test]
async fn corrupt_snapshots_fail_the_load_naming_the_key() {
    let (store, svc) = persistent().await;
    svc.create(spec("good", 4, Metric::L2)).await.unwrap();
    svc.add("good", items(&random_vectors(50, 4, 1), 0))
        .await
        .unwrap();
    svc.snapshot_now("good").await.unwrap();
    let blob = store
        .get(&Path::from("_vectors/good.lhv1"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    // Truncations and flips of a real snapshot: always an error, never a panic.
    for cut in (0..blob.len()).step_by(blob.len() / 40 + 1) {
        store
            .put(
                &Path::from("_vectors/bad.lhv1"),
                PutPayload::from(blob.slice(..cut)),
            )
            .await
            .unwrap();
        let e = VectorService::open(store.clone(), VectorConfig::default())
            .await
            .err()
            .expect("corrupt");
        assert!(e.to_string().contains("_vectors/bad.lhv1"), "{e}");
    }
    for i in (8..blob.len()).step_by(blob.len() / 60 + 1) {
        let mut b = blob.to_vec();
        b[i] ^= 0x5a;
        store
            .put(&Path::from("_vectors/bad.lhv1"), PutPayload::from(b))
            .await
            .unwrap();
        if let Err(e) = VectorService::open(store.clone(), VectorConfig::default()).await {
            assert!(e.to_string().contains("_vectors/bad.lhv1"), "{e}");
        }
    }
}

mod router {
    use super::*;
    use ::http::{Request, StatusCode};
    use axum::body::Body;
    use tower::ServiceExt;

    async fn call(app: &axum::Router, method: &str, uri: &str, body: Value) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(if body.is_null() {
                Body::empty()
            } else {
                Body::from(body.to_string())
            })
            .unwrap();
        let r = app.clone().oneshot(req).await.unwrap();
        let s = r.status();
        let b = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn statuses() {
        let app = lakehouse_vectord::http::router(Arc::new(VectorService::ephemeral(
            VectorConfig::default(),
        )));
        let create = json!({"name": "docs", "dim": 2, "metric": "cosine"});
        assert_eq!(
            call(&app, "POST", "/vectors/indexes", create.clone())
                .await
                .0,
            StatusCode::CREATED
        );
        assert_eq!(
            call(&app, "POST", "/vectors/indexes", create).await.0,
            StatusCode::OK
        );
        let (s, v) = call(
            &app,
            "POST",
            "/vectors/indexes",
            json!({"name": "docs", "dim": 3, "metric": "cosine"}),
        )
        .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::CONFLICT, Some("params_conflict"))
        );
        let (s, v) = call(
            &app,
            "POST",
            "/vectors/indexes",
            json!({"name": "x", "dim": 2, "metric": "manhattan"}),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        let add = json!({"items": [{"id": "a", "vector": [1.0, 0.0], "metadata": {"lang": "en"}}, {"id": "b", "vector": [0.0, 1.0]}]});
        let (s, v) = call(&app, "POST", "/vectors/indexes/docs/add", add).await;
        assert_eq!((s, v["count"].as_u64()), (StatusCode::OK, Some(2)));
        let (s, v) = call(
            &app,
            "POST",
            "/vectors/indexes/docs/add",
            json!({"items": [{"id": "c", "vector": [0.0, 0.0]}]}),
        )
        .await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_item"))
        );
        let (s, v) = call(
            &app,
            "POST",
            "/vectors/indexes/docs/search",
            json!({"vector": [1.0, 0.1], "k": 1}),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(v[0]["id"], "a");
        assert_eq!(v[0]["metadata"]["lang"], "en");
        let (s, v) = call(
            &app,
            "POST",
            "/vectors/indexes/docs/search",
            json!({"vector": [1.0, 0.1], "k": 5, "filter": {"lang": "fr"}}),
        )
        .await;
        assert_eq!(
            (s, v.as_array().map(|a| a.len())),
            (StatusCode::OK, Some(0))
        );
        let (s, _) = call(
            &app,
            "POST",
            "/vectors/indexes/docs/search",
            json!({"vector": [1.0], "k": 1}),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _) = call(
            &app,
            "POST",
            "/vectors/indexes/docs/search",
            json!({"vector": [1.0, 0.0], "k": 0}),
        )
        .await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let (s, _) = call(
            &app,
            "POST",
            "/vectors/indexes/nope/search",
            json!({"vector": [1.0, 0.0]}),
        )
        .await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, v) = call(&app, "GET", "/vectors/indexes/docs", Value::Null).await;
        assert_eq!(
            (s, v["count"].as_u64(), v["dim"].as_u64()),
            (StatusCode::OK, Some(2), Some(2))
        );
        assert!(v["memory_bytes"].as_u64().unwrap() > 0);
        // One item, with its (unit, cosine) vector and metadata.
        let (s, v) = call(&app, "GET", "/vectors/indexes/docs/items/a", Value::Null).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["id"], "a");
        assert_eq!(v["vector"], json!([1.0, 0.0]));
        assert_eq!(v["metadata"]["lang"], "en");
        let (s, v) = call(&app, "GET", "/vectors/indexes/docs/items/b", Value::Null).await;
        assert_eq!((s, v.get("metadata")), (StatusCode::OK, None), "{v}");
        let (s, v) = call(&app, "GET", "/vectors/indexes/docs/items/zz", Value::Null).await;
        assert_eq!(
            (s, v["error"]["code"].as_str(), v["error"]["id"].as_str()),
            (StatusCode::NOT_FOUND, Some("item_not_found"), Some("zz"))
        );
        let (s, v) = call(&app, "GET", "/vectors/indexes/nope/items/a", Value::Null).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::NOT_FOUND, Some("not_found"))
        );
        assert_eq!(
            call(&app, "DELETE", "/vectors/indexes/docs/items/a", Value::Null)
                .await
                .0,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            call(&app, "DELETE", "/vectors/indexes/docs/items/a", Value::Null)
                .await
                .0,
            StatusCode::NOT_FOUND
        );
        let (_, v) = call(&app, "GET", "/vectors/indexes", Value::Null).await;
        assert_eq!(v["count"], 1);
        assert_eq!(
            call(&app, "DELETE", "/vectors/indexes/docs", Value::Null)
                .await
                .0,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            call(&app, "GET", "/vectors/indexes/docs", Value::Null)
                .await
                .0,
            StatusCode::NOT_FOUND
        );
        let (s, _) = call(&app, "POST", "/vectors/indexes", json!("not an object")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
    }
}
