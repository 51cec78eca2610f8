//! vectord end to end: acknowledged adds survive `kill -9`; the CLI journey.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Server, run_cli};

fn vector(i: usize, dim: usize) -> Vec<f32> {
    // Deterministic, distinct for every i, never all-zero.
    (0..dim)
        .map(|d| ((i as f32 + 1.0) * (d as f32 + 1.37) * 0.731).sin())
        .collect()
}

async fn post(http: &reqwest::Client, url: String, body: Value) -> (StatusCode, Value) {
    let r = http.post(url).json(&body).send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_adds_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    // Snapshots every 300 items: the restart needs a snapshot and the log.
    let env = [("LAKEHOUSE__VECTORD__SNAPSHOT_EVERY", "300")];
    let mut server = Server::start(dir.path(), &[], &env);
    let http = reqwest::Client::new();
    let base = format!("{}/vectors/indexes", server.url);
    let (s, _) = post(
        &http,
        base.clone(),
        json!({"name": "emb", "dim": 16, "metric": "l2"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let mut acked = 0;
    for batch in 0..10 {
        let items: Vec<Value> = (batch * 100..(batch + 1) * 100)
            .map(|i| json!({"id": format!("doc-{i}"), "vector": vector(i, 16), "metadata": {"batch": batch}}))
            .collect();
        let (s, v) = post(&http, format!("{base}/emb/add"), json!({ "items": items })).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        acked = (batch + 1) * 100;
        assert_eq!(v["count"], acked);
    }
    // Right after the last acknowledgement.
    server.kill9();

    let server = Server::start(dir.path(), &[], &env);
    let base = format!("{}/vectors/indexes", server.url);
    let info: Value = http
        .get(format!("{base}/emb"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["count"], acked);
    for i in 0..acked {
        let (s, hits) = post(
            &http,
            format!("{base}/emb/search"),
            json!({"vector": vector(i, 16), "k": 1}),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(hits[0]["id"], format!("doc-{i}"), "item {i}");
        assert_eq!(hits[0]["distance"].as_f64().unwrap(), 0.0, "item {i}");
        assert_eq!(hits[0]["metadata"]["batch"], i / 100);
    }
}

#[tokio::test]
async fn cli_journey() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    let url = server.url.as_str();
    let (s, out, err) = run_cli(
        &["vectors", "create", "notes", "--dim", "3", "--url", url],
        &[],
    );
    assert!(s.success(), "{out}{err}");
    assert!(out.contains("created index notes"), "{out}");
    let file = dir.path().join("notes.ndjson");
    std::fs::write(
        &file,
        "{\"id\": \"a\", \"vector\": [1, 0, 0], \"metadata\": {\"lang\": \"en\"}}\n{\"id\": \"b\", \"vector\": [0, 1, 0], \"metadata\": {\"lang\": \"fr\"}}\n",
    )
    .unwrap();
    let (s, out, err) = run_cli(
        &[
            "vectors",
            "add",
            "notes",
            file.to_str().unwrap(),
            "--url",
            url,
        ],
        &[],
    );
    assert!(s.success(), "{out}{err}");
    assert!(out.contains("added 2 items"), "{out}");
    let (s, out, err) = run_cli(
        &[
            "vectors",
            "search",
            "notes",
            "--vector",
            "[0.1, 1, 0]",
            "-k",
            "1",
            "--url",
            url,
        ],
        &[],
    );
    assert!(s.success(), "{out}{err}");
    assert!(out.lines().nth(1).unwrap().starts_with('b'), "{out}");
    let (s, out, _) = run_cli(
        &[
            "vectors",
            "search",
            "notes",
            "--vector",
            "[0.1, 1, 0]",
            "--filter",
            "lang=en",
            "--url",
            url,
        ],
        &[],
    );
    assert!(s.success());
    assert!(out.lines().nth(1).unwrap().starts_with('a'), "{out}");
    let (s, out, _) = run_cli(&["vectors", "list", "--url", url], &[]);
    assert!(s.success() && out.contains("notes"), "{out}");
    // A bad file is a clear error naming the line.
    std::fs::write(&file, "{\"id\": \"c\", \"vector\": [1, 2]}\n").unwrap();
    let (s, _, err) = run_cli(
        &[
            "vectors",
            "add",
            "notes",
            file.to_str().unwrap(),
            "--url",
            url,
        ],
        &[],
    );
    assert!(!s.success());
    assert!(err.contains("dimension 2"), "{err}");
    let (s, out, _) = run_cli(&["vectors", "drop", "notes", "--url", url], &[]);
    assert!(s.success() && out.contains("dropped notes"));
    let (s, out, _) = run_cli(&["vectors", "list", "--url", url], &[]);
    assert!(s.success() && out.contains("0 indexes"), "{out}");
}
