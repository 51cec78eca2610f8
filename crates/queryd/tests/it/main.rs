//! queryd integration tests: small datasets ingested with the in-process
//! `Ingestor` (in-memory store + `Registry`), queried through the engine and
//! through the HTTP router; the conformance suite runs against the engine and
//! the client alike.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, RecordBatch};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use axum::body::Body;
use bytes::Bytes;
use futures::StreamExt;
use http::{Request, StatusCode};
use lakehouse_catalogd::{Catalog, Registry};
use lakehouse_ingestd::{IngestConfig, IngestOptions, Ingestor};
use lakehouse_queryd::{EngineConfig, Format, Query, QueryEngine, QueryError};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use tower::ServiceExt;

mod batches;
mod conformance;
mod dml_vs_duckdb;
mod hardening;
mod races;
mod vectors;
mod writes;

struct Env {
    store: Arc<dyn ObjectStore>,
    catalog: Arc<dyn Catalog>,
    ingestor: Ingestor,
    _spool: tempfile::TempDir,
}

const SALES: &str = "id,region,amount,day\n\
1,north,10.5,2024-01-01\n\
2,south,20.0,2024-01-02\n\
3,north,5.25,2024-01-02\n\
4,east,,2024-01-03\n\
5,south,7.0,2024-01-04\n";

const EVENTS: &str = "{\"user\":\"ann\",\"kind\":\"click\",\"n\":1}\n\
{\"user\":\"bob\",\"kind\":\"view\",\"n\":3}\n\
{\"user\":\"ann\",\"kind\":\"view\",\"n\":2}\n";

impl Env {
    async fn new() -> Env {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let catalog: Arc<dyn Catalog> = Arc::new(Registry::open(store.clone()).await.unwrap());
        let spool = tempfile::tempdir().unwrap();
        let ingestor = Ingestor::new(
            store.clone(),
            catalog.clone(),
            IngestConfig {
                spool_dir: spool.path().to_path_buf(),
                writer: Default::default(),
            },
        );
        let env = Env {
            store,
            catalog,
            ingestor,
            _spool: spool,
        };
        env.ingest("sales", lakehouse_ingestd::Format::Csv, SALES)
            .await;
        env.ingest("web/events", lakehouse_ingestd::Format::Ndjson, EVENTS)
            .await;
        env
    }

    async fn ingest(&self, name: &str, format: lakehouse_ingestd::Format, data: &str) {
        let body = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from(data.to_string()))]);
        self.ingestor
            .ingest(name, IngestOptions::new(format), body, None)
            .await
            .unwrap();
    }

    fn engine(&self, cfg: EngineConfig) -> Arc<QueryEngine> {
        Arc::new(QueryEngine::new(self.catalog.clone(), self.store.clone(), cfg).unwrap())
    }
}

/// Every cell as text, rows in order.
fn rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let opts = FormatOptions::default().with_null("NULL");
    let mut out = Vec::new();
    for b in batches {
        let fmts: Vec<ArrayFormatter> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
            .collect();
        for r in 0..b.num_rows() {
            out.push(fmts.iter().map(|f| f.value(r).to_string()).collect());
        }
    }
    out
}

fn table(expected: &[&[&str]]) -> Vec<Vec<String>> {
    expected
        .iter()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect()
}

