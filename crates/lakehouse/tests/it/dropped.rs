//! Dropping a dataset and vacuuming its name, end to end: `kill -9` at
//! random points of the vacuum leaves a state the next vacuum finishes
//! (data files first, then the log newest entry first), another dataset is
//! never touched, and the name then starts a new table at version 0.

use rand::Rng;
use reqwest::StatusCode;
use serde_json::Value;

use crate::support::Server;
use crate::tables::{count, ingest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_the_vacuum_of_a_dropped_dataset_leaves_it_finishable() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("LAKEHOUSE__CATALOGD__VACUUM__GRACE_SECS", "0")];
    let http = reqwest::Client::new();
    let mut server = Server::start(dir.path(), &[], &env);
    ingest(&http, &server.url, "stay", "append", "id\n1\n2\n").await;
    for round in 0..5u32 {
        let url = server.url.clone();
        let name = format!("gone{round}");
        for i in 0..8 {
            let mode = if i % 3 == 0 { "replace" } else { "append" };
            ingest(&http, &url, &name, mode, &format!("id\n{i}\n")).await;
        }
        let r = http
            .delete(format!("{url}/catalog/manifest/{name}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "round {round}");
        let plan: Value = r.json().await.unwrap();
        let planned = plan["vacuum"]["files"].as_array().unwrap().len();
        assert!(planned >= 8 + 8, "round {round}: {plan}");

        let call = tokio::spawn(http.post(format!("{url}/catalog/vacuum/{name}")).send());
        tokio::time::sleep(std::time::Duration::from_millis(
            rand::rng().random_range(0..10),
        ))
        .await;
        server.kill9();
        let _ = call.await;
        server = Server::start(dir.path(), &[], &env);
        let url = server.url.clone();

        // The next vacuum finishes whatever is left; then nothing is.
        let r = http
            .post(format!("{url}/catalog/vacuum/{name}"))
            .send()
            .await
            .unwrap();
        assert!(
            matches!(r.status(), StatusCode::OK | StatusCode::NOT_FOUND),
            "round {round}: {}",
            r.status()
        );
        let r = http
            .post(format!("{url}/catalog/vacuum/{name}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "round {round}");
        let left = dir.path().join("objects/datasets").join(&name);
        let files = walk(&left);
        assert!(files.is_empty(), "round {round}: {files:?}");
        assert_eq!(count(&http, &url, "stay").await, 2, "round {round}");

        // The name starts afresh.
        let v = ingest(&http, &url, &name, "append", "id\n42\n").await;
        assert_eq!(v["manifest"]["table_version"], 0, "round {round}: {v}");
        assert_eq!(count(&http, &url, &name).await, 1, "round {round}");
    }
}

/// Every file under `dir` (none if it does not exist).
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    let mut out = vec![];
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
