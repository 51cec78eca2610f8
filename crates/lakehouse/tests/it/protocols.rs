//! The PostgreSQL and Flight SQL listeners end to end, with the real
//! clients: `psql`, psycopg 3 and the ADBC Flight SQL driver (the Python
//! checks are `tests/protocols/clients.py`). A missing client skips its
//! test with a message, unless `LAKEHOUSE_TEST_REQUIRE_PY=1` (CI), which
//! makes it a failure.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int32Array, Int64Array,
    ListBuilder, StringArray, StringBuilder, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;

use crate::support::{ADMIN, READER, WRITER, token_env};

/// `lakehouse serve` with both protocol listeners on ephemeral ports.
pub struct ProtoServer {
    child: Child,
    pub http: String,
    pub pg: u16,
    pub flight: u16,
    _dir: tempfile::TempDir,
}

impl Drop for ProtoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn port_of(line: &str, prefix: &str) -> u16 {
    line.strip_prefix(prefix)
        .and_then(|a| a.trim().rsplit(':').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unexpected line {line:?}, wanted {prefix}…"))
}

impl ProtoServer {
    pub fn start(extra_env: &[(&str, &str)]) -> ProtoServer {
        Self::start_with(&[], extra_env)
    }

    /// `lakehouse serve ARGS…` (e.g. `--only queryd`) with the tokens and
    /// both protocol listeners on ephemeral ports.
    pub fn start_with(args: &[&str], extra_env: &[(&str, &str)]) -> ProtoServer {
        let dir = tempfile::tempdir().unwrap();
        let (k, v) = token_env();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_lakehouse"));
        cmd.args(["serve", "--bind", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(args)
            .env("LAKEHOUSE_LOG", "warn")
            .env(k, v)
            .env("LAKEHOUSE__QUERYD__PG_BIND", "127.0.0.1:0")
            .env("LAKEHOUSE__QUERYD__FLIGHT_BIND", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn lakehouse");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = tx.send(line);
            }
        });
        let next = || {
            rx.recv_timeout(Duration::from_secs(60))
                .expect("lakehouse did not announce its listeners")
        };
        let http = next()
            .strip_prefix("lakehouse listening on ")
            .expect("first line")
            .trim()
            .to_string();
        let pg = port_of(&next(), "lakehouse postgres on ");
        let flight = port_of(&next(), "lakehouse flight-sql on ");
        ProtoServer {
            child,
            http,
            pg,
            flight,
            _dir: dir,
        }
    }

    /// Ingests the fixture (every type the protocols map) as `sales`.
    pub async fn ingest_fixture(&self) {
        ingest_fixture_at(&self.http).await;
    }

    /// `GET /query/stats` with the admin token.
    pub async fn stats(&self) -> serde_json::Value {
        reqwest::Client::new()
            .get(format!("{}/query/stats", self.http))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

/// Ingests the fixture as `sales` through the ingest API at `base`.
pub async fn ingest_fixture_at(base: &str) {
    let mut body = Vec::new();
    let batch = fixture();
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut body, &batch.schema()).unwrap();
    w.write(&batch).unwrap();
    w.finish().unwrap();
    drop(w);
    let r = reqwest::Client::new()
        .post(format!("{base}/ingest/sales?format=arrow"))
        .bearer_auth(WRITER)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
}

/// Three rows: ids 1–3 (`tests/protocols/clients.py` has the same values).
fn fixture() -> RecordBatch {
    let tz: Arc<str> = "UTC".into();
    let tags = {
        let mut b = ListBuilder::new(StringBuilder::new());
        b.values().append_value("x");
        b.append(true);
        b.values().append_value("y");
        b.values().append_value("z");
        b.append(true);
        b.append(true);
        b.finish()
    };
    let us = |d: i64, s: i64, micros: i64| d * 86_400_000_000 + s * 1_000_000 + micros;
    let day0: i32 = 19723; // 2024-01-01
    let d0 = i64::from(day0);
    let ts = vec![
        us(d0, 1, 0),
        us(d0 + 1, 3 * 3600 + 4 * 60 + 5, 678_000),
        us(d0 + 2, 0, 0),
    ];
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(Int64Array::from(vec![1, 2, 3]))),
        ("name", Arc::new(StringArray::from(vec!["a", "b", "c"]))),
        (
            "price",
            Arc::new(Float64Array::from(vec![Some(1.5), Some(2.5), None])),
        ),
        ("qty", Arc::new(Int32Array::from(vec![10, 20, 30]))),
        (
            "ok",
            Arc::new(BooleanArray::from(vec![Some(true), Some(false), None])),
        ),
        (
            "day",
            Arc::new(Date32Array::from(vec![day0, day0 + 1, day0 + 2])),
        ),
        ("ts", Arc::new(TimestampMicrosecondArray::from(ts.clone()))),
        (
            "tsz",
            Arc::new(TimestampMicrosecondArray::from(ts).with_timezone(tz)),
        ),
        (
            "amount",
            Arc::new(
                Decimal128Array::from(vec![125, -250, 0])
                    .with_precision_and_scale(12, 2)
                    .unwrap(),
            ),
        ),
        ("tags", Arc::new(tags)),
    ];
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let schema = Arc::new(Schema::new(fields));
    assert_eq!(
        schema.field(6).data_type(),
        &DataType::Timestamp(TimeUnit::Microsecond, None)
    );
    RecordBatch::try_new(schema, columns.into_iter().map(|(_, a)| a).collect()).unwrap()
}

