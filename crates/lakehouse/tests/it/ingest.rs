//! ingestd end to end: the CLI with a file, and `kill -9` in the middle of a
//! large ingest.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::StatusCode;

use crate::support::{Server, run_cli};

async fn manifest(http: &reqwest::Client, url: &str, name: &str) -> serde_json::Value {
    http.get(format!("{url}/catalog/manifest/{name}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn keys(http: &reqwest::Client, url: &str, prefix: &str) -> Vec<String> {
    let v: serde_json::Value = http
        .get(format!("{url}/storage/list"))
        .query(&[("prefix", prefix), ("limit", "10000")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    v["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_large_ingest_leaves_the_old_dataset() {
    let dir = tempfile::tempdir().unwrap();
    // Small objects, so several are complete when the process dies.
    let env = [
        ("LAKEHOUSE__INGESTD__TARGET_OBJECT_SIZE", "1MiB"),
        ("LAKEHOUSE__INGESTD__ROW_GROUP_ROWS", "20000"),
    ];
    let mut server = Server::start(dir.path(), &[], &env);
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/ingest/events?format=csv", server.url))
        .body("id,payload\n1,old\n2,old\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let before = manifest(&http, &server.url, "events").await;
    assert_eq!(before["row_count"], 2);

    // A large append, streamed slowly; SIGKILL after ~40 MB.
    let (sent_tx, mut sent_rx) = tokio::sync::mpsc::channel::<()>(1);
    let rows_per_chunk = 20_000u64;
    let chunks = futures::stream::iter(0..400u64).then(move |c| {
        let sent_tx = sent_tx.clone();
        async move {
            if c == 100 {
                let _ = sent_tx.send(()).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let mut s = String::with_capacity(rows_per_chunk as usize * 40);
            if c == 0 {
                s.push_str("id,payload\n");
            }
            for i in c * rows_per_chunk..(c + 1) * rows_per_chunk {
                s.push_str(&format!(
                    "{i},{:032x}\n",
                    i.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ));
            }
            Ok::<_, std::io::Error>(Bytes::from(s))
        }
    });
    let put = {
        let http = http.clone();
        let url = format!("{}/ingest/events?format=csv", server.url);
        tokio::spawn(async move {
            http.post(url)
                .body(reqwest::Body::wrap_stream(chunks))
                .send()
                .await
        })
    };
    sent_rx.recv().await.unwrap();
    // Objects of the interrupted ingest exist now (complete or in flight).
    server.kill9();
    let res = put.await.unwrap();
    assert!(res.map(|r| !r.status().is_success()).unwrap_or(true));

    let server = Server::start(dir.path(), &[], &env);
    let after = manifest(&http, &server.url, "events").await;
    assert_eq!(after, before, "the old dataset, exactly");
    // Start-up removed every object the manifest does not reference.
    let mut listed: Vec<String> = keys(&http, &server.url, "datasets/events/")
        .await
        .into_iter()
        .filter(|k| !k.contains("/_delta_log/"))
        .collect();
    listed.sort();
    let mut referenced: Vec<String> = after["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap().to_string())
        .collect();
    referenced.sort();
    assert_eq!(listed, referenced);
    assert!(
        keys(&http, &server.url, "_ingest/inflight/")
            .await
            .is_empty()
    );

    // The dataset still takes appends.
    let r = http
        .post(format!("{}/ingest/events?format=csv", server.url))
        .body("id,payload\n3,new\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(manifest(&http, &server.url, "events").await["row_count"], 3);
}

#[tokio::test]
async fn cli_ingest_then_datasets() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    let csv = dir.path().join("Sales 2024.csv");
    std::fs::write(&csv, "region,amount\nnorth,10.5\nsouth,\"3,000\"\n").unwrap();
    let (status, out, err) = run_cli(
        &["ingest", csv.to_str().unwrap(), "--url", &server.url],
        &[],
    );
    // "3,000" is not a number: the amount column is inferred as text.
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("ingested 2 rows into sales_2024"), "{out}");
    let (status, out, err) = run_cli(
        &[
            "ingest",
            csv.to_str().unwrap(),
            "--dataset",
            "sales",
            "-o",
            "schema=region:utf8,amount:float64",
            "--url",
            &server.url,
        ],
        &[],
    );
    assert!(!status.success());
    assert!(
        err.contains("CSV line 3, column 2 (\"amount\")"),
        "{out}{err}"
    );
    // Options are read as the server reads them, before a byte is sent.
    let (status, out, err) = run_cli(
        &[
            "ingest",
            csv.to_str().unwrap(),
            "--dataset",
            "never",
            "-o",
            "delimiter=ab",
            "--url",
            &server.url,
        ],
        &[],
    );
    assert!(!status.success());
    assert!(
        err.contains("delimiter must be a single ASCII character"),
        "{out}{err}"
    );
    let (status, out, _) = run_cli(&["datasets", "--url", &server.url], &[]);
    assert!(status.success());
    assert!(!out.contains("never"), "{out}");
    assert!(
        out.contains("sales_2024") && !out.contains("sales "),
        "{out}"
    );
    // Idempotency through the CLI.
    for _ in 0..2 {
        let (status, out, err) = run_cli(
            &[
                "ingest",
                csv.to_str().unwrap(),
                "--dataset",
                "once",
                "--idempotency-key",
                "k1",
                "--url",
                &server.url,
            ],
            &[],
        );
        assert!(status.success(), "{out}{err}");
    }
    let http = reqwest::Client::new();
    assert_eq!(manifest(&http, &server.url, "once").await["row_count"], 2);
}

/// Issues 12 and 13 through the real binary: no lost last row, sniffing and
/// renaming reported, impossible options and names refused before anything
/// is written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_reading_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    let http = reqwest::Client::new();
    let post = |path: String, body: &'static str| {
        let http = http.clone();
        let url = format!("{}{path}", server.url);
        async move {
            let r = http.post(url).body(body).send().await.unwrap();
            let status = r.status();
            (status, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    for (name, body) in [("t0", "a,b\n1,2"), ("t3", "a,b\r\n1,2")] {
        let (s, v) = post(format!("/ingest/{name}?format=csv"), body).await;
        assert_eq!(s, StatusCode::CREATED, "{v}");
        assert_eq!(v["rows"], 1, "{name}: {v}");
    }

    // Repeated and empty header names: renamed, reported, and queryable.
    let (s, v) = post("/ingest/dupes?format=csv".into(), "id,id,,ID\n1,2,3,4\n").await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["csv"]["header"], true);
    assert_eq!(v["csv"]["renamed"].as_array().unwrap().len(), 3, "{v}");
    let r = http
        .post(format!("{}/query/sql", server.url))
        .json(&serde_json::json!({"sql": "SELECT * FROM dupes", "format": "csv"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "id,id_1,column2,ID_2\n1,2,3,4\n");

    // A delimiter that cannot work.
    let (s, v) = post("/ingest/nl?format=csv&delimiter=%0A".into(), "a\n1\n").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], "invalid_option");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("delimiter"),
        "{v}"
    );

    // A name too long for the store is refused up front: nothing written.
    let long = "a".repeat(300);
    let (s, v) = post(format!("/ingest/{long}?format=csv"), "a\n1\n").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"]["code"], "invalid_name");
    assert!(keys(&http, &server.url, "_ingest/").await.is_empty());
    assert!(
        keys(&http, &server.url, &format!("datasets/{long}"))
            .await
            .is_empty()
    );

    // A real headerless file through the CLI: every row, the sniffing shown.
    let game = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../ingestd/tests/fixtures/csv-bench/game.csv"
    );
    let (status, out, err) = run_cli(&["ingest", game, "--url", &server.url], &[]);
    assert!(status.success(), "{out}{err}");
    assert!(out.contains("ingested 100 rows into game"), "{out}");
    assert!(out.contains("no header row (detected)"), "{out}");
}
