//! queryd end to end: ingest a CSV over HTTP, query it in every format, and
//! the `lakehouse sql` command (table output, CSV, stdin, errors).

use std::io::Write;
use std::process::{Command, Stdio};

use reqwest::StatusCode;

use crate::support::{Server, run_cli};

const CSV: &str = "id,city,temp\n1,oslo,-3.5\n2,lima,19.0\n3,oslo,-1.0\n";

async fn post_sql(
    http: &reqwest::Client,
    url: &str,
    sql: &str,
    format: &str,
) -> (StatusCode, String, bytes::Bytes) {
    let r = http
        .post(format!("{url}/query/sql"))
        .json(&serde_json::json!({"sql": sql, "format": format}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.bytes().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_then_query_in_every_format_and_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[("LAKEHOUSE__QUERYD__MAX_ROWS", "100")]);
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/ingest/weather/daily?format=csv", server.url))
        .body(CSV)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    let sql = "SELECT city, count(*) AS n, min(temp) AS coldest FROM \"weather/daily\" GROUP BY city ORDER BY city";
    let (s, ct, body) = post_sql(&http, &server.url, sql, "json").await;
    assert_eq!((s, ct.as_str()), (StatusCode::OK, "application/json"));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        serde_json::json!([
            {"city": "lima", "n": 1, "coldest": 19.0},
            {"city": "oslo", "n": 2, "coldest": -3.5}
        ])
    );
    let (s, _, body) = post_sql(&http, &server.url, sql, "ndjson").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(std::str::from_utf8(&body).unwrap().lines().count(), 2);
    let (s, ct, body) = post_sql(&http, &server.url, sql, "csv").await;
    assert_eq!((s, ct.as_str()), (StatusCode::OK, "text/csv"));
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        "city,n,coldest\nlima,1,19.0\noslo,2,-3.5\n"
    );
    let (s, ct, body) = post_sql(&http, &server.url, sql, "arrow").await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::OK, "application/vnd.apache.arrow.stream")
    );
    let rows: usize = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    assert_eq!(rows, 2);
    let (s, ct, body) = post_sql(&http, &server.url, sql, "parquet").await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::OK, "application/vnd.apache.parquet")
    );
    let pq = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body).unwrap();
    assert_eq!(pq.metadata().file_metadata().num_rows(), 2);

    // Errors are JSON 4xx.
    let (s, _, body) = post_sql(&http, &server.url, "SELECT * FROM '/etc/passwd'", "json").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["error"]["code"], "unknown_table");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("weather/daily")
    );
    let (s, _, body) = post_sql(
        &http,
        &server.url,
        "SELECT * FROM generate_series(1, 1000)",
        "json",
    )
    .await;
    assert_eq!(
        s,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        String::from_utf8_lossy(&body)
    );

    // The CLI: a readable table.
    let env = [("LAKEHOUSE_URL", server.url.as_str())];
    let (st, out, err) = run_cli(&["sql", sql], &env);
    assert!(st.success(), "{err}");
    assert!(out.contains("| city | n | coldest |"), "{out}");
    assert!(out.contains("| oslo | 2 | -3.5    |"), "{out}");
    assert!(out.contains("(2 rows)"), "{out}");
    // CSV, from a file.
    let f = dir.path().join("q.sql");
    std::fs::write(&f, "SELECT id FROM \"weather/daily\" ORDER BY id").unwrap();
    let (st, out, err) = run_cli(
        &[
            "sql",
            "--file",
            f.to_str().unwrap(),
            "--format",
            "csv",
            "--url",
            &server.url,
        ],
        &[],
    );
    assert!(st.success(), "{err}");
    assert_eq!(out, "id\n1\n2\n3\n");
    // From stdin.
    let mut child = Command::new(env!("CARGO_BIN_EXE_lakehouse"))
        .args(["sql", "--format", "json", "--url", &server.url])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SELECT max(id) AS m FROM \"weather/daily\"\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(),
        serde_json::json!([{"m": 3}])
    );
    // A failing query: non-zero exit with the server's message.
    let (st, _, err) = run_cli(
        &["sql", "DROP TABLE \"weather/daily\"", "--url", &server.url],
        &[],
    );
    assert!(!st.success());
    assert!(err.contains("read-only"), "{err}");
}

/// `--only queryd` reads objects through the storaged client (ranged GETs
/// over HTTP) and resolves datasets through the catalogd client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_queryd_reads_through_remote_storaged_and_catalogd() {
    let dir = tempfile::tempdir().unwrap();
    let main = Server::start(dir.path(), &[], &[]);
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/ingest/weather?format=csv", main.url))
        .body(CSV)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    let qdir = tempfile::tempdir().unwrap();
    let env = [
        ("LAKEHOUSE__QUERYD__STORAGED_URL", main.url.as_str()),
        ("LAKEHOUSE__QUERYD__CATALOGD_URL", main.url.as_str()),
    ];
    let queryd = Server::start(qdir.path(), &["--only", "queryd"], &env);
    let (s, _, body) = post_sql(
        &http,
        &queryd.url,
        "SELECT city, sum(temp) AS t FROM weather GROUP BY city ORDER BY city",
        "csv",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        "city,t\nlima,19.0\noslo,-4.5\n"
    );
    // New data through the main server is visible to the remote queryd.
    let r = http
        .post(format!("{}/ingest/weather?format=csv", main.url))
        .body("id,city,temp\n4,lima,21.0\n")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "an append to an existing dataset"
    );
    let (s, _, body) = post_sql(
        &http,
        &queryd.url,
        "SELECT count(*) AS n FROM weather",
        "csv",
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(std::str::from_utf8(&body).unwrap(), "n\n4\n");
    // Only queryd's routes are served there.
    let r = http
        .get(format!("{}/catalog/list", queryd.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}
