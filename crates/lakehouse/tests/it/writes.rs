//! SQL that writes, end to end through the real binary: the roles on
//! `/query/sql` and `lakehouse sql` (a read token gets 403, a write token a
//! new version), and `kill -9` at random points of a large UPDATE (the table
//! is at the old version or the new one, never between, and the next start
//! leaves no object that no version names).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{READER, Server, WRITER, run_cli, token_env};

async fn sql_as(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    q: &str,
) -> (StatusCode, Value) {
    let mut req = http
        .post(format!("{url}/query/sql"))
        .json(&json!({"sql": q}));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    (r.status(), r.json().await.unwrap())
}

async fn ingest_as(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    name: &str,
    csv: String,
) {
    let mut req = http
        .post(format!("{url}/ingest/{name}?format=csv&mode=append"))
        .body(csv);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let body = r.text().await.unwrap();
    assert!(status.is_success(), "{status} {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_statements_need_a_write_token() {
    let dir = tempfile::tempdir().unwrap();
    let (k, v) = token_env();
    let server = Server::start(dir.path(), &[], &[(&k, &v)]);
    let http = reqwest::Client::new();
    let url = server.url.clone();
    ingest_as(
        &http,
        &url,
        Some(WRITER),
        "t",
        "id,name\n1,a\n2,b\n3,c".into(),
    )
    .await;

    for q in [
        "DELETE FROM t WHERE id = 1",
        "UPDATE t SET name = 'x'",
        "INSERT INTO t VALUES (9, 'z')",
        "CREATE TABLE u AS SELECT * FROM t",
        "MERGE INTO t USING t AS s ON t.id = s.id WHEN MATCHED THEN DELETE",
    ] {
        let (s, body) = sql_as(&http, &url, Some(READER), q).await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{q}: {body}");
        assert_eq!(body["error"]["code"], "write_not_allowed", "{q}: {body}");
        let (s, body) = sql_as(&http, &url, None, q).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{q}: {body}");
    }
    let (s, body) = sql_as(&http, &url, Some(READER), "SELECT count(*) AS n FROM t").await;
    assert_eq!((s, body), (StatusCode::OK, json!([{"n": 3}])));

    let (s, body) = sql_as(&http, &url, Some(WRITER), "DELETE FROM t WHERE id = 1").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!([{"dataset": "t", "version": 1, "rows_inserted": 0, "rows_updated": 0, "rows_deleted": 1}])
    );
    // The CLI, with the token from the environment.
    let env = [("LAKEHOUSE_URL", url.as_str()), ("LAKEHOUSE_TOKEN", WRITER)];
    let (st, out, err) = run_cli(
        &["sql", "--format", "csv", "INSERT INTO t VALUES (4, 'd')"],
        &env,
    );
    assert!(st.success(), "{err}");
    assert!(out.contains("t,2,1,0,0"), "{out}");
    let env = [("LAKEHOUSE_URL", url.as_str()), ("LAKEHOUSE_TOKEN", READER)];
    let (st, _, err) = run_cli(&["sql", "DELETE FROM t"], &env);
    assert!(!st.success());
    assert!(err.contains("write"), "{err}");
    let (s, body) = sql_as(&http, &url, Some(READER), "SELECT id FROM t ORDER BY id").await;
    assert_eq!(
        (s, body),
        (StatusCode::OK, json!([{"id": 2}, {"id": 3}, {"id": 4}]))
    );
}

/// The data files under the dataset's directory (not its log).
fn data_files(root: &std::path::Path, name: &str) -> BTreeSet<String> {
    let dir = root.join("objects/datasets").join(name);
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                if !p.ends_with("_delta_log") {
                    stack.push(p);
                }
            } else {
                let rel = p.strip_prefix(root.join("objects")).unwrap();
                out.insert(rel.to_string_lossy().into_owned());
            }
        }
    }
    out
}

/// Every object any version of `name` up to `last` names.
async fn named_by_versions(
    http: &reqwest::Client,
    url: &str,
    name: &str,
    last: u64,
) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for v in 0..=last {
        let r = http
            .get(format!("{url}/catalog/manifest/{name}?version={v}"))
            .send()
            .await
            .unwrap();
        let m: Value = r.json().await.unwrap();
        for o in m["objects"].as_array().unwrap() {
            out.insert(o["key"].as_str().unwrap().to_string());
        }
    }
    out
}

async fn sum_and_version(http: &reqwest::Client, url: &str) -> (i64, u64, u64) {
    let (s, v) = sql_as(
        http,
        url,
        None,
        "SELECT sum(n) AS s, count(*) AS c FROM big",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let r = http
        .get(format!("{url}/catalog/manifest/big"))
        .send()
        .await
        .unwrap();
    let m: Value = r.json().await.unwrap();
    (
        v[0]["s"].as_i64().unwrap(),
        v[0]["c"].as_u64().unwrap(),
        m["table_version"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_a_large_update_is_all_or_nothing() {
    const ROWS: u64 = 300_000;
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[], &[]);
    let http = reqwest::Client::new();
    for part in 0..3 {
        let mut csv = String::from("id,n,pad\n");
        for id in part * ROWS / 3..(part + 1) * ROWS / 3 {
            csv.push_str(&format!("{id},{id},row-{id}\n"));
        }
        ingest_as(&http, &server.url, None, "big", csv).await;
    }
    // One whole UPDATE, to know how long one takes.
    let started = Instant::now();
    let (s, body) = sql_as(&http, &server.url, None, "UPDATE big SET n = n + 1").await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let took = started.elapsed();
    eprintln!("one UPDATE of {ROWS} rows: {took:?}");

    let mut rng = rand::rng();
    for round in 0..6 {
        let (sum, count, version) = sum_and_version(&http, &server.url).await;
        assert_eq!(count, ROWS, "round {round}");
        let url = server.url.clone();
        let h = http.clone();
        let update = tokio::spawn(async move {
            let _ = h
                .post(format!("{url}/query/sql"))
                .json(&json!({"sql": "UPDATE big SET n = n + 1"}))
                .send()
                .await;
        });
        let at = rng.random_range(0..took.as_millis().max(2) as u64 * 5 / 2);
        tokio::time::sleep(Duration::from_millis(at)).await;
        server.kill9();
        update.abort();
        server = Server::start(dir.path(), &[], &[]);

        let (after, count, now) = sum_and_version(&http, &server.url).await;
        assert_eq!(count, ROWS, "round {round} (killed at {at} ms)");
        eprintln!(
            "round {round}: killed at {at} ms, {} version(s) later",
            now - version
        );
        match now - version {
            0 => assert_eq!(after, sum, "round {round}: old version, old rows"),
            1 => assert_eq!(
                after,
                sum + ROWS as i64,
                "round {round}: new version, new rows"
            ),
            d => panic!("round {round}: {d} versions from one UPDATE"),
        }
        let named = named_by_versions(&http, &server.url, "big", now).await;
        let on_disk = data_files(dir.path(), "big");
        let orphans: Vec<_> = on_disk.difference(&named).collect();
        assert!(
            orphans.is_empty(),
            "round {round} (killed at {at} ms): orphans {orphans:?}"
        );
        let journal = dir.path().join("objects/_sql/inflight");
        let left: Vec<_> = std::fs::read_dir(&journal)
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        assert!(left.is_empty(), "round {round}: journal entries {left:?}");
    }
}
