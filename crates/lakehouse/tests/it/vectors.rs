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

/// A server in `dir` with an empty index `emb`; its `/vectors/indexes` URL.
async fn get(http: &reqwest::Client, url: String) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

async fn server_with_index(
    dir: &std::path::Path,
    env: &[(&str, &str)],
    dim: usize,
    metric: &str,
) -> (Server, String) {
    let server = Server::start(dir, &[], env);
    let base = format!("{}/vectors/indexes", server.url);
    let spec = json!({"name": "emb", "dim": dim, "metric": metric});
    let (s, v) = post(&reqwest::Client::new(), base.clone(), spec).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    (server, base)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_adds_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    // Snapshots every 300 items: the restart needs a snapshot and the log.
    let env = [("LAKEHOUSE__VECTORD__SNAPSHOT_EVERY", "300")];
    let (mut server, base) = server_with_index(dir.path(), &env, 16, "l2").await;
    let http = reqwest::Client::new();
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
    let info = get(&http, format!("{base}/emb")).await;
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

fn write_parquet(path: &std::path::Path, n: usize, dim: usize) {
    use arrow::array::{ArrayRef, FixedSizeListArray, Float32Array, Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field};
    use std::sync::Arc;
    let ids: ArrayRef = Arc::new(Int64Array::from_iter_values(0..n as i64));
    let values: Vec<f32> = (0..n).flat_map(|i| vector(i, dim)).collect();
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    let vectors: ArrayRef = Arc::new(
        FixedSizeListArray::try_new(item, dim as i32, Arc::new(Float32Array::from(values)), None)
            .unwrap(),
    );
    let lang: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..n).map(|i| if i % 2 == 0 { "en" } else { "fr" }),
    ));
    let rb = arrow::array::RecordBatch::try_from_iter([
        ("id", ids),
        ("vector", vectors),
        ("lang", lang),
    ])
    .unwrap();
    let f = std::fs::File::create(path).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(f, rb.schema(), None).unwrap();
    w.write(&rb).unwrap();
    w.close().unwrap();
}

/// `vectors add` reads Parquet and Arrow IPC files and sends Arrow (the log
/// holds binary entries); metadata comes from the other columns or from a
/// `metadata` column.
#[tokio::test]
async fn cli_adds_parquet_and_arrow_files() {
    use arrow::array::{ArrayRef, ListArray, StringArray};
    use arrow::datatypes::Float32Type;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    let url = server.url.as_str();
    let (s, out, err) = run_cli(
        &[
            "vectors", "create", "pq", "--dim", "8", "--metric", "l2", "--url", url,
        ],
        &[],
    );
    assert!(s.success(), "{out}{err}");
    let file = dir.path().join("emb.parquet");
    write_parquet(&file, 2500, 8);
    let (s, out, err) = run_cli(
        &[
            "vectors",
            "add",
            "pq",
            file.to_str().unwrap(),
            "--batch",
            "1000",
            "--url",
            url,
        ],
        &[],
    );
    assert!(s.success(), "{out}{err}");
    assert!(
        out.contains("added 2500 items to pq; it now has 2500"),
        "{out}"
    );
    let wal = dir.path().join("objects/_vectors/pq.wal");
    let mut entries: Vec<String> = std::fs::read_dir(&wal)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert!(entries.iter().all(|e| e.ends_with(".bin")), "{entries:?}");
    let q = serde_json::to_string(&vector(1001, 8)).unwrap();
    let (s, out, err) = run_cli(
        &[
            "vectors", "search", "pq", "--vector", &q, "-k", "1", "--filter", "lang=fr", "--url",
            url,
        ],
        &[],
    );
    assert!(s.success(), "{out}{err}");
    let hit = out.lines().nth(1).unwrap();
    assert!(
        hit.starts_with("1001 ") && hit.contains("\"lang\":\"fr\""),
        "{out}"
    );

    // An Arrow IPC stream file with a JSON metadata column and ragged lists.
    let ids: ArrayRef = Arc::new(StringArray::from(vec!["x", "y"]));
    let vectors: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Float32Type, _, _>(vec![
        Some(vector(9007, 8).into_iter().map(Some).collect::<Vec<_>>()),
        Some(vector(9008, 8).into_iter().map(Some).collect()),
    ]));
    let md: ArrayRef = Arc::new(StringArray::from(vec![Some("{\"tag\": 1}"), None]));
    let rb = arrow::array::RecordBatch::try_from_iter([
        ("id", ids),
        ("vector", vectors),
        ("metadata", md),
    ])
    .unwrap();
    let arrow_file = dir.path().join("more.arrows");
    {
        let f = std::fs::File::create(&arrow_file).unwrap();
        let mut w = arrow::ipc::writer::StreamWriter::try_new(f, &rb.schema()).unwrap();
        w.write(&rb).unwrap();
        w.finish().unwrap();
    }
    let (s, out, err) = run_cli(
        &[
            "vectors",
            "add",
            "pq",
            arrow_file.to_str().unwrap(),
            "--url",
            url,
        ],
        &[],
    );
    assert!(s.success(), "{out}{err}");
    assert!(out.contains("it now has 2502"), "{out}");
    let q = serde_json::to_string(&vector(9007, 8)).unwrap();
    let (s, out, _) = run_cli(
        &[
            "vectors", "search", "pq", "--vector", &q, "-k", "1", "--url", url,
        ],
        &[],
    );
    assert!(s.success());
    assert!(
        out.lines().nth(1).unwrap().starts_with("x ") && out.contains("\"tag\":1"),
        "{out}"
    );
}

