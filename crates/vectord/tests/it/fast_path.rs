//! The fast path (Arrow IPC and streamed JSON bodies, batch searches, the
//! binary log), the bounds on every parameter, and start-up over old and
//! damaged logs.

use std::sync::Arc;

use ::http::{Request, StatusCode};
use axum::body::Body;
use lakehouse_hnsw::Metric;
use lakehouse_vectord::wal::{self, WalOp};
use lakehouse_vectord::{
    Batch, SearchBatch, SearchRequest, VectorClient, VectorConfig, VectorError, VectorService,
    Vectors, ipc,
};
use object_store::ObjectStore;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{items, persistent, random_vectors, spec};

async fn call(app: &axum::Router, uri: &str, ct: &str, body: Vec<u8>) -> (StatusCode, Value) {
    let req = Request::builder()
        .method("POST")
        .uri(uri)
        .header("content-type", ct)
        .body(Body::from(body))
        .unwrap();
    let r = app.clone().oneshot(req).await.unwrap();
    let s = r.status();
    let b = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap();
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

fn json(v: Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

const JSON: &str = "application/json";

fn batch(vs: &[Vec<f32>], offset: usize) -> Batch {
    Batch::from_items(items(vs, offset))
}

async fn app_with_index(dim: usize, metric: Metric) -> (Arc<VectorService>, axum::Router) {
    let svc = Arc::new(VectorService::ephemeral(VectorConfig::default()));
    svc.create(spec("docs", dim, metric)).await.unwrap();
    let app = lakehouse_vectord::http::router(svc.clone());
    (svc, app)
}

#[tokio::test]
async fn arrow_adds_are_validated_whole_like_json() {
    let (svc, app) = app_with_index(3, Metric::Cosine).await;
    let uri = "/vectors/indexes/docs/add";
    let data = random_vectors(50, 3, 1);
    let body = ipc::encode_add(&batch(&data, 0)).unwrap();
    let (s, v) = call(&app, uri, ipc::CONTENT_TYPE, body).await;
    assert_eq!(
        (s, v["added"].as_u64(), v["count"].as_u64()),
        (StatusCode::OK, Some(50), Some(50))
    );
    let got = svc
        .search(
            "docs",
            SearchRequest {
                vector: data[7].clone(),
                k: 1,
                ef: None,
                filter: None,
                text: None,
                hybrid: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(got[0].id, "item-7");
    assert_eq!(got[0].metadata.as_ref().unwrap()["group"], 7);

    // One bad item anywhere: 400 naming it, nothing added.
    for (bad, want) in [
        (vec![f32::NAN, 0.0, 1.0], "NaN"),
        (vec![f32::INFINITY, 0.0, 1.0], "inf"),
        (vec![0.0, 0.0, 0.0], "zero norm"),
        (vec![1.0, 2.0], "dimension 2"),
    ] {
        let mut b = batch(&random_vectors(5, 3, 2), 100);
        b.push("bad".into(), &bad, None);
        b.push("after".into(), &[1.0, 1.0, 1.0], None);
        let (s, v) = call(&app, uri, ipc::CONTENT_TYPE, ipc::encode_add(&b).unwrap()).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_item")),
            "{v}"
        );
        assert_eq!(
            (v["error"]["position"].as_u64(), v["error"]["id"].as_str()),
            (Some(5), Some("bad"))
        );
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(want), "{msg}");
        assert_eq!(svc.get("docs").unwrap().count, 50, "nothing added");
    }
    // Bodies that are not what they claim.
    let (s, v) = call(&app, uri, ipc::CONTENT_TYPE, b"not arrow".to_vec()).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_body")),
        "{v}"
    );
    let (s, v) = call(&app, uri, "text/plain", b"x".to_vec()).await;
    assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(ipc::CONTENT_TYPE)
    );
    let (s, _) = call(
        &app,
        "/vectors/indexes/nope/add",
        ipc::CONTENT_TYPE,
        ipc::encode_add(&batch(&data, 0)).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(svc.get("docs").unwrap().count, 50);
}

#[tokio::test]
async fn streamed_json_adds_keep_their_answers() {
    let (svc, app) = app_with_index(2, Metric::L2).await;
    let uri = "/vectors/indexes/docs/add";
    let cases = [
        (
            json!({"items": [{"id": "a", "vector": [1, 2], "extra": 1}]}),
            "invalid_body",
            "unknown field `extra`",
        ),
        (
            json!({"items": [{"id": "a"}]}),
            "invalid_body",
            "missing field `vector`",
        ),
        (
            json!({"items": {"id": "a"}}),
            "invalid_body",
            "invalid type",
        ),
        (
            json!({"items": [{"id": "a", "vector": [1, 2], "metadata": [1]}]}),
            "invalid_body",
            "invalid type",
        ),
    ];
    for (body, code, want) in cases {
        let (s, v) = call(&app, uri, JSON, json(body)).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some(code)),
            "{v}"
        );
        assert!(
            v["error"]["message"].as_str().unwrap().contains(want),
            "{v}"
        );
    }
    let (s, v) = call(&app, uri, JSON, b"{\"items\": [".to_vec()).await;
    assert_eq!(
        (s, v["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_json")),
        "{v}"
    );
    // Too many items: 413, counted without keeping them.
    let n = lakehouse_vectord::limits::MAX_BATCH + 1;
    let mut body = String::from("{\"items\":[");
    for i in 0..n {
        body.push_str(if i == 0 { "" } else { "," });
        body.push_str("{\"id\":\"x\",\"vector\":[1,2]}");
    }
    body.push_str("]}");
    let (s, v) = call(&app, uri, JSON, body.into_bytes()).await;
    assert_eq!(
        (s, v["error"]["got"].as_u64()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some(n as u64)),
        "{v}"
    );
    assert_eq!(svc.get("docs").unwrap().count, 0);
    // And a good one, with metadata and ids in any key order.
    let body = json!({"items": [{"vector": [1, 2], "metadata": {"k": "v"}, "id": "a"}, {"id": "b", "vector": [3.5, -1e3]}]});
    let (s, v) = call(&app, uri, JSON, json(body)).await;
    assert_eq!((s, v["count"].as_u64()), (StatusCode::OK, Some(2)), "{v}");
}