fn required() -> bool {
    std::env::var("LAKEHOUSE_TEST_REQUIRE_PY").is_ok_and(|v| v == "1")
}

/// Whether `program` runs; if not, skip (or fail when clients are required).
fn have(what: &str, program: &str, args: &[&str]) -> bool {
    let ok = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            !required(),
            "{what} is missing and LAKEHOUSE_TEST_REQUIRE_PY=1 (install it: see .ci/run)"
        );
        eprintln!("skipping: {what} is not installed");
    }
    ok
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/protocols/clients.py")
}

/// Whether psql is installed (asserting it is when clients are required).
pub fn psql_available() -> bool {
    have("psql (postgresql-client)", "psql", &["--version"])
}

/// `psql -c` each command; returns (success, stdout, stderr).
pub fn psql(port: u16, password: &str, commands: &[&str]) -> (bool, String, String) {
    let mut cmd = Command::new("psql");
    cmd.args([
        "-X",
        "-w",
        "-v",
        "ON_ERROR_STOP=1",
        "-v",
        "VERBOSITY=verbose",
    ])
    .arg(format!(
        "host=127.0.0.1 port={port} dbname=lakehouse user=tester sslmode=disable"
    ))
    .env("PGPASSWORD", password)
    .env("PGCONNECT_TIMEOUT", "10");
    for c in commands {
        cmd.args(["-c", c]);
    }
    let out = cmd.output().expect("run psql");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_lists_describes_queries_and_reports_sqlstates() {
    if !have("psql (postgresql-client)", "psql", &["--version"]) {
        return;
    }
    let server = ProtoServer::start(&[]);
    server.ingest_fixture().await;
    let port = server.pg;

    let (ok, out, err) = psql(port, READER, &["\\dt"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("public") && out.contains("sales") && out.contains("table"),
        "{out}"
    );

    let (ok, out, err) = psql(port, READER, &["\\d sales"]);
    assert!(ok, "{err}");
    for (col, ty) in [
        ("id", "bigint"),
        ("name", "text"),
        ("price", "double precision"),
        ("qty", "integer"),
        ("ok", "boolean"),
        ("day", "date"),
        ("ts", "timestamp without time zone"),
        ("tsz", "timestamp with time zone"),
        ("amount", "numeric"),
    ] {
        assert!(
            out.lines().any(|l| l.contains(col) && l.contains(ty)),
            "{col} {ty} missing from:\n{out}"
        );
    }

    let (ok, out, err) = psql(
        port,
        READER,
        &["SELECT name, qty * 2 AS double_qty FROM sales WHERE id >= 2 ORDER BY id"],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains(" b    |         40") || out.contains("b"),
        "{out}"
    );
    assert!(out.contains("(2 rows)"), "{out}");

    for (sql, state) in [
        ("SELECT * FROM nope", "42P01"),
        ("SELEC 1", "42601"),
        ("DROP TABLE sales", "42501"),
        ("SELECT 1/0", "22000"),
    ] {
        let (ok, _, err) = psql(port, READER, &[sql]);
        assert!(!ok, "{sql} succeeded");
        assert!(err.contains(&format!("ERROR:  {state}")), "{sql}: {err}");
    }

    let (ok, _, err) = psql(port, "not-a-valid-token-0123", &["SELECT 1"]);
    assert!(!ok);
    assert!(err.contains("password authentication failed"), "{err}");
    let (ok, _, err) = psql(port, "", &["SELECT 1"]);
    assert!(!ok, "connected without a password");
    assert!(err.contains("password"), "{err}");
}

/// A query over the memory limit (a hash join's build side cannot spill).
const BIG_JOIN: &str = "SELECT count(*) FROM generate_series(1, 2000000) a(v) \
                        JOIN generate_series(1, 2000000) b(w) ON v = w";
/// A query that runs for minutes unless stopped.
const SLOW: &str =
    "SELECT count(*) FROM generate_series(1, 100000) a CROSS JOIN generate_series(1, 100000) b";

/// `max_rows`, the timeout and the memory limit end a query with an error
/// over both protocols, as they do on HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_cap_timeout_and_memory_limit_are_errors_over_both_protocols() {
    let server = ProtoServer::start(&[
        ("LAKEHOUSE__QUERYD__MAX_ROWS", "5"),
        ("LAKEHOUSE__QUERYD__TIMEOUT_SECS", "1"),
        ("LAKEHOUSE__QUERYD__MEMORY_LIMIT", "4MiB"),
    ]);
    python_checks("adbc-limits", server.flight);
    python_checks("psycopg-limits", server.pg);
    if !psql_available() {
        return;
    }
    // More rows than max_rows: an error, never a short result.
    let (ok, out, err) = psql(
        server.pg,
        READER,
        &["SELECT * FROM generate_series(1, 100)"],
    );
    assert!(!ok, "{out}");
    assert!(
        err.contains("ERROR:  54000") && err.contains("max_rows"),
        "{err}"
    );
    let (ok, out, err) = psql(server.pg, READER, &["SELECT * FROM generate_series(1, 5)"]);
    assert!(ok && out.contains("(5 rows)"), "{out}{err}");
    let (ok, _, err) = psql(server.pg, READER, &[SLOW]);
    assert!(!ok);
    assert!(err.contains("ERROR:  57014"), "{err}");
    let (ok, _, err) = psql(server.pg, READER, &[BIG_JOIN]);
    assert!(!ok);
    assert!(
        err.contains("ERROR:  53200") && err.contains("memory_limit"),
        "{err}"
    );
    let s = server.stats().await;
    assert_eq!(s["running"], 0, "{s}");
}

/// Runs `clients.py KIND PORT READ_TOKEN`; skips when the client library
/// is missing (fails under `LAKEHOUSE_TEST_REQUIRE_PY=1`).
pub fn python_checks(kind: &str, port: u16) {
    python_checks_with(kind, port, &[])
}

/// [`python_checks`] with more arguments after the read token.
pub fn python_checks_with(kind: &str, port: u16, extra: &[&str]) {
    let module = if kind.starts_with("psycopg") {
        "psycopg"
    } else {
        "adbc_driver_flightsql"
    };
    if !have(
        &format!("python3 with {module}"),
        "python3",
        &["-c", &format!("import {module}, pyarrow")],
    ) {
        return;
    }
    let out = Command::new("python3")
        .arg(script())
        .args([kind, &port.to_string(), READER])
        .args(extra)
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "{kind} checks failed:\n{stdout}\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_parameters_cursors_types_and_tokens() {
    let server = ProtoServer::start(&[]);
    server.ingest_fixture().await;
    python_checks("psycopg", server.pg);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adbc_flight_sql_queries_parameters_objects_and_tokens() {
    let server = ProtoServer::start(&[]);
    server.ingest_fixture().await;
    python_checks("adbc", server.flight);
}

/// Write statements over both protocols: command tags and parameters over
/// psycopg, ExecuteUpdate and prepared writes over ADBC, psql's tags, and
/// a `read` token refused (42501 / PermissionDenied) with nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_statements_over_both_protocols() {
    let server = ProtoServer::start(&[]);
    server.ingest_fixture().await;
    python_checks_with("psycopg-writes", server.pg, &[WRITER]);
    python_checks_with("adbc-writes", server.flight, &[WRITER]);
    if !psql_available() {
        return;
    }
    let (ok, out, err) = psql(
        server.pg,
        WRITER,
        &[
            "CREATE TABLE p AS SELECT id, name FROM sales",
            "INSERT INTO p VALUES (4, 'd'), (5, 'e')",
            "UPDATE p SET name = upper(name) WHERE id > 3",
            "DELETE FROM p WHERE id = 1",
            "MERGE INTO p USING sales s ON p.id = s.id WHEN MATCHED THEN DELETE",
            "SELECT id, name FROM p ORDER BY id",
        ],
    );
    assert!(ok, "{err}");
    for tag in [
        "SELECT 3",
        "INSERT 0 2",
        "UPDATE 2",
        "DELETE 1",
        "MERGE 2",
        "(2 rows)",
    ] {
        assert!(out.contains(tag), "{tag} missing from:\n{out}");
    }
    let (ok, _, err) = psql(server.pg, READER, &["DELETE FROM p"]);
    assert!(!ok);
    assert!(err.contains("ERROR:  42501"), "{err}");
    let (ok, out, err) = psql(server.pg, READER, &["SELECT count(*) AS n FROM p"]);
    assert!(ok && out.contains(" 2\n"), "{out}{err}");
}

/// A client killed mid-query cancels it: the query leaves the running set
/// and counts as cancelled-on-disconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_disconnects_cancels_its_query() {
    if !have(
        "python3 with psycopg and adbc",
        "python3",
        &["-c", "import psycopg, adbc_driver_flightsql"],
    ) {
        return;
    }
    let server = ProtoServer::start(&[]);
    let slow = "SELECT count(*) FROM generate_series(1, 1000000) a CROSS JOIN generate_series(1, 1000000) b";
    for (i, (kind, port)) in [("hold-pg", server.pg), ("hold-flight", server.flight)]
        .into_iter()
        .enumerate()
    {
        let mut client = Command::new("python3")
            .arg(script())
            .args([kind, &port.to_string(), READER, slow])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Past planning (a describe is a short query of its own) and running.
        wait_for(&server, |s| s["running"] == 1, "the query to start").await;
        tokio::time::sleep(Duration::from_millis(700)).await;
        wait_for(&server, |s| s["running"] == 1, "the query to run").await;
        client.kill().unwrap();
        client.wait().unwrap();
        wait_for(
            &server,
            |s| s["running"] == 0 && s["cancelled_disconnected"].as_u64() >= Some(i as u64 + 1),
            "the query to be cancelled",
        )
        .await;
    }
}