async fn query_rows(engine: &QueryEngine, sql: &str) -> Vec<Vec<String>> {
    let (_, batches) = engine
        .collect(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows(&batches)
}

#[tokio::test]
async fn table_driven_queries() {
    let env = Env::new().await;
    let engine = env.engine(EngineConfig::default());
    let cases: &[(&str, &[&[&str]])] = &[
        ("SELECT count(*) FROM sales", &[&["5"]]),
        (
            "SELECT region, sum(amount) AS total FROM sales GROUP BY region ORDER BY region",
            &[&["east", "NULL"], &["north", "15.75"], &["south", "27.0"]],
        ),
        (
            "SELECT id FROM sales WHERE amount > 6 AND day >= '2024-01-02' ORDER BY id",
            &[&["2"], &["5"]],
        ),
        ("SELECT id FROM sales WHERE amount IS NULL", &[&["4"]]),
        (
            "SELECT user, sum(n) FROM \"web/events\" GROUP BY user ORDER BY user",
            &[&["ann", "3"], &["bob", "3"]],
        ),
        (
            "SELECT s.id, e.kind FROM sales s JOIN \"web/events\" e ON s.id = e.n ORDER BY s.id",
            &[&["1", "click"], &["2", "view"], &["3", "view"]],
        ),
        (
            "WITH t AS (SELECT region, count(*) AS c FROM sales GROUP BY region) \
             SELECT max(c) FROM t",
            &[&["2"]],
        ),
        ("VALUES (1, 'a'), (2, 'b')", &[&["1", "a"], &["2", "b"]]),
        (
            "SELECT upper(region), length(region) FROM sales WHERE id = 1",
            &[&["NORTH", "5"]],
        ),
        (
            "SELECT id FROM lakehouse.public.sales ORDER BY id DESC LIMIT 2",
            &[&["5"], &["4"]],
        ),
        ("SELECT count(*) FROM sales WHERE false", &[&["0"]]),
    ];
    for (sql, expected) in cases {
        assert_eq!(query_rows(&engine, sql).await, table(expected), "{sql}");
    }
}

#[tokio::test]
async fn columns_keep_their_types_and_nullability() {
    let env = Env::new().await;
    let engine = env.engine(EngineConfig::default());
    let (schema, _) = engine.collect("SELECT * FROM sales").await.unwrap();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["id", "region", "amount", "day"]);
    assert_eq!(
        schema.field(0).data_type(),
        &arrow::datatypes::DataType::Int64
    );
    assert_eq!(
        schema.field(2).data_type(),
        &arrow::datatypes::DataType::Float64
    );
    assert!(schema.fields().iter().all(|f| f.is_nullable()));
}

#[tokio::test]
async fn new_data_is_visible_at_once() {
    let env = Env::new().await;
    let engine = env.engine(EngineConfig::default());
    let count = "SELECT count(*), max(id) FROM sales";
    assert_eq!(query_rows(&engine, count).await, table(&[&["5", "5"]]));
    env.ingest(
        "sales",
        lakehouse_ingestd::Format::Csv,
        "id,region,amount,day\n6,west,1.0,2024-02-01\n",
    )
    .await;
    assert_eq!(query_rows(&engine, count).await, table(&[&["6", "6"]]));
    // A dataset created after the engine started.
    env.ingest("later", lakehouse_ingestd::Format::Csv, "x\n42\n")
        .await;
    assert_eq!(
        query_rows(&engine, "SELECT x FROM later").await,
        table(&[&["42"]])
    );
}

#[tokio::test]
async fn explain_and_explain_analyze() {
    let env = Env::new().await;
    let engine = env.engine(EngineConfig::default());
    let plan = query_rows(&engine, "EXPLAIN SELECT region FROM sales WHERE id > 2").await;
    let text = plan.concat().join("\n");
    assert!(text.contains("DataSourceExec"), "{text}");
    assert!(
        text.contains("datasets/sales/"),
        "the scan lists the manifest's objects: {text}"
    );
    let analyzed = query_rows(&engine, "EXPLAIN ANALYZE SELECT count(*) FROM sales").await;
    let text = analyzed.concat().join("\n");
    assert!(text.contains("output_rows"), "{text}");
}

/// Decodes each format with its own reader and checks the same rows come back.
#[tokio::test]
async fn every_format_parses_back() {
    let env = Env::new().await;
    let engine = env.engine(EngineConfig::default());
    let sql = "SELECT id, region, amount FROM sales ORDER BY id";
    for format in Format::ALL {
        let buf = bytes(engine.as_ref(), sql, format).await.unwrap();
        let got = parse_sales(format, &buf);
        let expected = vec![
            (1, "north".to_string(), Some(10.5)),
            (2, "south".to_string(), Some(20.0)),
            (3, "north".to_string(), Some(5.25)),
            (4, "east".to_string(), None),
            (5, "south".to_string(), Some(7.0)),
        ];
        assert_eq!(got, expected, "{format:?}");
    }
}

/// The whole result of `sql` in `format`.
async fn bytes(q: &dyn Query, sql: &str, format: Format) -> Result<Vec<u8>, QueryError> {
    let mut stream = q.sql(sql, format).await?;
    let mut buf = Vec::new();
    while let Some(chunk) = stream.next().await {
        buf.extend_from_slice(&chunk?);
    }
    Ok(buf)
}

