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
    psql_with(port, "sslmode=disable", password, commands)
}

/// [`psql`] with `ssl` (e.g. `sslmode=verify-full sslrootcert=…`) in the
/// connection string.
pub fn psql_with(
    port: u16,
    ssl: &str,
    password: &str,
    commands: &[&str],
) -> (bool, String, String) {
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
        "host=127.0.0.1 port={port} dbname=lakehouse user=tester {ssl}"
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

/// Four 3-dimensional embeddings (`tests/protocols/clients.py` has the same).
const DOCS: &str = "{\"doc_id\":1,\"lang\":\"en\",\"embedding\":[0.1,0.2,0.3]}\n\
{\"doc_id\":2,\"lang\":\"de\",\"embedding\":[0.9,0.1,0.0]}\n\
{\"doc_id\":3,\"lang\":\"en\",\"embedding\":[0.0,1.0,0.5]}\n\
{\"doc_id\":4,\"lang\":\"fr\",\"embedding\":[0.4,0.4,0.4]}\n";

/// The dataset `docs` and the index `docs_idx` (l2) following it.
async fn ingest_docs_with_index(base: &str) {
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{base}/ingest/docs?format=ndjson"))
        .bearer_auth(WRITER)
        .body(DOCS)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    let spec = serde_json::json!({"name": "docs_idx", "metric": "l2", "dataset": "docs",
        "column": "embedding", "id_column": "doc_id", "metadata_columns": ["lang"]});
    let r = http
        .post(format!("{base}/vectors/indexes"))
        .bearer_auth(ADMIN)
        .json(&spec)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let r = http
        .post(format!("{base}/vectors/indexes/docs_idx/sync"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    let info: serde_json::Value = r.json().await.unwrap();
    assert_eq!(info["count"], 4, "{info}");
}

/// `vector_search` from psql, psycopg and ADBC: the embedding, k, the
/// filter and ef bound as parameters, joins, `\d` of an embedding column.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_search_over_both_protocols() {
    let server = ProtoServer::start(&[]);
    ingest_docs_with_index(&server.http).await;
    if psql_available() {
        let (ok, out, err) = psql(server.pg, READER, &["\\d docs"]);
        assert!(ok, "{err}");
        assert!(
            out.lines()
                .any(|l| l.contains("embedding") && l.contains("double precision[]")),
            "{out}"
        );
        let (ok, out, err) = psql(
            server.pg,
            READER,
            &["SELECT doc_id, round(distance::numeric, 2) AS d \
               FROM vector_search('docs_idx', ARRAY[0.1, 0.2, 0.3], 2) ORDER BY distance"],
        );
        assert!(ok, "{err}");
        assert!(out.contains("(2 rows)"), "{out}");
        let ids: Vec<&str> = out
            .lines()
            .filter_map(|l| l.split('|').next())
            .map(str::trim)
            .filter(|c| c.parse::<i64>().is_ok())
            .collect();
        assert_eq!(ids, ["1", "4"], "{out}");
    }
    python_checks("psycopg-vectors", server.pg);
    python_checks("adbc-vectors", server.flight);
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
    let module = match kind {
        "sqlalchemy" => "sqlalchemy, pandas, polars, psycopg",
        "adbc-dataframes" => "adbc_driver_flightsql, pandas, polars",
        k if k.starts_with("psycopg") => "psycopg",
        _ => "adbc_driver_flightsql",
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

/// The Python data stack over both protocols: SQLAlchemy's PostgreSQL
/// dialect (its connect-time queries, text queries, savepoints, the
/// inspector's table list) with pandas and polars reading through it, and
/// polars and pandas reading over an ADBC connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlalchemy_pandas_and_polars_read_over_both_protocols() {
    let server = ProtoServer::start(&[]);
    server.ingest_fixture().await;
    python_checks("sqlalchemy", server.pg);
    python_checks("adbc-dataframes", server.flight);
}

/// pgjdbc, the driver of DBeaver, Metabase and other JDBC tools (Debian's
/// `libpostgresql-jdbc-java`, run by `java` on `tests/protocols/Jdbc.java`):
/// `DatabaseMetaData` (tables, columns, primary keys), values of each type,
/// fetch size, SQLSTATEs, prepared statements past pgjdbc's server-prepare
/// threshold, dates and timestamps bound as pgjdbc sends them, a wrong token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jdbc_metadata_queries_and_parameters() {
    let jar = "/usr/share/java/postgresql.jar";
    if !have("java (default-jdk-headless)", "java", &["-version"])
        || !have("pgjdbc (libpostgresql-jdbc-java)", "test", &["-f", jar])
    {
        return;
    }
    let server = ProtoServer::start(&[]);
    server.ingest_fixture().await;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/protocols/Jdbc.java");
    let out = Command::new("java")
        .args(["-cp", jar])
        .arg(source)
        .args([&server.pg.to_string(), READER])
        .output()
        .expect("run java");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("all checks passed"),
        "JDBC checks failed:\n{stdout}\n{stderr}"
    );
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

/// A test CA and a server certificate for 127.0.0.1 and localhost signed by
/// it, as PEM files (`ca.pem`, `server.pem`, `server.key`) in a temp dir.
pub struct Certs {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

impl Certs {
    pub fn new() -> Certs {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A name of its own: a client looks a certificate's issuer up by name.
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ca.distinguished_name.push(
            DnType::CommonName,
            format!("lakehouse test CA {} {n}", std::process::id()),
        );
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut leaf =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        leaf.distinguished_name
            .push(DnType::CommonName, "localhost");
        let cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
        let certs = Certs {
            ca: dir.path().join("ca.pem"),
            cert: dir.path().join("server.pem"),
            key: dir.path().join("server.key"),
            _dir: dir,
        };
        std::fs::write(&certs.ca, ca_cert.pem()).unwrap();
        std::fs::write(&certs.cert, cert.pem()).unwrap();
        std::fs::write(&certs.key, key.serialize_pem()).unwrap();
        certs
    }

    pub fn ca(&self) -> &str {
        self.ca.to_str().unwrap()
    }

    /// The environment that turns TLS on with these files.
    pub fn env(&self) -> Vec<(&'static str, &str)> {
        vec![
            ("LAKEHOUSE__QUERYD__TLS_CERT", self.cert.to_str().unwrap()),
            ("LAKEHOUSE__QUERYD__TLS_KEY", self.key.to_str().unwrap()),
        ]
    }
}

/// The first bytes the PostgreSQL port answers to a negotiation request
/// (`SSLRequest` 80877103, `GSSENCRequest` 80877104).
fn negotiate(port: u16, code: u32) -> u8 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut msg = 8u32.to_be_bytes().to_vec();
    msg.extend_from_slice(&code.to_be_bytes());
    s.write_all(&msg).unwrap();
    let mut answer = [0u8; 1];
    s.read_exact(&mut answer).unwrap();
    if answer[0] == b'S' {
        // Not a TLS ClientHello: the server must drop it, not hang or fall over.
        let _ = s.write_all(b"this is not a TLS handshake\r\n\r\n");
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
    }
    answer[0]
}

const SSL_REQUEST: u32 = 80877103;
const GSSENC_REQUEST: u32 = 80877104;
/// AuthenticationCleartextPassword, AuthenticationOk, ReadyForQuery (idle).
const CLEARTEXT: &[u8] = &[b'R', 0, 0, 0, 8, 0, 0, 0, 3];
const AUTH_OK: &[u8] = &[b'R', 0, 0, 0, 8, 0, 0, 0, 0];
const READY: &[u8] = b"Z\0\0\0\x05I";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Starts a session on `s` (protocol 3.0, user `x`), answers a cleartext
/// password request with `password`, and returns every byte the server
/// sent until it closed or was ready (libpq shows no SQLSTATE for a failed
/// connection; these bytes do).
fn raw_login<S: std::io::Read + std::io::Write>(s: &mut S, password: &str) -> Vec<u8> {
    let mut body = 196608u32.to_be_bytes().to_vec();
    body.extend_from_slice(b"user\0x\0database\0lakehouse\0\0");
    let mut startup = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    startup.extend(body);
    s.write_all(&startup).unwrap();
    s.flush().unwrap();
    let (mut out, mut buf, mut answered) = (Vec::new(), [0u8; 4096], false);
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
        if !answered && contains(&out, CLEARTEXT) {
            answered = true;
            let mut msg = vec![b'p'];
            msg.extend_from_slice(&((password.len() + 5) as u32).to_be_bytes());
            msg.extend_from_slice(password.as_bytes());
            msg.push(0);
            s.write_all(&msg).unwrap();
            s.flush().unwrap();
        }
        if contains(&out, READY) {
            break;
        }
    }
    out
}

/// A connection to the PostgreSQL port switched to TLS (SSLRequest, then
/// a rustls handshake verifying the server against `ca`).
fn tls_stream(
    port: u16,
    ca: &Path,
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, ServerName};
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut msg = 8u32.to_be_bytes().to_vec();
    msg.extend_from_slice(&SSL_REQUEST.to_be_bytes());
    s.write_all(&msg).unwrap();
    let mut answer = [0u8; 1];
    s.read_exact(&mut answer).unwrap();
    assert_eq!(answer[0], b'S', "TLS refused");
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    rustls::StreamOwned::new(conn, s)
}

