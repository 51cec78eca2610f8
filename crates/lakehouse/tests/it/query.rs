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
    assert!(err.contains("DROP TABLE is not allowed"), "{err}");
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

async fn health(http: &reqwest::Client, url: &str) {
    let r = http.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "the server is down");
}

fn error_of(body: &[u8]) -> (String, String) {
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)));
    (
        v["error"]["code"].as_str().unwrap().to_string(),
        v["error"]["message"].as_str().unwrap().to_string(),
    )
}

/// Statements that killed the process (stack overflow) and functions that
/// grew it until the OOM killer came: each is a JSON 4xx now, and the
/// server is up after every one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_queries_leave_the_server_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    let http = reqwest::Client::new();
    let chain = |t: &str, op: &str, n: usize| vec![t; n].join(op);
    let cases = [
        (
            format!("SELECT {}", chain("1", "+", 1000)),
            400,
            "query_too_complex",
        ),
        (
            format!("SELECT {}", chain("1", "+", 5000)),
            400,
            "query_too_complex",
        ),
        (
            format!("SELECT 1 WHERE {}", chain("1=1", " AND ", 1000)),
            400,
            "query_too_complex",
        ),
        (
            format!("SELECT 1 WHERE {}", chain("1=0", " OR ", 1000)),
            400,
            "query_too_complex",
        ),
        (
            format!("SELECT {}", chain("'a'", "||", 2000)),
            400,
            "query_too_complex",
        ),
        (
            format!("SELECT {}", chain("1", "-", 5000)),
            400,
            "query_too_complex",
        ),
        (
            chain("SELECT 1", " UNION ALL ", 1100),
            400,
            "query_too_complex",
        ),
        (
            format!("SELECT {}1{}", "(".repeat(1000), ")".repeat(1000)),
            400,
            "query_too_complex",
        ),
        (
            "SELECT lpad('x', 2000000000)".to_string(),
            413,
            "value_too_large",
        ),
        (
            "SELECT array_repeat(1, 1000000000)".to_string(),
            413,
            "value_too_large",
        ),
        (
            "SELECT regexp_replace(repeat('a',1000000), '(((a{1,100}){1,100}){1,100})', 'b')"
                .to_string(),
            400,
            "invalid_regex",
        ),
    ];
    for (sql, status, code) in &cases {
        let (s, _, body) = post_sql(&http, &server.url, sql, "json").await;
        assert_eq!(s.as_u16(), *status, "{}", String::from_utf8_lossy(&body));
        assert_eq!(error_of(&body).0, *code);
        health(&http, &server.url).await;
    }
    // Just under the depth limit, and 500 UNION ALL branches, run.
    let (s, _, body) = post_sql(
        &http,
        &server.url,
        &format!("SELECT {} AS n", chain("1", "+", 990)),
        "json",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        serde_json::json!([{"n": 990}])
    );
    let (s, _, body) = post_sql(
        &http,
        &server.url,
        &format!(
            "SELECT count(*) AS n FROM ({})",
            chain("SELECT 1", " UNION ALL ", 500)
        ),
        "json",
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        serde_json::json!([{"n": 500}])
    );
}