/// `SELECT id, region, amount FROM sales ORDER BY id` read back from `format`.
fn parse_sales(format: Format, buf: &[u8]) -> Vec<(i64, String, Option<f64>)> {
    match format {
        Format::Json => {
            let v: Vec<serde_json::Value> = serde_json::from_slice(buf).unwrap();
            v.iter()
                .map(|r| {
                    (
                        r["id"].as_i64().unwrap(),
                        r["region"].as_str().unwrap().to_string(),
                        r["amount"].as_f64(),
                    )
                })
                .collect()
        }
        Format::Ndjson => std::str::from_utf8(buf)
            .unwrap()
            .lines()
            .map(|l| {
                let r: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    r["id"].as_i64().unwrap(),
                    r["region"].as_str().unwrap().to_string(),
                    r["amount"].as_f64(),
                )
            })
            .collect(),
        Format::Csv => {
            let text = std::str::from_utf8(buf).unwrap();
            let mut lines = text.lines();
            assert_eq!(lines.next(), Some("id,region,amount"));
            lines
                .map(|l| {
                    let f: Vec<&str> = l.split(',').collect();
                    (
                        f[0].parse().unwrap(),
                        f[1].to_string(),
                        (!f[2].is_empty()).then(|| f[2].parse().unwrap()),
                    )
                })
                .collect()
        }
        Format::Arrow => {
            let reader =
                arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(buf), None).unwrap();
            let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
            typed_rows(&batches)
        }
        Format::Parquet => {
            let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
                Bytes::copy_from_slice(buf),
            )
            .unwrap()
            .build()
            .unwrap();
            let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
            typed_rows(&batches)
        }
    }
}

fn typed_rows(batches: &[RecordBatch]) -> Vec<(i64, String, Option<f64>)> {
    use arrow::array::AsArray;
    use arrow::datatypes::{Float64Type, Int64Type};
    let mut out = Vec::new();
    for b in batches {
        let id = b.column(0).as_primitive::<Int64Type>();
        let region = arrow::compute::cast(b.column(1), &arrow::datatypes::DataType::Utf8).unwrap();
        let region = region.as_string::<i32>();
        let amount = b.column(2).as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            out.push((
                id.value(i),
                region.value(i).to_string(),
                (!amount.is_null(i)).then(|| amount.value(i)),
            ));
        }
    }
    out
}

#[tokio::test]
async fn empty_results_keep_their_shape() {
    let env = Env::new().await;
    let engine = env.engine(EngineConfig::default());
    let sql = "SELECT id, region FROM sales WHERE id > 100";
    let collect = |f: Format| {
        let engine = engine.clone();
        async move {
            let mut s = engine.sql(sql, f).await.unwrap();
            let mut buf = Vec::new();
            while let Some(c) = s.next().await {
                buf.extend_from_slice(&c.unwrap());
            }
            buf
        }
    };
    let json: serde_json::Value = serde_json::from_slice(&collect(Format::Json).await).unwrap();
    assert_eq!(json, serde_json::json!([]));
    assert_eq!(collect(Format::Ndjson).await, b"");
    assert_eq!(
        String::from_utf8(collect(Format::Csv).await)
            .unwrap()
            .trim(),
        "id,region"
    );
    let (schema, batches) = engine.collect(sql).await.unwrap();
    assert_eq!(schema.fields().len(), 2);
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 0);
    let pq = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(Bytes::from(
        collect(Format::Parquet).await,
    ))
    .unwrap();
    assert_eq!(pq.schema().fields().len(), 2);
    assert_eq!(pq.metadata().file_metadata().num_rows(), 0);
}

fn assert_err(r: Result<impl Sized, QueryError>, code: &str) -> QueryError {
    match r {
        Ok(_) => panic!("expected {code}, got a result"),
        Err(e) => {
            assert_eq!(e.code(), code, "{e}");
            e
        }
    }
}