#[tokio::test]
async fn batch_searches_answer_like_single_ones() {
    let (svc, app) = app_with_index(8, Metric::L2).await;
    let data = random_vectors(500, 8, 3);
    svc.add_batch("docs", batch(&data, 0)).await.unwrap();
    let queries = random_vectors(20, 8, 4);
    let filter = json!({"group": 3}).as_object().cloned();
    let mut want = Vec::new();
    for q in &queries {
        let r = SearchRequest {
            vector: q.clone(),
            k: 4,
            ef: Some(32),
            filter: filter.clone(),
            text: None,
            hybrid: false,
        };
        // Through JSON text, as the answers are.
        let text = serde_json::to_vec(&svc.search("docs", r).await.unwrap()).unwrap();
        want.push(serde_json::from_slice::<Value>(&text).unwrap());
    }
    let uri = "/vectors/indexes/docs/search";
    let (s, v) = call(
        &app,
        uri,
        JSON,
        json(json!({"vectors": queries, "k": 4, "ef": 32, "filter": {"group": 3}})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, Value::Array(want.clone()));
    let arrow_uri = format!("{uri}?k=4&ef=32&filter=%7B%22group%22%3A3%7D");
    let (s, v) = call(
        &app,
        &arrow_uri,
        ipc::CONTENT_TYPE,
        ipc::encode_queries(&queries).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, Value::Array(want));
    // A bad query is named; both or neither of vector/vectors is refused.
    let mut bad = queries.clone();
    bad[3] = vec![1.0; 7];
    let (s, v) = call(&app, uri, JSON, json(json!({"vectors": bad}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(
        v["error"]["message"].as_str().unwrap().contains("query 3"),
        "{v}"
    );
    let (s, _) = call(
        &app,
        uri,
        JSON,
        json(json!({"vectors": vec![vec![1.0; 8]], "vector": vec![1.0; 8]})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (s, v) = call(
        &app,
        &format!("{uri}?bogus=1"),
        ipc::CONTENT_TYPE,
        ipc::encode_queries(&queries).unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
}

/// Issue 20 item 6: every parameter has a documented bound, and crossing it
/// is a 400 naming the parameter.
#[tokio::test]
async fn parameters_are_bounded() {
    let (svc, app) = app_with_index(2, Metric::L2).await;
    let create = "/vectors/indexes";
    for (field, value) in [
        ("ef_construction", json!(u32::MAX)),
        ("ef_construction", json!(4097)),
        ("m", json!(129)),
        ("m", json!(u32::MAX)),
        ("dim", json!(65_537)),
    ] {
        let mut body = json!({"name": "x", "dim": 2, "metric": "l2"});
        body[field] = value;
        let (s, v) = call(&app, create, JSON, json(body)).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_params")),
            "{field}: {v}"
        );
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains(&format!("{field} must be")),
            "{v}"
        );
    }
    let (s, v) = call(
        &app,
        create,
        JSON,
        json(json!({"name": "x", "dim": 2, "metric": "l2", "m": 128, "ef_construction": 4096})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    svc.add("docs", items(&random_vectors(10, 2, 5), 0))
        .await
        .unwrap();
    let search = "/vectors/indexes/docs/search";
    for (body, want) in [
        (json!({"vector": [1, 2], "ef": u32::MAX}), "ef must"),
        (json!({"vector": [1, 2], "ef": 10_001}), "ef must"),
        (json!({"vector": [1, 2], "k": 10_001}), "k must"),
        (
            json!({"vectors": vec![[1, 2]; 10_001]}),
            "at most 10000 queries",
        ),
        (
            json!({"vectors": vec![[1, 2]; 200], "k": 10_000}),
            "queries × k",
        ),
        (
            json!({"vector": [1, 2], "filter": (0..65).map(|i| (i.to_string(), json!(i))).collect::<serde_json::Map<_, _>>()}),
            "65 fields",
        ),
    ] {
        let (s, v) = call(&app, search, JSON, json(body)).await;
        assert_eq!(
            (s, v["error"]["code"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_search")),
            "{v}"
        );
        assert!(
            v["error"]["message"].as_str().unwrap().contains(want),
            "{want}: {v}"
        );
    }
    let (s, _) = call(
        &app,
        search,
        JSON,
        json(json!({"vector": [1, 2], "ef": 10_000, "k": 10_000})),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    // Metadata: size and depth.
    let mut deep = json!(1);
    for _ in 0..40 {
        deep = json!([deep]);
    }
    let add = "/vectors/indexes/docs/add";
    for (md, want) in [
        (json!({"d": deep}), "nested"),
        (json!({"s": "a".repeat(70_000)}), "bytes of JSON"),
    ] {
        let body = json!({"items": [{"id": "ok", "vector": [1, 2]}, {"id": "m", "vector": [1, 2], "metadata": md}]});
        let (s, v) = call(&app, add, JSON, json(body)).await;
        assert_eq!(
            (s, v["error"]["position"].as_u64()),
            (StatusCode::BAD_REQUEST, Some(1)),
            "{v}"
        );
        assert!(
            v["error"]["message"].as_str().unwrap().contains(want),
            "{v}"
        );
    }
    let long_id = "i".repeat(1025);
    let (s, v) = call(
        &app,
        add,
        JSON,
        json(json!({"items": [{"id": long_id, "vector": [1, 2]}]})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(svc.get("docs").unwrap().count, 10);
}

#[tokio::test]
async fn the_log_is_binary_and_old_json_entries_still_replay() {
    let (store, svc) = persistent().await;
    svc.create(spec("w", 64, Metric::L2)).await.unwrap();
    let data = random_vectors(200, 64, 6);
    svc.add_batch("w", batch(&data[..100], 0)).await.unwrap();
    let keys: Vec<String> =
        futures::StreamExt::collect::<Vec<_>>(store.list(Some(&Path::from("_vectors/w.wal"))))
            .await
            .into_iter()
            .map(|m| m.unwrap())
            .map(|m| {
                // Raw floats plus ids and metadata (~30 bytes an item): JSON
                // text would take about three times as much.
                assert!(m.size < 100 * 64 * 4 + 100 * 40, "{} bytes", m.size);
                m.location.to_string()
            })
            .collect();
    assert_eq!(keys, ["_vectors/w.wal/00000000000000000001.bin"]);
    drop(svc);
    // Entries the first format wrote (JSON) interleave with binary ones, in
    // sequence order.
    let put = |seq: u64, op: WalOp, json_format: bool| {
        let store = store.clone();
        async move {
            let (key, body) = if json_format {
                (
                    format!("_vectors/w.wal/{seq:020}.json"),
                    wal::encode_json_legacy(seq, &op),
                )
            } else {
                let WalOp::Add(b) = &op else { unreachable!() };
                (wal::key("_vectors/", "w", seq), wal::encode_add(seq, b, 64))
            };
            store
                .put(&Path::from(key), PutPayload::from(body))
                .await
                .unwrap();
        }
    };
    put(2, WalOp::Add(batch(&data[100..150], 100)), true).await;
    put(
        3,
        WalOp::Delete {
            id: "item-0".into(),
        },
        true,
    )
    .await;
    put(4, WalOp::Add(batch(&data[150..], 150)), false).await;
    put(10, WalOp::Add(batch(&data[..1], 0)), true).await; // re-adds item-0
    let svc = VectorService::open(store.clone(), VectorConfig::default())
        .await
        .unwrap();
    assert_eq!(svc.get("w").unwrap().count, 200);
    for i in [0, 1, 120, 199] {
        let r = SearchRequest {
            vector: data[i].clone(),
            k: 1,
            ef: None,
            filter: None,
            text: None,
            hybrid: false,
        };
        assert_eq!(svc.search("w", r).await.unwrap()[0].id, format!("item-{i}"));
    }
    // The next write continues after the highest sequence number.
    svc.delete_item("w", "item-1").await.unwrap();
    assert!(
        store
            .head(&Path::from("_vectors/w.wal/00000000000000000011.bin"))
            .await
            .is_ok()
    );
    // A snapshot covers and removes both kinds.
    svc.snapshot_now("w").await.unwrap();
    let left =
        futures::StreamExt::collect::<Vec<_>>(store.list(Some(&Path::from("_vectors/w.wal"))))
            .await;
    assert!(left.is_empty(), "{left:?}");
}

/// A damaged log refuses the start, naming the object; so does a log whose
/// index has no snapshot, and a name in a log directory that is no entry's.
#[tokio::test]
async fn damaged_logs_refuse_the_start_naming_the_key() {
    let (store, svc) = persistent().await;
    svc.create(spec("d", 4, Metric::L2)).await.unwrap();
    svc.add("d", items(&random_vectors(10, 4, 7), 0))
        .await
        .unwrap();
    drop(svc);
    let key = "_vectors/d.wal/00000000000000000001.bin";
    let good = store
        .get(&Path::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let open = || VectorService::open(store.clone(), VectorConfig::default());
    let expect_corrupt = |r: Result<VectorService, VectorError>, key: &str, why: &str| match r {
        Err(VectorError::Corrupt { key: k, reason }) => {
            assert_eq!(k, key);
            assert!(reason.contains(why), "{reason}");
        }
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened over a damaged {key}"),
    };
    let mut flipped = good.to_vec();
    flipped[40] ^= 1;
    store
        .put(&Path::from(key), PutPayload::from(flipped))
        .await
        .unwrap();
    expect_corrupt(open().await, key, "checksum");
    store
        .put(
            &Path::from(key),
            PutPayload::from(good.slice(..good.len() / 2)),
        )
        .await
        .unwrap();
    expect_corrupt(open().await, key, "checksum");
    // The right bytes under another sequence number.
    store
        .put(&Path::from(key), PutPayload::from(good.clone()))
        .await
        .unwrap();
    let moved = "_vectors/d.wal/00000000000000000002.bin";
    store
        .put(&Path::from(moved), PutPayload::from(good.clone()))
        .await
        .unwrap();
    expect_corrupt(open().await, moved, "sequence number 1");
    store.delete(&Path::from(moved)).await.unwrap();
    // One sequence number in both formats.
    let twin = "_vectors/d.wal/00000000000000000001.json";
    store
        .put(&Path::from(twin), PutPayload::from(b"{}".to_vec()))
        .await
        .unwrap();
    let r = open().await;
    assert!(
        matches!(&r, Err(VectorError::Corrupt { reason, .. }) if reason.contains("also used")),
        "{:?}",
        r.err()
    );
    store.delete(&Path::from(twin)).await.unwrap();
    let odd = "_vectors/d.wal/notes.txt";
    store
        .put(&Path::from(odd), PutPayload::from(b"x".to_vec()))
        .await
        .unwrap();
    expect_corrupt(open().await, odd, "not a write-ahead-log entry name");
    store.delete(&Path::from(odd)).await.unwrap();
    let orphan = "_vectors/gone.wal/00000000000000000001.bin";
    store
        .put(&Path::from(orphan), PutPayload::from(good.clone()))
        .await
        .unwrap();
    expect_corrupt(open().await, orphan, "has no snapshot");
    store.delete(&Path::from(orphan)).await.unwrap();
    // Repaired: it opens with every write.
    assert_eq!(open().await.unwrap().get("d").unwrap().count, 10);
}

/// The client's fast-path methods against a real listener.
#[tokio::test]
async fn client_sends_arrow_and_gets_typed_errors() {
    let svc = Arc::new(VectorService::ephemeral(VectorConfig::default()));
    let app = lakehouse_vectord::http::router(svc.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = VectorClient::new(&url);
    client.create(spec("c", 16, Metric::Cosine)).await.unwrap();
    let data = random_vectors(300, 16, 8);
    let r = client.add_batch("c", batch(&data, 0)).await.unwrap();
    assert_eq!((r.added, r.count), (300, 300));
    let mut bad = batch(&data[..3], 1000);
    bad.push("zero".into(), &[0.0; 16], None);
    match client.add_batch("c", bad).await {
        Err(VectorError::InvalidItem {
            position: 3,
            id,
            reason,
        }) => {
            assert_eq!(id, "zero");
            assert!(reason.contains("zero norm"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let hits = client
        .search_batch(
            "c",
            SearchBatch {
                vectors: data[..5].to_vec(),
                k: 1,
                ef: None,
                filter: None,
            },
        )
        .await
        .unwrap();
    let ids: Vec<&str> = hits.iter().map(|h| h[0].id.as_str()).collect();
    assert_eq!(ids, ["item-0", "item-1", "item-2", "item-3", "item-4"]);
    // One item back (an id with a `/` and a space), and typed not-found errors.
    let mut odd = Batch::new();
    odd.push(
        "a/b c".into(),
        &data[0],
        json!({"k": 1}).as_object().cloned(),
    );
    client.add_batch("c", odd).await.unwrap();
    let item = client.get_item("c", "a/b c").await.unwrap();
    assert_eq!(
        (item.id.as_str(), item.metadata),
        ("a/b c", json!({"k": 1}).as_object().cloned())
    );
    let hit = client
        .search(
            "c",
            SearchRequest {
                vector: item.vector,
                k: 1,
                ef: None,
                filter: json!({"k": 1}).as_object().cloned(),
                text: None,
                hybrid: false,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        (hit[0].id.as_str(), hit[0].distance.abs() < 1e-5),
        ("a/b c", true)
    );
    match client.get_item("c", "missing").await {
        Err(VectorError::ItemNotFound { id, .. }) => assert_eq!(id, "missing"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        client.get_item("nope", "x").await,
        Err(VectorError::IndexNotFound(_))
    ));
    let filtered = client
        .search_batch(
            "c",
            SearchBatch {
                vectors: data[..2].to_vec(),
                k: 3,
                ef: Some(50),
                filter: json!({"group": 7}).as_object().cloned(),
            },
        )
        .await
        .unwrap();
    let group_7 = ["item-7", "item-107", "item-207"];
    assert!(filtered.iter().all(|hits| hits.len() == 3), "{filtered:?}");
    assert!(
        filtered
            .iter()
            .flatten()
            .all(|h| group_7.contains(&h.id.as_str())),
        "{filtered:?}"
    );
    assert!(matches!(
        client
            .search_batch(
                "c",
                SearchBatch {
                    vectors: vec![vec![1.0; 3]],
                    k: 1,
                    ef: None,
                    filter: None
                }
            )
            .await,
        Err(VectorError::InvalidSearch(_))
    ));
    assert_eq!(client.get("c").await.unwrap().count, 301);
}
