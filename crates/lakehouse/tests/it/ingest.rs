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
    let mut listed = keys(&http, &server.url, "datasets/events/").await;
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
    let (status, out, _) = run_cli(&["datasets", "--url", &server.url], &[]);
    assert!(status.success());
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