async fn wait_for(server: &ProtoServer, ok: impl Fn(&serde_json::Value) -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = server.stats().await;
        if ok(&s) {
            return;
        }
        assert!(Instant::now() < deadline, "waited 20 s for {what}: {s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `--only queryd` in a split deployment serves both protocols, reaching
/// the catalog and storage through their clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_queryd_serves_both_protocols() {
    use crate::support::Server;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (k, v) = token_env();
    // Each process: the tokens plus its wiring.
    let env = |wiring: &[(&str, &str)]| -> Vec<(String, String)> {
        std::iter::once((k.clone(), v.clone()))
            .chain(wiring.iter().map(|(a, b)| (a.to_string(), b.to_string())))
            .collect()
    };
    let start = |name: &str, wiring: &[(&str, &str)]| {
        let owned = env(wiring);
        let pairs: Vec<(&str, &str)> = owned
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        Server::start(&data, &["--only", name], &pairs)
    };
    let storaged = start("storaged", &[]);
    let catalogd = start(
        "catalogd",
        &[("LAKEHOUSE__CATALOGD__STORAGED_URL", &storaged.url)],
    );
    let spool = dir.path().join("spool");
    let ingestd = start(
        "ingestd",
        &[
            ("LAKEHOUSE__INGESTD__STORAGED_URL", &storaged.url),
            ("LAKEHOUSE__INGESTD__CATALOGD_URL", &catalogd.url),
            ("LAKEHOUSE__INGESTD__SPOOL_DIR", spool.to_str().unwrap()),
        ],
    );
    let queryd = ProtoServer::start_with(
        &["--only", "queryd"],
        &[
            ("LAKEHOUSE__QUERYD__STORAGED_URL", &storaged.url),
            ("LAKEHOUSE__QUERYD__CATALOGD_URL", &catalogd.url),
        ],
    );
    ingest_fixture_at(&ingestd.url).await;

    if psql_available() {
        let (ok, out, err) = psql(queryd.pg, READER, &["\\dt"]);
        assert!(ok && out.contains("sales"), "{out}{err}");
        let (ok, out, err) = psql(queryd.pg, READER, &["SELECT sum(qty) FROM sales"]);
        assert!(ok && out.contains("60"), "{out}{err}");
        let (ok, _, err) = psql(queryd.pg, "not-a-valid-token-0123", &["SELECT 1"]);
        assert!(
            !ok && err.contains("password authentication failed"),
            "{err}"
        );
    }
    python_checks("psycopg", queryd.pg);
    python_checks("adbc", queryd.flight);
}

/// Without tokens, a protocol listener on a non-loopback address is refused
/// before any data is touched, exactly as HTTP's `--bind`.
#[test]
fn no_tokens_means_loopback_only_for_the_protocols() {
    for key in [
        "LAKEHOUSE__QUERYD__PG_BIND",
        "LAKEHOUSE__QUERYD__FLIGHT_BIND",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let (st, _, err) = crate::support::run_cli(
            &["serve", "--bind", "127.0.0.1:0", "--data-dir", d],
            &[(key, "0.0.0.0:0")],
        );
        assert!(!st.success(), "{key}: served without auth");
        assert!(
            err.contains("refusing to serve") && err.contains("allow_public_without_auth"),
            "{key}: {err}"
        );
        assert!(
            !dir.path().join("objects").exists(),
            "{key}: refused after touching the data directory"
        );
    }
}
