//! catalogd end to end through the real binary: register over HTTP,
//! idempotency, conflicts, `kill -9` and restart, a corrupt manifest stopping
//! start-up, `--only catalogd` against a remote storaged, and
//! `lakehouse datasets`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{Server, run_cli};

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

    let (s, first) = register(&http, &url, dataset("orders", "fp-a", 2)).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    assert_eq!(first["existing"], false);
    // Independently computed UUIDv5 (see the catalogd tests).
    assert_eq!(
        first["manifest"]["dataset_id"],
        "1f2906ae-f562-564c-aa86-f487c2afa750"
    );
    assert_eq!(first["manifest"]["row_count"], 30);

    let (s, again) = register(&http, &url, dataset("orders", "fp-a", 3)).await;
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
        let (s, v) = register(&http, &url, dataset(name, "fp", 1)).await;
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
        let (s, _) = register(
            &reqwest::Client::new(),
            &server.url,
            dataset("good", "fp", 1),
        )
        .await;
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

    let (s, v) = register(&http, &catalogd.url, dataset("remote/ds", "fp", 2)).await;
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

    register(&http, url, dataset("tpch/lineitem", "fp", 3)).await;
    register(&http, url, dataset("a", "fp", 1)).await;
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
