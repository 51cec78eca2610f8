//! Vector indexes that follow a dataset, end to end with the real binary:
//! created over HTTP on an ingested dataset, equal to a brute-force scan of
//! the dataset after appends and a SQL DELETE, after `kill -9` between an
//! append and the index catching up, and catching up in the background.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Cluster, READER, Server, WRITER};

const DIM: usize = 6;

fn vector(i: i64) -> Vec<f32> {
    (0..DIM)
        .map(|d| ((i as f32 + 1.0) * (d as f32 + 1.37) * 0.731).sin() + 0.05)
        .collect()
}

/// The dataset's rows as the test knows them: `(doc_id, vector)`, the
/// vector `None` for every eleventh row (no item).
fn row(i: i64) -> (i64, Option<Vec<f32>>) {
    (i, (i % 11 != 3).then(|| vector(i)))
}

fn ndjson(ids: std::ops::Range<i64>) -> String {
    ids.map(row)
        .map(|(i, v)| {
            let lang = if i % 2 == 0 { "en" } else { "fr" };
            format!("{}\n", json!({"doc_id": i, "lang": lang, "embedding": v}))
        })
        .collect()
}

struct Api {
    http: reqwest::Client,
    url: String,
}

impl Api {
    fn new(server: &Server) -> Api {
        Api {
            http: reqwest::Client::new(),
            url: server.url.clone(),
        }
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let s = r.status();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    async fn ingest(&self, ids: std::ops::Range<i64>) {
        let r = self
            .http
            .post(format!("{}/ingest/docs?format=ndjson", self.url))
            .body(ndjson(ids))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }

    async fn info(&self) -> Value {
        let r = self
            .http
            .get(format!("{}/vectors/indexes/di", self.url))
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }

    async fn sync(&self) -> Value {
        let (s, info) = self.post("/vectors/indexes/di/sync", json!({})).await;
        assert_eq!(s, StatusCode::OK, "{info}");
        assert!(info["source"]["error"].is_null(), "{info}");
        info
    }

    /// The index answers exactly the squared-L2 brute force over `ids`
    /// (every item, in order, with its distance) at `version`.
    async fn assert_equal(&self, ids: &[i64], version: u64) {
        let rows: Vec<(i64, Vec<f32>)> = ids
            .iter()
            .filter_map(|i| row(*i).1.map(|v| (*i, v)))
            .collect();
        let info = self.info().await;
        assert_eq!(info["count"], rows.len(), "{info}");
        assert_eq!(info["source"]["version"], version, "{info}");
        for q in [vector(500), vector(7)] {
            let (s, hits) = self
                .post(
                    "/vectors/indexes/di/search",
                    json!({"vector": q, "k": rows.len(), "ef": 10000}),
                )
                .await;
            assert_eq!(s, StatusCode::OK, "{hits}");
            let mut want: Vec<(String, f32)> = rows
                .iter()
                .map(|(i, v)| {
                    let d: f32 = v.iter().zip(&q).map(|(a, b)| (a - b) * (a - b)).sum();
                    (i.to_string(), d)
                })
                .collect();
            want.sort_by(|a, b| a.1.total_cmp(&b.1));
            let hits = hits.as_array().unwrap();
            assert_eq!(hits.len(), want.len());
            for (h, (id, d)) in hits.iter().zip(&want) {
                assert_eq!(h["id"], id.as_str(), "{hits:?}");
                let got = h["distance"].as_f64().unwrap() as f32;
                assert!((got - d).abs() < 1e-4, "{got} vs {d}");
                assert_eq!(h["version"], version, "{h}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dataset_index_stays_equal_to_the_dataset_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    // Catch up only when asked; snapshot after every catch-up that changed
    // something, so the restart below loads a snapshot and catches up.
    let env = [
        ("LAKEHOUSE__VECTORD__SYNC_INTERVAL_MS", "0"),
        ("LAKEHOUSE__VECTORD__SNAPSHOT_EVERY", "1"),
    ];
    let mut server = Server::start(dir.path(), &[], &env);
    let api = Api::new(&server);
    api.ingest(0..40).await;
    let spec = json!({"name": "di", "metric": "l2", "dataset": "docs", "column": "embedding",
                      "id_column": "doc_id", "metadata_columns": ["lang"]});
    let (s, info) = api.post("/vectors/indexes", spec.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{info}");
    assert_eq!(info["dim"], DIM, "{info}");
    let (s, _) = api.post("/vectors/indexes", spec).await;
    assert_eq!(s, StatusCode::OK, "the same spec again");
    api.sync().await;
    let mut ids: Vec<i64> = (0..40).collect();
    api.assert_equal(&ids, 0).await;

    api.ingest(40..70).await;
    ids.extend(40..70);
    api.sync().await;
    api.assert_equal(&ids, 1).await;
    let (s, v) = api
        .post(
            "/query/sql",
            json!({"sql": "DELETE FROM docs WHERE doc_id % 5 = 2"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    ids.retain(|i| i % 5 != 2);
    api.sync().await;
    api.assert_equal(&ids, 2).await;

    // An append the index has not caught up with, then kill -9.
    api.ingest(70..95).await;
    ids.extend(70..95);
    server.kill9();
    let server = Server::start(dir.path(), &[], &env);
    let api = Api::new(&server);
    let info = api.info().await;
    assert_eq!(
        info["source"]["version"], 2,
        "the snapshot's version: {info}"
    );
    api.sync().await;
    api.assert_equal(&ids, 3).await;
    drop(server);

    // With a sync interval the index catches up by itself.
    let env = [("LAKEHOUSE__VECTORD__SYNC_INTERVAL_MS", "100")];
    let server = Server::start(dir.path(), &[], &env);
    let api = Api::new(&server);
    api.ingest(95..120).await;
    ids.extend(95..120);
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.info().await["source"]["version"] != 4 {
        assert!(
            Instant::now() < deadline,
            "no background catch-up: {}",
            api.info().await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    api.assert_equal(&ids, 4).await;
}

/// Waits until the front door reports every service ready.
async fn wait_ready(front: &str) {
    let http = authed(READER);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{front}/ready")).send().await
            && r.status() == StatusCode::OK
        {
            return;
        }
        assert!(Instant::now() < deadline, "not ready within 60 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn authed(token: &str) -> reqwest::Client {
    use lakehouse_common::{ClientOptions, http_client};
    http_client(&ClientOptions::with_token(Some(token.to_string())))
}

async fn post_as(token: &str, url: String, body: Value) -> (StatusCode, Value) {
    let r = authed(token).post(url).json(&body).send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

const TEXTS: [(i64, &str, &str); 6] = [
    (1, "en", "A small cat sleeps on the warm windowsill."),
    (
        2,
        "en",
        "The stock market fell sharply after the announcement.",
    ),
    (3, "fr", "Le chat dort sur le rebord de la fenêtre."),
    (
        4,
        "en",
        "Delta Lake vacuum removes files no table version needs.",
    ),
    (5, "en", "Kittens love to nap in the afternoon sun."),
    (6, "en", "Interest rates and inflation worry investors."),
];

/// A text column embedded at index time by the configured model, searched
/// from SQL with `embed()` and joined with its rows, in the all-in-one
/// deployment and the split one (queryd reaching vectord through its
/// client), with the roles: a reader searches, only a writer creates.
async fn sql_text_search(front: &str) {
    wait_ready(front).await;
    let body: String = TEXTS
        .iter()
        .map(|(id, lang, text)| format!("{}\n", json!({"doc_id": id, "lang": lang, "body": text})))
        .collect();
    let r = authed(WRITER)
        .post(format!("{front}/ingest/docs?format=ndjson"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let spec = json!({"name": "docs_idx", "metric": "cosine", "dataset": "docs",
                      "text_column": "body", "id_column": "doc_id", "metadata_columns": ["lang"]});
    let (s, v) = post_as(READER, format!("{front}/vectors/indexes"), spec.clone()).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "a reader cannot create: {v}");
    let (s, v) = post_as(WRITER, format!("{front}/vectors/indexes"), spec).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["dim"], 384, "{v}");
    let (s, v) = post_as(
        WRITER,
        format!("{front}/vectors/indexes/docs_idx/sync"),
        json!({}),
    )
    .await;
    assert_eq!((s, &v["count"]), (StatusCode::OK, &json!(6)), "{v}");

    let sql = "SELECT d.doc_id, v.distance FROM vector_search('docs_idx', embed('a cat napping'), 3) v \
               JOIN docs d USING (doc_id) WHERE d.lang = 'en' ORDER BY v.distance";
    let (s, v) = post_as(READER, format!("{front}/query/sql"), json!({"sql": sql})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut ids: Vec<i64> = v
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|r| r["doc_id"].as_i64().unwrap())
        .collect();
    // The 3 nearest are the two cat texts and the French one; the join keeps English.
    ids.sort();
    assert_eq!(ids, vec![1, 5], "{v}");
    // The metadata filter goes into the search: the 2 nearest English rows.
    let sql = "SELECT doc_id FROM vector_search('docs_idx', 'markets and money', 2) v \
               WHERE v.lang = 'en' ORDER BY doc_id";
    let (s, v) = post_as(READER, format!("{front}/query/sql"), json!({"sql": sql})).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v, json!([{"doc_id": 2}, {"doc_id": 6}]));
    let sql = "SELECT doc_id FROM hybrid_search('docs_idx', 'vacuum', 1)";
    let (s, v) = post_as(READER, format!("{front}/query/sql"), json!({"sql": sql})).await;
    assert_eq!((s, v), (StatusCode::OK, json!([{"doc_id": 4}])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_searches_text_in_both_deployments() {
    let Some(model) = lakehouse_embed::testing::model_dir_or_skip("sql_searches_text") else {
        return;
    };
    let model = model.to_str().unwrap();
    let extra = [
        ("LAKEHOUSE__EMBED__MODEL_DIR", model),
        ("LAKEHOUSE__VECTORD__SYNC_INTERVAL_MS", "0"),
    ];
    let c = tokio::task::block_in_place(|| Cluster::all_in_one_with(&extra));
    sql_text_search(&c.front()).await;
    drop(c);
    let c = tokio::task::block_in_place(|| Cluster::split_with(&extra));
    sql_text_search(&c.front()).await;
}
