//! The acceptance suite, for both deployments: all-in-one (`lakehouse serve`)
//! and split (one process per service behind `--only gateway`), each with
//! auth on. The README journey through the CLI, the seed's smokes, `kill -9`
//! of each process in the middle of writes, and every role against every
//! route class.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{ADMIN, Cluster, READER, Server, WRITER, run_cli, token_env};

impl Cluster {
    /// Starts `name` again on its old address and waits until the front
    /// door reports every service ready.
    async fn restart(&mut self, name: &str) {
        let data = self.data();
        tokio::task::block_in_place(|| self.proc(name).spawn(&data));
        self.wait_ready().await;
    }

    async fn wait_ready(&self) {
        let http = client(Some(READER));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = http.get(format!("{}/ready", self.front())).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            assert!(Instant::now() < deadline, "not ready within 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs the CLI against the front door (blocking: a child process).
    fn cli(&self, token: &str, args: &[&str]) -> (bool, String, String) {
        let url = self.front();
        let (st, out, err) = tokio::task::block_in_place(|| {
            run_cli(args, &[("LAKEHOUSE_URL", &url), ("LAKEHOUSE_TOKEN", token)])
        });
        (st.success(), out, err)
    }
}

/// The services' own client builder, with `token` and a per-request timeout.
fn client_with(token: Option<&str>, timeout: Duration) -> reqwest::Client {
    use lakehouse_common::{ClientOptions, http_client};
    http_client(&ClientOptions::with_token(token.map(str::to_string)).timeout(timeout))
}

fn client(token: Option<&str>) -> reqwest::Client {
    client_with(token, Duration::from_secs(60))
}

/// POSTs `body` as JSON; the status and the parsed answer.
async fn post_json(
    c: &reqwest::Client,
    url: impl reqwest::IntoUrl,
    body: &impl serde::Serialize,
) -> (StatusCode, Value) {
    json_of(c.post(url).json(body).send().await.unwrap()).await
}

async fn json_of(r: reqwest::Response) -> (StatusCode, Value) {
    let s = r.status();
    let b = r.bytes().await.unwrap();
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

fn vector(i: usize, dim: usize) -> Vec<f32> {
    (0..dim)
        .map(|d| ((i as f32 + 1.0) * (d as f32 + 1.37) * 0.731).sin())
        .collect()
}

// ---------------------------------------------------------------- journey

/// The README journey, through the CLI: ingest a CSV, list datasets, query
/// it (and through HTTP in every format), vectors create / add / search / drop.
async fn journey(c: &Cluster) {
    let work = c.dir.path().join("journey");
    std::fs::create_dir_all(&work).unwrap();
    let csv = work.join("people.csv");
    let mut text = String::from("id,name,score\n");
    for i in 0..100 {
        text.push_str(&format!("{i},person {i},{}.5\n", i % 7));
    }
    std::fs::write(&csv, text).unwrap();
    let (ok, out, err) = c.cli(
        WRITER,
        &[
            "ingest",
            csv.to_str().unwrap(),
            "--dataset",
            "people",
            "--quiet",
        ],
    );
    assert!(ok, "ingest: {out}\n{err}");
    let (ok, out, err) = c.cli(READER, &["datasets"]);
    assert!(
        ok && out.contains("people") && out.contains("100"),
        "{out}\n{err}"
    );
    let (ok, out, err) = c.cli(
        READER,
        &["sql", "SELECT count(*) AS n, sum(score) AS s FROM people"],
    );
    assert!(ok && out.contains("100"), "{out}\n{err}");
    let (ok, out, _) = c.cli(
        READER,
        &[
            "sql",
            "--format",
            "csv",
            "SELECT name FROM people WHERE id = 42",
        ],
    );
    assert!(ok && out.contains("person 42"), "{out}");

    // Every output format, parsed back.
    let http = client(Some(READER));
    let sql = "SELECT id, name, score FROM people ORDER BY id";
    let fetch = |format: &'static str| {
        let http = http.clone();
        let url = format!("{}/query/sql?format={format}", c.front());
        async move {
            let r = http
                .post(url)
                .json(&json!({ "sql": sql }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::OK, "{format}");
            r.bytes().await.unwrap()
        }
    };
    let rows: Value = serde_json::from_slice(&fetch("json").await).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 100);
    assert_eq!(rows[42]["name"], "person 42");
    let nd = fetch("ndjson").await;
    assert_eq!(
        nd.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count(),
        100
    );
    let csv_out = String::from_utf8(fetch("csv").await.to_vec()).unwrap();
    assert_eq!(csv_out.lines().count(), 101, "header + 100 rows");
    let ipc = fetch("arrow").await;
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(ipc), None).unwrap();
    let n: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(n, 100);
    let pq = fetch("parquet").await;
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(pq)
        .unwrap()
        .build()
        .unwrap();
    let n: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(n, 100);

    // Vectors.
    let (ok, out, err) = c.cli(
        WRITER,
        &[
            "vectors", "create", "journey", "--dim", "8", "--metric", "l2",
        ],
    );
    assert!(ok, "{out}\n{err}");
    let items = work.join("items.ndjson");
    let lines: Vec<String> = (0..200)
        .map(|i| {
            json!({"id": format!("v{i}"), "vector": vector(i, 8), "metadata": {"even": i % 2 == 0}})
                .to_string()
        })
        .collect();
    std::fs::write(&items, lines.join("\n")).unwrap();
    let (ok, out, err) = c.cli(
        WRITER,
        &[
            "vectors",
            "add",
            "journey",
            items.to_str().unwrap(),
            "--batch",
            "64",
        ],
    );
    assert!(ok, "{out}\n{err}");
    let q = serde_json::to_string(&vector(17, 8)).unwrap();
    let (ok, out, err) = c.cli(
        READER,
        &["vectors", "search", "journey", "--vector", &q, "-k", "3"],
    );
    assert!(ok && out.contains("v17"), "{out}\n{err}");
    let (ok, out, _) = c.cli(READER, &["vectors", "list"]);
    assert!(ok && out.contains("journey"), "{out}");
    // Dropping needs admin: the writer is refused, the admin is not.
    let (ok, _, err) = c.cli(WRITER, &["vectors", "drop", "journey"]);
    assert!(!ok && err.contains("admin"), "{err}");
    let (ok, out, err) = c.cli(ADMIN, &["vectors", "drop", "journey"]);
    assert!(ok, "{out}\n{err}");
    let (ok, out, _) = c.cli(READER, &["vectors", "list"]);
    assert!(ok && !out.contains("journey"), "{out}");

    // Status: every service ready.
    let (ok, out, err) = c.cli(READER, &["status"]);
    assert!(ok && out.contains(": ready"), "{out}\n{err}");
    for s in ["storaged", "catalogd", "vectord"] {
        assert!(out.contains(s), "{out}");
    }
    let (ok, _, err) = c.cli("", &["status"]);
    assert!(!ok && err.contains("token"), "{err}");
}

// ---------------------------------------------------------------- smokes

/// The seed's acceptance smokes: storaged round trip, catalog register /
/// idempotent re-register / 409 / restart, vectors create / add / search /
/// delete / restart with exact results. `restart` restarts the processes
/// that hold the state (the catalog's and vectord's).
async fn smokes(c: &mut Cluster) {
    let admin = client(Some(ADMIN));
    let front = c.front();
    // storaged round trip.
    let body: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let url = format!("{front}/storage/objects/smoke/blob.bin");
    let r = admin.put(&url).body(body.clone()).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let got = admin.get(&url).send().await.unwrap().bytes().await.unwrap();
    assert_eq!(&got[..], &body[..]);
    let r = admin
        .get(&url)
        .header("range", "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(&r.bytes().await.unwrap()[..], &body[1000..2000]);
    let r = admin.head(&url).send().await.unwrap();
    assert_eq!(r.headers()["content-length"], "300000");
    assert_eq!(
        admin.delete(&url).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        admin.delete(&url).send().await.unwrap().status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        admin.get(&url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    // catalog: register, idempotent re-register, 409.
    let reg = |fp: &str, objects: Value| json!({"name": "smoke/events", "schema_fingerprint": fp, "objects": objects, "row_count": 3});
    let (s, first) = post_json(
        &admin,
        format!("{front}/catalog/register"),
        &reg(
            "fp-1",
            json!([{"key": "datasets/smoke/a.parquet", "size": 10, "row_count": 3}]),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(first["existing"], false);
    let id = first["manifest"]["dataset_id"].clone();
    let (s, again) = post_json(
        &admin,
        format!("{front}/catalog/register"),
        &reg(
            "fp-1",
            json!([{"key": "datasets/smoke/b.parquet", "size": 20, "row_count": 3}]),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{again}");
    assert_eq!(again["existing"], true);
    assert_eq!(again["manifest"]["dataset_id"], id);
    assert_eq!(
        again["manifest"]["created_at"],
        first["manifest"]["created_at"]
    );
    let (s, conflict) = post_json(
        &admin,
        format!("{front}/catalog/register"),
        &reg("fp-2", json!([])),
    )
    .await;
    assert_eq!(s, StatusCode::CONFLICT, "{conflict}");

    // vectors: create, add, search (exact), delete one, search.
    let v = format!("{front}/vectors/indexes");
    let (s, _) = post_json(
        &admin,
        &v,
        &json!({"name": "smoke", "dim": 12, "metric": "cosine"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let items: Vec<Value> = (0..300)
        .map(|i| json!({"id": format!("s{i}"), "vector": vector(i, 12), "metadata": {"i": i}}))
        .collect();
    let (s, added) = post_json(&admin, format!("{v}/smoke/add"), &json!({ "items": items })).await;
    assert_eq!(s, StatusCode::OK, "{added}");
    let search = |i: usize| {
        let admin = admin.clone();
        let front = front.clone();
        // Restarts keep every address, so the front door stays put.
        let url = format!("{front}/vectors/indexes/smoke/search");
        async move {
            let (s, hits) = post_json(
                &admin,
                url,
                &json!({"vector": vector(i, 12), "k": 5, "ef": 200}),
            )
            .await;
            assert_eq!(s, StatusCode::OK, "{hits}");
            hits
        }
    };
    let before = search(7).await;
    assert_eq!(before[0]["id"], "s7");
    assert!(
        before[0]["distance"].as_f64().unwrap().abs() < 1e-5,
        "{before}"
    );
    let r = admin
        .delete(format!("{v}/smoke/items/s8"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let after_delete = search(8).await;
    assert!(
        after_delete
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["id"] != "s8")
    );
    let probes = [0usize, 7, 8, 150, 299];
    let mut answers = Vec::new();
    for &i in &probes {
        answers.push(search(i).await);
    }

    // Restart what holds state; everything reads back the same.
    let stateful: Vec<&str> = if c.split {
        vec!["catalogd", "vectord"]
    } else {
        vec!["lakehouse"]
    };
    for name in &stateful {
        c.kill9(name);
        c.restart(name).await;
    }
    let front = c.front();
    let (s, m) = json_of(
        admin
            .get(format!("{front}/catalog/manifest/smoke/events"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(m["dataset_id"], id);
    assert_eq!(m["objects"][0]["key"], "datasets/smoke/b.parquet");
    for (n, &i) in probes.iter().enumerate() {
        assert_eq!(
            search(i).await,
            answers[n],
            "search for s{i} changed across the restart"
        );
    }
    let (s, info) = json_of(
        admin
            .get(format!("{front}/vectors/indexes/smoke"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(info["count"], 299);
    let r = admin
        .delete(format!("{front}/vectors/indexes/smoke"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

// ---------------------------------------------------------------- auth

/// method, path, JSON body, raw body, the role it needs.
type Route = (
    &'static str,
    String,
    Option<Value>,
    Option<&'static str>,
    lakehouse_common::Role,
);

/// Every role against every route class: 401 without or with a wrong token,
/// 403 below the route's role, never either at or above it.
async fn auth_matrix(front: &str) {
    use lakehouse_common::Role::{self, *};
    let csv = "a,b\n1,2\n";
    let routes: Vec<Route> = vec![
        ("GET", "/ready".into(), None, None, Read),
        ("GET", "/metrics".into(), None, None, Read),
        (
            "GET",
            "/storage/list?prefix=authz/".into(),
            None,
            None,
            Read,
        ),
        ("GET", "/catalog/list".into(), None, None, Read),
        (
            "POST",
            "/query/sql".into(),
            Some(json!({"sql": "SELECT 1 AS x"})),
            None,
            Read,
        ),
        ("GET", "/vectors/indexes".into(), None, None, Read),
        (
            "POST",
            "/ingest/authz_t?format=csv".into(),
            None,
            Some(csv),
            Write,
        ),
        (
            "POST",
            "/catalog/register".into(),
            Some(json!({"name": "authz/reg", "schema_fingerprint": "f", "objects": []})),
            None,
            Write,
        ),
        (
            "POST",
            "/vectors/indexes".into(),
            Some(json!({"name": "authz", "dim": 2, "metric": "l2"})),
            None,
            Write,
        ),
        (
            "POST",
            "/vectors/indexes/authz/add".into(),
            Some(json!({"items": [{"id": "a", "vector": [1.0, 2.0]}]})),
            None,
            Write,
        ),
        (
            "POST",
            "/vectors/indexes/authz/search".into(),
            Some(json!({"vector": [1.0, 2.0], "k": 1})),
            None,
            Read,
        ),
        (
            "PUT",
            "/storage/objects/authz/x".into(),
            None,
            Some("raw"),
            Admin,
        ),
        (
            "DELETE",
            "/storage/objects/authz/x".into(),
            None,
            None,
            Admin,
        ),
        (
            "DELETE",
            "/vectors/indexes/authz/items/a".into(),
            None,
            None,
            Admin,
        ),
        (
            "DELETE",
            "/catalog/manifest/authz/reg".into(),
            None,
            None,
            Admin,
        ),
        ("GET", "/no/such/route".into(), None, None, Read),
    ];
    let tokens: [(Option<&str>, Option<Role>); 5] = [
        (None, None),
        (Some("not-a-valid-token-at-all-000"), None),
        (Some(READER), Some(Read)),
        (Some(WRITER), Some(Write)),
        (Some(ADMIN), Some(Admin)),
    ];
    for (token, role) in tokens {
        let http = client(token);
        for (method, path, body, raw, needed) in &routes {
            let mut rb = http.request(method.parse().unwrap(), format!("{front}{path}"));
            if let Some(b) = body {
                rb = rb.json(b);
            }
            if let Some(r) = raw {
                rb = rb.body(r.to_string());
            }
            let resp = rb.send().await.unwrap();
            let status = resp.status();
            let www = resp.headers().get("www-authenticate").cloned();
            let text = resp.text().await.unwrap();
            let what = format!("{method} {path} with {role:?}: {status} {text}");
            match role {
                None => {
                    assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
                    assert!(www.is_some(), "{what}");
                    let v: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(v["error"]["code"], "unauthorized", "{what}");
                }
                Some(r) if r < *needed => {
                    assert_eq!(status, StatusCode::FORBIDDEN, "{what}");
                    let v: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(v["error"]["code"], "forbidden", "{what}");
                    assert!(
                        v["error"]["message"]
                            .as_str()
                            .unwrap()
                            .contains(needed.as_str()),
                        "{what}"
                    );
                }
                Some(_) => {
                    assert!(
                        status != StatusCode::UNAUTHORIZED
                            && status != StatusCode::FORBIDDEN
                            && !status.is_server_error(),
                        "{what}"
                    );
                }
            }
        }
    }
    // The one open route.
    let r = client(None)
        .get(format!("{front}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // Clean up what the matrix created.
    let admin = client(Some(ADMIN));
    let _ = admin
        .delete(format!("{front}/vectors/indexes/authz"))
        .send()
        .await
        .unwrap();
}

// ---------------------------------------------------------------- kill -9

/// What a writer has had acknowledged.
#[derive(Default)]
struct Acked {
    objects: Vec<(String, Vec<u8>)>,
    manifests: Vec<String>,
    batches: BTreeSet<u64>,
    vectors: Vec<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Writes {
    Objects,
    Manifests,
    Ingests,
    Vectors,
}

/// Writes of `kind` in a loop through the front door until `stop`, recording
/// each acknowledged one. Failures (the target is down) are expected.
async fn writer(
    front: String,
    kind: Writes,
    tag: String,
    acked: Arc<Mutex<Acked>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::Ordering;
    let http = client_with(Some(ADMIN), Duration::from_secs(20));
    let mut i: u64 = 0;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let ok = match kind {
            Writes::Objects => {
                let key = format!("kill/{tag}/{i}");
                let body: Vec<u8> = (0..(64 << 10))
                    .map(|j| ((j as u64 * 31 + i) % 251) as u8)
                    .collect();
                let r = http
                    .put(format!("{front}/storage/objects/{key}"))
                    .body(body.clone())
                    .send()
                    .await;
                let ok = matches!(&r, Ok(r) if r.status().is_success());
                if ok {
                    acked.lock().unwrap().objects.push((key, body));
                }
                ok
            }
            Writes::Manifests => {
                let name = format!("kill/{tag}/m{i}");
                let r = http
                    .post(format!("{front}/catalog/register"))
                    .json(&json!({"name": name, "schema_fingerprint": "fp", "objects": [{"key": format!("x/{i}"), "size": i, "row_count": i}], "row_count": i}))
                    .send()
                    .await;
                let ok = matches!(&r, Ok(r) if r.status().is_success());
                if ok {
                    acked.lock().unwrap().manifests.push(name);
                }
                ok
            }
            Writes::Ingests => {
                let mut csv = String::from("batch,n\n");
                for n in 0..50 {
                    csv.push_str(&format!("{i},{n}\n"));
                }
                let r = http
                    .post(format!("{front}/ingest/kill_{tag}?format=csv&mode=append"))
                    .header("idempotency-key", format!("{tag}-{i}"))
                    .body(csv)
                    .send()
                    .await;
                let ok = matches!(&r, Ok(r) if r.status().is_success());
                if ok {
                    acked.lock().unwrap().batches.insert(i);
                }
                ok
            }
            Writes::Vectors => {
                let base = i as usize * 20;
                let items: Vec<Value> = (base..base + 20)
                    .map(|j| json!({"id": format!("k{j}"), "vector": vector(j, 8)}))
                    .collect();
                let r = http
                    .post(format!("{front}/vectors/indexes/kill_{tag}/add"))
                    .json(&json!({ "items": items }))
                    .send()
                    .await;
                let ok = matches!(&r, Ok(r) if r.status().is_success());
                if ok {
                    acked.lock().unwrap().vectors.extend(base..base + 20);
                }
                ok
            }
        };
        if !ok {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn acked_count(a: &Acked) -> usize {
    a.objects.len() + a.manifests.len() + a.batches.len() + a.vectors.len() / 20
}

/// Waits until the writers have `n` more acknowledged writes than `from`.
async fn wait_acks(acked: &Arc<Mutex<Acked>>, from: usize, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while acked_count(&acked.lock().unwrap()) < from + n {
        assert!(Instant::now() < deadline, "writes stalled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every acknowledged write is there, read back through the front door.
async fn verify(front: &str, tag: &str, a: &Acked) {
    let http = client(Some(ADMIN));
    for (key, body) in &a.objects {
        let r = http
            .get(format!("{front}/storage/objects/{key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{key}");
        assert_eq!(&r.bytes().await.unwrap()[..], &body[..], "{key}");
    }
    for name in &a.manifests {
        let r = http
            .get(format!("{front}/catalog/manifest/{name}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{name}");
    }
    if !a.batches.is_empty() {
        let (s, rows) = post_json(
            &http,
            format!("{front}/query/sql"),
            &json!({"sql": format!("SELECT batch, count(*) AS n FROM kill_{tag} GROUP BY batch")}),
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{rows}");
        let present: BTreeSet<u64> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["batch"].as_u64().unwrap())
            .collect();
        for b in &a.batches {
            assert!(
                present.contains(b),
                "acknowledged ingest batch {b} is missing"
            );
        }
        for r in rows.as_array().unwrap() {
            assert_eq!(r["n"], 50, "a batch is whole or absent: {r}");
        }
    }
    if !a.vectors.is_empty() {
        let (s, info) = json_of(
            http.get(format!("{front}/vectors/indexes/kill_{tag}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
        assert!(
            info["count"].as_u64().unwrap() as usize >= a.vectors.len(),
            "{info}"
        );
        for &j in a.vectors.iter().step_by(7) {
            let (s, hits) = post_json(
                &http,
                format!("{front}/vectors/indexes/kill_{tag}/search"),
                &json!({"vector": vector(j, 8), "k": 1, "ef": 100}),
            )
            .await;
            assert_eq!(s, StatusCode::OK);
            assert_eq!(hits[0]["id"], format!("k{j}"), "acknowledged vector k{j}");
            assert!(hits[0]["distance"].as_f64().unwrap().abs() < 1e-5);
        }
    }
}

/// Runs `kinds` writers, `kill -9`s `victim` once they are going, restarts it
/// while they keep writing, then checks every acknowledged write.
async fn kill_during_writes(c: &mut Cluster, victim: &str, kinds: &[Writes]) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let tag = victim.to_string();
    let admin = client(Some(ADMIN));
    if kinds.contains(&Writes::Vectors) {
        let r = admin
            .post(format!("{}/vectors/indexes", c.front()))
            .json(&json!({"name": format!("kill_{tag}"), "dim": 8, "metric": "l2"}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    let acked = Arc::new(Mutex::new(Acked::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = kinds
        .iter()
        .map(|&k| {
            tokio::spawn(writer(
                c.front(),
                k,
                tag.clone(),
                acked.clone(),
                stop.clone(),
            ))
        })
        .collect();
    wait_acks(&acked, 0, 4 * kinds.len()).await;
    c.kill9(victim);
    let at_kill = acked_count(&acked.lock().unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.restart(victim).await;
    // Writes resume after the restart.
    wait_acks(&acked, at_kill, 3 * kinds.len()).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.unwrap();
    }
    let a = std::mem::take(&mut *acked.lock().unwrap());
    verify(&c.front(), &tag, &a).await;
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_in_one_acceptance() {
    let mut c = tokio::task::block_in_place(Cluster::all_in_one);
    journey(&c).await;
    auth_matrix(&c.front()).await;
    smokes(&mut c).await;
    kill_during_writes(
        &mut c,
        "lakehouse",
        &[
            Writes::Objects,
            Writes::Manifests,
            Writes::Ingests,
            Writes::Vectors,
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_acceptance() {
    let mut c = tokio::task::block_in_place(Cluster::split);
    c.wait_ready().await;
    journey(&c).await;
    auth_matrix(&c.front()).await;
    // The daemons check tokens themselves too, not only the gateway.
    let storaged = c.proc("storaged").url();
    let r = client(None)
        .get(format!("{storaged}/storage/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    smokes(&mut c).await;

    // kill -9 of each process in turn, in the middle of the writes it serves
    // (queryd and the gateway hold no state: writes go on around them).
    kill_during_writes(&mut c, "storaged", &[Writes::Objects, Writes::Ingests]).await;
    kill_during_writes(&mut c, "catalogd", &[Writes::Manifests, Writes::Ingests]).await;
    kill_during_writes(&mut c, "ingestd", &[Writes::Ingests]).await;
    kill_during_writes(&mut c, "vectord", &[Writes::Vectors]).await;
    kill_during_writes(&mut c, "queryd", &[Writes::Ingests]).await;
    kill_during_writes(&mut c, "gateway", &[Writes::Objects, Writes::Vectors]).await;

    // A daemon that is down: the gateway says so, and `status` too.
    c.kill9("queryd");
    let (s, v) = json_of(
        client(Some(READER))
            .post(format!("{}/query/sql", c.front()))
            .json(&json!({"sql": "SELECT 1"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"]["code"], "upstream_unavailable");
    let (ok, out, _) = c.cli(READER, &["status"]);
    assert!(
        !ok && out.contains("NOT READY") && out.contains("DOWN"),
        "{out}"
    );
}

/// A 1 GiB upload through the gateway is streamed, never held in memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_streams_a_gibibyte() {
    let c = tokio::task::block_in_place(Cluster::split);
    let pid = c.procs.last().unwrap().server.as_ref().unwrap().pid();
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 1024;
    let chunk = bytes::Bytes::from((0..CHUNK).map(|i| (i % 253) as u8).collect::<Vec<u8>>());
    let stream =
        futures::stream::iter((0..CHUNKS).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
    let http = client(Some(ADMIN));
    let url = format!("{}/storage/objects/big/gib.bin", c.front());
    let r = http
        .put(&url)
        .header("content-length", (CHUNK * CHUNKS).to_string())
        .body(reqwest::Body::wrap_stream(stream))
        .timeout(Duration::from_secs(600))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let head = http.head(&url).send().await.unwrap();
    assert_eq!(
        head.headers()["content-length"],
        (CHUNK * CHUNKS).to_string()
    );
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(
        hwm_kib < 200 * 1024,
        "gateway peak RSS {hwm_kib} KiB: the body was buffered"
    );
    let r = http.delete(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
}

/// Without tokens the server refuses a non-loopback address unless told.
#[test]
fn no_tokens_means_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (st, _, err) = run_cli(&["serve", "--bind", "0.0.0.0:0", "--data-dir", d], &[]);
    assert!(!st.success());
    assert!(
        err.contains("refusing to serve") && err.contains("allow_public_without_auth"),
        "{err}"
    );
    assert!(
        !dir.path().join("objects").exists(),
        "refused before touching the data directory"
    );
    // With tokens it serves; with the explicit opt-out too.
    let (k, v) = token_env();
    let s = Server::start_at("0.0.0.0:0", dir.path(), &[], &[(&k, &v)]);
    drop(s);
    let s = Server::start_at(
        "0.0.0.0:0",
        dir.path(),
        &[],
        &[("LAKEHOUSE__AUTH__ALLOW_PUBLIC_WITHOUT_AUTH", "true")],
    );
    drop(s);
    // A bad token configuration stops start-up with a clear message.
    let (st, _, err) = run_cli(
        &["serve", "--bind", "127.0.0.1:0", "--data-dir", d],
        &[("LAKEHOUSE__AUTH__TOKENS", "x:read:short")],
    );
    assert!(!st.success() && err.contains("at least 16"), "{err}");
}

/// Tokens never reach the logs, even at debug level: neither the ones users
/// present (valid, invalid, too weak) nor the one daemons use between them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_never_reach_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let (k, v) = token_env();
    let env = [(k.as_str(), v.as_str()), ("LAKEHOUSE_LOG", "debug")];
    let log_path = |name: &str| dir.path().join(format!("{name}.log"));
    let spawn = |name: &str, args: &[&str], extra: &[(&str, &str)]| {
        let f = std::fs::File::create(log_path(name)).unwrap();
        let mut e: Vec<(&str, &str)> = env.to_vec();
        e.extend_from_slice(extra);
        tokio::task::block_in_place(|| {
            Server::start_logged("127.0.0.1:0", &dir.path().join("data"), args, &e, f.into())
        })
    };
    let storaged = spawn("storaged", &["--only", "storaged"], &[]);
    let catalogd = spawn(
        "catalogd",
        &["--only", "catalogd"],
        &[("LAKEHOUSE__CATALOGD__STORAGED_URL", storaged.url.as_str())],
    );
    let secret_guess = "a-wrong-token-that-must-not-be-logged";
    for token in [Some(ADMIN), Some(READER), Some(secret_guess), None] {
        let http = client(token);
        let _ = http
            .post(format!("{}/catalog/register", catalogd.url))
            .json(&json!({"name": "logged", "schema_fingerprint": "f", "objects": []}))
            .send()
            .await
            .unwrap();
        let _ = http
            .get(format!("{}/catalog/list", catalogd.url))
            .send()
            .await
            .unwrap();
        let _ = http
            .put(format!("{}/storage/objects/x", storaged.url))
            .body("x")
            .send()
            .await
            .unwrap();
    }
    // Something happened and was logged (so the check below can fail).
    let r = client(Some(READER))
        .get(format!("{}/catalog/manifest/logged", catalogd.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the admin's register went through"
    );
    drop(catalogd);
    drop(storaged);
    for name in ["storaged", "catalogd"] {
        let log = std::fs::read_to_string(log_path(name)).unwrap();
        assert!(
            log.contains("forbidden") || log.contains("request"),
            "{name} logged nothing:\n{log}"
        );
        for t in [ADMIN, READER, WRITER, secret_guess] {
            assert!(!log.contains(t), "{name}'s log contains a token");
        }
        assert!(
            !log.to_ascii_lowercase().contains("bearer "),
            "{name}'s log shows an Authorization header"
        );
    }
}

/// One request id shows in every daemon's log the request passes through:
/// catalogd's persist to storaged, ingestd's registration in catalogd.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_ids_follow_requests_across_daemons() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = |name: &str| dir.path().join(format!("{name}.log"));
    let spawn = |name: &str, args: &[&str], extra: &[(&str, &str)]| {
        let f = std::fs::File::create(log_path(name)).unwrap();
        let mut e: Vec<(&str, &str)> = vec![("LAKEHOUSE_LOG", "debug")];
        e.extend_from_slice(extra);
        tokio::task::block_in_place(|| {
            Server::start_logged("127.0.0.1:0", &dir.path().join("data"), args, &e, f.into())
        })
    };
    let storaged = spawn("storaged", &["--only", "storaged"], &[]);
    let catalogd = spawn(
        "catalogd",
        &["--only", "catalogd"],
        &[("LAKEHOUSE__CATALOGD__STORAGED_URL", storaged.url.as_str())],
    );
    let spool = dir.path().join("spool");
    let ingestd = spawn(
        "ingestd",
        &["--only", "ingestd"],
        &[
            ("LAKEHOUSE__INGESTD__STORAGED_URL", storaged.url.as_str()),
            ("LAKEHOUSE__INGESTD__CATALOGD_URL", catalogd.url.as_str()),
            ("LAKEHOUSE__INGESTD__SPOOL_DIR", spool.to_str().unwrap()),
        ],
    );
    let http = client(None);
    let r = http
        .post(format!("{}/catalog/register", catalogd.url))
        .header("x-request-id", "trace-register-0042")
        .json(&json!({"name": "traced", "schema_fingerprint": "f", "objects": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["x-request-id"], "trace-register-0042");
    let r = http
        .post(format!("{}/ingest/traced_ingest?format=csv", ingestd.url))
        .header("x-request-id", "trace-ingest-0043")
        .body("a,b\n1,2\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    drop(ingestd);
    drop(catalogd);
    drop(storaged);
    let storaged_log = std::fs::read_to_string(log_path("storaged")).unwrap();
    let catalogd_log = std::fs::read_to_string(log_path("catalogd")).unwrap();
    assert!(
        storaged_log.contains("trace-register-0042"),
        "catalogd's write to storaged carries the id"
    );
    assert!(
        catalogd_log.contains("trace-ingest-0043"),
        "ingestd's registration in catalogd carries the id"
    );
    // And it went one hop further: catalogd persisted that registration.
    assert!(storaged_log.contains("trace-ingest-0043"));
}