/// A damaged log entry refuses the start, naming the object: skipping it
/// would silently lose an acknowledged write.
#[tokio::test]
async fn a_corrupt_log_entry_refuses_the_start_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &[], &[]);
    let http = reqwest::Client::new();
    let base = format!("{}/vectors/indexes", server.url);
    let (s, _) = post(
        &http,
        base.clone(),
        json!({"name": "emb", "dim": 4, "metric": "l2"}),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let items: Vec<Value> = (0..10)
        .map(|i| json!({"id": format!("d{i}"), "vector": vector(i, 4)}))
        .collect();
    let (s, v) = post(&http, format!("{base}/emb/add"), json!({ "items": items })).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    server.kill9();
    let key = "_vectors/emb.wal/00000000000000000001.bin";
    let path = dir.path().join("objects").join(key);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[30] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lakehouse"))
        .args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started over a corrupt log entry");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains(key) && err.contains("checksum"), "{err}");
}

/// The files of index `name`'s log on disk.
fn log_entries(data_dir: &std::path::Path, name: &str) -> usize {
    std::fs::read_dir(data_dir.join(format!("objects/_vectors/{name}.wal")))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_snapshots_what_the_log_holds() {
    let dir = tempfile::tempdir().unwrap();
    // No background snapshot would happen: 120 adds, one every 100k.
    let env = [("LAKEHOUSE__VECTORD__SNAPSHOT_EVERY", "100000")];
    let (mut server, base) = server_with_index(dir.path(), &env, 8, "cosine").await;
    let http = reqwest::Client::new();
    for batch in 0..3 {
        let items: Vec<Value> = (batch * 40..(batch + 1) * 40)
            .map(|i| json!({"id": format!("d{i}"), "vector": vector(i, 8)}))
            .collect();
        let (s, v) = post(&http, format!("{base}/emb/add"), json!({ "items": items })).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    assert_eq!(log_entries(dir.path(), "emb"), 3, "one log entry per add");
    assert!(server.terminate().success());
    // The shutdown took a snapshot covering the log, and dropped the log.
    assert_eq!(log_entries(dir.path(), "emb"), 0);

    let server = Server::start(dir.path(), &[], &env);
    let base = format!("{}/vectors/indexes", server.url);
    let info = get(&http, format!("{base}/emb")).await;
    assert_eq!(info["count"], 120, "{info}");
    let (s, hits) = post(
        &http,
        format!("{base}/emb/search"),
        json!({"vector": vector(77, 8), "k": 1}),
    )
    .await;
    assert_eq!((s, &hits[0]["id"]), (StatusCode::OK, &json!("d77")));
}
