//! The [`Vectors`] contract, one suite run against both implementations: the
//! in-process [`VectorService`] and the [`VectorClient`] talking to it over a
//! real socket. Both must give the same answers and every refusal as the
//! same [`VectorError`] variant.

use std::sync::Arc;

use lakehouse_hnsw::Metric;
use lakehouse_vectord::{
    Batch, SearchBatch, SearchRequest, VectorClient, VectorConfig, VectorError, VectorService,
    Vectors,
};
use serde_json::json;

use super::{items, random_vectors, spec};

#[tokio::test]
async fn the_service_keeps_the_contract() {
    conformance(&VectorService::ephemeral(VectorConfig::default())).await;
}

#[tokio::test]
async fn the_client_keeps_the_contract() {
    let svc = Arc::new(VectorService::ephemeral(VectorConfig::default()));
    let app = lakehouse_vectord::http::router(svc);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    conformance(&VectorClient::new(&url)).await;
}

fn query(vector: &[f32], k: usize) -> SearchRequest {
    SearchRequest {
        vector: vector.to_vec(),
        k,
        ef: Some(64),
        filter: None,
        text: None,
        hybrid: false,
    }
}

async fn conformance(v: &dyn Vectors) {
    assert!(v.list().await.unwrap().is_empty());
    let (info, created) = v.create(spec("docs", 8, Metric::L2)).await.unwrap();
    assert!(created);
    assert_eq!((info.name.as_str(), info.dim, info.count), ("docs", 8, 0));
    // The same parameters again is not an error; others are a conflict.
    assert!(!v.create(spec("docs", 8, Metric::L2)).await.unwrap().1);
    let conflict = v.create(spec("docs", 9, Metric::L2)).await;
    assert!(
        matches!(conflict, Err(VectorError::ParamsConflict { .. })),
        "{conflict:?}"
    );
    let bad = v.create(spec("Bad Name", 8, Metric::L2)).await;
    assert!(
        matches!(bad, Err(VectorError::InvalidName { .. })),
        "{bad:?}"
    );

    let data = random_vectors(200, 8, 3);
    let added = v.add("docs", items(&data[..100], 0)).await.unwrap();
    assert_eq!((added.added, added.count), (100, 100));
    let batch = Batch::from_items(items(&data[100..], 100));
    let added = v.add_batch("docs", batch).await.unwrap();
    assert_eq!((added.added, added.count), (100, 200));
    assert_eq!(v.get("docs").await.unwrap().count, 200);
    assert_eq!(v.list().await.unwrap().len(), 1);

    searches(v, &data).await;
    refusals(v).await;

    v.delete_item("docs", "item-3").await.unwrap();
    let gone = v.get_item("docs", "item-3").await;
    assert!(
        matches!(gone, Err(VectorError::ItemNotFound { .. })),
        "{gone:?}"
    );
    let hits = v.search("docs", query(&data[3], 1)).await.unwrap();
    assert_ne!(hits[0].id, "item-3");
    assert_eq!(v.get("docs").await.unwrap().count, 199);

    v.drop_index("docs").await.unwrap();
    assert!(v.list().await.unwrap().is_empty());
    let dropped = v.get("docs").await;
    assert!(
        matches!(dropped, Err(VectorError::IndexNotFound(_))),
        "{dropped:?}"
    );
}

/// Single and batch searches agree, filters hold, items come back whole.
async fn searches(v: &dyn Vectors, data: &[Vec<f32>]) {
    let hits = v.search("docs", query(&data[150], 3)).await.unwrap();
    assert_eq!((hits.len(), hits[0].id.as_str()), (3, "item-150"));
    assert_eq!(hits[0].metadata, json!({"group": 50}).as_object().cloned());
    let batch = SearchBatch {
        vectors: data[..4].to_vec(),
        k: 3,
        ef: Some(64),
        filter: None,
    };
    let many = v.search_batch("docs", batch).await.unwrap();
    for (i, hits) in many.iter().enumerate() {
        assert_eq!(hits, &v.search("docs", query(&data[i], 3)).await.unwrap());
    }
    let mut filtered = query(&data[0], 5);
    filtered.filter = json!({"group": 7}).as_object().cloned();
    let hits = v.search("docs", filtered).await.unwrap();
    let ids: Vec<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(
        ids.iter().all(|id| ["item-7", "item-107"].contains(id)),
        "{ids:?}"
    );
    let item = v.get_item("docs", "item-42").await.unwrap();
    assert_eq!((item.id.as_str(), &item.vector), ("item-42", &data[42]));
    assert_eq!(item.metadata, json!({"group": 42}).as_object().cloned());
}

/// Every refusal is its own variant and changes nothing.
async fn refusals(v: &dyn Vectors) {
    let wrong_dim = v.add("docs", items(&random_vectors(1, 7, 1), 500)).await;
    assert!(
        matches!(wrong_dim, Err(VectorError::InvalidItem { position: 0, .. })),
        "{wrong_dim:?}"
    );
    let bad_query = v.search("docs", query(&[1.0; 7], 1)).await;
    assert!(
        matches!(bad_query, Err(VectorError::InvalidSearch(_))),
        "{bad_query:?}"
    );
    let missing = v.search("nope", query(&[1.0; 8], 1)).await;
    assert!(
        matches!(missing, Err(VectorError::IndexNotFound(_))),
        "{missing:?}"
    );
    let missing = v.add("nope", items(&random_vectors(1, 8, 1), 0)).await;
    assert!(
        matches!(missing, Err(VectorError::IndexNotFound(_))),
        "{missing:?}"
    );
    let missing = v.drop_index("nope").await;
    assert!(
        matches!(missing, Err(VectorError::IndexNotFound(_))),
        "{missing:?}"
    );
    let missing = v.get_item("docs", "no-such-item").await;
    assert!(
        matches!(missing, Err(VectorError::ItemNotFound { .. })),
        "{missing:?}"
    );
    let missing = v.delete_item("docs", "no-such-item").await;
    assert!(
        matches!(missing, Err(VectorError::ItemNotFound { .. })),
        "{missing:?}"
    );
    assert_eq!(v.get("docs").await.unwrap().count, 200);
}
