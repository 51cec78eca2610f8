//! catalogd end to end through the real binary: register over HTTP,
//! idempotency, conflicts, `kill -9` and restart, a corrupt manifest stopping
//! start-up, `--only catalogd` against a remote storaged, and
//! `lakehouse datasets`; and, with auth on, that no role changes what it does
//! not own: a `write` token cannot register or delete another dataset's
//! objects, manifests or vector logs, and a manifest that lists them is
//! quarantined at start-up.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Server, parquet_file, run_cli};

async fn register(http: &reqwest::Client, url: &str, body: Value) -> (StatusCode, Value) {
    let resp = http
        .post(format!("{url}/catalog/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

async fn get_json(http: &reqwest::Client, url: &str) -> (StatusCode, Value) {
    let resp = http.get(url).send().await.unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap())
}

fn dataset(name: &str, fp: &str, parts: u64) -> Value {
    let objects: Vec<Value> = (0..parts)
        .map(|i| json!({"key": format!("datasets/{name}/part-{i}.parquet"), "size": 1000 + i, "row_count": 10 * (i + 1)}))
        .collect();
    json!({"name": name, "schema_fingerprint": fp, "objects": objects})
}

/// Stores the objects a register body lists (real Parquet files of the
/// stated size and row count) through `storage_url`, then returns the body.
async fn stored(http: &reqwest::Client, storage_url: &str, body: Value) -> Value {
    for o in body["objects"].as_array().unwrap() {
        let bytes = parquet_file(
            o["row_count"].as_u64().unwrap(),
            o["size"].as_u64().unwrap() as usize,
        );
        let r = http
            .put(format!(
                "{storage_url}/storage/objects/{}",
                o["key"].as_str().unwrap()
            ))
            .body(bytes)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
    body
}

/// `lakehouse serve` that is expected to fail at start-up: returns its exit
/// status and stderr, or panics if it is still running after 60 s.
fn serve_expecting_failure(
    data_dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (std::process::ExitStatus, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lakehouse"));
    cmd.args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(args)
        .env("LAKEHOUSE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn lakehouse");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("wait").is_some() {
            let out = child.wait_with_output().expect("output");
            return (
                out.status,
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("lakehouse serve kept running; it should have refused to start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn register_conflict_kill_9_and_restart_keep_every_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[], &[]);
    let http = reqwest::Client::new();
    let url = server.url.clone();

    let (s, first) = register(
        &http,
        &url,
        stored(&http, &url, dataset("orders", "fp-a", 2)).await,
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(first["existing"], false);
    // Independently computed UUIDv5 (see the catalogd tests).
    assert_eq!(
        first["manifest"]["dataset_id"],
        "1f2906ae-f562-564c-aa86-f487c2afa750"
    );
    assert_eq!(first["manifest"]["row_count"], 30);

    let (s, again) = register(
        &http,
        &url,
        stored(&http, &url, dataset("orders", "fp-a", 3)).await,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(again["existing"], true);
    assert_eq!(
        again["manifest"]["dataset_id"],
        first["manifest"]["dataset_id"]
    );
    assert_eq!(
        again["manifest"]["created_at"],
        first["manifest"]["created_at"]
    );
    assert_eq!(again["manifest"]["version"], 2);
    assert_eq!(again["manifest"]["objects"].as_array().unwrap().len(), 3);

    let (s, conflict) = register(&http, &url, dataset("orders", "fp-b", 1)).await;
    assert_eq!(s, StatusCode::CONFLICT);
    assert_eq!(conflict["error"]["code"], "fingerprint_conflict");

    for name in ["tpch/lineitem", "tpch/orders", "events-2024.v1"] {
        let (s, v) = register(
            &http,
            &url,
            stored(&http, &url, dataset(name, "fp", 1)).await,
        )
        .await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let (s, before) = get_json(&http, &format!("{url}/catalog/list")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(before["count"], 4);
    let (s, ready) = get_json(&http, &format!("{url}/ready")).await;
    assert_eq!(s, StatusCode::OK, "{ready}");
    assert_eq!(ready["checks"]["catalogd"]["ok"], true);

    let old_pid = server.pid();
    server.kill9();
    let server = Server::start(dir.path(), &[], &[]);
    assert_ne!(server.pid(), old_pid);
    let (_, after) = get_json(&http, &format!("{}/catalog/list", server.url)).await;
    assert_eq!(
        after, before,
        "the restarted catalog serves the same manifests"
    );
    let (s, m) = get_json(
        &http,
        &format!("{}/catalog/manifest/tpch/lineitem", server.url),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(m["dataset_id"], "216616c3-6a1f-5e89-b1bb-6ab388af2ff7");

    // Registers continue from the persisted version.
    let (_, v) = register(&http, &server.url, dataset("orders", "fp-a", 1)).await;
    assert_eq!(v["manifest"]["version"], 3);
    assert_eq!(v["existing"], true);
}

#[tokio::test]
async fn a_corrupt_manifest_stops_start_up_naming_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let manifests = {
        let mut server = Server::start(dir.path(), &[], &[]);
        let http = reqwest::Client::new();
        let body = stored(&http, &server.url, dataset("good", "fp", 1)).await;
        let (s, _) = register(&http, &server.url, body).await;
        assert_eq!(s, StatusCode::OK);
        assert!(server.terminate().success());
        // The fs backend keeps object keys under <data_dir>/objects/.
        server.data_dir.join("objects/_catalog/manifests")
    };
    assert!(
        manifests.join("good.parquet").is_file(),
        "the fs backend layout changed"
    );
    std::fs::write(manifests.join("bad.parquet"), b"definitely not parquet").unwrap();

    let (status, stderr) = serve_expecting_failure(dir.path(), &[], &[]);
    assert!(!status.success());
    assert!(
        stderr.contains("_catalog/manifests/bad.parquet"),
        "stderr: {stderr}"
    );

    // Removing the bad object lets it start again, with the good dataset.
    std::fs::remove_file(manifests.join("bad.parquet")).unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    let (s, _) = get_json(
        &reqwest::Client::new(),
        &format!("{}/catalog/manifest/good", server.url),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn only_catalogd_uses_a_remote_storaged() {
    let storaged_dir = tempfile::tempdir().unwrap();
    let catalogd_dir = tempfile::tempdir().unwrap();
    let storaged = Server::start(storaged_dir.path(), &["--only", "storaged"], &[]);
    let env = [("LAKEHOUSE__CATALOGD__STORAGED_URL", storaged.url.as_str())];
    let mut catalogd = Server::start(catalogd_dir.path(), &["--only", "catalogd"], &env);
    let http = reqwest::Client::new();

    let body = stored(&http, &storaged.url, dataset("remote/ds", "fp", 2)).await;
    let (s, v) = register(&http, &catalogd.url, body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    // The manifest lives in storaged, not in catalogd's data dir.
    let resp = http
        .get(format!(
            "{}/storage/objects/_catalog/manifests/remote/ds.parquet",
            storaged.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(!catalogd_dir.path().join("objects").exists());
    // catalogd serves no storage routes of its own.
    let resp = http
        .get(format!("{}/storage/list", catalogd.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    catalogd.kill9();
    let catalogd = Server::start(catalogd_dir.path(), &["--only", "catalogd"], &env);
    let (s, m) = get_json(
        &http,
        &format!("{}/catalog/manifest/remote/ds", catalogd.url),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(m["manifest"], Value::Null);
    assert_eq!(m["objects"].as_array().unwrap().len(), 2);

    // Without a storaged URL it refuses to start, saying what is missing.
    let (status, stderr) =
        serve_expecting_failure(catalogd_dir.path(), &["--only", "catalogd"], &[]);
    assert!(!status.success());
    assert!(stderr.contains("storaged_url"), "stderr: {stderr}");
}

#[tokio::test]
async fn datasets_command_lists_and_shows() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    let http = reqwest::Client::new();
    let url = server.url.clone();
    let url = url.as_str();

    let (status, out, _) = run_cli(&["datasets", "--url", url], &[]);
    assert!(status.success());
    assert_eq!(out, "no datasets\n");

    register(
        &http,
        url,
        stored(&http, url, dataset("tpch/lineitem", "fp", 3)).await,
    )
    .await;
    register(&http, url, stored(&http, url, dataset("a", "fp", 1)).await).await;
    // The URL can come from the environment too.
    let (status, out, err) = run_cli(&["datasets"], &[("LAKEHOUSE_URL", url)]);
    assert!(status.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "ROWS", "OBJECTS", "SIZE", "VERSION", "UPDATED"]
    );
    let row: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(&row[..4], ["tpch/lineitem", "60", "3", "2.9"], "{out}");
    assert!(lines[1].starts_with("a "), "sorted by name: {out}");
    assert_eq!(lines[3], "2 datasets");

    let (status, out, err) = run_cli(&["datasets", "show", "tpch/lineitem", "--url", url], &[]);
    assert!(status.success(), "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    let (_, served) = get_json(&http, &format!("{url}/catalog/manifest/tpch/lineitem")).await;
    assert_eq!(shown, served);

    let (status, _, err) = run_cli(&["datasets", "show", "nope", "--url", url], &[]);
    assert!(!status.success());
    assert!(err.contains("no dataset named \"nope\""), "{err}");

    // An unreachable server is a clear error, not a panic.
    drop(server);
    let (status, _, err) = run_cli(&["datasets", "--url", url], &[]);
    assert!(!status.success());
    assert!(err.contains("unavailable"), "{err}");
}

// ------------------------------------------------- nobody changes what it does not own

const READER: &str = "reader-token-0123456789abcdef";
const WRITER: &str = "writer-token-0123456789abcdef";
const ADMIN: &str = "admin-token-0123456789abcdef";

fn auth_env() -> (&'static str, String) {
    (
        "LAKEHOUSE__AUTH__TOKENS",
        format!("reader:read:{READER},writer:write:{WRITER},admin:admin:{ADMIN}"),
    )
}

fn client(token: &str) -> reqwest::Client {
    use lakehouse_common::{ClientOptions, http_client};
    http_client(
        &ClientOptions::with_token(Some(token.to_string())).timeout(Duration::from_secs(60)),
    )
}

async fn send_json(req: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let r = req.send().await.unwrap();
    let s = r.status();
    let b = r.bytes().await.unwrap();
    (s, serde_json::from_slice(&b).unwrap_or(Value::Null))
}

/// Every key in the store, with its size.
async fn all_objects(url: &str) -> Vec<(String, u64)> {
    let (s, v) = send_json(client(READER).get(format!("{url}/storage/list?limit=10000"))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["next"], Value::Null, "one page");
    v["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["key"].as_str().unwrap().to_string(),
                o["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn ingest(
    url: &str,
    token: &str,
    dataset: &str,
    mode: &str,
    csv: String,
) -> (StatusCode, Value) {
    send_json(
        client(token)
            .post(format!("{url}/ingest/{dataset}?format=csv&mode={mode}"))
            .body(csv),
    )
    .await
}

fn csv_rows(n: usize) -> String {
    let mut s = String::from("id,v\n");
    for i in 0..n {
        s.push_str(&format!("{i},{}\n", i * 3));
    }
    s
}

async fn count_rows(url: &str, dataset: &str) -> (StatusCode, Value) {
    send_json(
        client(READER)
            .post(format!("{url}/query/sql"))
            .json(&json!({"sql": format!("SELECT count(*) AS n FROM \"{dataset}\"")})),
    )
    .await
}

/// Admin-created data a `write` token must not be able to touch: a dataset
/// (and a nested one), and a vector index with a snapshot and log entries
/// after it. Returns the victim dataset's object keys.
async fn admin_creates_victims(url: &str) -> Vec<String> {
    let (s, v) = ingest(url, ADMIN, "victim", "append", csv_rows(100)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (s, v) = ingest(url, ADMIN, "victim/sub", "append", csv_rows(7)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let admin = client(ADMIN);
    let idx = format!("{url}/vectors/indexes");
    let (s, v) = send_json(
        admin
            .post(&idx)
            .json(&json!({"name": "docs", "dim": 4, "metric": "l2"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let add = |batch: usize| {
        let items: Vec<Value> = (batch * 4..batch * 4 + 4)
            .map(|i| json!({"id": format!("v{i}"), "vector": [i as f32, 1.0, 2.0, 3.0]}))
            .collect();
        send_json(
            admin
                .post(format!("{idx}/docs/add"))
                .json(&json!({"items": items})),
        )
    };
    for batch in 0..2 {
        let (s, v) = add(batch).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    // 8 items make a snapshot, in the background, which then deletes the
    // log entries it covers: wait for both; then one more batch stays in
    // the log.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let keys = all_objects(url).await;
        let snapshot = keys.iter().any(|(k, _)| k == "_vectors/docs.lhv1");
        if snapshot
            && !keys
                .iter()
                .any(|(k, _)| k.starts_with("_vectors/docs.wal/"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "no vector snapshot was taken");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, v) = add(2).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (_, m) = send_json(client(READER).get(format!("{url}/catalog/manifest/victim"))).await;
    m["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["key"].as_str().unwrap().to_string())
        .collect()
}

/// The attack of the hardening issue through the real binary: a `write`
/// token registers a dataset whose objects are another dataset's Parquet
/// files, manifests, vector logs and snapshots (400, naming the object),
/// then replaces its own dataset; nothing of the victims is deleted, and
/// after a restart the admin's datasets and vector index are intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_token_cannot_reach_objects_its_dataset_does_not_own() {
    let dir = tempfile::tempdir().unwrap();
    let (k, v) = auth_env();
    let env = [(k, v.as_str()), ("LAKEHOUSE__VECTORD__SNAPSHOT_EVERY", "8")];
    let mut server = Server::start(dir.path(), &[], &env);
    let url = server.url.clone();
    let victim_keys = admin_creates_victims(&url).await;
    let before = all_objects(&url).await;
    let size_of = |key: &str| before.iter().find(|(k, _)| k == key).map(|(_, s)| *s);
    let wal = before
        .iter()
        .find(|(k, _)| k.starts_with("_vectors/docs.wal/"))
        .expect("log entries after the snapshot")
        .0
        .clone();
    let nested = before
        .iter()
        .find(|(k, _)| k.starts_with("datasets/victim/sub/"))
        .unwrap()
        .0
        .clone();

    let (s, v) = ingest(&url, WRITER, "attacker", "append", csv_rows(3)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let fp = v["manifest"]["schema_fingerprint"].clone();
    let own = v["manifest"]["objects"][0].clone();
    let writer = client(WRITER);
    for key in [
        victim_keys[0].as_str(),
        "_catalog/manifests/victim.parquet",
        "_catalog/manifests/victim/sub.parquet",
        wal.as_str(),
        "_vectors/docs.lhv1",
        nested.as_str(),
        "../../etc/passwd",
    ] {
        let size = size_of(key).unwrap_or(10);
        let body = json!({"name": "attacker", "schema_fingerprint": fp, "objects": [
            own, {"key": key, "size": size, "row_count": 0}]});
        let (s, v) = send_json(writer.post(format!("{url}/catalog/register")).json(&body)).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{key}: {v}");
        assert_eq!(v["error"]["code"], "invalid_object", "{key}: {v}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(&format!("objects[1] {key:?}")), "{msg}");
    }
    // The dataset's own objects still register, and replace still works:
    // it deletes the attacker's old object and nothing else.
    for mode in ["append", "replace"] {
        let (s, v) = ingest(&url, WRITER, "attacker", mode, csv_rows(5)).await;
        assert_eq!(s, StatusCode::OK, "{mode}: {v}");
    }
    let after = all_objects(&url).await;
    for (key, size) in &before {
        if key.starts_with("datasets/attacker/") {
            continue;
        }
        assert!(
            after.contains(&(key.clone(), *size)),
            "{key} changed or vanished"
        );
    }

    // After a restart the admin's datasets and index are whole.
    assert!(server.terminate().success());
    let server = Server::start(dir.path(), &[], &env);
    let url = server.url.clone();
    for (dataset, rows) in [("victim", 100), ("victim/sub", 7), ("attacker", 5)] {
        let (s, v) = count_rows(&url, dataset).await;
        assert_eq!(s, StatusCode::OK, "{dataset}: {v}");
        assert_eq!(v, json!([{"n": rows}]), "{dataset}");
    }
    let (s, v) = send_json(client(READER).get(format!("{url}/vectors/indexes/docs"))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["count"], 12);
}

/// A manifest stored before this check existed (or written by hand) that
/// lists another dataset's objects and internal keys: the server still
/// starts, the dataset is listed but refused (409 `quarantined`) to reads
/// and ingests, nothing is deleted through it, and an admin can drop it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stored_manifest_listing_foreign_keys_is_quarantined_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let (k, v) = auth_env();
    let env = [(k, v.as_str())];
    let mut server = Server::start(dir.path(), &[], &env);
    let url = server.url.clone();
    let (s, v) = ingest(&url, ADMIN, "victim", "append", csv_rows(100)).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let mut thief: lakehouse_catalogd::Manifest =
        serde_json::from_value(v["manifest"].clone()).unwrap();
    thief.name = "thief".to_string();
    thief.dataset_id = lakehouse_catalogd::dataset_id_for("thief");
    thief.objects.push(lakehouse_catalogd::ObjectRef {
        key: "_catalog/manifests/victim.parquet".to_string(),
        size: 1,
        row_count: 0,
    });
    assert!(server.terminate().success());
    std::fs::write(
        dir.path().join("objects/_catalog/manifests/thief.parquet"),
        thief.encode().unwrap(),
    )
    .unwrap();

    let server = Server::start(dir.path(), &[], &env);
    let url = server.url.clone();
    let before = all_objects(&url).await;
    let (s, v) = send_json(client(READER).get(format!("{url}/catalog/list"))).await;
    assert_eq!((s, v["count"].clone()), (StatusCode::OK, json!(2)), "{v}");
    let (s, v) = send_json(client(READER).get(format!("{url}/catalog/manifest/thief"))).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "quarantined");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("datasets/victim/") && msg.contains("belongs to dataset \"victim\""),
        "{msg}"
    );
    for mode in ["replace", "append"] {
        let (s, v) = ingest(&url, WRITER, "thief", mode, csv_rows(1)).await;
        assert_eq!(s, StatusCode::CONFLICT, "{mode}: {v}");
        assert_eq!(v["error"]["code"], "quarantined", "{v}");
    }
    let (s, v) = count_rows(&url, "thief").await;
    assert_ne!(s, StatusCode::OK, "{v}");
    assert_eq!(
        all_objects(&url).await,
        before,
        "nothing written or deleted"
    );

    let (s, v) = send_json(client(ADMIN).delete(format!("{url}/catalog/manifest/thief"))).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["vacuum"]["dropped"], true, "{v}");
    let (s, v) = count_rows(&url, "victim").await;
    assert_eq!((s, v), (StatusCode::OK, json!([{"n": 100}])));
}

/// Names and keys past the filesystem's NAME_MAX were a 500; now a 400 that
/// names the limit, and nothing is written.
#[tokio::test]
async fn overlong_segments_and_names_are_400() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    let url = server.url.clone();
    let http = reqwest::Client::new();
    let seg = "s".repeat(256);
    let (s, v) = send_json(
        http.put(format!("{url}/storage/objects/raw/{seg}"))
            .body("x"),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_key")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("240 bytes per segment"),
        "{v}"
    );
    let (s, v) = send_json(
        http.post(format!("{url}/ingest/{}?format=csv", "n".repeat(256)))
            .body("a\n1\n"),
    )
    .await;
    assert_eq!(
        (s, v["error"]["code"].clone()),
        (StatusCode::BAD_REQUEST, json!("invalid_name")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("232 bytes per segment"),
        "{v}"
    );
    let (s, v) = send_json(http.get(format!("{url}/storage/list"))).await;
    assert_eq!((s, v["objects"].clone()), (StatusCode::OK, json!([])));
}

/// Damage after register (an object deleted, truncated or overwritten
/// behind the catalog's back) is a JSON error naming the dataset and the
/// object on every SELECT, never an opaque id; the server stays up.
#[tokio::test]
async fn damage_after_register_names_the_dataset_and_object() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    let url = server.url.clone();
    let http = reqwest::Client::new();
    let (s, v) = send_json(
        http.post(format!("{url}/ingest/hurt?format=csv"))
            .body(csv_rows(50)),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let key = v["objects"][0]["key"].as_str().unwrap().to_string();
    let object = format!("{url}/storage/objects/{key}");
    let original = http
        .get(&object)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let select = || async {
        let (s, v) = send_json(
            http.post(format!("{url}/query/sql"))
                .json(&json!({"sql": "SELECT count(*) AS n, sum(v) AS s FROM hurt"})),
        )
        .await;
        (s, v)
    };
    let damages: Vec<(&str, Option<Vec<u8>>)> = vec![
        ("truncated", Some(original[..original.len() - 7].to_vec())),
        ("overwritten", Some(vec![b'x'; original.len()])),
        ("deleted", None),
    ];
    for (what, bytes) in damages {
        let r = match bytes {
            Some(b) => http.put(&object).body(b).send().await.unwrap(),
            None => http.delete(&object).send().await.unwrap(),
        };
        assert!(r.status().is_success(), "{what}: {}", r.status());
        let (s, v) = select().await;
        assert_eq!(
            (s, v["error"]["code"].clone()),
            (StatusCode::INTERNAL_SERVER_ERROR, json!("dataset_damaged")),
            "{what}: {v}"
        );
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("\"hurt\"") && message.contains(&key),
            "{what}: {message}"
        );
    }
    // Restoring the object heals the dataset.
    let r = http.put(&object).body(original).send().await.unwrap();
    assert!(r.status().is_success());
    let (s, v) = select().await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v[0]["n"], 50, "{v}");
}