#[tokio::test]
async fn errors_a_person_can_act_on() {
    let env = Env::new().await;
    let engine = env.engine(EngineConfig::default());
    // Syntax error with its position.
    let e = assert_err(
        engine.sql("SELECT * FROM sales WHERE", Format::Json).await,
        "syntax_error",
    );
    assert!(e.to_string().contains("at line 1, column"), "{e}");
    let e = assert_err(engine.sql("SELEC 1", Format::Json).await, "syntax_error");
    assert!(e.to_string().contains("at line 1, column 1"), "{e}");
    // Unknown table lists the datasets, quoted.
    let e = assert_err(
        engine.sql("SELECT * FROM nope", Format::Json).await,
        "unknown_table",
    );
    let m = e.to_string();
    assert!(m.contains("\"nope\""), "{m}");
    assert!(
        m.contains("\"sales\"") && m.contains("\"web/events\""),
        "{m}"
    );
    // An unquoted slash name is a syntax-level mistake the list helps with.
    let e = assert_err(
        engine.sql("SELECT * FROM web_events", Format::Json).await,
        "unknown_table",
    );
    assert!(e.to_string().contains("quote"), "{e}");
    // Unknown column, type errors: 400 plan errors.
    assert_err(
        engine.sql("SELECT nope FROM sales", Format::Json).await,
        "plan_error",
    );
    // A statement calling a table function fails for its own reason, not as
    // an unknown table named after the function.
    assert_err(
        engine
            .sql("SELECT nope FROM generate_series(1, 3)", Format::Json)
            .await,
        "plan_error",
    );
    assert_err(
        engine
            .sql("SELECT sum(region) FROM sales", Format::Json)
            .await,
        "plan_error",
    );
    assert_err(
        engine
            .sql("SELECT id FROM sales WHERE region", Format::Json)
            .await,
        "plan_error",
    );
    // A comparison that coerces a text column to a date fails on the data.
    assert_err(
        engine
            .sql(
                "SELECT * FROM sales WHERE region > current_date() + 1",
                Format::Json,
            )
            .await,
        "execution_error",
    );
    // A bad cast fails on the data: still the query's fault.
    let e = assert_err(
        engine
            .sql("SELECT CAST(region AS INT) FROM sales", Format::Json)
            .await,
        "execution_error",
    );
    assert!(e.is_client_error());
    for e in [
        engine.sql("", Format::Json).await.err().unwrap(),
        engine
            .sql("SELECT 1; SELECT 2", Format::Json)
            .await
            .err()
            .unwrap(),
    ] {
        assert_eq!(e.code(), "invalid_request", "{e}");
    }
}

#[tokio::test]
async fn sandbox_refuses_everything_but_queries() {
    let env = Env::new().await;
    let engine = env.engine(EngineConfig::default());
    for sql in [
        "CREATE TABLE t (a INT)",
        "CREATE VIEW v AS SELECT 1",
        "CREATE EXTERNAL TABLE p STORED AS CSV LOCATION '/etc/passwd'",
        "COPY (SELECT * FROM sales) TO '/tmp/lakehouse-queryd-copy.csv'",
        "COPY sales TO '/tmp/lakehouse-queryd-copy.parquet'",
        "DROP TABLE sales",
        "TRUNCATE sales",
        "SET datafusion.execution.batch_size = 1",
        "SET datafusion.runtime.memory_limit = '100G'",
        "RESET datafusion.execution.batch_size",
        "EXPLAIN COPY sales TO '/tmp/x.csv'",
        "EXPLAIN INSERT INTO sales VALUES (9, 'x', 1.0, '2024-01-01')",
        "PREPARE p AS SELECT 1",
        "BEGIN",
    ] {
        let e = assert_err(engine.sql(sql, Format::Json).await, "forbidden_statement");
        assert!(e.to_string().contains("is not allowed"), "{sql}: {e}");
    }
    // Write statements need write access (see `writes.rs`).
    for sql in [
        "CREATE TABLE t AS SELECT * FROM sales",
        "INSERT INTO sales VALUES (9, 'x', 1.0, '2024-01-01')",
        "DELETE FROM sales",
        "UPDATE sales SET amount = 0",
    ] {
        assert_err(engine.sql(sql, Format::Json).await, "write_not_allowed");
    }
    // SELECT … INTO creates a table: the plan check refuses it.
    assert_err(
        engine
            .sql("SELECT * INTO copy_of_sales FROM sales", Format::Json)
            .await,
        "forbidden_statement",
    );
    // No URL or file tables.
    for sql in [
        "SELECT * FROM '/etc/passwd'",
        "SELECT * FROM 'file:///etc/passwd'",
        "SELECT * FROM '/etc/hosts.csv'",
    ] {
        assert_err(engine.sql(sql, Format::Json).await, "unknown_table");
    }
    assert!(!std::path::Path::new("/tmp/lakehouse-queryd-copy.csv").exists());
    // The data is unchanged.
    assert_eq!(
        query_rows(&engine, "SELECT count(*) FROM sales").await,
        table(&[&["5"]])
    );
}

#[tokio::test]
async fn row_cap_errors_unless_limited() {
    let env = Env::new().await;
    let engine = env.engine(EngineConfig {
        max_rows: 3,
        ..Default::default()
    });
    let e = assert_err(
        engine.sql("SELECT * FROM sales", Format::Json).await,
        "too_many_rows",
    );
    assert!(e.to_string().contains("LIMIT"), "{e}");
    assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        query_rows(&engine, "SELECT id FROM sales ORDER BY id LIMIT 3").await,
        table(&[&["1"], &["2"], &["3"]])
    );
    assert_err(
        engine
            .sql(
                "SELECT v FROM generate_series(1, 1000000) t(v)",
                Format::Csv,
            )
            .await,
        "too_many_rows",
    );
    // EXPLAIN output is not a result set.
    assert!(engine.collect("EXPLAIN SELECT * FROM sales").await.is_ok());
}