/// With `[queryd].tls_cert`/`tls_key`: psql and psycopg over verified TLS
/// (and plaintext still accepted), ADBC over `grpc+tls://` with the CA,
/// a plaintext gRPC client refused cleanly while the server keeps serving,
/// and the negotiation bytes (`S` for SSL, `N` for GSSAPI).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_both_protocols_with_real_clients() {
    let certs = Certs::new();
    let server = ProtoServer::start(&certs.env());
    server.ingest_fixture().await;
    let port = server.pg;
    assert_eq!(negotiate(port, GSSENC_REQUEST), b'N');
    assert_eq!(negotiate(port, SSL_REQUEST), b'S');
    let out = raw_login(&mut tls_stream(port, &certs.ca), "not-a-valid-token-0123");
    assert!(
        contains(&out, b"28P01") && !contains(&out, AUTH_OK),
        "wrong token over TLS: {:?}",
        String::from_utf8_lossy(&out)
    );
    let out = raw_login(&mut tls_stream(port, &certs.ca), READER);
    assert!(
        contains(&out, AUTH_OK) && contains(&out, READY),
        "{:?}",
        String::from_utf8_lossy(&out)
    );

    if psql_available() {
        let verify = format!("sslmode=verify-full sslrootcert={}", certs.ca());
        let (ok, out, err) = psql_with(
            port,
            &verify,
            READER,
            &["\\conninfo", "SELECT sum(qty) AS total FROM sales"],
        );
        assert!(ok, "{err}");
        assert!(out.contains("SSL connection"), "not over TLS:\n{out}");
        assert!(out.contains("60") && out.contains("(1 row)"), "{out}");
        let (ok, _, err) = psql_with(
            port,
            "sslmode=require",
            "not-a-valid-token-0123",
            &["SELECT 1"],
        );
        assert!(!ok, "connected with a wrong token");
        assert!(err.contains("password authentication failed"), "{err}");
        // Not required: plaintext clients still connect.
        let (ok, out, err) = psql(port, READER, &["\\conninfo", "SELECT 1 AS one"]);
        assert!(ok && !out.contains("SSL connection"), "{out}{err}");
        // A CA that did not sign the server's certificate: verify-full refuses.
        let other = Certs::new();
        let (ok, _, err) = psql_with(
            port,
            &format!("sslmode=verify-full sslrootcert={}", other.ca()),
            READER,
            &["SELECT 1"],
        );
        assert!(!ok && err.contains("certificate verify failed"), "{err}");
    }
    python_checks_with("psycopg-tls", port, &[certs.ca()]);
    python_checks_with("adbc-tls", server.flight, &[certs.ca()]);
    // Both still serve after the refused and hostile connections.
    assert_eq!(negotiate(port, SSL_REQUEST), b'S');
    python_checks_with("psycopg-tls", port, &[certs.ca()]);
}