async fn stats(http: &reqwest::Client, url: &str) -> serde_json::Value {
    let r = http.get(format!("{url}/query/stats")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// A client that disconnects stops its query: the running count falls to
/// zero at once, not at the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_client_stops_its_query() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    let http = reqwest::Client::new();
    // A cross join feeding an aggregate: its operator loop never yields,
    // so only the per-batch cancellation check stops it.
    let heavy =
        "SELECT max(v * w) FROM generate_series(1, 1000000) a(v), generate_series(1, 1000000) b(w)";
    let quick = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(800))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let r = quick
        .post(format!("{}/query/sql", server.url))
        .json(&serde_json::json!({"sql": heavy}))
        .send()
        .await;
    assert!(
        r.is_err(),
        "the heavy query answered in {:?}",
        started.elapsed()
    );
    let t = std::time::Instant::now();
    loop {
        let s = stats(&http, &server.url).await;
        if s["running"] == 0 {
            assert!(s["cancelled_disconnected"].as_u64().unwrap() >= 1, "{s}");
            break;
        }
        assert!(t.elapsed() < std::time::Duration::from_secs(3), "{s}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    health(&http, &server.url).await;
}

/// The `max_rows` contract per format, through the binary: JSON is a 413;
/// the streaming formats end well-formed, with exactly `max_rows` rows and
/// an in-band truncation marker (curl sees a complete transfer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_past_max_rows_end_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[("LAKEHOUSE__QUERYD__MAX_ROWS", "20000")]);
    let http = reqwest::Client::new();
    // A dataset whose row count is known exactly: 413 before the first
    // byte in every format.
    let mut csv = String::from("n\n");
    for i in 0..30_000 {
        csv.push_str(&format!("{i}\n"));
    }
    let r = http
        .post(format!("{}/ingest/big?format=csv", server.url))
        .body(csv)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    for format in ["json", "ndjson", "csv", "arrow", "parquet"] {
        let (s, _, body) = post_sql(&http, &server.url, "SELECT * FROM big", format).await;
        assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE, "{format}");
        assert_eq!(error_of(&body).0, "too_many_rows");
    }
    // The case: the row count is found while streaming.
    let sql = "SELECT * FROM generate_series(1, 1000000000000)";
    let (s, _, body) = post_sql(&http, &server.url, sql, "json").await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_of(&body).0, "too_many_rows");

    let (s, _, body) = post_sql(&http, &server.url, sql, "ndjson").await;
    assert_eq!(s, StatusCode::OK);
    let text = std::str::from_utf8(&body).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 20001);
    assert_eq!(lines[20000]["$lakehouse"]["truncated"], true);

    let (s, _, body) = post_sql(&http, &server.url, sql, "csv").await;
    assert_eq!(s, StatusCode::OK);
    let text = std::str::from_utf8(&body).unwrap();
    assert_eq!(text.lines().count(), 20002);
    assert!(
        text.lines()
            .last()
            .unwrap()
            .starts_with("#lakehouse: truncated")
    );

    let (s, _, body) = post_sql(&http, &server.url, sql, "arrow").await;
    assert_eq!(s, StatusCode::OK);
    let rows: usize = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .sum();
    assert_eq!(rows, 20000);

    // Parquet holds its first row group (64Ki rows): under that, a 413.
    let (s, _, body) = post_sql(&http, &server.url, sql, "parquet").await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(error_of(&body).0, "too_many_rows");
    health(&http, &server.url).await;
}

fn rss_of(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    kb * 1024
}

/// The process memory guard: a query that drives the process over
/// `[queryd].process_memory_limit` is cancelled with a 503, and the server
/// stays up with its memory back under the limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_guard_cancels_a_query_before_the_process_dies() {
    let dir = tempfile::tempdir().unwrap();
    let probe = Server::start(dir.path(), &[], &[]);
    let baseline = rss_of(probe.pid());
    drop(probe);
    let limit = (baseline + (300 << 20)).to_string();
    let server = Server::start(
        dir.path(),
        &[],
        &[("LAKEHOUSE__QUERYD__PROCESS_MEMORY_LIMIT", limit.as_str())],
    );
    let http = reqwest::Client::new();
    // A hash join whose build side (~1 GiB) fits the pool but not the guard.
    let sql = "SELECT count(*) FROM generate_series(1, 40000000) a(v) \
               JOIN generate_series(1, 40000000) b(w) ON v = w";
    let (s, _, body) = post_sql(&http, &server.url, sql, "json").await;
    assert_eq!(
        s,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        String::from_utf8_lossy(&body)
    );
    let (code, message) = error_of(&body);
    assert_eq!(code, "memory_pressure");
    assert!(message.contains("process_memory_limit"), "{message}");
    health(&http, &server.url).await;
    assert!(
        stats(&http, &server.url).await["cancelled_memory"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

/// `lakehouse sql` prints errors a person reads.
#[test]
fn the_cli_prints_a_readable_syntax_error() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path(), &[], &[]);
    let (st, _, err) = run_cli(&["sql", "selec 1", "--url", &server.url], &[]);
    assert!(!st.success());
    assert!(
        err.contains("syntax error at line 1, column 1: expected a SQL statement, found \"selec\""),
        "{err}"
    );
    assert!(
        !err.contains("ParserError") && !err.contains("SQL error"),
        "{err}"
    );
}