#[tokio::test]
async fn timeout_stops_the_query() {
    let env = Env::new().await;
    let engine = env.engine(EngineConfig {
        timeout: Duration::from_millis(300),
        ..Default::default()
    });
    let t = std::time::Instant::now();
    let e = assert_err(
        engine
            .sql(
                "SELECT sum(v) FROM generate_series(1, 100000000000) t(v)",
                Format::Json,
            )
            .await,
        "query_timeout",
    );
    assert_eq!(e.status(), StatusCode::REQUEST_TIMEOUT);
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    // The engine still answers.
    assert_eq!(
        query_rows(&engine, "SELECT count(*) FROM sales").await,
        table(&[&["5"]])
    );
}

#[tokio::test]
async fn memory_limit_is_enforced() {
    let env = Env::new().await;
    let engine = env.engine(EngineConfig {
        memory_limit: 1 << 20,
        timeout: Duration::from_secs(60),
        ..Default::default()
    });
    let e = assert_err(
        engine
            .sql(
                // A hash join's build side cannot spill: it must fit.
                "SELECT count(*) FROM generate_series(1, 2000000) a(v) \
                 JOIN generate_series(1, 2000000) b(w) ON v = w",
                Format::Json,
            )
            .await,
        "memory_limit",
    );
    assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(e.to_string().contains("memory_limit = 1MiB"), "{e}");
    // Small queries still run under the same pool.
    assert_eq!(
        query_rows(&engine, "SELECT count(*) FROM sales").await,
        table(&[&["5"]])
    );
}

async fn post(
    app: axum::Router,
    uri: &str,
    accept: Option<&str>,
    body: serde_json::Value,
) -> (StatusCode, String, Bytes) {
    let mut req = Request::post(uri).header("content-type", "application/json");
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = app
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, ct, bytes)
}