/// `[queryd].tls_required = true`: a plaintext PostgreSQL start-up is a
/// FATAL 28000 naming the requirement; `sslmode=require` connects. Without
/// a certificate an `SSLRequest` is answered `N`, as before TLS existed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_required_refuses_plaintext_postgres() {
    let plain = ProtoServer::start(&[]);
    assert_eq!(negotiate(plain.pg, SSL_REQUEST), b'N');
    drop(plain);

    let certs = Certs::new();
    let mut env = certs.env();
    env.push(("LAKEHOUSE__QUERYD__TLS_REQUIRED", "true"));
    let server = ProtoServer::start(&env);
    // A plaintext start-up: FATAL 28000 before any password is asked.
    let mut plain = std::net::TcpStream::connect(("127.0.0.1", server.pg)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let out = raw_login(&mut plain, READER);
    assert!(
        contains(&out, b"FATAL")
            && contains(&out, b"28000")
            && contains(&out, b"TLS is required")
            && !contains(&out, CLEARTEXT)
            && !contains(&out, AUTH_OK),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    let out = raw_login(&mut tls_stream(server.pg, &certs.ca), READER);
    assert!(
        contains(&out, AUTH_OK),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
    python_checks_with("psycopg-tls-required", server.pg, &[certs.ca()]);
    if !psql_available() {
        return;
    }
    let (ok, out, err) = psql(server.pg, READER, &["SELECT 1"]);
    assert!(!ok, "a plaintext client connected: {out}");
    assert!(
        err.contains("TLS is required") && err.contains("sslmode=require"),
        "{err}"
    );
    let (ok, out, err) = psql_with(server.pg, "sslmode=require", READER, &["\\conninfo"]);
    assert!(ok && out.contains("SSL connection"), "{out}{err}");
    // libpq's default (prefer) asks for TLS first.
    let (ok, out, err) = psql_with(server.pg, "", READER, &["\\conninfo"]);
    assert!(ok && out.contains("SSL connection"), "{out}{err}");
}

/// TLS settings that cannot work stop the start-up with an error naming
/// the setting and the file.
#[test]
fn tls_misconfiguration_stops_the_start_up() {
    let certs = Certs::new();
    let other = Certs::new();
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let missing = dir.path().join("missing.pem");
    let (cert, key) = (certs.cert.to_str().unwrap(), certs.key.to_str().unwrap());
    let (junk, missing) = (junk.to_str().unwrap(), missing.to_str().unwrap());
    // (what, environment, what the error must name)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "cert without key",
            vec![("LAKEHOUSE__QUERYD__TLS_CERT", cert)],
            vec!["[queryd].tls_key", "is not"],
        ),
        (
            "key without cert",
            vec![("LAKEHOUSE__QUERYD__TLS_KEY", key)],
            vec!["[queryd].tls_cert", "is not"],
        ),
        (
            "unreadable certificate",
            vec![
                ("LAKEHOUSE__QUERYD__TLS_CERT", missing),
                ("LAKEHOUSE__QUERYD__TLS_KEY", key),
            ],
            vec!["[queryd].tls_cert", missing],
        ),
        (
            "not a certificate",
            vec![
                ("LAKEHOUSE__QUERYD__TLS_CERT", junk),
                ("LAKEHOUSE__QUERYD__TLS_KEY", key),
            ],
            vec!["[queryd].tls_cert", junk, "no PEM certificate"],
        ),
        (
            "not a key",
            vec![
                ("LAKEHOUSE__QUERYD__TLS_CERT", cert),
                ("LAKEHOUSE__QUERYD__TLS_KEY", cert),
            ],
            vec!["[queryd].tls_key", cert, "no PEM private key"],
        ),
        (
            "another certificate's key",
            vec![
                ("LAKEHOUSE__QUERYD__TLS_CERT", other.cert.to_str().unwrap()),
                ("LAKEHOUSE__QUERYD__TLS_KEY", key),
            ],
            vec!["[queryd].tls_key", key, "does not go with"],
        ),
        (
            "required without a certificate",
            vec![("LAKEHOUSE__QUERYD__TLS_REQUIRED", "true")],
            vec!["tls_required", "[queryd].tls_cert"],
        ),
    ];
    for (name, env, needles) in cases {
        let data = tempfile::tempdir().unwrap();
        let d = data.path().to_str().unwrap();
        let mut env = env;
        env.push(("LAKEHOUSE__QUERYD__PG_BIND", "127.0.0.1:0"));
        env.push(("LAKEHOUSE__QUERYD__FLIGHT_BIND", "127.0.0.1:0"));
        let (ok, err) = exits_within(&["serve", "--bind", "127.0.0.1:0", "--data-dir", d], &env);
        assert_eq!(
            ok,
            Some(false),
            "{name}: did not stop with an error:\n{err}"
        );
        for n in needles {
            assert!(err.contains(n), "{name}: {n:?} not in:\n{err}");
        }
    }
}

/// Runs the binary; `Some(success)` when it exits within 60 s (`None`:
/// still running, then killed), and its stderr.
fn exits_within(args: &[&str], env: &[(&str, &str)]) -> (Option<bool>, String) {
    use std::io::Read;
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lakehouse"));
    cmd.args(args)
        .env("LAKEHOUSE_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn lakehouse");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break Some(st.success());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    (status, err)
}