fn error_code(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body)
        .unwrap_or_else(|_| panic!("not JSON: {}", String::from_utf8_lossy(body)));
    v["error"]["code"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn http_formats_by_accept_param_and_body() {
    let env = Env::new().await;
    let engine: Arc<dyn Query> = env.engine(EngineConfig::default());
    let app = lakehouse_queryd::http::router(engine);
    let sql = serde_json::json!({"sql": "SELECT id FROM sales ORDER BY id LIMIT 2"});

    let (s, ct, body) = post(app.clone(), "/query/sql", None, sql.clone()).await;
    assert_eq!((s, ct.as_str()), (StatusCode::OK, "application/json"));
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        serde_json::json!([{"id": 1}, {"id": 2}])
    );
    let (s, ct, body) = post(app.clone(), "/query/sql", Some("text/csv"), sql.clone()).await;
    assert_eq!((s, ct.as_str()), (StatusCode::OK, "text/csv"));
    assert_eq!(&body[..], b"id\n1\n2\n");
    let (s, ct, body) = post(app.clone(), "/query/sql?format=ndjson", None, sql.clone()).await;
    assert_eq!((s, ct.as_str()), (StatusCode::OK, "application/x-ndjson"));
    assert_eq!(&body[..], b"{\"id\":1}\n{\"id\":2}\n");
    let (s, ct, body) = post(
        app.clone(),
        "/query/sql",
        Some("text/csv"),
        serde_json::json!({"sql": "SELECT 1 AS x", "format": "arrow"}),
    )
    .await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::OK, "application/vnd.apache.arrow.stream")
    );
    let batches: Vec<RecordBatch> =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
            .unwrap()
            .map(Result::unwrap)
            .collect();
    assert_eq!(rows(&batches), table(&[&["1"]]));
    let (s, ct, body) = post(
        app.clone(),
        "/query/sql",
        Some("application/vnd.apache.parquet"),
        sql.clone(),
    )
    .await;
    assert_eq!(
        (s, ct.as_str()),
        (StatusCode::OK, "application/vnd.apache.parquet")
    );
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body)
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
    assert_eq!(rows(&batches), table(&[&["1"], &["2"]]));

    // A format we do not serve.
    let (s, _, body) = post(
        app.clone(),
        "/query/sql",
        None,
        serde_json::json!({"sql": "SELECT 1", "format": "xml"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "invalid_request");
}

#[tokio::test]
async fn http_errors_are_json_4xx() {
    let env = Env::new().await;
    let engine: Arc<dyn Query> = env.engine(EngineConfig {
        max_rows: 2,
        ..Default::default()
    });
    let app = lakehouse_queryd::http::router(engine);
    for (sql, status, code) in [
        ("SELECT * FROM", StatusCode::BAD_REQUEST, "syntax_error"),
        (
            "SELECT * FROM missing",
            StatusCode::BAD_REQUEST,
            "unknown_table",
        ),
        (
            "SELECT * FROM '/etc/passwd'",
            StatusCode::BAD_REQUEST,
            "unknown_table",
        ),
        (
            "DROP TABLE sales",
            StatusCode::BAD_REQUEST,
            "forbidden_statement",
        ),
        (
            "COPY sales TO '/tmp/x.csv'",
            StatusCode::BAD_REQUEST,
            "forbidden_statement",
        ),
        (
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
            StatusCode::BAD_REQUEST,
            "forbidden_statement",
        ),
        // Without auth the router lets writes through; this one cannot cast.
        (
            "INSERT INTO sales VALUES (1, 'a', 1.0, 'x')",
            StatusCode::BAD_REQUEST,
            "execution_error",
        ),
        (
            "SET datafusion.execution.target_partitions = 64",
            StatusCode::BAD_REQUEST,
            "forbidden_statement",
        ),
        (
            "SELECT sum(region) FROM sales",
            StatusCode::BAD_REQUEST,
            "plan_error",
        ),
        (
            "SELECT * FROM sales",
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_rows",
        ),
    ] {
        let (s, ct, body) = post(
            app.clone(),
            "/query/sql",
            None,
            serde_json::json!({"sql": sql}),
        )
        .await;
        assert_eq!(s, status, "{sql}: {}", String::from_utf8_lossy(&body));
        assert_eq!(ct, "application/json", "{sql}");
        assert_eq!(error_code(&body), code, "{sql}");
    }
    // Malformed bodies.
    let (s, _, body) = post(
        app.clone(),
        "/query/sql",
        None,
        serde_json::json!({"query": "SELECT 1"}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "invalid_body");
}

/// `env`'s engine behind its router on an ephemeral port; the base URL.
async fn serve(env: &Env) -> String {
    let engine: Arc<dyn Query> = env.engine(EngineConfig::default());
    let app = lakehouse_queryd::http::router(engine);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test]
async fn client_round_trip_over_http() {
    let env = Env::new().await;
    let client = lakehouse_queryd::QueryClient::new(&serve(&env).await);
    let mut s = client
        .sql("SELECT region FROM sales WHERE id = 2", Format::Csv)
        .await
        .unwrap();
    let mut buf = Vec::new();
    while let Some(c) = s.next().await {
        buf.extend_from_slice(&c.unwrap());
    }
    assert_eq!(&buf[..], b"region\nsouth\n");
    let e = client
        .sql("DROP TABLE sales", Format::Csv)
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), "forbidden_statement");
    assert_eq!(e.status(), StatusCode::BAD_REQUEST);
    let e = lakehouse_queryd::QueryClient::new("http://127.0.0.1:1")
        .sql("SELECT 1", Format::Csv)
        .await
        .err()
        .unwrap();
    // The code every service uses for an upstream that does not answer.
    assert_eq!(
        (e.code(), e.status()),
        ("upstream_unavailable", StatusCode::SERVICE_UNAVAILABLE)
    );
}

#[tokio::test]
async fn concurrent_queries_share_the_engine() {
    let env = Env::new().await;
    let engine = env.engine(EngineConfig::default());
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let engine = engine.clone();
            tokio::spawn(async move {
                let sql = if i % 2 == 0 {
                    "SELECT count(*) FROM sales".to_string()
                } else {
                    format!("SELECT * FROM missing_{i}")
                };
                engine.collect(&sql).await.map(|(_, b)| rows(&b))
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await.unwrap();
        if i % 2 == 0 {
            assert_eq!(r.unwrap(), table(&[&["5"]]));
        } else {
            // Each query's misses are its own.
            let e = r.err().unwrap();
            assert_eq!(e.code(), "unknown_table");
            let QueryError::UnknownTable { tables, .. } = e else {
                unreachable!()
            };
            assert_eq!(tables, vec![format!("missing_{i}")]);
        }
    }
}
